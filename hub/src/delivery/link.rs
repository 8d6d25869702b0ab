//! A byte-stream connection that never blocks its handler's worker: TCP or
//! a Unix stream socket, optionally wrapped in TLS (rustls), connected in
//! the background. Every call returns at once: "would block" is an answer
//! (`Ok(0)`, `Ok(false)`), not a wait.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use socket2::{Domain, SockAddr, Socket, Type};

/// Where a network handler connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A host name or address and a port.
    Tcp {
        /// Host name or IP address.
        host: String,
        /// Port.
        port: u16,
    },
    /// A Unix stream socket.
    Unix(PathBuf),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Endpoint::Tcp { host, port } => write!(f, "{host}:{port}"),
            Endpoint::Unix(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Host names resolved off the worker's thread: the system resolver can
/// take seconds when a DNS server is away, and a worker must not wait.
#[derive(Debug)]
pub(crate) struct Resolver {
    host: String,
    port: u16,
    pending: Option<(std::sync::mpsc::Receiver<io::Result<Vec<SocketAddr>>>, Instant)>,
}

impl Resolver {
    pub(crate) fn new(host: &str, port: u16) -> Resolver {
        Resolver { host: host.to_owned(), port, pending: None }
    }

    /// The addresses once known (`Ok(None)`: still resolving); an address
    /// literal needs no lookup.
    pub(crate) fn poll(&mut self, timeout: Duration) -> io::Result<Option<Vec<SocketAddr>>> {
        let bare = self.host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
            return Ok(Some(vec![SocketAddr::new(ip, self.port)]));
        }
        let (rx, since) = self.pending.get_or_insert_with(|| {
            let (tx, rx) = std::sync::mpsc::channel();
            let (host, port) = (self.host.clone(), self.port);
            let spawned = std::thread::Builder::new().name("logfunnel-resolve".into()).spawn(move || {
                let found = (host.as_str(), port).to_socket_addrs().map(|a| a.collect::<Vec<_>>());
                let _ = tx.send(found);
            });
            if let Err(e) = spawned {
                let (tx, rx2) = std::sync::mpsc::channel();
                let _ = tx.send(Err(e));
                return (rx2, Instant::now());
            }
            (rx, Instant::now())
        });
        match rx.try_recv() {
            Ok(result) => {
                self.pending = None;
                let addrs = result?;
                if addrs.is_empty() {
                    return Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("{} has no address", self.host),
                    ));
                }
                Ok(Some(addrs))
            }
            Err(std::sync::mpsc::TryRecvError::Empty) if since.elapsed() <= timeout => Ok(None),
            Err(_) => {
                // The lookup thread finishes on its own; its answer is not waited for.
                self.pending = None;
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("resolving {} took more than {timeout:?}", self.host),
                ))
            }
        }
    }
}

/// TLS settings: whom to trust, what name to expect, and an optional
/// client certificate (for daemons that authenticate their senders).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM file of the certificate authorities to trust; `None` trusts the
    /// system's store.
    pub ca_file: Option<PathBuf>,
    /// The name the server's certificate must carry (default: the host).
    pub server_name: Option<String>,
    /// PEM file of a client certificate chain, with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM file of the client certificate's private key.
    pub key_file: Option<PathBuf>,
}

/// A ready-to-use TLS client configuration.
#[derive(Clone)]
pub(crate) struct Tls {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("name", &self.name).finish()
    }
}

impl TlsOptions {
    /// Loads the certificates and builds the client configuration; errors
    /// name the file that is wrong.
    pub(crate) fn build(&self, host: &str) -> Result<Tls, String> {
        let mut roots = rustls::RootCertStore::empty();
        match &self.ca_file {
            Some(path) => {
                let certs = CertificateDer::pem_file_iter(path)
                    .map_err(|e| format!("tls_ca_file {}: {e}", path.display()))?;
                for cert in certs {
                    let cert = cert.map_err(|e| format!("tls_ca_file {}: {e}", path.display()))?;
                    roots.add(cert).map_err(|e| format!("tls_ca_file {}: {e}", path.display()))?;
                }
                if roots.is_empty() {
                    return Err(format!("tls_ca_file {}: no certificate in it", path.display()));
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                for cert in found.certs {
                    let _ = roots.add(cert);
                }
                if roots.is_empty() {
                    return Err("no trusted certificate in the system's store (set tls_ca_file)".into());
                }
            }
        }
        // The one crypto provider built in (ring; no C toolchain needed).
        let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
        let config = match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => {
                let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                    .and_then(|it| it.collect())
                    .map_err(|e| format!("tls_cert_file {}: {e}", cert.display()))?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| format!("tls_key_file {}: {e}", key.display()))?;
                builder.with_client_auth_cert(chain, key).map_err(|e| format!("client certificate: {e}"))?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => return Err("tls_cert_file and tls_key_file go together".into()),
        };
        let name_text = self.server_name.clone().unwrap_or_else(|| host.to_owned());
        let name = ServerName::try_from(name_text.clone())
            .map_err(|e| format!("tls_server_name {name_text:?}: {e}"))?;
        Ok(Tls { config: Arc::new(config), name })
    }
}

/// What [`Link::peer_state`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peer {
    /// Nothing to say.
    Open,
    /// The peer closed it in order (what it acknowledged, it received).
    Closed,
    /// An error (a reset): the kernel may have dropped what it held.
    Broken,
}

enum State {
    Down,
    Connecting { sock: Socket, since: Instant },
    Up { sock: Socket, tls: Option<Box<rustls::ClientConnection>>, since: Instant },
}

/// One connection to an [`Endpoint`], rebuilt after it fails.
pub(crate) struct Link {
    endpoint: Endpoint,
    tls: Option<Tls>,
    /// Connecting and the TLS handshake must finish within this.
    timeout: Duration,
    state: State,
    /// Addresses to try, and which one is next (a host with several).
    addrs: Vec<SocketAddr>,
    next_addr: usize,
    resolver: Option<Resolver>,
    /// Plaintext and (TLS) ciphertext bytes this connection took, to tell
    /// how much the peer has not confirmed yet.
    plain_out: u64,
    cipher_out: u64,
    /// Ciphertext bytes of the handshake (not data).
    cipher_base: Option<u64>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").field("endpoint", &self.endpoint).field("tls", &self.tls.is_some()).finish()
    }
}

fn would_block(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted)
        || e.raw_os_error() == Some(libc::EINPROGRESS)
}

/// Whether `fd` can be written now (poll with no wait).
fn writable(fd: i32) -> bool {
    let mut p = libc::pollfd { fd, events: libc::POLLOUT, revents: 0 };
    // SAFETY: one valid pollfd, no timeout.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents & (libc::POLLOUT | libc::POLLERR | libc::POLLHUP) != 0
}

impl Link {
    pub(crate) fn new(endpoint: Endpoint, tls: Option<Tls>, timeout: Duration) -> Link {
        let resolver = match &endpoint {
            Endpoint::Tcp { host, port } => Some(Resolver::new(host, *port)),
            Endpoint::Unix(_) => None,
        };
        Link {
            endpoint,
            tls,
            timeout,
            state: State::Down,
            addrs: Vec::new(),
            next_addr: 0,
            resolver,
            plain_out: 0,
            cipher_out: 0,
            cipher_base: None,
        }
    }

    /// How long a connection may take no data (or, for a protocol that
    /// answers, give no answer) before it counts as dead: a peer that
    /// vanished without a word (a half-open connection) or hung.
    pub(crate) fn stall_limit(&self) -> Duration {
        self.timeout * 6
    }

    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    pub(crate) fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Whether a connection is up (handshake done).
    pub(crate) fn is_up(&self) -> bool {
        matches!(&self.state, State::Up { tls, .. } if tls.as_ref().is_none_or(|t| !t.is_handshaking()))
    }

    /// Drops the connection; the next [`Link::ready`] starts a new one.
    pub(crate) fn reset(&mut self) {
        self.state = State::Down;
        self.plain_out = 0;
        self.cipher_out = 0;
        self.cipher_base = None;
    }

    /// Moves towards a usable connection: `Ok(true)` when it is up,
    /// `Ok(false)` while connecting, `Err` when this try failed (the caller
    /// backs off; the next call starts over).
    pub(crate) fn ready(&mut self) -> io::Result<bool> {
        let result = self.step();
        if result.is_err() {
            self.reset();
        }
        result
    }

    fn step(&mut self) -> io::Result<bool> {
        loop {
            match &mut self.state {
                State::Down => match self.start_connect()? {
                    Some(state) => self.state = state,
                    None => return Ok(false),
                },
                State::Connecting { sock, since } => {
                    if !writable(sock.as_raw_fd()) {
                        if since.elapsed() > self.timeout {
                            return Err(io::Error::new(
                                io::ErrorKind::TimedOut,
                                format!("connecting took more than {:?}", self.timeout),
                            ));
                        }
                        return Ok(false);
                    }
                    if let Some(e) = sock.take_error()? {
                        return Err(e);
                    }
                    // Writable without an error can still be a refused
                    // connection on some systems: ask for the peer.
                    sock.peer_addr()?;
                    let sock = match std::mem::replace(&mut self.state, State::Down) {
                        State::Connecting { sock, .. } => sock,
                        _ => unreachable!("matched above"),
                    };
                    let tls = match &self.tls {
                        Some(t) => {
                            let mut c = rustls::ClientConnection::new(Arc::clone(&t.config), t.name.clone())
                                .map_err(io::Error::other)?;
                            // Plaintext rustls holds before the socket takes it.
                            c.set_buffer_limit(Some(256 << 10));
                            Some(Box::new(c))
                        }
                        None => None,
                    };
                    self.plain_out = 0;
                    self.cipher_out = 0;
                    self.cipher_base = None;
                    self.state = State::Up { sock, tls, since: Instant::now() };
                }
                State::Up { sock, tls: Some(tls), since } if tls.is_handshaking() => {
                    let (timeout, started) = (self.timeout, *since);
                    let progressed = drive_tls(sock, tls, &mut self.cipher_out)?;
                    if tls.is_handshaking() {
                        if started.elapsed() > timeout {
                            return Err(io::Error::new(
                                io::ErrorKind::TimedOut,
                                format!("the TLS handshake took more than {timeout:?}"),
                            ));
                        }
                        if !progressed {
                            return Ok(false);
                        }
                    }
                }
                State::Up { .. } => {
                    if self.cipher_base.is_none() {
                        self.cipher_base = Some(self.cipher_out);
                    }
                    return Ok(true);
                }
            }
        }
    }

    /// Starts a connection (`None` while the host name is being resolved).
    fn start_connect(&mut self) -> io::Result<Option<State>> {
        let (sock, addr) = match &self.endpoint {
            Endpoint::Tcp { .. } => {
                if self.next_addr >= self.addrs.len() {
                    let resolver = self.resolver.as_mut().expect("a TCP endpoint has a resolver");
                    match resolver.poll(self.timeout)? {
                        Some(addrs) => self.addrs = addrs,
                        None => return Ok(None),
                    }
                    self.next_addr = 0;
                }
                let addr = self.addrs[self.next_addr];
                self.next_addr += 1;
                let sock = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
                sock.set_tcp_nodelay(true)?;
                (sock, SockAddr::from(addr))
            }
            Endpoint::Unix(path) => (Socket::new(Domain::UNIX, Type::STREAM, None)?, SockAddr::unix(path)?),
        };
        sock.set_nonblocking(true)?;
        sock.set_cloexec(true)?;
        match sock.connect(&addr) {
            Ok(()) => Ok(Some(State::Connecting { sock, since: Instant::now() })),
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {
                Ok(Some(State::Connecting { sock, since: Instant::now() }))
            }
            Err(e) => Err(e),
        }
    }

    /// Writes what the connection takes now; `Ok(0)` means "would block".
    pub(crate) fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let State::Up { sock, tls, .. } = &mut self.state else {
            return Err(io::Error::new(io::ErrorKind::NotConnected, "not connected"));
        };
        let n = match tls {
            None => match (&*sock).write(data) {
                Ok(n) => n,
                Err(e) if would_block(&e) => 0,
                Err(e) => return Err(e),
            },
            Some(tls) => {
                drive_tls(sock, tls, &mut self.cipher_out)?;
                let n = tls.writer().write(data)?;
                drive_tls(sock, tls, &mut self.cipher_out)?;
                n
            }
        };
        self.plain_out += n as u64;
        Ok(n)
    }

    /// Reads what has arrived; `Ok(None)` means "nothing yet", `Ok(Some(0))`
    /// that the peer closed the connection.
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let State::Up { sock, tls, .. } = &mut self.state else {
            return Err(io::Error::new(io::ErrorKind::NotConnected, "not connected"));
        };
        // Acknowledge at once what the peer sent: a peer that answers
        // (RELP) holds its next answers until this one is acknowledged
        // (Nagle), and a delayed ACK would hold them 40 ms.
        if matches!(self.endpoint, Endpoint::Tcp { .. }) {
            let _ = sock.set_tcp_quickack(true);
        }
        match tls {
            None => match (&*sock).read(buf) {
                Ok(n) => Ok(Some(n)),
                Err(e) if would_block(&e) => Ok(None),
                Err(e) => Err(e),
            },
            Some(tls) => {
                let eof = match tls.read_tls(&mut &*sock) {
                    Ok(0) => true,
                    Ok(_) => false,
                    Err(e) if would_block(&e) => false,
                    Err(e) => return Err(e),
                };
                tls.process_new_packets().map_err(io::Error::other)?;
                // Answers the peer's key updates and the like.
                drive_tls(sock, tls, &mut self.cipher_out)?;
                match tls.reader().read(buf) {
                    Ok(n) => Ok(Some(n)),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(if eof { Some(0) } else { None }),
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(Some(0)),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Whether the peer has closed the connection (for protocols in which
    /// the peer never sends anything, such as syslog over TCP: anything it
    /// does send is read and ignored).
    pub(crate) fn peer_state(&mut self) -> Peer {
        let mut scratch = [0u8; 4096];
        loop {
            match self.read(&mut scratch) {
                Ok(None) => return Peer::Open,
                Ok(Some(0)) => return Peer::Closed,
                Ok(Some(_)) => continue,
                Err(_) => return Peer::Broken,
            }
        }
    }

    /// Plaintext bytes written to this connection that the peer has not
    /// confirmed yet (its TCP stack has not acknowledged them, or TLS still
    /// holds them): what a broken connection may have lost.
    pub(crate) fn unconfirmed_bytes(&self) -> u64 {
        let State::Up { sock, tls, .. } = &self.state else { return 0 };
        let mut queued: libc::c_int = 0;
        // SAFETY: SIOCOUTQ (TIOCOUTQ) writes one int: bytes not yet
        // acknowledged by the peer (TCP) or not yet read by it (Unix).
        let ok = unsafe { libc::ioctl(sock.as_raw_fd(), libc::TIOCOUTQ, &mut queued) } == 0;
        let queued = if ok { queued.max(0) as u64 } else { self.plain_out };
        match tls {
            None => queued.min(self.plain_out),
            Some(_) => {
                // rustls encrypts as it takes plaintext: the ciphertext the
                // socket took past the handshake, minus what is still in the
                // kernel, minus TLS's overhead (at most 22 bytes per 16 KiB
                // record; rounded so that the estimate errs towards "not
                // confirmed"), is what the peer confirmed.
                let data = self.cipher_out - self.cipher_base.unwrap_or(self.cipher_out);
                let confirmed = data.saturating_sub(queued);
                let confirmed = confirmed.saturating_sub(confirmed / 700 + 22);
                self.plain_out.saturating_sub(confirmed)
            }
        }
    }

    /// Plaintext bytes this connection has taken so far.
    pub(crate) fn bytes_out(&self) -> u64 {
        self.plain_out
    }

    /// Sends TLS's close_notify (best effort) and drops the connection.
    pub(crate) fn close(&mut self) {
        if let State::Up { sock, tls: Some(tls), .. } = &mut self.state {
            tls.send_close_notify();
            let mut out = 0;
            let _ = drive_tls(sock, tls, &mut out);
        }
        self.reset();
    }
}

/// Moves TLS records both ways as far as the socket allows; returns
/// whether anything moved.
fn drive_tls(sock: &Socket, tls: &mut rustls::ClientConnection, cipher_out: &mut u64) -> io::Result<bool> {
    let mut moved = false;
    while tls.wants_write() {
        match tls.write_tls(&mut &*sock) {
            Ok(0) => break,
            Ok(n) => {
                *cipher_out += n as u64;
                moved = true;
            }
            Err(e) if would_block(&e) => break,
            Err(e) => return Err(e),
        }
    }
    if tls.is_handshaking() && tls.wants_read() {
        match tls.read_tls(&mut &*sock) {
            Ok(0) => {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed during the TLS handshake"));
            }
            Ok(_) => {
                moved = true;
                tls.process_new_packets().map_err(io::Error::other)?;
                while tls.wants_write() {
                    match tls.write_tls(&mut &*sock) {
                        Ok(n) if n > 0 => *cipher_out += n as u64,
                        Ok(_) => break,
                        Err(e) if would_block(&e) => break,
                        Err(e) => return Err(e),
                    }
                }
            }
            Err(e) if would_block(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(moved)
}
