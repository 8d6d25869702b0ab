//! A client frame's bytes and the records decoded from them, and the reuse
//! of both buffers.
//!
//! The records' strings point into the frame's bytes, which travel with
//! them to the handlers: one allocation per batch instead of one per
//! string, and nothing to free per record. When the last handler is done
//! with a batch, both buffers go back to a small pool for the connection
//! readers to fill again. Freed instead, 128 KiB buffers went back to the
//! allocator, which returned their pages to the kernel, and the next frame
//! faulted them in again: under a flood that was a page fault per 4 KiB
//! received (measured: 5.2 → 5.6 M records/s with 8 processes once the
//! pages stayed; docs/BENCHMARKS.md).

use std::mem::ManuallyDrop;
use std::sync::Mutex;

use logfunnel_protocol::{ClientFrameView, ProtocolError, RecordView, decode_client_frame_view_in};

/// Buffers of each kind kept for reuse: enough for the batches in flight
/// with 64 clients (one being read per connection, plus the queues').
const KEEP: usize = 96;
/// A buffer larger than this (a rare big frame) is not kept.
const KEEP_BYTES_MAX: usize = 1 << 20;

static BYTES: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
static VIEWS: Mutex<Vec<Vec<RecordView<'static>>>> = Mutex::new(Vec::new());

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
pub(crate) struct Frame(ManuallyDrop<Cell>);

impl Frame {
    /// Decodes `payload` (a frame without its length prefix).
    pub(crate) fn decode(payload: Vec<u8>) -> Result<(Frame, Kind), ProtocolError> {
        let spare = take(&VIEWS).unwrap_or_default();
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
        Ok((Frame(ManuallyDrop::new(cell)), kind))
    }

    pub(crate) fn records(&self) -> &[RecordView<'_>] {
        self.0.borrow_dependent()
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
        give(&VIEWS, views, |v| v.capacity() > 0);
        give(&BYTES, cell.into_owner(), |b| (1..=KEEP_BYTES_MAX).contains(&b.capacity()));
    }
}

/// An empty buffer with room for `len` bytes, reused if one is free.
pub(crate) fn buffer(len: usize) -> Vec<u8> {
    let mut b = take(&BYTES).unwrap_or_default();
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

fn take<T>(pool: &Mutex<Vec<T>>) -> Option<T> {
    pool.lock().unwrap_or_else(|e| e.into_inner()).pop()
}

fn give<T>(pool: &Mutex<Vec<T>>, item: T, keep: impl FnOnce(&T) -> bool) {
    if keep(&item) {
        let mut pool = pool.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < KEEP {
            pool.push(item);
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
    fn a_bad_frame_is_an_error() {
        let mut bytes = payload(&["x"]);
        bytes.push(0);
        assert!(Frame::decode(bytes).is_err());
    }
}
