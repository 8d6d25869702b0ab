//! Log-injection safety (CWE-117, CWE-150): a message that carries a line
//! break could forge a whole log line in a file or syslog; one that carries
//! an escape sequence could rewrite the terminal of whoever reads the log.
//! Unless a handler is configured `escape_control_chars = false`, the
//! message and logger name are rendered with control characters escaped:
//! `\n` `\r` as `\n` `\r`, every other C0 control, DEL and C1 control as
//! `\xNN` (TAB is kept). Exception text is left alone: tracebacks are
//! multi-line by design.

/// Whether `s` holds a character that [`escape`] would rewrite.
pub(crate) fn needs_escape(s: &str) -> bool {
    let b = s.as_bytes();
    // Fast path (vectorizes): most messages hold none of these bytes at all.
    if !b.iter().any(|&c| c < 0x20 || c == 0x7f || c == 0xc2) {
        return false;
    }
    // C1 controls are U+0080..U+009F: in UTF-8, 0xC2 followed by 0x80..0x9F.
    b.iter().enumerate().any(|(i, &c)| {
        (c < 0x20 && c != b'\t')
            || c == 0x7f
            || (c == 0xc2 && b.get(i + 1).is_some_and(|n| (0x80..0xa0).contains(n)))
    })
}

/// `s` with its control characters escaped (see the module docs).
pub(crate) fn escape(s: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(s.len() + 16);
    for ch in s.chars() {
        match ch {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push('\t'),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_nothing_else() {
        let forged = "ok\nFAKE 2026-01-01 CRITICAL root\r\x1b[2J\u{85}\x7f";
        assert!(needs_escape(forged));
        assert_eq!(escape(forged), "ok\\nFAKE 2026-01-01 CRITICAL root\\r\\x1b[2J\\x85\\x7f");
        for fine in ["plain", "tab\there", "é ü 日本 \u{a0}", ""] {
            assert!(!needs_escape(fine), "{fine:?}");
            assert_eq!(escape(fine), fine);
        }
    }
}
