//! `logging.handlers.SocketHandler` and `DatagramHandler`: records to a
//! Python receiver (the logging cookbook's socketserver, or another hub) in
//! Python's own wire format, over TCP, a Unix stream socket, UDP or a Unix
//! datagram socket.
//!
//! Each record is what `makePickle` sends: a 4-byte big-endian length, then
//! the record's `__dict__` pickled at protocol 1 (`msg` the formatted
//! message, `args` and `exc_info` None, `exc_text` the traceback), so the
//! receiver's `logging.makeLogRecord(pickle.loads(...))` rebuilds it
//! unchanged. A datagram holds one such frame, prefix included, as Python's
//! DatagramHandler sends it. Delivery is the shared [`crate::delivery`]
//! layer with Python's reconnect schedule by default (1 s, doubling, at most
//! 30 s); where Python drops every record while it waits to reconnect, these
//! are held (up to the buffer's bounds) or counted.

use std::path::PathBuf;
use std::time::Duration;

use logfunnel_protocol::pickle::dumps_dict;

use crate::config::keys::{Section, show};
use crate::delivery::datagram::{DatagramTransport, Target};
use crate::delivery::link::{Endpoint, Link};
use crate::delivery::spool::{Sender, SenderHandler};
use crate::delivery::stream::StreamTransport;
use crate::delivery::{DeliveryOptions, Encode, Transport};
use crate::formatter::{RecordContext, record_dict};
use crate::handler::{BuildContext, Handler, HandlerError, HandlerOptions};

/// Where records go: Python's `(host, port)`, or `host` alone as a Unix
/// socket path (`port=None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PythonAddress {
    /// A host name or address and a port.
    Inet {
        /// Host.
        host: String,
        /// Port.
        port: u16,
    },
    /// A Unix socket path.
    Unix(PathBuf),
}

/// SocketHandler's and DatagramHandler's options (docs/CONFIG.md).
#[derive(Debug, Clone, PartialEq)]
pub struct PythonSocketOptions {
    /// `host` and `port`.
    pub address: PythonAddress,
    /// `timeout`: for connecting (Python's 1 s).
    pub timeout: Duration,
    /// Batching, buffering and retries (Python's 1 s, ×2, 30 s by default).
    pub delivery: DeliveryOptions,
}

/// DatagramHandler's options: the same keys.
#[derive(Debug, Clone, PartialEq)]
pub struct PythonDatagramOptions(pub PythonSocketOptions);

impl PythonSocketOptions {
    fn read(s: &mut Section<'_>) -> Option<PythonSocketOptions> {
        let host = s.required_string(&["host"], "a host name, or a Unix socket path without port");
        let port = match s.value(&["port"]) {
            None => None,
            Some((key, v)) => match v.as_integer().and_then(|p| u16::try_from(p).ok()).filter(|p| *p > 0) {
                Some(p) => Some(p),
                None => {
                    s.issue(key, format!("expected a port number, found {}", show(v)));
                    return None;
                }
            },
        };
        let timeout = s.seconds(&["timeout"], false).unwrap_or(Duration::from_secs(1));
        // Python's SocketHandler: retryStart 1 s, retryFactor 2, retryMax 30 s.
        let defaults = DeliveryOptions {
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(30),
            ..Default::default()
        };
        let delivery = DeliveryOptions::read(s, defaults);
        let host = host?;
        let address = match port {
            Some(port) => PythonAddress::Inet { host, port },
            None => PythonAddress::Unix(PathBuf::from(host)),
        };
        Some(PythonSocketOptions { address, timeout, delivery })
    }

    fn build_with(
        &self,
        cx: &BuildContext<'_>,
        transport: Box<dyn Transport>,
    ) -> Result<Box<dyn Handler>, HandlerError> {
        Ok(Box::new(SenderHandler::new(Pickler, Sender::new(&self.delivery, cx, transport)?)))
    }
}

impl HandlerOptions for PythonSocketOptions {
    fn parse(s: &mut Section<'_>) -> Option<Self> {
        PythonSocketOptions::read(s)
    }

    fn build(&self, cx: &BuildContext<'_>) -> Result<Box<dyn Handler>, HandlerError> {
        let endpoint = match &self.address {
            PythonAddress::Inet { host, port } => Endpoint::Tcp { host: host.clone(), port: *port },
            PythonAddress::Unix(path) => Endpoint::Unix(path.clone()),
        };
        self.build_with(cx, Box::new(StreamTransport::new(Link::new(endpoint, None, self.timeout), "python")))
    }

    fn disk_buffer(&self) -> bool {
        self.delivery.disk
    }
}

impl HandlerOptions for PythonDatagramOptions {
    fn parse(s: &mut Section<'_>) -> Option<Self> {
        PythonSocketOptions::read(s).map(PythonDatagramOptions)
    }

    fn build(&self, cx: &BuildContext<'_>) -> Result<Box<dyn Handler>, HandlerError> {
        let target = match &self.0.address {
            PythonAddress::Inet { host, port } => Target::Udp { host: host.clone(), port: *port },
            PythonAddress::Unix(path) => Target::Unix(path.clone()),
        };
        self.0.build_with(cx, Box::new(DatagramTransport::new(target)))
    }

    fn disk_buffer(&self) -> bool {
        self.0.delivery.disk
    }
}

/// Python's SocketHandler or DatagramHandler (see the module docs),
/// delivered by a [`SenderHandler`]: `makePickle`, the length prefix and the
/// pickled `__dict__`.
struct Pickler;

impl Encode for Pickler {
    fn encode(&mut self, ctx: &RecordContext<'_>, out: &mut Vec<u8>) -> Result<(), HandlerError> {
        encode(ctx, out)
    }
}

/// `makePickle`: the length prefix and the pickled `__dict__`.
fn encode(ctx: &RecordContext<'_>, out: &mut Vec<u8>) -> Result<(), HandlerError> {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    dumps_dict(&record_dict(ctx), out);
    let len = u32::try_from(out.len() - start - 4).unwrap_or(u32::MAX);
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn host_and_port_read_as_python_writes_them() {
        let opts = |extra: &str| {
            let text = format!("[handlers.s]\nclass = \"logging.handlers.SocketHandler\"\n{extra}\n");
            Config::from_toml_str(&text, "test")
                .map(|c| c.handlers["s"].options::<PythonSocketOptions>().unwrap().clone())
                .map_err(|e| e.issues.iter().map(ToString::to_string).collect::<Vec<_>>())
        };
        let o = opts("host = \"localhost\"\nport = 9020").unwrap();
        assert_eq!(o.address, PythonAddress::Inet { host: "localhost".into(), port: 9020 });
        assert_eq!(
            (o.delivery.retry_initial, o.delivery.retry_max),
            (Duration::from_secs(1), Duration::from_secs(30))
        );
        assert_eq!(
            opts("host = \"/run/py.sock\"").unwrap().address,
            PythonAddress::Unix("/run/py.sock".into())
        );
        let e = opts("host = \"h\"\nport = 70000").unwrap_err();
        assert!(e[0].starts_with("handlers.s.port: expected a port number"), "{e:?}");
        let e = opts("port = 1").unwrap_err();
        assert!(e[0].starts_with("handlers.s.host: missing"), "{e:?}");
    }
}
