//! Protocol costs: encoding one record into a queue slot, and decoding a
//! 64 KiB batch frame into owned records and into borrowed views (what the
//! hub does). Run: `cargo bench --bench protocol`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use logfunnel_protocol::{
    BatchBuilder, RecordRef, decode_client_frame, decode_client_frame_view, encode_record_ref,
};

fn record(seq: u64, message: &str) -> RecordRef<'_> {
    RecordRef {
        created_ns: 1_700_000_000_000_000_000 + seq as i64,
        levelno: 20,
        name: "app.worker.ingest",
        message,
        pathname: Some("src/worker.rs"),
        lineno: 42,
        func_name: None,
        module_path: Some("app::worker"),
        process: 4242,
        process_name: None,
        thread: 4243,
        thread_name: Some("main"),
        exc_text: None,
        extra: &[],
    }
}

fn bench(c: &mut Criterion) {
    let message =
        "worker 3 processed item 123456 with a message of about one hundred bytes in all, padded out";
    let mut slot = vec![0u8; 4096];
    let mut g = c.benchmark_group("protocol");
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode_record", |b| {
        b.iter(|| encode_record_ref(black_box(&record(7, message)), &mut slot).unwrap())
    });
    let mut builder = BatchBuilder::with_capacity(64 << 10);
    builder.reset(1);
    let mut n = 0u64;
    while builder.records_len() < 64 << 10 {
        let len = encode_record_ref(&record(n, message), &mut slot).unwrap();
        builder.push_encoded(&slot[..len]);
        n += 1;
    }
    let frame = builder.finish().unwrap().to_vec();
    g.throughput(Throughput::Elements(n));
    g.bench_function("decode_64k_batch", |b| b.iter(|| decode_client_frame(black_box(&frame[4..])).unwrap()));
    g.bench_function("decode_64k_batch_view", |b| {
        b.iter(|| decode_client_frame_view(black_box(&frame[4..])).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
