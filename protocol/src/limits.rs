//! How long a client's text may be, and the one rule that cuts a message.

use crate::MAX_MESSAGE_BYTES;

/// The longest name a client may send: a logger, process, thread or host
/// name, a path, a function or module name, an extra field's key. Longer
/// ones are cut to this (at a character boundary) by the hub, and counted.
pub const MAX_NAME_BYTES: usize = 4 << 10;

/// Where the message is cut, leaving room for the marker.
const CUT_AT: usize = MAX_MESSAGE_BYTES - 64;
const MARKER: &str = " …[truncated ";

/// `s` cut to at most `max` bytes, at a character boundary.
pub fn cut_str(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    &s[..cut]
}

/// The rule for messages over [`MAX_MESSAGE_BYTES`]: the first bytes (cut
/// at a character boundary) and ` …[truncated N bytes]`. `None` if the
/// message is within the limit.
pub fn cut_message(message: &str) -> Option<String> {
    (message.len() > MAX_MESSAGE_BYTES).then(|| cut_message_read(message, message.len()))
}

/// [`cut_message`] for a message of `len` bytes of which only the start,
/// `read` (at least [`MAX_MESSAGE_BYTES`] of it), was kept: a reader of
/// endless lines need not hold them whole.
pub fn cut_message_read(read: &str, len: usize) -> String {
    let kept = cut_str(read, CUT_AT);
    format!("{kept}{MARKER}{} bytes]", len - kept.len())
}

/// Whether `message` is what [`cut_message`] makes (a client cut it before
/// sending, so the hub can count it too).
#[inline]
pub fn is_cut_message(message: &str) -> bool {
    // The kept part is at most 3 bytes short of CUT_AT (a character
    // boundary); the marker and count follow.
    if !(CUT_AT - 3..=CUT_AT + 40).contains(&message.len()) || !message.ends_with(" bytes]") {
        return false;
    }
    let tail = &message[cut_str(message, CUT_AT - 3).len()..];
    tail.find(MARKER).is_some_and(|at| {
        let count = &tail[at + MARKER.len()..tail.len() - " bytes]".len()];
        !count.is_empty() && count.bytes().all(|b| b.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_message_is_cut_at_a_character_boundary_and_recognised() {
        for pad in 0..4 {
            let m = format!("{}{}", "a".repeat(pad), "日本".repeat(MAX_MESSAGE_BYTES / 3));
            let cut = cut_message(&m).unwrap();
            assert!(cut.len() <= MAX_MESSAGE_BYTES, "{}", cut.len());
            assert!(cut.ends_with(" bytes]"));
            let kept = cut.split(MARKER).next().unwrap();
            assert_eq!(cut, format!("{kept}{MARKER}{} bytes]", m.len() - kept.len()));
            assert!(is_cut_message(&cut), "pad {pad}");
            assert!(cut_message(&cut).is_none(), "cutting again changes nothing");
        }
        assert!(cut_message(&"x".repeat(MAX_MESSAGE_BYTES)).is_none());
        assert!(!is_cut_message("short …[truncated 5 bytes]"));
        assert!(!is_cut_message(&format!("{} …[truncated x bytes]", "y".repeat(CUT_AT))));
        assert_eq!(cut_str("héllo", 2), "h");
        assert_eq!(cut_str("héllo", 3), "hé");
    }
}
