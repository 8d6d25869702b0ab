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
    /// Records taken but neither written, failed nor dropped yet (queued or
    /// being written); after a shutdown, what its deadline left undelivered.
    pub undelivered: u64,
    /// Resent records this handler's output already held (dropped by its
    /// delivery journal after a hub restart).
    pub duplicates: u64,
    /// Whether the handler journals its output (exactly-once across a killed hub).
    pub durable: bool,
    /// Bytes of unacknowledged output truncated at start-up (written by a
    /// killed predecessor, resent by the clients).
    pub recovered_truncated_bytes: u64,
    /// Failed writes of its delivery journal.
    pub journal_errors: u64,
    /// Records a network handler holds for delivery (waiting for a batch,
    /// the connection, or a retry).
    pub held: u64,
    /// Delivery attempts that failed and were scheduled again.
    pub retries: u64,
    /// Records written to a connection that broke before the peer
    /// confirmed them (also counted in `failed`).
    pub unconfirmed: u64,
    /// The last delivery error ("" if none).
    pub last_error: String,
    /// When the last delivery error happened, ms since the epoch (0 if none).
    pub last_error_unix_ms: u64,
    /// Calls into the handler that panicked (each counted its record as
    /// failed, if it had one; the handler went on serving).
    pub panics: u64,
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
    /// Connections open now.
    pub open_connections: u64,
    /// Frames refused as malformed (bad length, bad bincode, bad UTF-8,
    /// trailing bytes, out of place); each closed its connection.
    pub bad_frames: u64,
    /// Connections refused at the handshake (wrong magic or version).
    pub bad_handshakes: u64,
    /// Connections that ended in the middle of a frame (the partial frame
    /// was dropped; earlier records were kept).
    pub truncated_frames: u64,
    /// Connections closed for idling or sending too slowly.
    pub timed_out: u64,
    /// Connections refused by the uid/gid allowlist (SO_PEERCRED).
    pub refused_peers: u64,
    /// Connections refused because `max_connections` were open.
    pub over_limit: u64,
    /// Set when a shutdown's deadline passed with records undelivered.
    pub shutdown_incomplete: bool,
    /// Records received from all clients.
    pub received: u64,
    /// Records dropped as duplicates of already-received ones.
    pub duplicates: u64,
    /// Records below their logger's effective level (filtered by the
    /// configuration, not lost).
    pub filtered: u64,
    /// Batches waiting in the listener queue now.
    pub listener_queue_depth: u64,
    /// Messages over the protocol's limit (`MAX_MESSAGE_BYTES`), cut by the
    /// one rule: by their client before sending, or by the hub.
    pub truncated_messages: u64,
    /// Records and Hellos with another field over its limit (a name over
    /// `MAX_NAME_BYTES`, exception text or a field's text over
    /// `MAX_MESSAGE_BYTES`), cut by the hub.
    pub truncated_fields: u64,
    /// Bytes of decoded frames on their way to the handler queues now
    /// (bounded; see the README's "Guarantees").
    pub decoded_bytes: u64,
    /// Objects in Python clients' records (class instances, functions…)
    /// shown as placeholder text instead of being unpickled.
    pub python_objects: u64,
    /// Per-handler counters.
    pub handlers: Vec<HandlerStats>,
    /// Per-connection counters: open connections and the most recent closed ones.
    pub clients: Vec<ConnectionStats>,
}
