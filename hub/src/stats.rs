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

/// A snapshot of one handler's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerStats {
    /// The handler's name in the configuration.
    pub name: String,
    /// Its class.
    pub class: String,
    /// Records accepted into its queue.
    pub received: u64,
    /// Records written.
    pub emitted: u64,
    /// Records that failed.
    pub failed: u64,
    /// Records dropped by the overflow policy.
    pub dropped: u64,
    /// Records queued now.
    pub queue_depth: u64,
}

/// A snapshot of one client connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionStats {
    /// Connection number (in accept order).
    pub id: u64,
    /// The client's pid (as the kernel reports it where possible).
    pub pid: u32,
    /// The client's process name.
    pub process_name: String,
    /// Records received and queued.
    pub received: u64,
    /// Records received again after a reconnect and dropped as duplicates.
    pub duplicates: u64,
    /// Whether the connection is still open.
    pub open: bool,
}

/// A snapshot of the whole hub.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HubStats {
    /// Connections accepted so far.
    pub connections: u64,
    /// Connections refused (bad magic, wrong version, malformed frames).
    pub refused: u64,
    /// Records received from all clients.
    pub received: u64,
    /// Records dropped as duplicates of already-received ones.
    pub duplicates: u64,
    /// Records below their logger's effective level (not a loss: filtered by config).
    pub filtered: u64,
    /// Per-handler counters.
    pub handlers: Vec<HandlerStats>,
    /// Per-connection counters (open connections, and closed ones while recent).
    pub clients: Vec<ConnectionStats>,
}

pub(crate) fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

pub(crate) fn add(a: &AtomicU64, n: u64) {
    a.fetch_add(n, Ordering::Relaxed);
}
