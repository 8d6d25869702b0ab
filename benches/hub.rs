//! The hub's per-record path with no I/O: decode a 64 KiB batch into views →
//! route each record through the logger tree → the handler. Two handlers:
//! a NullHandler (pass-through: decode and dispatch only) and one that
//! formats each record with the default format into a reused buffer and
//! throws it away (decode → dispatch → format → null).
//! Run: `cargo bench --bench hub`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use logfunnel_hub::bench_support::Pipeline;
use logfunnel_hub::formatter::{Formatter, RecordContext, Style};
use logfunnel_hub::{Config, Handler, HandlerError};

#[path = "common.rs"]
mod common;
use common::{DEFAULT_FORMAT, batch_frame};

const CONFIG: &str = r#"
[handlers.null]
class = "NullHandler"
[root]
level = "INFO"
handlers = ["null"]
"#;

/// Formats like the FileHandler, into a buffer that is cleared instead of written.
struct FormatToNull {
    formatter: Formatter,
    buf: Vec<u8>,
}

impl Handler for FormatToNull {
    fn emit(&mut self, ctx: &RecordContext<'_>) -> Result<(), HandlerError> {
        self.formatter.format(ctx, &mut self.buf)?;
        self.buf.push(b'\n');
        if self.buf.len() >= 256 << 10 {
            self.buf.clear();
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<(), HandlerError> {
        self.buf.clear();
        Ok(())
    }
}

fn bench(c: &mut Criterion) {
    let (frame, n) = batch_frame(64 << 10);
    let config = Config::from_toml_str(CONFIG, "bench").unwrap();
    let mut g = c.benchmark_group("hub");
    g.throughput(Throughput::Elements(n));

    let mut null = Pipeline::new(&config).unwrap();
    assert_eq!(null.process_frame(&frame[4..]).unwrap(), n);
    g.bench_function("decode_dispatch_null_64k", |b| {
        b.iter(|| null.process_frame(black_box(&frame[4..])).unwrap())
    });

    let mut formatted = Pipeline::new(&config).unwrap();
    let formatter = Formatter::new(Some(DEFAULT_FORMAT), None, Style::Percent).unwrap();
    formatted.set_handler(0, Box::new(FormatToNull { formatter, buf: Vec::with_capacity(300 << 10) }));
    assert_eq!(formatted.process_frame(&frame[4..]).unwrap(), n);
    g.bench_function("decode_dispatch_format_null_64k", |b| {
        b.iter(|| formatted.process_frame(black_box(&frame[4..])).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
