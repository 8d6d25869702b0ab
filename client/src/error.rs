use std::time::Duration;

use thiserror::Error;

/// Why the client could not be set up. An inner error is the variant's
/// `source()`: print the chain (anyhow's `{:#}`) for the whole message.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum InitError {
    /// Another logger already owns the `log` facade.
    #[error("another logger is already installed for the `log` crate")]
    AlreadyInstalled(#[from] log::SetLoggerError),
    /// The sender thread could not be started.
    #[error("cannot start the logfunnel sender thread")]
    Spawn(#[source] std::io::Error),
    /// `LOGFUNNEL_LEVEL` (or [`crate::Builder::filter`]) does not parse.
    #[error("{origin}={text:?}: {error} (directives: LEVEL, TARGET=LEVEL or TARGET, comma-separated)")]
    BadFilter {
        /// Where the directives came from (`LOGFUNNEL_LEVEL` or `Builder::filter`).
        origin: &'static str,
        /// The directives as given.
        text: String,
        /// The first bad directive.
        #[source]
        error: crate::DirectiveError,
    },
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

/// Why a one-shot send failed. `NoHub`'s `io::Error` is its `source()`:
/// print the chain (anyhow's `{:#}`) for the whole message.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SendError {
    /// No hub listens on the socket (none appeared within the timeout).
    #[error("no hub answers on {path} (waited {:.1}s)", .waited.as_secs_f64())]
    NoHub {
        /// The socket path tried.
        path: String,
        /// How long it waited for a hub to appear.
        waited: Duration,
        /// What connecting said.
        #[source]
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
