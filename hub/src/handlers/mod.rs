//! The handlers: one file each, named after the Python class.
//!
//! A handler owns its output and its formatter. It runs on its own worker
//! thread (see `worker.rs`), which calls [`Handler::emit`] for each record,
//! [`Handler::flush`] whenever its queue runs dry, [`Handler::reopen`] on
//! SIGHUP and [`Handler::close`] at shutdown.

mod file_handler;
mod null_handler;
mod stream_handler;

pub use file_handler::FileHandler;
pub use null_handler::NullHandler;
pub use stream_handler::StreamHandler;

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
}

/// Something that takes records: Python's `Handler.emit`/`flush`/`close`.
pub trait Handler: Send {
    /// Formats and writes one record (buffered: see `flush`).
    fn emit(&mut self, ctx: &RecordContext<'_>) -> Result<(), HandlerError>;
    /// Makes everything emitted so far durable in the output (called when
    /// the handler's queue runs dry, so records are never held back long).
    fn flush(&mut self) -> Result<(), HandlerError>;
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

/// Builds the handler a configuration entry describes.
pub fn build(config: &Config, name: &str, handler: &HandlerConfig) -> Result<Box<dyn Handler>, HandlerError> {
    let formatter = handler
        .formatter
        .as_ref()
        .and_then(|f| config.formatters.get(f))
        .map(|f| f.formatter.clone())
        .unwrap_or_else(default_formatter);
    Ok(match &handler.kind {
        HandlerKind::Stream { stream } => Box::new(StreamHandler::new(*stream, formatter)),
        HandlerKind::File { filename, append, delay } => {
            Box::new(FileHandler::open(filename, *append, *delay, formatter).map_err(|e| match e {
                HandlerError::Io { context, error } => {
                    HandlerError::Io { context: format!("handler {name:?}: {context}"), error }
                }
                other => other,
            })?)
        }
        HandlerKind::Null => Box::new(NullHandler),
    })
}
