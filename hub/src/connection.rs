//! One client connection: handshake, then frames → listener queue → acks.
//!
//! A reader owns its connection. It refuses a stranger (wrong magic) or an
//! incompatible client (wrong version) with a reason, drops records it has
//! already taken from this client session (a client resends what was not
//! acknowledged after a reconnect), and acknowledges a batch once the
//! listener queue has taken it. Any error ends this connection only: other
//! clients never notice.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use interprocess::local_socket::Stream;
use interprocess::local_socket::prelude::*;
use logfunnel_protocol::{
    ClientFrame, ClientFrameView, FrameBuf, HubFrame, MAX_FRAME_BYTES, PROTOCOL_VERSION, Preamble,
    ProtocolError, decode_client_frame, decode_client_frame_view, encode_hub_frame,
};

use crossbeam_channel::Sender;

use crate::HubShared;
use crate::dispatcher::{Frame, InBatch, Peer};
use crate::stats::{ConnCounters, add};

const POLL: Duration = Duration::from_millis(200);
const PROBE: &str = "closed before the handshake";
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) fn serve(stream: Stream, id: u64, shared: Arc<HubShared>, tx: Sender<InBatch>) {
    let peer_pid = peer_pid(&stream);
    let _ = stream.set_recv_timeout(Some(POLL));
    let _ = stream.set_send_timeout(Some(Duration::from_secs(5)));
    let mut conn = Conn { stream, buf: vec![0; 128 << 10], start: 0, end: 0, out: FrameBuf::default() };
    let who = match peer_pid {
        Some(pid) => format!("connection {id} (pid {pid})"),
        None => format!("connection {id}"),
    };
    match session(&mut conn, &shared, &tx, &who, peer_pid, id) {
        Ok(()) => {}
        Err(Ended::Refused(reason)) => {
            add(&shared.refused, 1);
            eprintln!("logfunnel hub: refused {who}: {reason}");
        }
        Err(Ended::Stopping) => {}
        // A connection that closes before sending a byte is a liveness probe
        // (a second hub checking the socket, or our own shutdown wake-up).
        Err(Ended::Lost(reason)) if reason == PROBE => {}
        Err(Ended::Lost(reason)) => eprintln!("logfunnel hub: {who}: {reason}"),
    }
}

/// What a frame after the handshake turned out to be.
enum Kind {
    Batch(u64),
    Bye,
    OutOfPlace,
}

enum Ended {
    /// The client broke the protocol; it was told why.
    Refused(String),
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
    out: FrameBuf,
}

impl Conn {
    /// Reads more bytes; `Ok(false)` on end of stream. Timeouts return
    /// `Ok(true)` with nothing new, so the caller can check for shutdown.
    fn fill(&mut self) -> io::Result<bool> {
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

    /// The next whole frame's payload, if buffered. Checks the length prefix
    /// against the limit before waiting for (or allocating) the payload.
    fn next_frame(&mut self) -> Result<Option<(usize, usize)>, ProtocolError> {
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
        Ended::Refused(reason)
    }

    /// Waits until `n` bytes are buffered (handshake only).
    fn wait_for(&mut self, n: usize, shared: &HubShared, deadline: Instant) -> Result<(), Ended> {
        while self.available().len() < n {
            if shared.stopping.load(Ordering::Acquire) {
                return Err(Ended::Stopping);
            }
            if Instant::now() >= deadline {
                return Err(Ended::Lost(format!(
                    "no complete handshake within {}s; closed",
                    HANDSHAKE_TIMEOUT.as_secs()
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
    peer_pid: Option<u32>,
    id: u64,
) -> Result<(), Ended> {
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
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
    // The kernel's word for the pid where there is one; the client's otherwise.
    let counters = Arc::new(ConnCounters::new(id, peer_pid.unwrap_or(hello.pid), hello.process_name.clone()));
    shared.register_conn(Arc::clone(&counters));
    // Marks the connection closed however the session ends.
    struct Closed<'a>(&'a ConnCounters);
    impl Drop for Closed<'_> {
        fn drop(&mut self) {
            self.0.open.store(false, Ordering::Relaxed);
        }
    }
    let _closed = Closed(&counters);
    let peer =
        Arc::new(Peer { process_name: hello.process_name.clone(), host_name: hello.host_name.clone() });
    // Resume where this session left off if it was here before.
    let mut next_seq =
        { shared.sessions.next_seq(hello.session).unwrap_or(hello.first_seq).max(hello.first_seq) };
    conn.send(&HubFrame::Welcome { next_seq })
        .map_err(|e| Ended::Lost(format!("cannot answer the hello: {e}")))?;
    let mut unacked = false;
    loop {
        while let Some((at, len)) = conn.next_frame().map_err(|e| conn.refuse(e.to_string(), false))? {
            // The records keep pointing into their frame's bytes, which
            // travel with them to the handlers (see `dispatcher::Frame`).
            let bytes: Box<[u8]> = conn.buf[at..at + len].into();
            let mut kind = Kind::Batch(0);
            let decoded = Frame::try_new(bytes, |b| match decode_client_frame_view(b)? {
                ClientFrameView::Batch(first_seq, records) => {
                    kind = Kind::Batch(first_seq);
                    Ok::<_, ProtocolError>(records)
                }
                ClientFrameView::Bye => {
                    kind = Kind::Bye;
                    Ok(Vec::new())
                }
                ClientFrameView::Hello(_) | ClientFrameView::Stats => {
                    kind = Kind::OutOfPlace;
                    Ok(Vec::new())
                }
            });
            let mut frame = match decoded {
                Ok(f) => f,
                Err(e) => return Err(conn.refuse(e.to_string(), false)),
            };
            match kind {
                Kind::Batch(first_seq) => {
                    let count = frame.borrow_dependent().len() as u64;
                    let end = first_seq + count;
                    if end <= next_seq {
                        add(&shared.duplicates, count);
                        add(&counters.duplicates, count);
                    } else {
                        if first_seq > next_seq {
                            eprintln!(
                                "logfunnel hub: {who}: records {next_seq}..{first_seq} never arrived (the client dropped them)"
                            );
                        }
                        let skip = next_seq.saturating_sub(first_seq) as usize;
                        if skip > 0 {
                            add(&shared.duplicates, skip as u64);
                            add(&counters.duplicates, skip as u64);
                            frame.with_dependent_mut(|_, records| {
                                records.drain(..skip);
                            });
                        }
                        let taken = count - skip as u64;
                        add(&shared.received, taken);
                        add(&counters.received, taken);
                        // Blocks when the hub is saturated: backpressure.
                        if tx.send(InBatch { peer: Arc::clone(&peer), frame }).is_err() {
                            return Err(Ended::Stopping);
                        }
                        next_seq = end;
                        shared.sessions.record(hello.session, next_seq);
                    }
                    unacked = true;
                }
                Kind::Bye => return Ok(()),
                Kind::OutOfPlace => {
                    return Err(conn.refuse("a Hello or Stats frame mid-session".into(), false));
                }
            }
        }
        // One acknowledgement per burst of frames, not per frame: fewer
        // writes, and a client busy writing never faces a wall of acks.
        if unacked {
            conn.send(&HubFrame::Ack { next_seq })
                .map_err(|e| Ended::Lost(format!("cannot acknowledge: {e}")))?;
            unacked = false;
        }
        if shared.stopping.load(Ordering::Acquire) {
            return Err(Ended::Stopping);
        }
        match conn.fill() {
            Ok(true) => {}
            Ok(false) if conn.available().is_empty() => return Ok(()),
            Ok(false) => {
                let got = conn.available().len();
                return Err(Ended::Lost(format!(
                    "ended mid-frame ({got} bytes of an incomplete frame dropped; earlier records kept)"
                )));
            }
            Err(e) => return Err(Ended::Lost(format!("read failed: {e}"))),
        }
    }
}

#[cfg(unix)]
fn peer_pid(stream: &Stream) -> Option<u32> {
    stream.peer_creds().ok().and_then(|c| c.pid()).map(|p| p as u32)
}

#[cfg(not(unix))]
fn peer_pid(_stream: &Stream) -> Option<u32> {
    None
}
