//! The hub's counters as `logfunnel stats` receives them.

use serde::{Deserialize, Serialize};

/// One handler's counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandlerStats {
    /// The handler's name in the configuration.
    pub name: String,
    /// Its class.
    pub class: String,
    /// Records accepted into its queue.
    pub received: u64,
    /// Records written.
    pub emitted: u64,
    /// Records that failed (I/O or format errors).
    pub failed: u64,
    /// Records dropped by the queue's overflow policy.
    pub dropped: u64,
    /// Records queued now.
    pub queue_depth: u64,
}

/// One client connection's counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// The whole hub.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HubStats {
    /// Milliseconds since the hub started.
    pub uptime_ms: u64,
    /// Connections accepted so far.
    pub connections: u64,
    /// Connections refused (bad magic, wrong version, malformed frames).
    pub refused: u64,
    /// Records received from all clients.
    pub received: u64,
    /// Records dropped as duplicates of already-received ones.
    pub duplicates: u64,
    /// Records below their logger's effective level (filtered by the
    /// configuration, not lost).
    pub filtered: u64,
    /// Batches waiting in the listener queue now.
    pub listener_queue_depth: u64,
    /// Per-handler counters.
    pub handlers: Vec<HandlerStats>,
    /// Per-connection counters: open connections and the most recent closed ones.
    pub clients: Vec<ConnectionStats>,
}
