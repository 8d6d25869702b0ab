//! logfunnel's hub: Python's QueueListener as a service.
//!
//! The path of a record, top to bottom:
//! [`listener`] accepts a client → [`connection`] reads and checks its
//! frames → the listener queue (bounded) → [`dispatcher`] routes each record
//! through the logger tree → each handler's [`worker`] queue (bounded, with
//! its overflow policy) → [`handlers`] format and write.

pub mod access;
#[doc(hidden)]
pub mod bench_support;
pub mod config;
mod connection;
mod delivery;
mod diag;
mod dispatcher;
mod escape;
mod frame;
pub mod handler;
pub mod handlers;
mod journal;
mod listener;
pub mod metrics;
mod python_in;
pub mod secret;
mod sessions;
pub mod stats;
mod worker;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use logfunnel_protocol::sync::LockExt;

pub use config::{Config, ConfigError};
pub use handler::{Handler, HandlerError};
use interprocess::local_socket::prelude::*;
use interprocess::local_socket::{GenericFilePath, Stream};
/// Python's `logging.Formatter` (the `logfunnel-formatter` crate).
pub use logfunnel_formatter as formatter;
use logfunnel_protocol::Backoff;
pub use logfunnel_protocol::ConnectionStats;
pub use python_in::{PythonAddrs, PythonInputs};
use stats::{HandlerStats, HubStats, load};
use worker::HandlerQueue;

/// Why the hub could not start. Where a variant holds an `io::Error`, that
/// error is its `source()`: print the chain (anyhow's `{:#}`) for the whole
/// message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// Another hub is serving this socket.
    #[error("another hub is already listening on {0} (stop it first, or pick another --socket)")]
    AlreadyRunning(PathBuf),
    /// The socket could not be set up.
    #[error("socket {path}: {what}")]
    Socket {
        /// The socket path.
        path: PathBuf,
        /// What failed.
        what: String,
        /// The error.
        #[source]
        error: std::io::Error,
    },
    /// A handler could not be built (a file that cannot be opened…).
    #[error(transparent)]
    Handler(#[from] HandlerError),
    /// A thread could not be started.
    #[error("cannot start a hub thread")]
    Thread(#[source] std::io::Error),
    /// The metrics endpoint (`[hub] metrics`) could not be bound.
    #[error("metrics endpoint {address}")]
    Metrics {
        /// The configured `HOST:PORT`.
        address: String,
        /// The error.
        #[source]
        error: std::io::Error,
    },
    /// A listener for Python clients (`[hub] python_tcp`…) could not be set up.
    #[error("{address}")]
    Python {
        /// The key and its address or path (`python_tcp 127.0.0.1:9020`).
        address: String,
        /// The error.
        #[source]
        error: std::io::Error,
    },
    /// A delivery journal could not be opened or recovered.
    #[error("delivery journal {path}: {error} (set [hub] state_dir, or journal = false)")]
    Journal {
        /// The journal's path.
        path: PathBuf,
        /// The error.
        error: std::io::Error,
    },
}

/// State shared by the accept loop and the connection readers.
pub(crate) struct HubShared {
    pub(crate) stopping: AtomicBool,
    pub(crate) next_conn_id: AtomicU64,
    /// Per client session: the next sequence number expected.
    pub(crate) sessions: sessions::Sessions,
    pub(crate) received: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) filtered: Arc<AtomicU64>,
    pub(crate) started: std::time::Instant,
    /// Open connections, and the most recent closed ones.
    pub(crate) conns: Mutex<std::collections::VecDeque<Arc<stats::ConnCounters>>>,
    /// The configured handlers, in the dispatcher's index order.
    handlers: Arc<[HandlerSlot]>,
    /// Only for its length: the listener queue's depth.
    listener_rx: crossbeam_channel::Receiver<frame::InBatch>,
    /// Access control, client limits, journal and shutdown settings.
    pub(crate) policy: access::HubPolicy,
    pub(crate) counters: stats::HubCounters,
    /// Decoded frames on their way to the handler queues (see `frame.rs`).
    pub(crate) decoded: Arc<frame::Budget>,
    /// Set by a shutdown: when readers stop waiting for their last acks.
    pub(crate) shutdown_deadline: Arc<Mutex<Option<Instant>>>,
    shutdown_incomplete: AtomicBool,
}

const CLOSED_CONNECTIONS_KEPT: usize = 32;

/// One configured handler as the running hub sees it: what `stats` reports
/// and what SIGHUP and shutdown reach. Its thread owns the handler itself.
pub(crate) struct HandlerSlot {
    name: String,
    class: String,
    queue: Arc<HandlerQueue>,
    /// Bytes its journal cut at start (written after the last entry by a
    /// killed predecessor; the clients resend them).
    recovered_truncated_bytes: u64,
}

impl HandlerSlot {
    fn stats(&self) -> HandlerStats {
        let q = &self.queue;
        let h = &q.counters;
        let (received, emitted, failed) = (load(&h.received), load(&h.emitted), load(&h.failed));
        let settled = emitted + failed + load(&h.duplicates) + load(&h.evicted);
        let last_error = h.last_error();
        HandlerStats {
            name: self.name.clone(),
            class: self.class.clone(),
            received,
            emitted,
            failed,
            dropped: load(&h.dropped),
            queue_depth: q.depth(),
            undelivered: received.saturating_sub(settled) + load(&h.unflushed),
            duplicates: load(&h.duplicates),
            durable: q.is_durable(),
            recovered_truncated_bytes: self.recovered_truncated_bytes,
            journal_errors: load(&h.journal_errors),
            held: load(&h.held),
            retries: load(&h.retries),
            unconfirmed: load(&h.unconfirmed),
            last_error: last_error.as_ref().map_or(String::new(), |(m, _)| m.clone()),
            last_error_unix_ms: last_error.map_or(0, |(_, t)| t),
            panics: load(&h.panics),
        }
    }
}

impl HubShared {
    pub(crate) fn register_conn(&self, c: Arc<stats::ConnCounters>) {
        let mut conns = self.conns.locked();
        let closed = conns.iter().filter(|c| !c.open.load(Ordering::Relaxed)).count();
        if closed >= CLOSED_CONNECTIONS_KEPT
            && let Some(i) = conns.iter().position(|c| !c.open.load(Ordering::Relaxed))
        {
            conns.remove(i);
        }
        conns.push_back(c);
    }

    /// A warning about clients on stderr, through the hub's one rate
    /// limiter (a flood of bad clients must not flood the hub's own output);
    /// `kind` names what the limiter counts it as.
    pub(crate) fn warn_limited(&self, kind: &str, text: &str) {
        diag::say(kind, text);
    }

    pub(crate) fn deadline(&self) -> Option<Instant> {
        *self.shutdown_deadline.locked()
    }

    /// The counters now.
    pub(crate) fn snapshot(&self) -> HubStats {
        let c = &self.counters;
        HubStats {
            uptime_ms: self.started.elapsed().as_millis() as u64,
            connections: self.next_conn_id.load(Ordering::Relaxed) - 1,
            refused: load(&self.refused),
            open_connections: load(&c.open),
            bad_frames: load(&c.bad_frames),
            bad_handshakes: load(&c.bad_handshakes),
            truncated_frames: load(&c.truncated_frames),
            timed_out: load(&c.timed_out),
            refused_peers: load(&c.refused_peers),
            over_limit: load(&c.over_limit),
            shutdown_incomplete: self.shutdown_incomplete.load(Ordering::Relaxed),
            received: load(&self.received),
            duplicates: load(&self.duplicates),
            filtered: load(&self.filtered),
            listener_queue_depth: self.listener_rx.len() as u64,
            truncated_messages: load(&c.truncated_messages),
            truncated_fields: load(&c.truncated_fields),
            decoded_bytes: self.decoded.used() as u64,
            python_objects: load(&c.python_objects),
            handlers: self.handlers.iter().map(HandlerSlot::stats).collect(),
            clients: self.conns.locked().iter().map(|c| c.snapshot()).collect(),
        }
    }
}

/// Starts hubs. Extra handlers can be attached to the root logger (the
/// benchmark uses this to verify what arrives).
pub struct HubBuilder {
    config: Config,
    socket: PathBuf,
    extra_root: Vec<(String, Box<dyn Handler>)>,
}

impl HubBuilder {
    /// A hub for `config` on `socket`.
    pub fn new(config: Config, socket: impl Into<PathBuf>) -> HubBuilder {
        HubBuilder { config, socket: socket.into(), extra_root: Vec::new() }
    }

    /// Attaches another handler to the root logger (level NOTSET, blocking queue).
    pub fn root_handler(mut self, name: impl Into<String>, handler: Box<dyn Handler>) -> HubBuilder {
        self.extra_root.push((name.into(), handler));
        self
    }

    /// Builds every handler, binds the socket, starts the threads. Returns
    /// once the socket accepts connections.
    pub fn start(self) -> Result<Hub, HubError> {
        let HubBuilder { mut config, socket, extra_root } = self;
        let start_ns = logfunnel_protocol::now_ns();
        // The extra handlers join the configuration as NullHandlers on the
        // root (their entries only give them a name, a level and a queue).
        let extra_names: Vec<String> = extra_root.iter().map(|(n, _)| n.clone()).collect();
        for name in &extra_names {
            config.handlers.insert(
                name.clone(),
                config::HandlerConfig {
                    class: "(built in)",
                    delivers: false,
                    options: Arc::new(handlers::NullOptions),
                    level: logfunnel_protocol::Level::NOTSET,
                    formatter: None,
                    filters: Vec::new(),
                    queue_capacity: config::DEFAULT_HANDLER_QUEUE,
                    queue_bytes: config::DEFAULT_HANDLER_QUEUE_BYTES,
                    overflow: config::OverflowPolicy::Block,
                    escape_control_chars: false,
                },
            );
            config.root.handlers.push(name.clone());
        }
        let names: Vec<String> = config.handlers.keys().cloned().collect();
        let queues: Vec<Arc<HandlerQueue>> = names
            .iter()
            .map(|n| {
                Arc::new(HandlerQueue::new(
                    config.handlers[n].queue_capacity,
                    config.handlers[n].queue_bytes,
                    config.handlers[n].queue_policy(),
                ))
            })
            .collect();
        let queue_of = |n: &str| {
            names.iter().position(|x| x == n).map(|i| Arc::clone(&queues[i]) as Arc<dyn handler::Forward>)
        };
        // Build handlers first: a file that cannot be opened stops start-up
        // before the socket exists.
        let mut extra: std::collections::HashMap<String, Box<dyn Handler>> = extra_root.into_iter().collect();
        let mut built: Vec<Box<dyn Handler>> = Vec::new();
        for (name, queue) in names.iter().zip(&queues) {
            let handler = match extra.remove(name) {
                Some(h) => h,
                None => config.build_handler(name, &queue_of, Arc::clone(&queue.counters))?,
            };
            built.push(handler);
        }
        let router = dispatcher::Router::new(&config, &names);
        let policy = config.hub.policy.clone();
        let python_inputs =
            python_in::bind(&config.hub.python, config.hub.socket_mode, policy.socket_group.as_deref())?;
        let listener = listener::bind(&socket, config.hub.socket_mode, policy.socket_group.as_deref())?;
        // Journals after the bind: a second hub refused on a live socket
        // must not touch the running hub's files.
        let mut slots = Vec::new();
        let mut journals = Vec::new();
        let journal_names = JournalNames::new(&policy, &socket, &names)?;
        for ((name, handler), queue) in names.iter().zip(&mut built).zip(&queues) {
            let (j, truncated) = open_journal(&policy, &journal_names, name, handler.as_mut())?;
            queue.set_durable(j.is_some());
            journals.push(j);
            slots.push(HandlerSlot {
                name: name.clone(),
                class: config.handlers[name].class.to_owned(),
                queue: Arc::clone(queue),
                recovered_truncated_bytes: truncated,
            });
        }
        let slots: Arc<[HandlerSlot]> = slots.into();

        let (tx, rx) = crossbeam_channel::bounded(config.hub.queue_capacity);
        let filtered = Arc::new(AtomicU64::new(0));
        let shared = Arc::new(HubShared {
            stopping: AtomicBool::new(false),
            next_conn_id: AtomicU64::new(1),
            sessions: sessions::Sessions::default(),
            received: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            filtered: Arc::clone(&filtered),
            started: std::time::Instant::now(),
            conns: Mutex::new(std::collections::VecDeque::new()),
            handlers: Arc::clone(&slots),
            listener_rx: rx.clone(),
            policy,
            counters: stats::HubCounters::default(),
            decoded: Arc::new(frame::Budget::new()),
            shutdown_deadline: Arc::new(Mutex::new(None)),
            shutdown_incomplete: AtomicBool::new(false),
        });
        let spawn = |name: String, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new().name(name).spawn(f).map_err(HubError::Thread)
        };
        let mut workers = Vec::new();
        for ((slot, handler), journal) in slots.iter().zip(built).zip(journals) {
            let (n, q) = (slot.name.clone(), Arc::clone(&slot.queue));
            let opts = worker::WorkerOptions {
                start_ns,
                journal,
                escape: config.escapes_records(&slot.name),
                deadline: Arc::clone(&shared.shutdown_deadline),
            };
            workers.push(spawn(thread_name(&slot.name), Box::new(move || worker::run(n, q, handler, opts)))?);
        }
        let dispatcher = {
            let (q, f) = (queues, Arc::clone(&filtered));
            spawn("logfunnel-dispatch".into(), Box::new(move || dispatcher::run(rx, router, q, f)))?
        };
        let metrics = match &config.hub.metrics {
            Some(address) => Some(
                metrics::start(address, Arc::clone(&shared))
                    .map_err(|error| HubError::Metrics { address: address.clone(), error })?,
            ),
            None => None,
        };
        let (python, python_addrs) = python_inputs.start(&shared, &tx)?;
        let acceptor = {
            let (s, p) = (Arc::clone(&shared), socket.clone());
            spawn("logfunnel-accept".into(), Box::new(move || listener::accept_loop(listener, s, tx, p)))?
        };
        Ok(Hub {
            shared,
            socket,
            acceptor: Some(acceptor),
            python,
            python_addrs,
            dispatcher: Some(dispatcher),
            workers,
            metrics,
        })
    }
}

/// A running hub. [`Hub::shutdown`] drains it; dropping it does the same.
pub struct Hub {
    shared: Arc<HubShared>,
    socket: PathBuf,
    acceptor: Option<JoinHandle<()>>,
    /// The Python clients' listeners (`python_in.rs`).
    python: Vec<JoinHandle<()>>,
    python_addrs: PythonAddrs,
    dispatcher: Option<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
    metrics: Option<metrics::MetricsServer>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.shared.handlers.iter().map(|h| h.name.as_str()).collect();
        f.debug_struct("Hub").field("socket", &self.socket).field("handlers", &names).finish()
    }
}

impl Hub {
    /// Starts a hub with no extra handlers.
    pub fn start(config: Config, socket: impl Into<PathBuf>) -> Result<Hub, HubError> {
        HubBuilder::new(config, socket).start()
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The address the metrics endpoint listens on, if one is configured.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics.as_ref().map(metrics::MetricsServer::addr)
    }

    /// Where the Python clients' TCP and UDP listeners are bound.
    pub fn python_addrs(&self) -> &PythonAddrs {
        &self.python_addrs
    }

    /// Asks every handler to reopen its files (SIGHUP).
    pub fn reopen(&self) {
        for h in self.shared.handlers.iter() {
            h.queue.push_reopen();
        }
    }

    /// Current counters.
    pub fn stats(&self) -> HubStats {
        self.shared.snapshot()
    }

    /// Stops accepting, finishes the frames already received, drains every
    /// queue, flushes and closes every handler; returns the final counters.
    pub fn shutdown(mut self) -> HubStats {
        self.stop();
        self.stats()
    }

    fn stop(&mut self) {
        let Some(acceptor) = self.acceptor.take() else { return };
        let deadline = Instant::now() + self.shared.policy.shutdown_timeout;
        *self.shared.shutdown_deadline.locked() = Some(deadline);
        self.shared.stopping.store(true, Ordering::Release);
        // Wake the blocking accept with a connection of our own.
        if let Ok(name) = self.socket.as_path().to_fs_name::<GenericFilePath>() {
            let _ = Stream::connect(name);
        }
        // The acceptor returns once every reader has finished (each waits,
        // until the deadline, for its last batches to settle and acknowledges
        // them); with them go the last senders of the listener queue, which
        // ends the dispatcher, which closes the handler queues.
        let mut all = vec![acceptor];
        all.append(&mut self.python);
        all.extend(self.dispatcher.take());
        all.append(&mut self.workers);
        for t in all {
            // Fine at first: most threads are done within microseconds, and
            // a shutdown that sleeps 5 ms per thread adds up.
            let mut pause = Backoff::new(Duration::from_micros(20), Duration::from_millis(5));
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(pause.next_delay());
            }
            if t.is_finished() {
                let _ = t.join();
            } else {
                // A handler that hangs (a dead server, a FIFO nobody reads)
                // is left behind; the process exits without it, and the
                // counters say what it never delivered.
                self.shared.shutdown_incomplete.store(true, Ordering::Relaxed);
            }
        }
        // Scrapes are answered through the drain; the endpoint goes last.
        if let Some(mut m) = self.metrics.take() {
            m.stop();
        }
        // What the rate limiter held back, said before the hub goes.
        diag::finish();
    }
}

/// Where each handler's journal lives: `<socket file name>.<handler>.journal`
/// under `state_dir` (default: the socket's directory), the handler's name
/// escaped so that no two names share a journal.
struct JournalNames {
    dir: PathBuf,
    stem: String,
    /// Handlers by the journal file name the first format gave them.
    old: std::collections::HashMap<String, Vec<String>>,
    new: std::collections::HashSet<String>,
}

impl JournalNames {
    fn new(policy: &access::HubPolicy, socket: &Path, names: &[String]) -> Result<JournalNames, HubError> {
        let dir = policy
            .state_dir
            .clone()
            .or_else(|| socket.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("."));
        let stem = socket.file_name().map_or("logfunnel".into(), |s| s.to_string_lossy().into_owned());
        let mut jn = JournalNames { dir, stem, old: Default::default(), new: Default::default() };
        let mut by_file = std::collections::HashMap::new();
        for name in names {
            let file = jn.file(&journal_name(name));
            if let Some(other) = by_file.insert(file.clone(), name) {
                // Only names cut for length and hashed can meet here.
                return Err(HubError::Journal {
                    path: jn.dir.join(&file),
                    error: std::io::Error::other(format!(
                        "handlers {other:?} and {name:?} would share this journal: rename one"
                    )),
                });
            }
            jn.new.insert(file);
            jn.old.entry(jn.file(&old_journal_name(name))).or_default().push(name.clone());
        }
        Ok(jn)
    }

    fn file(&self, handler_part: &str) -> String {
        format!("{}.{handler_part}.journal", self.stem)
    }

    /// The journal of handler `name`, taking over the one the first naming
    /// gave it when that one is unambiguously its own.
    fn path(&self, name: &str) -> PathBuf {
        let path = self.dir.join(self.file(&journal_name(name)));
        let old_file = self.file(&old_journal_name(name));
        let old = self.dir.join(&old_file);
        if old == path || path.exists() || !old.exists() {
            return path;
        }
        let sharing = &self.old[&old_file];
        if sharing.len() == 1 && !self.new.contains(&old_file) {
            match std::fs::rename(&old, &path) {
                Ok(()) => diag::notice(&format!(
                    "handler {name:?}: journal {} renamed to {} (journal names now keep every handler name apart)",
                    old.display(),
                    path.display()
                )),
                Err(e) => diag::notice(&format!(
                    "handler {name:?}: cannot rename journal {} to {}: {e}; starting a new journal (records resent after the last hub's death may be written twice)",
                    old.display(),
                    path.display()
                )),
            }
        } else {
            diag::notice(&format!(
                "handler {name:?}: journal {} (an older naming) may belong to any of {:?}, and is not used; records resent after the last hub's death may be written twice",
                old.display(),
                sharing
            ));
        }
        path
    }
}

/// Opens a durable handler's journal (and recovers from a killed
/// predecessor), and gives it to the handler's file.
fn open_journal(
    policy: &access::HubPolicy,
    names: &JournalNames,
    name: &str,
    handler: &mut dyn Handler,
) -> Result<(Option<journal::Shared>, u64), HubError> {
    let Some(target) = handler.journal_target().filter(|_| policy.journal).map(Path::to_path_buf) else {
        return Ok((None, 0));
    };
    let path = names.path(name);
    match journal::Journal::open(&path, &target) {
        Ok(None) => Ok((None, 0)),
        Ok(Some((j, r))) => {
            for (file, bytes) in &r.cuts {
                diag::notice(&format!(
                    "handler {name:?}: cut {bytes} bytes from the end of {} (written after the last journal entry, never acknowledged: clients still running resend theirs; lines the hub wrote there itself, its drop reports and what a MemoryHandler flushed, are not resent)",
                    file.display()
                ));
            }
            for note in r.notes {
                diag::notice(&format!("handler {name:?}: {note}"));
            }
            let shared = Arc::new(Mutex::new(j));
            handler.attach_journal(&shared);
            Ok((Some(shared), r.truncated_bytes))
        }
        Err(e) => Err(HubError::Journal { path, error: e }),
    }
}

/// A handler's name as part of a file name, one to one: ASCII letters,
/// digits, `-` and `_` stay, every other byte is `%XX`. A long name is cut
/// and given a hash of the whole (a file name holds at most 255 bytes; any
/// name a configuration can hold must work; two such names meeting are
/// refused at start).
pub(crate) fn journal_name(name: &str) -> String {
    const KEEP: usize = 64;
    let mut safe = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            safe.push(b as char);
        } else {
            safe.push_str(&format!("%{b:02X}"));
        }
    }
    if safe.len() <= KEEP {
        return safe;
    }
    let cut: String = safe.chars().take(KEEP).collect();
    format!("{cut}-{:016x}", fnv(name))
}

/// FNV-1a: stable across builds, unlike std's hasher.
fn fnv(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The first naming (`_` for every other character: `x.y` and `x_y` met),
/// kept to find journals written by earlier versions.
fn old_journal_name(name: &str) -> String {
    const KEEP: usize = 64;
    let safe: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
        .collect();
    if safe.len() <= KEEP {
        return safe;
    }
    let cut: String = safe.chars().take(KEEP).collect();
    format!("{cut}-{:016x}", fnv(name))
}

/// For the fuzz target `journal_replay`: reads `bytes` as a delivery
/// journal (nothing is opened, cut or written); returns the sessions found.
#[doc(hidden)]
pub fn fuzz_journal_replay(bytes: &[u8]) -> usize {
    let mut r = journal::Recovery::default();
    journal::replay(bytes, Path::new("fuzz.journal"), Path::new("/fuzz/out.log"), &mut r).1.len()
}

/// A thread's name for a handler: std refuses NUL bytes in thread names.
fn thread_name(handler: &str) -> String {
    let shown: String = handler.chars().map(|c| if c.is_control() { '_' } else { c }).take(32).collect();
    format!("logfunnel-h-{shown}")
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    /// Each file's module (`worker`, `handlers`, `handlers/memory_handler`)
    /// and the modules its code names through `crate::…` or `super::…`
    /// (in `use` lines or inline; comments and the test module at the end
    /// of a file are not read).
    fn imports(src: &Path, dir: &Path, out: &mut BTreeMap<String, BTreeSet<String>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                imports(src, &path, out);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap().with_extension("");
            let rel = rel.to_string_lossy().replace('\\', "/");
            let module = rel.strip_suffix("/mod").unwrap_or(&rel).to_owned();
            let parent = module.rsplit_once('/').map_or("", |(p, _)| p).to_owned();
            let is_module =
                |m: &str| src.join(format!("{m}.rs")).exists() || src.join(m).join("mod.rs").exists();
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
            let mut named = BTreeSet::new();
            for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
                for (base, prefix) in [("", "crate::"), (parent.as_str(), "super::")] {
                    for (at, _) in line.match_indices(prefix) {
                        let before = line[..at].chars().next_back();
                        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                            continue;
                        }
                        // The longest prefix of the path that is a module of its own.
                        let mut target = base.to_owned();
                        for seg in line[at + prefix.len()..].split("::") {
                            let seg: String =
                                seg.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                            let next =
                                if target.is_empty() { seg.clone() } else { format!("{target}/{seg}") };
                            if seg.is_empty() || !is_module(&next) {
                                break;
                            }
                            target = next;
                        }
                        if !target.is_empty() && target != module {
                            named.insert(target);
                        }
                    }
                }
            }
            out.insert(module, named);
        }
    }

    /// A path of imports from `from` back to itself, if there is one.
    fn circle(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> Option<Vec<String>> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![vec![from.to_owned()]];
        while let Some(path) = stack.pop() {
            for next in graph.get(path.last().unwrap()).into_iter().flatten() {
                let mut longer = path.clone();
                longer.push(next.clone());
                if next == from {
                    return Some(longer);
                }
                if seen.insert(next.clone()) {
                    stack.push(longer);
                }
            }
        }
        None
    }

    /// No module of the hub imports one that imports it back, directly or
    /// through others (a parent declaring and re-exporting its own children
    /// is not an import): the modules are layers, read bottom to top.
    #[test]
    fn no_module_imports_one_that_imports_it_back() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut graph = BTreeMap::new();
        imports(&src, &src, &mut graph);
        assert!(graph["handlers/memory_handler"].contains("handler"), "the scan reads crate:: {graph:?}");
        assert!(graph["delivery/spool"].contains("delivery"), "the scan reads super:: {graph:?}");
        assert!(
            graph["handlers/memory_handler"].contains("config/common"),
            "the scan reads inline paths {graph:?}"
        );
        let circles: Vec<String> =
            graph.keys().filter_map(|m| circle(&graph, m)).map(|c| c.join(" -> ")).collect();
        assert!(circles.is_empty(), "modules that import each other: {circles:#?}");
        for plumbing in ["worker", "dispatcher", "config"] {
            for (m, named) in
                graph.iter().filter(|(m, _)| m.starts_with("handler") || m.starts_with("delivery"))
            {
                assert!(
                    !named.contains(plumbing),
                    "{m} imports {plumbing}: handlers see their BuildContext and handler::Forward"
                );
            }
        }
    }

    /// The scan finds a circle through three modules.
    #[test]
    fn a_circle_through_three_modules_is_found() {
        let graph: BTreeMap<String, BTreeSet<String>> = [("a", "b"), ("b", "c"), ("c", "a"), ("d", "a")]
            .into_iter()
            .map(|(m, n)| (m.to_owned(), BTreeSet::from([n.to_owned()])))
            .collect();
        assert_eq!(circle(&graph, "a").unwrap(), ["a", "b", "c", "a"]);
        assert_eq!(circle(&graph, "d"), None);
    }
}
