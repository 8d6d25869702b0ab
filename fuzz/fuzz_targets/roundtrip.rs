//! Structure-aware: an arbitrary batch encodes and decodes to itself, owned
//! and borrowed.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use logfunnel_protocol::{
    Batch, ClientFrame, ClientFrameView, FrameBuf, Record, Value, decode_client_frame,
    decode_client_frame_view, encode_client_frame,
};

#[derive(Arbitrary, Debug)]
struct In {
    first_seq: u64,
    records: Vec<(i64, u32, String, String, Option<String>, u32, u64, Vec<(String, i64)>)>,
}

fuzz_target!(|input: In| {
    let records: Vec<Record> = input
        .records
        .into_iter()
        .map(|(created_ns, levelno, name, message, pathname, lineno, thread, extra)| Record {
            created_ns,
            levelno,
            pathname,
            lineno,
            thread,
            extra: extra.into_iter().map(|(k, v)| (k, Value::I64(v))).collect(),
            ..Record::new(levelno, name, message)
        })
        .collect();
    let frame = ClientFrame::Batch(Batch { first_seq: input.first_seq, records });
    let mut out = FrameBuf::default();
    if encode_client_frame(&frame, &mut out).is_err() {
        return; // larger than a frame may be
    }
    let payload = &out.as_bytes()[4..];
    assert_eq!(decode_client_frame(payload).expect("decodes"), frame);
    match decode_client_frame_view(payload).expect("decodes as views") {
        ClientFrameView::Batch(seq, views) => {
            let ClientFrame::Batch(b) = &frame else { unreachable!() };
            assert_eq!(seq, b.first_seq);
            assert_eq!(views.len(), b.records.len());
        }
        _ => panic!("not a batch"),
    }
});
