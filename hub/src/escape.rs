//! Log-injection safety (CWE-117, CWE-150): a message that carries a line
//! break could forge a whole log line in a file or syslog; one that carries
//! an escape sequence could rewrite the terminal of whoever reads the log.
//! Unless a handler is configured `escape_control_chars = false`, every
//! field a client controls (the message, the logger name, pathname,
//! funcName, module, processName, threadName, the connection's process and
//! host names, extra fields' keys and text, exception text) is rendered with
//! control characters escaped: `\n` `\r` as `\n` `\r`, every other C0
//! control, DEL and C1 control as `\xNN` (TAB is kept). Exception text keeps
//! its own line breaks, as Python writes tracebacks, and so does the
//! `stack_info` a Python client sends; their other control characters are
//! escaped.

/// Whether `s` holds a character that [`escape`] would rewrite.
pub(crate) fn needs_escape(s: &str) -> bool {
    needs(s, false)
}

/// Whether `s` holds a character that [`escape_keeping_newlines`] would
/// rewrite.
pub(crate) fn needs_escape_keeping_newlines(s: &str) -> bool {
    needs(s, true)
}

fn needs(s: &str, keep_newlines: bool) -> bool {
    let b = s.as_bytes();
    // Fast path, 8 bytes at a time (the check runs on every record): most
    // messages hold no byte below 0x20, no DEL and no 0xC2 at all.
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH != 0;
    let suspicious = |x: u64| {
        // Bytes below 0x20 (exact for the question "is there any").
        (x.wrapping_sub(ONES * 0x20) & !x & HIGH != 0)
            || has_zero(x ^ (ONES * 0x7f))
            || has_zero(x ^ (ONES * 0xc2))
    };
    let mut chunks = b.chunks_exact(8);
    let mut any = chunks.by_ref().any(|c| suspicious(u64::from_le_bytes(c.try_into().expect("8 bytes"))));
    any |= chunks.remainder().iter().any(|&c| c < 0x20 || c == 0x7f || c == 0xc2);
    if !any {
        return false;
    }
    // C1 controls are U+0080..U+009F: in UTF-8, 0xC2 followed by 0x80..0x9F.
    b.iter().enumerate().any(|(i, &c)| {
        (c < 0x20 && c != b'\t' && !(keep_newlines && c == b'\n'))
            || c == 0x7f
            || (c == 0xc2 && b.get(i + 1).is_some_and(|n| (0x80..0xa0).contains(n)))
    })
}

/// `s` with its control characters escaped (see the module docs).
pub(crate) fn escape(s: &str) -> String {
    escape_with(s, false)
}

/// [`escape`], keeping line feeds (exception text).
pub(crate) fn escape_keeping_newlines(s: &str) -> String {
    escape_with(s, true)
}

fn escape_with(s: &str, keep_newlines: bool) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(s.len() + 16);
    for ch in s.chars() {
        match ch {
            '\n' if keep_newlines => out.push('\n'),
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
    fn exception_text_keeps_its_line_breaks_only() {
        let tb = "Traceback (most recent call last):\n  File \"x\"\nValueError: \x1b[31mred\r";
        assert!(needs_escape_keeping_newlines(tb));
        assert_eq!(
            escape_keeping_newlines(tb),
            "Traceback (most recent call last):\n  File \"x\"\nValueError: \\x1b[31mred\\r"
        );
        assert!(!needs_escape_keeping_newlines("line one\n\tline two\n"));
        assert!(needs_escape("line one\n"));
    }

    #[test]
    fn control_characters_are_escaped_and_nothing_else() {
        let forged = "ok\nFAKE 2026-01-01 CRITICAL root\r\x1b[2J\u{85}\x7f";
        assert!(needs_escape(forged));
        assert_eq!(escape(forged), "ok\\nFAKE 2026-01-01 CRITICAL root\\r\\x1b[2J\\x85\\x7f");
        // Every position of every byte class, for the 8-byte fast path.
        for pos in 0..20 {
            for bad in ["\n", "\x1b", "\x7f", "\u{85}", "\x00", "\x1f"] {
                let s = format!("{}{bad}{}", "a".repeat(pos), "b".repeat(20 - pos));
                assert!(needs_escape(&s), "{s:?}");
            }
            let s = format!("{}\u{a0}\t{}", "a".repeat(pos), "é".repeat(5));
            assert!(!needs_escape(&s), "{s:?}");
        }
        for fine in ["plain", "tab\there", "é ü 日本 \u{a0}", "", " ~\u{7e}\u{a1}\u{ff}"] {
            assert!(!needs_escape(fine), "{fine:?}");
            assert_eq!(escape(fine), fine);
        }
    }
}
