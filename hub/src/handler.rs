//! What a handler is: the [`Handler`] trait its worker thread drives, the
//! [`HandlerOptions`] its configuration table is parsed into, what building
//! one needs ([`BuildContext`]), and [`HandlerError`].
//!
//! The bottom of the handler layers: `delivery/` (the toolkit of the
//! network handlers) and `handlers/` (one file per Python class) build on
//! it, `config.rs` parses through the class table in `handlers/`, and
//! `lib.rs` builds handlers from the configuration. Nothing here imports
//! any of them.

use std::sync::Arc;

use crate::config::common::{FilterConfig, OverflowPolicy};
use crate::config::keys::Section;
use crate::formatter::{FormatError, Formatter, RecordContext, Style};
use crate::frame::{Frame, Peer};
use crate::stats::HandlerCounters;

/// A handler class's options: what its `[handlers.NAME]` table says beyond
/// the keys every handler has. Parsed at configuration time (so
/// `check-config` finds every problem), built into a [`Handler`] at start.
pub trait HandlerOptions: std::fmt::Debug + Send + Sync + std::any::Any {
    /// Reads the class's own keys; every problem is recorded in `s`.
    fn parse(s: &mut Section<'_>) -> Option<Self>
    where
        Self: Sized;
    /// Builds the handler (opens its file, …).
    fn build(&self, cx: &BuildContext<'_>) -> Result<Box<dyn Handler>, HandlerError>;
    /// The handler that receives what this one passes on (MemoryHandler's `target`).
    fn target(&self) -> Option<&str> {
        None
    }
    /// The file it writes, if it writes one (two handlers may not share one).
    fn output_file(&self) -> Option<&std::path::Path> {
        None
    }
    /// Whether a network handler keeps what it holds for delivery on disk
    /// (`buffer = "disk"`), which needs the hub's `state_dir` and journal.
    fn disk_buffer(&self) -> bool {
        false
    }
}

/// What building a handler may need besides its own options, resolved
/// from the configuration by `Config::build_handler`: a handler sees its
/// own settings, never the whole configuration.
pub struct BuildContext<'a> {
    pub(crate) name: &'a str,
    /// Its formatter (see [`BuildContext::formatter`]).
    pub(crate) formatter: Formatter,
    /// Whether its table names a formatter (rather than Python's default).
    pub(crate) names_formatter: bool,
    /// Its `overflow` policy.
    pub(crate) overflow: OverflowPolicy,
    /// Where it may keep state across restarts (a disk buffer): `[hub]
    /// state_dir`, only when the journal is on (which makes it durable).
    pub(crate) state_dir: Option<&'a std::path::Path>,
    /// The filters of the handler it passes records on to (a
    /// MemoryHandler's target): Python applies them in the target's `handle`.
    pub(crate) target_filters: Vec<FilterConfig>,
    /// Another handler's queue (a MemoryHandler's target).
    pub(crate) queue_of: &'a dyn Fn(&str) -> Option<Arc<dyn Forward>>,
    /// This handler's counters (for handlers that count their deliveries).
    pub(crate) counters: Arc<HandlerCounters>,
}

impl BuildContext<'_> {
    /// The handler's formatter (Python's `%(message)s` when it names none),
    /// escaping control characters unless told not to, and behind a
    /// QueueHandler prepared by the QueueHandler's formatter.
    pub(crate) fn formatter(&self) -> Formatter {
        self.formatter.clone()
    }

    /// An error that names this handler.
    pub(crate) fn named(&self, e: HandlerError) -> HandlerError {
        match e {
            HandlerError::Io { context, error } => {
                HandlerError::Io { context: format!("handler {:?}: {context}", self.name), error }
            }
            other => other,
        }
    }
}

/// Another handler's queue as a handler that passes records on sees it (a
/// MemoryHandler's target): the one door from the handlers to the worker's
/// plumbing, so that handlers depend on records and formatting only.
pub(crate) trait Forward: Send + Sync {
    /// One more handler will pass records on here (the queue finishes once
    /// every producer has closed).
    fn add_producer(&self);
    /// Passes one batch frame of records from `peer` on, in order. It is not
    /// a client's sequence: the original batches were settled when the
    /// passing handler took them.
    fn forward(&self, peer: Arc<Peer>, frame: Frame);
    /// This producer will pass nothing more.
    fn close(&self);
}

/// Why a handler could not be built or could not write a record.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandlerError {
    /// A file or stream operation failed.
    #[error("{context}: {error}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The error.
        error: std::io::Error,
    },
    /// Writing buffered output failed: the records in that buffer are lost
    /// (counted as failed, never silently).
    #[error("{context}: {error} ({records} buffered records lost)")]
    Write {
        /// What was being written, with the path.
        context: String,
        /// The error.
        error: std::io::Error,
        /// Records that were in the lost buffer.
        records: u64,
    },
    /// Rotating files failed (a rename); the record was still written to
    /// the current file, so nothing is lost, but the rotation did not happen.
    #[error("{context}: {error} (the record was written; rotation skipped)")]
    Rotate {
        /// What was being renamed or removed.
        context: String,
        /// The error.
        error: std::io::Error,
    },
    /// The record does not fit the format string (an extra field is missing).
    #[error(transparent)]
    Format(#[from] FormatError),
    /// A network handler could not deliver (it retries, or has counted
    /// what it gave up on itself).
    #[error("{0}")]
    Delivery(String),
    /// The handler panicked (a bug): the record it was given counts as
    /// failed, and the handler goes on serving.
    #[error("the handler panicked: {0}")]
    Panicked(String),
}

impl HandlerError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> HandlerError {
        HandlerError::Io { context: context.into(), error: source }
    }

    /// Records already accepted by the handler (emit returned Ok) that this
    /// error lost; the worker moves them from "emitted" to "failed".
    pub fn records_lost(&self) -> u64 {
        match self {
            HandlerError::Write { records, .. } => *records,
            _ => 0,
        }
    }

    /// Whether the record this error came with was written anyway.
    pub fn record_kept(&self) -> bool {
        matches!(self, HandlerError::Rotate { .. })
    }

    /// The same write error, also counting the record being emitted (it
    /// was buffered behind the records that were lost).
    pub(crate) fn with_current_record(self) -> HandlerError {
        match self {
            HandlerError::Write { context, error, records } => {
                HandlerError::Write { context, error, records: records + 1 }
            }
            other => other,
        }
    }
}

/// Something that takes records: Python's `Handler.emit`/`flush`/`close`.
pub trait Handler: Send {
    /// Formats and writes one record (buffered: see `flush`).
    fn emit(&mut self, ctx: &RecordContext<'_>) -> Result<(), HandlerError>;
    /// Writes one of the hub's own records (a report of dropped records);
    /// a handler that counts its own deliveries must not count it.
    fn emit_report(&mut self, ctx: &RecordContext<'_>) -> Result<(), HandlerError> {
        self.emit(ctx)
    }
    /// Makes everything emitted so far durable in the output (called when
    /// the handler's queue runs dry, so records are never held back long).
    fn flush(&mut self) -> Result<(), HandlerError>;
    /// Called when [`Handler::next_due`] comes, and about twice a second
    /// while the queue is idle (and everything is flushed), for work that
    /// should not wait for the next record.
    fn poll(&mut self) -> Result<(), HandlerError> {
        Ok(())
    }
    /// When the handler needs [`Handler::poll`] next (a batch's age limit,
    /// a retry), however busy its queue is. Never sleeping in `emit`, a
    /// network handler says here when to come back instead.
    fn next_due(&self) -> Option<std::time::Instant> {
        None
    }
    /// Whether it takes records now. False (a network handler holding all
    /// it may under the `block` policy) leaves them in the queue.
    fn ready(&self) -> bool {
        true
    }
    /// Whether it counts its own records as emitted (when delivered) and
    /// failed, through the counters it was built with. Otherwise the worker
    /// counts a record emitted when `emit` succeeds.
    fn counts_deliveries(&self) -> bool {
        false
    }
    /// Whether it renders records as text (formats or encodes their fields).
    /// Those that do not (NullHandler; MemoryHandler, whose target does)
    /// are given records as they came, without escaping or cutting.
    fn renders(&self) -> bool {
        true
    }
    /// At shutdown, before `close`: deliver what is held until `deadline`.
    fn drain(&mut self, _deadline: std::time::Instant) -> Result<(), HandlerError> {
        Ok(())
    }
    /// Reopens files (SIGHUP, for external log rotation).
    fn reopen(&mut self) -> Result<(), HandlerError> {
        Ok(())
    }
    /// Flushes and releases the output.
    fn close(&mut self) -> Result<(), HandlerError> {
        self.flush()
    }
    /// The file this handler appends to, if a delivery journal can make it
    /// exactly-once across a killed hub (see `journal.rs`): after `flush`,
    /// everything emitted must be in this file, and nothing else may write it.
    fn journal_target(&self) -> Option<&std::path::Path> {
        None
    }
    /// Gives the handler its journal (when it has a journal target), to
    /// announce each file it opens before writing to it (see `journal.rs`).
    fn attach_journal(&mut self, _journal: &crate::journal::Shared) {}
}

/// Python's default formatter when a handler names none: `%(message)s`.
pub(crate) fn default_formatter() -> Formatter {
    Formatter::new(None, None, Style::Percent).expect("the default format is valid")
}
