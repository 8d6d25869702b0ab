//! The handlers: one file each, named after the Python class.
//!
//! A handler owns its output and its formatter. It runs on its own worker
//! thread (see `worker.rs`), which calls [`Handler::emit`] for each record,
//! [`Handler::flush`] whenever its queue runs dry, [`Handler::reopen`] on
//! SIGHUP and [`Handler::close`] at shutdown.

mod file_handler;
mod memory_handler;
mod null_handler;
mod rotating_file_handler;
mod stream_handler;
mod timed_rotating_file_handler;
mod watched_file_handler;

pub use file_handler::FileHandler;
pub use memory_handler::MemoryHandler;
pub use null_handler::NullHandler;
pub use rotating_file_handler::RotatingFileHandler;
pub use stream_handler::StreamHandler;
pub use timed_rotating_file_handler::TimedRotatingFileHandler;
pub use watched_file_handler::WatchedFileHandler;

use crate::config::{Config, HandlerConfig, HandlerKind};
use crate::formatter::{FormatError, Formatter, RecordContext, Style};

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
    /// Makes everything emitted so far durable in the output (called when
    /// the handler's queue runs dry, so records are never held back long).
    fn flush(&mut self) -> Result<(), HandlerError>;
    /// Called about twice a second while the queue is idle (and everything
    /// is flushed), for work that should not wait for the next record.
    fn poll(&mut self) -> Result<(), HandlerError> {
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
}

/// Python's default formatter when a handler names none: `%(message)s`.
pub(crate) fn default_formatter() -> Formatter {
    Formatter::new(None, None, Style::Percent).expect("the default format is valid")
}

/// Builds the handler a configuration entry describes; `queue` finds the
/// queue of another handler (a MemoryHandler's target).
pub(crate) fn build(
    config: &Config,
    name: &str,
    handler: &HandlerConfig,
    queue: &dyn Fn(&str) -> Option<std::sync::Arc<crate::worker::HandlerQueue>>,
) -> Result<Box<dyn Handler>, HandlerError> {
    let formatter = handler
        .formatter
        .as_ref()
        .and_then(|f| config.formatters.get(f))
        .map(|f| f.formatter.clone())
        .unwrap_or_else(default_formatter);
    let named = |e: HandlerError| match e {
        HandlerError::Io { context, error } => {
            HandlerError::Io { context: format!("handler {name:?}: {context}"), error }
        }
        other => other,
    };
    Ok(match &handler.kind {
        HandlerKind::Stream { stream } => Box::new(StreamHandler::new(*stream, formatter)),
        HandlerKind::File(f) => {
            Box::new(FileHandler::open(&f.filename, f.append, f.delay, formatter).map_err(named)?)
        }
        HandlerKind::RotatingFile { file, max_bytes, backup_count } => {
            Box::new(RotatingFileHandler::open(file, *max_bytes, *backup_count, formatter).map_err(named)?)
        }
        HandlerKind::TimedRotatingFile { file, schedule } => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            Box::new(TimedRotatingFileHandler::open(file, schedule, formatter, now).map_err(named)?)
        }
        HandlerKind::WatchedFile(file) => Box::new(WatchedFileHandler::open(file, formatter).map_err(named)?),
        HandlerKind::Memory { capacity, flush_level, target, .. } => {
            let target_queue = queue(target).ok_or_else(|| {
                HandlerError::io(
                    format!("handler {name:?}: target {target:?}"),
                    std::io::Error::new(std::io::ErrorKind::NotFound, "no such handler"),
                )
            })?;
            let filters = config.handlers[target]
                .filters
                .iter()
                .filter_map(|f| config.filters.get(f).cloned())
                .collect();
            Box::new(MemoryHandler::new(*capacity, flush_level.0, target_queue, filters))
        }
        HandlerKind::Null => Box::new(NullHandler),
    })
}
