//! The sender thread: polls the rings, batches, writes, reconnects, resends.
//!
//! It is never woken by a log call. It polls: after a pass that sealed a
//! full batch it polls again at once; after one that found less it sleeps
//! 50 µs (records gather into larger frames); after an idle pass it sleeps,
//! 20 µs at first, doubling to 1 ms. A batch is sent once it holds a quarter
//! of `batch_bytes`, or its first record has waited 250 µs. Every batch stays in `pending` until the hub
//! acknowledges it, so a dead or restarting hub loses nothing that fits in
//! `max_unacked`; beyond that the sender stops draining the rings, they fill
//! up, and the overflow policy applies at the log call.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use interprocess::local_socket::Stream;
use interprocess::local_socket::prelude::*;
use logfunnel_protocol::sync::LockExt;
use logfunnel_protocol::{
    Backoff, BatchBuilder, ClientFrame, FrameBuf, HubFrame, Level, MAX_FRAME_BYTES, ProtocolError, RecordRef,
    decode_hub_frame, encode_client_frame, encode_record_ref,
};

use crate::Shared;
use crate::oneshot::{connect, handshake_session};

const IDLE_SLEEP_MIN: Duration = Duration::from_micros(20);
const IDLE_SLEEP_MAX: Duration = Duration::from_millis(1);
/// Buffers of acknowledged batches kept for reuse, at least; more are kept
/// while they and the unacknowledged batches fit `max_unacked` (see
/// `acknowledge`).
const SPARE_BUFFERS: usize = 8;
/// After a pass that moved less than a full batch.
const BATCH_WINDOW: Duration = Duration::from_micros(50);
/// The longest a batch of less than a quarter of `batch_bytes` is held open.
const MAX_BATCH_DELAY: Duration = Duration::from_micros(250);
const RECONNECT_MIN: Duration = Duration::from_millis(10);
const RECONNECT_MAX: Duration = Duration::from_millis(500);
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// A write that cannot proceed returns to the main loop after this long.
const WRITE_TIMEOUT: Duration = Duration::from_millis(50);
/// A connected hub that takes nothing for this long is treated as dead.
const STALL_LIMIT: Duration = Duration::from_secs(60);
const DROP_REPORT_INTERVAL: Duration = Duration::from_secs(1);

struct PendingBatch {
    first_seq: u64,
    count: u64,
    /// The batch builder's buffer, handed over whole: the frame is `buf[start..]`.
    buf: Vec<u8>,
    start: usize,
}

impl PendingBatch {
    fn frame(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

struct Conn {
    stream: Stream,
    inbox: Vec<u8>,
}

struct Sender {
    shared: Arc<Shared>,
    builder: BatchBuilder,
    pending: VecDeque<PendingBatch>,
    pending_bytes: usize,
    /// Index in `pending` of the first batch not yet written on `conn`.
    unsent: usize,
    /// Bytes of `pending[unsent]` already written.
    written: usize,
    /// Last time the hub took bytes or acknowledged records.
    last_progress: Instant,
    next_seq: u64,
    conn: Option<Conn>,
    next_connect: Instant,
    /// Delays between connection attempts (jittered: many workers
    /// reconnecting to a restarted hub do not all knock at once).
    reconnect: Backoff,
    reported_drops: u64,
    last_drop_report: Instant,
    last_logged_error: Option<String>,
    /// Acknowledged batches' buffers, for the builder's next batches (at
    /// most SPARE_BUFFERS: fresh 128 KiB buffers would come from mmap).
    spare: Vec<Vec<u8>>,
}

pub(crate) fn run(shared: Arc<Shared>) {
    let batch_bytes = shared.settings.batch_bytes;
    let mut s = Sender {
        builder: BatchBuilder::with_capacity(batch_bytes * 2),
        pending: VecDeque::new(),
        pending_bytes: 0,
        unsent: 0,
        written: 0,
        last_progress: Instant::now(),
        next_seq: 1,
        conn: None,
        next_connect: Instant::now(),
        reconnect: Backoff::new(RECONNECT_MIN, RECONNECT_MAX).with_jitter(Backoff::random_seed()),
        reported_drops: 0,
        last_drop_report: Instant::now(),
        last_logged_error: None,
        spare: Vec::new(),
        shared,
    };
    s.builder.reset(1);
    // Keeps the log call's TSC clock anchored to the wall clock.
    let mut clock = crate::clock::Calibrator::new();
    // After an idle pass the sender sleeps a little longer each time.
    let mut idle = Backoff::new(IDLE_SLEEP_MIN, IDLE_SLEEP_MAX);
    // When the open batch got its first record.
    let mut opened: Option<Instant> = None;
    loop {
        clock.tick();
        let stopping = s.shared.stop.load(Ordering::Acquire);
        // `collect` seals a batch only when it is full: then more is waiting.
        let sealed_before = s.pending.len();
        let mut worked = s.collect();
        let full = s.pending.len() > sealed_before;
        worked |= s.report_drops();
        if s.builder.count() == 0 {
            opened = None;
        } else if opened.is_none() {
            opened = Some(Instant::now());
        }
        // A small batch waits up to MAX_BATCH_DELAY for company: with many
        // clients each one's share of the load is small, and a frame per
        // pass would cost the hub a wake-up, a decode and an ack for a
        // handful of records. While disconnected, keep filling the open
        // batch instead of sealing small ones: fewer, fuller frames to
        // resend later.
        let due = s.builder.records_len() >= batch_bytes / 4
            || opened.is_some_and(|t| t.elapsed() >= MAX_BATCH_DELAY);
        if stopping || s.conn.is_some() && due {
            s.seal();
            opened = None;
        }
        // Records in the open batch are taken too (flush waits for them).
        s.shared.assigned.store(s.builder.first_seq() + s.builder.count(), Ordering::Release);
        s.shared.epoch.fetch_add(1, Ordering::AcqRel);
        if s.conn.is_none() && Instant::now() >= s.next_connect {
            worked |= s.try_connect();
        }
        if s.conn.is_some() {
            worked |= s.write_unsent();
            worked |= s.read_acks();
        }
        if stopping {
            break;
        }
        if worked {
            idle.reset();
            // Unless a full batch is waiting, let records gather for a
            // moment: under moderate load, polling again at once would send
            // a frame (and take an ack) per record or two, which costs the
            // hub far more than these microseconds of latency.
            if !full {
                std::thread::sleep(BATCH_WINDOW);
            }
        } else {
            // An open batch is sealed on time, however idle the rings are.
            let pause = idle.next_delay();
            std::thread::sleep(if opened.is_some() { pause.min(MAX_BATCH_DELAY / 2) } else { pause });
        }
    }
    if let Some(conn) = s.conn.take() {
        let mut frame = FrameBuf::default();
        if encode_client_frame(&ClientFrame::Bye, &mut frame).is_ok() {
            let _ = (&conn.stream).write_all(frame.as_bytes());
        }
    }
    s.shared.connected.store(false, Ordering::Relaxed);
    s.shared.stopped.store(true, Ordering::Release);
}

impl Sender {
    /// Moves records from the rings into batches while there is room for
    /// unacknowledged data. Returns whether anything was moved.
    fn collect(&mut self) -> bool {
        // Producers take this lock only to register a new thread, so holding
        // it through the pass costs them nothing in steady state.
        let shared = Arc::clone(&self.shared);
        let mut rings = shared.rings.locked();
        // Forget the rings of threads that exited, once drained.
        rings.retain(|r| !(r.is_closed() && r.is_empty()));
        let limit = self.shared.settings.max_unacked;
        let batch_bytes = self.shared.settings.batch_bytes;
        let mut moved = 0;
        for ring in rings.iter() {
            loop {
                if self.pending_bytes + self.builder.records_len() >= limit {
                    return moved > 0;
                }
                let builder = &mut self.builder;
                let n = ring.drain(|entry| {
                    if builder.records_len() + entry.len() > MAX_FRAME_BYTES - 64
                        || builder.records_len() >= batch_bytes
                    {
                        return false;
                    }
                    builder.push_encoded(entry);
                    true
                });
                moved += n;
                if self.builder.records_len() >= batch_bytes {
                    self.seal();
                } else if n == 0 || ring.is_empty() {
                    break;
                }
            }
        }
        moved > 0
    }

    /// Turns the records collected so far into a pending batch.
    fn seal(&mut self) {
        if self.builder.count() == 0 {
            return;
        }
        let count = self.builder.count();
        let first_seq = self.builder.first_seq();
        // A batch that fills most of the builder's buffer takes the buffer
        // itself (no copy; an acknowledged batch's buffer becomes the
        // builder's); a smaller one is copied, so that memory held for
        // unacknowledged batches stays close to their size.
        let taken = if self.builder.records_len() >= self.shared.settings.batch_bytes / 2 {
            self.builder.take_frame(self.spare.pop())
        } else {
            self.builder.finish().map(|f| (f.to_vec(), 0))
        };
        let (buf, start) = match taken {
            Ok(taken) => taken,
            Err(e) => {
                // Cannot happen for records that fit a ring; never panic.
                self.note_error(format!("dropping a batch that cannot be framed: {e}"));
                self.shared.dropped.fetch_add(count, Ordering::Relaxed);
                self.builder.reset(first_seq);
                return;
            }
        };
        self.pending_bytes += buf.len() - start;
        self.pending.push_back(PendingBatch { first_seq, count, buf, start });
        self.next_seq = first_seq + count;
        self.builder.reset(self.next_seq);
    }

    /// Adds a WARNING record saying how many records were dropped since the
    /// last report, so a drop is never silent at the hub either. At most one
    /// report a second, and one at once when a flush asks for it.
    fn report_drops(&mut self) -> bool {
        let dropped = self.shared.dropped.load(Ordering::Relaxed);
        let forced = self.shared.report_drops_now.swap(false, Ordering::AcqRel);
        if dropped == self.reported_drops || !forced && self.last_drop_report.elapsed() < DROP_REPORT_INTERVAL
        {
            return false;
        }
        self.last_drop_report = Instant::now();
        let message = format!(
            "logfunnel client dropped {} records (overflow policy {:?}; {} dropped in total by this process)",
            dropped - self.reported_drops,
            self.shared.settings.overflow,
            dropped
        );
        let rec = RecordRef {
            created_ns: logfunnel_protocol::now_ns(),
            levelno: Level::WARNING.0,
            name: "logfunnel.client",
            message: &message,
            pathname: None,
            lineno: 0,
            func_name: None,
            module_path: None,
            process: self.shared.pid,
            process_name: None,
            thread: 0,
            thread_name: Some("logfunnel-sender"),
            exc_text: None,
            extra: &[],
        };
        let mut buf = vec![0u8; 1024];
        if let Ok(n) = encode_record_ref(&rec, &mut buf) {
            self.builder.push_encoded(&buf[..n]);
            self.reported_drops = dropped;
        }
        true
    }

    fn note_error(&mut self, error: String) {
        *self.shared.last_error.locked() = Some(error);
    }

    fn try_connect(&mut self) -> bool {
        let first_seq = self.pending.front().map_or(self.next_seq, |b| b.first_seq);
        let result =
            connect(&self.shared.socket, IO_TIMEOUT).map_err(ProtocolError::from).and_then(|stream| {
                let next = handshake_session(
                    &stream,
                    first_seq,
                    self.shared.process_name.clone(),
                    self.shared.session,
                )?;
                stream.set_recv_timeout(None)?;
                stream.set_send_timeout(Some(WRITE_TIMEOUT))?;
                Ok((stream, next))
            });
        match result {
            Ok((stream, next)) => {
                self.conn = Some(Conn { stream, inbox: Vec::new() });
                self.last_progress = Instant::now();
                self.shared.connected.store(true, Ordering::Relaxed);
                self.shared.connects.fetch_add(1, Ordering::Relaxed);
                self.reconnect.reset();
                self.last_logged_error = None;
                self.unsent = 0;
                self.acknowledge(next);
                true
            }
            Err(e) => {
                let text = format!("connecting to {}: {e}", self.shared.socket.display());
                // A refusal is worth telling the operator once; an absent hub
                // is normal during start-up and just retried.
                if matches!(e, ProtocolError::Refused(_) | ProtocolError::UnsupportedVersion { .. })
                    && self.last_logged_error.as_deref() != Some(&text)
                {
                    eprintln!("logfunnel client: {text}");
                    self.last_logged_error = Some(text.clone());
                }
                self.note_error(text);
                self.next_connect = Instant::now() + self.reconnect.next_delay();
                false
            }
        }
    }

    fn disconnect(&mut self, why: String) {
        self.written = 0;
        self.note_error(why);
        self.conn = None;
        self.shared.connected.store(false, Ordering::Relaxed);
        self.unsent = 0;
        self.next_connect = Instant::now() + self.reconnect.peek();
    }

    /// Writes what the hub has not been sent yet. A hub that is alive but
    /// saturated (its queues full: backpressure) stops reading for a while;
    /// a write that makes no progress returns to the main loop, and only a
    /// hub that makes no progress at all for `STALL_LIMIT` is given up on.
    fn write_unsent(&mut self) -> bool {
        let mut wrote = false;
        while self.unsent < self.pending.len() {
            let Some(conn) = &self.conn else { return wrote };
            let frame = self.pending[self.unsent].frame();
            match (&conn.stream).write(&frame[self.written..]) {
                Ok(0) => {
                    self.lost_hub_while_writing("the hub stopped reading (wrote 0 bytes)".into());
                    return wrote;
                }
                Ok(n) => {
                    wrote = true;
                    self.last_progress = Instant::now();
                    self.written += n;
                    if self.written < frame.len() {
                        continue;
                    }
                    self.written = 0;
                    self.unsent += 1;
                    // Read acknowledgements between batches: a hub blocked writing
                    // acks we never read would stop reading our batches (deadlock).
                    self.read_acks();
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    self.read_acks();
                    if self.conn.is_some() && self.last_progress.elapsed() >= STALL_LIMIT {
                        let why = format!("the hub made no progress for {}s", STALL_LIMIT.as_secs());
                        self.disconnect(why);
                    }
                    return wrote;
                }
                Err(e) => {
                    self.lost_hub_while_writing(format!("writing to the hub: {e}"));
                    return wrote;
                }
            }
        }
        wrote
    }

    fn lost_hub_while_writing(&mut self, why: String) {
        // Take the acknowledgements the hub sent before it went away.
        self.read_acks();
        if self.conn.is_some() {
            self.disconnect(why);
        }
    }

    fn read_acks(&mut self) -> bool {
        let Some(conn) = &mut self.conn else { return false };
        let mut got = false;
        // A hub that stops acknowledges what it took and then closes: read
        // to the end and apply those acks before treating the close, or the
        // next hub would be sent records this one already wrote.
        let mut failure = None;
        loop {
            match readable(&conn.stream) {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => {
                    failure = Some(format!("polling the hub connection: {e}"));
                    break;
                }
            }
            let mut chunk = [0u8; 4096];
            match (&conn.stream).read(&mut chunk) {
                Ok(0) => {
                    failure = Some("the hub closed the connection".into());
                    break;
                }
                Ok(n) => conn.inbox.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    failure = Some(format!("reading from the hub: {e}"));
                    break;
                }
            }
        }
        // Parse whole frames out of the inbox.
        let mut acked = None;
        let mut offset = 0;
        while conn.inbox.len() - offset >= 4 {
            let len =
                u32::from_le_bytes(conn.inbox[offset..offset + 4].try_into().expect("4 bytes")) as usize;
            if len > MAX_FRAME_BYTES {
                failure = Some(format!("hub sent a frame of {len} bytes"));
                break;
            }
            if conn.inbox.len() - offset - 4 < len {
                break;
            }
            match decode_hub_frame(&conn.inbox[offset + 4..offset + 4 + len]) {
                Ok(HubFrame::Ack { next_seq }) => acked = Some(next_seq),
                Ok(HubFrame::Refuse { reason }) => {
                    failure = Some(format!("the hub closed the connection: {reason}"));
                    eprintln!("logfunnel client: the hub closed the connection: {reason}");
                    break;
                }
                Ok(HubFrame::Welcome { .. } | HubFrame::Stats(_)) => {
                    failure = Some("hub sent a second Welcome".into());
                    break;
                }
                Err(e) => {
                    failure = Some(format!("undecodable frame from the hub: {e}"));
                    break;
                }
            }
            offset += 4 + len;
        }
        conn.inbox.drain(..offset);
        if let Some(next) = acked {
            self.acknowledge(next);
            got = true;
        }
        if let Some(why) = failure {
            return self.fail_read(why);
        }
        got
    }

    fn fail_read(&mut self, why: String) -> bool {
        self.disconnect(why);
        true
    }

    /// The hub holds every record below `next`: forget those batches.
    fn acknowledge(&mut self, next: u64) {
        while let Some(front) = self.pending.front() {
            if front.first_seq + front.count > next {
                break;
            }
            self.pending_bytes -= front.frame().len();
            // Keep the buffer while spares and unacknowledged batches stay
            // within the window the client may hold anyway: freed, a buffer
            // goes back to the allocator, which returns its pages to the
            // kernel, and the next batch faults them in again
            // (docs/BENCHMARKS.md#buffers-kept-for-reuse).
            let batch_bytes = self.shared.settings.batch_bytes;
            let room =
                (self.spare.len() + 1) * batch_bytes + self.pending_bytes <= self.shared.settings.max_unacked;
            if let Some(done) = self.pending.pop_front()
                && (self.spare.len() < SPARE_BUFFERS || room)
                && done.start > 0
            {
                self.spare.push(done.buf);
            }
            self.unsent = self.unsent.saturating_sub(1);
        }
        let prev = self.shared.acked.load(Ordering::Acquire);
        if next > prev {
            self.last_progress = Instant::now();
            self.shared.acked.store(next, Ordering::Release);
        }
    }
}

/// Whether a read would return at once (data, end of stream or an error).
#[cfg(unix)]
fn readable(stream: &Stream) -> io::Result<bool> {
    use std::os::fd::{AsFd, AsRawFd};
    let fd = match stream {
        Stream::UdSocket(s) => s.as_fd().as_raw_fd(),
    };
    let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd, zero timeout.
    let r = unsafe { libc::poll(&mut pfd, 1, 0) };
    if r < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted { Ok(false) } else { Err(e) };
    }
    Ok(r > 0)
}

#[cfg(not(unix))]
fn readable(stream: &Stream) -> io::Result<bool> {
    // Named pipes have no poll; peek by switching to non-blocking briefly.
    stream.set_nonblocking(true)?;
    let mut probe = [0u8; 0];
    let r = (&*stream).read(&mut probe);
    stream.set_nonblocking(false)?;
    match r {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(e),
    }
}
