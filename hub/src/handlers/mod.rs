//! The handlers: one file each, named after the Python class.
//!
//! Each file holds the handler, its options (the keys of its
//! `[handlers.NAME]` table beyond the common ones) and their parsing; a new
//! handler is one file plus one line in [`CLASSES`]. What a handler is (the
//! trait its worker thread drives, what building one needs) is in
//! `handler.rs`; the network handlers deliver through `delivery/`.

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
pub use rotating_file_handler::RotatingFileHandler;
pub use stream_handler::StreamHandler;
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

use crate::config::common::OverflowPolicy;
use crate::config::keys::Section;
use crate::handler::HandlerOptions;

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

    /// A network handler; see [`crate::config::HandlerConfig::queue_policy`].
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
