//! A client frame's bytes and the records decoded from them, and the reuse
//! of both buffers.
//!
//! The records' strings point into the frame's bytes, which travel with
//! them to the handlers: one allocation per batch instead of one per
//! string, and nothing to free per record. When the last handler is done
//! with a batch, both buffers go back to a pool (at most 16 MiB of each
//! kind) for the connection readers to fill again. Freed instead, 128 KiB
//! buffers went back to the allocator, which returned their pages to the
//! kernel, and the next frame faulted them in again: under a flood that
//! was most of the hub's page faults (null handler, 8 processes: 330 →
//! 308 CPU ns per record once the pages stayed; docs/BENCHMARKS.md).

use std::mem::{ManuallyDrop, size_of};
use std::sync::Mutex;

use logfunnel_protocol::{ClientFrameView, ProtocolError, RecordView, decode_client_frame_view_in};

/// Memory kept for reuse, per kind of buffer: enough for the batches in
/// flight with 64 clients sending 128 KiB frames (one being read per
/// connection, plus the queues').
const KEEP_BYTES: usize = 16 << 20;
/// A buffer larger than this (a rare big frame) is not kept.
const KEEP_ONE_MAX: usize = 1 << 20;

/// Free buffers, and the bytes they hold.
struct Pool<T> {
    free: Vec<T>,
    bytes: usize,
}

static BYTES: Mutex<Pool<Vec<u8>>> = Mutex::new(Pool { free: Vec::new(), bytes: 0 });
static VIEWS: Mutex<Pool<Vec<RecordView<'static>>>> = Mutex::new(Pool { free: Vec::new(), bytes: 0 });

type Views<'a> = Vec<RecordView<'a>>;

self_cell::self_cell!(
    struct Cell {
        owner: Vec<u8>,
        #[covariant]
        dependent: Views,
    }
);

/// What a decoded frame is.
pub(crate) enum Kind {
    /// A batch whose first record has this sequence number.
    Batch(u64),
    Bye,
    /// A Hello or Stats frame, which only opens a connection.
    OutOfPlace,
}

/// A decoded frame: its bytes and the records borrowing from them.
pub(crate) struct Frame(ManuallyDrop<Cell>, usize);

impl Frame {
    /// Decodes `payload` (a frame without its length prefix).
    pub(crate) fn decode(payload: Vec<u8>) -> Result<(Frame, Kind), ProtocolError> {
        let spare = take(&VIEWS, |v| v.capacity() * size_of::<RecordView<'_>>()).unwrap_or_default();
        let mut kind = Kind::OutOfPlace;
        let cell = Cell::try_new(payload, |b| match decode_client_frame_view_in(b, spare)? {
            ClientFrameView::Batch(first_seq, records) => {
                kind = Kind::Batch(first_seq);
                Ok::<_, ProtocolError>(records)
            }
            ClientFrameView::Bye => {
                kind = Kind::Bye;
                Ok(Vec::new())
            }
            ClientFrameView::Hello(_) | ClientFrameView::Stats => {
                kind = Kind::OutOfPlace;
                Ok(Vec::new())
            }
        })?;
        let memory = cell.borrow_owner().capacity() + views_memory(cell.borrow_dependent());
        Ok((Frame(ManuallyDrop::new(cell), memory), kind))
    }

    pub(crate) fn records(&self) -> &[RecordView<'_>] {
        self.0.borrow_dependent()
    }

    /// The bytes this frame holds: its payload and its decoded records.
    pub(crate) fn memory(&self) -> usize {
        self.1
    }

    /// Forgets the first `n` records (already delivered: a resend).
    pub(crate) fn skip(&mut self, n: usize) {
        self.0.with_dependent_mut(|_, records| {
            records.drain(..n.min(records.len()));
        });
    }
}

impl Drop for Frame {
    fn drop(&mut self) {
        // SAFETY: the cell is taken once, here, and never used again.
        let mut cell = unsafe { ManuallyDrop::take(&mut self.0) };
        let views = cell.with_dependent_mut(|_, records| detach(std::mem::take(records)));
        give(&VIEWS, views, |v| v.capacity() * size_of::<RecordView<'_>>());
        give(&BYTES, cell.into_owner(), Vec::capacity);
    }
}

/// The memory of decoded records beyond their frame's bytes.
pub(crate) fn views_memory(records: &Vec<RecordView<'_>>) -> usize {
    let extra = size_of::<(&str, logfunnel_protocol::ValueRef<'_>)>();
    records.capacity() * size_of::<RecordView<'_>>()
        + records.iter().map(|r| r.extra.capacity() * extra).sum::<usize>()
}

/// An empty buffer with room for `len` bytes, reused if one is free.
pub(crate) fn buffer(len: usize) -> Vec<u8> {
    let mut b = take(&BYTES, Vec::capacity).unwrap_or_default();
    b.clear();
    b.reserve_exact(len);
    b
}

/// The allocation of `records`, emptied, without the lifetime of the
/// bytes its records pointed into.
fn detach(mut records: Vec<RecordView<'_>>) -> Vec<RecordView<'static>> {
    records.clear();
    let mut records = ManuallyDrop::new(records);
    // SAFETY: the vector is empty, so nothing in it borrows anything: only
    // its allocation is reused, for a type of the same layout (the two
    // differ in a lifetime only).
    unsafe { Vec::from_raw_parts(records.as_mut_ptr().cast(), 0, records.capacity()) }
}

fn take<T>(pool: &Mutex<Pool<T>>, size: impl FnOnce(&T) -> usize) -> Option<T> {
    let mut pool = pool.lock().unwrap_or_else(|e| e.into_inner());
    let item = pool.free.pop()?;
    pool.bytes -= size(&item);
    Some(item)
}

/// Keeps `item` for reuse if it holds memory, is not one of the rare big
/// ones, and the pool is within its budget; frees it otherwise.
fn give<T>(pool: &Mutex<Pool<T>>, item: T, size: impl FnOnce(&T) -> usize) {
    let n = size(&item);
    if (1..=KEEP_ONE_MAX).contains(&n) {
        let mut pool = pool.lock().unwrap_or_else(|e| e.into_inner());
        if pool.bytes + n <= KEEP_BYTES {
            pool.bytes += n;
            pool.free.push(item);
        }
    }
}

#[cfg(test)]
mod tests {
    use logfunnel_protocol::{BatchBuilder, Level, Record, encode_record_ref};

    use super::*;

    fn payload(messages: &[&str]) -> Vec<u8> {
        let mut builder = BatchBuilder::with_capacity(1 << 12);
        builder.reset(5);
        let mut slot = vec![0u8; 1024];
        for m in messages {
            let rec = Record::new(Level::INFO.0, "app", *m);
            let n = encode_record_ref(&rec.view().as_record_ref(), &mut slot).unwrap();
            builder.push_encoded(&slot[..n]);
        }
        builder.finish().unwrap()[4..].to_vec()
    }

    #[test]
    fn a_frame_decoded_in_reused_buffers_holds_its_own_records() {
        // Decode, drop (the buffers go to the pool), decode another frame:
        // it must hold its own records, whichever buffers it got.
        for round in 0..3 {
            let messages: Vec<String> = (0..50).map(|i| format!("round {round} record {i}")).collect();
            let refs: Vec<&str> = messages.iter().map(String::as_str).collect();
            let mut bytes = buffer(0);
            bytes.extend_from_slice(&payload(&refs));
            let (mut frame, kind) = Frame::decode(bytes).unwrap();
            assert!(matches!(kind, Kind::Batch(5)));
            let got: Vec<&str> = frame.records().iter().map(|r| r.message).collect();
            assert_eq!(got, refs);
            frame.skip(48);
            let got: Vec<&str> = frame.records().iter().map(|r| r.message).collect();
            assert_eq!(got, &refs[48..]);
        }
    }

    #[test]
    fn the_pool_keeps_no_more_than_its_budget_nor_big_buffers() {
        let pool = Mutex::new(Pool { free: Vec::new(), bytes: 0 });
        for _ in 0..(KEEP_BYTES / KEEP_ONE_MAX + 5) {
            give(&pool, Vec::<u8>::with_capacity(KEEP_ONE_MAX), Vec::capacity);
        }
        give(&pool, Vec::<u8>::with_capacity(KEEP_ONE_MAX + 1), Vec::capacity);
        give(&pool, Vec::<u8>::new(), Vec::capacity);
        let kept = pool.lock().unwrap().free.len();
        assert_eq!(kept, KEEP_BYTES / KEEP_ONE_MAX);
        assert_eq!(pool.lock().unwrap().bytes, kept * KEEP_ONE_MAX);
        assert!(take(&pool, Vec::capacity).is_some());
        assert_eq!(pool.lock().unwrap().bytes, (kept - 1) * KEEP_ONE_MAX);
    }

    #[test]
    fn a_bad_frame_is_an_error() {
        let mut bytes = payload(&["x"]);
        bytes.push(0);
        assert!(Frame::decode(bytes).is_err());
    }
}
