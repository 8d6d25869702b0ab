//! One client connection: handshake, then frames → listener queue → acks.
//!
//! A reader owns its connection. It refuses a stranger (wrong magic) or an
//! incompatible client (wrong version) with a reason, drops records it has
//! already taken from this client session (a client resends what was not
//! acknowledged after a reconnect), and acknowledges a batch once it is
//! settled (see `sessions.rs`): written and journaled by durable handlers,
//! queued by the others. It closes peers the allowlist refuses before reading
//! a byte, and clients that idle or trickle. Any error ends this connection
//! only: other clients never notice.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use interprocess::local_socket::Stream;
use interprocess::local_socket::prelude::*;
use logfunnel_protocol::{
    ClientFrame, FrameBuf, HubFrame, MAX_FRAME_BYTES, MAX_NAME_BYTES, PROTOCOL_VERSION, Preamble,
    ProtocolError, cut_str, decode_client_frame, encode_hub_frame,
};

use crossbeam_channel::Sender;

use crate::HubShared;
use crate::formatter::PeerCred;
use crate::frame::{Frame, Kind};
use crate::frame::{InBatch, Peer};
use crate::sessions::{self, SettleGuard};
use crate::stats::{ConnCounters, HubCounters, add};

const POLL: Duration = Duration::from_millis(200);
const PROBE: &str = "closed before the handshake";
/// How often a reader with unacknowledged batches looks for newly settled ones.
const ACK_POLL_MS: i32 = 2;

pub(crate) fn serve(stream: Stream, id: u64, shared: Arc<HubShared>, tx: Sender<InBatch>) {
    let creds = peer_creds(&stream);
    let peer_pid = creds.pid;
    // Open-connection count, however this ends.
    add(&shared.counters.open, 1);
    struct Open<'a>(&'a HubShared);
    impl Drop for Open<'_> {
        fn drop(&mut self) {
            crate::stats::sub(&self.0.counters.open, 1);
        }
    }
    let _open = Open(&shared);
    let who = match peer_pid {
        Some(pid) => format!("connection {id} (pid {pid})"),
        None => format!("connection {id}"),
    };
    // Decided on the kernel's word before a byte of the client is read.
    if !shared.policy.admits(creds.uid, creds.gid) {
        add(&shared.counters.refused_peers, 1);
        add(&shared.refused, 1);
        let show = |v: Option<u32>| v.map_or("?".to_owned(), |v| v.to_string());
        shared.warn_limited(
            "peers refused by allowed_uids/allowed_gids",
            &format!(
                "refused {who}: uid {} gid {} pid {} is not in allowed_uids/allowed_gids",
                show(creds.uid),
                show(creds.gid),
                show(creds.pid)
            ),
        );
        return;
    }
    let _ = stream.set_recv_timeout(Some(POLL));
    let _ = stream.set_send_timeout(Some(Duration::from_secs(5)));
    // Small at first: an idle client costs little; the buffer grows to the
    // largest frame this client sends (bounded by MAX_FRAME_BYTES).
    let mut conn = Conn {
        stream,
        buf: vec![0; 1 << 10],
        start: 0,
        end: 0,
        frame: None,
        frame_len: 0,
        out: FrameBuf::default(),
    };
    match session(&mut conn, &shared, &tx, &who, creds, id) {
        Ok(()) => {}
        Err(Ended::Refused(reason, counter)) => {
            add(&shared.refused, 1);
            add(counter(&shared.counters), 1);
            shared.warn_limited("refused clients", &format!("refused {who}: {reason}"));
        }
        Err(Ended::Stopping) => {}
        // A connection that closes before sending a byte is a liveness probe
        // (a second hub checking the socket, or our own shutdown wake-up).
        Err(Ended::Lost(reason)) if reason == PROBE => {}
        Err(Ended::TimedOut(reason)) => {
            add(&shared.counters.timed_out, 1);
            shared.warn_limited("clients timed out", &format!("{who}: {reason}"));
        }
        Err(Ended::Truncated(reason)) => {
            add(&shared.counters.truncated_frames, 1);
            shared.warn_limited("clients that ended mid-frame", &format!("{who}: {reason}"));
        }
        Err(Ended::Lost(reason)) => shared.warn_limited("lost connections", &format!("{who}: {reason}")),
    }
}

type Counter = fn(&HubCounters) -> &std::sync::atomic::AtomicU64;

fn bad_frame(c: &HubCounters) -> &std::sync::atomic::AtomicU64 {
    &c.bad_frames
}

fn bad_handshake(c: &HubCounters) -> &std::sync::atomic::AtomicU64 {
    &c.bad_handshakes
}

enum Ended {
    /// The client broke the protocol; it was told why (and which counter says so).
    Refused(String, Counter),
    /// The client idled, or sent too slowly.
    TimedOut(String),
    /// The client went away in the middle of a frame.
    Truncated(String),
    /// The connection failed or ended mid-frame.
    Lost(String),
    /// The hub is shutting down.
    Stopping,
}

struct Conn {
    stream: Stream,
    /// Bytes read; `buf[start..end]` is not yet consumed.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// A batch frame being read straight into its own buffer (what has
    /// arrived is `len()`, of `frame_len` bytes), so that the frame is
    /// never copied out of `buf`.
    frame: Option<Vec<u8>>,
    frame_len: usize,
    out: FrameBuf,
}

/// `buf`'s size once a client sends frames larger than it: the bytes that
/// arrive after a frame (the next one's start) land here and are copied.
const TAIL_BYTES: usize = 4 << 10;

impl Conn {
    /// Reads more bytes; `Ok(false)` on end of stream. Timeouts return
    /// `Ok(true)` with nothing new, so the caller can check for shutdown.
    fn fill(&mut self) -> io::Result<bool> {
        if self.frame.is_some() {
            return self.fill_frame();
        }
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                // Only a frame larger than the buffer gets here, and its
                // length was already checked against the limit.
                let grown = (self.buf.len() * 2).min(MAX_FRAME_BYTES + 4);
                self.buf.resize(grown, 0);
            }
        }
        match (&self.stream).read(&mut self.buf[self.end..]) {
            Ok(n) => {
                self.end += n;
                Ok(n > 0)
            }
            Err(e) => match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted => Ok(true),
                _ => Err(e),
            },
        }
    }

    fn available(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Bytes received that are not yet a whole frame (a frame being read
    /// counts its 4-byte length too).
    fn partial(&self) -> usize {
        self.frame.as_ref().map_or(0, |f| 4 + f.len()) + self.available().len()
    }

    /// Reads the rest of the frame in `self.frame` into its own buffer,
    /// and what follows it (up to `buf`'s free space) into `buf`, in one
    /// call.
    fn fill_frame(&mut self) -> io::Result<bool> {
        let frame = self.frame.as_mut().expect("a frame is being read");
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        let want = self.frame_len - frame.len();
        let n = match read_two(&self.stream, frame, want, &mut self.buf[self.end..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
            Err(e) => return Err(e),
        };
        let into_frame = n.min(want);
        // SAFETY: `read_two` wrote `n` bytes: the first `into_frame` into
        // the frame's spare capacity, the rest into `buf[end..]`.
        unsafe { frame.set_len(frame.len() + into_frame) };
        self.end += n - into_frame;
        Ok(true)
    }

    /// Takes the frame being read if it is complete.
    fn take_frame(&mut self) -> Option<Vec<u8>> {
        let done = self.frame.as_ref().is_some_and(|f| f.len() == self.frame_len);
        if done { self.frame.take() } else { None }
    }

    /// The next whole frame's payload, if buffered. Checks the length prefix
    /// against the limit before waiting for (or allocating) the payload.
    fn next_frame(&mut self) -> Result<Option<(usize, usize)>, ProtocolError> {
        debug_assert!(self.frame.is_none());
        let avail = self.available();
        if avail.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_le_bytes(avail[..4].try_into().expect("4 bytes")) as usize;
        if len > MAX_FRAME_BYTES {
            return Err(ProtocolError::FrameTooLarge { len: len as u64, max: MAX_FRAME_BYTES });
        }
        if len == 0 {
            return Err(ProtocolError::EmptyFrame);
        }
        if avail.len() < 4 + len {
            return Ok(None);
        }
        let at = self.start + 4;
        self.start += 4 + len;
        Ok(Some((at, len)))
    }

    /// The next whole frame, in a buffer of its own. A frame that has not
    /// fully arrived is read straight into a buffer of its own from then on
    /// (the length was checked against the limit, and the untouched capacity
    /// of a large claim costs no memory until bytes arrive). Buffers are
    /// reused (see `frame.rs`).
    fn next_owned_frame(&mut self) -> Result<Option<Vec<u8>>, ProtocolError> {
        if self.frame.is_some() {
            return Ok(self.take_frame());
        }
        if let Some((at, len)) = self.next_frame()? {
            let mut frame = crate::frame::buffer(len);
            frame.extend_from_slice(&self.buf[at..at + len]);
            return Ok(Some(frame));
        }
        let avail = self.available();
        if avail.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_le_bytes(avail[..4].try_into().expect("4 bytes")) as usize;
        let mut frame = crate::frame::buffer(len);
        frame.extend_from_slice(&avail[4..]);
        self.frame_len = len;
        self.start = 0;
        self.end = 0;
        if self.buf.len() < TAIL_BYTES {
            self.buf.resize(TAIL_BYTES, 0);
        }
        self.frame = Some(frame);
        Ok(None)
    }

    fn send(&mut self, frame: &HubFrame) -> io::Result<()> {
        encode_hub_frame(frame, &mut self.out).map_err(io::Error::other)?;
        (&self.stream).write_all(self.out.as_bytes())
    }

    fn refuse(&mut self, reason: String, preamble: bool) -> Ended {
        if preamble {
            let p = Preamble { version: PROTOCOL_VERSION, status: Preamble::REFUSED };
            let _ = (&self.stream).write_all(&p.to_bytes());
        }
        let _ = self.send(&HubFrame::Refuse { reason: reason.clone() });
        Ended::Refused(reason, if preamble { bad_handshake } else { bad_frame })
    }

    /// Waits up to `ms` for bytes (or an end of stream) to read.
    fn readable(&self, ms: i32) -> bool {
        readable(&self.stream, ms)
    }

    /// Waits until `n` bytes are buffered (handshake only).
    fn wait_for(&mut self, n: usize, shared: &HubShared, deadline: Instant) -> Result<(), Ended> {
        while self.available().len() < n {
            if shared.stopping.load(Ordering::Acquire) {
                return Err(Ended::Stopping);
            }
            if Instant::now() >= deadline {
                return Err(Ended::TimedOut(format!(
                    "no complete handshake within {:.1}s (handshake_timeout); closed",
                    shared.policy.handshake_timeout.as_secs_f64()
                )));
            }
            match self.fill() {
                Ok(true) => {}
                Ok(false) if self.start == 0 && self.end == 0 => return Err(Ended::Lost(PROBE.into())),
                Ok(false) => {
                    return Err(Ended::Lost(format!(
                        "closed during the handshake ({} of {n} bytes)",
                        self.available().len()
                    )));
                }
                Err(e) => return Err(Ended::Lost(format!("read failed during the handshake: {e}"))),
            }
        }
        Ok(())
    }
}

fn session(
    conn: &mut Conn,
    shared: &HubShared,
    tx: &Sender<InBatch>,
    who: &str,
    creds: PeerCred,
    id: u64,
) -> Result<(), Ended> {
    let deadline = Instant::now() + shared.policy.handshake_timeout;
    conn.wait_for(8, shared, deadline)?;
    let pre: [u8; 8] = conn.available()[..8].try_into().expect("8 bytes");
    conn.start += 8;
    let pre = match Preamble::parse(pre) {
        Ok(p) => p,
        Err(e) => return Err(conn.refuse(e.to_string(), true)),
    };
    if pre.version != PROTOCOL_VERSION {
        let e = ProtocolError::UnsupportedVersion { found: pre.version, supported: PROTOCOL_VERSION };
        return Err(conn.refuse(e.to_string(), true));
    }
    let _ =
        (&conn.stream).write_all(&Preamble { version: PROTOCOL_VERSION, status: Preamble::OK }.to_bytes());
    // The first frame must be a Hello.
    let hello = loop {
        match conn.next_frame() {
            Ok(Some((at, len))) => match decode_client_frame(&conn.buf[at..at + len]) {
                Ok(ClientFrame::Hello(h)) => break h,
                Ok(ClientFrame::Stats) => {
                    return conn
                        .send(&HubFrame::Stats(shared.snapshot()))
                        .map_err(|e| Ended::Lost(format!("cannot send stats: {e}")));
                }
                Ok(_) => return Err(conn.refuse("expected a Hello frame first".into(), false)),
                Err(e) => return Err(conn.refuse(e.to_string(), false)),
            },
            Ok(None) => {
                let need = conn.available().len() + 1;
                conn.wait_for(need, shared, deadline)?;
            }
            Err(e) => return Err(conn.refuse(e.to_string(), false)),
        }
    };
    // Every field a client sends is bounded: these are kept for the
    // connection's life and shown by `stats`.
    let mut hello = hello;
    for field in [&mut hello.process_name, &mut hello.host_name] {
        if field.len() > MAX_NAME_BYTES {
            let keep = cut_str(field, MAX_NAME_BYTES).len();
            field.truncate(keep);
            add(&shared.counters.truncated_fields, 1);
        }
    }
    // The kernel's word for the pid where there is one; the client's otherwise.
    let counters =
        Arc::new(ConnCounters::new(id, creds.pid.unwrap_or(hello.pid), hello.process_name.clone()));
    shared.register_conn(Arc::clone(&counters));
    // Marks the connection closed however the session ends.
    struct Closed<'a>(&'a ConnCounters);
    impl Drop for Closed<'_> {
        fn drop(&mut self) {
            self.0.open.store(false, Ordering::Relaxed);
        }
    }
    let _closed = Closed(&counters);
    let peer = Arc::new(Peer {
        process_name: hello.process_name.clone(),
        host_name: hello.host_name.clone(),
        session: hello.session,
        creds,
        python: false,
    });
    // Resume where this session left off if it was here before: it resends
    // from its oldest unacknowledged record; what is already here is dropped.
    let state = shared.sessions.open(hello.session, hello.first_seq);
    let mut sent_ack = {
        let mut st = sessions::lock(&state);
        st.skip_to(hello.first_seq);
        st.settled_next().max(hello.first_seq)
    };
    conn.send(&HubFrame::Welcome { next_seq: sent_ack })
        .map_err(|e| Ended::Lost(format!("cannot answer the hello: {e}")))?;
    let policy = &shared.policy;
    // This connection's share of the decoded-memory budget.
    let decoded = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut last_input = Instant::now();
    let mut partial_since: Option<Instant> = None;
    loop {
        while let Some(bytes) = conn.next_owned_frame().map_err(|e| conn.refuse(e.to_string(), false))? {
            partial_since = None;
            // Room for the most it can decode to, before decoding it.
            let estimate = crate::frame::Budget::estimate(bytes.len(), bytes.capacity());
            let Some(mut ticket) = shared.decoded.acquire(&decoded, estimate, &shared.stopping) else {
                return Err(Ended::Stopping);
            };
            // The records keep pointing into their frame's bytes, which
            // travel with them to the handlers (see `frame.rs`).
            let (mut frame, kind) = match Frame::decode(bytes) {
                Ok(decoded) => decoded,
                Err(e) => return Err(conn.refuse(e.to_string(), false)),
            };
            ticket.shrink_to(frame.memory());
            match kind {
                Kind::Batch(first_seq) => {
                    let count = frame.records().len() as u64;
                    let end = first_seq.saturating_add(count);
                    let mut st = sessions::lock(&state);
                    if end <= st.received_next {
                        drop(st);
                        add(&shared.duplicates, count);
                        add(&counters.duplicates, count);
                        continue;
                    }
                    if first_seq > st.received_next {
                        shared.warn_limited(
                            "records clients dropped",
                            &format!(
                                "{who}: records {}..{first_seq} never arrived (the client dropped them)",
                                st.received_next
                            ),
                        );
                        st.skip_to(first_seq);
                    }
                    let skip = st.received_next - first_seq;
                    let (guard, done) = SettleGuard::new();
                    st.received(end, done);
                    drop(st);
                    if skip > 0 {
                        add(&shared.duplicates, skip);
                        add(&counters.duplicates, skip);
                        frame.skip(skip as usize);
                    }
                    // Counted once: after what a resend repeats was skipped.
                    let (messages, fields) = frame.bound_fields();
                    if messages + fields > 0 {
                        add(&shared.counters.truncated_messages, messages);
                        add(&shared.counters.truncated_fields, fields);
                    }
                    let taken = count - skip;
                    add(&shared.received, taken);
                    add(&counters.received, taken);
                    let mut batch =
                        InBatch::new(Arc::clone(&peer), frame, Some(first_seq + skip), Some(guard));
                    batch.ticket = Some(ticket);
                    // Blocks when the hub is saturated: backpressure.
                    if let Err(e) = tx.send(batch) {
                        if let Some(g) = &e.0.settle {
                            g.abandon();
                        }
                        return Err(Ended::Stopping);
                    }
                }
                Kind::Bye => return Ok(()),
                Kind::OutOfPlace => {
                    return Err(conn.refuse("a Hello or Stats frame mid-session".into(), false));
                }
            }
        }
        // One acknowledgement per burst of settled batches, not per frame:
        // fewer writes, and a client busy writing never faces a wall of acks.
        let (acked, received) = {
            let mut st = sessions::lock(&state);
            (st.settled_next(), st.received_next)
        };
        if acked > sent_ack {
            conn.send(&HubFrame::Ack { next_seq: acked })
                .map_err(|e| Ended::Lost(format!("cannot acknowledge: {e}")))?;
            sent_ack = acked;
        }
        if shared.stopping.load(Ordering::Acquire) {
            // Acknowledge what the drain settles, so that the client does
            // not resend it to the next hub.
            let deadline = shared.deadline().unwrap_or_else(Instant::now);
            loop {
                let (acked, done) = {
                    let mut st = sessions::lock(&state);
                    let done = st.all_settled();
                    (st.settled_next(), done)
                };
                if acked > sent_ack {
                    let _ = conn.send(&HubFrame::Ack { next_seq: acked });
                    sent_ack = acked;
                }
                if done || Instant::now() >= deadline {
                    return Err(Ended::Stopping);
                }
                std::thread::sleep(Duration::from_millis(ACK_POLL_MS as u64));
            }
        }
        let waiting_for_acks = acked < received;
        if !conn.readable(if waiting_for_acks { ACK_POLL_MS } else { POLL.as_millis() as i32 }) {
            let now = Instant::now();
            if let Some(since) = partial_since
                && now.duration_since(since) >= policy.frame_timeout
            {
                return Err(Ended::TimedOut(format!(
                    "sent {} bytes of a frame in {:.1}s (frame_timeout); closed",
                    conn.partial(),
                    policy.frame_timeout.as_secs_f64()
                )));
            }
            if !policy.idle_timeout.is_zero()
                && !waiting_for_acks
                && conn.partial() == 0
                && now.duration_since(last_input) >= policy.idle_timeout
            {
                return Err(Ended::TimedOut(format!(
                    "idle for {:.0}s (idle_timeout); closed",
                    policy.idle_timeout.as_secs_f64()
                )));
            }
            continue;
        }
        let before = conn.partial();
        match conn.fill() {
            Ok(true) => {
                if conn.partial() != before {
                    last_input = Instant::now();
                }
                if conn.partial() != 0 && partial_since.is_none() {
                    partial_since = Some(Instant::now());
                }
            }
            Ok(false) if conn.partial() == 0 => return Ok(()),
            Ok(false) => {
                let got = conn.partial();
                return Err(Ended::Truncated(format!(
                    "ended mid-frame ({got} bytes of an incomplete frame dropped; earlier records kept)"
                )));
            }
            Err(e) => return Err(Ended::Lost(format!("read failed: {e}"))),
        }
    }
}

/// What the kernel says about the peer (SO_PEERCRED on Linux).
#[cfg(unix)]
pub(crate) fn peer_creds(stream: &Stream) -> PeerCred {
    match stream.peer_creds() {
        Ok(c) => PeerCred { uid: c.euid(), gid: c.egid(), pid: c.pid().map(|p| p as u32) },
        Err(_) => PeerCred::UNKNOWN,
    }
}

#[cfg(not(unix))]
pub(crate) fn peer_creds(_stream: &Stream) -> PeerCred {
    PeerCred::UNKNOWN
}

/// Reads into `frame`'s spare capacity first, then into `tail`, in one
/// `readv`; returns the bytes read without changing `frame`'s length. An
/// end of stream is `UnexpectedEof`; timeouts and interruptions read 0.
#[cfg(unix)]
fn read_two(stream: &Stream, frame: &mut Vec<u8>, want: usize, tail: &mut [u8]) -> io::Result<usize> {
    use std::os::fd::{AsFd, AsRawFd};
    let fd = match stream {
        Stream::UdSocket(s) => s.as_fd().as_raw_fd(),
    };
    let spare = frame.spare_capacity_mut();
    // The kernel writes into the spare capacity through a raw pointer: no
    // reference to uninitialised bytes is made.
    let iov = [
        libc::iovec { iov_base: spare.as_mut_ptr().cast(), iov_len: want.min(spare.len()) },
        libc::iovec { iov_base: tail.as_mut_ptr().cast(), iov_len: tail.len() },
    ];
    // SAFETY: both iovecs point to writable memory of their lengths.
    let n = unsafe { libc::readv(fd, iov.as_ptr(), 2) };
    if n >= 0 {
        return if n == 0 { Err(io::ErrorKind::UnexpectedEof.into()) } else { Ok(n as usize) };
    }
    let e = io::Error::last_os_error();
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted => Ok(0),
        _ => Err(e),
    }
}

#[cfg(not(unix))]
fn read_two(stream: &Stream, frame: &mut Vec<u8>, want: usize, _tail: &mut [u8]) -> io::Result<usize> {
    let at = frame.len();
    frame.resize(at + want, 0);
    let r = (&*stream).read(&mut frame[at..]);
    // The bytes read stay in the buffer; `fill_frame` sets the length.
    frame.truncate(at);
    match r {
        Ok(0) => Err(io::ErrorKind::UnexpectedEof.into()),
        Ok(n) => Ok(n),
        Err(e) => match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted => Ok(0),
            _ => Err(e),
        },
    }
}

#[cfg(unix)]
fn readable(stream: &Stream, ms: i32) -> bool {
    use std::os::fd::{AsFd, AsRawFd};
    let fd = match stream {
        Stream::UdSocket(s) => s.as_fd().as_raw_fd(),
    };
    let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut pfd, 1, ms) != 0 }
}

#[cfg(not(unix))]
fn readable(_stream: &Stream, _ms: i32) -> bool {
    true // a blocking read with the receive timeout
}
