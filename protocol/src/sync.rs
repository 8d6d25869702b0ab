//! Poisoned locks, handled in one place (as tracing-appender's `sync.rs`).
//!
//! A mutex is poisoned when a thread panicked while holding it. Every lock
//! in logfunnel guards data that stays consistent between statements (a
//! counter, a queue, a list of connections), so the right answer is always
//! to take the data and carry on: one panicking handler thread must not
//! turn every later `stats` request or log call into a second panic.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError, WaitTimeoutResult};
use std::time::Duration;

/// [`Mutex::lock`] that takes the data even when the mutex is poisoned.
pub trait LockExt<T: ?Sized> {
    /// Locks, ignoring poisoning (see the module's note for why).
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T: ?Sized> LockExt<T> for Mutex<T> {
    #[inline]
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// [`Condvar`]'s waits, ignoring poisoning as [`LockExt::locked`] does.
pub trait WaitExt {
    /// [`Condvar::wait`], ignoring poisoning.
    fn wait_locked<'a, T>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T>;
    /// [`Condvar::wait_timeout`], ignoring poisoning.
    fn wait_timeout_locked<'a, T>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: Duration,
    ) -> (MutexGuard<'a, T>, WaitTimeoutResult);
}

impl WaitExt for Condvar {
    #[inline]
    fn wait_locked<'a, T>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        self.wait(guard).unwrap_or_else(PoisonError::into_inner)
    }

    #[inline]
    fn wait_timeout_locked<'a, T>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: Duration,
    ) -> (MutexGuard<'a, T>, WaitTimeoutResult) {
        self.wait_timeout(guard, timeout).unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_poisoned_lock_still_gives_its_data() {
        let m = Arc::new(Mutex::new(1));
        let m2 = Arc::clone(&m);
        let _ = std::thread::spawn(move || {
            let mut g = m2.lock().unwrap();
            *g = 2;
            panic!("poison the lock");
        })
        .join();
        assert!(m.is_poisoned());
        assert_eq!(*m.locked(), 2);
        let (g, r) = Condvar::new().wait_timeout_locked(m.locked(), Duration::from_millis(1));
        assert!(r.timed_out());
        assert_eq!(*g, 2);
    }
}
