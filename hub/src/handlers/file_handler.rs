//! `logging.FileHandler`: formatted records appended to one file.
//!
//! [`LogFile`], the buffered file every file handler writes through, lives
//! here too: the rotating and watched handlers are FileHandlers with a rule
//! for when to switch files, as in Python.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};

use logfunnel_protocol::sync::LockExt;

use crate::config::keys::Section;
use crate::formatter::{Formatter, RecordContext};
use crate::handler::{BuildContext, Handler, HandlerError, HandlerOptions};

/// Where and how a file handler opens its file: Python's FileHandler
/// arguments, shared by every file handler.
#[derive(Debug, Clone, PartialEq)]
pub struct FileOptions {
    /// Absolute path (relative names are resolved against the hub's
    /// working directory at load time, as Python's `abspath` does).
    pub filename: PathBuf,
    /// Mode `a` (append) rather than `w` (truncate at start).
    pub append: bool,
    /// Open on the first record rather than at start.
    pub delay: bool,
}

impl FileOptions {
    /// FileHandler's keys: `filename`, `mode` (unless `allow_mode` is false,
    /// as for TimedRotatingFileHandler), `encoding`, `errors`, `delay`.
    pub(crate) fn read(s: &mut Section<'_>, allow_mode: bool) -> Option<FileOptions> {
        let filename = s.required_string(&["filename"], "a file handler needs a file name");
        let append = if !allow_mode {
            true
        } else {
            match s.string(&["mode"]).as_deref() {
                None | Some("a") => true,
                Some("w") => false,
                Some(other) => {
                    s.issue("mode", format!("{other:?} is not supported (use \"a\" or \"w\")"));
                    true
                }
            }
        };
        if let Some(enc) = s.string(&["encoding"])
            && !matches!(enc.to_ascii_lowercase().replace('_', "-").as_str(), "utf-8" | "utf8" | "locale")
        {
            s.issue("encoding", format!("{enc:?} is not supported: logfunnel writes UTF-8"));
        }
        if let Some(errors) = s.string(&["errors"])
            && errors != "strict"
        {
            s.issue("errors", format!("{errors:?} is not supported (records are valid UTF-8 already)"));
        }
        let delay = s.boolean(&["delay"]).unwrap_or(false);
        let filename = filename?;
        if filename.is_empty() {
            s.issue("filename", "empty file name");
            return None;
        }
        if filename.contains('\0') {
            s.issue("filename", "contains a NUL byte, which no file name can hold");
            return None;
        }
        let filename = std::path::absolute(&filename).unwrap_or_else(|_| PathBuf::from(&filename));
        if let Some(problem) = unusable(&filename, delay) {
            s.issue("filename", problem);
        }
        Some(FileOptions { filename, append, delay })
    }
}

/// Why the hub could not open `path` for writing at start, if it could
/// not: what `check-config` must find without opening (or creating) it.
/// Python opens the file when the handler is configured (unless `delay`),
/// so these are configuration errors there too; a delayed file's directory
/// may still be created before the first record.
fn unusable(path: &Path, delay: bool) -> Option<String> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => return Some(format!("{} is a directory", path.display())),
        Ok(_) if !delay && !access(path, libc::W_OK) => {
            return Some(format!("{} is not writable by the hub's user", path.display()));
        }
        Ok(_) => {}
        Err(_) if delay => {}
        Err(_) => match path.parent() {
            Some(dir) if !dir.is_dir() => return Some(format!("directory {} does not exist", dir.display())),
            Some(dir) if !access(dir, libc::W_OK | libc::X_OK) => {
                return Some(format!(
                    "{} cannot be created: directory {} is not writable by the hub's user",
                    path.display(),
                    dir.display()
                ));
            }
            _ => {}
        },
    }
    None
}

/// access(2) with the hub's real ids.
fn access(path: &Path, mode: libc::c_int) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else { return false };
    // SAFETY: a valid C string.
    unsafe { libc::access(c.as_ptr(), mode) == 0 }
}

/// FileHandler's options are exactly [`FileOptions`].
impl HandlerOptions for FileOptions {
    fn parse(s: &mut Section<'_>) -> Option<FileOptions> {
        FileOptions::read(s, true)
    }

    fn build(&self, cx: &BuildContext<'_>) -> Result<Box<dyn Handler>, HandlerError> {
        let h = FileHandler::open(&self.filename, self.append, self.delay, cx.formatter());
        Ok(Box::new(h.map_err(|e| cx.named(e))?))
    }

    fn output_file(&self) -> Option<&Path> {
        Some(&self.filename)
    }
}

/// Output is written once this much is buffered (and whenever the queue runs dry).
const BUFFER: usize = 256 << 10;

/// A file opened the way Python's `FileHandler._open` does (mode `a` or `w`,
/// UTF-8), with records formatted straight into one output buffer that is
/// written in chunks of 256 KiB and whenever the handler's queue runs dry.
#[derive(Debug)]
pub(crate) struct LogFile {
    path: PathBuf,
    /// Mode `a`; mode `w` truncates at the first open only.
    append: bool,
    file: Option<File>,
    /// Bytes in the file when it was opened plus bytes written since: Python's
    /// `stream.tell()` after `seek(0, 2)`, minus what is still buffered.
    on_disk: u64,
    /// Whether the open path is a regular file (Python never rotates
    /// `/dev/null` or a FIFO, bpo-45401).
    regular: bool,
    buf: Vec<u8>,
    /// Records in `buf`.
    buffered: u64,
    /// The handler's delivery journal, told of every file opened.
    journal: Option<crate::journal::Shared>,
}

impl LogFile {
    /// A file not opened yet.
    pub(crate) fn new(path: &Path, append: bool) -> LogFile {
        LogFile {
            path: path.to_path_buf(),
            append,
            file: None,
            on_disk: 0,
            regular: true,
            buf: Vec::with_capacity(BUFFER + (16 << 10)),
            buffered: 0,
            journal: None,
        }
    }

    /// Journals this file: every file opened from now on (and the one open
    /// now) is announced to `journal` before anything is written to it.
    pub(crate) fn attach_journal(&mut self, journal: &crate::journal::Shared) {
        self.journal = Some(std::sync::Arc::clone(journal));
        if let Some(file) = &self.file {
            journal.locked().opened(file);
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn is_open(&self) -> bool {
        self.file.is_some()
    }

    pub(crate) fn is_regular(&self) -> bool {
        self.regular
    }

    /// Python's `tell()`: the byte position the next record starts at.
    pub(crate) fn position(&self) -> u64 {
        self.on_disk + self.buf.len() as u64
    }

    /// The open file (for `fstat`).
    pub(crate) fn file(&self) -> Option<&File> {
        self.file.as_ref()
    }

    /// Opens the file unless it is open.
    pub(crate) fn open(&mut self) -> Result<(), HandlerError> {
        self.open_waiting(None)
    }

    /// Opens the file as the hub starts: a FIFO nobody reads yet is waited
    /// for (up to [`FIFO_WAIT`]) without blocking in `open(2)`, so that the
    /// hub still answers signals, and then refused with a reason. Later
    /// opens (a delayed file, SIGHUP) happen on the handler's own thread,
    /// where waiting for a reader stalls only this handler.
    pub(crate) fn open_at_start(&mut self) -> Result<(), HandlerError> {
        self.open_waiting(Some(FIFO_WAIT))
    }

    fn open_waiting(&mut self, fifo_wait: Option<std::time::Duration>) -> Result<(), HandlerError> {
        if self.file.is_some() {
            return Ok(());
        }
        let cannot = |e| HandlerError::io(format!("cannot open {}", self.path.display()), e);
        let mut options = OpenOptions::new();
        options.create(true).append(self.append).write(true).truncate(!self.append);
        let file = match fifo_wait.filter(|_| is_fifo(&self.path)) {
            Some(wait) => open_fifo(&mut options, &self.path, wait).map_err(cannot)?,
            None => options.open(&self.path).map_err(cannot)?,
        };
        let meta =
            file.metadata().map_err(|e| HandlerError::io(format!("stat {}", self.path.display()), e))?;
        self.on_disk = meta.len();
        self.regular = meta.is_file();
        if let Some(j) = &self.journal {
            j.locked().opened(&file);
        }
        self.file = Some(file);
        // Mode "w" truncates once, at the first open; a reopen appends.
        self.append = true;
        Ok(())
    }

    /// Formats one record and its newline into the buffer; returns its
    /// byte range there. Nothing is buffered when formatting fails.
    pub(crate) fn format(
        &mut self,
        formatter: &mut Formatter,
        ctx: &RecordContext<'_>,
    ) -> Result<Range<usize>, HandlerError> {
        let start = self.buf.len();
        formatter.format(ctx, &mut self.buf)?;
        self.buf.push(b'\n');
        Ok(start..self.buf.len())
    }

    /// Buffers `bytes` as one record (a disk buffer's frame), writing the
    /// buffer out once it is large.
    pub(crate) fn push_raw(&mut self, bytes: &[u8]) -> Result<(), HandlerError> {
        self.buf.extend_from_slice(bytes);
        self.accept_and_write_if_full()
    }

    /// Bytes written to the file (not counting what is buffered).
    pub(crate) fn written(&self) -> u64 {
        self.on_disk
    }

    pub(crate) fn buffered_bytes(&self, range: Range<usize>) -> &[u8] {
        &self.buf[range]
    }

    /// Counts the record just formatted as accepted, and writes the buffer
    /// out once it is full ([`BUFFER`] bytes).
    pub(crate) fn accept_and_write_if_full(&mut self) -> Result<(), HandlerError> {
        if self.accept() { self.write_out() } else { Ok(()) }
    }

    /// Counts the record just formatted as accepted; true when the buffer
    /// is large enough to be written out.
    pub(crate) fn accept(&mut self) -> bool {
        self.buffered += 1;
        self.buf.len() >= BUFFER
    }

    /// Writes everything buffered.
    pub(crate) fn write_out(&mut self) -> Result<(), HandlerError> {
        self.write_prefix(self.buf.len())
    }

    /// Writes the buffered bytes before `end` (whole records) and keeps the
    /// rest buffered: a rollover writes the records before the one that
    /// triggered it to the old file.
    pub(crate) fn write_prefix(&mut self, end: usize) -> Result<(), HandlerError> {
        if end == 0 {
            return Ok(());
        }
        let records = std::mem::take(&mut self.buffered);
        // The file's real length before this write: where a failed write is
        // cut back to, and the base of `position()`. Someone else may have
        // changed it since the last write (copytruncate, a journal recovery),
        // which Python's seek(0, 2) before tell() also notices.
        let mut before = None;
        let result = match self.open() {
            Ok(()) => {
                let file = self.file.as_mut().expect("opened above");
                if self.regular {
                    before = file.metadata().ok().map(|m| m.len());
                }
                file.write_all(&self.buf[..end]).map_err(|e| (format!("writing {}", self.path.display()), e))
            }
            Err(HandlerError::Io { context, error }) => Err((context, error)),
            Err(other) => Err((other.to_string(), std::io::Error::other("open failed"))),
        };
        // On failure the buffered records are lost, and counted as failed:
        // keeping them would grow memory without bound while the disk is full.
        self.buf.drain(..end);
        match result {
            Ok(()) => {
                self.on_disk = before.unwrap_or(self.on_disk) + end as u64;
                Ok(())
            }
            Err((context, error)) => {
                // A short write (a full disk) may have left part of a record
                // behind: cut the file back to where this write began, so each
                // line is whole or absent, and later records start on a line
                // of their own.
                if let (Some(len), Some(file)) = (before, &self.file) {
                    let _ = file.set_len(len);
                    self.on_disk = len;
                }
                Err(HandlerError::Write { context, error, records })
            }
        }
    }

    /// Re-reads the file's size (someone else may have truncated it, as
    /// logrotate's copytruncate does): Python's `seek(0, 2)` before `tell()`.
    pub(crate) fn refresh_size(&mut self) {
        if self.regular
            && let Some(len) = self.file.as_ref().and_then(|f| f.metadata().ok()).map(|m| m.len())
        {
            self.on_disk = len;
        }
    }

    /// Whether nothing is buffered.
    pub(crate) fn nothing_buffered(&self) -> bool {
        self.buf.is_empty()
    }

    /// Drops everything buffered because it cannot be written (`error` says
    /// why); the returned error counts the records lost.
    pub(crate) fn drop_buffer(&mut self, error: HandlerError) -> HandlerError {
        let records = std::mem::take(&mut self.buffered);
        self.buf.clear();
        match error {
            HandlerError::Io { context, error } => HandlerError::Write { context, error, records },
            HandlerError::Write { context, error, records: r } => {
                HandlerError::Write { context, error, records: r + records }
            }
            other => other,
        }
    }

    /// Drops buffered bytes from `from` on: a record formatted but not
    /// accepted because it could not be written.
    pub(crate) fn discard_unaccepted(&mut self, from: usize) {
        self.buf.truncate(from);
    }

    /// Writes out and closes the file; it reopens on the next write.
    pub(crate) fn close(&mut self) -> Result<(), HandlerError> {
        let result = self.write_out();
        self.file = None;
        result
    }

    /// Writes out, closes and opens the file again (SIGHUP).
    pub(crate) fn reopen(&mut self) -> Result<(), HandlerError> {
        self.close()?;
        self.open()
    }

    /// Closes the file without writing the buffer (used around a rollover,
    /// after the earlier records were written out).
    pub(crate) fn close_file(&mut self) {
        self.file = None;
    }
}

/// How long the hub waits at start for a FIFO's reader.
pub(crate) const FIFO_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

#[cfg(unix)]
fn is_fifo(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo())
}

#[cfg(not(unix))]
fn is_fifo(_path: &Path) -> bool {
    false
}

/// Opens a FIFO for writing without blocking: `open(2)` with O_NONBLOCK
/// fails (ENXIO) while no process has it open for reading, so the open is
/// tried again until `wait` has passed; the file is then made blocking
/// again, as a FIFO opened the usual way is.
#[cfg(unix)]
fn open_fifo(options: &mut OpenOptions, path: &Path, wait: std::time::Duration) -> std::io::Result<File> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    options.custom_flags(libc::O_NONBLOCK);
    let deadline = std::time::Instant::now() + wait;
    loop {
        match options.open(path) {
            Ok(file) => {
                let fd = file.as_raw_fd();
                // SAFETY: fcntl on a descriptor we own.
                unsafe { libc::fcntl(fd, libc::F_SETFL, libc::fcntl(fd, libc::F_GETFL) & !libc::O_NONBLOCK) };
                return Ok(file);
            }
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                if std::time::Instant::now() >= deadline {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::NotConnected,
                        format!(
                            "a FIFO with no reader (waited {}s for one); start its reader first, or set delay = true",
                            wait.as_secs()
                        ),
                    ));
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(not(unix))]
fn open_fifo(options: &mut OpenOptions, path: &Path, _wait: std::time::Duration) -> std::io::Result<File> {
    options.open(path)
}

/// Python's FileHandler: `format(record) + "\n"` in UTF-8, mode `a` or `w`,
/// optionally opened on the first record (`delay`).
#[derive(Debug)]
pub struct FileHandler {
    file: LogFile,
    formatter: Formatter,
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
        let mut file = LogFile::new(path, append);
        if !delay {
            file.open_at_start()?;
        }
        Ok(FileHandler { file, formatter, appends: append })
    }
}

impl Handler for FileHandler {
    fn emit(&mut self, ctx: &RecordContext<'_>) -> Result<(), HandlerError> {
        self.file.format(&mut self.formatter, ctx)?;
        self.file.accept_and_write_if_full()
    }

    fn flush(&mut self) -> Result<(), HandlerError> {
        self.file.write_out()
    }

    fn reopen(&mut self) -> Result<(), HandlerError> {
        self.file.reopen()
    }

    fn close(&mut self) -> Result<(), HandlerError> {
        self.file.close()
    }

    fn journal_target(&self) -> Option<&Path> {
        self.appends.then_some(self.file.path())
    }

    fn attach_journal(&mut self, journal: &crate::journal::Shared) {
        self.file.attach_journal(journal);
    }
}
