//! What the configuration shares with the parts it configures: the limits
//! of a handler's queue, Python's `Filter`, and the overflow policy. A leaf:
//! handlers and the delivery layer read these without importing the
//! configuration (which imports them).

/// A handler queue's default capacity, in records.
pub const DEFAULT_HANDLER_QUEUE: usize = 4096;

/// A handler queue's default capacity, in bytes of the batches its records
/// keep in memory: with large messages, 4096 records would be hundreds of
/// MiB per handler.
pub const DEFAULT_HANDLER_QUEUE_BYTES: usize = 16 << 20;
/// The largest handler queue, in records.
pub const MAX_HANDLER_QUEUE: usize = 1 << 24;
/// The largest handler queue, in bytes.
pub const MAX_HANDLER_QUEUE_BYTES: usize = 1 << 34;

/// Python's `Filter(name)`: passes records of this logger and its children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterConfig {
    /// Logger name prefix ("" passes everything).
    pub name: String,
}

impl FilterConfig {
    /// Python's `Filter.filter` on a record's logger name.
    pub fn passes(&self, record_name: &str) -> bool {
        let n = &self.name;
        n.is_empty()
            || record_name == n
            || (record_name.starts_with(n.as_str()) && record_name.as_bytes()[n.len()] == b'.')
    }
}

/// What a handler does when records arrive faster than it can take them:
/// its queue is full, or (network handlers) what it holds for delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OverflowPolicy {
    /// Wait for room (backpressure up to the clients).
    #[default]
    Block,
    /// Drop the records that do not fit, and count them.
    DropNewest,
    /// Drop the oldest queued records to make room, and count them.
    DropOldest,
}

impl OverflowPolicy {
    /// The policy as the configuration spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            OverflowPolicy::Block => "block",
            OverflowPolicy::DropNewest => "drop_newest",
            OverflowPolicy::DropOldest => "drop_oldest",
        }
    }
}
