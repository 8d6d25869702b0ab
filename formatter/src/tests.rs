//! The formatter's tests: unit tests, and differential tests against
//! python3's own `logging.Formatter` on the same records.

use std::io::Write as _;
use std::process::{Command, Stdio};

use chrono::TimeZone;
use logfunnel_protocol::{Record, RecordView, Value, ValueRef, level_name};

use crate::time::{Clock, DEFAULT_TIME_FORMAT, floor, portable_time, trunc, unix_time};
use crate::unicode::{is_printable, push_py_repr};
use crate::values::{UNKNOWN_FILE, UNKNOWN_FUNCTION};
use crate::{FormatError, Formatter, PeerCred, RecordContext, Style};

/// The whole-number path of asctime gives the float path's text: for
/// nanoseconds near second and millisecond boundaries (where it defers
/// to the float path) and well inside them, before and after 1970, with
/// the cache primed for that second and not, across the range of `i64`.
#[test]
fn asctime_from_nanoseconds_matches_the_float_path() {
    let new_clock = || Clock { utc: true, datefmt: None, second: None, text: String::new() };
    let seconds = [0i64, 1, -1, 1_700_000_000, -1_700_000_001, 4_102_444_800, 9_000_000_000];
    let offsets = [
        0i64,
        1,
        255,
        256,
        999,
        9_999,
        10_000,
        10_001,
        123_456,
        989_999,
        990_000,
        999_999,
        1_000_000,
        1_000_001,
        499_999_999,
        500_000_000,
        999_000_000,
        999_989_999,
        999_990_000,
        999_999_743,
        999_999_999,
    ];
    let mut checked = 0;
    for s in seconds {
        for off in offsets {
            let ns = s * 1_000_000_000 + off;
            for primed in [false, true] {
                let (mut fast, mut float) = (new_clock(), new_clock());
                if primed {
                    let _ = fast.asctime_ns_into(ns, &mut Vec::new());
                }
                let (mut a, mut b) = (Vec::new(), Vec::new());
                let ra = fast.asctime_ns_into(ns, &mut a);
                let rb = float.asctime_into(ns as f64 / 1e9, &mut b);
                assert_eq!(ra.is_ok(), rb.is_ok(), "{ns}");
                assert_eq!(String::from_utf8(a).unwrap(), String::from_utf8(b).unwrap(), "{ns}");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 7 * 21 * 2);
}

#[test]
fn inline_trunc_floor_and_put_agree_with_std() {
    let xs = [
        0.0,
        -0.0,
        0.4,
        -0.4,
        1.0,
        -1.0,
        1.5,
        -1.5,
        1_700_000_000.123_456,
        -1_700_000_000.999,
        4_503_599_627_370_495.5,
        4_503_599_627_370_496.0,
        1e300,
        -1e300,
        f64::INFINITY,
        f64::NEG_INFINITY,
    ];
    for x in xs {
        assert_eq!(trunc(x).to_bits() & !(1 << 63), x.trunc().to_bits() & !(1 << 63), "trunc {x}");
        assert_eq!(floor(x), x.floor(), "floor {x}");
    }
    assert!(trunc(f64::NAN).is_nan() && floor(f64::NAN).is_nan());
    for cap in [0, 8, 40, 100] {
        for n in 0..=40 {
            let src: Vec<u8> = (0..n as u8).map(|b| b.wrapping_mul(37)).collect();
            let mut out = Vec::with_capacity(cap);
            out.extend_from_slice(b"ab");
            logfunnel_protocol::append_short(&mut out, &src);
            assert_eq!(&out[..2], b"ab");
            assert_eq!(&out[2..], &src[..], "n {n} cap {cap}");
        }
    }
}

/// 2023-11-14 22:13:20.123456789 UTC.
const T0: i64 = 1_700_000_000_123_456_789;
const START: i64 = 1_699_999_000_000_000_000;

fn record() -> Record {
    let mut r = Record::new(20, "app.net", "hello");
    r.created_ns = T0;
    r.pathname = Some("/src/app/net.rs".into());
    r.lineno = 42;
    r.func_name = Some("connect".into());
    r.process = 4242;
    r.thread = 7;
    r.thread_name = Some("worker".into());
    r.extra = vec![
        ("user".into(), Value::Str("bob".into())),
        ("count".into(), Value::I64(-1234567)),
        ("ratio".into(), Value::F64(0.1)),
        ("ok".into(), Value::Bool(true)),
        ("big".into(), Value::U64(u64::MAX)),
    ];
    r
}

fn ctx<'a>(record: &'a RecordView<'a>) -> RecordContext<'a> {
    RecordContext {
        record,
        peer: PeerCred::UNKNOWN,
        process_name: "MainProcess",
        host_name: "box-1",
        start_ns: START,
        python: false,
    }
}

fn try_fmt(fmt: &str, style: Style, r: &Record) -> Result<String, FormatError> {
    let mut f = Formatter::new(Some(fmt), None, style)?.with_utc(true);
    let mut out = Vec::new();
    f.format(&ctx(&r.view()), &mut out)?;
    Ok(String::from_utf8(out).unwrap())
}

fn fmt(fmt: &str, style: Style, r: &Record) -> String {
    try_fmt(fmt, style, r).unwrap_or_else(|e| panic!("{fmt:?}: {e}"))
}

fn invalid(fmt: &str, style: Style) -> String {
    match Formatter::new(Some(fmt), None, style) {
        Err(e @ FormatError::Invalid { .. }) => e.to_string(),
        other => panic!("{fmt:?} should be invalid, got {other:?}"),
    }
}

#[test]
fn style_parse_and_defaults() {
    assert_eq!(Style::parse("%"), Some(Style::Percent));
    assert_eq!(Style::parse("{"), Some(Style::Brace));
    assert_eq!(Style::parse("$"), Some(Style::Dollar));
    assert_eq!(Style::parse("%s"), None);
    let r = record();
    for style in [Style::Percent, Style::Brace, Style::Dollar] {
        for fmt in [None, Some("")] {
            let mut f = Formatter::new(fmt, None, style).unwrap();
            assert_eq!(f.fmt(), style.default_format());
            assert!(!f.uses_time());
            let mut out = Vec::new();
            f.format(&ctx(&r.view()), &mut out).unwrap();
            assert_eq!(out, b"hello");
        }
    }
}

#[test]
fn percent_style_flags_widths_and_conversions() {
    let r = record();
    let p = Style::Percent;
    assert_eq!(
        fmt("%(levelname)-8s|%(lineno)05d|%(levelno)#x|%(created).3f|%(msecs)03d|%(message)r", p, &r),
        "INFO    |00042|0x14|1700000000.123|123|'hello'"
    );
    assert_eq!(fmt("%(lineno)+05d|%(lineno)-5d|%(lineno) d|%(lineno).4i", p, &r), "+0042|42   | 42|0042");
    assert_eq!(fmt("%(levelno)o %(levelno)#o %(levelno)X %(levelno)#08X", p, &r), "24 0o24 14 0X000014");
    assert_eq!(
        fmt("%(created)s|%(msecs)s|%(relativeCreated)s", p, &r),
        // 3.11: (created - start) * 1000 in float seconds.
        "1700000000.1234567|123.0|1000123.4567165375"
    );
    assert_eq!(
        fmt("%(created)d|%(created)e|%(created)g|%(created)G", p, &r),
        "1700000000|1.700000e+09|1.7e+09|1.7E+09"
    );
    assert_eq!(
        fmt("%(relativeCreated)g|%(relativeCreated).10g|%(msecs)#g", p, &r),
        "1.00012e+06|1000123.457|123.000"
    );
    assert_eq!(
        fmt("%(lineno)c|%(levelname)5.2s|%(message)-7s|%(message)7s|", p, &r),
        "*|   IN|hello  |  hello|"
    );
    assert_eq!(
        fmt("%(user)s %(count)d %(ratio)s %(ok)s %(ok)d %(big)d %(count)x", p, &r),
        "bob -1234567 0.1 True 1 18446744073709551615 -12d687"
    );
    assert_eq!(fmt("100%% %(message)s %%", p, &r), "100% hello %");
    assert_eq!(fmt("%(exc_text)s %(stack_info)s %(args)s %(exc_info)r", p, &r), "None None None None");
    // A C length modifier is skipped, though validation wants another field.
    assert_eq!(fmt("%(message)s %(created)ld", p, &r), "hello 1700000000");
    assert!(Formatter::new(Some("%(created)ld"), None, p).is_err());
    assert_eq!(fmt("%(ratio)010.4f|%(ratio)-+8.1f|%(ratio)+08.1e", p, &r), "00000.1000|+0.1    |+1.0e-01");
}

#[test]
fn brace_style_format_spec() {
    let r = record();
    let b = Style::Brace;
    assert_eq!(
        fmt("{levelname:^10}|{lineno:,}|{created:.2e}|{message!r:>9}", b, &r),
        "   INFO   |42|1.70e+09|  'hello'"
    );
    assert_eq!(
        fmt("{count:,}|{count:_}|{big:_x}|{lineno:#b}|{lineno:*^8}|{lineno:=+6}", b, &r),
        "-1,234,567|-1_234_567|ffff_ffff_ffff_ffff|0b101010|***42***|+   42"
    );
    assert_eq!(
        fmt("{count:012,}|{ratio:%}|{ratio:.1%}|{lineno:e}|{lineno:c}", b, &r),
        "-001,234,567|10.000000%|10.0%|4.200000e+01|*"
    );
    assert_eq!(
        fmt("{created}|{created:.3}|{created:,.2f}|{created:g}|{msecs:.0f}", b, &r),
        "1700000000.1234567|1.7e+09|1,700,000,000.12|1.7e+09|123"
    );
    assert_eq!(
        fmt("{ok}|{ok:>5}|{ok!s:>5}|{ok!r}|{message!a}|{message:.2}", b, &r),
        "True|    1| True|True|'hello'|he"
    );
    assert_eq!(fmt("{message:{lineno}}|", b, &r).len(), 43);
    assert_eq!(fmt("{message:>{levelno}.{lineno}}", b, &r), format!("{}hello", " ".repeat(15)));
    // Python's own complaint about the spec that was built.
    let err = try_fmt("{message:>{levelno}.{ok}}", b, &r).unwrap_err();
    assert_eq!(err.to_string(), "Format specifier missing precision");
    assert_eq!(fmt("{{x}} {message} }}", b, &r), "{x} hello }");
    assert_eq!(fmt("{message:05}|{message:0>7}|{lineno:05}", b, &r), "hello|00hello|00042");
    assert_eq!(fmt("{exc_text}|{stack_info}", b, &r), "None|None");
}

#[test]
fn dollar_style_substitution() {
    let r = record();
    let d = Style::Dollar;
    assert_eq!(fmt("$levelname:${name}:$message $$5 ${user}x", d, &r), "INFO:app.net:hello $5 bobx");
    assert_eq!(fmt("$created $ok $ratio $lineno", d, &r), "1700000000.1234567 True 0.1 42");
    assert!(invalid("$message $", d).contains("bare '$' not allowed"));
    assert!(invalid("${message", d).contains("bare '$' not allowed"));
    assert!(invalid("$1", d).contains("bare '$' not allowed"));
    assert!(invalid("no fields $$", d).contains("no fields"));
}

#[test]
fn record_attribute_fallbacks() {
    let mut r = record();
    r.pathname = None;
    r.func_name = None;
    r.thread_name = None;
    r.levelno = 25;
    assert_eq!(
        fmt(
            "%(pathname)s|%(filename)s|%(module)s|%(funcName)s|%(threadName)s|%(levelname)s",
            Style::Percent,
            &r
        ),
        "(unknown file)|(unknown file)|(unknown file)|(unknown function)|Thread-7|Level 25"
    );
    assert_eq!(fmt("%(processName)s %(hostname)s %(process)d", Style::Percent, &r), "MainProcess box-1 4242");
    r.process_name = Some("Scratcher-1".into());
    r.extra.push(("hostname".into(), Value::Str("from-extra".into())));
    assert_eq!(fmt("%(processName)s %(hostname)s", Style::Percent, &r), "Scratcher-1 from-extra");
    // Python's own attributes win over extras with the same name.
    r.extra.push(("name".into(), Value::Str("shadow".into())));
    assert_eq!(fmt("%(name)s", Style::Percent, &r), "app.net");
    for (path, file, module) in [
        ("/a/b.c/file.tar.gz", "file.tar.gz", "file.tar"),
        ("rel/.hidden", ".hidden", ".hidden"),
        ("..x", "..x", "..x"),
        ("a/b/", "", ""),
        ("noext", "noext", "noext"),
    ] {
        r.pathname = Some(path.into());
        assert_eq!(fmt("%(filename)s|%(module)s", Style::Percent, &r), format!("{file}|{module}"), "{path}");
    }
}

#[test]
fn exc_text_is_appended_like_python() {
    let mut r = record();
    r.exc_text = Some("Traceback\nBoom".into());
    assert_eq!(fmt("%(message)s", Style::Percent, &r), "hello\nTraceback\nBoom");
    r.message = "line\n".into();
    assert_eq!(fmt("%(message)s", Style::Percent, &r), "line\nTraceback\nBoom");
    r.message = String::new();
    assert_eq!(fmt("%(message)s", Style::Percent, &r), "\nTraceback\nBoom");
    r.exc_text = Some(String::new());
    assert_eq!(fmt("%(message)s|", Style::Percent, &r), "|");
    // The newline test looks at this record's text only, not the buffer.
    r.exc_text = Some("tb".into());
    let mut f = Formatter::new(Some("%(message)s"), None, Style::Percent).unwrap();
    let mut out = b"previous\n".to_vec();
    f.format(&ctx(&r.view()), &mut out).unwrap();
    assert_eq!(out, b"previous\n\ntb");
}

#[test]
fn missing_fields_leave_the_buffer_untouched() {
    let r = record();
    for (fmt, style) in [
        ("%(message)s %(taskName)s", Style::Percent),
        ("{message} {taskName}", Style::Brace),
        ("$message $taskName", Style::Dollar),
        ("{message:{taskName}}", Style::Brace),
    ] {
        let mut f = Formatter::new(Some(fmt), None, style).unwrap();
        let mut out = b"keep".to_vec();
        let err = f.format(&ctx(&r.view()), &mut out).unwrap_err();
        assert!(matches!(&err, FormatError::MissingField(name) if name == "taskName"), "{err:?}");
        assert_eq!(err.to_string(), "Formatting field not found in record: 'taskName'");
        assert_eq!(out, b"keep");
    }
    // A type mismatch on an extra is found per record, and also rolls back.
    let mut f = Formatter::new(Some("%(message)s %(user)d"), None, Style::Percent).unwrap();
    let mut out = b"keep".to_vec();
    let err = f.format(&ctx(&r.view()), &mut out).unwrap_err();
    assert_eq!(err.to_string(), "%d format: a real number is required, not str");
    assert_eq!(out, b"keep");
}

#[test]
fn validation_errors() {
    let p = Style::Percent;
    assert_eq!(invalid("%(name", p), "Invalid format '%(name' for '%' style: no %(name)s-style field");
    assert!(invalid("plain text", p).starts_with("Invalid format 'plain text' for '%' style"));
    assert!(invalid("%(message)s %(name", p).contains("incomplete format key"));
    assert!(invalid("%(message)s %s", p).contains("no %(key)"));
    assert!(invalid("%(message)*d", p).contains("'*'"));
    assert!(
        invalid("%(message)s %(name)y", p).contains("unsupported format character 'y' (0x79) at index 19")
    );
    assert!(invalid("%(message)s %(name)5%", p).contains("unsupported format character '%'"));
    assert!(invalid("%(message)s %", p).contains("incomplete format"));
    assert!(invalid("%(levelname)d", p).contains("%d format: a real number is required, not str"));
    assert!(invalid("%(created)x", p).contains("an integer is required, not float"));
    assert!(invalid("%(message)99999999s", p).contains("width too big"));
    let b = Style::Brace;
    assert!(invalid("{", b).contains("Single '{'"));
    assert!(invalid("{message}}", b).contains("Single '}'"));
    assert!(invalid("{message", b).contains("expected '}'"));
    assert!(invalid("{message!x}", b).contains("invalid conversion: 'x'"));
    assert!(invalid("{message:bad}", b).contains("bad specifier: 'bad'"));
    assert!(invalid("{created:z.2f}", b).contains("bad specifier: 'z.2f'"));
    assert!(invalid("{a b}", b).contains("invalid field name/expression: 'a b'"));
    assert!(invalid("text only", b).contains("no fields"));
    assert!(invalid("{0} {message}", b).contains("positional"));
    assert!(invalid("{} {message}", b).contains("positional"));
    assert!(invalid("{created.real}", b).contains("not supported"));
    assert!(invalid("{levelno:s}", b).contains("Unknown format code 's' for object of type 'int'"));
    assert!(invalid("{levelname:+}", b).contains("Sign not allowed in string format specifier"));
    assert!(invalid("{lineno:.2}", b).contains("Precision not allowed"));
    assert!(invalid("{stack_info:>5}", b).contains("NoneType.__format__"));
    assert!(invalid("{lineno:,x}", b).contains("Cannot specify ',' with 'x'."));
    // Types that vary per record are checked per record.
    assert!(Formatter::new(Some("{user:d}"), None, b).is_ok());
    // A NUL in datefmt fails every record that formats the time; Python
    // never reads datefmt for a format without asctime.
    assert!(matches!(
        Formatter::new(Some("%(asctime)s %(message)s"), Some("a\0b"), p),
        Err(FormatError::BadDateFormat { .. })
    ));
    assert!(Formatter::new(Some("%(message)s"), Some("a\0b"), p).is_ok());
}

#[test]
fn uses_time_is_a_substring_test() {
    let cases = [
        ("%(asctime)s", Style::Percent, true),
        ("%(asctime)-20s %(message)s", Style::Percent, true),
        ("%%(asctime)s %(message)s", Style::Percent, true),
        ("%(message)s asctime", Style::Percent, false),
        ("{asctime!r}", Style::Brace, true),
        ("{message:{asctime}}", Style::Brace, true),
        ("{message} asctime", Style::Brace, false),
        ("$asctime", Style::Dollar, true),
        ("${asctime}", Style::Dollar, true),
        ("$asctimex $message", Style::Dollar, true),
        ("$message", Style::Dollar, false),
    ];
    for (fmt, style, expected) in cases {
        assert_eq!(Formatter::new(Some(fmt), None, style).unwrap().uses_time(), expected, "{fmt}");
    }
}

#[test]
fn asctime_utc_default_and_datefmt() {
    let r = record();
    assert_eq!(fmt("%(asctime)s", Style::Percent, &r), "2023-11-14 22:13:20,123");
    let mut f = Formatter::new(Some("%(asctime)s.%(msecs)03d"), Some("%Y-%m-%dT%H:%M:%S"), Style::Percent)
        .unwrap()
        .with_utc(true);
    assert_eq!(f.datefmt(), Some("%Y-%m-%dT%H:%M:%S"));
    let mut out = Vec::new();
    f.format(&ctx(&r.view()), &mut out).unwrap();
    assert_eq!(out, b"2023-11-14T22:13:20.123");
    // %f is not a C strftime directive: it stays literal, as in Python.
    let mut f =
        Formatter::new(Some("{asctime}"), Some("%H:%M:%S.%f %Z %%"), Style::Brace).unwrap().with_utc(true);
    out.clear();
    f.format(&ctx(&r.view()), &mut out).unwrap();
    assert_eq!(out, b"22:13:20.%f GMT %");
    // An empty datefmt is falsy in Python: the default applies.
    let mut f = Formatter::new(Some("$asctime"), Some(""), Style::Dollar).unwrap().with_utc(true);
    out.clear();
    f.format(&ctx(&r.view()), &mut out).unwrap();
    assert_eq!(out, b"2023-11-14 22:13:20,123");
    // Before 1970 msecs is negative under 3.11's formula.
    let mut old = record();
    old.created_ns = -1_500_000_000;
    assert_eq!(fmt("%(asctime)s|%(msecs)s", Style::Percent, &old), "1969-12-31 23:59:58,-500|-500.0");
}

#[test]
fn date_cache_follows_the_second() {
    let mut f = Formatter::new(Some("%(asctime)s"), None, Style::Percent).unwrap().with_utc(true);
    let mut r = record();
    let mut at = |ns: i64| {
        r.created_ns = ns;
        let mut out = Vec::new();
        f.format(&ctx(&r.view()), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    };
    let second = 1_700_000_000_000_000_000;
    assert_eq!(at(second - 1_000_000), "2023-11-14 22:13:19,999");
    assert_eq!(at(second - 1), "2023-11-14 22:13:20,000");
    assert_eq!(at(second), "2023-11-14 22:13:20,000");
    assert_eq!(at(second + 999_000_000), "2023-11-14 22:13:20,999");
    assert_eq!(at(second + 1_000_000_000), "2023-11-14 22:13:21,000");
    assert_eq!(at(second - 1_000_000), "2023-11-14 22:13:19,999");
    assert_eq!(at(second + 86_400_000_000_000), "2023-11-15 22:13:20,000");
}

#[test]
fn local_time_agrees_with_chrono() {
    let r = record();
    let mut f = Formatter::new(Some("%(asctime)s"), Some("%Y-%m-%d %H:%M:%S %z"), Style::Percent).unwrap();
    let mut out = Vec::new();
    f.format(&ctx(&r.view()), &mut out).unwrap();
    let local = String::from_utf8(out).unwrap();
    let offset =
        chrono::Local.timestamp_opt(1_700_000_000, 0).unwrap().format("%Y-%m-%d %H:%M:%S %z").to_string();
    assert_eq!(local, offset);
}

#[cfg(unix)]
#[test]
fn portable_clock_agrees_with_the_c_library_in_utc() {
    for fmt in [DEFAULT_TIME_FORMAT, "%a %b %d %j %p %y %A %B %I %M"] {
        assert!(portable_time::valid(fmt));
        for second in [0, 951_782_400, 1_700_000_000, 4_102_444_800] {
            let (mut ours, mut chrono) = (String::new(), String::new());
            let c = std::ffi::CString::new(fmt).unwrap();
            assert!(unix_time::strftime(second, true, &c, fmt.len(), &mut ours));
            assert!(portable_time::strftime(second, true, fmt, &mut chrono));
            assert_eq!(ours, chrono, "{fmt} at {second}");
        }
    }
    assert!(!portable_time::valid("%Q"));
}

#[test]
fn repr_matches_python() {
    // (text, repr(text), ascii(text)) as printed by python3.11.
    let cases = [
        ("hello", "'hello'", "'hello'"),
        ("it's", "\"it's\"", "\"it's\""),
        ("a\"b'c", "'a\"b\\'c'", "'a\"b\\'c'"),
        ("t\tn\nr\r\\ \x00\x7f", "'t\\tn\\nr\\r\\\\ \\x00\\x7f'", "'t\\tn\\nr\\r\\\\ \\x00\\x7f'"),
        (
            "é\u{a0}\u{200b}\u{d7ff}€😀\u{e000}",
            "'é\\xa0\\u200b\\ud7ff€😀\\ue000'",
            "'\\xe9\\xa0\\u200b\\ud7ff\\u20ac\\U0001f600\\ue000'",
        ),
    ];
    for (text, repr, ascii) in cases {
        let mut out = String::new();
        push_py_repr(&mut out, text, false);
        assert_eq!(out, repr);
        out.clear();
        push_py_repr(&mut out, text, true);
        assert_eq!(out, ascii);
    }
    assert!(is_printable('é') && is_printable('€') && !is_printable('\u{10fffd}'));
    assert!(!is_printable('\u{80}') && !is_printable('\u{a0}') && is_printable('\u{a1}'));
}

#[test]
fn formatter_is_send_clone_debug() {
    fn check<T: Send + Clone + std::fmt::Debug>() {}
    check::<Formatter>();
}

// -----------------------------------------------------------------------
// Differential tests against python3

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn py_str(s: &str) -> String {
    format!("H('{}')", hex(s.as_bytes()))
}

fn py_opt(s: Option<&str>) -> String {
    s.map_or("None".into(), py_str)
}

fn py_float(x: f64) -> String {
    format!("F('{:016x}')", x.to_bits())
}

/// A Python dict literal for the LogRecord this hub record stands for.
/// Values Python derives itself (filename, module, created, msecs,
/// relativeCreated) are computed by Python from the raw inputs.
fn py_record(r: &RecordView<'_>, c: &RecordContext<'_>) -> String {
    let path = r.pathname;
    let thread_name = r.thread_name.map_or_else(|| format!("Thread-{}", r.thread), str::to_owned);
    let mut d = vec![
        format!("'name': {}", py_str(r.name)),
        format!("'msg': {}", py_str(r.message)),
        "'args': None".into(),
        format!("'levelname': {}", py_str(&level_name(r.levelno))),
        format!("'levelno': {}", r.levelno),
        format!("'pathname': {}", py_str(path.unwrap_or(UNKNOWN_FILE))),
        match path {
            Some(p) => format!("'filename': os.path.basename({})", py_str(p)),
            None => format!("'filename': {}", py_str(UNKNOWN_FILE)),
        },
        match path {
            Some(p) => format!("'module': os.path.splitext(os.path.basename({}))[0]", py_str(p)),
            None => format!("'module': {}", py_str(UNKNOWN_FILE)),
        },
        "'exc_info': None".into(),
        format!("'exc_text': {}", py_opt(r.exc_text)),
        "'stack_info': None".into(),
        format!("'lineno': {}", r.lineno),
        format!("'funcName': {}", py_str(r.func_name.unwrap_or(UNKNOWN_FUNCTION))),
        format!("'created': {} / 1e9", r.created_ns),
        format!("'msecs': msecs({} / 1e9)", r.created_ns),
        format!("'relativeCreated': ({} / 1e9 - {} / 1e9) * 1000", r.created_ns, c.start_ns),
        format!("'thread': {}", r.thread),
        format!("'threadName': {}", py_str(&thread_name)),
        format!("'processName': {}", py_str(r.process_name.unwrap_or(c.process_name))),
        format!("'process': {}", r.process),
        format!("'hostname': {}", py_str(c.host_name)),
    ];
    for (k, v) in &r.extra {
        let v = match *v {
            ValueRef::Str(s) => py_str(s),
            ValueRef::I64(i) => i.to_string(),
            ValueRef::U64(u) => u.to_string(),
            ValueRef::F64(f) => py_float(f),
            ValueRef::Bool(b) => if b { "True" } else { "False" }.into(),
        };
        d.push(format!("{}: {v}", py_str(k)));
    }
    format!("{{{}}}", d.join(", "))
}

const PY_DRIVER: &str = r#"
import logging, os, struct, sys, time
def H(s): return bytes.fromhex(s).decode('utf-8')
def F(s): return struct.unpack('>d', bytes.fromhex(s))[0]
def msecs(ct): return int((ct - int(ct)) * 1000) + 0.0
exec(sys.stdin.read())
out = []
for fmt, datefmt, style in FMTS:
    try:
        f = logging.Formatter(fmt, datefmt, style)
        if UTC:
            f.converter = time.gmtime
    except Exception as e:
        out.extend(['C ' + str(e).encode().hex()] * len(RECS))
        continue
    for d in RECS:
        r = logging.makeLogRecord(d)
        try:
            out.append('O ' + f.format(r).encode().hex())
        except Exception as e:
            out.append('E ' + str(e).encode().hex())
print('\n'.join(out))
"#;

/// Formats every record with every format in python3; one line per pair:
/// `O <hex>` (output), `E <hex>` (format-time error), `C <hex>` (rejected
/// at construction).
fn run_python(
    records: &[Record],
    c: &[RecordContext<'_>],
    formats: &[(Option<&str>, Option<&str>, Style)],
    utc: bool,
) -> Vec<(char, String)> {
    let mut data = String::new();
    data.push_str(if utc { "UTC = True\n" } else { "UTC = False\n" });
    data.push_str("RECS = [\n");
    for c in c {
        data.push_str(&py_record(c.record, c));
        data.push_str(",\n");
    }
    data.push_str("]\nFMTS = [\n");
    for (f, d, s) in formats {
        data.push_str(&format!("({}, {}, '{}'),\n", py_opt(*f), py_opt(*d), s.as_str()));
    }
    data.push_str("]\n");
    let mut child = match Command::new("python3")
        .args(["-c", PY_DRIVER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => panic!("cannot run python3 ({e}): install python3 (apt-get install python3)"),
    };
    child.stdin.take().unwrap().write_all(data.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "python3 failed: {}\n--- input ---\n{data}",
        String::from_utf8_lossy(&output.stderr)
    );
    let version = Command::new("python3").arg("--version").output().unwrap();
    assert!(
        String::from_utf8_lossy(&version.stdout).starts_with("Python 3.11"),
        "the differential tests pin CPython 3.11 semantics; python3 is {}",
        String::from_utf8_lossy(&version.stdout)
    );
    let lines: Vec<(char, String)> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (kind, payload) = l.split_once(' ').unwrap();
            (kind.chars().next().unwrap(), String::from_utf8(unhex(payload)).unwrap())
        })
        .collect();
    assert_eq!(lines.len(), records.len() * formats.len());
    lines
}

/// Formats in Rust and compares with python3, collecting every mismatch.
fn compare_with_python(records: &[Record], formats: &[(Option<&str>, Option<&str>, Style)], utc: bool) {
    let views: Vec<RecordView<'_>> = records.iter().map(Record::view).collect();
    let contexts: Vec<RecordContext<'_>> = views
        .iter()
        .map(|r| RecordContext {
            record: r,
            peer: PeerCred::UNKNOWN,
            process_name: "MainProcess",
            host_name: "box-1",
            start_ns: START,
            python: false,
        })
        .collect();
    let python = run_python(records, &contexts, formats, utc);
    let mut mismatches = Vec::new();
    let mut compared = 0;
    for (fi, &(fmt, datefmt, style)) in formats.iter().enumerate() {
        let built = Formatter::new(fmt, datefmt, style).map(|f| f.with_utc(utc));
        for (ri, c) in contexts.iter().enumerate() {
            let (kind, py) = &python[fi * records.len() + ri];
            let what = format!("fmt {fmt:?} datefmt {datefmt:?} style {style:?}, record {ri}");
            match &built {
                // We refuse early what Python refuses or fails on every record.
                Err(e) => {
                    if *kind == 'O' {
                        mismatches.push(format!("{what}: rust refused ({e}), python gave {py:?}"));
                    }
                }
                Ok(f) => {
                    let mut out = Vec::new();
                    match (f.clone().format(c, &mut out), kind) {
                        (Ok(()), 'O') => {
                            compared += 1;
                            if out != py.as_bytes() {
                                mismatches.push(format!(
                                    "{what}:\n   rust   {:?}\n   python {py:?}",
                                    String::from_utf8_lossy(&out)
                                ));
                            }
                        }
                        (Err(e), 'E') => {
                            // Same message where we reproduce Python's.
                            if matches!(e, FormatError::MissingField(_) | FormatError::Conversion(_))
                                && e.to_string() != *py
                            {
                                mismatches.push(format!("{what}: rust error {e:?}, python error {py:?}"));
                            }
                        }
                        (result, _) => mismatches.push(format!(
                            "{what}: rust {:?} {:?}, python {kind} {py:?}",
                            result,
                            String::from_utf8_lossy(&out)
                        )),
                    }
                }
            }
        }
    }
    assert!(mismatches.is_empty(), "{} mismatches:\n{}", mismatches.len(), mismatches.join("\n"));
    eprintln!("{compared} outputs identical to python3's, {} pairs in all", python.len());
}

fn diff_records() -> Vec<Record> {
    let mut a = record();
    a.message = "hello wörld".into();
    a.thread = 139_916_334_091_328;
    let mut b = Record::new(25, "x", "it's \"q\" \t tab\u{200b}é");
    b.created_ns = 1_700_000_000_999_999_999;
    b.exc_text = Some("Traceback (most recent call last):\nValueError: boom".into());
    b.process = 1;
    b.extra = vec![
        ("user".into(), Value::I64(5)),
        ("count".into(), Value::F64(1e16)),
        ("ratio".into(), Value::F64(-0.0)),
        ("ok".into(), Value::Bool(false)),
        ("big".into(), Value::I64(i64::MIN)),
    ];
    let mut c = Record::new(50, "deep.er.name", "");
    c.created_ns = -1_500_000_000;
    c.pathname = Some("relative/.hidden".into());
    c.exc_text = Some("tb".into());
    c.lineno = 0;
    c.extra = vec![
        ("user".into(), Value::Str("ünï".into())),
        ("count".into(), Value::F64(f64::NAN)),
        ("ratio".into(), Value::F64(f64::NEG_INFINITY)),
        ("ok".into(), Value::Bool(true)),
        ("big".into(), Value::F64(1e300)),
    ];
    let mut d = Record::new(10, "d", "ends with newline\n");
    d.created_ns = 4_102_444_800_000_500_000;
    d.pathname = Some("C:\\x\\y.py".into());
    d.exc_text = Some("tb".into());
    d.lineno = 65;
    d.process_name = Some("Scratcher-3".into());
    d.thread_name = Some("main".into());
    d.extra = vec![
        ("user".into(), Value::F64(2.5e-7)),
        ("count".into(), Value::U64(1_000_000_007)),
        ("ratio".into(), Value::F64(123456.789)),
        ("ok".into(), Value::Str("yes".into())),
        ("big".into(), Value::F64(0.5)),
    ];
    vec![a, b, c, d]
}

const P: Style = Style::Percent;
const B: Style = Style::Brace;
const D: Style = Style::Dollar;

#[rustfmt::skip]
    const DIFF_FORMATS: &[(Option<&str>, Option<&str>, Style)] = &[
        (None, None, P),
        (None, None, B),
        (None, None, D),
        (Some("%(levelname)-8s %(name)s: %(message)s"), None, P),
        (Some("%(asctime)s %(levelname)s %(message)s"), None, P),
        (Some("%(asctime)s.%(msecs)03d"), Some("%Y-%m-%dT%H:%M:%S"), P),
        (Some("%(asctime)-40s|"), Some("%a %b %d %H:%M:%S %Y %Z %z %j %f %% é %"), P),
        (Some("%(created).3f %(created)s %(created)r %(created)d %(created)e %(created)g"), None, P),
        (Some("%(created).12g|%(created).0g|%(created)#.3g|%(msecs)#g|%(created)#.0f|%(created)#.0e"), None, P),
        (Some("%(msecs)03d|%(msecs)s|%(msecs)5.1f|%(msecs)r"), None, P),
        (Some("%(msecs)x"), None, P),
        (Some("%(relativeCreated)g|%(relativeCreated)s|%(relativeCreated)12.4E|%(relativeCreated)G"), None, P),
        (Some("%(lineno)+05d|%(lineno)-6d|%(lineno) d|%(lineno).4i|%(lineno)u|%(lineno)c|%(lineno)5c"), None, P),
        (Some("%(levelno)#x|%(levelno)#X|%(levelno)#o|%(levelno)x|%(levelno)08.3x|%(levelno)-#8x|"), None, P),
        (Some("%(message)r|%(message)a|%(message).5s|%(message)20s|%(message)-20s|%(message)010s|"), None, P),
        (Some("%(name)r %(funcName)s %(pathname)s %(filename)s %(module)s"), None, P),
        (Some("%(process)d %(processName)s %(thread)d %(threadName)s %(hostname)s"), None, P),
        (Some("%(exc_text)s|%(stack_info)s|%(exc_text)r|%(stack_info)10s|%(msg)s|%(args)s"), None, P),
        (Some("%(user)s %(count)s %(big)s %(ratio)s %(ok)s"), None, P),
        (Some("%(count)d|%(count)i|%(count)+.3d|%(big)d|%(ok)d"), None, P),
        (Some("%(ratio)+08.3f|%(ratio)#g|%(ratio)-10.2e|%(ratio)r|%(ratio) F|%(ratio)05G"), None, P),
        (Some("%(count)x"), None, P),
        (Some("100%% %(message)s %%"), None, P),
        (Some("%(taskName)s %(message)s"), None, P),
        (Some("%(message)s %(name"), None, P),
        (Some("no fields"), None, P),
        (Some("%(message)s %s"), None, P),
        (Some("%(levelname)d"), None, P),
        (Some("%(levelno)5%"), None, P),
        (Some("%(created)ld %(lineno)hd %(levelno)Lx"), None, P),
        (Some("%(message)s %(created)ld %(lineno)hd %(levelno)Lx"), None, P),
        (Some("{levelname:^10}|{lineno:,}|{created:.2e}|{msecs:03.0f}|{lineno:x>6}"), None, B),
        (Some("{asctime} {levelname:<8} {name}: {message}"), None, B),
        (Some("{asctime:>30}"), Some("%d/%m/%y %I:%M %p"), B),
        (Some("{message!r:>30}|{message!a}|{message!s:.3}|{message:^7}|{message:0<9}"), None, B),
        (Some("{lineno:+05d}|{lineno:x<7}|{lineno:#b}|{lineno:_o}|{thread:,}|{thread:_x}|{lineno:%}|{lineno:e}|{lineno:c}"), None, B),
        (Some("{created}|{created:.3}|{created:g}|{created:,.2f}|{created:015,.1f}|{created:n}|{created:E}|{created:>25}"), None, B),
        (Some("{relativeCreated:.2%}|{relativeCreated:=+20,.3f}|{msecs:.0f}|{msecs:#}|{msecs:#.0}|{created:.0}"), None, B),
        (Some("{user} {count} {big} {ratio} {ok}"), None, B),
        (Some("{ok:>5}|{ok!s:>6}|{ok!r}|{ratio:.3}|{ratio:+}|{ratio: .2f}|{ratio:010}|{ratio:,}"), None, B),
        (Some("{count:,}|{count:_}|{count:>12.3f}|{count:012,}|{count:x}"), None, B),
        (Some("{big:,}|{big:_}|{big:e}"), None, B),
        (Some("{exc_text}|{stack_info}|{exc_text!r}|{args}"), None, B),
        (Some("{message:{lineno}}|{levelname:>{levelno}.{lineno}}|"), None, B),
        (Some("{levelname:>{levelno}.{ok}}"), None, B),
        (Some("{{literal}} {message} }}"), None, B),
        (Some("{taskName}"), None, B),
        (Some("{levelname:d}"), None, B),
        (Some("{message:=^20}|{name:*>12}|{levelno:*<+6}|{levelno:^+7}"), None, B),
        (Some("{hostname}/{processName}/{threadName}"), None, B),
        (Some("{0} {message}"), None, B),
        (Some("{message:z>5}|{created:z.2f}"), None, B),
        (Some("$levelname:$name:$message"), None, D),
        (Some("${asctime} $$ ${message}x"), Some("%H:%M"), D),
        (Some("$user $count $ratio $ok $big"), None, D),
        (Some("$taskName"), None, D),
        (Some("$ bare"), None, D),
        (Some("${created}/$msecs/$relativeCreated/$lineno/$exc_text"), None, D),
    ];

#[test]
fn matches_python_in_utc() {
    compare_with_python(&diff_records(), DIFF_FORMATS, true);
}

/// One record per value, each carrying it as the extra `v`.
fn value_records(values: Vec<Value>) -> Vec<Record> {
    values
        .into_iter()
        .map(|v| {
            let mut r = record();
            r.extra = vec![("v".into(), v)];
            r
        })
        .collect()
}

#[rustfmt::skip]
    const FLOAT_FORMATS: &[(Option<&str>, Option<&str>, Style)] = &[
        (Some("%(v)s|%(v)r|%(v)f|%(v).0f|%(v)#.0f|%(v)e|%(v).0e|%(v)#.0e|%(v)E"), None, P),
        (Some("%(v)g|%(v).0g|%(v)#g|%(v).3g|%(v).17g|%(v)#.10G|%(v)+012.3f|%(v) G|%(v)-12.4e|%(v)012g"), None, P),
        (Some("%(v)d|%(v)i|%(v)+.3u|%(v)020d"), None, P),
        (Some("%(v)a|%(v).3s|%(v)10r|%(v).2f%%"), None, P),
        (Some("{v}|{v:.3}|{v:.0}|{v:#}|{v:#.3}|{v:#.0}|{v:g}|{v:.2%}|{v:,.3f}|{v:_}|{v:015,.2f}"), None, B),
        (Some("{v:=+15.3e}|{v:n}|{v:E}|{v:^12.1F}|{v:010}|{v:,}|{v:.20g}|{v:#g}|{v:.1e}|{v:%}|{v: .4}|{v:x<+11.2f}"), None, B),
        (Some("{v!r}|{v!s:>25}|{v!a:.4}|{v:>30,.10f}|{v:0=20.5g}|{v:#.0f}|{v:.0%}"), None, B),
        (Some("$v"), None, D),
        // Precisions past Rust's formatter (65535) and past a double's digits.
        (Some("%(v).1100f|%(v).70000f|%(v).70000e|%(v)#.65536g|%(v).70000%"), None, P),
        (Some("{v:.65536e}|{v:#.70000}"), None, B),
    ];

#[test]
fn matches_python_for_many_floats() {
    let values = [
        0.0,
        -0.0,
        0.1,
        0.5,
        1.5,
        2.5,
        -2.5,
        3.0,
        100.0,
        1e16,
        1e15,
        1234567890123456.0,
        1e17,
        1e22,
        1e-4,
        1e-5,
        9.999999e-5,
        0.00001234,
        123456.789,
        999999.5,
        1e300,
        -1e300,
        5e-324,
        2.2250738585072014e-308,
        1.7976931348623157e308,
        12345678901234567890.0,
        0.30000000000000004,
        1.0 / 3.0,
        -2.0 / 3.0,
        0.125,
        0.375,
        1e-7,
        4.35,
        2.675,
        1e100,
        f64::NAN,
        -f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        6.02214076e23,
    ];
    compare_with_python(&value_records(values.iter().map(|&v| Value::F64(v)).collect()), FLOAT_FORMATS, true);
}

#[rustfmt::skip]
    const INT_FORMATS: &[(Option<&str>, Option<&str>, Style)] = &[
        (Some("%(v)d|%(v)x|%(v)#o|%(v)+08d|%(v).5d|%(v)s|%(v)r|%(v)e|%(v)f|%(v)g|%(v)#X|%(v)-#10x|%(v) d|%(v)#.4x"), None, P),
        (Some("%(v)c|%(v)3c"), None, P),
        (Some("{v:,}|{v:_x}|{v:#_b}|{v:+}|{v: }|{v:010,}|{v:08x}|{v:#010X}|{v:=^12}|{v:e}|{v:%}|{v:n}|{v:.2f}|{v:_}|{v:#o}"), None, B),
        (Some("{v:*>+14,}|{v:0>9}|{v:x<09}|{v:09_}|{v:#_o}|{v!r:>6}|{v!s:.3}|{v:<+8}|{v:-}"), None, B),
        (Some("{v:.3}"), None, B),
        (Some("{v:c}|{v:^5c}"), None, B),
        (Some("{v:s}"), None, B),
        (Some("$v"), None, D),
    ];

#[test]
fn matches_python_for_many_ints_and_bools() {
    let mut values: Vec<Value> =
        [0, -1, 1, 42, 255, 4096, 1234567, -1234567, 0x10FFFF, 0x110000, i64::MIN, i64::MAX]
            .iter()
            .map(|&i| Value::I64(i))
            .collect();
    values.extend([Value::U64(u64::MAX), Value::U64(10_000_000_000), Value::Bool(true), Value::Bool(false)]);
    compare_with_python(&value_records(values), INT_FORMATS, true);
}

#[rustfmt::skip]
    const STR_FORMATS: &[(Option<&str>, Option<&str>, Style)] = &[
        (Some("%(v)s|%(v)r|%(v)a|%(v)5s|%(v)-5.2s|%(v).0s|%(v)08s|%(v)-8r|"), None, P),
        (Some("%(v)c"), None, P),
        (Some("{v!r:^12}|{v:*<6}|{v:.1}|{v!a}|{v:06}|{v:é^7}|{v!s}|{v!r:.2}|{v:<}"), None, B),
        (Some("{v:d}"), None, B),
        (Some("{v:+}"), None, B),
        (Some("{v:=5}"), None, B),
        (Some("{v:,}"), None, B),
        (Some("{v:#}"), None, B),
        (Some("$v|${v}"), None, D),
    ];

#[test]
fn matches_python_for_many_strings() {
    let values = [
        "",
        "a",
        "é",
        "😀",
        "it's",
        "say \"hi\"",
        "both ' and \"",
        "back\\slash",
        "tab\there",
        "nl\nx",
        "\u{200b}zero width",
        "\u{a0}nbsp",
        "\u{7f}\u{1}",
        "\u{e000}private",
        "\u{378}unassigned",
        "\u{2028}line sep",
        "日本語テキスト",
        "a\u{301}combining",
    ];
    compare_with_python(
        &value_records(values.iter().map(|&v| Value::Str(v.into())).collect()),
        STR_FORMATS,
        true,
    );
}

/// Records either side of the 2023 DST changes in the US and Europe.
fn local_time_records() -> Vec<Record> {
    [
        1_678_604_399,
        1_678_604_400,
        1_699_163_999,
        1_699_164_000,
        1_679_792_399,
        1_679_792_400,
        1_698_541_200,
        0,
    ]
    .iter()
    .map(|&s| {
        let mut r = record();
        r.created_ns = s * 1_000_000_000 + 250_000_000;
        r
    })
    .collect()
}

const LOCAL_FORMATS: &[(Option<&str>, Option<&str>, Style)] = &[
    (Some("%(asctime)s %(message)s"), None, P),
    (Some("%(asctime)s"), Some("%Y-%m-%d %H:%M:%S %Z %z %c %s"), P),
    (Some("{asctime}|{created}"), Some("%x %X %p"), B),
    (Some("$asctime"), None, D),
];

#[test]
fn matches_python_in_local_time() {
    // The zone under test is the one this process inherited;
    // `matches_python_in_other_time_zones` runs this test in child
    // processes with TZ set (setting TZ here would race other threads).
    compare_with_python(&local_time_records(), LOCAL_FORMATS, false);
}

#[test]
fn matches_python_in_other_time_zones() {
    let exe = std::env::current_exe().unwrap();
    // The test's name in this binary: its module path without the crate.
    let local = module_path!().split_once("::").map_or(String::new(), |(_, m)| format!("{m}::"))
        + "matches_python_in_local_time";
    for tz in ["EST5EDT,M3.2.0,M11.1.0", "CET-1CEST,M3.5.0,M10.5.0/3", "IST-5:30", "UTC0"] {
        let output = Command::new(&exe)
            .args([local.as_str(), "--exact", "--nocapture", "--test-threads=1"])
            .env("TZ", tz)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("1 passed"),
            "TZ={tz}:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
