//! The hub's per-record path without sockets or threads, for benchmarks:
//! decode a batch frame into views → route each record through the logger
//! tree → emit it to each handler it reaches (which formats it). Not part
//! of the hub's API: it exists so that `benches/hub.rs` measures the same
//! code the hub runs, minus the I/O and the queues between threads.

use logfunnel_protocol::{ClientFrameView, ProtocolError, decode_client_frame_view};

use crate::config::Config;
use crate::dispatcher::Router;
use crate::formatter::{PeerCred, RecordContext};
use crate::handler::{Handler, HandlerError};

/// A compiled logger tree and its handlers, driven on the caller's thread.
pub struct Pipeline {
    router: Router,
    handlers: Vec<Box<dyn Handler>>,
    start_ns: i64,
}

impl Pipeline {
    /// Builds the handlers of `config` (a NullHandler config does no I/O).
    pub fn new(config: &Config) -> Result<Pipeline, HandlerError> {
        let names: Vec<String> = config.handlers.keys().cloned().collect();
        let mut built = Vec::new();
        for name in &names {
            built.push(config.build_handler(name, &|_| None, Default::default())?);
        }
        Ok(Pipeline { router: Router::new(config, &names), handlers: built, start_ns: 0 })
    }

    /// Replaces handler `index` (in the config's handler order), e.g. with a
    /// handler that formats into memory.
    pub fn set_handler(&mut self, index: usize, handler: Box<dyn Handler>) {
        self.handlers[index] = handler;
    }

    /// Decodes one batch frame payload (without its length prefix) and takes
    /// every record through the router to its handlers. Returns the number
    /// of records emitted.
    pub fn process_frame(&mut self, payload: &[u8]) -> Result<u64, ProtocolError> {
        let ClientFrameView::Batch(_, records) = decode_client_frame_view(payload)? else {
            return Ok(0);
        };
        let mut emitted = 0;
        let mut current: Option<(&str, std::sync::Arc<crate::dispatcher::Route>)> = None;
        for rec in &records {
            if current.as_ref().is_none_or(|(name, _)| !crate::frame::same_str(name, rec.name)) {
                current = Some((rec.name, self.router.route(rec.name)));
            }
            let route = &current.as_ref().expect("set above").1;
            if rec.levelno < route.level || !route.passes {
                continue;
            }
            let ctx = RecordContext {
                record: rec,
                peer: PeerCred::UNKNOWN,
                process_name: "bench",
                host_name: "",
                start_ns: self.start_ns,
                python: false,
            };
            for &(h, level) in &route.handlers {
                if rec.levelno >= level && self.handlers[h].emit(&ctx).is_ok() {
                    emitted += 1;
                }
            }
        }
        for h in &mut self.handlers {
            let _ = h.flush();
        }
        Ok(emitted)
    }
}
