//! `logging.handlers.MemoryHandler`: holds records back until one is
//! serious enough (or the buffer is full), then hands them all to its target.

use std::sync::Arc;

use logfunnel_protocol::{BatchBuilder, Level, ProtocolError, encode_record_ref, encoded_record_len};

use crate::config::common::FilterConfig;
use crate::config::keys::Section;
use crate::formatter::RecordContext;
use crate::frame::{Frame, Kind, Peer};
use crate::handler::{BuildContext, Forward, Handler, HandlerError, HandlerOptions};

/// A run of records is split into frames of at most this many bytes.
const RUN_BYTES: usize = 1 << 20;

/// MemoryHandler's options.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryOptions {
    /// `capacity`: records held before they are all passed on.
    pub capacity: usize,
    /// `flush_level` (`flushLevel`, default ERROR): a record at this level
    /// or above passes everything on at once.
    pub flush_level: Level,
    /// `target`: the handler that receives them.
    pub target: String,
    /// `flush_on_close` (`flushOnClose`). Accepted, but like Python 3.11's
    /// `logging.shutdown()`, the hub's shutdown passes held records on
    /// regardless.
    pub flush_on_close: bool,
}

impl HandlerOptions for MemoryOptions {
    fn parse(s: &mut Section<'_>) -> Option<MemoryOptions> {
        let capacity = if s.has(&["capacity"]) {
            s.positive_at_most(&["capacity"], crate::config::common::MAX_HANDLER_QUEUE)
        } else {
            s.missing(&["capacity"], "how many records to hold");
            None
        };
        let flush_level = s.level(&["flush_level", "flushLevel"]).unwrap_or(Level::ERROR);
        let target = s.required_string(
            &["target"],
            "the handler that receives the records; the hub cannot set one later",
        );
        if let Some(t) = &target {
            s.reference("target", "handlers", t);
        }
        let flush_on_close = s.boolean(&["flush_on_close", "flushOnClose"]).unwrap_or(true);
        Some(MemoryOptions { capacity: capacity?, flush_level, target: target?, flush_on_close })
    }

    fn build(&self, cx: &BuildContext<'_>) -> Result<Box<dyn Handler>, HandlerError> {
        let target_queue = (cx.queue_of)(&self.target).ok_or_else(|| {
            HandlerError::io(
                format!("handler {:?}: target {:?}", cx.name, self.target),
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such handler"),
            )
        })?;
        let filters = cx.target_filters.clone();
        Ok(Box::new(MemoryHandler::new(self.capacity, self.flush_level.0, target_queue, filters)))
    }

    fn target(&self) -> Option<&str> {
        Some(&self.target)
    }
}

/// Python's MemoryHandler: records are buffered (copied, so the frames they
/// came in are not kept alive) until the buffer holds `capacity` records or
/// a record at `flush_level` or above arrives; then every buffered record
/// goes to the target handler's queue, in order. As in Python, the target's
/// filters apply and its level does not. At shutdown the buffer goes to the
/// target, as Python 3.11's `logging.shutdown()` does.
pub struct MemoryHandler {
    capacity: usize,
    flush_level: u32,
    target: Arc<dyn Forward>,
    target_filters: Vec<FilterConfig>,
    /// Encoded records, in runs that share a sender.
    runs: Vec<(Arc<Peer>, BatchBuilder)>,
    /// Records counted towards `capacity` (Python counts the ones its
    /// target's filters will reject too).
    buffered: usize,
    /// Records actually held in `runs`.
    held: u64,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for MemoryHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryHandler")
            .field("capacity", &self.capacity)
            .field("flush_level", &self.flush_level)
            .field("buffered", &self.buffered)
            .finish()
    }
}

impl MemoryHandler {
    /// A MemoryHandler that flushes into `target` (one more producer of that queue).
    pub(crate) fn new(
        capacity: usize,
        flush_level: u32,
        target: Arc<dyn Forward>,
        target_filters: Vec<FilterConfig>,
    ) -> MemoryHandler {
        target.add_producer();
        MemoryHandler {
            capacity,
            flush_level,
            target,
            target_filters,
            runs: Vec::new(),
            buffered: 0,
            held: 0,
            scratch: Vec::new(),
        }
    }

    fn hold(&mut self, ctx: &RecordContext<'_>) -> Result<(), HandlerError> {
        let record = ctx.record.as_record_ref();
        self.scratch.resize(encoded_record_len(&record), 0);
        let n = encode_record_ref(&record, &mut self.scratch).map_err(|e| forward_error(e.into(), 1))?;
        let same_peer = |p: &Peer| {
            p.process_name == ctx.process_name
                && p.host_name == ctx.host_name
                && p.creds == ctx.peer
                && p.python == ctx.python
        };
        let fits = match self.runs.last() {
            Some((peer, batch)) => same_peer(peer) && batch.records_len() + n <= RUN_BYTES,
            None => false,
        };
        if !fits {
            let peer = match self.runs.last() {
                Some((peer, _)) if same_peer(peer) => Arc::clone(peer),
                _ => Arc::new(Peer {
                    process_name: ctx.process_name.to_owned(),
                    host_name: ctx.host_name.to_owned(),
                    session: 0,
                    creds: ctx.peer,
                    python: ctx.python,
                }),
            };
            let mut batch = BatchBuilder::with_capacity(n.max(4096));
            batch.reset(1);
            self.runs.push((peer, batch));
        }
        let (_, batch) = self.runs.last_mut().expect("a run was just ensured");
        batch.push_encoded(&self.scratch[..n]);
        self.held += 1;
        Ok(())
    }

    /// Python's `flush`: everything buffered goes to the target, in order.
    fn forward(&mut self) -> Result<(), HandlerError> {
        self.buffered = 0;
        // On a failure, the records not yet passed on are lost and counted.
        let mut left = std::mem::take(&mut self.held);
        for (peer, mut batch) in std::mem::take(&mut self.runs) {
            let count = batch.count();
            let frame = batch.finish().map_err(|e| forward_error(e, left))?;
            // Skip the length prefix: frames are decoded from their payload.
            let mut bytes = crate::frame::buffer(frame.len() - 4);
            bytes.extend_from_slice(&frame[4..]);
            let frame = match Frame::decode(bytes) {
                Ok((frame, Kind::Batch(_))) => frame,
                Ok(_) => {
                    let e = ProtocolError::Unexpected("the memory handler built a frame that is not a batch");
                    return Err(forward_error(e, left));
                }
                Err(e) => return Err(forward_error(e, left)),
            };
            self.target.forward(peer, frame);
            left -= count;
        }
        Ok(())
    }
}

fn forward_error(e: ProtocolError, records: u64) -> HandlerError {
    HandlerError::Write {
        context: "memory handler: re-encoding records".into(),
        error: std::io::Error::other(e),
        records,
    }
}

impl Handler for MemoryHandler {
    /// Its target escapes and cuts what it is given.
    fn renders(&self) -> bool {
        false
    }

    fn emit(&mut self, ctx: &RecordContext<'_>) -> Result<(), HandlerError> {
        let name = ctx.record.name;
        if self.target_filters.iter().all(|f| f.passes(name)) {
            self.hold(ctx)?;
        }
        self.buffered += 1;
        if self.buffered >= self.capacity || ctx.record.levelno >= self.flush_level {
            self.forward()?;
        }
        Ok(())
    }

    /// Nothing: holding records back until a flush condition is the point.
    fn flush(&mut self) -> Result<(), HandlerError> {
        Ok(())
    }

    fn close(&mut self) -> Result<(), HandlerError> {
        // Python 3.11's logging.shutdown() flushes every handler before
        // closing it, so held records reach the target even with
        // flushOnClose = False (3.12 changed that); the hub's shutdown does
        // the same, and loses nothing.
        let result = self.forward();
        // This handler will push no more: the target may finish once its
        // other producers are done too.
        self.target.close();
        result
    }
}
