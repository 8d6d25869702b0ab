//! Fork safety. A child process forked from a logging process inherits
//! the client's memory but not its sender thread, and maybe locks that
//! other threads held at the instant of the fork. So the client never
//! touches the parent's state in the child: the first log call (or flush,
//! or stats) in a new process generation builds a fresh client, with a new
//! session, empty queues and its own sender thread. The parent's queued
//! records stay the parent's: the child never sends them.

use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Incremented in every forked child.
static GENERATION: AtomicU64 = AtomicU64::new(0);
/// Held while a child builds its fresh client; cleared in each new child,
/// where no thread can be building one.
pub(crate) static REBUILDING: AtomicBool = AtomicBool::new(false);
static INSTALL: Once = Once::new();

extern "C" fn in_child() {
    // Only async-signal-safe work here: atomic loads and stores.
    GENERATION.fetch_add(1, Ordering::Relaxed);
    REBUILDING.store(false, Ordering::Relaxed);
    crate::clock::after_fork();
    crate::exit::after_fork();
}

/// Registers the fork handler (once per process).
pub(crate) fn install() {
    INSTALL.call_once(|| {
        // SAFETY: `in_child` is an `extern "C" fn()` that only touches atomics.
        unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
    });
}

/// This process's generation: 0 in the process that built the client, n in
/// a child n forks down.
pub(crate) fn generation() -> u64 {
    GENERATION.load(Ordering::Relaxed)
}
