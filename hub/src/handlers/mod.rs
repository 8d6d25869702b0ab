//! The handlers: one file each, named after the Python class.
//!
//! Each file holds the handler, its options (the keys of its
//! `[handlers.NAME]` table beyond the common ones) and their parsing; a new
//! handler is one file plus one line in [`CLASSES`].
//!
//! A handler owns its output and its formatter. It runs on its own worker
//! thread (see `worker.rs`), which calls [`Handler::emit`] for each record,
//! [`Handler::flush`] whenever its queue runs dry, [`Handler::poll`] when it
//! asked to be woken ([`Handler::next_due`]), [`Handler::reopen`] on SIGHUP
//! and [`Handler::close`] at shutdown.

mod file_handler;
mod http_handler;
mod memory_handler;
mod nt_event_log_handler;
mod null_handler;
mod python_socket_handler;
mod rotating_file_handler;
mod smtp_handler;
mod stream_handler;
mod syslog_handler;
mod timed_rotating_file_handler;
mod watched_file_handler;

pub use file_handler::FileHandler;
pub(crate) use file_handler::LogFile;
pub use http_handler::{HttpFormat, HttpMethod, HttpOptions};
pub use memory_handler::MemoryHandler;
pub use null_handler::NullHandler;
pub use python_socket_handler::PythonSocketHandler;
pub use rotating_file_handler::RotatingFileHandler;
pub use stream_handler::StreamHandler;
pub use syslog_handler::SysLogHandler;
pub(crate) use syslog_handler::hub_host_name;
pub use timed_rotating_file_handler::TimedRotatingFileHandler;
pub use watched_file_handler::WatchedFileHandler;

pub use file_handler::FileOptions;
pub use memory_handler::MemoryOptions;
pub use nt_event_log_handler::NtEventLogOptions;
pub use null_handler::NullOptions;
pub use python_socket_handler::{PythonAddress, PythonDatagramOptions, PythonSocketOptions};
pub use rotating_file_handler::RotatingFileOptions;
pub use smtp_handler::{SmtpOptions, SmtpTls};
pub use stream_handler::{StdStream, StreamOptions};
pub use syslog_handler::{Framing, SockType, SysLogOptions, SyslogAddress, SyslogFormat};
pub use timed_rotating_file_handler::{Schedule, TimedRotatingFileOptions, When};
pub use watched_file_handler::WatchedFileOptions;

use std::sync::Arc;

use crate::config::keys::Section;
use crate::config::{Config, HandlerConfig, OverflowPolicy};
use crate::formatter::{FormatError, Formatter, RecordContext, Style};
use crate::frame::{Frame, Peer};
use crate::stats::HandlerCounters;

/// Every handler class a configuration may name: its Python name, how its
/// options are read, and its default overflow policy.
pub(crate) const CLASSES: &[Class] = &[
    Class::local::<StreamOptions>("StreamHandler"),
    Class::local::<FileOptions>("FileHandler"),
    Class::local::<RotatingFileOptions>("RotatingFileHandler"),
    Class::local::<TimedRotatingFileOptions>("TimedRotatingFileHandler"),
    Class::local::<WatchedFileOptions>("WatchedFileHandler"),
    Class::local::<MemoryOptions>("MemoryHandler"),
    Class::local::<NullOptions>("NullHandler"),
    Class::network::<SysLogOptions>("SysLogHandler"),
    Class::network::<PythonSocketOptions>("SocketHandler"),
    Class::network::<PythonDatagramOptions>("DatagramHandler"),
    Class::network::<HttpOptions>("HTTPHandler"),
    Class::network::<SmtpOptions>("SMTPHandler"),
    Class::local::<NtEventLogOptions>("NTEventLogHandler"),
];

/// A handler class; see [`CLASSES`].
pub(crate) struct Class {
    /// Python's class name, without `logging.` or `logging.handlers.`.
    pub(crate) name: &'static str,
    /// Reads the class's own keys (config.rs reads the common ones).
    pub(crate) parse: fn(&mut Section<'_>) -> Option<Arc<dyn HandlerOptions>>,
    /// Whether it delivers to a remote through `crate::delivery`: then
    /// `overflow` applies to what it holds for delivery.
    pub(crate) delivers: bool,
}

impl Class {
    /// A handler that writes locally: `overflow` applies to its queue.
    const fn local<T: HandlerOptions>(name: &'static str) -> Class {
        Class { name, parse: parse_as::<T>, delivers: false }
    }

    /// A network handler; see [`HandlerConfig::queue_policy`].
    const fn network<T: HandlerOptions>(name: &'static str) -> Class {
        Class { name, parse: parse_as::<T>, delivers: true }
    }

    /// The policy when `overflow` is not given: a network handler's buffer
    /// drops the newest records when its remote is away (a dead server must
    /// stall nothing); a local handler waits.
    pub(crate) fn default_overflow(&self) -> OverflowPolicy {
        if self.delivers { OverflowPolicy::DropNewest } else { OverflowPolicy::Block }
    }
}

fn parse_as<T: HandlerOptions>(s: &mut Section<'_>) -> Option<Arc<dyn HandlerOptions>> {
    T::parse(s).map(|t| Arc::new(t) as Arc<dyn HandlerOptions>)
}

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
    /// A network handler's delivery options.
    fn delivery(&self) -> Option<&crate::delivery::DeliveryOptions> {
        None
    }
}

/// What building a handler may need besides its own options.
pub struct BuildContext<'a> {
    pub(crate) name: &'a str,
    pub(crate) config: &'a Config,
    pub(crate) handler: &'a HandlerConfig,
    /// Another handler's queue (a MemoryHandler's target).
    pub(crate) queue_of: &'a dyn Fn(&str) -> Option<Arc<dyn Forward>>,
    /// This handler's counters (for handlers that count their deliveries).
    pub(crate) counters: Arc<HandlerCounters>,
}

impl BuildContext<'_> {
    /// The handler's formatter (Python's `%(message)s` when it names none).
    pub(crate) fn formatter(&self) -> Formatter {
        let named = |name: Option<&String>| {
            name.and_then(|f| self.config.formatters.get(f))
                .map(|f| f.formatter.clone())
                .unwrap_or_else(default_formatter)
        };
        let f =
            named(self.handler.formatter.as_ref()).with_control_escapes(self.handler.escape_control_chars);
        match self.config.prepared.get(self.name) {
            // Behind a QueueHandler: its formatter prepares each record.
            Some(queue_formatter) => f.prepared_by(named(queue_formatter.as_ref())),
            None => f,
        }
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

/// Builds configured handler `name`; `queue_of` finds another handler's
/// queue (a MemoryHandler's target), `counters` are its own.
pub(crate) fn build(
    config: &Config,
    name: &str,
    queue_of: &dyn Fn(&str) -> Option<Arc<dyn Forward>>,
    counters: Arc<HandlerCounters>,
) -> Result<Box<dyn Handler>, HandlerError> {
    let handler = &config.handlers[name];
    handler.options.build(&BuildContext { name, config, handler, queue_of, counters })
}

/// Python's default formatter when a handler names none: `%(message)s`.
pub(crate) fn default_formatter() -> Formatter {
    Formatter::new(None, None, Style::Percent).expect("the default format is valid")
}
