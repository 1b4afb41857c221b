//! Client text cut to a byte limit before it is kept in a queue (a log line, a span): a
//! request path or query can be tens of kilobytes, and thousands of them wait in a queue
//! when its reader stalls. What is cut is said at the end, so no reader takes the rest for
//! the whole.

use std::borrow::Cow;

/// `text` whole when it is at most `limit` bytes; otherwise its first `limit` bytes (less, to
/// end on a character boundary) followed by `…[N bytes cut]`, N being the bytes left out.
pub fn cut_to(text: &str, limit: usize) -> Cow<'_, str> {
    if text.len() <= limit {
        return Cow::Borrowed(text);
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…[{} bytes cut]", &text[..end], text.len() - end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_kept_whole_and_borrowed() {
        assert!(matches!(cut_to("a=1", 3), Cow::Borrowed("a=1")));
    }

    #[test]
    fn long_text_keeps_its_first_bytes_and_says_how_many_were_cut() {
        let text = "q".repeat(10_000);
        let cut = cut_to(&text, 4096);
        assert_eq!(cut, format!("{}…[5904 bytes cut]", "q".repeat(4096)));
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        // 4095 bytes of `a`, then a two-byte `é` that would straddle the limit.
        let text = format!("{}é{}", "a".repeat(4095), "b".repeat(100));
        let cut = cut_to(&text, 4096);
        assert_eq!(cut, format!("{}…[102 bytes cut]", "a".repeat(4095)));
    }
}
