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
mod fork;
mod oneshot;
mod ring;
mod sender;

use std::cell::RefCell;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use error::{FlushError, InitError, SendError};
use logfunnel_protocol::{
    Backoff, Level, MAX_MESSAGE_BYTES, RecordRef, ValueRef, encode_record_ref, encoded_record_len,
};
pub use oneshot::{fetch_stats, send_records};
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
/// | level | `LOGFUNNEL_LEVEL`, else TRACE (the hub's config does the filtering) |
/// | queue_capacity | 1 MiB per logging thread |
/// | max_unacked | 8 MiB of records held by the sender until the hub acknowledges them |
/// | overflow | [`Overflow::Block`] |
/// | batch_bytes | 128 KiB per frame (fewer frames: 8 processes flooding one file ran 5 % faster than with 64 KiB, 64 processes 8 %; docs/BENCHMARKS.md) |
/// | flush_timeout | 10 s, for the guard's flush on drop |
#[derive(Debug, Clone)]
pub struct Builder {
    socket: Option<PathBuf>,
    level: Option<log::LevelFilter>,
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
            level: None,
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
    /// The most verbose level sent (also set as `log`'s max level by `init`).
    pub fn level(mut self, level: log::LevelFilter) -> Self {
        self.level = Some(level);
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
        let level = match self.level {
            Some(l) => l,
            None => match std::env::var("LOGFUNNEL_LEVEL") {
                Ok(v) if !v.is_empty() => v.parse().map_err(|_| InitError::BadLevel(v))?,
                _ => log::LevelFilter::Trace,
            },
        };
        let socket = self
            .socket
            .clone()
            .or_else(|| std::env::var_os(logfunnel_protocol::SOCKET_ENV).map(PathBuf::from))
            .unwrap_or_else(logfunnel_protocol::default_socket_path);
        fork::install();
        let process_name = self.process_name.clone().unwrap_or_else(oneshot::process_name);
        let state = Shared::new(self, socket, level, process_name, fork::generation());
        let shared = Shared::start(state).map_err(|(_, e)| e)?;
        let handler = QueueHandler {
            inner: Arc::new(Inner { current: AtomicPtr::new(Arc::into_raw(shared).cast_mut()) }),
        };
        let guard = Guard { handler: handler.clone() };
        Ok((handler, guard))
    }

    /// Builds the handler and installs it as the global `log` logger.
    pub fn init(self) -> Result<Guard, InitError> {
        let (handler, guard) = self.build()?;
        let level = handler.shared().level;
        log::set_boxed_logger(Box::new(handler))?;
        log::set_max_level(level);
        Ok(guard)
    }
}

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
    h.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos());
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
    level: log::LevelFilter,
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
}

impl Shared {
    /// A fresh client: new session, no queues yet, no sender thread.
    fn new(
        settings: Builder,
        socket: PathBuf,
        level: log::LevelFilter,
        process_name: String,
        generation: u64,
    ) -> Shared {
        Shared {
            id: NEXT_HANDLER_ID.fetch_add(1, Ordering::Relaxed),
            generation,
            sender: Mutex::new(None),
            socket,
            level,
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
                *shared.sender.lock().unwrap_or_else(|e| e.into_inner()) = Some(thread);
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
    message: String,
    kv: Vec<(String, KvScratch)>,
    kv_len: usize,
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

#[derive(Default)]
struct KvScratch {
    text: String,
    value: Option<KvValue>,
}

#[derive(Clone, Copy)]
enum KvValue {
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
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
            old.level,
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
        }
    }

    /// Waits until every record logged before this call has been
    /// acknowledged by the hub, or `timeout` passes.
    pub fn flush_timeout(&self, timeout: Duration) -> Result<(), FlushError> {
        let s = self.shared();
        let start = Instant::now();
        s.report_drops_now.store(true, Ordering::Release);
        let targets: Vec<(Arc<Ring>, u64)> = s
            .rings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|r| (Arc::clone(r), r.head()))
            .collect();
        let timed_out = |s: &Shared| FlushError::Timeout {
            waited: start.elapsed(),
            unacked: s.assigned.load(Ordering::Acquire).saturating_sub(s.acked.load(Ordering::Acquire)),
            last_error: s
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                .unwrap_or_else(|| "none".into()),
        };
        let wait = |cond: &dyn Fn() -> bool| -> bool {
            // Polls, from 100 µs growing to 2 ms: a process that waits for a
            // busy hub to drain its backlog should not wake every 200 µs
            // for seconds (with 64 such processes that was most of the
            // hub's context switches).
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

    fn enqueue(shared: &Shared, record: &log::Record<'_>) {
        let ok = LOCAL.try_with(|cell| {
            // A log call made while formatting this one (a Display impl that
            // logs) finds the cell borrowed; it is dropped and counted.
            let Ok(mut slot) = cell.try_borrow_mut() else { return false };
            if slot.as_ref().is_none_or(|l| l.handler_id != shared.id) {
                *slot = Some(Self::register_thread(shared));
            }
            let local = slot.as_mut().expect("just set");
            Self::enqueue_local(shared, local, record);
            true
        });
        if ok != Ok(true) {
            shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn register_thread(shared: &Shared) -> Local {
        let ring = Arc::new(Ring::new(shared.settings.queue_capacity));
        shared.rings.lock().unwrap_or_else(|e| e.into_inner()).push(Arc::clone(&ring));
        Local {
            handler_id: shared.id,
            ring,
            message: String::with_capacity(256),
            kv: Vec::new(),
            kv_len: 0,
            thread: os_thread_id(),
            thread_name: std::thread::current().name().map(str::to_owned),
            last_wait: Duration::ZERO,
        }
    }

    fn enqueue_local(shared: &Shared, local: &mut Local, record: &log::Record<'_>) {
        let created_ns = clock::now_ns();
        let message: &str = match record.args().as_str() {
            Some(s) if s.len() <= MAX_MESSAGE_BYTES => s,
            _ => {
                local.message.clear();
                let _ = MessageWriter(&mut local.message).write_fmt(*record.args());
                if local.message.len() > MAX_MESSAGE_BYTES {
                    truncate_message(&mut local.message);
                    shared.truncated.fetch_add(1, Ordering::Relaxed);
                }
                &local.message
            }
        };
        collect_kv(record, &mut local.kv, &mut local.kv_len);
        let extra: Vec<(&str, ValueRef<'_>)> = local.kv[..local.kv_len]
            .iter()
            .map(|(k, v)| {
                let value = match v.value {
                    Some(KvValue::I64(i)) => ValueRef::I64(i),
                    Some(KvValue::U64(u)) => ValueRef::U64(u),
                    Some(KvValue::F64(f)) => ValueRef::F64(f),
                    Some(KvValue::Bool(b)) => ValueRef::Bool(b),
                    None => ValueRef::Str(&v.text),
                };
                (k.as_str(), value)
            })
            .collect();
        let rec = RecordRef {
            created_ns,
            levelno: Level::from_log(record.level() as u8).0,
            name: record.target(),
            message,
            pathname: record.file(),
            lineno: record.line().unwrap_or(0),
            func_name: None,
            module_path: record.module_path(),
            process: shared.pid,
            process_name: None,
            thread: local.thread,
            thread_name: local.thread_name.as_deref(),
            exc_text: None,
            extra: &extra,
        };
        // A ring that was full a moment ago is draining at the hub's pace:
        // start the pause at a quarter of the last wait instead of at 10 µs,
        // so that a saturated hub costs a thread a few sleeps per quarter
        // ring rather than a dozen (with 64 processes, each sleep is two
        // context switches on the cores the hub needs).
        let mut backoff = Backoff::new(Duration::from_micros(10), Duration::from_millis(4))
            .starting_at((local.last_wait / 4).min(Duration::from_millis(1)));
        loop {
            let pushed =
                local.ring.try_push(|slot| encode_record_ref(&rec, slot).ok(), || encoded_record_len(&rec));
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
                    // context switches per record (with 64 processes on 2
                    // cores that was most of the CPU time).
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
}

/// Formats the caller's message: the pieces `fmt` hands over are mostly a
/// few bytes (a number, a word), and short ones are appended inline.
struct MessageWriter<'a>(&'a mut String);

impl std::fmt::Write for MessageWriter<'_> {
    #[inline]
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        // SAFETY: a whole `&str` is appended, so the String stays UTF-8.
        logfunnel_protocol::append_short(unsafe { self.0.as_mut_vec() }, s.as_bytes());
        Ok(())
    }
}

fn truncate_message(message: &mut String) {
    let total = message.len();
    let mut cut = MAX_MESSAGE_BYTES - 64;
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    message.truncate(cut);
    let _ = write!(message, " …[truncated {} bytes]", total - cut);
}

fn collect_kv(record: &log::Record<'_>, kv: &mut Vec<(String, KvScratch)>, len: &mut usize) {
    struct Visitor<'a> {
        kv: &'a mut Vec<(String, KvScratch)>,
        len: &'a mut usize,
    }
    impl<'kvs> log::kv::VisitSource<'kvs> for Visitor<'_> {
        fn visit_pair(
            &mut self,
            key: log::kv::Key<'kvs>,
            value: log::kv::Value<'kvs>,
        ) -> Result<(), log::kv::Error> {
            if *self.len == self.kv.len() {
                self.kv.push(Default::default());
            }
            let (k, v) = &mut self.kv[*self.len];
            *self.len += 1;
            k.clear();
            k.push_str(key.as_str());
            v.text.clear();
            v.value = if let Some(b) = value.to_bool() {
                Some(KvValue::Bool(b))
            } else if let Some(i) = value.to_i64() {
                Some(KvValue::I64(i))
            } else if let Some(u) = value.to_u64() {
                Some(KvValue::U64(u))
            } else if let Some(f) = value.to_f64() {
                Some(KvValue::F64(f))
            } else {
                let _ = write!(v.text, "{value}");
                None
            };
            Ok(())
        }
    }
    *len = 0;
    let _ = record.key_values().visit(&mut Visitor { kv, len });
}

impl log::Log for QueueHandler {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= self.shared().level
    }

    fn log(&self, record: &log::Record<'_>) {
        // One look at the current client for the level check and the queue.
        let shared = self.shared();
        if record.level() <= shared.level {
            Self::enqueue(shared, record);
        }
    }

    fn flush(&self) {
        let _ = self.flush_timeout(self.shared().settings.flush_timeout);
    }
}

/// Flushes and stops the sender when dropped: keep it alive for as long as
/// the process logs (bind it to a name such as `_guard`, not `_`).
/// `std::process::exit` skips destructors, so call [`Guard::finish`] first
/// when exiting that way.
#[must_use = "dropping the guard at once stops logging; bind it to `_guard`"]
pub struct Guard {
    handler: QueueHandler,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard").field("handler", &self.handler).finish()
    }
}

impl Guard {
    /// The handler this guard belongs to.
    pub fn handler(&self) -> &QueueHandler {
        &self.handler
    }

    /// Flushes (waiting up to the configured flush timeout), stops the
    /// sender and returns the final counters, or the flush error. In a
    /// forked child it does this for the child's own client.
    pub fn finish(mut self) -> Result<ClientStats, FlushError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<ClientStats, FlushError> {
        // A child that never logged has nothing of its own to flush, and
        // the parent's sender is not its to stop.
        let Some(s) = self.handler.current() else { return Ok(ClientStats::default()) };
        let Some(thread) = s.sender.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return Ok(self.handler.stats());
        };
        let flushed = self.handler.flush_timeout(s.settings.flush_timeout);
        s.stop.store(true, Ordering::Release);
        let _ = thread.join();
        flushed.map(|()| self.handler.stats())
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            // The one place a client may speak for itself: records are being lost.
            eprintln!("logfunnel client: {e}");
        }
    }
}
