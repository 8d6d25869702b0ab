//! `logging.FileHandler`: formatted records appended to one file.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::{Handler, HandlerError};
use crate::formatter::{Formatter, RecordContext};

const BUFFER: usize = 256 << 10;

/// Python's FileHandler: `format(record) + "\n"` in UTF-8, mode `a` or `w`,
/// optionally opened on the first record (`delay`). Writes go through a
/// 256 KiB buffer that is flushed whenever the handler's queue runs dry.
#[derive(Debug)]
pub struct FileHandler {
    path: PathBuf,
    append: bool,
    formatter: Formatter,
    file: Option<BufWriter<File>>,
    line: Vec<u8>,
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
            line: Vec::with_capacity(512),
        };
        if !delay {
            h.ensure_open()?;
        }
        Ok(h)
    }

    fn ensure_open(&mut self) -> Result<&mut BufWriter<File>, HandlerError> {
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
            self.file = Some(BufWriter::with_capacity(BUFFER, file));
        }
        Ok(self.file.as_mut().expect("just opened"))
    }
}

impl Handler for FileHandler {
    fn emit(&mut self, ctx: &RecordContext<'_>) -> Result<(), HandlerError> {
        self.line.clear();
        self.formatter.format(ctx, &mut self.line)?;
        self.line.push(b'\n');
        if self.file.is_none() {
            self.ensure_open()?;
        }
        let file = self.file.as_mut().expect("opened above");
        file.write_all(&self.line)
            .map_err(|e| HandlerError::io(format!("writing {}", self.path.display()), e))
    }

    fn flush(&mut self) -> Result<(), HandlerError> {
        match self.file.as_mut() {
            Some(f) => f.flush().map_err(|e| HandlerError::io(format!("writing {}", self.path.display()), e)),
            None => Ok(()),
        }
    }

    fn reopen(&mut self) -> Result<(), HandlerError> {
        self.close()?;
        self.ensure_open().map(|_| ())
    }

    fn close(&mut self) -> Result<(), HandlerError> {
        let result = self.flush();
        self.file = None;
        result
    }
}
