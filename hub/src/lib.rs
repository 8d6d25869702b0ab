//! logfunnel's hub: Python's QueueListener as a service.
//!
//! The path of a record, top to bottom:
//! [`listener`] accepts a client → [`connection`] reads and checks its
//! frames → the listener queue (bounded) → [`dispatcher`] routes each record
//! through the logger tree → each handler's [`worker`] queue (bounded, with
//! its overflow policy) → [`handlers`] format and write.

pub mod config;
mod connection;
mod dispatcher;
pub mod formatter;
pub mod handlers;
mod listener;
mod sessions;
pub mod stats;
mod worker;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

pub use config::{Config, ConfigError};
pub use handlers::{Handler, HandlerError};
use interprocess::local_socket::prelude::*;
use interprocess::local_socket::{GenericFilePath, Stream};
pub use logfunnel_protocol::ConnectionStats;
use stats::{HandlerStats, HubStats, load};
use worker::HandlerQueue;

/// Why the hub could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// Another hub is serving this socket.
    #[error("another hub is already listening on {0} (stop it first, or pick another --socket)")]
    AlreadyRunning(PathBuf),
    /// The socket could not be set up.
    #[error("socket {path}: {what}: {error}")]
    Socket {
        /// The socket path.
        path: PathBuf,
        /// What failed.
        what: String,
        /// The error.
        error: std::io::Error,
    },
    /// A handler could not be built (a file that cannot be opened…).
    #[error(transparent)]
    Handler(#[from] HandlerError),
    /// A thread could not be started.
    #[error("cannot start a hub thread: {0}")]
    Thread(std::io::Error),
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
    handler_names: Vec<String>,
    handler_classes: Vec<String>,
    queues: Vec<Arc<HandlerQueue>>,
    /// Only for its length: the listener queue's depth.
    listener_rx: crossbeam_channel::Receiver<dispatcher::InBatch>,
}

const CLOSED_CONNECTIONS_KEPT: usize = 32;

impl HubShared {
    pub(crate) fn register_conn(&self, c: Arc<stats::ConnCounters>) {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        let closed = conns.iter().filter(|c| !c.open.load(Ordering::Relaxed)).count();
        if closed >= CLOSED_CONNECTIONS_KEPT
            && let Some(i) = conns.iter().position(|c| !c.open.load(Ordering::Relaxed))
        {
            conns.remove(i);
        }
        conns.push_back(c);
    }

    /// The counters now.
    pub(crate) fn snapshot(&self) -> HubStats {
        HubStats {
            uptime_ms: self.started.elapsed().as_millis() as u64,
            connections: self.next_conn_id.load(Ordering::Relaxed) - 1,
            refused: load(&self.refused),
            received: load(&self.received),
            duplicates: load(&self.duplicates),
            filtered: load(&self.filtered),
            listener_queue_depth: self.listener_rx.len() as u64,
            handlers: self
                .handler_names
                .iter()
                .zip(&self.handler_classes)
                .zip(&self.queues)
                .map(|((name, class), q)| HandlerStats {
                    name: name.clone(),
                    class: class.clone(),
                    received: load(&q.counters.received),
                    emitted: load(&q.counters.emitted),
                    failed: load(&q.counters.failed),
                    dropped: load(&q.counters.dropped),
                    queue_depth: q.depth(),
                })
                .collect(),
            clients: self
                .conns
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|c| c.snapshot())
                .collect(),
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
        let start_ns = worker::now_ns();
        // Build handlers first: a file that cannot be opened stops start-up
        // before the socket exists.
        let mut names: Vec<String> = config.handlers.keys().cloned().collect();
        let mut queues: Vec<Arc<HandlerQueue>> = names
            .iter()
            .map(|n| {
                Arc::new(HandlerQueue::new(config.handlers[n].queue_capacity, config.handlers[n].overflow))
            })
            .collect();
        let queue_of = |n: &str| names.iter().position(|x| x == n).map(|i| Arc::clone(&queues[i]));
        let mut built: Vec<Box<dyn Handler>> = Vec::new();
        for name in &names {
            built.push(handlers::build(&config, name, &config.handlers[name], &queue_of)?);
        }
        let mut classes: Vec<String> =
            names.iter().map(|n| config.handlers[n].kind.class_name().to_owned()).collect();
        for (name, handler) in extra_root {
            config.handlers.insert(
                name.clone(),
                config::HandlerConfig {
                    kind: config::HandlerKind::Null,
                    level: logfunnel_protocol::Level::NOTSET,
                    formatter: None,
                    filters: Vec::new(),
                    queue_capacity: 65536,
                    overflow: config::OverflowPolicy::Block,
                },
            );
            config.root.handlers.push(name.clone());
            names.push(name);
            classes.push("(built in)".to_owned());
            built.push(handler);
            queues.push(Arc::new(HandlerQueue::new(65536, config::OverflowPolicy::Block)));
        }
        let router = dispatcher::Router::new(&config, &names);
        let listener = listener::bind(&socket, config.hub.socket_mode)?;

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
            handler_names: names.clone(),
            handler_classes: classes,
            queues: queues.clone(),
            listener_rx: rx.clone(),
        });
        let spawn = |name: String, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new().name(name).spawn(f).map_err(HubError::Thread)
        };
        let mut workers = Vec::new();
        for ((name, handler), queue) in names.iter().zip(built).zip(&queues) {
            let (n, q) = (name.clone(), Arc::clone(queue));
            workers.push(spawn(
                format!("logfunnel-h-{name}"),
                Box::new(move || worker::run(n, q, handler, start_ns)),
            )?);
        }
        let dispatcher = {
            let (q, f) = (queues.clone(), Arc::clone(&filtered));
            spawn("logfunnel-dispatch".into(), Box::new(move || dispatcher::run(rx, router, q, f)))?
        };
        let acceptor = {
            let (s, p) = (Arc::clone(&shared), socket.clone());
            spawn("logfunnel-accept".into(), Box::new(move || listener::accept_loop(listener, s, tx, p)))?
        };
        Ok(Hub {
            shared,
            socket,
            names,
            queues,
            acceptor: Some(acceptor),
            dispatcher: Some(dispatcher),
            workers,
        })
    }
}

/// A running hub. [`Hub::shutdown`] drains it; dropping it does the same.
pub struct Hub {
    shared: Arc<HubShared>,
    socket: PathBuf,
    names: Vec<String>,
    queues: Vec<Arc<HandlerQueue>>,
    acceptor: Option<JoinHandle<()>>,
    dispatcher: Option<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").field("socket", &self.socket).field("handlers", &self.names).finish()
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

    /// Asks every handler to reopen its files (SIGHUP).
    pub fn reopen(&self) {
        for q in &self.queues {
            q.push_reopen();
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
        self.shared.stopping.store(true, Ordering::Release);
        // Wake the blocking accept with a connection of our own.
        if let Ok(name) = self.socket.as_path().to_fs_name::<GenericFilePath>() {
            let _ = Stream::connect(name);
        }
        // The acceptor returns once every reader has finished; with them go
        // the last senders of the listener queue, which ends the dispatcher.
        let _ = acceptor.join();
        if let Some(d) = self.dispatcher.take() {
            let _ = d.join();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.stop();
    }
}
