//! Python's own clients: `logging.handlers.SocketHandler` over TCP or a
//! Unix stream socket, `DatagramHandler` over UDP or a Unix datagram socket
//! (the `[hub]` keys `python_tcp`, `python_unix`, `python_udp`,
//! `python_unix_dgram`).
//!
//! Each record arrives as a 4-byte big-endian length and a pickled
//! LogRecord dict (a datagram holds exactly one such frame). The pickle is
//! read by `logfunnel_protocol::pickle`, which runs nothing; the records are
//! encoded as a native batch and take the Rust client's path from there
//! (listener queue, dispatcher, logger tree, handler queues, counters).
//! Python's stream has no handshake, no acknowledgements and no
//! authentication: the Unix socket gets the main socket's protections
//! (mode, group, directory check, uid/gid allowlist), TCP binds where it is
//! told (loopback unless configured otherwise) and trusts anyone who can
//! reach it. A malformed frame is counted (`bad_frames`) and closes its
//! connection; a bad datagram is counted and skipped.

use std::io::{self, Read};
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use logfunnel_protocol::python::record_from_pickle;
use logfunnel_protocol::{Batch, ClientFrame, FrameBuf, MAX_FRAME_BYTES, Record, encode_client_frame};
use toml::Value;

use crate::config::keys::Section;
use crate::formatter::PeerCred;
use crate::frame::Frame;
use crate::frame::{InBatch, Peer};
use crate::stats::{ConnCounters, add};
use crate::{HubError, HubShared};

/// Records gathered into one batch at most (what one read brought in).
const BATCH_RECORDS: usize = 1024;
const POLL: Duration = Duration::from_millis(200);

/// The `[hub]` keys for Python clients.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PythonInputs {
    /// `HOST:PORT` for SocketHandler over TCP.
    pub tcp: Option<String>,
    /// Path of a Unix stream socket for SocketHandler (`port=None`).
    pub unix: Option<PathBuf>,
    /// `HOST:PORT` for DatagramHandler over UDP.
    pub udp: Option<String>,
    /// Path of a Unix datagram socket for DatagramHandler (`port=None`).
    pub unix_dgram: Option<PathBuf>,
}

/// An address as a dictConfig writes it (`["127.0.0.1", 9020]`), as
/// `"HOST:PORT"`, or a bare port (then on loopback).
fn address(v: &Value) -> Option<String> {
    use std::net::ToSocketAddrs;
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Integer(p) => format!("127.0.0.1:{}", u16::try_from(*p).ok()?),
        Value::Array(a) if a.len() == 2 => {
            let host = a[0].as_str()?;
            let port = u16::try_from(a[1].as_integer()?).ok()?;
            if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
        }
        _ => return None,
    };
    text.to_socket_addrs().ok()?.next().map(|_| text)
}

impl PythonInputs {
    /// Reads the keys of the `[hub]` section.
    pub(crate) fn parse(s: &mut Section<'_>) -> PythonInputs {
        const ADDR: &str = "HOST:PORT, [\"HOST\", PORT] or a port (e.g. \"127.0.0.1:9020\")";
        let path = |s: &mut Section<'_>, key: &'static str, p: Option<String>| {
            let p = p.filter(|p| !p.is_empty()).map(PathBuf::from);
            if let Some(Err(e)) = p.as_deref().map(crate::access::check_socket_path) {
                s.issue(key, e);
            }
            p
        };
        let (unix, unix_dgram) = (s.string(&["python_unix"]), s.string(&["python_unix_dgram"]));
        PythonInputs {
            tcp: s.parsed(&["python_tcp"], ADDR, address),
            unix: path(s, "python_unix", unix),
            udp: s.parsed(&["python_udp"], ADDR, address),
            unix_dgram: path(s, "python_unix_dgram", unix_dgram),
        }
    }
}

/// The bound listeners' addresses (a port 0 is given one by the kernel).
#[derive(Debug, Clone, Default)]
pub struct PythonAddrs {
    /// The TCP listener's address.
    pub tcp: Option<std::net::SocketAddr>,
    /// The UDP socket's address.
    pub udp: Option<std::net::SocketAddr>,
}

fn bind_err(address: &str, error: io::Error) -> HubError {
    HubError::Python { address: address.to_owned(), error }
}

/// The bound inputs, before their threads start.
pub(crate) struct Bound {
    tcp: Option<TcpListener>,
    unix: Option<interprocess::local_socket::Listener>,
    udp: Option<(UdpSocket, String)>,
    #[cfg(unix)]
    unix_dgram: Option<(std::os::unix::net::UnixDatagram, PathBuf)>,
    addrs: PythonAddrs,
}

/// Binds every configured input (before the main socket, so that a hub
/// whose socket answers serves its Python clients too).
pub(crate) fn bind(cfg: &PythonInputs, mode: u32, group: Option<&str>) -> Result<Bound, HubError> {
    let mut addrs = PythonAddrs::default();
    let tcp = match &cfg.tcp {
        Some(a) => {
            let l = TcpListener::bind(a).map_err(|e| bind_err(&format!("python_tcp {a}"), e))?;
            addrs.tcp = l.local_addr().ok();
            Some(l)
        }
        None => None,
    };
    let unix = cfg.unix.as_deref().map(|p| crate::listener::bind(p, mode, group)).transpose()?;
    let udp = match &cfg.udp {
        Some(a) => {
            let sock = UdpSocket::bind(a).map_err(|e| bind_err(&format!("python_udp {a}"), e))?;
            addrs.udp = sock.local_addr().ok();
            Some((sock, a.clone()))
        }
        None => None,
    };
    #[cfg(unix)]
    let unix_dgram = match &cfg.unix_dgram {
        Some(p) => Some((bind_unix_dgram(p, mode, group)?, p.clone())),
        None => None,
    };
    Ok(Bound {
        tcp,
        unix,
        udp,
        #[cfg(unix)]
        unix_dgram,
        addrs,
    })
}

impl Bound {
    /// Starts a thread per input.
    pub(crate) fn start(
        self,
        shared: &Arc<HubShared>,
        tx: &Sender<InBatch>,
    ) -> Result<(Vec<JoinHandle<()>>, PythonAddrs), HubError> {
        let mut threads = Vec::new();
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new().name(name.into()).spawn(f).map_err(HubError::Thread)
        };
        if let Some(l) = self.tcp {
            let (s, t) = (Arc::clone(shared), tx.clone());
            threads.push(spawn("logfunnel-py-tcp", Box::new(move || accept_tcp(l, s, t)))?);
        }
        if let Some(l) = self.unix {
            let (s, t) = (Arc::clone(shared), tx.clone());
            threads.push(spawn("logfunnel-py-unix", Box::new(move || accept_unix(l, s, t)))?);
        }
        if let Some((sock, a)) = self.udp {
            let _ = sock.set_read_timeout(Some(POLL));
            let (s, t) = (Arc::clone(shared), tx.clone());
            let name = format!("python udp {a}");
            threads.push(spawn("logfunnel-py-udp", Box::new(move || datagrams(&sock, name, s, t)))?);
        }
        #[cfg(unix)]
        if let Some((sock, path)) = self.unix_dgram {
            let _ = sock.set_read_timeout(Some(POLL));
            let (s, t) = (Arc::clone(shared), tx.clone());
            let name = format!("python unix datagrams {}", path.display());
            threads.push(spawn(
                "logfunnel-py-dgram",
                Box::new(move || {
                    datagrams(&sock, name, s, t);
                    let _ = std::fs::remove_file(path);
                }),
            )?);
        }
        Ok((threads, self.addrs))
    }
}

/// A Unix datagram socket with the main socket's protections: a path in a
/// private directory, never a symlink, a stale socket replaced only when
/// nobody is bound to it, the configured mode and group.
#[cfg(unix)]
fn bind_unix_dgram(
    path: &Path,
    mode: u32,
    group: Option<&str>,
) -> Result<std::os::unix::net::UnixDatagram, HubError> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    use std::os::unix::net::UnixDatagram;
    let shown = format!("python_unix_dgram {}", path.display());
    let refuse = |why: String| bind_err(&shown, io::Error::new(io::ErrorKind::PermissionDenied, why));
    crate::access::check_socket_path(path).map_err(refuse)?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    crate::access::check_private_dir(dir).map_err(refuse)?;
    if let Ok(m) = std::fs::symlink_metadata(path) {
        if !m.file_type().is_socket() {
            return Err(refuse("a file that is not a socket is in the way".into()));
        }
        match UnixDatagram::unbound().and_then(|s| s.connect(path)) {
            Ok(()) => return Err(refuse("another process is bound to it".into())),
            Err(_) => {
                let _ = std::fs::remove_file(path);
            }
        }
    }
    let sock = {
        let _umask = crate::listener::Umask::set(0o177);
        UnixDatagram::bind(path).map_err(|e| bind_err(&shown, e))?
    };
    if let Some(g) = group {
        crate::access::set_group(path, g).map_err(refuse)?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| bind_err(&shown, e))?;
    Ok(sock)
}

fn accept_tcp(l: TcpListener, shared: Arc<HubShared>, tx: Sender<InBatch>) {
    let _ = l.set_nonblocking(true);
    accept_until_stopped(l, &shared, "python_tcp", TcpListener::accept, |readers, (stream, from)| {
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(POLL));
        let peer = Peer {
            process_name: String::new(),
            host_name: from.ip().to_string(),
            session: 0,
            creds: PeerCred::UNKNOWN,
            python: true,
        };
        reader(readers, &shared, &tx, stream, peer, format!("python tcp {from}"));
    });
}

fn accept_unix(l: interprocess::local_socket::Listener, shared: Arc<HubShared>, tx: Sender<InBatch>) {
    use interprocess::local_socket::prelude::*;
    let _ = l.set_nonblocking(interprocess::local_socket::ListenerNonblockingMode::Accept);
    // Dropping the listener at the end unlinks the socket file.
    accept_until_stopped(
        l,
        &shared,
        "python_unix",
        |l| l.accept(),
        |readers, stream| {
            let creds = crate::connection::peer_creds(&stream);
            if !crate::connection::admit_peer(&shared, creds, "a python_unix client") {
                return;
            }
            let _ = stream.set_nonblocking(false);
            let _ = stream.set_recv_timeout(Some(POLL));
            let peer = Peer {
                process_name: String::new(),
                host_name: crate::handlers::hub_host_name(),
                session: 0,
                creds,
                python: true,
            };
            let who = match creds.pid {
                Some(pid) => format!("python unix client (pid {pid})"),
                None => "python unix client".into(),
            };
            reader(readers, &shared, &tx, StreamRead(stream), peer, who);
        },
    );
}

/// Accepts on a non-blocking `listener` (polled every 50 ms) until the hub
/// stops, handing each connection to `start` with the reader threads so
/// far; then closes the listener and waits for the readers.
fn accept_until_stopped<L, S>(
    listener: L,
    shared: &HubShared,
    name: &str,
    accept: impl Fn(&L) -> io::Result<S>,
    mut start: impl FnMut(&mut Vec<JoinHandle<()>>, S),
) {
    let mut readers: Vec<JoinHandle<()>> = Vec::new();
    while !shared.stopping.load(Ordering::Acquire) {
        match accept(&listener) {
            Ok(stream) => start(&mut readers, stream),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => {
                shared.warn_limited("accept errors", &format!("{name} accept failed: {e}"));
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    drop(listener);
    for h in readers {
        let _ = h.join();
    }
}

struct StreamRead(interprocess::local_socket::Stream);

impl Read for StreamRead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.0).read(buf)
    }
}

/// Starts a reader thread for one connection, within `max_connections`.
fn reader<S: Read + Send + 'static>(
    readers: &mut Vec<JoinHandle<()>>,
    shared: &Arc<HubShared>,
    tx: &Sender<InBatch>,
    stream: S,
    peer: Peer,
    who: String,
) {
    let (s, t) = (Arc::clone(shared), tx.clone());
    crate::listener::start_reader(
        readers,
        shared,
        "logfunnel-py",
        |n| format!("refused a Python connection: {n} already connected (max_connections)"),
        move |id| serve_stream(stream, id, Arc::new(peer), who, s, t),
    );
}

/// Turns decoded Python records into a batch on the native path.
struct Sink {
    shared: Arc<HubShared>,
    tx: Sender<InBatch>,
    peer: Arc<Peer>,
    counters: Arc<ConnCounters>,
    decoded: Arc<AtomicUsize>,
    records: Vec<Record>,
    out: FrameBuf,
}

impl Sink {
    fn new(shared: &Arc<HubShared>, tx: &Sender<InBatch>, peer: Arc<Peer>, id: u64, name: String) -> Sink {
        let counters = Arc::new(ConnCounters::new(id, peer.creds.pid.unwrap_or(0), name));
        shared.register_conn(Arc::clone(&counters));
        add(&shared.counters.open, 1);
        Sink {
            shared: Arc::clone(shared),
            tx: tx.clone(),
            peer,
            counters,
            decoded: Arc::new(AtomicUsize::new(0)),
            records: Vec::new(),
            out: FrameBuf::default(),
        }
    }

    /// Decodes one pickled record; `Err` names why it was refused.
    fn take(&mut self, payload: &[u8]) -> Result<(), String> {
        let r = record_from_pickle(payload).map_err(|e| e.to_string())?;
        if r.objects > 0 {
            add(&self.shared.counters.python_objects, u64::from(r.objects));
        }
        self.records.push(r.record);
        Ok(())
    }

    fn full(&self) -> bool {
        self.records.len() >= BATCH_RECORDS
    }

    /// Sends what was gathered; false when the hub is stopping.
    fn flush(&mut self) -> bool {
        if self.records.is_empty() {
            return true;
        }
        let records = std::mem::take(&mut self.records);
        let count = records.len() as u64;
        let batch = ClientFrame::Batch(Batch { first_seq: 0, records });
        if let Err(e) = encode_client_frame(&batch, &mut self.out) {
            add(&self.shared.counters.bad_frames, count);
            self.shared.warn_limited("bad Python records", &format!("cannot re-encode Python records: {e}"));
            return true;
        }
        let payload = self.out.as_bytes()[4..].to_vec();
        let estimate = crate::frame::Budget::estimate(payload.len(), payload.capacity());
        let Some(mut ticket) = self.shared.decoded.acquire(&self.decoded, estimate, &self.shared.stopping)
        else {
            return false;
        };
        let Ok((mut frame, _)) = Frame::decode(payload) else {
            add(&self.shared.counters.bad_frames, count);
            return true;
        };
        ticket.shrink_to(frame.memory());
        let (messages, fields) = frame.bound_fields();
        add(&self.shared.counters.truncated_messages, messages);
        add(&self.shared.counters.truncated_fields, fields);
        add(&self.shared.received, count);
        add(&self.counters.received, count);
        let mut batch = InBatch::new(Arc::clone(&self.peer), frame, None, None);
        batch.ticket = Some(ticket);
        self.tx.send(batch).is_ok()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.counters.open.store(false, Ordering::Relaxed);
        crate::stats::sub(&self.shared.counters.open, 1);
    }
}

/// Reads length-prefixed pickles until the peer closes, breaks the format
/// or the hub stops.
fn serve_stream<S: Read>(
    mut s: S,
    id: u64,
    peer: Arc<Peer>,
    who: String,
    shared: Arc<HubShared>,
    tx: Sender<InBatch>,
) {
    let mut sink = Sink::new(&shared, &tx, peer, id, who.clone());
    let mut buf: Vec<u8> = vec![0; 64 << 10];
    let (mut start, mut end) = (0usize, 0usize);
    let mut partial_since: Option<Instant> = None;
    loop {
        // Every whole frame already read.
        loop {
            let have = end - start;
            if have < 4 {
                break;
            }
            let len = u32::from_be_bytes(buf[start..start + 4].try_into().expect("4 bytes")) as usize;
            if len > MAX_FRAME_BYTES {
                sink.flush();
                add(&shared.counters.bad_frames, 1);
                add(&shared.refused, 1);
                shared.warn_limited(
                    "bad Python records",
                    &format!("{who}: a record of {len} bytes exceeds the limit of {MAX_FRAME_BYTES}; closed"),
                );
                return;
            }
            if have < 4 + len {
                if buf.len() - start < 4 + len {
                    buf.copy_within(start..end, 0);
                    (start, end) = (0, have);
                }
                // Grown as the bytes arrive, never to what the length
                // claims: a thousand connections announcing 8 MiB and
                // sending nothing cost a buffer each, not 8 GiB.
                if end == buf.len() {
                    let grown = (buf.len() * 2).min(4 + len);
                    buf.resize(grown, 0);
                }
                break;
            }
            let r = sink.take(&buf[start + 4..start + 4 + len]);
            start += 4 + len;
            if let Err(why) = r {
                sink.flush();
                add(&shared.counters.bad_frames, 1);
                add(&shared.refused, 1);
                shared.warn_limited("bad Python records", &format!("{who}: refused a record: {why}; closed"));
                return;
            }
            if sink.full() && !sink.flush() {
                return;
            }
        }
        if !sink.flush() {
            return;
        }
        if start == end {
            (start, end) = (0, 0);
        } else if end == buf.len() {
            buf.copy_within(start..end, 0);
            (start, end) = (0, end - start);
        }
        if shared.stopping.load(Ordering::Acquire) {
            return;
        }
        partial_since = if end > start { partial_since.or(Some(Instant::now())) } else { None };
        if let Some(since) = partial_since
            && since.elapsed() >= shared.policy.frame_timeout
        {
            add(&shared.counters.timed_out, 1);
            shared.warn_limited(
                "clients timed out",
                &format!("{who}: {} bytes of a record unfinished after frame_timeout; closed", end - start),
            );
            return;
        }
        match s.read(&mut buf[end..]) {
            Ok(0) => {
                if end > start {
                    // Python's 1 s send timeout can cut a frame short.
                    add(&shared.counters.truncated_frames, 1);
                    shared.warn_limited(
                        "clients that ended mid-frame",
                        &format!(
                            "{who}: ended mid-record ({} bytes dropped; earlier records kept)",
                            end - start
                        ),
                    );
                }
                return;
            }
            Ok(n) => end += n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                shared.warn_limited("lost connections", &format!("{who}: read failed: {e}"));
                return;
            }
        }
    }
}

/// Something datagrams come from (UDP or a Unix datagram socket).
trait Datagrams {
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize>;
    fn set_nonblocking(&self, on: bool) -> io::Result<()>;
}

impl Datagrams for UdpSocket {
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv_from(buf).map(|(n, _)| n)
    }
    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        UdpSocket::set_nonblocking(self, on)
    }
}

#[cfg(unix)]
impl Datagrams for std::os::unix::net::UnixDatagram {
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        std::os::unix::net::UnixDatagram::recv(self, buf)
    }
    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        std::os::unix::net::UnixDatagram::set_nonblocking(self, on)
    }
}

/// One record per datagram: the length prefix, then the pickle. A bad one
/// is counted and skipped (a datagram socket has no connection to close).
fn datagrams<D: Datagrams>(sock: &D, name: String, shared: Arc<HubShared>, tx: Sender<InBatch>) {
    let id = shared.next_conn_id.fetch_add(1, Ordering::Relaxed);
    let peer = Arc::new(Peer {
        process_name: String::new(),
        host_name: crate::handlers::hub_host_name(),
        session: 0,
        creds: PeerCred::UNKNOWN,
        python: true,
    });
    let mut sink = Sink::new(&shared, &tx, peer, id, name.clone());
    let mut buf = vec![0u8; 1 << 16];
    while !shared.stopping.load(Ordering::Acquire) {
        // Blocking (with a timeout) for the first, then whatever else is queued.
        let mut first = true;
        loop {
            let got = sock.recv(&mut buf);
            let n = match got {
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                    ) =>
                {
                    break;
                }
                Err(e) => {
                    shared.warn_limited("lost connections", &format!("{name}: receive failed: {e}"));
                    break;
                }
            };
            if first {
                let _ = sock.set_nonblocking(true);
                first = false;
            }
            let ok = n >= 4 && u32::from_be_bytes(buf[..4].try_into().expect("4 bytes")) as usize == n - 4;
            let r = if ok {
                sink.take(&buf[4..n])
            } else {
                Err(format!("a datagram of {n} bytes whose length prefix does not match"))
            };
            if let Err(why) = r {
                add(&shared.counters.bad_frames, 1);
                shared.warn_limited("bad Python records", &format!("{name}: refused a datagram: {why}"));
            }
            if sink.full() {
                break;
            }
        }
        if !first {
            let _ = sock.set_nonblocking(false);
        }
        if !sink.flush() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn hub(text: &str) -> Result<PythonInputs, Vec<String>> {
        Config::from_toml_str(&format!("[hub]\n{text}\n"), "test")
            .map(|c| c.hub.python.clone())
            .map_err(|e| e.issues.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn addresses_read_as_toml_and_dictconfig_write_them() {
        let p =
            hub("python_tcp = 9020\npython_udp = [\"127.0.0.1\", 9021]\npython_unix = \"/run/a/py.sock\"")
                .unwrap();
        assert_eq!(p.tcp.as_deref(), Some("127.0.0.1:9020"), "a bare port is on loopback");
        assert_eq!(p.udp.as_deref(), Some("127.0.0.1:9021"));
        assert_eq!(p.unix.as_deref(), Some(Path::new("/run/a/py.sock")));
        assert_eq!(hub("python_tcp = \"[::1]:9\"").unwrap().tcp.as_deref(), Some("[::1]:9"));
        let e = hub("python_tcp = \"nowhere\"\npython_udp = 70000\npython_unix = \"@abstract\"").unwrap_err();
        for want in [
            "hub.python_tcp: expected HOST:PORT",
            "hub.python_udp: expected HOST:PORT",
            "hub.python_unix: abstract socket names are refused",
        ] {
            assert!(e.iter().any(|g| g.starts_with(want)), "missing {want:?} in {e:?}");
        }
        let e = hub("python_unix_dgram = \"/run/a/py.dgram\"\nallowed_uids = [0]").unwrap_err();
        assert!(e[0].contains("datagrams carry no peer credentials"), "{e:?}");
    }
}
