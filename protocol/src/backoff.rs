//! The one exponential backoff used by every wait-and-retry loop in the
//! client and the hub (reconnecting, waiting for room or for an ack,
//! retrying a delivery). It lives here because this is the one crate both
//! depend on.
//!
//! Plain arithmetic, no clock: the caller asks for the next delay and does
//! the waiting (a sleep, or a wake-up time for a worker that must not sleep).

use std::time::Duration;

/// Delays that start at `initial`, grow by a factor at each step and stop
/// growing at `max`; optionally with jitter, so that many clients retrying
/// against one server do not retry in step.
///
/// ```
/// use std::time::Duration;
/// use logfunnel_protocol::Backoff;
/// let mut b = Backoff::new(Duration::from_millis(10), Duration::from_millis(50));
/// let delays: Vec<u64> = (0..5).map(|_| b.next_delay().as_millis() as u64).collect();
/// assert_eq!(delays, [10, 20, 40, 50, 50]);
/// b.reset();
/// assert_eq!(b.next_delay(), Duration::from_millis(10));
/// ```
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    /// The factor as a fraction, so that 1.5 needs no floats.
    num: u32,
    den: u32,
    current: Duration,
    /// xorshift state for the jitter; 0 means no jitter.
    rng: u64,
}

impl Backoff {
    /// Doubling delays from `initial` up to `max`, without jitter.
    pub const fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff { initial, max, num: 2, den: 1, current: initial, rng: 0 }
    }

    /// Grows by `num / den` at each step instead of doubling (e.g. 3/2).
    pub const fn factor(mut self, num: u32, den: u32) -> Backoff {
        self.num = num;
        self.den = if den == 0 { 1 } else { den };
        self
    }

    /// Starts the next delay at `first` (clamped to `initial..=max`) instead
    /// of `initial`; `reset` still goes back to `initial`.
    pub fn starting_at(mut self, first: Duration) -> Backoff {
        self.current = first.clamp(self.initial, self.max);
        self
    }

    /// Each delay becomes a random value between half of it and all of it
    /// ("equal jitter"): never less than half the planned wait, and
    /// retries from many sources spread out. `seed` picks the sequence
    /// (tests pass a fixed one).
    pub fn with_jitter(mut self, seed: u64) -> Backoff {
        // Any non-zero state works for xorshift.
        self.rng = seed | 1;
        self
    }

    /// A seed that differs between processes and calls (for `with_jitter`).
    pub fn random_seed() -> u64 {
        let t = crate::now_ns() as u64;
        let local = 0u8;
        t ^ (u64::from(std::process::id()) << 32) ^ (&local as *const u8 as u64).rotate_left(17)
    }

    /// The delay to wait now; the one after it is larger, up to `max`.
    pub fn next_delay(&mut self) -> Duration {
        let planned = self.current;
        let grown = planned.saturating_mul(self.num) / self.den;
        self.current = grown.clamp(self.initial, self.max);
        if self.rng == 0 {
            return planned;
        }
        // xorshift64: cheap, and good enough to spread retries.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        let half = planned / 2;
        let spread = (planned - half).as_nanos() as u64;
        half + Duration::from_nanos(if spread == 0 { 0 } else { x % (spread + 1) })
    }

    /// The delay `next_delay` would plan next (before jitter).
    pub fn peek(&self) -> Duration {
        self.current
    }

    /// Back to `initial` (after a success).
    pub fn reset(&mut self) {
        self.current = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn grows_by_its_factor_and_stops_at_max() {
        let mut b = Backoff::new(10 * MS, 500 * MS);
        let got: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        let want: Vec<Duration> = [10, 20, 40, 80, 160, 320, 500, 500].iter().map(|&m| m * MS).collect();
        assert_eq!(got, want);
        let mut b = Backoff::new(Duration::from_micros(100), 2 * MS).factor(3, 2);
        let got: Vec<u128> = (0..9).map(|_| b.next_delay().as_micros()).collect();
        assert_eq!(got, [100, 150, 225, 337, 506, 759, 1139, 1708, 2000]);
    }

    #[test]
    fn reset_and_starting_point() {
        let mut b = Backoff::new(10 * MS, 4000 * MS).starting_at(250 * MS);
        assert_eq!(b.next_delay(), 250 * MS);
        assert_eq!(b.next_delay(), 500 * MS);
        b.reset();
        assert_eq!(b.next_delay(), 10 * MS);
        // A start outside the range is clamped into it.
        assert_eq!(Backoff::new(10 * MS, 20 * MS).starting_at(MS).next_delay(), 10 * MS);
        assert_eq!(Backoff::new(10 * MS, 20 * MS).starting_at(9000 * MS).next_delay(), 20 * MS);
    }

    #[test]
    fn jitter_stays_between_half_and_the_whole_delay_and_follows_its_seed() {
        let plain: Vec<Duration> = {
            let mut b = Backoff::new(100 * MS, 30_000 * MS);
            (0..20).map(|_| b.next_delay()).collect()
        };
        let run = |seed| {
            let mut b = Backoff::new(100 * MS, 30_000 * MS).with_jitter(seed);
            (0..20).map(|_| b.next_delay()).collect::<Vec<_>>()
        };
        let a = run(42);
        for (j, p) in a.iter().zip(&plain) {
            assert!(*j >= *p / 2 && j <= p, "{j:?} outside [{:?}, {p:?}]", *p / 2);
        }
        assert_eq!(a, run(42), "same seed, same delays");
        assert_ne!(a, run(7), "another seed spreads differently");
        assert!(a.iter().zip(&plain).any(|(j, p)| j != p), "jitter changes something");
    }

    #[test]
    fn huge_values_saturate_instead_of_overflowing() {
        let mut b = Backoff::new(Duration::MAX / 2, Duration::MAX);
        for _ in 0..4 {
            assert!(b.next_delay() <= Duration::MAX);
        }
        let mut z = Backoff::new(Duration::ZERO, Duration::ZERO).with_jitter(1);
        assert_eq!(z.next_delay(), Duration::ZERO);
    }
}
