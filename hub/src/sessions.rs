//! Where each client session stopped, so a reconnecting client's resent
//! records are dropped as duplicates.
//!
//! Bounded: past `MAX_SESSIONS` the session seen longest ago is forgotten
//! (a client that comes back after that is treated as new, and may have
//! records it resends written twice). 64 Ki sessions cost about 3 MiB.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

const MAX_SESSIONS: usize = 65_536;

#[derive(Debug, Default)]
pub(crate) struct Sessions {
    map: Mutex<HashMap<u64, (u64, Instant)>>,
}

impl Sessions {
    /// The next sequence number expected from `session`, if it was here before.
    pub(crate) fn next_seq(&self, session: u64) -> Option<u64> {
        self.lock().get(&session).map(|(seq, _)| *seq)
    }

    /// Records that `session` has delivered everything below `next_seq`.
    pub(crate) fn record(&self, session: u64, next_seq: u64) {
        let mut map = self.lock();
        if map.len() >= MAX_SESSIONS && !map.contains_key(&session) {
            // Rare (only with very many short-lived clients): a linear scan is fine.
            if let Some(oldest) = map.iter().min_by_key(|(_, (_, seen))| *seen).map(|(k, _)| *k) {
                map.remove(&oldest);
            }
        }
        map.insert(session, (next_seq, Instant::now()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (u64, Instant)>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_sessions_and_forgets_the_oldest_past_the_bound() {
        let s = Sessions::default();
        s.record(1, 10);
        s.record(1, 20);
        assert_eq!(s.next_seq(1), Some(20));
        assert_eq!(s.next_seq(2), None);
        for i in 2..=MAX_SESSIONS as u64 + 1 {
            s.record(i, 1);
        }
        assert_eq!(s.len(), MAX_SESSIONS);
        assert_eq!(s.next_seq(1), None, "the oldest session was forgotten");
        assert_eq!(s.next_seq(MAX_SESSIONS as u64 + 1), Some(1));
    }
}
