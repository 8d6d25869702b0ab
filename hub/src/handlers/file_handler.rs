//! `logging.FileHandler`: formatted records appended to one file.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{Handler, HandlerError};
use crate::formatter::{Formatter, RecordContext};

/// Output is written once this much is buffered (and whenever the queue runs dry).
const BUFFER: usize = 256 << 10;

/// Python's FileHandler: `format(record) + "\n"` in UTF-8, mode `a` or `w`,
/// optionally opened on the first record (`delay`). Records are formatted
/// straight into one output buffer, written in chunks of 256 KiB and
/// whenever the handler's queue runs dry.
#[derive(Debug)]
pub struct FileHandler {
    path: PathBuf,
    append: bool,
    formatter: Formatter,
    file: Option<File>,
    buf: Vec<u8>,
    /// Records in `buf`.
    buffered: u64,
    /// Opened in append mode (mode "w" starts afresh: nothing to journal).
    appends: bool,
}

impl FileHandler {
    /// Opens (or, with `delay`, prepares to open) `path`.
    pub fn open(
        path: &Path,
        append: bool,
        delay: bool,
        formatter: Formatter,
    ) -> Result<FileHandler, HandlerError> {
        let mut h = FileHandler {
            path: path.to_path_buf(),
            append,
            formatter,
            file: None,
            buf: Vec::with_capacity(BUFFER + (16 << 10)),
            buffered: 0,
            appends: append,
        };
        if !delay {
            h.ensure_open()?;
        }
        Ok(h)
    }

    fn ensure_open(&mut self) -> Result<&mut File, HandlerError> {
        if self.file.is_none() {
            let file = OpenOptions::new()
                .create(true)
                .append(self.append)
                .write(true)
                .truncate(!self.append)
                .open(&self.path)
                .map_err(|e| HandlerError::io(format!("cannot open {}", self.path.display()), e))?;
            // Mode "w" truncates once, at open; a reopen appends (as Python's
            // reopen after close does in mode "a").
            self.append = true;
            self.file = Some(file);
        }
        Ok(self.file.as_mut().expect("just opened"))
    }

    fn write_out(&mut self) -> Result<(), HandlerError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let records = std::mem::take(&mut self.buffered);
        let result = match self.ensure_open().map(|_| ()) {
            Ok(()) => {
                let file = self.file.as_mut().expect("opened above");
                file.write_all(&self.buf).map_err(|e| (format!("writing {}", self.path.display()), e))
            }
            Err(HandlerError::Io { context, error }) => Err((context, error)),
            Err(other) => Err((other.to_string(), std::io::Error::other("open failed"))),
        };
        // On failure the buffered records are lost, and counted as failed:
        // keeping them would grow memory without bound while the disk is full.
        self.buf.clear();
        result.map_err(|(context, error)| HandlerError::Write { context, error, records })
    }
}

impl Handler for FileHandler {
    fn emit(&mut self, ctx: &RecordContext<'_>) -> Result<(), HandlerError> {
        self.formatter.format(ctx, &mut self.buf)?;
        self.buf.push(b'\n');
        self.buffered += 1;
        if self.buf.len() >= BUFFER { self.write_out() } else { Ok(()) }
    }

    fn flush(&mut self) -> Result<(), HandlerError> {
        self.write_out()
    }

    fn reopen(&mut self) -> Result<(), HandlerError> {
        self.close()?;
        self.ensure_open().map(|_| ())
    }

    fn close(&mut self) -> Result<(), HandlerError> {
        let result = self.write_out();
        self.file = None;
        result
    }

    fn journal_target(&self) -> Option<&Path> {
        self.appends.then_some(self.path.as_path())
    }
}
