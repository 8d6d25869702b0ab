//! Counters: per handler, per connection and for the hub as a whole.

use std::sync::atomic::{AtomicU64, Ordering};

use logfunnel_protocol::sync::LockExt;

/// A handler's counters (shared between its queue and its worker).
#[derive(Debug, Default)]
pub struct HandlerCounters {
    /// Records accepted into the handler's queue.
    pub received: AtomicU64,
    /// Records the handler wrote.
    pub emitted: AtomicU64,
    /// Records the handler failed to write (I/O or format errors).
    pub failed: AtomicU64,
    /// Records dropped by the queue's overflow policy.
    pub dropped: AtomicU64,
    /// Resent records the output already held (dropped by the journal).
    pub duplicates: AtomicU64,
    /// Failed writes of the delivery journal.
    pub journal_errors: AtomicU64,
    /// Records removed from the queue by drop_oldest (counted in both
    /// `received` and `dropped`).
    pub evicted: AtomicU64,
    /// Records emitted into the handler's buffer since its last flush
    /// (counted as emitted, but not yet in the output).
    pub unflushed: AtomicU64,
    /// Records a network handler holds: taken, not yet delivered or given up.
    pub held: AtomicU64,
    /// Delivery attempts that failed and were scheduled again.
    pub retries: AtomicU64,
    /// Records written to a connection that broke before the peer confirmed
    /// them (counted in `failed` too: they may not have arrived).
    pub unconfirmed: AtomicU64,
    /// Calls into the handler that panicked.
    pub panics: AtomicU64,
    /// The last delivery error and when (ms since the epoch).
    last_error: std::sync::Mutex<Option<(String, u64)>>,
}

/// The most of a handler's last error that `stats` shows.
const LAST_ERROR_BYTES: usize = 1 << 10;

impl HandlerCounters {
    /// Remembers a delivery error for `stats`.
    pub fn set_last_error(&self, message: &str) {
        let now = logfunnel_protocol::now_ns() as u64 / 1_000_000;
        // Errors may quote what a client sent; `stats` must always fit its frame.
        let message = logfunnel_protocol::cut_str(message, LAST_ERROR_BYTES);
        *self.last_error.locked() = Some((message.to_owned(), now));
    }

    /// The last delivery error and when it happened (ms since the epoch).
    pub fn last_error(&self) -> Option<(String, u64)> {
        self.last_error.locked().clone()
    }
}

/// The hub's connection-level counters.
#[derive(Debug, Default)]
pub(crate) struct HubCounters {
    pub(crate) bad_frames: AtomicU64,
    pub(crate) bad_handshakes: AtomicU64,
    pub(crate) truncated_frames: AtomicU64,
    pub(crate) timed_out: AtomicU64,
    pub(crate) refused_peers: AtomicU64,
    pub(crate) over_limit: AtomicU64,
    pub(crate) open: AtomicU64,
    pub(crate) truncated_messages: AtomicU64,
    pub(crate) truncated_fields: AtomicU64,
    pub(crate) python_objects: AtomicU64,
}

pub use logfunnel_protocol::{ConnectionStats, HandlerStats, HubStats};

/// One connection's live counters.
#[derive(Debug)]
pub(crate) struct ConnCounters {
    pub(crate) id: u64,
    pub(crate) pid: u32,
    pub(crate) process_name: String,
    pub(crate) received: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) open: std::sync::atomic::AtomicBool,
}

impl ConnCounters {
    pub(crate) fn new(id: u64, pid: u32, process_name: String) -> ConnCounters {
        ConnCounters {
            id,
            pid,
            process_name,
            received: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            open: std::sync::atomic::AtomicBool::new(true),
        }
    }

    pub(crate) fn snapshot(&self) -> ConnectionStats {
        ConnectionStats {
            id: self.id,
            pid: self.pid,
            process_name: self.process_name.clone(),
            received: load(&self.received),
            duplicates: load(&self.duplicates),
            open: self.open.load(Ordering::Relaxed),
        }
    }
}

pub(crate) fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

pub(crate) fn add(a: &AtomicU64, n: u64) {
    a.fetch_add(n, Ordering::Relaxed);
}

pub(crate) fn sub(a: &AtomicU64, n: u64) {
    // Saturating: a lost buffer may hold the hub's own drop report, which
    // was never counted as emitted.
    let _ = a.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v.saturating_sub(n)));
}
