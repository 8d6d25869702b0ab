//! Structure-aware: any format string, date format and style, and any
//! record, through Python's Formatter as the hub runs it. Construction ends
//! in a formatter or an error; formatting a record ends in text or an
//! error, never a panic, an abort or an allocation past the record bound.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use logfunnel_hub::formatter::{Formatter, PeerCred, RecordContext, Style};
use logfunnel_protocol::{Record, Value};

#[derive(Arbitrary, Debug)]
enum FuzzValue {
    Str(String),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
}

#[derive(Arbitrary, Debug)]
struct In {
    fmt: Option<String>,
    datefmt: Option<String>,
    style: u8,
    utc: bool,
    created_ns: i64,
    levelno: u32,
    name: String,
    message: String,
    pathname: Option<String>,
    lineno: u32,
    func_name: Option<String>,
    process: u32,
    process_name: Option<String>,
    thread: u64,
    thread_name: Option<String>,
    exc_text: Option<String>,
    extra: Vec<(String, FuzzValue)>,
    start_ns: i64,
    /// A Python client's record: the formatter reads Python's own
    /// attributes (created, msecs, relativeCreated…) from its extras.
    python: bool,
}

fuzz_target!(|input: In| {
    let style = match input.style % 3 {
        0 => Style::Percent,
        1 => Style::Brace,
        _ => Style::Dollar,
    };
    let Ok(formatter) = Formatter::new(input.fmt.as_deref(), input.datefmt.as_deref(), style) else { return };
    let mut formatter = formatter.with_utc(input.utc);
    let record = Record {
        created_ns: input.created_ns,
        pathname: input.pathname,
        lineno: input.lineno,
        func_name: input.func_name,
        process: input.process,
        process_name: input.process_name,
        thread: input.thread,
        thread_name: input.thread_name,
        exc_text: input.exc_text,
        extra: input
            .extra
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    FuzzValue::Str(s) => Value::Str(s),
                    FuzzValue::I64(i) => Value::I64(i),
                    FuzzValue::U64(u) => Value::U64(u),
                    FuzzValue::F64(f) => Value::F64(f),
                    FuzzValue::Bool(b) => Value::Bool(b),
                };
                (k, v)
            })
            .collect(),
        ..Record::new(input.levelno, input.name, input.message)
    };
    let view = record.view();
    let ctx = RecordContext {
        record: &view,
        peer: PeerCred::UNKNOWN,
        process_name: "fuzz",
        host_name: "fuzz-host",
        start_ns: input.start_ns,
        python: input.python,
    };
    let mut out = b"kept".to_vec();
    if formatter.format(&ctx, &mut out).is_err() {
        assert_eq!(out, b"kept", "a failed format leaves the buffer as it was");
    }
});
