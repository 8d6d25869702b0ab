//! `logging.StreamHandler`: formatted records to the hub's stderr or stdout.

use std::io::Write;

use crate::config::keys::Section;
use crate::formatter::{Formatter, RecordContext};
use crate::handler::{BuildContext, Handler, HandlerError, HandlerOptions};

/// Which standard stream a StreamHandler writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StdStream {
    /// `ext://sys.stderr` (Python's default).
    Stderr,
    /// `ext://sys.stdout`.
    Stdout,
}

/// StreamHandler's options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamOptions {
    /// `stream`: `"ext://sys.stderr"` (default) or `"ext://sys.stdout"`.
    pub stream: StdStream,
}

impl HandlerOptions for StreamOptions {
    fn parse(s: &mut Section<'_>) -> Option<StreamOptions> {
        let stream = match s.string(&["stream"]).as_deref() {
            None | Some("ext://sys.stderr") | Some("stderr") => StdStream::Stderr,
            Some("ext://sys.stdout") | Some("stdout") => StdStream::Stdout,
            Some(other) => {
                s.issue(
                    "stream",
                    format!("{other:?} is not a stream (use \"ext://sys.stderr\" or \"ext://sys.stdout\")"),
                );
                return None;
            }
        };
        Some(StreamOptions { stream })
    }

    fn build(&self, cx: &BuildContext<'_>) -> Result<Box<dyn Handler>, HandlerError> {
        Ok(Box::new(StreamHandler::new(self.stream, cx.formatter())))
    }
}

/// Python's StreamHandler: `format(record) + "\n"` per record. Output is
/// gathered in a buffer and written when the handler's queue runs dry or
/// the buffer passes 64 KiB (Python flushes per record; the hub flushes per
/// burst, a few milliseconds at most later).
#[derive(Debug)]
pub struct StreamHandler {
    stream: StdStream,
    formatter: Formatter,
    buf: Vec<u8>,
    /// Records in `buf`.
    buffered: u64,
}

impl StreamHandler {
    /// A handler writing to `stream`.
    pub fn new(stream: StdStream, formatter: Formatter) -> StreamHandler {
        StreamHandler { stream, formatter, buf: Vec::with_capacity(64 << 10), buffered: 0 }
    }
}

impl Handler for StreamHandler {
    fn emit(&mut self, ctx: &RecordContext<'_>) -> Result<(), HandlerError> {
        self.formatter.format(ctx, &mut self.buf)?;
        self.buf.push(b'\n');
        self.buffered += 1;
        if self.buf.len() >= 64 << 10 {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), HandlerError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let result = match self.stream {
            StdStream::Stderr => std::io::stderr().lock().write_all(&self.buf),
            StdStream::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(&self.buf).and_then(|()| out.flush())
            }
        };
        self.buf.clear();
        let records = std::mem::take(&mut self.buffered);
        result.map_err(|error| HandlerError::Write {
            context: format!("writing to {:?}", self.stream),
            error,
            records,
        })
    }
}
