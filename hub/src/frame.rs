//! A client frame's bytes and the records decoded from them, and the reuse
//! of both buffers.
//!
//! The records' strings point into the frame's bytes, which travel with
//! them to the handlers: one allocation per batch instead of one per
//! string, and nothing to free per record. When the last handler is done
//! with a batch, both buffers go back to a pool (at most 16 MiB of each
//! kind) for the connection readers to fill again. Freed instead, 128 KiB
//! buffers would go back to the allocator, which returns their pages to the
//! kernel, and the next frame would fault them in again (see
//! docs/BENCHMARKS.md#buffers-kept-for-reuse).

use std::mem::{ManuallyDrop, size_of};
use std::sync::{Arc, Mutex};

use logfunnel_protocol::sync::{LockExt, WaitExt};
use logfunnel_protocol::{
    ClientFrameView, MAX_MESSAGE_BYTES, MAX_NAME_BYTES, ProtocolError, RecordView, ValueRef, cut_str,
    decode_client_frame_view_in, is_cut_message,
};

use crate::sessions::SettleGuard;

/// Who sent a batch.
#[derive(Debug)]
pub(crate) struct Peer {
    pub(crate) process_name: String,
    pub(crate) host_name: String,
    /// The client's session id (durable handlers drop resends by it).
    pub(crate) session: u64,
    /// The kernel's credentials of the connection.
    pub(crate) creds: crate::formatter::PeerCred,
    /// A Python SocketHandler/DatagramHandler client (see `python_in.rs`).
    pub(crate) python: bool,
}

/// A decoded batch on its way to the handlers.
pub(crate) struct InBatch {
    pub(crate) peer: Arc<Peer>,
    pub(crate) frame: Frame,
    /// Sequence number of `records()[0]` in its client's session; `None`
    /// for records a MemoryHandler passes on (no client's sequence: never
    /// deduplicated or journaled by the handler that receives them).
    pub(crate) first_seq: Option<u64>,
    /// Settles the batch (lets the hub acknowledge it) when every handler
    /// that must write it first has done so; see `sessions.rs`.
    pub(crate) settle: Option<Arc<SettleGuard>>,
    /// Its share of the decoded-memory budget, given back once it is in
    /// the handler queues (see `frame::Budget`).
    pub(crate) ticket: Option<Ticket>,
    /// The records in runs that share a logger name, so that the
    /// dispatcher routes a run at once instead of reading every record on
    /// its own core (computed by the connection reader while they are hot).
    pub(crate) runs: Vec<Run>,
}

/// Records `previous run's end..end` share one logger name; `min_level` is
/// the lowest level among them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Run {
    pub(crate) end: u32,
    pub(crate) min_level: u32,
}

impl InBatch {
    pub(crate) fn new(
        peer: Arc<Peer>,
        frame: Frame,
        first_seq: Option<u64>,
        settle: Option<Arc<SettleGuard>>,
    ) -> InBatch {
        let mut runs: Vec<Run> = Vec::new();
        let records = frame.records();
        let mut start = 0;
        for (i, rec) in records.iter().enumerate() {
            match runs.last_mut() {
                Some(run) if same_str(records[start].name, rec.name) => {
                    run.end = i as u32 + 1;
                    run.min_level = run.min_level.min(rec.levelno);
                }
                _ => {
                    start = i;
                    runs.push(Run { end: i as u32 + 1, min_level: rec.levelno });
                }
            }
        }
        InBatch { peer, frame, first_seq, settle, ticket: None, runs }
    }

    pub(crate) fn records(&self) -> &[RecordView<'_>] {
        self.frame.records()
    }

    /// The bytes this batch keeps in memory.
    pub(crate) fn memory(&self) -> usize {
        self.frame.memory() + self.runs.capacity() * std::mem::size_of::<Run>()
    }
}

/// String equality that first asks whether both are the same bytes (the
/// decoder points consecutive equal logger names at one copy).
#[inline]
pub(crate) fn same_str(a: &str, b: &str) -> bool {
    (std::ptr::eq(a.as_ptr(), b.as_ptr()) && a.len() == b.len()) || a == b
}

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

    /// Holds every field of every record to its limit: names are cut to
    /// [`MAX_NAME_BYTES`], exception text and the text of extra fields to
    /// [`MAX_MESSAGE_BYTES`] (prefixes, at character boundaries: nothing is
    /// copied). Messages keep their length here (the handler's worker cuts
    /// them by the protocol's rule, marker and all). Returns how many
    /// messages are over the limit or were cut by their client, and how many
    /// records had another field cut.
    pub(crate) fn bound_fields(&mut self) -> (u64, u64) {
        let (mut messages, mut fields) = (0, 0);
        self.0.with_dependent_mut(|_, records| {
            let len = |s: Option<&str>| s.map_or(0, str::len);
            for r in records.iter_mut() {
                if r.message.len() > MAX_MESSAGE_BYTES || is_cut_message(r.message) {
                    messages += 1;
                }
                // Almost every record: nothing near a limit, nothing to walk.
                let short = r.name.len() <= MAX_NAME_BYTES
                    && len(r.pathname) <= MAX_NAME_BYTES
                    && len(r.func_name) <= MAX_NAME_BYTES
                    && len(r.module_path) <= MAX_NAME_BYTES
                    && len(r.process_name) <= MAX_NAME_BYTES
                    && len(r.thread_name) <= MAX_NAME_BYTES
                    && len(r.exc_text) <= MAX_MESSAGE_BYTES
                    && r.extra.is_empty();
                if short {
                    continue;
                }
                let mut cut = false;
                let mut bound = |s: &mut &str, max: usize| {
                    if s.len() > max {
                        *s = cut_str(s, max);
                        cut = true;
                    }
                };
                bound(&mut r.name, MAX_NAME_BYTES);
                for s in [
                    &mut r.pathname,
                    &mut r.func_name,
                    &mut r.module_path,
                    &mut r.process_name,
                    &mut r.thread_name,
                ]
                .into_iter()
                .flatten()
                {
                    bound(s, MAX_NAME_BYTES);
                }
                if let Some(exc) = &mut r.exc_text {
                    bound(exc, MAX_MESSAGE_BYTES);
                }
                for (key, value) in &mut r.extra {
                    bound(key, MAX_NAME_BYTES);
                    if let ValueRef::Str(s) = value {
                        bound(s, MAX_MESSAGE_BYTES);
                    }
                }
                fields += u64::from(cut);
            }
        });
        (messages, fields)
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

/// Decoded frames on their way to the handler queues, in bytes: at most
/// [`DECODED_TOTAL`] for the hub and [`DECODED_PER_CONNECTION`] for one
/// connection (always at least one frame). A connection reader reserves the
/// most a frame could decode to before decoding it, keeps what it did
/// decode to, and the dispatcher gives that back once the records are in
/// the handlers' queues (bounded in bytes of their own). A reader that must
/// wait reads nothing more from its client, whose batches wait in its own
/// memory: hostile frames cost their sender, not the hub.
pub(crate) struct Budget {
    used: Mutex<usize>,
    freed: std::sync::Condvar,
}

/// See [`Budget`].
pub(crate) const DECODED_TOTAL: usize = 64 << 20;
/// See [`Budget`].
pub(crate) const DECODED_PER_CONNECTION: usize = 32 << 20;

/// Bytes of the budget held by one frame; given back when dropped.
pub(crate) struct Ticket {
    budget: std::sync::Arc<Budget>,
    conn: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    bytes: usize,
}

impl Budget {
    pub(crate) fn new() -> Budget {
        Budget { used: Mutex::new(0), freed: std::sync::Condvar::new() }
    }

    /// The most a frame of `payload` bytes (held in a buffer of `capacity`)
    /// can decode to: records and fields take at most this many times their
    /// smallest encoding, and never more than the protocol allows.
    pub(crate) fn estimate(payload: usize, capacity: usize) -> usize {
        let per_byte =
            size_of::<RecordView<'_>>().div_ceil(14).max(size_of::<(&str, ValueRef<'_>)>().div_ceil(3));
        capacity + payload.saturating_mul(per_byte).min(logfunnel_protocol::MAX_DECODED_BYTES)
    }

    /// Waits until `bytes` fit the hub's and the connection's share (or
    /// `stop` says the hub is stopping: `None`).
    pub(crate) fn acquire(
        self: &std::sync::Arc<Self>,
        conn: &std::sync::Arc<std::sync::atomic::AtomicUsize>,
        bytes: usize,
        stop: &std::sync::atomic::AtomicBool,
    ) -> Option<Ticket> {
        use std::sync::atomic::Ordering;
        let mut used = self.used.locked();
        loop {
            let mine = conn.load(Ordering::Relaxed);
            let fits_total = *used == 0 || *used + bytes <= DECODED_TOTAL;
            let fits_mine = mine == 0 || mine + bytes <= DECODED_PER_CONNECTION;
            if fits_total && fits_mine {
                *used += bytes;
                conn.fetch_add(bytes, Ordering::Relaxed);
                return Some(Ticket {
                    budget: std::sync::Arc::clone(self),
                    conn: std::sync::Arc::clone(conn),
                    bytes,
                });
            }
            if stop.load(Ordering::Acquire) {
                return None;
            }
            let wait = std::time::Duration::from_millis(100);
            used = self.freed.wait_timeout_locked(used, wait).0;
        }
    }

    /// Bytes held now.
    pub(crate) fn used(&self) -> usize {
        *self.used.locked()
    }
}

impl Ticket {
    /// Gives back all but `bytes` (what the frame did decode to).
    pub(crate) fn shrink_to(&mut self, bytes: usize) {
        if bytes < self.bytes {
            self.give_back(self.bytes - bytes);
            self.bytes = bytes;
        }
    }

    fn give_back(&self, n: usize) {
        let mut used = self.budget.used.locked();
        *used -= n;
        self.conn.fetch_sub(n, std::sync::atomic::Ordering::Relaxed);
        drop(used);
        self.budget.freed.notify_all();
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.give_back(self.bytes);
    }
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
    let mut pool = pool.locked();
    let item = pool.free.pop()?;
    pool.bytes -= size(&item);
    Some(item)
}

/// Keeps `item` for reuse if it holds memory, is not one of the rare big
/// ones, and the pool is within its budget; frees it otherwise.
fn give<T>(pool: &Mutex<Pool<T>>, item: T, size: impl FnOnce(&T) -> usize) {
    let n = size(&item);
    if (1..=KEEP_ONE_MAX).contains(&n) {
        let mut pool = pool.locked();
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
