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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use interprocess::local_socket::Stream;
use interprocess::local_socket::prelude::*;
use logfunnel_protocol::{
    ClientFrame, FrameBuf, Hello, HubFrame, MAX_FRAME_BYTES, MAX_NAME_BYTES, PROTOCOL_VERSION, Preamble,
    ProtocolError, cut_str, decode_client_frame, encode_hub_frame,
};

use crossbeam_channel::Sender;

use crate::HubShared;
use crate::access::HubPolicy;
use crate::formatter::PeerCred;
use crate::frame::{Frame, Kind, Ticket};
use crate::frame::{InBatch, Peer};
use crate::sessions::{self, SessionState, SettleGuard};
use crate::stats::{ConnCounters, add};

const POLL: Duration = Duration::from_millis(200);
/// How often a reader with unacknowledged batches looks for newly settled ones.
const ACK_POLL_MS: i32 = 2;

/// Serves one client connection on its own thread: the access check, the
/// session, then how it ended, counted and reported.
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
    if !admit_peer(&shared, creds, &who) {
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
        Err(Ended::Refused(reason, how)) => {
            add(&shared.refused, 1);
            let broke = match how {
                Refusal::Preamble => &shared.counters.bad_handshakes,
                Refusal::Frame => &shared.counters.bad_frames,
            };
            add(broke, 1);
            shared.warn_limited("refused clients", &format!("refused {who}: {reason}"));
        }
        Err(Ended::Stopping) | Err(Ended::Probe) => {}
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

/// Whether the access policy (`allowed_uids`, `allowed_gids`) admits a peer,
/// decided on the kernel's word before a byte of the client is read. A
/// refused peer is counted (`refused`, `refused_peers`) and reported as
/// "refused {who}: …"; the caller closes it unread.
pub(crate) fn admit_peer(shared: &HubShared, creds: PeerCred, who: &str) -> bool {
    if shared.policy.admits(creds.uid, creds.gid) {
        return true;
    }
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
    false
}

/// How a session ended, other than well (a `Bye`, or a close between frames).
enum Ended {
    /// The client broke the protocol; it was told why, in a refusing
    /// preamble or a `Refuse` frame.
    Refused(String, Refusal),
    /// The client idled, or sent too slowly.
    TimedOut(String),
    /// The client went away in the middle of a frame.
    Truncated(String),
    /// The connection failed, or closed during the handshake.
    Lost(String),
    /// The connection closed before sending a byte: a liveness probe (a
    /// second hub checking the socket, or our own shutdown wake-up).
    Probe,
    /// The hub is shutting down.
    Stopping,
}

/// Where a client was refused, which says what it broke.
enum Refusal {
    /// In the preamble: a stranger or another protocol version (`bad_handshakes`).
    Preamble,
    /// By a `Refuse` frame after the preambles: a malformed or misplaced
    /// frame (`bad_frames`).
    Frame,
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

    /// Tells the client why it is refused (in a refusing preamble first if
    /// the preambles were not yet exchanged, then a `Refuse` frame).
    fn refuse(&mut self, reason: String, how: Refusal) -> Ended {
        if let Refusal::Preamble = how {
            let p = Preamble { version: PROTOCOL_VERSION, status: Preamble::REFUSED };
            let _ = (&self.stream).write_all(&p.to_bytes());
        }
        let _ = self.send(&HubFrame::Refuse { reason: reason.clone() });
        Ended::Refused(reason, how)
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
                Ok(false) if self.start == 0 && self.end == 0 => return Err(Ended::Probe),
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

/// One client's connection from its first byte to its last, in the order of
/// docs/PROTOCOL.md: the handshake (preambles, then a `Hello`, or a `Stats`
/// request answered at once), the `Welcome`, then batches and their
/// acknowledgements until the client says `Bye` or the hub stops.
fn session(
    conn: &mut Conn,
    shared: &HubShared,
    tx: &Sender<InBatch>,
    who: &str,
    creds: PeerCred,
    id: u64,
) -> Result<(), Ended> {
    let deadline = Instant::now() + shared.policy.handshake_timeout;
    conn.exchange_preambles(shared, deadline)?;
    let hello = match conn.first_frame(shared, deadline)? {
        First::Hello(hello) => hello,
        First::Stats => {
            return conn
                .send(&HubFrame::Stats(shared.snapshot()))
                .map_err(|e| Ended::Lost(format!("cannot send stats: {e}")));
        }
    };
    let mut session = Session::welcome(conn, shared, hello, who, creds, id)?;
    session.frames(conn, shared, tx)
}

impl Conn {
    /// Reads the client's preamble and answers it: a stranger (wrong magic)
    /// or another protocol version is refused in a preamble of its own, so
    /// that it learns why before anything is decoded.
    fn exchange_preambles(&mut self, shared: &HubShared, deadline: Instant) -> Result<(), Ended> {
        self.wait_for(8, shared, deadline)?;
        let pre: [u8; 8] = self.available()[..8].try_into().expect("8 bytes");
        self.start += 8;
        let pre = match Preamble::parse(pre) {
            Ok(p) => p,
            Err(e) => return Err(self.refuse(e.to_string(), Refusal::Preamble)),
        };
        if pre.version != PROTOCOL_VERSION {
            let e = ProtocolError::UnsupportedVersion { found: pre.version, supported: PROTOCOL_VERSION };
            return Err(self.refuse(e.to_string(), Refusal::Preamble));
        }
        let ok = Preamble { version: PROTOCOL_VERSION, status: Preamble::OK };
        let _ = (&self.stream).write_all(&ok.to_bytes());
        Ok(())
    }

    /// The first frame, which must be a `Hello` (or a `Stats` request from
    /// `logfunnel stats`); anything else is refused. Still bounded by the
    /// handshake's deadline.
    fn first_frame(&mut self, shared: &HubShared, deadline: Instant) -> Result<First, Ended> {
        loop {
            match self.next_frame() {
                Ok(Some((at, len))) => {
                    return match decode_client_frame(&self.buf[at..at + len]) {
                        Ok(ClientFrame::Hello(h)) => Ok(First::Hello(h)),
                        Ok(ClientFrame::Stats) => Ok(First::Stats),
                        Ok(_) => Err(self.refuse("expected a Hello frame first".into(), Refusal::Frame)),
                        Err(e) => Err(self.refuse(e.to_string(), Refusal::Frame)),
                    };
                }
                Ok(None) => {
                    let need = self.available().len() + 1;
                    self.wait_for(need, shared, deadline)?;
                }
                Err(e) => return Err(self.refuse(e.to_string(), Refusal::Frame)),
            }
        }
    }

    /// Waits for the client's next bytes after the frames buffered so far.
    /// Closes a client that idles (`idle_timeout`) or trickles a frame
    /// (`frame_timeout`); a client that closes between frames ends the
    /// session, one that closes inside a frame loses only that frame.
    fn read_more(
        &mut self,
        policy: &HubPolicy,
        pace: &mut Pace,
        waiting_for_acks: bool,
    ) -> Result<Input, Ended> {
        if !self.readable(if waiting_for_acks { ACK_POLL_MS } else { POLL.as_millis() as i32 }) {
            let now = Instant::now();
            if let Some(since) = pace.partial_since
                && now.duration_since(since) >= policy.frame_timeout
            {
                return Err(Ended::TimedOut(format!(
                    "sent {} bytes of a frame in {:.1}s (frame_timeout); closed",
                    self.partial(),
                    policy.frame_timeout.as_secs_f64()
                )));
            }
            if !policy.idle_timeout.is_zero()
                && !waiting_for_acks
                && self.partial() == 0
                && now.duration_since(pace.last_input) >= policy.idle_timeout
            {
                return Err(Ended::TimedOut(format!(
                    "idle for {:.0}s (idle_timeout); closed",
                    policy.idle_timeout.as_secs_f64()
                )));
            }
            return Ok(Input::More);
        }
        let before = self.partial();
        match self.fill() {
            Ok(true) => {
                if self.partial() != before {
                    pace.last_input = Instant::now();
                }
                if self.partial() != 0 && pace.partial_since.is_none() {
                    pace.partial_since = Some(Instant::now());
                }
                Ok(Input::More)
            }
            Ok(false) if self.partial() == 0 => Ok(Input::Closed),
            Ok(false) => {
                let got = self.partial();
                Err(Ended::Truncated(format!(
                    "ended mid-frame ({got} bytes of an incomplete frame dropped; earlier records kept)"
                )))
            }
            Err(e) => Err(Ended::Lost(format!("read failed: {e}"))),
        }
    }
}

/// What the first frame asked for.
enum First {
    Hello(Hello),
    Stats,
}

/// What reading on brought.
enum Input {
    /// Bytes, or nothing yet: look for frames again.
    More,
    /// The client closed between frames.
    Closed,
}

/// When the client last sent anything, and since when a frame has been
/// arriving: what `idle_timeout` and `frame_timeout` are measured from.
struct Pace {
    last_input: Instant,
    partial_since: Option<Instant>,
}

/// A welcomed client session on this connection.
struct Session<'a> {
    who: &'a str,
    peer: Arc<Peer>,
    /// This connection's line in `stats`; marked closed when dropped.
    counters: Arc<ConnCounters>,
    state: Arc<Mutex<SessionState>>,
    /// The `next_seq` of the last Welcome or Ack sent.
    sent_ack: u64,
    /// This connection's share of the decoded-memory budget.
    decoded: Arc<AtomicUsize>,
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        self.counters.open.store(false, Ordering::Relaxed);
    }
}

impl<'a> Session<'a> {
    /// Takes the client in: bounds the Hello's names (they are kept for the
    /// connection's life and shown by `stats`), registers the connection,
    /// and answers with a Welcome saying where the session resumes: a
    /// client that was here before resends from its oldest unacknowledged
    /// record, and what the hub already holds is dropped.
    fn welcome(
        conn: &mut Conn,
        shared: &HubShared,
        mut hello: Hello,
        who: &'a str,
        creds: PeerCred,
        id: u64,
    ) -> Result<Session<'a>, Ended> {
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
        let peer = Arc::new(Peer {
            process_name: hello.process_name,
            host_name: hello.host_name,
            session: hello.session,
            creds,
            python: false,
        });
        let state = shared.sessions.open(hello.session, hello.first_seq);
        let sent_ack = {
            let mut st = sessions::lock(&state);
            st.skip_to(hello.first_seq);
            st.settled_next().max(hello.first_seq)
        };
        let session =
            Session { who, peer, counters, state, sent_ack, decoded: Arc::new(AtomicUsize::new(0)) };
        conn.send(&HubFrame::Welcome { next_seq: sent_ack })
            .map_err(|e| Ended::Lost(format!("cannot answer the hello: {e}")))?;
        Ok(session)
    }

    /// Batches, acknowledged as they settle, until the client says `Bye` or
    /// closes between frames (`Ok`), breaks the protocol, times out, or the
    /// hub stops (then the drain acknowledges what settles).
    fn frames(&mut self, conn: &mut Conn, shared: &HubShared, tx: &Sender<InBatch>) -> Result<(), Ended> {
        let mut pace = Pace { last_input: Instant::now(), partial_since: None };
        loop {
            while let Some(bytes) =
                conn.next_owned_frame().map_err(|e| conn.refuse(e.to_string(), Refusal::Frame))?
            {
                pace.partial_since = None;
                // Room for the most it can decode to, before decoding it.
                let estimate = crate::frame::Budget::estimate(bytes.len(), bytes.capacity());
                let Some(mut ticket) = shared.decoded.acquire(&self.decoded, estimate, &shared.stopping)
                else {
                    return Err(Ended::Stopping);
                };
                // The records keep pointing into their frame's bytes, which
                // travel with them to the handlers (see `frame.rs`).
                let (frame, kind) = match Frame::decode(bytes) {
                    Ok(decoded) => decoded,
                    Err(e) => return Err(conn.refuse(e.to_string(), Refusal::Frame)),
                };
                ticket.shrink_to(frame.memory());
                match kind {
                    Kind::Batch(first_seq) => self.take_batch(shared, tx, frame, first_seq, ticket)?,
                    Kind::Bye => return Ok(()),
                    Kind::OutOfPlace => {
                        return Err(conn.refuse("a Hello or Stats frame mid-session".into(), Refusal::Frame));
                    }
                }
            }
            let waiting_for_acks = self.acknowledge(conn)?;
            if shared.stopping.load(Ordering::Acquire) {
                return Err(self.drain(conn, shared));
            }
            match conn.read_more(&shared.policy, &mut pace, waiting_for_acks)? {
                Input::More => {}
                Input::Closed => return Ok(()),
            }
        }
    }

    /// Hands a batch on to the listener queue, without the records this
    /// session already sent (a resend after a reconnect), and notes a gap
    /// the client declared by starting past what it sent before.
    fn take_batch(
        &self,
        shared: &HubShared,
        tx: &Sender<InBatch>,
        mut frame: Frame,
        first_seq: u64,
        ticket: Ticket,
    ) -> Result<(), Ended> {
        let count = frame.records().len() as u64;
        let end = first_seq.saturating_add(count);
        let mut st = sessions::lock(&self.state);
        if end <= st.received_next {
            drop(st);
            add(&shared.duplicates, count);
            add(&self.counters.duplicates, count);
            return Ok(());
        }
        if first_seq > st.received_next {
            shared.warn_limited(
                "records clients dropped",
                &format!(
                    "{}: records {}..{first_seq} never arrived (the client dropped them)",
                    self.who, st.received_next
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
            add(&self.counters.duplicates, skip);
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
        add(&self.counters.received, taken);
        let mut batch = InBatch::new(Arc::clone(&self.peer), frame, Some(first_seq + skip), Some(guard));
        batch.ticket = Some(ticket);
        // Blocks when the hub is saturated: backpressure.
        if let Err(e) = tx.send(batch) {
            if let Some(g) = &e.0.settle {
                g.abandon();
            }
            return Err(Ended::Stopping);
        }
        Ok(())
    }

    /// Sends one acknowledgement per burst of settled batches, not per
    /// frame: fewer writes, and a client busy writing never faces a wall of
    /// acks. Returns whether batches received are still waiting to settle.
    fn acknowledge(&mut self, conn: &mut Conn) -> Result<bool, Ended> {
        let (acked, received) = {
            let mut st = sessions::lock(&self.state);
            (st.settled_next(), st.received_next)
        };
        if acked > self.sent_ack {
            conn.send(&HubFrame::Ack { next_seq: acked })
                .map_err(|e| Ended::Lost(format!("cannot acknowledge: {e}")))?;
            self.sent_ack = acked;
        }
        Ok(acked < received)
    }

    /// The hub is stopping: acknowledges what the drain settles (until all
    /// is settled or the shutdown's deadline passes), so that the client
    /// does not resend it to the next hub.
    fn drain(&mut self, conn: &mut Conn, shared: &HubShared) -> Ended {
        let deadline = shared.deadline().unwrap_or_else(Instant::now);
        loop {
            let (acked, done) = {
                let mut st = sessions::lock(&self.state);
                let done = st.all_settled();
                (st.settled_next(), done)
            };
            if acked > self.sent_ack {
                let _ = conn.send(&HubFrame::Ack { next_seq: acked });
                self.sent_ack = acked;
            }
            if done || Instant::now() >= deadline {
                return Ended::Stopping;
            }
            std::thread::sleep(Duration::from_millis(ACK_POLL_MS as u64));
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
