//! The wall clock of the log call. `SystemTime::now()` (the vDSO's
//! clock_gettime plus the conversion) is a large share of the whole call;
//! reading the CPU's time-stamp counter and scaling it is much cheaper
//! (docs/BENCHMARKS.md#the-log-calls-clock). So where the kernel itself
//! keeps time with the TSC (its clocksource is `tsc`: an invariant counter, the same on every core), the
//! log call reads the TSC and converts it with an anchor pair (TSC, wall
//! time) and a rate that the sender thread refreshes from the real clock
//! every 50 ms (the first rate after 2 ms). The wall clock stays the authority: a step (settimeofday)
//! or an NTP slew is followed within one refresh, and each refresh takes
//! the real time as is, so the error never grows beyond what drifts in
//! 50 ms (microseconds). An anchor more than a second old (the sender has
//! stopped, or is stalled) is not used. Until the first rate is known, on other CPUs, or
//! with another clocksource, the call uses `SystemTime` as before.
//!
//! The anchor is published through a seqlock: the sender writes, every log
//! call reads without a lock, and a reader that keeps meeting a write in
//! progress falls back to `SystemTime` rather than wait.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering, fence};
use std::time::{Duration, Instant};

use logfunnel_protocol::now_ns as system_ns;

/// Whether the TSC path is in use.
static ENABLED: AtomicBool = AtomicBool::new(false);
/// Odd while the anchor is being written.
static SEQ: AtomicU64 = AtomicU64::new(0);
static BASE_TSC: AtomicU64 = AtomicU64::new(0);
static BASE_NS: AtomicI64 = AtomicI64::new(0);
/// Nanoseconds per tick, times 2^32.
static MULT: AtomicU64 = AtomicU64::new(0);
/// Ticks in `MAX_AGE`: an anchor older than this is not used (its sender
/// has stopped or stalled, and the wall clock may have been stepped since).
static MAX_TICKS: AtomicU64 = AtomicU64::new(0);
/// Held by the one thread refreshing the anchor.
static WRITING: AtomicBool = AtomicBool::new(false);

/// How often the sender refreshes the anchor.
pub(crate) const REFRESH: Duration = Duration::from_millis(50);
/// How old an anchor may be before the log call goes back to the wall
/// clock.
const MAX_AGE: Duration = Duration::from_secs(1);
/// The first rate is measured over this much: the pair's jitter (tens of
/// ns) makes it good to a few tens of ppm, a microsecond or two over one
/// refresh; each later refresh measures over `REFRESH`.
const FIRST_RATE: Duration = Duration::from_millis(2);

/// Nanoseconds since the Unix epoch, now.
#[inline]
pub(crate) fn now_ns() -> i64 {
    #[cfg(target_arch = "x86_64")]
    if ENABLED.load(Ordering::Relaxed) {
        for _ in 0..4 {
            let seq = SEQ.load(Ordering::Acquire);
            // SAFETY: rdtsc has no preconditions on x86_64.
            let tsc = unsafe { core::arch::x86_64::_rdtsc() };
            let base_tsc = BASE_TSC.load(Ordering::Relaxed);
            let base_ns = BASE_NS.load(Ordering::Relaxed);
            let mult = MULT.load(Ordering::Relaxed);
            let max_ticks = MAX_TICKS.load(Ordering::Relaxed);
            fence(Ordering::Acquire);
            if seq & 1 == 0 && SEQ.load(Ordering::Relaxed) == seq {
                if tsc.wrapping_sub(base_tsc) > max_ticks {
                    break; // a stale anchor: the wall clock instead
                }
                return convert(tsc, base_tsc, base_ns, mult);
            }
        }
    }
    system_ns()
}

#[inline]
fn convert(tsc: u64, base_tsc: u64, base_ns: i64, mult: u64) -> i64 {
    // Signed: another core's counter may read a few ticks behind the anchor.
    let ticks = tsc.wrapping_sub(base_tsc) as i64 as i128;
    base_ns + ((ticks * mult as i128) >> 32) as i64
}

/// The sender thread's side: keeps the anchor fresh.
pub(crate) struct Calibrator {
    /// The last pair taken: (tsc, wall ns, when).
    last: Option<(u64, i64, Instant)>,
    usable: bool,
}

impl Calibrator {
    pub(crate) fn new() -> Calibrator {
        Calibrator { last: None, usable: tsc_usable() }
    }

    /// Takes a new anchor if the last is `REFRESH` old (cheap otherwise).
    pub(crate) fn tick(&mut self) {
        if !self.usable {
            return;
        }
        let now = Instant::now();
        let every = if ENABLED.load(Ordering::Relaxed) { REFRESH } else { FIRST_RATE };
        if self.last.is_some_and(|(_, _, at)| now.duration_since(at) < every) {
            return;
        }
        let Some((tsc, ns)) = pair() else { return };
        if let Some((tsc0, ns0, _)) = self.last {
            let (dt, dn) = (tsc.wrapping_sub(tsc0), ns - ns0);
            // A wall clock stepped back, or nothing measurable: keep the rate,
            // move the anchor.
            let mult = if dt > 0 && dn > 0 {
                ((dn as u128) << 32) / dt as u128
            } else {
                MULT.load(Ordering::Relaxed) as u128
            };
            // A rate outside 0.1–10 GHz is not a clock: use SystemTime.
            let ok = (((1u128 << 32) / 10)..=(10u128 << 32)).contains(&mult);
            publish(tsc, ns, if ok { mult as u64 } else { 0 }, ok);
        }
        self.last = Some((tsc, ns, now));
    }
}

/// A (tsc, wall ns) pair taken close together: the TSC read on both sides
/// of the wall clock within 1,000 ticks of each other (0.4 µs at 2.6 GHz),
/// retried if the thread was interrupted in between.
fn pair() -> Option<(u64, i64)> {
    #[cfg(target_arch = "x86_64")]
    for _ in 0..5 {
        // SAFETY: rdtsc has no preconditions on x86_64.
        let a = unsafe { core::arch::x86_64::_rdtsc() };
        let ns = system_ns();
        // SAFETY: as above.
        let b = unsafe { core::arch::x86_64::_rdtsc() };
        if b.wrapping_sub(a) < 1_000 {
            return Some((a + (b - a) / 2, ns));
        }
    }
    None
}

fn publish(tsc: u64, ns: i64, mult: u64, enable: bool) {
    if WRITING.swap(true, Ordering::Acquire) {
        return; // another sender is refreshing it
    }
    let seq = SEQ.load(Ordering::Relaxed);
    SEQ.store(seq + 1, Ordering::Relaxed);
    fence(Ordering::Release);
    BASE_TSC.store(tsc, Ordering::Relaxed);
    BASE_NS.store(ns, Ordering::Relaxed);
    MULT.store(mult, Ordering::Relaxed);
    let max_ticks = if mult == 0 { 0 } else { ((MAX_AGE.as_nanos() << 32) / mult as u128) as u64 };
    MAX_TICKS.store(max_ticks, Ordering::Relaxed);
    SEQ.store(seq + 2, Ordering::Release);
    ENABLED.store(enable, Ordering::Release);
    WRITING.store(false, Ordering::Release);
}

/// Whether the kernel keeps time with the TSC (then it is invariant and
/// synchronised across cores, or the kernel would have refused it).
fn tsc_usable() -> bool {
    cfg!(target_arch = "x86_64")
        && std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
            .is_ok_and(|s| s.trim() == "tsc")
}

/// In a forked child (async-signal-safe: atomics only). A write the fork
/// interrupted is abandoned, and the child uses `SystemTime` until its own
/// sender has taken a fresh rate.
pub(crate) fn after_fork() {
    ENABLED.store(false, Ordering::Relaxed);
    WRITING.store(false, Ordering::Relaxed);
    let seq = SEQ.load(Ordering::Relaxed);
    if seq & 1 == 1 {
        SEQ.store(seq + 1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tsc_clock_follows_the_wall_clock() {
        let mut c = Calibrator::new();
        if !c.usable {
            // Another clocksource: the log call must use the wall clock.
            assert!(!ENABLED.load(Ordering::Relaxed));
            let (a, b) = (now_ns(), system_ns());
            assert!((b - a).abs() < 50_000_000, "{a} vs {b}");
            return;
        }
        c.tick();
        std::thread::sleep(FIRST_RATE + Duration::from_millis(1));
        c.tick();
        assert!(ENABLED.load(Ordering::Relaxed), "the rate should be known after two anchors");
        let mult = MULT.load(Ordering::Relaxed) as f64 / 4294967296.0;
        assert!((0.1..10.0).contains(&mult), "ns per tick {mult}");
        // Within 200 µs of the wall clock over 50 ms, read in between two
        // wall-clock readings (a preempted sample is retried).
        let start = Instant::now();
        let mut worst = 0;
        while start.elapsed() < Duration::from_millis(50) {
            let before = system_ns();
            let t = now_ns();
            let after = system_ns();
            if after - before > 20_000 {
                continue;
            }
            let off = if t < before { before - t } else { (t - after).max(0) };
            worst = worst.max(off);
        }
        assert!(worst < 200_000, "the TSC clock was {worst} ns off the wall clock");
        // A stale anchor is not used: with one from "two seconds ago" (and a
        // base time far off), the call still reads the wall clock.
        let (mult, ticks) = (MULT.load(Ordering::Relaxed), MAX_TICKS.load(Ordering::Relaxed));
        // SAFETY: rdtsc has no preconditions on x86_64.
        let now_tsc = unsafe { core::arch::x86_64::_rdtsc() };
        publish(now_tsc - 2 * ticks, 0, mult, true);
        let (t, wall) = (now_ns(), system_ns());
        assert!((wall - t).abs() < 50_000_000, "a stale anchor was used: {t} vs {wall}");
        c.last = None;
        c.tick();
        std::thread::sleep(FIRST_RATE + Duration::from_millis(1));
        c.tick();
        // And it moves forward.
        let (a, b) = (now_ns(), {
            std::thread::sleep(Duration::from_millis(2));
            now_ns()
        });
        assert!(b - a >= 2_000_000 && b - a < 50_000_000, "{a} → {b}");
    }
}
