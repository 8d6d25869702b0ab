//! Delivery for network handlers, written once: what a handler has taken
//! waits here until a transport has delivered it, is retried with backoff
//! while the remote is away, and is counted when it is finally given up.
//!
//! A network handler is split the way Vector's sinks are:
//! - *take*: the handler formats a record into the open [`OutBatch`] of its
//!   [`Outbox`] (never blocking, never sleeping);
//! - *deliver*: a [`Transport`] makes one attempt on the oldest batch and
//!   answers [`Attempt::Done`], [`Attempt::Wait`] (progress, the rest must
//!   wait for the socket or for acknowledgements), [`Attempt::Retry`] (why)
//!   or [`Attempt::Reject`] (why).
//!
//! The outbox owns what is pending (bounded by records and bytes, with the
//! handler's overflow policy), batching by count, bytes and age, the retry
//! schedule (exponential with jitter, capped), and the counters: a record
//! counts as emitted when delivered, failed when rejected or given up,
//! dropped when the policy drops it, and is `held` meanwhile. The handler's
//! worker asks [`Outbox::next_due`] when to wake it, so a retry happens on
//! time even while records keep arriving, and a shutdown gives it a
//! deadline ([`Outbox::drain`]).

pub(crate) mod datagram;
pub(crate) mod link;
pub(crate) mod offload;
pub(crate) mod relp;
pub(crate) mod spool;
pub(crate) mod stream;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use logfunnel_protocol::Backoff;

use crate::config::common::OverflowPolicy;
use crate::config::keys::Section;
use crate::formatter::RecordContext;
use crate::handler::HandlerError;
use crate::stats::{HandlerCounters, add, sub};

/// Batching, buffering and retry settings: the keys every network handler
/// shares (docs/CONFIG.md, "Delivery").
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryOptions {
    /// `batch_max_records`: a batch is sent once it holds this many records.
    pub batch_max_records: usize,
    /// `batch_max_bytes`: … or this many bytes.
    pub batch_max_bytes: usize,
    /// `batch_interval`: … or once its first record is this old; zero sends
    /// whatever is taken as soon as the handler's queue runs dry.
    pub batch_interval: Duration,
    /// `buffer_max_records`: records held (waiting, or for a retry) at most;
    /// beyond it the handler's `overflow` policy applies.
    pub buffer_max_records: usize,
    /// `buffer_max_bytes`: … and bytes.
    pub buffer_max_bytes: usize,
    /// `retry_initial`: the first wait after a failed attempt.
    pub retry_initial: Duration,
    /// `retry_max`: the longest wait between attempts.
    pub retry_max: Duration,
    /// `max_retries`: failed attempts after which a batch is given up
    /// (counted as failed); `None` retries for as long as the buffer has room.
    pub max_retries: Option<u32>,
    /// `buffer = "disk"`: records are kept in a disk buffer under
    /// `state_dir` (see `spool.rs`), acknowledged once written there.
    pub disk: bool,
    /// `max_buffer_bytes`: the disk buffer's bound (written, not yet
    /// delivered); beyond it the handler's `overflow` policy applies.
    pub max_buffer_bytes: u64,
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        DeliveryOptions {
            batch_max_records: 1000,
            batch_max_bytes: 256 << 10,
            batch_interval: Duration::ZERO,
            buffer_max_records: 100_000,
            buffer_max_bytes: 64 << 20,
            retry_initial: Duration::from_millis(500),
            retry_max: Duration::from_secs(30),
            max_retries: None,
            disk: false,
            max_buffer_bytes: 256 << 20,
        }
    }
}

/// The largest batch or buffer size a configuration may ask for: sizes are
/// bounded when read, not when memory runs out.
const MAX_BYTES: usize = 1 << 34;
const MAX_RECORDS: usize = 1 << 30;

impl DeliveryOptions {
    /// Reads the delivery keys of a handler's section over `defaults`.
    pub(crate) fn read(s: &mut Section<'_>, defaults: DeliveryOptions) -> DeliveryOptions {
        let size = |s: &mut Section<'_>, key: &'static [&'static str], max: usize, default: usize| {
            s.positive_at_most(key, max).unwrap_or(default)
        };
        let d = defaults;
        let o = DeliveryOptions {
            batch_max_records: size(s, &["batch_max_records"], MAX_RECORDS, d.batch_max_records),
            batch_max_bytes: size(s, &["batch_max_bytes"], MAX_BYTES, d.batch_max_bytes),
            batch_interval: s.seconds(&["batch_interval"], true).unwrap_or(d.batch_interval),
            buffer_max_records: size(s, &["buffer_max_records"], MAX_RECORDS, d.buffer_max_records),
            buffer_max_bytes: size(s, &["buffer_max_bytes"], MAX_BYTES, d.buffer_max_bytes),
            retry_initial: s.seconds(&["retry_initial"], false).unwrap_or(d.retry_initial),
            retry_max: s.seconds(&["retry_max"], false).unwrap_or(d.retry_max),
            max_retries: s.count(&["max_retries"]).or(d.max_retries),
            disk: s.choice(&["buffer"], &[("memory", false), ("disk", true)]).unwrap_or(d.disk),
            max_buffer_bytes: s
                .positive_at_most(&["max_buffer_bytes"], MAX_BYTES)
                .map_or(d.max_buffer_bytes, |b| b as u64),
        };
        if o.retry_max < o.retry_initial {
            s.issue("retry_max", "must not be shorter than retry_initial");
        }
        o
    }
}

/// Records taken by a handler, encoded back to back as its transport will
/// send them, waiting to be delivered.
#[derive(Debug)]
pub(crate) struct OutBatch {
    /// Tells batches apart (a transport that keeps state across attempts,
    /// such as RELP's frames in flight, must know when the batch changed).
    id: u64,
    data: Vec<u8>,
    /// End offset of each record in `data`.
    ends: Vec<usize>,
    /// Indices of the hub's own records (drop reports): delivered like the
    /// others, counted as nobody's.
    reports: Vec<usize>,
    /// Records settled so far (a prefix): delivered, or rejected one by one.
    done: usize,
    /// Indices of the settled records the remote rejected.
    rejected: Vec<usize>,
    /// Settled records already counted.
    counted: usize,
    /// When its first record was taken.
    opened: Instant,
    /// Whether a transport has started on it (it may be partly on the wire).
    started: bool,
    /// Failed attempts so far.
    attempts: u32,
}

impl OutBatch {
    fn new(id: u64) -> OutBatch {
        OutBatch {
            id,
            data: Vec::new(),
            ends: Vec::new(),
            reports: Vec::new(),
            done: 0,
            rejected: Vec::new(),
            counted: 0,
            opened: Instant::now(),
            started: false,
            attempts: 0,
        }
    }

    /// This batch's number (unique within its outbox).
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Records in the batch.
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// Records settled so far (those before index `done`).
    pub(crate) fn done(&self) -> usize {
        self.done
    }

    /// Whether every record is settled.
    pub(crate) fn is_settled(&self) -> bool {
        self.done == self.ends.len()
    }

    fn start_of(&self, i: usize) -> usize {
        if i == 0 { 0 } else { self.ends[i - 1] }
    }

    /// The encoded bytes of record `i`.
    pub(crate) fn record(&self, i: usize) -> &[u8] {
        &self.data[self.start_of(i)..self.ends[i]]
    }

    /// The bytes of records `from..`, back to back.
    pub(crate) fn bytes_from(&self, from: usize) -> &[u8] {
        &self.data[self.start_of(from)..]
    }

    /// The byte offset where record `i` starts (`len()` gives the end).
    pub(crate) fn offset_of(&self, i: usize) -> usize {
        self.start_of(i)
    }

    /// How many records end at or before byte `offset`.
    pub(crate) fn records_within(&self, offset: usize) -> usize {
        self.ends.partition_point(|&e| e <= offset)
    }

    /// The next `n` records are delivered.
    pub(crate) fn advance(&mut self, n: usize) {
        self.done = (self.done + n).min(self.ends.len());
    }

    /// The next record was refused by the remote for good (too large…): it
    /// counts as failed; the others carry on.
    pub(crate) fn reject_next(&mut self) {
        if self.done < self.ends.len() {
            self.rejected.push(self.done);
            self.done += 1;
        }
    }

    fn bytes(&self) -> usize {
        self.data.len()
    }

    /// Appends `other`'s records (both untouched by any transport).
    fn absorb(&mut self, other: OutBatch) {
        let base = self.data.len();
        let first = self.ends.len();
        self.data.extend_from_slice(&other.data);
        self.ends.extend(other.ends.iter().map(|e| e + base));
        self.reports.extend(other.reports.iter().map(|i| i + first));
        self.opened = self.opened.min(other.opened);
    }

    /// Clients' records in `from..to`, and how many of them were rejected.
    fn clients_in(&self, from: usize, to: usize) -> (u64, u64) {
        let reports = self.reports.iter().filter(|&&i| (from..to).contains(&i)).count();
        let rejected =
            self.rejected.iter().filter(|&&i| (from..to).contains(&i) && !self.reports.contains(&i)).count();
        ((to - from - reports) as u64, rejected as u64)
    }

    /// Clients' records not yet settled.
    fn clients_left(&self) -> u64 {
        self.clients_in(self.done, self.len()).0
    }
}

/// The answer of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// Every record of the batch is settled.
    Done,
    /// Progress may have been made; the rest waits for the transport (a full
    /// socket buffer, a connection being set up, acknowledgements to come).
    Wait,
    /// The attempt failed; try again after a backoff.
    Retry(String),
    /// The remote refused the rest of the batch for good (an HTTP
    /// collector's 4xx; syslog transports refuse single records instead,
    /// with [`OutBatch::reject_next`]).
    Reject(String),
}

/// How a handler turns a record into the bytes its transport sends
/// (or its [`offload::Exchange`] reads).
pub(crate) trait Encode: Send {
    /// Appends the record's bytes to `out`.
    fn encode(&mut self, ctx: &RecordContext<'_>, out: &mut Vec<u8>) -> Result<(), HandlerError>;
}

/// One way of delivering batches: a connection, its framing, its protocol.
pub(crate) trait Transport: Send {
    /// One attempt on what is left of `batch` (records from `batch.done()`),
    /// advancing `done` as records are delivered. Never blocks for long.
    fn attempt(&mut self, batch: &mut OutBatch) -> Attempt;
    /// Records counted as delivered earlier that a connection which broke
    /// since may have lost (they were still in a kernel's buffers): they are
    /// moved from emitted to failed.
    fn take_unconfirmed(&mut self) -> u64 {
        0
    }
    /// After [`Attempt::Retry`]: how long the remote asked to be left alone
    /// (HTTP's Retry-After); the next attempt waits at least that long.
    fn retry_after(&mut self) -> Option<Duration> {
        None
    }
    /// Nothing is pending: a chance to notice that the peer has gone.
    fn idle(&mut self) {}
    /// The hub is stopping: end the session politely.
    fn close(&mut self) {}
    /// Where it delivers, for messages (`tcp 127.0.0.1:514`).
    fn describe(&self) -> String;
}

/// How soon a transport that said [`Attempt::Wait`] is asked again: soon at
/// first, less often while it keeps waiting.
const POLL_MIN: Duration = Duration::from_micros(200);
const POLL_MAX: Duration = Duration::from_millis(50);

/// The longest wait a remote's Retry-After may impose (a bogus header must
/// not park a handler for days).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// What a network handler holds for delivery; see the module docs.
pub(crate) struct Outbox {
    opts: DeliveryOptions,
    policy: OverflowPolicy,
    /// Sealed batches, oldest first; the front one may be partly delivered.
    pending: VecDeque<OutBatch>,
    /// The batch being filled.
    open: OutBatch,
    /// Clients' records held (in `open` and `pending`, not yet settled).
    held_records: usize,
    /// Bytes held.
    held_bytes: usize,
    retry: Backoff,
    poll: Backoff,
    /// No attempt before this (a retry's backoff, or a transport's wait).
    not_before: Option<Instant>,
    counters: Arc<HandlerCounters>,
    /// The id of the next batch opened.
    next_id: u64,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("pending", &self.pending.len())
            .field("held_records", &self.held_records)
            .field("not_before", &self.not_before)
            .finish()
    }
}

impl Outbox {
    /// An empty outbox that reports into `counters`.
    pub(crate) fn new(
        opts: DeliveryOptions,
        policy: OverflowPolicy,
        counters: Arc<HandlerCounters>,
    ) -> Outbox {
        let retry = Backoff::new(opts.retry_initial, opts.retry_max).with_jitter(Backoff::random_seed());
        Outbox {
            opts,
            policy,
            pending: VecDeque::new(),
            open: OutBatch::new(0),
            held_records: 0,
            held_bytes: 0,
            retry,
            poll: Backoff::new(POLL_MIN, POLL_MAX),
            not_before: None,
            counters,
            next_id: 1,
        }
    }

    /// Whether the handler can take records now: false only under the
    /// `block` policy with the buffer full (the worker then leaves records
    /// in its queue, which pushes back to the dispatcher and the clients).
    pub(crate) fn ready(&self) -> bool {
        self.policy != OverflowPolicy::Block || !self.full()
    }

    fn full(&self) -> bool {
        self.held_records >= self.opts.buffer_max_records || self.held_bytes >= self.opts.buffer_max_bytes
    }

    /// Takes one client record: `encode` appends its bytes to the buffer it
    /// is given. Under a drop policy with the buffer full, a record is
    /// dropped (this one, or the oldest waiting ones) and counted.
    pub(crate) fn take(
        &mut self,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<(), HandlerError>,
    ) -> Result<(), HandlerError> {
        if self.full() {
            match self.policy {
                OverflowPolicy::DropNewest => {
                    self.count_dropped(1);
                    return Ok(());
                }
                OverflowPolicy::DropOldest => {
                    if !self.evict_oldest() {
                        self.count_dropped(1);
                        return Ok(());
                    }
                }
                // `ready` kept the worker from taking more; what one batch
                // from the queue brings past the limit is still taken.
                OverflowPolicy::Block => {}
            }
        }
        self.append(encode, false)
    }

    /// Takes one of the hub's own records (a drop report): it bypasses the
    /// limits and is not counted as a client's record.
    pub(crate) fn take_report(
        &mut self,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<(), HandlerError>,
    ) -> Result<(), HandlerError> {
        self.append(encode, true)
    }

    fn append(
        &mut self,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<(), HandlerError>,
        report: bool,
    ) -> Result<(), HandlerError> {
        let b = &mut self.open;
        if b.ends.is_empty() {
            b.opened = Instant::now();
        }
        let start = b.data.len();
        if let Err(e) = encode(&mut b.data) {
            b.data.truncate(start);
            return Err(e);
        }
        let end = b.data.len();
        if report {
            b.reports.push(b.ends.len());
        } else {
            self.held_records += 1;
            add(&self.counters.held, 1);
        }
        b.ends.push(end);
        self.held_bytes += end - start;
        if b.ends.len() >= self.opts.batch_max_records || b.data.len() >= self.opts.batch_max_bytes {
            self.seal();
        }
        Ok(())
    }

    /// Drops the oldest batch no transport has started on; false if there is none.
    fn evict_oldest(&mut self) -> bool {
        let i = match self.pending.iter().position(|b| !b.started) {
            Some(i) => i,
            None => return false,
        };
        let b = self.pending.remove(i).expect("index from position");
        let clients = b.clients_left();
        self.held_bytes -= b.bytes();
        self.held_records -= clients as usize;
        sub(&self.counters.held, clients);
        self.count_dropped(clients);
        true
    }

    /// Whether records may be loaded from a disk buffer now (within
    /// `buffer_max_records` and `_bytes`).
    pub(crate) fn has_room(&self) -> bool {
        !self.full()
    }

    /// Loads one client record from a disk buffer: counted as held when it
    /// was written there ([`Outbox::count_held`]), counted as delivered or
    /// failed here.
    pub(crate) fn load(&mut self, record: &[u8]) {
        let _ = self.append(
            |buf| {
                buf.extend_from_slice(record);
                Ok(())
            },
            false,
        );
        sub(&self.counters.held, 1);
    }

    /// Counts records held outside the outbox (in a disk buffer).
    pub(crate) fn count_held(&self, n: u64) {
        add(&self.counters.held, n);
    }

    /// Clients' records in memory, not yet settled.
    pub(crate) fn held_in_memory(&self) -> usize {
        self.held_records
    }

    pub(crate) fn count_dropped(&self, n: u64) {
        // Records the queue took (received) and then dropped here: counted
        // like drop_oldest's evictions, so received = settled + held + queued.
        add(&self.counters.dropped, n);
        add(&self.counters.evicted, n);
    }

    fn seal(&mut self) {
        if !self.open.ends.is_empty() {
            let sealed = std::mem::replace(&mut self.open, OutBatch::new(self.next_id));
            self.next_id += 1;
            self.pending.push_back(sealed);
        }
    }

    /// When the worker should call [`Outbox::poll`] next, if anything is held.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        let delivery =
            if self.pending.is_empty() { None } else { Some(self.not_before.unwrap_or_else(Instant::now)) };
        let age = (!self.open.ends.is_empty() && !self.opts.batch_interval.is_zero())
            .then(|| self.open.opened + self.opts.batch_interval);
        match (delivery, age) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The handler's queue ran dry: send what was taken (unless batches
    /// wait for their interval), as far as the transport allows now.
    pub(crate) fn flush(&mut self, t: &mut dyn Transport) -> Result<(), HandlerError> {
        if self.opts.batch_interval.is_zero() {
            self.seal();
        }
        self.poll(t)
    }

    /// Due work: seal an open batch that reached its age, and make the
    /// attempts that are due.
    pub(crate) fn poll(&mut self, t: &mut dyn Transport) -> Result<(), HandlerError> {
        let now = Instant::now();
        if !self.open.ends.is_empty() && now >= self.open.opened + self.opts.batch_interval {
            self.seal();
        }
        if self.pending.is_empty() {
            t.idle();
            return self.take_unconfirmed(t);
        }
        if self.not_before.is_some_and(|at| now < at) {
            return Ok(());
        }
        self.not_before = None;
        self.coalesce();
        let mut result = Ok(());
        while let Some(front) = self.pending.front_mut() {
            front.started = true;
            let before = front.done;
            let answer = t.attempt(front);
            let progressed = front.done > before;
            self.count_progress();
            match answer {
                Attempt::Done => {
                    self.finish_front();
                    self.retry.reset();
                    self.poll.reset();
                }
                Attempt::Wait => {
                    if progressed {
                        self.poll.reset();
                        self.retry.reset();
                    }
                    self.not_before = Some(Instant::now() + self.poll.next_delay());
                    break;
                }
                Attempt::Retry(why) => {
                    add(&self.counters.retries, 1);
                    let front = self.pending.front_mut().expect("front attempted");
                    front.attempts += 1;
                    let message = format!("delivery to {} failed: {why}", t.describe());
                    if self.opts.max_retries.is_some_and(|max| front.attempts > max) {
                        let n = self.give_up_front();
                        result = Err(self.note(format!(
                            "{message}; gave up on {n} records after {} attempts (max_retries)",
                            self.opts.max_retries.unwrap_or(0) + 1
                        )));
                        continue;
                    }
                    let asked = t.retry_after().map_or(Duration::ZERO, |d| d.min(MAX_RETRY_AFTER));
                    self.not_before = Some(Instant::now() + self.retry.next_delay().max(asked));
                    result = Err(self.note(format!("{message} (will retry)")));
                    break;
                }
                Attempt::Reject(why) => {
                    let n = self.give_up_front();
                    result = Err(self.note(format!("{} refused {n} records: {why}", t.describe())));
                }
            }
        }
        result.and(self.take_unconfirmed(t))
    }

    /// Merges waiting batches up to the batch limits: when the remote was
    /// away, or is slower than the records come, many small batches (one
    /// per time the queue ran dry) pile up; sent as they are, each would
    /// cost a round trip (a RELP window, an HTTP request).
    fn coalesce(&mut self) {
        let mut i = usize::from(self.pending.front().is_some_and(|b| b.started));
        while i + 1 < self.pending.len() {
            let (a, b) = (&self.pending[i], &self.pending[i + 1]);
            let fits = a.len() + b.len() <= self.opts.batch_max_records
                && a.bytes() + b.bytes() <= self.opts.batch_max_bytes;
            if fits {
                let b = self.pending.remove(i + 1).expect("index checked");
                self.pending[i].absorb(b);
            } else {
                i += 1;
            }
        }
    }

    /// At shutdown: keeps delivering until nothing is held or `deadline`
    /// passes. What is still held then stays counted as undelivered.
    pub(crate) fn drain(&mut self, t: &mut dyn Transport, deadline: Instant) -> Result<(), HandlerError> {
        self.seal();
        let mut result = Ok(());
        loop {
            let r = self.poll(t);
            if r.is_err() {
                result = r;
            }
            if self.pending.is_empty() {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let wake = self.next_due().unwrap_or(now).clamp(now, deadline);
            std::thread::sleep((wake - now).max(Duration::from_micros(200)));
        }
        t.close();
        result
    }

    /// Clients' records held now.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.held_records
    }

    /// Counts what the transport settled in the front batch since last time.
    fn count_progress(&mut self) {
        let Some(front) = self.pending.front_mut() else { return };
        if front.done == front.counted {
            return;
        }
        let (clients, rejected) = front.clients_in(front.counted, front.done);
        let bytes = front.offset_of(front.done) - front.offset_of(front.counted);
        front.counted = front.done;
        add(&self.counters.emitted, clients - rejected);
        add(&self.counters.failed, rejected);
        sub(&self.counters.held, clients);
        self.held_records -= clients as usize;
        self.held_bytes -= bytes;
    }

    fn finish_front(&mut self) {
        self.count_progress();
        if let Some(b) = self.pending.pop_front() {
            // Settled records are out of held_bytes already; the rest (a
            // batch given up) leaves with it.
            self.held_bytes -= b.bytes() - b.offset_of(b.counted);
        }
    }

    /// Counts what is left of the front batch as failed and removes it.
    fn give_up_front(&mut self) -> u64 {
        self.count_progress();
        let Some(front) = self.pending.pop_front() else { return 0 };
        let left = front.clients_left();
        add(&self.counters.failed, left);
        sub(&self.counters.held, left);
        self.held_records -= left as usize;
        self.held_bytes -= front.bytes() - front.offset_of(front.counted);
        left
    }

    fn take_unconfirmed(&mut self, t: &mut dyn Transport) -> Result<(), HandlerError> {
        let n = t.take_unconfirmed();
        if n == 0 {
            return Ok(());
        }
        sub(&self.counters.emitted, n);
        add(&self.counters.failed, n);
        add(&self.counters.unconfirmed, n);
        Err(self.note(format!(
            "the connection to {} broke with {n} records written to it but not confirmed by the peer: counted as failed (they may not have arrived)",
            t.describe()
        )))
    }

    /// Remembers `message` as the handler's last error (shown by `stats`).
    fn note(&self, message: String) -> HandlerError {
        self.counters.set_last_error(&message);
        HandlerError::Delivery(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::load;

    /// A transport driven by a script of answers; it delivers `per_attempt`
    /// records on each attempt that is not a failure.
    struct Scripted {
        answers: VecDeque<Attempt>,
        per_attempt: usize,
        delivered: Vec<Vec<u8>>,
        unconfirmed: u64,
    }

    impl Transport for Scripted {
        fn attempt(&mut self, batch: &mut OutBatch) -> Attempt {
            let answer = self.answers.pop_front().unwrap_or(Attempt::Done);
            match &answer {
                Attempt::Retry(_) | Attempt::Reject(_) => return answer,
                _ => {}
            }
            let n = if answer == Attempt::Done { batch.len() - batch.done() } else { self.per_attempt };
            for _ in 0..n.min(batch.len() - batch.done()) {
                self.delivered.push(batch.record(batch.done()).to_vec());
                batch.advance(1);
            }
            if batch.is_settled() { Attempt::Done } else { answer }
        }
        fn take_unconfirmed(&mut self) -> u64 {
            std::mem::take(&mut self.unconfirmed)
        }
        fn describe(&self) -> String {
            "test".into()
        }
    }

    fn scripted(answers: Vec<Attempt>) -> Scripted {
        Scripted { answers: answers.into(), per_attempt: 1, delivered: Vec::new(), unconfirmed: 0 }
    }

    fn outbox(opts: DeliveryOptions, policy: OverflowPolicy) -> (Outbox, Arc<HandlerCounters>) {
        let c = Arc::new(HandlerCounters::default());
        (Outbox::new(opts, policy, Arc::clone(&c)), c)
    }

    fn take(o: &mut Outbox, text: &str) {
        o.take(|b| {
            b.extend_from_slice(text.as_bytes());
            Ok(())
        })
        .unwrap();
    }

    fn fast() -> DeliveryOptions {
        DeliveryOptions {
            retry_initial: Duration::from_millis(1),
            retry_max: Duration::from_millis(2),
            ..DeliveryOptions::default()
        }
    }

    #[test]
    fn batches_by_count_and_bytes_and_delivers_in_order() {
        let opts = DeliveryOptions { batch_max_records: 3, batch_max_bytes: 10, ..fast() };
        let (mut o, c) = outbox(opts, OverflowPolicy::DropNewest);
        for r in ["a", "b", "c", "d", "eeeeeeeeeeee", "f"] {
            take(&mut o, r);
        }
        // [a b c] by count, [d eeeeeeeeeeee] by bytes; f is open.
        assert_eq!(o.pending.len(), 2);
        assert_eq!(load(&c.held), 6);
        let mut t = scripted(vec![]);
        o.flush(&mut t).unwrap();
        let got: Vec<String> = t.delivered.iter().map(|d| String::from_utf8_lossy(d).into_owned()).collect();
        assert_eq!(got, ["a", "b", "c", "d", "eeeeeeeeeeee", "f"]);
        assert_eq!((load(&c.emitted), load(&c.held), o.held_bytes), (6, 0, 0));
        assert_eq!(o.next_due(), None);
    }

    #[test]
    fn an_interval_holds_the_open_batch_until_it_is_due() {
        let opts = DeliveryOptions { batch_interval: Duration::from_millis(30), ..fast() };
        let (mut o, c) = outbox(opts, OverflowPolicy::Block);
        take(&mut o, "x");
        let mut t = scripted(vec![]);
        o.flush(&mut t).unwrap();
        assert!(t.delivered.is_empty(), "sent before its interval");
        let due = o.next_due().expect("the open batch is due at its age");
        assert!(due > Instant::now());
        std::thread::sleep(due - Instant::now());
        o.poll(&mut t).unwrap();
        assert_eq!(t.delivered.len(), 1);
        assert_eq!(load(&c.emitted), 1);
    }

    #[test]
    fn failures_back_off_and_the_batch_is_retried_whole_and_in_order() {
        let (mut o, c) = outbox(fast(), OverflowPolicy::DropNewest);
        for r in ["1", "2", "3"] {
            take(&mut o, r);
        }
        let mut t = scripted(vec![Attempt::Retry("refused".into()), Attempt::Retry("refused".into())]);
        let e = o.flush(&mut t).unwrap_err();
        assert!(e.to_string().contains("refused"), "{e}");
        assert!(o.next_due().unwrap() > Instant::now(), "a retry waits for its backoff");
        // Records keep arriving meanwhile; they wait behind the failed batch.
        take(&mut o, "4");
        o.flush(&mut t).unwrap();
        assert_eq!(load(&c.retries), 1, "no attempt before the backoff is over");
        for _ in 0..100 {
            if o.held() == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
            let _ = o.poll(&mut t);
        }
        assert_eq!(t.delivered, [b"1", b"2", b"3", b"4"]);
        assert_eq!((load(&c.retries), load(&c.emitted), load(&c.failed)), (2, 4, 0));
        assert!(c.last_error().unwrap().0.contains("failed: refused"));
    }

    #[test]
    fn max_retries_gives_up_and_counts_what_was_left() {
        let opts = DeliveryOptions { max_retries: Some(1), ..fast() };
        let (mut o, c) = outbox(opts, OverflowPolicy::DropNewest);
        take(&mut o, "a");
        take(&mut o, "b");
        let mut t = scripted(vec![Attempt::Wait, Attempt::Retry("x".into()), Attempt::Retry("y".into())]);
        // First attempt delivers one record and waits; then two failures.
        let _ = o.flush(&mut t);
        for _ in 0..100 {
            std::thread::sleep(Duration::from_millis(1));
            let _ = o.poll(&mut t);
            if o.held() == 0 {
                break;
            }
        }
        assert_eq!((load(&c.emitted), load(&c.failed), load(&c.held), o.held_bytes), (1, 1, 0, 0));
        assert!(c.last_error().unwrap().0.contains("gave up on 1 records"));
    }

    #[test]
    fn rejected_records_fail_alone_and_rejected_batches_fail_whole() {
        struct RejectSecond;
        impl Transport for RejectSecond {
            fn attempt(&mut self, b: &mut OutBatch) -> Attempt {
                while !b.is_settled() {
                    if b.record(b.done()) == b"too big" { b.reject_next() } else { b.advance(1) }
                }
                Attempt::Done
            }
            fn describe(&self) -> String {
                "test".into()
            }
        }
        let (mut o, c) = outbox(fast(), OverflowPolicy::Block);
        for r in ["ok", "too big", "ok"] {
            take(&mut o, r);
        }
        o.flush(&mut RejectSecond).unwrap();
        assert_eq!((load(&c.emitted), load(&c.failed)), (2, 1));
        take(&mut o, "z");
        let e = o.flush(&mut scripted(vec![Attempt::Reject("403".into())])).unwrap_err();
        assert!(e.to_string().contains("refused 1 records: 403"), "{e}");
        assert_eq!((load(&c.emitted), load(&c.failed), load(&c.held), o.held_bytes), (2, 2, 0, 0));
    }

    #[test]
    fn a_full_buffer_applies_the_policy_and_counts_every_drop() {
        let small = DeliveryOptions { batch_max_records: 2, buffer_max_records: 4, ..fast() };
        // drop_newest: the first four are kept, the rest counted.
        let (mut o, c) = outbox(small.clone(), OverflowPolicy::DropNewest);
        for i in 0..10 {
            take(&mut o, &i.to_string());
        }
        assert_eq!((o.held(), load(&c.dropped), load(&c.evicted)), (4, 6, 6));
        let mut t = scripted(vec![]);
        o.flush(&mut t).unwrap();
        assert_eq!(t.delivered, [b"0", b"1", b"2", b"3"]);
        // drop_oldest: whole batches no transport started on are evicted.
        let (mut o, c) = outbox(small.clone(), OverflowPolicy::DropOldest);
        for i in 0..10 {
            take(&mut o, &i.to_string());
        }
        assert_eq!(load(&c.dropped), 6);
        let mut t = scripted(vec![]);
        o.flush(&mut t).unwrap();
        assert_eq!(t.delivered, [b"6", b"7", b"8", b"9"]);
        // block: the worker is told to stop taking records.
        let (mut o, _) = outbox(small, OverflowPolicy::Block);
        for i in 0..4 {
            take(&mut o, &i.to_string());
        }
        assert!(!o.ready());
        o.flush(&mut scripted(vec![])).unwrap();
        assert!(o.ready());
    }

    #[test]
    fn reports_are_delivered_but_never_counted_as_clients_records() {
        let opts = DeliveryOptions { buffer_max_records: 1, ..fast() };
        let (mut o, c) = outbox(opts, OverflowPolicy::DropNewest);
        take(&mut o, "client");
        take(&mut o, "dropped");
        o.take_report(|b| {
            b.extend_from_slice(b"report");
            Ok(())
        })
        .unwrap();
        let mut t = scripted(vec![]);
        o.flush(&mut t).unwrap();
        assert_eq!(t.delivered, [&b"client"[..], b"report"]);
        assert_eq!((load(&c.emitted), load(&c.dropped), load(&c.held)), (1, 1, 0));
    }

    #[test]
    fn unconfirmed_records_move_from_emitted_to_failed() {
        let (mut o, c) = outbox(fast(), OverflowPolicy::DropNewest);
        take(&mut o, "a");
        take(&mut o, "b");
        let mut t = scripted(vec![]);
        o.flush(&mut t).unwrap();
        t.unconfirmed = 1;
        let e = o.poll(&mut t).unwrap_err();
        assert!(e.to_string().contains("1 records written to it but not confirmed"), "{e}");
        assert_eq!((load(&c.emitted), load(&c.failed), load(&c.unconfirmed)), (1, 1, 1));
    }

    #[test]
    fn small_batches_left_by_an_outage_are_merged_up_to_the_limits() {
        struct Counting(Vec<usize>);
        impl Transport for Counting {
            fn attempt(&mut self, b: &mut OutBatch) -> Attempt {
                self.0.push(b.len());
                b.advance(b.len());
                Attempt::Done
            }
            fn describe(&self) -> String {
                "test".into()
            }
        }
        let opts = DeliveryOptions { batch_max_records: 4, ..fast() };
        let (mut o, c) = outbox(opts, OverflowPolicy::DropNewest);
        let mut down = scripted(vec![Attempt::Retry("down".into()); 100]);
        for i in 0..10 {
            take(&mut o, &i.to_string());
            // One batch per record, as when the queue runs dry after each.
            let _ = o.flush(&mut down);
        }
        std::thread::sleep(Duration::from_millis(5));
        let mut up = Counting(Vec::new());
        o.poll(&mut up).unwrap();
        // The first batch was started (attempted) while down: it goes
        // alone; the nine after it are merged into batches of four.
        assert_eq!(up.0, [1, 4, 4, 1]);
        assert_eq!(load(&c.emitted), 10);
    }

    /// A transport whose every answer is random: partial progress, waits,
    /// failures, records and batches refused, connections lost with
    /// records in doubt.
    struct Chaos {
        rng: u64,
        delivered: Vec<u64>,
        unconfirmed: u64,
    }

    impl Chaos {
        fn next(&mut self) -> u64 {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            self.rng
        }
    }

    impl Transport for Chaos {
        fn attempt(&mut self, b: &mut OutBatch) -> Attempt {
            match self.next() % 10 {
                0 => return Attempt::Retry("chaos".into()),
                1 if self.next().is_multiple_of(4) => return Attempt::Reject("chaos".into()),
                _ => {}
            }
            let n = self.next() % 4;
            for _ in 0..n {
                if b.is_settled() {
                    break;
                }
                if self.next().is_multiple_of(20) {
                    b.reject_next();
                } else {
                    let text = std::str::from_utf8(b.record(b.done())).unwrap();
                    self.delivered.push(text.parse().unwrap_or(u64::MAX));
                    b.advance(1);
                    if self.next().is_multiple_of(50) {
                        self.unconfirmed += 1;
                    }
                }
            }
            if b.is_settled() { Attempt::Done } else { Attempt::Wait }
        }
        fn take_unconfirmed(&mut self) -> u64 {
            std::mem::take(&mut self.unconfirmed)
        }
        fn describe(&self) -> String {
            "chaos".into()
        }
    }

    #[test]
    fn every_record_is_accounted_for_whatever_the_transport_answers() {
        for seed in 1..40u64 {
            let policy = [OverflowPolicy::DropNewest, OverflowPolicy::DropOldest, OverflowPolicy::Block]
                [(seed % 3) as usize];
            let opts = DeliveryOptions {
                batch_max_records: 1 + (seed % 7) as usize,
                buffer_max_records: 5 + (seed % 30) as usize,
                retry_initial: Duration::from_micros(10),
                retry_max: Duration::from_micros(50),
                max_retries: seed.is_multiple_of(2).then_some(3),
                ..DeliveryOptions::default()
            };
            let (mut o, c) = outbox(opts, policy);
            let mut t = Chaos {
                rng: seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
                delivered: Vec::new(),
                unconfirmed: 0,
            };
            let mut taken = 0u64;
            for i in 0..400u64 {
                if o.ready() {
                    take(&mut o, &i.to_string());
                    taken += 1;
                }
                if i.is_multiple_of(3) {
                    let _ = o.flush(&mut t);
                } else {
                    let _ = o.poll(&mut t);
                }
                if i.is_multiple_of(50) {
                    std::thread::sleep(Duration::from_micros(60));
                }
            }
            let _ = o.drain(&mut t, Instant::now() + Duration::from_secs(5));
            let n = |a: &std::sync::atomic::AtomicU64| load(a);
            let ctx = format!("seed {seed}: {c:?}");
            assert_eq!(o.held(), 0, "{ctx}");
            assert_eq!(n(&c.held), 0, "{ctx}");
            assert_eq!(n(&c.emitted) + n(&c.failed) + n(&c.dropped), taken, "{ctx}");
            assert_eq!(n(&c.emitted) + n(&c.unconfirmed), t.delivered.len() as u64, "{ctx}");
            assert!(t.delivered.windows(2).all(|w| w[0] < w[1]), "{ctx}: out of order or twice");
            assert_eq!(o.held_bytes, 0, "{ctx}");
        }
    }

    #[test]
    fn drain_keeps_trying_until_the_deadline() {
        let (mut o, c) = outbox(fast(), OverflowPolicy::DropNewest);
        take(&mut o, "a");
        let mut t = scripted(vec![Attempt::Retry("down".into()); 3]);
        let _ = o.drain(&mut t, Instant::now() + Duration::from_secs(5));
        assert_eq!((load(&c.emitted), load(&c.retries)), (1, 3));
        // A remote that never answers: drain returns at the deadline, and
        // the record stays held (undelivered).
        take(&mut o, "b");
        let mut t = scripted(vec![Attempt::Retry("down".into()); 10_000]);
        let start = Instant::now();
        let _ = o.drain(&mut t, start + Duration::from_millis(30));
        assert!(start.elapsed() < Duration::from_secs(2));
        assert_eq!(o.held(), 1);
    }
}
