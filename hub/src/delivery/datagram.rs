//! One datagram per record: UDP, or a Unix datagram socket (`/dev/log`).
//!
//! A datagram is delivered once the kernel takes it. UDP gives no word of
//! loss at all (nor does Python's handler); a Unix datagram socket at least
//! refuses when nobody listens (retried) and blocks when the reader is slow
//! (waited for). A datagram too large for the socket is refused for good and
//! counted as failed, alone: the records around it carry on.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use socket2::{Domain, SockAddr, Socket, Type};

use super::link::{Endpoint, Link, Resolver};
use super::stream::StreamTransport;
use super::{Attempt, OutBatch, Transport};

/// Where datagrams go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// UDP to a host and port.
    Udp {
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
    },
    /// A Unix datagram socket.
    Unix(PathBuf),
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct DatagramTransport {
    target: Target,
    resolver: Option<Resolver>,
    sock: Option<(Socket, SockAddr)>,
}

/// How long a host name may take to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);

impl DatagramTransport {
    pub(crate) fn new(target: Target) -> DatagramTransport {
        let resolver = match &target {
            Target::Udp { host, port } => Some(Resolver::new(host, *port)),
            Target::Unix(_) => None,
        };
        DatagramTransport { target, resolver, sock: None }
    }

    /// The socket (`Ok(None)` while the host name is being resolved).
    fn open(&mut self) -> io::Result<Option<&(Socket, SockAddr)>> {
        if self.sock.is_none() {
            let (sock, addr) = match &self.target {
                Target::Udp { .. } => {
                    let resolver = self.resolver.as_mut().expect("a UDP target has a resolver");
                    let Some(addrs) = resolver.poll(RESOLVE_TIMEOUT)? else { return Ok(None) };
                    let addr: SocketAddr = addrs[0];
                    (Socket::new(Domain::for_address(addr), Type::DGRAM, None)?, SockAddr::from(addr))
                }
                Target::Unix(path) => (Socket::new(Domain::UNIX, Type::DGRAM, None)?, SockAddr::unix(path)?),
            };
            sock.set_nonblocking(true)?;
            sock.set_cloexec(true)?;
            self.sock = Some((sock, addr));
        }
        Ok(self.sock.as_ref())
    }
}

impl Transport for DatagramTransport {
    fn attempt(&mut self, batch: &mut OutBatch) -> Attempt {
        while !batch.is_settled() {
            let sent = match self.open() {
                Ok(Some((sock, addr))) => sock.send_to(batch.record(batch.done()), addr),
                Ok(None) => return Attempt::Wait,
                Err(e) => return Attempt::Retry(e.to_string()),
            };
            match sent {
                Ok(_) => batch.advance(1),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Attempt::Wait,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => batch.reject_next(),
                Err(e) => {
                    // No listener (ENOENT, ECONNREFUSED), a network down…:
                    // a new socket next time, as Python's handler makes.
                    self.sock = None;
                    return Attempt::Retry(e.to_string());
                }
            }
        }
        Attempt::Done
    }

    fn describe(&self) -> String {
        match &self.target {
            Target::Udp { host, port } => {
                format!("udp {}", Endpoint::Tcp { host: host.clone(), port: *port })
            }
            Target::Unix(p) => format!("unix datagram {}", p.display()),
        }
    }
}

/// A Unix socket path whose type is not configured: Python's SysLogHandler
/// tries a datagram socket and falls back to a stream socket when the path
/// is one (EPROTOTYPE); this finds out at the first connection and keeps
/// the answer.
#[derive(Debug)]
pub(crate) struct UnixAuto {
    path: PathBuf,
    timeout: Duration,
    found: Option<Box<dyn TransportDebug>>,
}

/// A transport that can be shown in `Debug` output.
pub(crate) trait TransportDebug: Transport + std::fmt::Debug {}
impl<T: Transport + std::fmt::Debug> TransportDebug for T {}

impl UnixAuto {
    pub(crate) fn new(path: PathBuf, timeout: Duration) -> UnixAuto {
        UnixAuto { path, timeout, found: None }
    }

    fn probe(&self) -> io::Result<Box<dyn TransportDebug>> {
        let sock = Socket::new(Domain::UNIX, Type::DGRAM, None)?;
        match sock.connect(&SockAddr::unix(&self.path)?) {
            Ok(()) => Ok(Box::new(DatagramTransport::new(Target::Unix(self.path.clone())))),
            Err(e) if e.raw_os_error() == Some(libc::EPROTOTYPE) => {
                let link = Link::new(Endpoint::Unix(self.path.clone()), None, self.timeout);
                Ok(Box::new(StreamTransport::new(link, "unix stream")))
            }
            Err(e) => Err(e),
        }
    }
}

impl Transport for UnixAuto {
    fn attempt(&mut self, batch: &mut OutBatch) -> Attempt {
        if self.found.is_none() {
            match self.probe() {
                Ok(t) => self.found = Some(t),
                Err(e) => return Attempt::Retry(e.to_string()),
            }
        }
        self.found.as_mut().expect("found above").attempt(batch)
    }

    fn take_unconfirmed(&mut self) -> u64 {
        self.found.as_mut().map_or(0, |t| t.take_unconfirmed())
    }

    fn idle(&mut self) {
        if let Some(t) = &mut self.found {
            t.idle();
        }
    }

    fn close(&mut self) {
        if let Some(t) = &mut self.found {
            t.close();
        }
    }

    fn describe(&self) -> String {
        match &self.found {
            Some(t) => t.describe(),
            None => format!("unix {}", self.path.display()),
        }
    }
}
