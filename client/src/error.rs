use std::time::Duration;

use thiserror::Error;

/// Why the client could not be set up.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum InitError {
    /// Another logger already owns the `log` facade.
    #[error("another logger is already installed for the `log` crate")]
    AlreadyInstalled(#[from] log::SetLoggerError),
    /// The sender thread could not be started.
    #[error("cannot start the logfunnel sender thread: {0}")]
    Spawn(std::io::Error),
    /// `LOGFUNNEL_LEVEL` names no level.
    #[error("LOGFUNNEL_LEVEL={0:?} is not a level (use TRACE, DEBUG, INFO, WARN, ERROR or OFF)")]
    BadLevel(String),
}

/// Why a flush did not complete.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum FlushError {
    /// Records were still not acknowledged by the hub when the deadline passed.
    #[error(
        "{unacked} records not yet acknowledged by the hub after {waited:?} (hub unreachable? last error: {last_error})"
    )]
    Timeout {
        /// How long the flush waited.
        waited: Duration,
        /// Records taken from the queue but not acknowledged.
        unacked: u64,
        /// The sender's last connection error, or "none".
        last_error: String,
    },
}

/// Why a one-shot send failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SendError {
    /// No hub listens on the socket.
    #[error("no hub answers on {path}: {error}")]
    NoHub {
        /// The socket path tried.
        path: String,
        /// What connecting said.
        error: std::io::Error,
    },
    /// The hub answered with something unexpected, or refused.
    #[error("hub on {path}: {error}")]
    Protocol {
        /// The socket path.
        path: String,
        /// What went wrong.
        error: logfunnel_protocol::ProtocolError,
    },
}
