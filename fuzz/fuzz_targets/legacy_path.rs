//! Any request path: recognising a legacy route never panics, normalising is idempotent, and a
//! path that normalises to a legacy endpoint is recognised as one.
#![no_main]

use explo_shim::legacy::route::LegacyRoute;
use explo_shim::legacy::route::path::{normalise, recognise};
use http::Method;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    if !path.starts_with('/') || !path.is_ascii() {
        return;
    }
    for method in [Method::POST, Method::DELETE, Method::GET] {
        let recognised = recognise(&method, path);
        if let Ok(normalised) = normalise(path) {
            assert_eq!(normalise(&normalised).unwrap(), normalised, "idempotent");
            if let Some(route) = LegacyRoute::recognise(&method, &normalised) {
                assert_eq!(recognised, Ok(Some(route)), "{path}");
            }
        }
    }
});
