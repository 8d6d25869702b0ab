//! Where each client session stands: what the hub has received (to drop a
//! reconnecting client's resends as duplicates) and what it may acknowledge.
//!
//! A batch is acknowledged only once it is *settled*: every handler it was
//! routed to has either written it to the operating system and journaled
//! that (durable handlers, see `journal.rs`), taken it into its queue
//! (handlers without a journal), or dropped and counted it. Each queued
//! batch carries a [`SettleGuard`]; when the last copy is dropped the batch is
//! settled, and the session's acknowledged prefix can move past it.
//!
//! Bounded: past `MAX_SESSIONS` the session seen longest ago is forgotten
//! (a client that comes back after that is treated as new; durable handlers
//! still drop its resends through their journals). 64 Ki sessions cost a few MiB.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use logfunnel_protocol::sync::LockExt;

const MAX_SESSIONS: usize = 65_536;

/// Marks its batch settled when the last clone is dropped.
#[derive(Debug)]
pub(crate) struct SettleGuard {
    done: Arc<AtomicBool>,
    /// A batch that was never handed on (the hub is stopping) must not be
    /// acknowledged: the client keeps it and resends it to the next hub.
    abandoned: AtomicBool,
}

impl SettleGuard {
    pub(crate) fn new() -> (Arc<SettleGuard>, Arc<AtomicBool>) {
        let done = Arc::new(AtomicBool::new(false));
        (Arc::new(SettleGuard { done: Arc::clone(&done), abandoned: AtomicBool::new(false) }), done)
    }

    pub(crate) fn abandon(&self) {
        self.abandoned.store(true, Ordering::Relaxed);
    }
}

impl Drop for SettleGuard {
    fn drop(&mut self) {
        if !self.abandoned.load(Ordering::Relaxed) {
            self.done.store(true, Ordering::Release);
        }
    }
}

/// One session's progress.
#[derive(Debug)]
pub(crate) struct SessionState {
    /// Every record below this was received (queued, or a duplicate).
    pub(crate) received_next: u64,
    /// Every record below this is settled and may be acknowledged.
    acked_next: u64,
    /// Batches received but not yet settled: (end sequence, settled flag), in order.
    pending: VecDeque<(u64, Arc<AtomicBool>)>,
}

impl SessionState {
    /// Records that `received_next..end` was handed on, settled by `done`.
    pub(crate) fn received(&mut self, end: u64, done: Arc<AtomicBool>) {
        self.received_next = end;
        self.pending.push_back((end, done));
    }

    /// Moves past a gap the client declared (records it dropped itself).
    pub(crate) fn skip_to(&mut self, next: u64) {
        if next > self.received_next {
            self.received_next = next;
        }
    }

    /// The acknowledgeable prefix, after taking every settled batch off the front.
    pub(crate) fn settled_next(&mut self) -> u64 {
        while let Some((end, done)) = self.pending.front() {
            if !done.load(Ordering::Acquire) {
                return self.acked_next;
            }
            self.acked_next = *end;
            self.pending.pop_front();
        }
        self.acked_next = self.acked_next.max(self.received_next);
        self.acked_next
    }

    /// Whether everything received is settled.
    pub(crate) fn all_settled(&mut self) -> bool {
        self.settled_next() >= self.received_next
    }
}

type Entry = (Arc<Mutex<SessionState>>, Instant);

#[derive(Debug, Default)]
pub(crate) struct Sessions {
    map: Mutex<HashMap<u64, Entry>>,
}

impl Sessions {
    /// The state of `session`, created at `first_seq` if it is new.
    pub(crate) fn open(&self, session: u64, first_seq: u64) -> Arc<Mutex<SessionState>> {
        let mut map = self.lock();
        if let Some((state, seen)) = map.get_mut(&session) {
            *seen = Instant::now();
            return Arc::clone(state);
        }
        if map.len() >= MAX_SESSIONS {
            // Rare (only with very many short-lived clients): a linear scan is fine.
            if let Some(oldest) = map.iter().min_by_key(|(_, (_, seen))| *seen).map(|(k, _)| *k) {
                map.remove(&oldest);
            }
        }
        let state = Arc::new(Mutex::new(SessionState {
            received_next: first_seq,
            acked_next: first_seq,
            pending: VecDeque::new(),
        }));
        map.insert(session, (Arc::clone(&state), Instant::now()));
        state
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Entry>> {
        self.map.locked()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

pub(crate) fn lock(state: &Mutex<SessionState>) -> MutexGuard<'_, SessionState> {
    state.locked()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_sessions_and_forgets_the_oldest_past_the_bound() {
        let s = Sessions::default();
        lock(&s.open(1, 10)).skip_to(20);
        assert_eq!(lock(&s.open(1, 0)).received_next, 20);
        for i in 2..=MAX_SESSIONS as u64 + 1 {
            s.open(i, 1);
        }
        assert_eq!(s.len(), MAX_SESSIONS);
        assert_eq!(lock(&s.open(1, 5)).received_next, 5, "the oldest session was forgotten");
    }

    #[test]
    fn acknowledges_only_a_settled_prefix() {
        let s = Sessions::default();
        let st = s.open(7, 1);
        let mut st = lock(&st);
        let (g1, d1) = SettleGuard::new();
        let (g2, d2) = SettleGuard::new();
        let (g3, d3) = SettleGuard::new();
        st.received(11, d1);
        st.received(21, d2);
        st.received(31, d3);
        assert_eq!(st.settled_next(), 1);
        drop(g2);
        assert_eq!(st.settled_next(), 1, "a later batch settles, the first does not");
        drop(g1);
        assert_eq!(st.settled_next(), 21);
        g3.abandon();
        drop(g3);
        assert_eq!(st.settled_next(), 21, "an abandoned batch is never acknowledged");
        assert!(!st.all_settled());
    }
}
