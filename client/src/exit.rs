//! What the client does when the process exits.
//!
//! The client installed by [`crate::init`] (or made for a tracing
//! subscriber by `Builder::build_tracing`) serves the whole process, and
//! nothing drops a global logger: so at exit (returning from `main`, or
//! `std::process::exit`, both of which run `atexit` handlers) it flushes once
//! more and stops its sender. Records given to a client whose sender was
//! already stopped cannot be sent; they are counted as they arrive and the
//! count is printed on stderr here, so that no record disappears without a
//! word.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once};

use logfunnel_protocol::sync::LockExt;

use crate::{QueueHandler, Shared};

static PROCESS_CLIENTS: Mutex<Vec<QueueHandler>> = Mutex::new(Vec::new());
/// Records logged to stopped clients in this process.
static LATE: AtomicU64 = AtomicU64::new(0);
static INSTALL: Once = Once::new();

/// Registers the exit handler (once per process).
pub(crate) fn install() {
    INSTALL.call_once(|| {
        // SAFETY: `at_exit` is an `extern "C" fn()` that never unwinds.
        unsafe { libc::atexit(at_exit) };
    });
}

/// A client that serves the whole process (`init`, `build_tracing`).
pub(crate) fn add_process_client(handler: QueueHandler) {
    PROCESS_CLIENTS.locked().push(handler);
}

/// A record given to a client whose sender is stopped.
pub(crate) fn count_late(shared: &Shared) {
    shared.late.fetch_add(1, Ordering::Relaxed);
    LATE.fetch_add(1, Ordering::Relaxed);
}

/// In a forked child: the parent's late records are not the child's.
pub(crate) fn after_fork() {
    LATE.store(0, Ordering::Relaxed);
}

extern "C" fn at_exit() {
    // A panic must not unwind into libc's exit.
    let _ = std::panic::catch_unwind(|| {
        let clients = PROCESS_CLIENTS.locked().clone();
        for handler in clients {
            if let Err(e) = handler.shutdown_at_exit() {
                eprintln!("logfunnel client: at exit: {e}");
            }
        }
        let late = LATE.load(Ordering::Relaxed);
        if late > 0 {
            eprintln!(
                "logfunnel client: {late} records were logged after their client was stopped (by Guard::finish, or by dropping the guard of a Builder::build handler) and were not sent"
            );
        }
    });
}
