//! Records written back to back on a byte stream (TCP, TLS, a Unix stream
//! socket), each already framed by its handler: syslog over TCP, Python's
//! SocketHandler.
//!
//! A stream gives no receipt: `write` succeeding means "in a kernel buffer".
//! When a connection breaks, the records whose bytes the peer's TCP stack
//! had not acknowledged may be lost; the transport counts them (see
//! [`Transport::take_unconfirmed`]) instead of resending them, so a
//! receiver never sees a record twice. A record cut by the break is resent
//! whole on the next connection.

use std::collections::VecDeque;
use std::time::Instant;

use super::link::{Link, Peer};
use super::{Attempt, OutBatch, Transport};

/// See the module docs.
#[derive(Debug)]
pub(crate) struct StreamTransport {
    link: Link,
    /// Bytes of the front batch written past its settled records (the start
    /// of a record not yet complete on the wire).
    partial: usize,
    /// Where each record completed on this connection ends in its byte
    /// stream, for records the peer has not confirmed yet.
    unconfirmed_ends: VecDeque<u64>,
    /// Records lost to a broken connection, not yet reported.
    lost: u64,
    /// Since when the socket has taken nothing while data waits.
    stalled_since: Option<Instant>,
    what: String,
}

impl StreamTransport {
    pub(crate) fn new(link: Link, what: &str) -> StreamTransport {
        let what = format!("{what} {}{}", if link.is_tls() { "tls " } else { "" }, link.endpoint());
        StreamTransport {
            link,
            partial: 0,
            unconfirmed_ends: VecDeque::new(),
            lost: 0,
            stalled_since: None,
            what,
        }
    }

    /// Forgets the records the peer has confirmed since.
    fn prune_confirmed(&mut self) {
        let confirmed = self.link.bytes_out() - self.link.unconfirmed_bytes();
        while self.unconfirmed_ends.front().is_some_and(|&end| end <= confirmed) {
            self.unconfirmed_ends.pop_front();
        }
    }

    /// The connection broke (or was closed by the peer): what it had not
    /// confirmed is counted as possibly lost, and the next attempt starts a
    /// new one, resending the record that was cut.
    fn lost_connection(&mut self, how: Peer) {
        // After an orderly close the kernel still knows what the peer
        // acknowledged; after a reset it has dropped that count, and the
        // last measure stands.
        if how == Peer::Closed {
            self.prune_confirmed();
        }
        self.lost += self.unconfirmed_ends.len() as u64;
        self.unconfirmed_ends.clear();
        self.partial = 0;
        self.stalled_since = None;
        self.link.reset();
    }
}

impl Transport for StreamTransport {
    fn attempt(&mut self, batch: &mut OutBatch) -> Attempt {
        match self.link.ready() {
            Ok(true) => {}
            Ok(false) => return Attempt::Wait,
            Err(e) => return Attempt::Retry(e.to_string()),
        }
        // A syslog daemon never writes back: readable means it has gone.
        // Noticing before writing keeps records out of a dead connection.
        match self.link.peer_state() {
            Peer::Open => self.prune_confirmed(),
            state => {
                self.lost_connection(state);
                return Attempt::Retry("the peer closed the connection".into());
            }
        }
        loop {
            let start = batch.offset_of(batch.done());
            let data = &batch.bytes_from(batch.done())[self.partial..];
            if data.is_empty() {
                return Attempt::Done;
            }
            match self.link.write(data) {
                Ok(0) => {
                    let since = *self.stalled_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > self.link.stall_limit() {
                        self.prune_confirmed();
                        self.lost_connection(Peer::Broken);
                        return Attempt::Retry(format!(
                            "the peer took no data for {:?} (not reading, or gone without a word)",
                            since.elapsed()
                        ));
                    }
                    return Attempt::Wait;
                }
                Ok(n) => {
                    self.stalled_since = None;
                    self.partial += n;
                    let complete = batch.records_within(start + self.partial) - batch.done();
                    if complete > 0 {
                        // Each completed record's end in the connection's stream.
                        let stream_end = self.link.bytes_out();
                        let written_end = start + self.partial;
                        for i in batch.done()..batch.done() + complete {
                            let end = batch.offset_of(i + 1) as u64;
                            self.unconfirmed_ends.push_back(stream_end - (written_end as u64 - end));
                        }
                        let settled = batch.offset_of(batch.done() + complete) - start;
                        batch.advance(complete);
                        self.partial -= settled;
                    }
                }
                Err(e) => {
                    self.lost_connection(Peer::Broken);
                    return Attempt::Retry(e.to_string());
                }
            }
        }
    }

    fn take_unconfirmed(&mut self) -> u64 {
        std::mem::take(&mut self.lost)
    }

    fn idle(&mut self) {
        if self.link.is_up() {
            match self.link.peer_state() {
                Peer::Open => self.prune_confirmed(),
                state => self.lost_connection(state),
            }
        }
    }

    fn close(&mut self) {
        self.link.close();
    }

    fn describe(&self) -> String {
        self.what.clone()
    }
}
