//! Protocol costs, per record and per 64 KiB batch: encoding one record into
//! a queue slot (what the log call does), building a 64 KiB batch frame from
//! encoded records (what the sender does), and decoding a 64 KiB batch into
//! owned records and into borrowed views (what the hub does).
//! Run: `cargo bench --bench protocol`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use logfunnel_protocol::{BatchBuilder, decode_client_frame, decode_client_frame_view, encode_record_ref};

#[path = "common.rs"]
mod common;
use common::{MESSAGE, batch_frame, record};

fn bench(c: &mut Criterion) {
    let mut slot = vec![0u8; 4096];
    let mut g = c.benchmark_group("protocol");
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode_record", |b| {
        b.iter(|| encode_record_ref(black_box(&record(7, MESSAGE)), &mut slot).unwrap())
    });
    let (frame, n) = batch_frame(64 << 10);
    g.throughput(Throughput::Elements(n));
    // Encode every record of a 64 KiB batch, as log calls do, and frame it.
    let mut builder = BatchBuilder::with_capacity(80 << 10);
    g.bench_function("encode_64k_batch", |b| {
        b.iter(|| {
            builder.reset(1);
            for i in 0..n {
                let len = encode_record_ref(black_box(&record(i, MESSAGE)), &mut slot).unwrap();
                builder.push_encoded(&slot[..len]);
            }
            builder.finish().unwrap().len()
        })
    });
    g.bench_function("decode_64k_batch", |b| b.iter(|| decode_client_frame(black_box(&frame[4..])).unwrap()));
    g.bench_function("decode_64k_batch_view", |b| {
        b.iter(|| decode_client_frame_view(black_box(&frame[4..])).unwrap())
    });
    g.finish();
    eprintln!("(a 64 KiB batch holds {n} records of {} message bytes)", MESSAGE.len());
}

criterion_group!(benches, bench);
criterion_main!(benches);
