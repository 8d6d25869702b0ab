//! Transports whose one attempt is a blocking exchange (an HTTP request, an
//! SMTP session): the exchange runs on a thread of its own, so the
//! handler's worker never waits on the remote. The worker hands the thread
//! a copy of the batch's records and comes back for the answer
//! ([`Attempt::Wait`] meanwhile); a remote that hangs costs its timeout on
//! that thread, never a stalled queue.

use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::time::Duration;

use super::{Attempt, Encode, OutBatch, Outbox, Transport};
use crate::formatter::RecordContext;
use crate::handler::{Handler, HandlerError};

/// What happened to one record of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Settled {
    /// Delivered.
    Delivered,
    /// Refused for good by the remote (why).
    Rejected(String),
}

/// The answer of one exchange: the records settled, in order, and, when it
/// stopped early, why (the rest is retried), or that the remote refused
/// the rest of the batch for good.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// One entry per record settled, from the first of the job.
    pub(crate) settled: Vec<Settled>,
    /// Set when the remaining records must be tried again: why, and how
    /// long the remote asked to be left alone (HTTP's Retry-After).
    pub(crate) retry: Option<(String, Option<Duration>)>,
    /// Set when the remote refused every remaining record.
    pub(crate) reject: Option<String>,
}

/// The blocking side: makes one exchange for `records` (each the bytes a
/// handler encoded for it).
pub(crate) trait Exchange: Send + 'static {
    /// Delivers what it can of `records`, in order.
    fn exchange(&mut self, records: &[&[u8]]) -> Outcome;
}

struct Job {
    data: Vec<u8>,
    ends: Vec<usize>,
}

/// A [`Transport`] running an [`Exchange`] on its own thread.
pub(crate) struct Offload {
    jobs: SyncSender<Job>,
    answers: Receiver<Outcome>,
    /// The batch (id) and its first record (index) of the job in flight.
    in_flight: Option<(u64, usize)>,
    /// Retry-After of the last failed exchange.
    retry_after: Option<Duration>,
    describe: String,
    /// Called with the reason of every record refused one by one (the
    /// outbox counts them; this says why).
    on_reject: Box<dyn FnMut(&str) + Send>,
}

impl Offload {
    /// Starts the exchange's thread (named `thread_name`).
    pub(crate) fn new(
        mut exchange: impl Exchange,
        thread_name: &str,
        describe: String,
        on_reject: Box<dyn FnMut(&str) + Send>,
    ) -> std::io::Result<Offload> {
        let (jobs, job_rx) = sync_channel::<Job>(1);
        let (answer_tx, answers) = sync_channel::<Outcome>(1);
        std::thread::Builder::new().name(thread_name.into()).spawn(move || {
            // Ends when the transport (and its sender) is dropped.
            while let Ok(job) = job_rx.recv() {
                let mut start = 0;
                let records: Vec<&[u8]> = job
                    .ends
                    .iter()
                    .map(|&end| {
                        let r = &job.data[start..end];
                        start = end;
                        r
                    })
                    .collect();
                let outcome = exchange.exchange(&records);
                if answer_tx.send(outcome).is_err() {
                    break;
                }
            }
        })?;
        Ok(Offload { jobs, answers, in_flight: None, retry_after: None, describe, on_reject })
    }

    fn apply(&mut self, batch: &mut OutBatch, outcome: Outcome) -> Attempt {
        for s in outcome.settled {
            if batch.is_settled() {
                break;
            }
            match s {
                Settled::Delivered => batch.advance(1),
                Settled::Rejected(why) => {
                    (self.on_reject)(&why);
                    batch.reject_next();
                }
            }
        }
        if let Some(why) = outcome.reject
            && !batch.is_settled()
        {
            return Attempt::Reject(why);
        }
        if let Some((why, after)) = outcome.retry
            && !batch.is_settled()
        {
            self.retry_after = after;
            return Attempt::Retry(why);
        }
        if batch.is_settled() { Attempt::Done } else { Attempt::Wait }
    }
}

impl Transport for Offload {
    fn attempt(&mut self, batch: &mut OutBatch) -> Attempt {
        if let Some((id, from)) = self.in_flight {
            match self.answers.try_recv() {
                Ok(outcome) => {
                    self.in_flight = None;
                    if id != batch.id() || from != batch.done() {
                        // Not this batch's answer (cannot happen: a started
                        // batch stays at the front until settled); send again.
                        return Attempt::Wait;
                    }
                    return self.apply(batch, outcome);
                }
                Err(TryRecvError::Empty) => return Attempt::Wait,
                Err(TryRecvError::Disconnected) => {
                    self.in_flight = None;
                    return Attempt::Retry("the delivery thread ended".into());
                }
            }
        }
        let from = batch.done();
        let job = Job {
            data: batch.bytes_from(from).to_vec(),
            ends: (from..batch.len()).map(|i| batch.offset_of(i + 1) - batch.offset_of(from)).collect(),
        };
        match self.jobs.try_send(job) {
            Ok(()) => {
                self.in_flight = Some((batch.id(), from));
                Attempt::Wait
            }
            Err(_) => Attempt::Retry("the delivery thread is not running".into()),
        }
    }

    fn retry_after(&mut self) -> Option<Duration> {
        self.retry_after.take()
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }
}

/// A network handler whose deliveries are blocking exchanges: records go
/// into the outbox as `E` encodes them; an [`Offload`] delivers them.
pub(crate) struct OffloadHandler<E> {
    encoder: E,
    outbox: Outbox,
    transport: Offload,
}

impl<E: Encode> OffloadHandler<E> {
    pub(crate) fn new(encoder: E, outbox: Outbox, transport: Offload) -> OffloadHandler<E> {
        OffloadHandler { encoder, outbox, transport }
    }
}

impl<E: Encode> Handler for OffloadHandler<E> {
    fn emit(&mut self, ctx: &RecordContext<'_>) -> Result<(), HandlerError> {
        let encoder = &mut self.encoder;
        self.outbox.take(|buf| encoder.encode(ctx, buf))
    }

    fn emit_report(&mut self, ctx: &RecordContext<'_>) -> Result<(), HandlerError> {
        let encoder = &mut self.encoder;
        self.outbox.take_report(|buf| encoder.encode(ctx, buf))
    }

    fn flush(&mut self) -> Result<(), HandlerError> {
        self.outbox.flush(&mut self.transport)
    }

    fn poll(&mut self) -> Result<(), HandlerError> {
        self.outbox.poll(&mut self.transport)
    }

    fn next_due(&self) -> Option<std::time::Instant> {
        self.outbox.next_due()
    }

    fn ready(&self) -> bool {
        self.outbox.ready()
    }

    fn counts_deliveries(&self) -> bool {
        true
    }

    fn drain(&mut self, deadline: std::time::Instant) -> Result<(), HandlerError> {
        self.outbox.drain(&mut self.transport, deadline)
    }

    fn close(&mut self) -> Result<(), HandlerError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    use super::*;
    use crate::config::OverflowPolicy;
    use crate::delivery::DeliveryOptions;
    use crate::stats::{HandlerCounters, load};

    /// What a test's exchange or callback saw.
    type Seen<T> = Arc<Mutex<Vec<T>>>;

    /// An exchange answering from a script; it records what it was given.
    struct Scripted {
        answers: VecDeque<Outcome>,
        seen: Seen<Vec<String>>,
    }

    impl Exchange for Scripted {
        fn exchange(&mut self, records: &[&[u8]]) -> Outcome {
            self.seen
                .lock()
                .unwrap()
                .push(records.iter().map(|r| String::from_utf8_lossy(r).into_owned()).collect());
            self.answers.pop_front().unwrap_or_else(|| Outcome {
                settled: vec![Settled::Delivered; records.len()],
                ..Outcome::default()
            })
        }
    }

    fn setup(
        answers: Vec<Outcome>,
    ) -> (Outbox, Offload, Arc<HandlerCounters>, Seen<Vec<String>>, Seen<String>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let why = Arc::new(Mutex::new(Vec::new()));
        let w = Arc::clone(&why);
        let t = Offload::new(
            Scripted { answers: answers.into(), seen: Arc::clone(&seen) },
            "test-offload",
            "test".into(),
            Box::new(move |m: &str| w.lock().unwrap().push(m.to_owned())),
        )
        .unwrap();
        let c = Arc::new(HandlerCounters::default());
        let opts = DeliveryOptions {
            retry_initial: Duration::from_millis(1),
            retry_max: Duration::from_millis(2),
            ..DeliveryOptions::default()
        };
        (Outbox::new(opts, OverflowPolicy::DropNewest, Arc::clone(&c)), t, c, seen, why)
    }

    fn take(o: &mut Outbox, text: &str) {
        o.take(|b| {
            b.extend_from_slice(text.as_bytes());
            Ok(())
        })
        .unwrap();
    }

    fn settle(o: &mut Outbox, t: &mut Offload, c: &HandlerCounters, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let _ = o.flush(t);
        while load(&c.emitted) + load(&c.failed) < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
            let _ = o.poll(t);
        }
    }

    #[test]
    fn records_refused_one_by_one_fail_alone_and_the_rest_is_retried_after_what_the_remote_asked() {
        let answers = vec![
            // a, b delivered, c refused; then the server is away.
            Outcome {
                settled: vec![Settled::Delivered, Settled::Delivered, Settled::Rejected("HTTP 400".into())],
                retry: Some(("HTTP 503".into(), Some(Duration::from_millis(300)))),
                reject: None,
            },
        ];
        let (mut o, mut t, c, seen, why) = setup(answers);
        for r in ["a", "b", "c", "d", "e"] {
            take(&mut o, r);
        }
        let start = Instant::now();
        settle(&mut o, &mut t, &c, 5);
        assert!(start.elapsed() >= Duration::from_millis(300), "Retry-After was not honoured");
        assert_eq!((load(&c.emitted), load(&c.failed), load(&c.retries)), (4, 1, 1));
        assert_eq!(*seen.lock().unwrap(), [vec!["a", "b", "c", "d", "e"], vec!["d", "e"]]);
        assert_eq!(*why.lock().unwrap(), ["HTTP 400"]);
    }

    #[test]
    fn a_batch_refused_whole_is_counted_as_failed_and_never_sent_again() {
        let answers =
            vec![Outcome { reject: Some("HTTP 413 Payload Too Large".into()), ..Outcome::default() }];
        let (mut o, mut t, c, seen, _) = setup(answers);
        take(&mut o, "a");
        take(&mut o, "b");
        settle(&mut o, &mut t, &c, 2);
        assert_eq!((load(&c.emitted), load(&c.failed), load(&c.retries)), (0, 2, 0));
        assert!(c.last_error().unwrap().0.contains("refused 2 records: HTTP 413"));
        take(&mut o, "c");
        settle(&mut o, &mut t, &c, 3);
        assert_eq!(seen.lock().unwrap().len(), 2, "the refused batch was not sent again");
        assert_eq!(load(&c.emitted), 1);
    }
}
