//! Any byte stream, split anywhere: the framing follower never panics, never loses or adds a
//! byte, and only ever rewrites `content-length` to the marker of the same length.
#![no_main]

use explo_shim::server::framing_guard::FramingFollower;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, stream)) = data.split_first() else { return };
    let step = usize::from(split).max(1);
    let mut follower = FramingFollower::new(4096);
    let mut out = Vec::new();
    for piece in stream.chunks(step) {
        follower.feed(piece, &mut out);
    }
    out.extend_from_slice(follower.held_bytes());
    assert_eq!(out.len(), stream.len());
    for (index, (seen, sent)) in out.iter().zip(stream).enumerate() {
        if seen != sent {
            let start = index.saturating_sub(13);
            let window = String::from_utf8_lossy(&out[start..(index + 14).min(out.len())]).into_owned();
            assert!(window.contains("x-ambiguous-cl") || window.contains("ambiguous"), "{window}");
        }
    }
});
