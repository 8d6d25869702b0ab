//! What the hub prints about itself (its stderr), through one rate limiter.
//!
//! Handler errors, drop reports, warnings about clients and Python's
//! last-resort output all come here. Each kind of message (one handler's
//! errors, warnings about clients, the last resort …) may print a burst of
//! [`KIND_BURST`] lines, then one every [`KIND_INTERVAL`]; all kinds together
//! a burst of [`TOTAL_BURST`], then [`TOTAL_PER_SEC`] a second. What is held
//! back is counted per kind and summarised: at most every [`SUMMARY_INTERVAL`]
//! while it goes on, and when the hub stops. So a full disk that fails every
//! write prints a few lines, not one per failure, and says how many it held
//! back.
//!
//! Control characters are escaped in everything printed here: messages
//! quote what clients sent (names, the last resort's messages), and the
//! hub's stderr is somebody's terminal or log too.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use logfunnel_protocol::sync::LockExt;

/// Lines one kind of message may print at once.
pub(crate) const KIND_BURST: f64 = 5.0;
/// Then one line of that kind per this interval.
pub(crate) const KIND_INTERVAL: Duration = Duration::from_secs(2);
/// Lines all kinds together may print at once…
pub(crate) const TOTAL_BURST: f64 = 20.0;
/// …and then per second.
pub(crate) const TOTAL_PER_SEC: f64 = 2.0;
/// Suppressed lines are summarised at most this often.
pub(crate) const SUMMARY_INTERVAL: Duration = Duration::from_secs(10);
/// The most of one message that is printed.
const LINE_BYTES: usize = 4 << 10;
/// Kinds remembered at once (kinds are named by the hub, not by clients;
/// this only bounds a bug).
const MAX_KINDS: usize = 1024;

struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(now: Instant, burst: f64) -> Bucket {
        Bucket { tokens: burst, last: now }
    }

    fn refill(&mut self, now: Instant, per_sec: f64, burst: f64) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_sec).min(burst);
        self.last = now;
    }
}

struct Kind {
    bucket: Bucket,
    suppressed: u64,
}

struct Limiter {
    total: Bucket,
    kinds: BTreeMap<String, Kind>,
    last_summary: Instant,
}

impl Limiter {
    fn new(now: Instant) -> Limiter {
        Limiter { total: Bucket::new(now, TOTAL_BURST), kinds: BTreeMap::new(), last_summary: now }
    }

    /// The line for `text` if it may be printed now (counted otherwise),
    /// then the summary if one is due.
    fn say(&mut self, now: Instant, kind: &str, text: &str, out: &mut dyn FnMut(String)) {
        self.line(now, kind, "logfunnel hub: ", text, out);
    }

    fn line(&mut self, now: Instant, kind: &str, prefix: &str, text: &str, out: &mut dyn FnMut(String)) {
        self.total.refill(now, TOTAL_PER_SEC, TOTAL_BURST);
        if !self.kinds.contains_key(kind) && self.kinds.len() >= MAX_KINDS {
            self.kinds.retain(|_, k| k.suppressed > 0);
        }
        let k = self
            .kinds
            .entry(kind.to_owned())
            .or_insert_with(|| Kind { bucket: Bucket::new(now, KIND_BURST), suppressed: 0 });
        k.bucket.refill(now, 1.0 / KIND_INTERVAL.as_secs_f64(), KIND_BURST);
        if k.bucket.tokens >= 1.0 && self.total.tokens >= 1.0 {
            k.bucket.tokens -= 1.0;
            self.total.tokens -= 1.0;
            // A line, not a page: messages may quote what a client sent.
            let text = logfunnel_protocol::cut_str(text, LINE_BYTES);
            out(format!("{prefix}{}", crate::escape::escape(text)));
        } else {
            k.suppressed += 1;
        }
        if now.saturating_duration_since(self.last_summary) >= SUMMARY_INTERVAL {
            self.summarise(now, out);
        }
    }

    fn owes_summary(&self) -> bool {
        self.kinds.values().any(|k| k.suppressed > 0)
    }

    fn summarise(&mut self, now: Instant, out: &mut dyn FnMut(String)) {
        let secs = now.saturating_duration_since(self.last_summary).as_secs_f64();
        self.last_summary = now;
        let held: Vec<String> = self
            .kinds
            .iter_mut()
            .filter(|(_, k)| k.suppressed > 0)
            .map(|(name, k)| format!("{name}: {}", std::mem::take(&mut k.suppressed)))
            .collect();
        if !held.is_empty() {
            // Not itself limited: at most one line per interval.
            out(format!(
                "logfunnel hub: suppressed messages in the last {secs:.0}s (too many to print): {}",
                crate::escape::escape(&held.join(", "))
            ));
        }
    }
}

static LIMITER: Mutex<Option<Limiter>> = Mutex::new(None);
/// Whether a summary is owed (lets [`tick`] skip the lock).
static PENDING: AtomicBool = AtomicBool::new(false);

fn with_limiter(f: impl FnOnce(&mut Limiter, Instant, &mut dyn FnMut(String))) {
    let now = Instant::now();
    let mut guard = LIMITER.locked();
    let lim = guard.get_or_insert_with(|| Limiter::new(now));
    f(lim, now, &mut |line| eprintln!("{line}"));
    PENDING.store(lim.owes_summary(), Ordering::Relaxed);
}

/// Prints `logfunnel hub: <text>` unless `kind` or the hub as a whole has
/// printed too much lately; then counts it for the next summary.
pub(crate) fn say(kind: &str, text: &str) {
    with_limiter(|lim, now, out| lim.say(now, kind, text, out));
}

/// Prints `logfunnel hub: <text>` whatever was printed lately: for what
/// happens once per start or per handler (a journal recovered, a stale
/// socket replaced), which a limit must not hide. Escaped like the rest.
pub(crate) fn notice(text: &str) {
    eprintln!("logfunnel hub: {}", crate::escape::escape(text));
}

/// Prints `text` as it is (Python's last resort: a record's bare message)
/// under the same limits as [`say`].
pub(crate) fn say_bare(kind: &str, text: &str) {
    with_limiter(|lim, now, out| lim.line(now, kind, "", text, out));
}

/// Prints the summary now if one is owed and due (called while idle, so
/// that a flood that stopped is still summarised).
pub(crate) fn tick() {
    if !PENDING.load(Ordering::Relaxed) {
        return;
    }
    with_limiter(|lim, now, out| {
        if now.saturating_duration_since(lim.last_summary) >= SUMMARY_INTERVAL {
            lim.summarise(now, out);
        }
    });
}

/// Prints what was suppressed, however recently (the hub is stopping).
pub(crate) fn finish() {
    with_limiter(|lim, now, out| lim.summarise(now, out));
}

/// The text of a panic's payload (`panic!` with a message gives a `&str` or
/// a `String`).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic without a message)".to_owned()
    }
}

std::thread_local! {
    /// Set while a handler call runs under `catch_unwind`: its panic is
    /// reported by the worker (counted, rate-limited), not by the hook.
    static CONTAINED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, catching a panic; the panic hook stays quiet about it (the
/// caller reports it, through [`say`]).
pub(crate) fn contain<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    install_panic_hook();
    let outer = CONTAINED.with(|c| c.replace(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    CONTAINED.with(|c| c.set(outer));
    result.map_err(|payload| panic_message(payload.as_ref()))
}

/// Once per process: a hook that leaves contained panics to their caller
/// and passes every other one to the hook that was there before.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !CONTAINED.with(|c| c.get()) {
                previous(info);
            }
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_prints_a_burst_then_a_summary_of_what_it_held_back() {
        let t0 = Instant::now();
        let mut lim = Limiter::new(t0);
        let mut lines = Vec::new();
        let mut out = |l| lines.push(l);
        // 2 s of a handler failing 5,000 times a second, each message different.
        for i in 0..10_000u32 {
            let now = t0 + Duration::from_micros(200 * u64::from(i));
            lim.say(now, "handler \"file\"", &format!("disk full, {i} records lost\x1b[2J"), &mut out);
        }
        // Another kind still gets its first lines through.
        lim.say(t0 + Duration::from_secs(2), "clients", "refused connection 9", &mut out);
        lim.summarise(t0 + Duration::from_secs(2), &mut out);
        let printed = lines.iter().filter(|l| l.contains("disk full")).count();
        // The burst; the next line of this kind would be due a KIND_INTERVAL on.
        assert_eq!(printed, KIND_BURST as usize, "{lines:#?}");
        assert!(lines.iter().any(|l| l.ends_with("refused connection 9")), "{lines:#?}");
        assert!(lines.iter().all(|l| !l.contains('\x1b')), "escaped: {lines:#?}");
        let summary = lines.last().unwrap();
        assert!(summary.contains(&format!("handler \"file\": {}", 10_000 - printed)), "{summary}");
        assert!(!lim.owes_summary());
    }

    #[test]
    fn the_total_is_bounded_across_kinds() {
        let t0 = Instant::now();
        let mut lim = Limiter::new(t0);
        let mut n = 0;
        for i in 0..1000 {
            lim.say(t0, &format!("kind {i}"), "x", &mut |_| n += 1);
        }
        assert_eq!(n, TOTAL_BURST as usize);
    }

    #[test]
    fn a_contained_panic_returns_its_message() {
        assert_eq!(contain(|| 7), Ok(7));
        let e = contain(|| -> u32 { panic!("at the {}", "disco") }).unwrap_err();
        assert_eq!(e, "at the disco");
    }
}
