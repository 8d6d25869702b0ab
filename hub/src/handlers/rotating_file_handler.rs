//! `logging.handlers.RotatingFileHandler`: a new file once the current one
//! would pass `max_bytes`, older ones shifted to `.1`, `.2`, … `.backup_count`.

use std::path::{Path, PathBuf};

use super::file_handler::{FileOptions, LogFile};
use crate::config::keys::Section;
use crate::formatter::{Formatter, RecordContext};
use crate::handler::{BuildContext, Handler, HandlerError, HandlerOptions};

/// RotatingFileHandler's options.
#[derive(Debug, Clone, PartialEq)]
pub struct RotatingFileOptions {
    /// FileHandler's options.
    pub file: FileOptions,
    /// `max_bytes` (`maxBytes`): roll over before the file would reach this
    /// size (0: never).
    pub max_bytes: u64,
    /// `backup_count` (`backupCount`): backups kept as `.1` … `.N` (0: never
    /// roll over).
    pub backup_count: u32,
}

/// The most numbered backups a RotatingFileHandler may keep.
const MAX_BACKUPS: u32 = 100_000;

impl HandlerOptions for RotatingFileOptions {
    fn parse(s: &mut Section<'_>) -> Option<RotatingFileOptions> {
        let file = FileOptions::read(s, true);
        let max_bytes = s.bytes(&["max_bytes", "maxBytes"]).unwrap_or(0);
        let mut backup_count = s.count(&["backup_count", "backupCount"]).unwrap_or(0);
        if backup_count > MAX_BACKUPS {
            // Each rollover looks for every numbered backup, as Python's does.
            s.issue("backup_count", format!("{backup_count} is more than the limit of {MAX_BACKUPS}"));
            backup_count = 0;
        }
        Some(RotatingFileOptions { file: file?, max_bytes, backup_count })
    }

    fn build(&self, cx: &BuildContext<'_>) -> Result<Box<dyn Handler>, HandlerError> {
        let h = RotatingFileHandler::open(&self.file, self.max_bytes, self.backup_count, cx.formatter());
        Ok(Box::new(h.map_err(|e| cx.named(e))?))
    }

    fn output_file(&self) -> Option<&Path> {
        Some(&self.file.filename)
    }
}

/// Python 3.11's RotatingFileHandler. The rollover is decided before the
/// record that would take the file to `max_bytes` or beyond is written, with
/// Python's units: the file position in bytes plus the record's length in
/// characters. A record bigger than `max_bytes` still goes whole into a new
/// file. `backup_count = 0` never rotates (Python reopens the same file,
/// which changes nothing on disk). Non-regular files (`/dev/null`, a FIFO)
/// never rotate.
#[derive(Debug)]
pub struct RotatingFileHandler {
    file: LogFile,
    formatter: Formatter,
    max_bytes: u64,
    backup_count: u32,
    /// Opened in append mode (mode "w" starts afresh: nothing to journal).
    appends: bool,
}

impl RotatingFileHandler {
    /// Opens (or, with `delay`, prepares to open) the file.
    pub fn open(
        options: &FileOptions,
        max_bytes: u64,
        backup_count: u32,
        formatter: Formatter,
    ) -> Result<RotatingFileHandler, HandlerError> {
        // Python forces mode "a" when max_bytes > 0: truncating on every
        // restart would lose the log the rotation is there to keep.
        let append = options.append || max_bytes > 0;
        let mut file = LogFile::new(&options.filename, append);
        if !options.delay {
            file.open_at_start()?;
        }
        Ok(RotatingFileHandler { file, formatter, max_bytes, backup_count, appends: append })
    }

    /// Writes the records before `start` to the current file, then shifts the
    /// backups and starts a new file; the record at `start` stays buffered.
    fn roll_over(&mut self, start: usize) -> Result<(), HandlerError> {
        if let Err(e) = self.file.write_prefix(start) {
            // The triggering record is lost with the buffer it followed.
            self.file.discard_unaccepted(0);
            return Err(e.with_current_record());
        }
        self.file.close_file();
        let renamed = shift_backups(self.file.path(), self.backup_count);
        if let Err(e) = self.file.open() {
            self.file.discard_unaccepted(0);
            return Err(e);
        }
        renamed
    }
}

/// `doRollover`'s renames: `.N-1 → .N` … `.1 → .2`, then the file → `.1`.
/// The oldest backup beyond `backup_count` is overwritten, as in Python.
fn shift_backups(base: &Path, backup_count: u32) -> Result<(), HandlerError> {
    let numbered = |i: u32| -> PathBuf {
        let mut name = base.as_os_str().to_owned();
        name.push(format!(".{i}"));
        PathBuf::from(name)
    };
    let rename = |from: &Path, to: &Path| -> Result<(), HandlerError> {
        if !from.exists() {
            return Ok(());
        }
        // rename(2) replaces `to` atomically, which is Python's
        // remove-then-rename without the window where neither exists.
        std::fs::rename(from, to).map_err(|e| HandlerError::Rotate {
            context: format!("renaming {} to {}", from.display(), to.display()),
            error: e,
        })
    };
    for i in (1..backup_count).rev() {
        rename(&numbered(i), &numbered(i + 1))?;
    }
    rename(base, &numbered(1))
}

/// Python's `len(str)`: characters, not bytes.
fn chars(utf8: &[u8]) -> u64 {
    utf8.iter().filter(|&&b| (b as i8) >= -0x40).count() as u64
}

impl Handler for RotatingFileHandler {
    fn emit(&mut self, ctx: &RecordContext<'_>) -> Result<(), HandlerError> {
        // shouldRollover opens a delayed file before measuring it.
        self.file.open()?;
        if self.max_bytes > 0 && self.file.nothing_buffered() {
            // Once per burst, not per record: the size as the disk has it.
            self.file.refresh_size();
        }
        let range = self.file.format(&mut self.formatter, ctx)?;
        if self.max_bytes > 0 && self.backup_count > 0 && self.file.is_regular() {
            let position = self.file.position() - range.len() as u64;
            let length = chars(self.file.buffered_bytes(range.clone()));
            if position + length >= self.max_bytes {
                match self.roll_over(range.start) {
                    Ok(()) => {}
                    // A failed rename: the record still goes to the file
                    // that could be opened, and the failure is reported.
                    Err(e @ HandlerError::Rotate { .. }) => {
                        self.file.accept_and_write_if_full()?;
                        return Err(e);
                    }
                    Err(e) => return Err(e),
                }
            }
        }
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

#[cfg(test)]
mod tests {
    use super::chars;

    #[test]
    fn length_counts_characters_as_python_does() {
        assert_eq!(chars(b"abc\n"), 4);
        assert_eq!(chars("café\n".as_bytes()), 5);
        assert_eq!(chars("日本\n".as_bytes()), 3);
        assert_eq!(chars("😀".as_bytes()), 1);
    }
}
