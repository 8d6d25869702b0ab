//! logfunnel's worker side: a QueueHandler for the `log` facade.
//!
//! ```no_run
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // Reads LOGFUNNEL_SOCKET; keep the guard alive until the end of main.
//!     let _guard = logfunnel_client::init()?;
//!     log::info!(target: "app.worker", "processed item {}", 42);
//!     Ok(()) // dropping the guard hands every record to the hub
//! }
//! ```
//!
//! A log call formats its message and encodes the record straight into a
//! ring buffer owned by the calling thread: no lock, no system call, no
//! allocation in steady state, and it never wakes the sender thread. The
//! sender polls the rings, batches records into frames of tens of KiB, writes
//! them to the hub, and keeps every batch until the hub acknowledges it, so a
//! hub that is not up yet, or restarts, costs nothing but memory (bounded by
//! the configured capacity). When that capacity is exhausted the overflow
//! policy applies: [`Overflow::Block`] (the default) makes the caller sleep
//! until there is room; [`Overflow::DropNewest`] drops the record and counts
//! it, and the hub receives a WARNING record saying how many were dropped.
//!
//! A process that forks needs nothing special: the child's first log call
//! gives it a client of its own (see `fork.rs`). Flush before leaving a
//! child with `_exit` (`QueueHandler::flush_timeout`, or the guard).

mod clock;
mod error;
mod exit;
mod filter;
mod fork;
#[cfg(feature = "tracing")]
pub mod layer;
mod oneshot;
mod ring;
mod sender;

use std::cell::RefCell;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use logfunnel_protocol::sync::LockExt;

pub use error::{FlushError, InitError, SendError};
pub use filter::{DirectiveError, Directives};
#[cfg(feature = "tracing")]
pub use layer::TracingLayer;
use logfunnel_protocol::{
    Backoff, EncodedExtra, Level, MAX_MESSAGE_BYTES, RecordRef, ValueRef, encode_record_with,
    encoded_record_len_with,
};
pub use oneshot::{Session, fetch_stats, send_records, wait_for_hub};
use ring::{PushError, Ring};

/// What a log call does when its thread's queue is full (the hub is slow or
/// unreachable and the sender already holds its capacity of unacknowledged
/// records).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Sleep (never spin) until there is room: nothing is lost, the caller waits.
    #[default]
    Block,
    /// Drop the new record and count it; the caller never waits.
    DropNewest,
}

/// Client settings. Defaults:
///
/// | setting | default |
/// |---|---|
/// | socket | `LOGFUNNEL_SOCKET`, else [`logfunnel_protocol::default_socket_path`] |
/// | level | `LOGFUNNEL_LEVEL` (`RUST_LOG`-style directives: `info,app.db=debug`; see [`Directives`]), else TRACE (the hub's config does the filtering) |
/// | queue_capacity | 1 MiB per logging thread |
/// | max_unacked | 8 MiB of records held by the sender until the hub acknowledges them |
/// | overflow | [`Overflow::Block`] |
/// | batch_bytes | 128 KiB per frame (fewer frames, which is faster under a flood than 64 KiB; docs/BENCHMARKS.md#client-batches-of-128-kib) |
/// | flush_timeout | 10 s, for the guard's flush on drop |
#[derive(Debug, Clone)]
pub struct Builder {
    socket: Option<PathBuf>,
    filter: Option<FilterSpec>,
    queue_capacity: usize,
    max_unacked: usize,
    overflow: Overflow,
    batch_bytes: usize,
    flush_timeout: Duration,
    process_name: Option<String>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            socket: None,
            filter: None,
            queue_capacity: 1 << 20,
            max_unacked: 8 << 20,
            overflow: Overflow::Block,
            batch_bytes: 128 << 10,
            flush_timeout: Duration::from_secs(10),
            process_name: None,
        }
    }
}

impl Builder {
    /// The defaults in the table above.
    pub fn new() -> Builder {
        Builder::default()
    }
    /// The hub's socket path.
    pub fn socket(mut self, path: impl Into<PathBuf>) -> Self {
        self.socket = Some(path.into());
        self
    }
    /// The most verbose level sent, for every target (also set as `log`'s
    /// max level by `init`). Overrides `LOGFUNNEL_LEVEL`.
    pub fn level(mut self, level: log::LevelFilter) -> Self {
        self.filter = Some(FilterSpec::Parsed(Directives::all(level)));
        self
    }
    /// Per-target levels in `RUST_LOG`'s syntax (`info,app.db=debug,hyper=warn`;
    /// see [`Directives`]); a bad directive makes `build`/`init` fail.
    /// Overrides `LOGFUNNEL_LEVEL`.
    pub fn filter(mut self, directives: impl Into<String>) -> Self {
        self.filter = Some(FilterSpec::Text(directives.into()));
        self
    }
    /// Bytes of queue per logging thread (rounded up to a power of two).
    pub fn queue_capacity(mut self, bytes: usize) -> Self {
        self.queue_capacity = bytes;
        self
    }
    /// Bytes of records the sender keeps until the hub acknowledges them.
    pub fn max_unacked(mut self, bytes: usize) -> Self {
        self.max_unacked = bytes.max(64 << 10);
        self
    }
    /// What a log call does when the queue is full.
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self
    }
    /// Target size of one frame on the socket.
    pub fn batch_bytes(mut self, bytes: usize) -> Self {
        self.batch_bytes = bytes.clamp(1 << 10, 1 << 20);
        self
    }
    /// How long the guard's drop waits for the hub to acknowledge everything.
    pub fn flush_timeout(mut self, timeout: Duration) -> Self {
        self.flush_timeout = timeout;
        self
    }
    /// The process name the hub shows as `%(processName)s`.
    pub fn process_name(mut self, name: impl Into<String>) -> Self {
        self.process_name = Some(name.into());
        self
    }

    /// Starts the sender thread and returns the handler (not installed) and
    /// its guard.
    pub fn build(self) -> Result<(QueueHandler, Guard), InitError> {
        let parse = |origin: &'static str, text: String| {
            text.parse::<Directives>().map_err(|error| InitError::BadFilter { origin, text, error })
        };
        let filter = match self.filter.clone() {
            Some(FilterSpec::Parsed(d)) => d,
            Some(FilterSpec::Text(t)) => parse("Builder::filter", t)?,
            None => match std::env::var(LEVEL_ENV) {
                Ok(v) if !v.trim().is_empty() => parse(LEVEL_ENV, v)?,
                _ => Directives::all(log::LevelFilter::Trace),
            },
        };
        let socket = self
            .socket
            .clone()
            .or_else(|| std::env::var_os(logfunnel_protocol::SOCKET_ENV).map(PathBuf::from))
            .unwrap_or_else(logfunnel_protocol::default_socket_path);
        fork::install();
        let process_name = self.process_name.clone().unwrap_or_else(oneshot::process_name);
        let state = Shared::new(self, socket, filter, process_name, fork::generation());
        let shared = Shared::start(state).map_err(|(_, e)| e)?;
        let handler = QueueHandler {
            inner: Arc::new(Inner { current: AtomicPtr::new(Arc::into_raw(shared).cast_mut()) }),
        };
        let guard = Guard { handler: handler.clone(), process_wide: false };
        exit::install();
        Ok((handler, guard))
    }

    /// Builds the handler and installs it as the global `log` logger.
    ///
    /// The client then serves the whole process: dropping the guard flushes,
    /// and the sender keeps running, so records logged later (a guard bound
    /// to `_` is dropped at once) are still delivered; at exit (returning
    /// from `main`, or `std::process::exit`) the process flushes once more
    /// and stops the sender. [`Guard::finish`] stops it for good and returns
    /// the flush's result.
    pub fn init(self) -> Result<Guard, InitError> {
        let (handler, mut guard) = self.build()?;
        let level = handler.shared().filter.max_level();
        log::set_boxed_logger(Box::new(handler.clone()))?;
        log::set_max_level(level);
        guard.serve_process();
        Ok(guard)
    }
}

/// How the levels were given to the builder.
#[derive(Debug, Clone)]
enum FilterSpec {
    Parsed(Directives),
    Text(String),
}

/// The environment variable with the worker-side level directives.
pub const LEVEL_ENV: &str = "LOGFUNNEL_LEVEL";

/// Installs a QueueHandler with the default settings (socket from
/// `LOGFUNNEL_SOCKET`) as the global `log` logger.
pub fn init() -> Result<Guard, InitError> {
    Builder::new().init()
}

static NEXT_HANDLER_ID: AtomicU64 = AtomicU64::new(1);

pub(crate) fn new_session_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded from the OS; mixing in time and pid keeps two
    // sessions of one process apart even if the seed were reused.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_i64(logfunnel_protocol::now_ns());
    h.write_u32(std::process::id());
    h.write_u64(NEXT_HANDLER_ID.load(Ordering::Relaxed));
    h.finish()
}

pub(crate) struct Shared {
    id: u64,
    /// The process generation this client belongs to (see `fork.rs`).
    generation: u64,
    /// The sender thread, taken by the guard to join it.
    sender: Mutex<Option<JoinHandle<()>>>,
    socket: PathBuf,
    filter: Directives,
    pid: u32,
    process_name: String,
    session: u64,
    settings: Builder,
    /// Every thread's ring; the sender walks this list.
    rings: Mutex<Vec<Arc<Ring>>>,
    dropped: AtomicU64,
    /// Set by a flush so that pending drops are reported before it returns.
    report_drops_now: AtomicBool,
    truncated: AtomicU64,
    /// Next sequence number the sender will give a record.
    assigned: AtomicU64,
    /// Every record below this one is acknowledged by the hub.
    acked: AtomicU64,
    /// Incremented after each sender pass (see `flush`).
    epoch: AtomicU64,
    stop: AtomicBool,
    stopped: AtomicBool,
    connected: AtomicBool,
    connects: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// Records logged after the sender was stopped.
    late: AtomicU64,
    /// `assigned` when a flush last timed out (0: none did): the exit
    /// handler does not wait a second time for a hub that took nothing since.
    failed_flush_at: AtomicU64,
}

impl Shared {
    /// A fresh client: new session, no queues yet, no sender thread.
    fn new(
        settings: Builder,
        socket: PathBuf,
        filter: Directives,
        process_name: String,
        generation: u64,
    ) -> Shared {
        Shared {
            id: NEXT_HANDLER_ID.fetch_add(1, Ordering::Relaxed),
            generation,
            sender: Mutex::new(None),
            socket,
            filter,
            pid: std::process::id(),
            process_name,
            session: new_session_id(),
            settings,
            rings: Mutex::new(Vec::new()),
            dropped: AtomicU64::new(0),
            report_drops_now: AtomicBool::new(false),
            truncated: AtomicU64::new(0),
            assigned: AtomicU64::new(1),
            acked: AtomicU64::new(1),
            epoch: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            connected: AtomicBool::new(false),
            connects: AtomicU64::new(0),
            last_error: Mutex::new(None),
            late: AtomicU64::new(0),
            failed_flush_at: AtomicU64::new(0),
        }
    }

    /// Starts the sender thread of a new client.
    fn start(shared: Shared) -> Result<Arc<Shared>, (Arc<Shared>, InitError)> {
        let shared = Arc::new(shared);
        let spawned = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new().name("logfunnel-sender".into()).spawn(move || sender::run(shared))
        };
        match spawned {
            Ok(thread) => {
                *shared.sender.locked() = Some(thread);
                Ok(shared)
            }
            Err(e) => Err((shared, InitError::Spawn(e))),
        }
    }
}

/// Counters of one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClientStats {
    /// Records taken from the queues by the sender.
    pub sent: u64,
    /// Records the hub has acknowledged.
    pub acked: u64,
    /// Records dropped by the overflow policy (or too large to queue).
    pub dropped: u64,
    /// Messages cut to the protocol's maximum message size.
    pub truncated: u64,
    /// Whether the sender is connected now.
    pub connected: bool,
    /// Successful connections so far (more than one means reconnects).
    pub connects: u64,
    /// Records logged after the sender was stopped (not sent; reported on
    /// stderr at exit).
    pub after_stop: u64,
}

/// The `log::Log` implementation: Python's QueueHandler. Cheap to clone.
#[derive(Clone)]
pub struct QueueHandler {
    inner: Arc<Inner>,
}

/// The client of the current process: replaced (never freed: another thread
/// of the parent may have been using it) in a forked child.
struct Inner {
    /// From `Arc::into_raw`; one strong count belongs to this pointer.
    current: AtomicPtr<Shared>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // SAFETY: `current` came from `Arc::into_raw` and owns one count.
        drop(unsafe { Arc::from_raw(self.current.load(Ordering::Acquire)) });
    }
}

impl std::fmt::Debug for QueueHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueHandler")
            .field("socket", &self.shared().socket)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Per-thread state: the ring and reusable scratch space.
struct Local {
    handler_id: u64,
    ring: Arc<Ring>,
    scratch: Scratch,
    thread: u64,
    thread_name: Option<String>,
    /// How long this thread last waited for room in its ring (see
    /// `enqueue_local`).
    last_wait: Duration,
}

impl Drop for Local {
    fn drop(&mut self) {
        self.ring.close();
    }
}

/// What a log call fills in besides its call site: the message (when it
/// has to be formatted) and the extra fields. Reused from call to call, so
/// that steady state allocates nothing.
pub(crate) struct Scratch {
    pub(crate) message: String,
    pub(crate) extra: EncodedExtra,
    /// Names of the fields the call itself gave (tracing: they shadow its
    /// spans' fields of the same name).
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    pub(crate) keys: Vec<&'static str>,
}

/// The parts of a record every facade knows before formatting anything.
pub(crate) struct CallSite<'a> {
    pub(crate) level: log::Level,
    pub(crate) target: &'a str,
    pub(crate) file: Option<&'a str>,
    pub(crate) line: u32,
    pub(crate) module_path: Option<&'a str>,
}

thread_local! {
    static LOCAL: RefCell<Option<Local>> = const { RefCell::new(None) };
}

fn os_thread_id() -> u64 {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid has no preconditions.
        (unsafe { libc::gettid() }) as u64
    }
    #[cfg(not(target_os = "linux"))]
    {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        NEXT.fetch_add(1, Ordering::Relaxed)
    }
}

impl QueueHandler {
    /// This process's client; in a forked child, a fresh one built on first use.
    fn shared(&self) -> &Shared {
        // SAFETY: `current` always points at a live Shared: replaced ones
        // are leaked, and the last one is freed only with `Inner`.
        let s = unsafe { &*self.inner.current.load(Ordering::Acquire) };
        if s.generation == fork::generation() { s } else { self.rebuild() }
    }

    /// The current client without building one (None in a child that has
    /// not logged yet).
    fn current(&self) -> Option<&Shared> {
        // SAFETY: as in `shared`.
        let s = unsafe { &*self.inner.current.load(Ordering::Acquire) };
        (s.generation == fork::generation()).then_some(s)
    }

    #[cold]
    fn rebuild(&self) -> &Shared {
        let generation = fork::generation();
        loop {
            if let Some(s) = self.current() {
                return s;
            }
            if fork::REBUILDING.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                break;
            }
            std::thread::yield_now();
        }
        // SAFETY: as in `shared`; only immutable fields of the parent's
        // client are read (no lock it may hold is touched).
        let old = unsafe { &*self.inner.current.load(Ordering::Acquire) };
        let state = Shared::new(
            old.settings.clone(),
            old.socket.clone(),
            old.filter.clone(),
            old.process_name.clone(),
            generation,
        );
        let fresh = match Shared::start(state) {
            Ok(s) => s,
            Err((s, e)) => {
                // No sender: nothing can be delivered, so nothing may wait.
                eprintln!("logfunnel client: after fork: {e}");
                s.stop.store(true, Ordering::Release);
                s.stopped.store(true, Ordering::Release);
                s
            }
        };
        // The parent's client is left as it is (leaked): its memory is the
        // parent's queues, which this process must never send.
        self.inner.current.store(Arc::into_raw(fresh).cast_mut(), Ordering::Release);
        fork::REBUILDING.store(false, Ordering::Release);
        self.current().expect("just installed")
    }

    /// Counters so far.
    pub fn stats(&self) -> ClientStats {
        let s = self.shared();
        ClientStats {
            sent: s.assigned.load(Ordering::Acquire) - 1,
            acked: s.acked.load(Ordering::Acquire) - 1,
            dropped: s.dropped.load(Ordering::Relaxed),
            truncated: s.truncated.load(Ordering::Relaxed),
            connected: s.connected.load(Ordering::Relaxed),
            connects: s.connects.load(Ordering::Relaxed),
            after_stop: s.late.load(Ordering::Relaxed),
        }
    }

    /// Waits until every record logged before this call has been
    /// acknowledged by the hub, or `timeout` passes.
    pub fn flush_timeout(&self, timeout: Duration) -> Result<(), FlushError> {
        let s = self.shared();
        let start = Instant::now();
        s.report_drops_now.store(true, Ordering::Release);
        let targets: Vec<(Arc<Ring>, u64)> =
            s.rings.locked().iter().map(|r| (Arc::clone(r), r.head())).collect();
        let timed_out = |s: &Shared| {
            s.failed_flush_at.store(s.assigned.load(Ordering::Acquire), Ordering::Release);
            FlushError::Timeout {
                waited: start.elapsed(),
                unacked: s.assigned.load(Ordering::Acquire).saturating_sub(s.acked.load(Ordering::Acquire)),
                last_error: s.last_error.locked().clone().unwrap_or_else(|| "none".into()),
            }
        };
        let wait = |cond: &dyn Fn() -> bool| -> bool {
            // Polls, from 100 µs growing to 2 ms: a process that waits for a
            // busy hub to drain its backlog should not wake every 200 µs
            // for seconds: with many such processes the wake-ups add up
            // (docs/BENCHMARKS.md#waiting-without-waking).
            let mut pause = Backoff::new(Duration::from_micros(100), Duration::from_millis(2)).factor(3, 2);
            while !cond() {
                if start.elapsed() >= timeout || s.stopped.load(Ordering::Acquire) && !cond() {
                    return cond();
                }
                std::thread::sleep(pause.next_delay());
            }
            true
        };
        if !wait(&|| targets.iter().all(|(r, head)| r.tail() >= *head)) {
            return Err(timed_out(s));
        }
        // The pass that drained those entries stores `assigned` before it
        // bumps `epoch`, so one more completed pass makes `assigned` cover them.
        let seen = s.epoch.load(Ordering::Acquire);
        if !wait(&|| s.epoch.load(Ordering::Acquire) > seen) {
            return Err(timed_out(s));
        }
        let target = s.assigned.load(Ordering::Acquire);
        if !wait(&|| s.acked.load(Ordering::Acquire) >= target) {
            return Err(timed_out(s));
        }
        Ok(())
    }

    /// Queues one record from any facade: `fill` writes the message into
    /// the scratch (or returns it when it is a static string) and adds the
    /// extra fields.
    #[inline]
    pub(crate) fn enqueue(
        shared: &Shared,
        site: &CallSite<'_>,
        fill: impl FnOnce(&mut Scratch) -> Option<&'static str>,
    ) {
        if shared.stop.load(Ordering::Relaxed) {
            // The sender is stopped (Guard::finish, or the guard of a
            // handler that is not the process's logger was dropped): say so
            // at exit rather than queue it where nobody will look.
            exit::count_late(shared);
            return;
        }
        let ok = LOCAL.try_with(|cell| {
            // A log call made while formatting this one (a Display impl that
            // logs) finds the cell borrowed; it is dropped and counted.
            let Ok(mut slot) = cell.try_borrow_mut() else { return false };
            if slot.as_ref().is_none_or(|l| l.handler_id != shared.id) {
                *slot = Some(Self::register_thread(shared));
            }
            let local = slot.as_mut().expect("just set");
            Self::enqueue_local(shared, local, site, fill);
            true
        });
        if ok != Ok(true) {
            shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn register_thread(shared: &Shared) -> Local {
        let ring = Arc::new(Ring::new(shared.settings.queue_capacity));
        shared.rings.locked().push(Arc::clone(&ring));
        Local {
            handler_id: shared.id,
            ring,
            scratch: Scratch {
                message: String::with_capacity(256),
                extra: EncodedExtra::new(),
                keys: Vec::new(),
            },
            thread: os_thread_id(),
            thread_name: std::thread::current().name().map(str::to_owned),
            last_wait: Duration::ZERO,
        }
    }

    fn enqueue_local(
        shared: &Shared,
        local: &mut Local,
        site: &CallSite<'_>,
        fill: impl FnOnce(&mut Scratch) -> Option<&'static str>,
    ) {
        let created_ns = clock::now_ns();
        let scratch = &mut local.scratch;
        scratch.message.clear();
        scratch.extra.clear();
        scratch.keys.clear();
        let message: &str = match fill(scratch) {
            Some(s) if s.len() <= MAX_MESSAGE_BYTES => s,
            Some(s) => {
                scratch.message.push_str(s);
                Self::cut(shared, &mut scratch.message)
            }
            None => Self::cut(shared, &mut scratch.message),
        };
        let extra = &scratch.extra;
        let rec = RecordRef {
            created_ns,
            levelno: Level::from_log(site.level as u8).0,
            name: site.target,
            message,
            pathname: site.file,
            lineno: site.line,
            func_name: None,
            module_path: site.module_path,
            process: shared.pid,
            process_name: None,
            thread: local.thread,
            thread_name: local.thread_name.as_deref(),
            exc_text: None,
            extra: &[],
        };
        // A ring that was full a moment ago is draining at the hub's pace:
        // start the pause at a quarter of the last wait instead of at 10 µs,
        // so that a saturated hub costs a thread a few sleeps per quarter
        // ring rather than a dozen (with 64 processes, each sleep is two
        // context switches on the cores the hub needs).
        let mut backoff = Backoff::new(Duration::from_micros(10), Duration::from_millis(4))
            .starting_at((local.last_wait / 4).min(Duration::from_millis(1)));
        loop {
            let pushed = local.ring.try_push(
                |slot| encode_record_with(&rec, extra, slot).ok(),
                || encoded_record_len_with(&rec, extra),
            );
            match pushed {
                Ok(()) => return,
                Err(PushError::Full)
                    if shared.settings.overflow == Overflow::Block
                        && !shared.stopped.load(Ordering::Relaxed) =>
                {
                    // Sleep, never spin: on two cores a spinning producer
                    // starves the very threads that would make room. And
                    // wait for a quarter of the ring, not for one entry: a
                    // producer woken for every entry the sender frees pays two
                    // context switches per record
                    // (docs/BENCHMARKS.md#waiting-without-waking).
                    // The pause grows to 4 ms: a ring whose quarter has
                    // not freed up in a millisecond is draining slowly.
                    let want = local.ring.capacity() / 4;
                    let waited = Instant::now();
                    loop {
                        std::thread::sleep(backoff.next_delay());
                        if local.ring.free() >= want || shared.stopped.load(Ordering::Relaxed) {
                            break;
                        }
                    }
                    local.last_wait = waited.elapsed();
                }
                Err(_) => {
                    shared.dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
    }

    /// The message, cut to the protocol's limit (and counted) if longer.
    fn cut<'m>(shared: &Shared, message: &'m mut String) -> &'m str {
        // The protocol's one rule; the hub counts such messages too.
        if let Some(cut) = logfunnel_protocol::cut_message(message) {
            *message = cut;
            shared.truncated.fetch_add(1, Ordering::Relaxed);
        }
        message
    }
}

/// Formats the caller's message: the pieces `fmt` hands over are mostly a
/// few bytes (a number, a word), and short ones are appended inline.
pub(crate) struct MessageWriter<'a>(pub(crate) &'a mut String);

impl std::fmt::Write for MessageWriter<'_> {
    #[inline]
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        // SAFETY: a whole `&str` is appended, so the String stays UTF-8.
        logfunnel_protocol::append_short(unsafe { self.0.as_mut_vec() }, s.as_bytes());
        Ok(())
    }
}

/// log's key-values, as extra fields (numbers and booleans keep their type).
fn collect_kv(record: &log::Record<'_>, extra: &mut EncodedExtra) {
    struct Visitor<'a>(&'a mut EncodedExtra);
    impl<'kvs> log::kv::VisitSource<'kvs> for Visitor<'_> {
        fn visit_pair(
            &mut self,
            key: log::kv::Key<'kvs>,
            value: log::kv::Value<'kvs>,
        ) -> Result<(), log::kv::Error> {
            let key = key.as_str();
            if let Some(b) = value.to_bool() {
                self.0.push(key, ValueRef::Bool(b));
            } else if let Some(i) = value.to_i64() {
                self.0.push(key, ValueRef::I64(i));
            } else if let Some(u) = value.to_u64() {
                self.0.push(key, ValueRef::U64(u));
            } else if let Some(f) = value.to_f64() {
                self.0.push(key, ValueRef::F64(f));
            } else {
                self.0.push_fmt(key, format_args!("{value}"));
            }
            Ok(())
        }
    }
    let _ = record.key_values().visit(&mut Visitor(extra));
}

impl log::Log for QueueHandler {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        self.shared().filter.enabled(metadata.target(), metadata.level())
    }

    fn log(&self, record: &log::Record<'_>) {
        // One look at the current client for the level check and the queue.
        let shared = self.shared();
        if !shared.filter.enabled(record.target(), record.level()) {
            return;
        }
        let site = CallSite {
            level: record.level(),
            target: record.target(),
            file: record.file(),
            line: record.line().unwrap_or(0),
            module_path: record.module_path(),
        };
        Self::enqueue(shared, &site, |scratch| {
            collect_kv(record, &mut scratch.extra);
            match record.args().as_str() {
                Some(s) => Some(s),
                None => {
                    let _ = MessageWriter(&mut scratch.message).write_fmt(*record.args());
                    None
                }
            }
        });
    }

    fn flush(&self) {
        let _ = self.flush_timeout(self.shared().settings.flush_timeout);
    }
}

/// Flushes when dropped; keep it alive for as long as the process logs
/// (bind it to a name such as `_guard`, not `_`).
///
/// The guard of [`init`] (the process's `log` logger) and of
/// `Builder::build_tracing` only flushes when dropped: its client keeps
/// running, and the process flushes again at exit, so records logged after
/// the guard is gone (`let _ = init()?;`) are still delivered. The guard of
/// [`Builder::build`] also stops its client's sender; records given to that
/// handler afterwards are counted and reported on stderr at exit.
/// [`Guard::finish`] flushes, stops the sender and returns the error if the
/// hub did not acknowledge everything: `guard.finish()?` at the end of `main`
/// makes such a loss a failure (a non-zero exit) rather than a message.
#[must_use = "dropping the guard at once flushes now, not at the end; bind it to `_guard`"]
pub struct Guard {
    handler: QueueHandler,
    /// The guard of `init`: dropping it does not stop the sender.
    process_wide: bool,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard").field("handler", &self.handler).finish()
    }
}

impl Guard {
    /// Makes its client serve the whole process: the guard's drop only
    /// flushes, and the process flushes and stops it at exit.
    pub(crate) fn serve_process(&mut self) {
        exit::add_process_client(self.handler.clone());
        self.process_wide = true;
    }

    /// The handler this guard belongs to.
    pub fn handler(&self) -> &QueueHandler {
        &self.handler
    }

    /// Flushes (waiting up to the configured flush timeout), stops the
    /// sender and returns the final counters, or the flush error. In a
    /// forked child it does this for the child's own client.
    pub fn finish(self) -> Result<ClientStats, FlushError> {
        let handler = self.handler.clone();
        // Not through Drop: that would flush a second time.
        std::mem::forget(self);
        handler.shutdown()
    }
}

impl QueueHandler {
    /// Flushes, stops the sender and joins it (once; later calls only report).
    fn shutdown(&self) -> Result<ClientStats, FlushError> {
        // A child that never logged has nothing of its own to flush, and
        // the parent's sender is not its to stop.
        let Some(s) = self.current() else { return Ok(ClientStats::default()) };
        let Some(thread) = s.sender.locked().take() else {
            return Ok(self.stats());
        };
        let flushed = self.flush_timeout(s.settings.flush_timeout);
        s.stop.store(true, Ordering::Release);
        let _ = thread.join();
        flushed.map(|()| self.stats())
    }

    /// The exit handler's flush and stop (see `exit.rs`).
    pub(crate) fn shutdown_at_exit(&self) -> Result<ClientStats, FlushError> {
        let Some(s) = self.current() else { return Ok(ClientStats::default()) };
        let failed = s.failed_flush_at.load(Ordering::Acquire);
        if failed != 0
            && s.assigned.load(Ordering::Acquire) == failed
            && s.acked.load(Ordering::Acquire) < failed
            && s.rings.locked().iter().all(|r| r.is_empty())
        {
            // The guard's flush already timed out and said so, and nothing
            // was logged or acknowledged since: do not wait twice.
            s.stop.store(true, Ordering::Release);
            return Ok(self.stats());
        }
        self.shutdown()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let result = if self.process_wide {
            match self.handler.current() {
                Some(s) if !s.stop.load(Ordering::Acquire) => {
                    self.handler.flush_timeout(s.settings.flush_timeout)
                }
                _ => Ok(()),
            }
        } else {
            self.handler.shutdown().map(drop)
        };
        if let Err(e) = result {
            // The one place a client may speak for itself: records are being lost.
            eprintln!("logfunnel client: {e}");
        }
    }
}
