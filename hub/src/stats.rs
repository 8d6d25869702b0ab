//! Counters: per handler, per connection and for the hub as a whole.

use std::sync::atomic::{AtomicU64, Ordering};

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
}

pub use logfunnel_protocol::{ConnectionStats, HandlerStats, HubStats};

/// One connection's live counters.
#[derive(Debug)]
pub(crate) struct ConnCounters {
    pub(crate) id: u64,
    pub(crate) pid: AtomicU64,
    pub(crate) process_name: std::sync::Mutex<String>,
    pub(crate) received: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) open: std::sync::atomic::AtomicBool,
}

impl ConnCounters {
    pub(crate) fn new(id: u64, pid: Option<u32>) -> ConnCounters {
        ConnCounters {
            id,
            pid: AtomicU64::new(pid.unwrap_or(0) as u64),
            process_name: std::sync::Mutex::new(String::new()),
            received: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            open: std::sync::atomic::AtomicBool::new(true),
        }
    }

    pub(crate) fn snapshot(&self) -> ConnectionStats {
        ConnectionStats {
            id: self.id,
            pid: load(&self.pid) as u32,
            process_name: self.process_name.lock().unwrap_or_else(|e| e.into_inner()).clone(),
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
