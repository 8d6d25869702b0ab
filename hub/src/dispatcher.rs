//! The QueueListener: takes batches from the listener queue and routes each
//! record through the logger tree to its handlers' queues.
//!
//! Routing follows Python's `Logger.handle`/`callHandlers`: a record is
//! dropped unless its level reaches the effective level of its own logger
//! (the nearest configured level up the dotted name; root's default is
//! WARNING); then it goes to the handlers of its logger and of each
//! ancestor, until a logger with `propagate = false`, skipping handlers whose
//! level is above the record's or whose filters reject its name. Ancestor
//! levels are not consulted, as in Python. A record that finds no handler at
//! all goes to the last resort: its message on the hub's stderr if it is
//! WARNING or above.
//!
//! Routes depend only on the logger name, so they are computed once per
//! name and cached. Computing one is linear in the name's length: only
//! prefixes that could be a configured logger (no longer, and with no more
//! dots, than the longest one configured) are looked up, so a client's name
//! of 100,000 dots costs one pass over its bytes, not 100,000 lookups of
//! ever longer prefixes.

use std::collections::HashMap;
use std::sync::Arc;

use crossbeam_channel::Receiver;
use logfunnel_protocol::Level;

use crate::config::Config;
use crate::frame::InBatch;
use crate::stats::add;
use crate::worker::{HandlerQueue, RoutedRecords};

/// The records of a batch one handler takes: `0..n` while every record so
/// far was taken, then a list.
enum Taken {
    Prefix(u32),
    List(Vec<u32>),
}

impl Taken {
    fn add(&mut self, start: u32, end: u32) {
        match self {
            Taken::Prefix(n) if *n == start => *n = end,
            Taken::Prefix(n) => {
                let mut list: Vec<u32> = (0..*n).collect();
                list.extend(start..end);
                *self = Taken::List(list);
            }
            Taken::List(list) => list.extend(start..end),
        }
    }
}

/// Where records of one logger name go.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Route {
    /// The origin logger's effective level.
    pub(crate) level: u32,
    /// Whether the origin logger's own filters pass the name.
    pub(crate) passes: bool,
    /// (handler index, handler level), in Python's call order.
    pub(crate) handlers: Vec<(usize, u32)>,
    /// No handler appears twice (attached to a logger and to its ancestor,
    /// Python calls it twice per record).
    distinct: bool,
}

/// The logger tree, compiled from the configuration.
pub(crate) struct Router {
    /// Configured loggers by name: (level, handlers, filters, propagate).
    loggers: HashMap<String, LoggerNode>,
    root: LoggerNode,
    /// The longest configured logger name, in bytes and in dotted parts.
    longest: usize,
    deepest: usize,
    cache: HashMap<String, Arc<Route>>,
    /// Bytes of the names in `cache`.
    cache_bytes: usize,
}

struct LoggerNode {
    level: Option<Level>,
    /// (handler index, the level a record needs, the filters it must pass):
    /// the handler's own, or through a QueueHandler its level and filters
    /// too (see [`crate::config::QueueConfig`]).
    handlers: Vec<(usize, u32, Vec<crate::config::FilterConfig>)>,
    filters: Vec<crate::config::FilterConfig>,
    propagate: bool,
}

const ROUTE_CACHE_MAX: usize = 16_384;
/// Names are bounded (`MAX_NAME_BYTES`); so is what the cache keeps of them.
const ROUTE_CACHE_BYTES: usize = 4 << 20;

impl Router {
    /// `handler_names` gives each handler's index.
    pub(crate) fn new(config: &Config, handler_names: &[String]) -> Router {
        let index = |name: &String| handler_names.iter().position(|n| n == name);
        let filters = |names: &[String]| -> Vec<crate::config::FilterConfig> {
            names.iter().filter_map(|f| config.filters.get(f).cloned()).collect()
        };
        let own = |i: usize| {
            let h = &config.handlers[&handler_names[i]];
            (i, h.level.0, filters(&h.filters))
        };
        // A QueueHandler's records go to its handlers (the hub is its
        // listener): through its level and filters, then each handler's
        // filters, and its level only with respect_handler_level.
        let entries = |name: &String| -> Vec<(usize, u32, Vec<crate::config::FilterConfig>)> {
            match config.queues.get(name) {
                None => index(name).map(own).into_iter().collect(),
                Some(q) => q
                    .handlers
                    .iter()
                    .filter_map(index)
                    .map(|i| {
                        let (_, level, target_filters) = own(i);
                        let level = if q.respect_handler_level { level.max(q.level.0) } else { q.level.0 };
                        (i, level, filters(&q.filters).into_iter().chain(target_filters).collect())
                    })
                    .collect(),
            }
        };
        let node = |l: &crate::config::LoggerConfig| LoggerNode {
            level: l.level,
            handlers: l.handlers.iter().flat_map(entries).collect(),
            filters: filters(&l.filters),
            propagate: l.propagate,
        };
        Router {
            loggers: config.loggers.iter().map(|(n, l)| (n.clone(), node(l))).collect(),
            root: LoggerNode {
                level: Some(config.root.level.unwrap_or(Level::WARNING)),
                ..node(&config.root)
            },
            longest: config.loggers.keys().map(String::len).max().unwrap_or(0).max("root".len()),
            deepest: config.loggers.keys().map(|n| n.matches('.').count() + 1).max().unwrap_or(1),
            cache: HashMap::new(),
            cache_bytes: 0,
        }
    }

    /// Loggers from `name` up to the root, nearest first: the name, each
    /// prefix that ends before a dot (longest first), then the root; an
    /// empty prefix or `root` is the root itself.
    fn chain<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a LoggerNode> + 'a {
        // Only prefixes short and shallow enough to be configured loggers:
        // one pass over at most `longest` bytes of the name.
        let mut ends: Vec<usize> = name
            .bytes()
            .take(self.longest + 1)
            .enumerate()
            .filter(|&(_, b)| b == b'.')
            .map(|(i, _)| i)
            .take(self.deepest)
            .collect();
        ends.push(name.len());
        let mut candidates = ends.into_iter().rev().map(|end| &name[..end]).peekable();
        let mut done = false;
        std::iter::from_fn(move || {
            if done {
                return None;
            }
            for n in candidates.by_ref() {
                if n.is_empty() || n == "root" {
                    break;
                }
                if n.len() <= self.longest
                    && let Some(node) = self.loggers.get(n)
                {
                    return Some(node);
                }
            }
            done = true;
            Some(&self.root)
        })
    }

    fn compute(&self, name: &str) -> Route {
        let level = self.chain(name).find_map(|l| l.level.filter(|l| *l != Level::NOTSET)).map_or(0, |l| l.0);
        let origin_filters = match name {
            "" | "root" => &self.root.filters,
            n => self.loggers.get(n).map_or(&[][..], |l| &l.filters[..]),
        };
        let passes = origin_filters.iter().all(|f| f.passes(name));
        let mut handlers = Vec::new();
        for logger in self.chain(name) {
            for (h, level, filters) in &logger.handlers {
                if filters.iter().all(|f| f.passes(name)) {
                    handlers.push((*h, *level));
                }
            }
            if !logger.propagate {
                break;
            }
        }
        let distinct =
            handlers.iter().enumerate().all(|(i, (h, _))| !handlers[..i].iter().any(|(g, _)| g == h));
        Route { level, passes, handlers, distinct }
    }

    pub(crate) fn route(&mut self, name: &str) -> Arc<Route> {
        if let Some(r) = self.cache.get(name) {
            return Arc::clone(r);
        }
        // Names come from clients; bound the cache against endless new names.
        if self.cache.len() >= ROUTE_CACHE_MAX || self.cache_bytes + name.len() > ROUTE_CACHE_BYTES {
            self.cache.clear();
            self.cache_bytes = 0;
        }
        let r = Arc::new(self.compute(name));
        self.cache.insert(name.to_owned(), Arc::clone(&r));
        self.cache_bytes += name.len();
        r
    }
}

/// Runs until every sender of `rx` is gone, then closes the handler queues.
pub(crate) fn run(
    rx: Receiver<InBatch>,
    mut router: Router,
    queues: Vec<Arc<HandlerQueue>>,
    filtered: Arc<std::sync::atomic::AtomicU64>,
) {
    let n = queues.len();
    let mut taken: Vec<Taken> = (0..n).map(|_| Taken::Prefix(0)).collect();
    for mut batch in rx {
        // Handlers without a journal settle a batch by taking it into their
        // queue; durable ones hold this until the records are written.
        let settle = batch.settle.take();
        let ticket = batch.ticket.take();
        for t in &mut taken {
            *t = Taken::Prefix(0);
        }
        let mut dropped_by_level = 0;
        let records = batch.records();
        let mut start = 0u32;
        for run in &batch.runs {
            let route = router.route(records[start as usize].name);
            let whole = run.min_level >= route.level
                && route.passes
                && route.distinct
                && !route.handlers.is_empty()
                && route.handlers.iter().all(|&(_, level)| run.min_level >= level);
            if whole {
                for &(h, _) in &route.handlers {
                    taken[h].add(start, run.end);
                }
            } else {
                for i in start..run.end {
                    let rec = &records[i as usize];
                    if rec.levelno < route.level || !route.passes {
                        dropped_by_level += 1;
                        continue;
                    }
                    for &(h, level) in &route.handlers {
                        if rec.levelno >= level {
                            taken[h].add(i, i + 1);
                        }
                    }
                    if route.handlers.is_empty() && rec.levelno >= Level::WARNING.0 {
                        // Python's lastResort: the bare message on stderr
                        // (a client's flood of them is limited like the rest).
                        crate::diag::say_bare("records no handler took (last resort)", rec.message);
                    }
                }
            }
            start = run.end;
        }
        add(&filtered, dropped_by_level);
        let total = records.len() as u32;
        let batch = Arc::new(batch);
        for (h, t) in taken.iter_mut().enumerate() {
            let indices = match std::mem::replace(t, Taken::Prefix(0)) {
                Taken::Prefix(0) => continue,
                Taken::Prefix(n) if n == total => None,
                Taken::Prefix(n) => Some((0..n).collect()),
                Taken::List(list) => Some(list),
            };
            let settle = if queues[h].is_durable() { settle.clone() } else { None };
            queues[h].push(RoutedRecords { batch: Arc::clone(&batch), indices, settle });
        }
        // In the handler queues now, which bound it on their own.
        drop(ticket);
    }
    for q in &queues {
        q.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{Frame, Peer};

    fn router(toml: &str) -> (Router, Vec<String>) {
        let config = Config::from_toml_str(toml, "test").unwrap();
        let names: Vec<String> = config.handlers.keys().cloned().collect();
        (Router::new(&config, &names), names)
    }

    fn handlers_for(r: &mut Router, names: &[String], logger: &str, level: u32) -> Option<Vec<String>> {
        let route = r.route(logger);
        if level < route.level || !route.passes {
            return None;
        }
        Some(route.handlers.iter().filter(|(_, l)| level >= *l).map(|(h, _)| names[*h].clone()).collect())
    }

    /// One batch through `run`: runs of one name, a run with a record below
    /// the level (routed record by record), a handler attached to a logger
    /// and to the root (Python calls it twice), a handler with its own level.
    #[test]
    fn a_batch_is_routed_run_by_run_as_python_would_record_by_record() {
        use logfunnel_protocol::{BatchBuilder, Record, encode_record_ref};
        let config = Config::from_toml_str(
            r#"
[handlers.all]
class = "NullHandler"
[handlers.errors]
class = "NullHandler"
level = "ERROR"
[root]
level = "INFO"
handlers = ["all"]
[loggers.app]
handlers = ["all"]
[loggers.other]
handlers = ["errors"]
"#,
            "test",
        )
        .unwrap();
        let names: Vec<String> = config.handlers.keys().cloned().collect();
        let records = [
            (20, "app.x"),
            (20, "app.x"),
            (20, "other"),
            (10, "other"),
            (40, "other"),
            (20, "other"),
            (20, "app.x"),
        ];
        let mut builder = BatchBuilder::with_capacity(1 << 16);
        builder.reset(1);
        let mut slot = vec![0u8; 4096];
        for (level, name) in records {
            let rec = Record::new(level, name, "m");
            let n = encode_record_ref(&rec.view().as_record_ref(), &mut slot).unwrap();
            builder.push_encoded(&slot[..n]);
        }
        let (frame, _) = Frame::decode(builder.finish().unwrap()[4..].to_vec()).unwrap();
        let peer = Arc::new(Peer {
            process_name: "p".into(),
            host_name: "h".into(),
            session: 1,
            creds: crate::formatter::PeerCred::UNKNOWN,
            python: false,
        });
        let queues: Vec<Arc<HandlerQueue>> = names
            .iter()
            .map(|_| Arc::new(HandlerQueue::new(100, 1 << 20, crate::config::OverflowPolicy::Block)))
            .collect();
        let filtered = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (tx, rx) = crossbeam_channel::bounded(1);
        tx.send(InBatch::new(peer, frame, Some(1), None)).unwrap();
        drop(tx);
        run(rx, Router::new(&config, &names), queues.clone(), Arc::clone(&filtered));
        let queued = |n: &str| queues[names.iter().position(|x| x == n).unwrap()].queued_indices();
        // app.x's records go to "all" twice each, one after the other (app's
        // handler, then root's); other's: INFO, ERROR, INFO to "all" (DEBUG is
        // below root's INFO), ERROR also to "errors".
        assert_eq!(queued("all"), [0, 0, 1, 1, 2, 4, 5, 6, 6]);
        assert_eq!(queued("errors"), [4]);
        assert_eq!(filtered.load(std::sync::atomic::Ordering::Relaxed), 1);
    }

    /// The chain the slow way (every prefix looked up), for comparison.
    fn naive_chain(r: &Router, name: &str) -> Vec<*const LoggerNode> {
        let mut out = Vec::new();
        let mut cur = Some(name);
        while let Some(n) = cur {
            cur = n.rfind('.').map(|i| &n[..i]).or(if n.is_empty() { None } else { Some("") });
            if n.is_empty() || n == "root" {
                out.push(&r.root as *const _);
                break;
            }
            if let Some(node) = r.loggers.get(n) {
                out.push(node as *const _);
            }
        }
        out
    }

    #[test]
    fn the_linear_chain_finds_what_every_prefix_would() {
        let parts = ["a", "b", "", "root", "ab", "a.b"];
        let seed = std::cell::Cell::new(0x2545_f491_4f6c_dd1du64);
        let next = |n: usize| {
            let mut x = seed.get();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            seed.set(x);
            (x % n as u64) as usize
        };
        let name = || (0..1 + next(4)).map(|_| parts[next(parts.len())]).collect::<Vec<_>>().join(".");
        for _ in 0..200 {
            let loggers: Vec<String> = (0..next(5)).map(|_| name()).collect();
            let toml: String = loggers.iter().map(|l| format!("[loggers.{l:?}]\nlevel = 10\n")).collect();
            let Ok(config) = Config::from_toml_str(&toml, "t") else { continue };
            let r = Router::new(&config, &[]);
            for _ in 0..20 {
                let n = name();
                let fast: Vec<*const LoggerNode> = r.chain(&n).map(|x| x as *const _).collect();
                assert_eq!(fast, naive_chain(&r, &n), "{n:?} with {loggers:?}");
            }
        }
        // A name of 100,000 dots: the chain is the root alone, found at once.
        let (r, _) = router("[loggers.app]\nlevel = 10\n[loggers.\"app.db\"]\nlevel = 10\n");
        let deep = format!("app.x{}", ".".repeat(100_000));
        assert_eq!(r.chain(&deep).count(), 2);
    }

    #[test]
    fn python_logger_tree_semantics() {
        let (mut r, n) = router(
            r#"
[filters.db] 
name = "app.db"
[handlers.all]
class = "NullHandler"
[handlers.errors]
class = "NullHandler"
level = "ERROR"
[handlers.dbonly]
class = "NullHandler"
filters = ["db"]
[root]
level = "INFO"
handlers = ["all", "errors"]
[loggers.app]
handlers = ["dbonly"]
[loggers."app.db"]
level = "WARNING"
[loggers.quiet]
level = "DEBUG"
handlers = ["all"]
propagate = false
"#,
        );
        // Root level INFO applies to loggers without their own level.
        assert_eq!(handlers_for(&mut r, &n, "other", 10), None);
        assert_eq!(handlers_for(&mut r, &n, "other", 20).unwrap(), ["all"]);
        assert_eq!(handlers_for(&mut r, &n, "other", 40).unwrap(), ["all", "errors"]);
        // app.db's own level; its ancestors' handlers still get it; the
        // dbonly filter passes app.db.* but not app.web.
        assert_eq!(handlers_for(&mut r, &n, "app.db.pool", 20), None);
        assert_eq!(handlers_for(&mut r, &n, "app.db.pool", 30).unwrap(), ["dbonly", "all"]);
        assert_eq!(handlers_for(&mut r, &n, "app.web", 20).unwrap(), ["all"]);
        // propagate = false stops at the logger; its own level lets DEBUG in.
        assert_eq!(handlers_for(&mut r, &n, "quiet.x", 10).unwrap(), ["all"]);
        // Root with no level set defaults to WARNING.
        let (mut r2, n2) = router("[handlers.h]\nclass = \"NullHandler\"\n[root]\nhandlers = [\"h\"]");
        assert_eq!(handlers_for(&mut r2, &n2, "x", 20), None);
        assert_eq!(handlers_for(&mut r2, &n2, "x", 30).unwrap(), ["h"]);
    }
}
