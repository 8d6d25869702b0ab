//! Hostile lengths cost no memory: a counting allocator measures the peak
//! allocation while decoding frames that claim 2^60 elements (bincode can
//! over-allocate on such input even with a limit: bincode issue 764).
//! One test per binary: the counter is process-wide.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use logfunnel_protocol::{
    Batch, ClientFrame, FrameBuf, Record, Value, decode_client_frame, decode_client_frame_view,
    encode_client_frame,
};

struct Counting;
static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let now = CURRENT.fetch_add(l.size(), Ordering::Relaxed) + l.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        CURRENT.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: allocated by `alloc` above with this layout.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// Peak bytes allocated (above what was live before) while running `f`.
fn peak(f: impl FnOnce()) -> usize {
    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    f();
    PEAK.load(Ordering::Relaxed) - base
}

#[test]
fn claimed_lengths_never_drive_allocation() {
    // A batch claiming 2^60 records in 11 bytes.
    let mut bomb = vec![1u8, 1, 253];
    bomb.extend_from_slice(&(1u64 << 60).to_le_bytes());
    // A real record whose `extra` claims 2^60 fields: encode one with an
    // empty extra and patch its count (the last byte) into a huge varint.
    let mut f = FrameBuf::default();
    let rec = Record { extra: vec![], ..Record::new(20, "a", "b") };
    encode_client_frame(&ClientFrame::Batch(Batch { first_seq: 1, records: vec![rec] }), &mut f).unwrap();
    let mut extra_bomb = f.as_bytes()[4..].to_vec();
    assert_eq!(extra_bomb.pop(), Some(0), "extra's count is the last byte");
    extra_bomb.push(253);
    extra_bomb.extend_from_slice(&(1u64 << 60).to_le_bytes());
    for (name, input) in [("records", &bomb), ("extra", &extra_bomb)] {
        let owned = peak(|| assert!(decode_client_frame(input).is_err()));
        let view = peak(|| assert!(decode_client_frame_view(input).is_err()));
        assert!(owned < 4096 && view < 4096, "{name}: a 2^60 claim allocated {owned} / {view} bytes");
    }
    // A legitimate frame allocates in proportion to what it holds.
    let records: Vec<Record> = (0..1000)
        .map(|i| Record {
            extra: vec![("k".into(), Value::I64(i))],
            ..Record::new(20, "app", format!("message {i}"))
        })
        .collect();
    encode_client_frame(&ClientFrame::Batch(Batch { first_seq: 1, records }), &mut f).unwrap();
    let payload = f.as_bytes()[4..].to_vec();
    let used = peak(|| assert!(decode_client_frame_view(&payload).is_ok()));
    assert!(used < 64 * payload.len(), "{used} bytes for a {}-byte frame", payload.len());
}
