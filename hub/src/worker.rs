//! A handler's worker: its bounded queue, its overflow policy, its thread.
//!
//! The dispatcher pushes routed batches; the worker pops them, calls the
//! handler for each record, and flushes the handler whenever the queue runs
//! dry. Capacity is counted in records and in bytes: the bytes of the batches
//! the queued records keep in memory (a record pins its whole batch), so that
//! large messages cannot make a queue of a few thousand records hold hundreds
//! of MiB. Every record dropped by the policy is counted, and the worker
//! writes a WARNING record through the handler itself saying how many were
//! dropped, as soon as it can.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use logfunnel_protocol::sync::{LockExt, WaitExt};
use logfunnel_protocol::{Level, MAX_MESSAGE_BYTES, Record, RecordView, Value, ValueRef, cut_message};

use crate::config::OverflowPolicy;
use crate::escape::{escape, escape_keeping_newlines, needs_escape, needs_escape_keeping_newlines};
use crate::formatter::{PeerCred, RecordContext};
use crate::frame::{Frame, InBatch, Peer};
use crate::handler::{Forward, Handler, HandlerError};
use crate::journal::Shared as Journal;
use crate::sessions::SettleGuard;
use crate::stats::{HandlerCounters, add, load, sub};

/// The records of one batch that go to one handler.
pub(crate) struct RoutedRecords {
    pub(crate) batch: Arc<InBatch>,
    /// Indices into `batch.records`; `None` means all of them.
    pub(crate) indices: Option<Vec<u32>>,
    /// Held until the records are written and journaled (durable handlers only).
    pub(crate) settle: Option<Arc<SettleGuard>>,
}

impl RoutedRecords {
    fn len(&self) -> usize {
        self.indices.as_ref().map_or(self.batch.records().len(), Vec::len)
    }

    /// The memory these records keep alive: their whole batch.
    fn bytes(&self) -> usize {
        self.batch.memory() + self.indices.as_ref().map_or(0, |ix| ix.capacity() * 4)
    }
}

enum Job {
    Records(RoutedRecords),
    Reopen,
}

struct State {
    jobs: VecDeque<Job>,
    records: usize,
    /// What the queued records keep in memory (see [`RoutedRecords::bytes`]).
    bytes: usize,
    closed: bool,
    /// Threads blocked in `push` / `pop`: a condition variable is only
    /// signalled when someone waits (each signal is a system call).
    pushers_waiting: usize,
    poppers_waiting: usize,
}

/// A bounded queue of jobs for one handler.
pub(crate) struct HandlerQueue {
    state: Mutex<State>,
    not_empty: Condvar,
    not_full: Condvar,
    capacity: usize,
    capacity_bytes: usize,
    policy: OverflowPolicy,
    /// Who may still push: the dispatcher, and each MemoryHandler targeting
    /// this handler. The queue closes when the last one is done.
    producers: AtomicUsize,
    /// Whether the handler journals what it writes (batches settle only
    /// once written; see `journal.rs`).
    durable: AtomicBool,
    pub(crate) counters: Arc<HandlerCounters>,
}

impl HandlerQueue {
    pub(crate) fn new(capacity: usize, capacity_bytes: usize, policy: OverflowPolicy) -> HandlerQueue {
        HandlerQueue {
            state: Mutex::new(State {
                jobs: VecDeque::new(),
                records: 0,
                bytes: 0,
                closed: false,
                pushers_waiting: 0,
                poppers_waiting: 0,
            }),
            not_empty: Condvar::new(),
            not_full: Condvar::new(),
            capacity,
            capacity_bytes,
            policy,
            producers: AtomicUsize::new(1),
            durable: AtomicBool::new(false),
            counters: Arc::new(HandlerCounters::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.locked()
    }

    /// Queues `routed` under the overflow policy.
    pub(crate) fn push(&self, routed: RoutedRecords) {
        let (n, bytes) = (routed.len(), routed.bytes());
        let mut st = self.lock();
        // A batch larger than the whole queue is taken when the queue is
        // empty, so nothing is ever too big to deliver.
        let fits = |st: &State| {
            st.records == 0 || st.records + n <= self.capacity && st.bytes + bytes <= self.capacity_bytes
        };
        match self.policy {
            OverflowPolicy::Block => {
                if !fits(&st) {
                    st.pushers_waiting += 1;
                    while !fits(&st) && !st.closed {
                        st = self.not_full.wait_locked(st);
                    }
                    st.pushers_waiting -= 1;
                }
            }
            OverflowPolicy::DropNewest => {
                if !fits(&st) {
                    add(&self.counters.dropped, n as u64);
                    return;
                }
            }
            OverflowPolicy::DropOldest => {
                while !fits(&st) {
                    match st.jobs.iter().position(|j| matches!(j, Job::Records(_))) {
                        Some(i) => {
                            if let Some(Job::Records(old)) = st.jobs.remove(i) {
                                st.records -= old.len();
                                st.bytes -= old.bytes();
                                add(&self.counters.dropped, old.len() as u64);
                                add(&self.counters.evicted, old.len() as u64);
                            }
                        }
                        None => break,
                    }
                }
            }
        }
        st.records += n;
        st.bytes += bytes;
        st.jobs.push_back(Job::Records(routed));
        add(&self.counters.received, n as u64);
        let wake = st.poppers_waiting > 0;
        drop(st);
        if wake {
            self.not_empty.notify_one();
        }
    }

    pub(crate) fn push_reopen(&self) {
        self.lock().jobs.push_back(Job::Reopen);
        self.not_empty.notify_one();
    }

    /// Marks the handler as journaled (set once, before records flow).
    pub(crate) fn set_durable(&self, durable: bool) {
        self.durable.store(durable, Ordering::Release);
    }

    /// Whether batches settle only once this handler has written them.
    pub(crate) fn is_durable(&self) -> bool {
        self.durable.load(Ordering::Relaxed)
    }

    /// One more producer (a MemoryHandler) that will call [`close`](Self::close).
    pub(crate) fn add_producer(&self) {
        self.producers.fetch_add(1, Ordering::AcqRel);
    }

    /// One producer is done; after the last, the worker drains what is
    /// queued and stops.
    pub(crate) fn close(&self) {
        if self.producers.fetch_sub(1, Ordering::AcqRel) > 1 {
            return;
        }
        self.lock().closed = true;
        self.not_empty.notify_all();
        self.not_full.notify_all();
    }

    pub(crate) fn depth(&self) -> u64 {
        self.lock().records as u64
    }

    /// The batch indices of the queued records, in the order the worker
    /// would emit them.
    #[cfg(test)]
    pub(crate) fn queued_indices(&self) -> Vec<u32> {
        let st = self.lock();
        let mut out = Vec::new();
        for job in &st.jobs {
            if let Job::Records(w) = job {
                match &w.indices {
                    Some(ix) => out.extend(ix),
                    None => out.extend(0..w.batch.records().len() as u32),
                }
            }
        }
        out
    }

    /// Whether the queue is closed (its producers are done).
    fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Next job; `Ok(None)` when the queue is empty (without `wait`) or
    /// stayed empty until `wait`, `Err(())` when closed and drained.
    fn pop(&self, wait: Option<Instant>) -> Result<Option<Job>, ()> {
        let mut wait = wait;
        let mut st = self.lock();
        loop {
            if let Some(job) = st.jobs.pop_front() {
                if let Job::Records(w) = &job {
                    st.records -= w.len();
                    st.bytes -= w.bytes();
                    if st.pushers_waiting > 0 {
                        drop(st);
                        self.not_full.notify_all();
                    }
                }
                return Ok(Some(job));
            }
            if st.closed {
                return Err(());
            }
            let Some(until) = wait.take() else { return Ok(None) };
            let Some(timeout) = until.checked_duration_since(Instant::now()).filter(|t| !t.is_zero()) else {
                return Ok(None);
            };
            st.poppers_waiting += 1;
            st = self.not_empty.wait_timeout_locked(st, timeout).0;
            st.poppers_waiting -= 1;
        }
    }
}

impl Forward for HandlerQueue {
    fn add_producer(&self) {
        HandlerQueue::add_producer(self);
    }

    fn forward(&self, peer: Arc<Peer>, frame: Frame) {
        let batch = InBatch::new(peer, frame, None, None);
        self.push(RoutedRecords { batch: Arc::new(batch), indices: None, settle: None });
    }

    fn close(&self) {
        HandlerQueue::close(self);
    }
}

/// What a worker needs besides its queue and handler.
pub(crate) struct WorkerOptions {
    pub(crate) start_ns: i64,
    /// The delivery journal of a durable handler.
    pub(crate) journal: Option<Journal>,
    /// Escape control characters in messages (log-injection safety).
    pub(crate) escape: bool,
    /// Set by a shutdown: until when a handler may keep delivering.
    pub(crate) deadline: Arc<Mutex<Option<Instant>>>,
}

/// How long an idle worker sleeps before polling its handler anyway.
const IDLE_POLL: Duration = Duration::from_millis(500);

/// Drop reports are written at most this often (a handler whose remote is
/// down drops continuously; one report per batch would flood it).
const DROP_REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// A durable handler settles what it wrote (flushes, commits its journal,
/// lets the batches be acknowledged) at least this often under sustained
/// load, and after at most this many batches.
const SETTLE_INTERVAL: Duration = Duration::from_millis(10);
const SETTLE_BATCHES: usize = 256;
/// How soon settling is tried again after the journal could not be written.
const JOURNAL_RETRY: Duration = Duration::from_millis(200);

/// Runs a handler until its queue is closed and drained.
pub(crate) fn run(
    name: String,
    queue: Arc<HandlerQueue>,
    handler: Box<dyn Handler>,
    mut opts: WorkerOptions,
) {
    let mut handler = Contained { inner: handler, counters: Arc::clone(&queue.counters) };
    let start_ns = opts.start_ns;
    let counts_own = handler.counts_deliveries();
    let mut errors = ErrorReporter::new(name.clone());
    let mut drops = DropReporter { reported: 0, last: None };
    let mut dirty = false;
    // Batches written but not yet settled; dropping their guards settles them.
    let mut unsettled: Vec<Arc<SettleGuard>> = Vec::new();
    let mut first_unsettled = Instant::now();
    // While the journal cannot be written, batches stay unsettled (their
    // clients keep them) and settling is retried at most this often.
    let mut retry_settle: Option<Instant> = None;
    // Flushes the handler, commits its journal (if any), and on success
    // lets the batches written so far be acknowledged.
    let settle = |handler: &mut dyn Handler,
                  journal: &mut Option<Journal>,
                  unsettled: &mut Vec<Arc<SettleGuard>>,
                  errors: &mut ErrorReporter,
                  retry_settle: &mut Option<Instant>| {
        count_write(handler.flush(), &queue.counters, errors);
        queue.counters.unflushed.store(0, std::sync::atomic::Ordering::Relaxed);
        let Some(j) = journal else {
            unsettled.clear();
            return;
        };
        let mut j = j.locked();
        let result = j.commit();
        for e in j.take_errors() {
            add(&queue.counters.journal_errors, 1);
            errors.report(&e);
        }
        drop(j);
        match result {
            Ok(()) => {
                unsettled.clear();
                *retry_settle = None;
            }
            Err(e) => {
                // Written to the file but not vouched for: acknowledging them
                // now would lose them to a crash (the next hub cuts what the
                // journal does not cover). Their clients keep them meanwhile.
                add(&queue.counters.journal_errors, 1);
                errors.report(&format!(
                    "cannot write the delivery journal: {e} ({} batches stay unacknowledged until it can be written)",
                    unsettled.len()
                ));
                *retry_settle = Some(Instant::now() + JOURNAL_RETRY);
            }
        }
    };
    loop {
        // What the handler asked to be woken for (a retry, a batch's age)
        // comes first, however busy the queue is.
        // The clock is read after asking: a handler due "now" answers with
        // the time it asked its own clock, which must not be later than ours.
        let due = handler.next_due();
        let now = Instant::now();
        if due.is_some_and(|due| due <= now) {
            count_write(handler.poll(), &queue.counters, &mut errors);
        }
        if !handler.ready() {
            // Its buffer is full under `block`: records stay queued (which
            // pushes back to the dispatcher) until a delivery makes room.
            if queue.is_closed() {
                break;
            }
            let wait = handler
                .next_due()
                .map_or(Duration::from_millis(50), |due| due.saturating_duration_since(now));

            std::thread::sleep(wait.clamp(Duration::from_micros(200), Duration::from_millis(50)));
            continue;
        }
        // Block only when everything written so far has been flushed, and
        // not past the handler's next due time.
        let wait = (!dirty).then(|| {
            let until = handler.next_due().map_or(now + IDLE_POLL, |due| due.min(now + IDLE_POLL));
            retry_settle.map_or(until, |r| r.min(until))
        });
        let job = match queue.pop(wait) {
            Ok(Some(job)) => job,
            Ok(None) => {
                if dirty || retry_settle.is_some_and(|r| r <= Instant::now()) {
                    settle(&mut handler, &mut opts.journal, &mut unsettled, &mut errors, &mut retry_settle);
                } else {
                    count_write(handler.poll(), &queue.counters, &mut errors);
                }
                crate::diag::tick();
                // A report written now is flushed at the next pass.
                dirty = drops.report(&name, &mut handler, &queue.counters, &mut errors, start_ns, false);
                continue;
            }
            Err(()) => break,
        };
        match job {
            Job::Reopen => count_write(handler.reopen(), &queue.counters, &mut errors),
            Job::Records(routed) => {
                let before = load(&queue.counters.emitted);
                emit_records(&routed, &mut handler, &queue.counters, &mut errors, &mut opts, counts_own);
                if !counts_own {
                    // Once per batch, not per record: emitted but not yet flushed.
                    add(&queue.counters.unflushed, load(&queue.counters.emitted).saturating_sub(before));
                }
                if let Some(s) = routed.settle {
                    if unsettled.is_empty() {
                        first_unsettled = Instant::now();
                    }
                    unsettled.push(s);
                }
                dirty = true;
                if (unsettled.len() >= SETTLE_BATCHES
                    || !unsettled.is_empty() && first_unsettled.elapsed() >= SETTLE_INTERVAL)
                    && retry_settle.is_none_or(|r| r <= Instant::now())
                {
                    settle(&mut handler, &mut opts.journal, &mut unsettled, &mut errors, &mut retry_settle);
                    dirty = false;
                }
            }
        }
        dirty |= drops.report(&name, &mut handler, &queue.counters, &mut errors, start_ns, false);
    }
    // The last word on drops, then what is held goes out within the
    // shutdown's deadline.
    drops.report(&name, &mut handler, &queue.counters, &mut errors, start_ns, true);
    count_write(handler.flush(), &queue.counters, &mut errors);
    // Flushed (or, if the flush failed, counted as failed): nothing it
    // emitted is still on its way. The last batches of a queue that never
    // ran dry were counted as unflushed until now, and reported as not
    // delivered although they were written.
    queue.counters.unflushed.store(0, std::sync::atomic::Ordering::Relaxed);
    let deadline = opts
        .deadline
        .locked()
        .map(|d| d.checked_sub(Duration::from_millis(50)).unwrap_or(d))
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(10));
    count_write(handler.drain(deadline), &queue.counters, &mut errors);
    count_write(handler.close(), &queue.counters, &mut errors);
    if let Some(j) = &opts.journal {
        let mut j = j.locked();
        let result = j.commit();
        for e in j.take_errors() {
            add(&queue.counters.journal_errors, 1);
            errors.report(&e);
        }
        if let Err(e) = result {
            add(&queue.counters.journal_errors, 1);
            errors.report(&format!(
                "cannot write the delivery journal: {e} ({} batches left unacknowledged; their clients resend them to the next hub)",
                unsettled.len()
            ));
            // Never acknowledged: the next hub cuts them and takes them again.
            unsettled.iter().for_each(|g| g.abandon());
        }
    }
    drop(unsettled);
}

/// A handler whose panics are contained: every call that panics counts a
/// panic, becomes [`HandlerError::Panicked`] (so the record being emitted
/// is counted as failed, with the panic's message) and leaves the handler
/// in place to take the next record. A panic must cost its record, never
/// the worker: a dead worker would leave its queue to fill and stall the
/// dispatcher, and every client with it.
struct Contained {
    inner: Box<dyn Handler>,
    counters: Arc<HandlerCounters>,
}

impl Contained {
    fn call<T>(&mut self, f: impl FnOnce(&mut dyn Handler) -> T) -> Result<T, HandlerError> {
        let inner = &mut *self.inner;
        crate::diag::contain(|| f(inner)).map_err(|message| {
            add(&self.counters.panics, 1);
            let e = HandlerError::Panicked(message);
            self.counters.set_last_error(&e.to_string());
            e
        })
    }

    fn result(
        &mut self,
        f: impl FnOnce(&mut dyn Handler) -> Result<(), HandlerError>,
    ) -> Result<(), HandlerError> {
        self.call(f).and_then(|r| r)
    }
}

impl Handler for Contained {
    fn emit(&mut self, ctx: &RecordContext<'_>) -> Result<(), HandlerError> {
        self.result(|h| h.emit(ctx))
    }
    fn emit_report(&mut self, ctx: &RecordContext<'_>) -> Result<(), HandlerError> {
        self.result(|h| h.emit_report(ctx))
    }
    fn flush(&mut self) -> Result<(), HandlerError> {
        self.result(|h| h.flush())
    }
    fn poll(&mut self) -> Result<(), HandlerError> {
        self.result(|h| h.poll())
    }
    fn next_due(&self) -> Option<Instant> {
        // A query with `&self`: a panic here is contained as well, and
        // means "nothing due".
        crate::diag::contain(|| self.inner.next_due()).unwrap_or_else(|_| {
            add(&self.counters.panics, 1);
            None
        })
    }
    fn ready(&self) -> bool {
        crate::diag::contain(|| self.inner.ready()).unwrap_or_else(|_| {
            add(&self.counters.panics, 1);
            true
        })
    }
    fn counts_deliveries(&self) -> bool {
        self.inner.counts_deliveries()
    }
    fn renders(&self) -> bool {
        self.inner.renders()
    }
    fn drain(&mut self, deadline: Instant) -> Result<(), HandlerError> {
        self.result(|h| h.drain(deadline))
    }
    fn reopen(&mut self) -> Result<(), HandlerError> {
        self.result(|h| h.reopen())
    }
    fn close(&mut self) -> Result<(), HandlerError> {
        self.result(|h| h.close())
    }
    fn journal_target(&self) -> Option<&std::path::Path> {
        self.inner.journal_target()
    }
    fn attach_journal(&mut self, journal: &Journal) {
        self.inner.attach_journal(journal)
    }
}

/// Tells, through the handler itself and on the hub's stderr, how many
/// records its policy dropped: at most once a second while drops go on
/// (the first at once), and a last time at shutdown.
struct DropReporter {
    reported: u64,
    last: Option<Instant>,
}

impl DropReporter {
    fn report(
        &mut self,
        name: &str,
        handler: &mut dyn Handler,
        counters: &HandlerCounters,
        errors: &mut ErrorReporter,
        start_ns: i64,
        force: bool,
    ) -> bool {
        let dropped = load(&counters.dropped);
        if dropped <= self.reported || !force && self.last.is_some_and(|t| t.elapsed() < DROP_REPORT_INTERVAL)
        {
            return false;
        }
        let why = match counters.last_error() {
            Some((e, _)) if load(&counters.held) > 0 => format!("buffer full; last error: {e}"),
            _ => "queue full".to_owned(),
        };
        let text = format!(
            "handler {name:?} dropped {} records ({why}; {dropped} dropped in total)",
            dropped - self.reported
        );
        let rec = Record {
            created_ns: logfunnel_protocol::now_ns(),
            levelno: Level::WARNING.0,
            process: std::process::id(),
            ..Record::new(Level::WARNING.0, "logfunnel.hub", text.clone())
        };
        let view = rec.view();
        let ctx = RecordContext {
            record: &view,
            peer: PeerCred::UNKNOWN,
            process_name: "logfunnel-hub",
            host_name: "",
            start_ns,
            python: false,
        };
        crate::diag::say(&format!("handler {name:?} drops"), &text);
        // The report itself is not a client's record: it is not counted
        // as emitted, but a failed write it triggers still counts its losses.
        match handler.emit_report(&ctx) {
            Ok(()) => {}
            Err(e) => count_write(Err(e), counters, errors),
        }
        self.reported = dropped;
        self.last = Some(Instant::now());
        true
    }
}

/// Counts the outcome of one record's emit. A buffering handler's error
/// says how many already-accepted records a failed write lost (the current
/// one among them): those move from "emitted" to "failed".
fn count_emit(result: Result<(), HandlerError>, counters: &HandlerCounters, errors: &mut ErrorReporter) {
    match result {
        Ok(()) => add(&counters.emitted, 1),
        Err(e) if e.record_kept() => {
            add(&counters.emitted, 1);
            errors.report(&e.to_string());
        }
        Err(e) => {
            let lost = e.records_lost();
            add(&counters.failed, lost.max(1));
            sub(&counters.emitted, lost.saturating_sub(1));
            errors.report(&e.to_string());
        }
    }
}

/// Counts the outcome of a flush, reopen or close: records lost by a failed
/// write move from "emitted" to "failed".
fn count_write(result: Result<(), HandlerError>, counters: &HandlerCounters, errors: &mut ErrorReporter) {
    if let Err(e) = result {
        let lost = e.records_lost();
        add(&counters.failed, lost);
        sub(&counters.emitted, lost);
        errors.report(&e.to_string());
    }
}

fn emit_records(
    routed: &RoutedRecords,
    handler: &mut Contained,
    counters: &HandlerCounters,
    errors: &mut ErrorReporter,
    opts: &mut WorkerOptions,
    counts_own: bool,
) {
    let batch = &routed.batch;
    let session = batch.peer.session;
    // Records the output already holds (written before a restart and resent
    // because their acknowledgement never reached the client) are skipped.
    // A MemoryHandler's forwarded records carry no client's sequence: never
    // skipped, never journaled.
    let sequenced = batch.first_seq.is_some();
    let first_seq = batch.first_seq.unwrap_or(0);
    let written_below =
        if sequenced { opts.journal.as_ref().map_or(0, |j| j.locked().next_seq(session)) } else { 0 };
    let mut last_seq = None;
    let escape_on = opts.escape;
    let renders = handler.renders();
    // The connection's names, escaped once per batch if they must be.
    let peer = &batch.peer;
    let peer_names = (escape_on && (needs_escape(&peer.process_name) || needs_escape(&peer.host_name)))
        .then(|| (escape(&peer.process_name), escape(&peer.host_name)));
    let (process_name, host_name) =
        peer_names.as_ref().map_or((&*peer.process_name, &*peer.host_name), |(p, h)| (&**p, &**h));
    // Counted once per batch: an atomic add per record costs more than
    // some handlers' whole emit.
    let mut emitted = 0u64;
    let mut emit = |i: usize, rec: &RecordView<'_>| {
        let seq = first_seq + i as u64;
        if seq < written_below {
            add(&counters.duplicates, 1);
            return;
        }
        last_seq = Some(seq);
        // A handler that renders no text (NullHandler, or a MemoryHandler,
        // whose target patches what it passes on) is given records as they came.
        let patched = if renders { patch(rec, escape_on) } else { None };
        let view;
        let rec = match &patched {
            Some(p) => {
                view = p.view();
                &view
            }
            None => rec,
        };
        let ctx = RecordContext {
            record: rec,
            peer: peer.creds,
            process_name,
            host_name,
            start_ns: opts.start_ns,
            python: peer.python,
        };
        // Straight to the handler: this batch's walk contains its panics.
        match handler.inner.emit(&ctx) {
            Ok(()) => emitted += u64::from(!counts_own),
            Err(e) => {
                // What the error takes back must have been counted first.
                add(&counters.emitted, std::mem::take(&mut emitted));
                count_emit(Err(e), counters, errors);
            }
        }
    };
    let records = batch.records();
    let total = routed.indices.as_ref().map_or(records.len(), Vec::len);
    let index = |k: usize| routed.indices.as_ref().map_or(k, |ix| ix[k] as usize);
    // One guard for the batch, not one per record: a record whose handling
    // panics fails alone, and the batch goes on from the next.
    let mut next = 0;
    let mut panics = Vec::new();
    while next < total {
        let walked = crate::diag::contain(|| {
            while next < total {
                let i = index(next);
                if routed.indices.is_none() {
                    prefetch(records, i);
                }
                // Past it before it runs: after a panic, `next` is the record after.
                next += 1;
                emit(i, &records[i]);
            }
        });
        if let Err(message) = walked {
            panics.push(message);
        }
    }
    add(&counters.emitted, emitted);
    for message in panics {
        add(&counters.failed, 1);
        add(&counters.panics, 1);
        let e = HandlerError::Panicked(message);
        counters.set_last_error(&e.to_string());
        errors.report(&e.to_string());
    }
    if let (Some(j), Some(seq), true) = (opts.journal.as_mut(), last_seq, sequenced) {
        j.locked().advance(session, seq + 1);
    }
}

/// The record as a handler must see it, if that differs from what its
/// client sent: a message over the protocol's limit cut by its one rule,
/// and (`escape`) control characters escaped in every field the client
/// controls, so that no field can forge a line or drive a terminal. `None`
/// (nothing to copy) for almost every record.
fn patch(rec: &RecordView<'_>, escape_on: bool) -> Option<Record> {
    let cut = rec.message.len() > MAX_MESSAGE_BYTES;
    let dirty = escape_on && needs_any_escape(rec);
    if !cut && !dirty {
        return None;
    }
    let text = |s: &str| if dirty { escape(s) } else { s.to_owned() };
    let opt = |s: Option<&str>| s.map(text);
    let message = match cut_message(rec.message) {
        Some(m) => text(&m),
        None => text(rec.message),
    };
    Some(Record {
        created_ns: rec.created_ns,
        levelno: rec.levelno,
        name: text(rec.name),
        message,
        pathname: opt(rec.pathname),
        lineno: rec.lineno,
        func_name: opt(rec.func_name),
        module_path: opt(rec.module_path),
        process: rec.process,
        process_name: opt(rec.process_name),
        thread: rec.thread,
        thread_name: opt(rec.thread_name),
        exc_text: rec.exc_text.map(|e| if dirty { escape_keeping_newlines(e) } else { e.to_owned() }),
        extra: rec
            .extra
            .iter()
            .map(|(k, v)| {
                let value = match v {
                    // A Python record's stack keeps its lines, as a traceback does.
                    ValueRef::Str(s) if *k == "stack_info" && dirty => Value::Str(escape_keeping_newlines(s)),
                    ValueRef::Str(s) => Value::Str(text(s)),
                    ValueRef::I64(i) => Value::I64(*i),
                    ValueRef::U64(u) => Value::U64(*u),
                    ValueRef::F64(f) => Value::F64(*f),
                    ValueRef::Bool(b) => Value::Bool(*b),
                };
                (text(k), value)
            })
            .collect(),
    })
}

/// Whether any field of `rec` a client controls holds a control character
/// to escape.
pub(crate) fn needs_any_escape(rec: &RecordView<'_>) -> bool {
    let opt = |s: Option<&str>| s.is_some_and(needs_escape);
    needs_escape(rec.message)
        || needs_escape(rec.name)
        || opt(rec.pathname)
        || opt(rec.func_name)
        || opt(rec.module_path)
        || opt(rec.process_name)
        || opt(rec.thread_name)
        || rec.exc_text.is_some_and(needs_escape_keeping_newlines)
        || rec.extra.iter().any(|(k, v)| {
            needs_escape(k)
                || match v {
                    ValueRef::Str(s) if *k == "stack_info" => needs_escape_keeping_newlines(s),
                    ValueRef::Str(s) => needs_escape(s),
                    _ => false,
                }
        })
}

/// Asks for the records a few places ahead: they were decoded by a
/// connection reader, most likely on the other core, and waiting for each
/// one's cache lines on first touch would stall the handler
/// (docs/BENCHMARKS.md#prefetching-in-the-handler-worker).
#[inline(always)]
fn prefetch(records: &[RecordView<'_>], i: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let fetch = |p: *const u8| {
            // SAFETY: a prefetch is a hint; it never faults.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast()) }
        };
        if let Some(ahead) = records.get(i + 8) {
            let p = (ahead as *const RecordView<'_>).cast::<u8>();
            for line in 0..std::mem::size_of::<RecordView<'_>>().div_ceil(64) {
                fetch(p.wrapping_add(line * 64));
            }
        }
        if let Some(near) = records.get(i + 4) {
            fetch(near.message.as_ptr());
            fetch(near.message.as_ptr().wrapping_add(64));
            fetch(near.name.as_ptr());
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (records, i);
}

/// Reports a handler's errors on the hub's stderr through the hub's one
/// rate limiter (`diag.rs`), which summarises what it holds back.
struct ErrorReporter {
    handler: String,
    /// The limiter's name for this handler's errors.
    kind: String,
}

impl ErrorReporter {
    fn new(handler: String) -> Self {
        ErrorReporter { kind: format!("handler {handler:?} errors"), handler }
    }

    fn report(&mut self, error: &str) {
        crate::diag::say(&self.kind, &format!("handler {:?}: {error}", self.handler));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    /// A handler that is not ready and due "now" (its own clock, read when
    /// asked), until it has been polled a few times.
    struct DueNow {
        polls: Arc<AtomicU32>,
    }

    impl Handler for DueNow {
        fn emit(&mut self, _: &RecordContext<'_>) -> Result<(), HandlerError> {
            Ok(())
        }
        fn flush(&mut self) -> Result<(), HandlerError> {
            Ok(())
        }
        fn poll(&mut self) -> Result<(), HandlerError> {
            self.polls.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        fn next_due(&self) -> Option<Instant> {
            Some(Instant::now())
        }
        fn ready(&self) -> bool {
            self.polls.load(Ordering::Relaxed) >= 3
        }
    }

    #[test]
    fn a_handler_due_now_is_polled_even_while_it_takes_no_records() {
        let queue = Arc::new(HandlerQueue::new(10, 1 << 20, OverflowPolicy::Block));
        let polls = Arc::new(AtomicU32::new(0));
        let handler = Box::new(DueNow { polls: Arc::clone(&polls) });
        let opts = WorkerOptions {
            start_ns: 0,
            journal: None,
            escape: false,
            deadline: Arc::new(Mutex::new(Some(Instant::now()))),
        };
        let q = Arc::clone(&queue);
        let worker = std::thread::spawn(move || run("due".into(), q, handler, opts));
        let deadline = Instant::now() + Duration::from_secs(10);
        while polls.load(Ordering::Relaxed) < 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(polls.load(Ordering::Relaxed) >= 3, "the worker never polled a handler due now");
        queue.close();
        worker.join().unwrap();
    }
}
