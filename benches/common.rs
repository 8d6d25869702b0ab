//! Shared by the benches: the record every bench uses.

#![allow(dead_code)]

use logfunnel_protocol::{BatchBuilder, RecordRef, encode_record_ref};

/// The message of the end-to-end bench: about 100 bytes.
pub const MESSAGE: &str =
    "worker 3 processed item 123456 with a message of about one hundred bytes in all, padded out";

/// The embedded default configuration's format (docs/CONFIG.md), with
/// asctime in Python's default date format with ,mmm.
pub const DEFAULT_FORMAT: &str = "%(asctime)s %(levelname)-8s %(name)s [%(process)d] %(message)s";

pub fn record(seq: u64, message: &str) -> RecordRef<'_> {
    RecordRef {
        created_ns: 1_700_000_000_000_000_000 + seq as i64 * 1000,
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

/// A batch frame of about `bytes` of records, as a client's sender builds
/// it; returns (the whole frame with its length prefix, records in it).
pub fn batch_frame(bytes: usize) -> (Vec<u8>, u64) {
    let mut slot = vec![0u8; 4096];
    let mut builder = BatchBuilder::with_capacity(bytes + 4096);
    builder.reset(1);
    let mut n = 0u64;
    while builder.records_len() < bytes {
        let len = encode_record_ref(&record(n, MESSAGE), &mut slot).unwrap();
        builder.push_encoded(&slot[..len]);
        n += 1;
    }
    (builder.finish().unwrap().to_vec(), n)
}
