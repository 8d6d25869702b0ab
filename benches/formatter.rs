//! The hub's formatter, per record: the default format with asctime (the
//! date cached per second), Python's default `%(levelname)s:%(name)s:%(message)s`
//! style, and a `{`-style format. Run: `cargo bench --bench formatter`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use logfunnel_hub::formatter::{Formatter, PeerCred, RecordContext, Style};
use logfunnel_protocol::{RecordView, decode_client_frame_view};

#[path = "common.rs"]
mod common;
use common::{DEFAULT_FORMAT, batch_frame};

fn bench(c: &mut Criterion) {
    let (frame, n) = batch_frame(64 << 10);
    let records: Vec<RecordView<'_>> = match decode_client_frame_view(&frame[4..]).unwrap() {
        logfunnel_protocol::ClientFrameView::Batch(_, r) => r,
        _ => unreachable!(),
    };
    let mut g = c.benchmark_group("formatter");
    g.throughput(Throughput::Elements(n));
    let cases = [
        ("design_asctime", DEFAULT_FORMAT, Style::Percent),
        ("python_basic", "%(levelname)s:%(name)s:%(message)s", Style::Percent),
        ("brace_asctime", "{asctime} {levelname:<8} {name} [{process}] {message}", Style::Brace),
    ];
    let mut out = Vec::with_capacity(256 << 10);
    for (name, fmt, style) in cases {
        let mut f = Formatter::new(Some(fmt), None, style).unwrap();
        // Per record, over a 64 KiB batch's records (one per ms: the date
        // changes once per second as in real traffic).
        g.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                for r in &records {
                    let ctx = RecordContext {
                        record: r,
                        peer: PeerCred::UNKNOWN,
                        process_name: "w",
                        host_name: "h",
                        start_ns: 0,
                        python: false,
                    };
                    f.format(black_box(&ctx), &mut out).unwrap();
                    out.push(b'\n');
                }
                out.len()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
