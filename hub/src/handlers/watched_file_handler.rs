//! `logging.handlers.WatchedFileHandler`: reopens its file when someone
//! else moves or deletes it (logrotate without copytruncate, `mv`, `rm`).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use notify::event::ModifyKind;
use notify::{EventKind, RecursiveMode, Watcher};

use super::file_handler::{FileOptions, LogFile};
use crate::config::keys::Section;
use crate::formatter::{Formatter, RecordContext};
use crate::handler::{BuildContext, Handler, HandlerError, HandlerOptions};

/// WatchedFileHandler's options: FileHandler's.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchedFileOptions(pub FileOptions);

impl HandlerOptions for WatchedFileOptions {
    fn parse(s: &mut Section<'_>) -> Option<WatchedFileOptions> {
        FileOptions::read(s, true).map(WatchedFileOptions)
    }

    fn build(&self, cx: &BuildContext<'_>) -> Result<Box<dyn Handler>, HandlerError> {
        Ok(Box::new(WatchedFileHandler::open(&self.0, cx.formatter()).map_err(|e| cx.named(e))?))
    }

    fn output_file(&self) -> Option<&Path> {
        Some(&self.0.filename)
    }
}

/// Python's WatchedFileHandler: before writing, compare the path's device
/// and inode with the open file's and reopen on a difference or when the
/// path is gone. Python checks on every record; the hub checks before each
/// buffered write (whenever its queue runs dry) and, told by an inotify
/// watch on the directory, within half a second while idle, so a deleted
/// file's space is released without waiting for the next record. Records
/// still buffered when the change is seen go to the new file, never to a
/// file that may have been deleted.
#[derive(Debug)]
pub struct WatchedFileHandler {
    file: LogFile,
    formatter: Formatter,
    /// Opened in append mode (mode "w" starts afresh: nothing to journal).
    appends: bool,
    /// `(st_dev, st_ino)` of the open file.
    identity: Option<(u64, u64)>,
    /// Set by the watcher when the path may now name another file.
    changed: Arc<AtomicBool>,
    /// Keeps the inotify watch alive; `None` if it could not be set up
    /// (the stat check alone still catches every change).
    _watcher: Option<notify::RecommendedWatcher>,
}

impl WatchedFileHandler {
    /// Opens (or, with `delay`, prepares to open) the file and watches its directory.
    pub fn open(options: &FileOptions, formatter: Formatter) -> Result<WatchedFileHandler, HandlerError> {
        let changed = Arc::new(AtomicBool::new(false));
        let watcher = watch(&options.filename, changed.clone());
        let mut h = WatchedFileHandler {
            file: LogFile::new(&options.filename, options.append),
            formatter,
            appends: options.append,
            identity: None,
            changed,
            _watcher: watcher,
        };
        if !options.delay {
            h.file.open_at_start()?;
            h.open_file()?;
        }
        Ok(h)
    }

    fn open_file(&mut self) -> Result<(), HandlerError> {
        if self.file.is_open() {
            return Ok(());
        }
        self.file.open()?;
        self.identity = self.file.file().and_then(|f| f.metadata().ok()).map(|m| (m.dev(), m.ino()));
        Ok(())
    }

    /// `reopenIfNeeded`: reopen when the path is gone or is another file.
    fn reopen_if_needed(&mut self) -> Result<(), HandlerError> {
        if !self.file.is_open() {
            return Ok(());
        }
        let current = std::fs::metadata(self.file.path()).ok().map(|m| (m.dev(), m.ino()));
        if current.is_none() || current != self.identity {
            // The buffer is kept for the new file: the old one may be deleted.
            self.file.close_file();
            self.open_file()?;
        }
        Ok(())
    }

    fn write_out(&mut self) -> Result<(), HandlerError> {
        if self.file.nothing_buffered() {
            return Ok(());
        }
        self.changed.store(false, Ordering::Relaxed);
        if let Err(e) = self.reopen_if_needed() {
            // Nothing can be written: the buffered records are lost, counted.
            return Err(self.file.drop_buffer(e));
        }
        self.open_file().map_err(|e| self.file.drop_buffer(e))?;
        self.file.write_out()
    }
}

/// Watches the file's directory (a watch on the file would follow the inode
/// and miss a new file at the same path).
fn watch(path: &Path, changed: Arc<AtomicBool>) -> Option<notify::RecommendedWatcher> {
    let dir = path.parent()?.to_path_buf();
    let target: PathBuf = path.to_path_buf();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        let relevant = matches!(
            event.kind,
            EventKind::Remove(_) | EventKind::Create(_) | EventKind::Modify(ModifyKind::Name(_))
        );
        if relevant && event.paths.iter().any(|p| p == &target) {
            changed.store(true, Ordering::Relaxed);
        }
    })
    .ok()?;
    watcher.watch(&dir, RecursiveMode::NonRecursive).ok()?;
    Some(watcher)
}

impl Handler for WatchedFileHandler {
    fn emit(&mut self, ctx: &RecordContext<'_>) -> Result<(), HandlerError> {
        self.file.format(&mut self.formatter, ctx)?;
        if self.file.accept() { self.write_out() } else { Ok(()) }
    }

    fn flush(&mut self) -> Result<(), HandlerError> {
        self.write_out()
    }

    fn poll(&mut self) -> Result<(), HandlerError> {
        if self.changed.swap(false, Ordering::Relaxed) {
            self.reopen_if_needed()?;
        }
        Ok(())
    }

    fn reopen(&mut self) -> Result<(), HandlerError> {
        self.file.close()?;
        self.open_file()
    }

    fn close(&mut self) -> Result<(), HandlerError> {
        self.write_out()?;
        self.file.close_file();
        Ok(())
    }

    fn journal_target(&self) -> Option<&Path> {
        self.appends.then_some(self.file.path())
    }

    fn attach_journal(&mut self, journal: &crate::journal::Shared) {
        self.file.attach_journal(journal);
    }
}
