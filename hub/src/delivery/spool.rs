//! A network handler's disk buffer (`buffer = "disk"`): rsyslog's
//! disk-assisted queue, Vector's disk buffer.
//!
//! Every record the handler takes is appended to a spool file under
//! `state_dir` (`<handler>.spool`) as `u32 len | u64 checksum | bytes`
//! (the bytes its transport sends). The spool is a file written through the
//! handler's delivery journal, like a FileHandler's output: a batch is
//! acknowledged to its client once its records are in the spool and the
//! journal says so, a restarted hub cuts what was written after the last
//! journal entry (never acknowledged, so resent), and the journal's
//! high-water marks drop resent records the spool already holds.
//!
//! Records are loaded from the spool into the handler's [`Outbox`] (in
//! memory, within `buffer_max_records`/`_bytes`) in order, and the cursor
//! (`<handler>.spool-cursor`: the spool offset every record before which is
//! settled, with a checksum) moves past what the outbox settled. After a
//! SIGKILL, delivery resumes at the cursor: a record delivered after the
//! cursor was last written is delivered again (at-least-once; bounded by
//! what was in flight). Delivered space is given back to the filesystem
//! (hole punching) as the cursor moves; `max_buffer_bytes` bounds what is
//! written and not yet settled, beyond which the handler's overflow policy
//! applies.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{DeliveryOptions, Encode, Outbox, Transport};
use crate::config::common::OverflowPolicy;
use crate::formatter::RecordContext;
use crate::handler::{BuildContext, Handler, HandlerError};
use crate::handlers::LogFile;
use crate::journal::checksum;
use crate::stats::HandlerCounters;

const HEADER: usize = 12;
/// Read from the spool in chunks of this size.
const CHUNK: u64 = 1 << 20;
/// Space is given back once this much is settled past the last time.
const PUNCH_EVERY: u64 = 4 << 20;
/// After a failed read of the spool, the next try waits this long, so a
/// failing disk is not read in a busy loop.
const READ_RETRY: Duration = Duration::from_secs(1);

pub(crate) struct Spool {
    file: LogFile,
    reader: Option<File>,
    /// The next spool offset to load into the outbox.
    read_at: u64,
    /// The spool end offset of each client record loaded and not yet settled.
    loaded: VecDeque<u64>,
    /// Every record before this offset is settled.
    cursor: u64,
    cursor_file: File,
    punched: u64,
    max_bytes: u64,
    /// Records found in the spool at start are counted as held once, at
    /// the first load (after the journal's recovery has cut its tail).
    counted_recovered: bool,
    /// Problems to report, once.
    notes: Vec<String>,
    /// When a read of the spool last failed (none since).
    read_failed: Option<Instant>,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool").field("path", &self.file.path()).field("cursor", &self.cursor).finish()
    }
}

impl Spool {
    /// Opens the spool at `path` (and its cursor beside it).
    pub(crate) fn open(path: &Path, max_bytes: u64) -> Result<Spool, HandlerError> {
        let mut file = LogFile::new(path, true);
        file.open_at_start()?;
        let cursor_path = cursor_path(path);
        let cursor_file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&cursor_path)
            .map_err(|e| HandlerError::io(format!("opening {}", cursor_path.display()), e))?;
        let mut b = [0u8; 16];
        let mut notes = Vec::new();
        let cursor = match cursor_file.read_exact_at(&mut b, 0) {
            Ok(()) if checksum(&b[..8]) == u64::from_le_bytes(b[8..].try_into().expect("8")) => {
                u64::from_le_bytes(b[..8].try_into().expect("8"))
            }
            Ok(()) => {
                notes.push(format!(
                    "{} is damaged: delivering the spool from its start (records may arrive twice)",
                    cursor_path.display()
                ));
                0
            }
            Err(_) => 0,
        };
        Ok(Spool {
            file,
            reader: None,
            read_at: cursor,
            loaded: VecDeque::new(),
            cursor,
            cursor_file,
            punched: cursor,
            max_bytes,
            counted_recovered: false,
            notes,
            read_failed: None,
        })
    }

    pub(crate) fn file_mut(&mut self) -> &mut LogFile {
        &mut self.file
    }

    pub(crate) fn path(&self) -> &Path {
        self.file.path()
    }

    /// Whether `more` bytes would take what is written and not settled past
    /// `max_buffer_bytes`.
    pub(crate) fn full(&self, more: usize) -> bool {
        (self.file.position() + (HEADER + more) as u64).saturating_sub(self.cursor) > self.max_bytes
    }

    /// Counts the records a previous hub left in the spool as held: once,
    /// before this hub adds any (the journal's recovery, which may cut the
    /// spool's tail, runs after the spool is opened and before records flow).
    pub(crate) fn count_recovered(&mut self, outbox: &Outbox) {
        if self.counted_recovered {
            return;
        }
        self.counted_recovered = true;
        self.file.refresh_size();
        let end = self.file.written();
        if self.cursor > end {
            // Delivered, then cut by the journal's recovery (written after
            // its last entry): their clients resend them, and they are
            // delivered again from here.
            self.notes.push(format!(
                "{} bytes delivered from the disk buffer {} were written after the journal's last entry and cut; their clients resend them, so they arrive twice",
                self.cursor - end,
                self.file.path().display()
            ));
            (self.cursor, self.read_at, self.punched) = (end, end, self.punched.min(end));
        }
        let n = self.count_frames(self.read_at, end);
        outbox.count_held(n);
    }

    /// Appends one record's bytes (written out in large chunks, and at `write_out`).
    pub(crate) fn append(&mut self, record: &[u8]) -> Result<(), HandlerError> {
        let mut frame = Vec::with_capacity(HEADER + record.len());
        frame.extend_from_slice(&(record.len() as u32).to_le_bytes());
        frame.extend_from_slice(&checksum(record).to_le_bytes());
        frame.extend_from_slice(record);
        self.file.push_raw(&frame)
    }

    pub(crate) fn write_out(&mut self) -> Result<(), HandlerError> {
        self.file.write_out()
    }

    /// Whether records are written that the outbox has not loaded yet.
    pub(crate) fn unloaded(&self) -> bool {
        self.read_at < self.file.written()
    }

    /// When the next load may read: now, or a while after a failed read.
    pub(crate) fn load_due(&self) -> Instant {
        self.read_failed.map_or_else(Instant::now, |at| at + READ_RETRY)
    }

    /// Loads written records into `outbox`, in order, while it has room.
    pub(crate) fn load(&mut self, outbox: &mut Outbox) -> Result<(), HandlerError> {
        if self.load_due() > Instant::now() {
            return Ok(());
        }
        if self.file.nothing_buffered() {
            // A recovery may have cut the spool since it was opened.
            self.file.refresh_size();
        }
        self.count_recovered(outbox);
        let end = self.file.written();
        while self.read_at < end && outbox.has_room() {
            let want = (end - self.read_at).min(CHUNK) as usize;
            let mut chunk = vec![0u8; want.max(HEADER)];
            let mut got = self.read(&mut chunk[..want])?;
            let mut at = 0;
            while at + HEADER <= got && outbox.has_room() {
                let len = u32::from_le_bytes(chunk[at..at + 4].try_into().expect("4")) as usize;
                let sum = u64::from_le_bytes(chunk[at + 4..at + 12].try_into().expect("8"));
                if at + HEADER + len > got {
                    if at == 0 {
                        // One record larger than a chunk: read it whole.
                        chunk = vec![0u8; HEADER + len];
                        got = self.read(&mut chunk)?;
                        if got < HEADER + len {
                            return Err(self.damaged(end));
                        }
                        continue;
                    }
                    break;
                }
                let record = &chunk[at + HEADER..at + HEADER + len];
                if checksum(record) != sum {
                    return Err(self.damaged(end));
                }
                outbox.load(record);
                at += HEADER + len;
                self.loaded.push_back(self.read_at + at as u64);
            }
            if at == 0 {
                break;
            }
            self.read_at += at as u64;
        }
        Ok(())
    }

    /// A damaged record (a failing disk, someone else's write): everything
    /// from it to the end is skipped, and said.
    fn damaged(&mut self, end: u64) -> HandlerError {
        let skipped = end - self.read_at;
        let message = format!(
            "the disk buffer {} is damaged at offset {}: {skipped} bytes skipped (their records are lost)",
            self.file.path().display(),
            self.read_at
        );
        self.read_at = end;
        HandlerError::Delivery(message)
    }

    fn read(&mut self, buf: &mut [u8]) -> Result<usize, HandlerError> {
        let path = self.file.path().to_path_buf();
        let cannot = |e| HandlerError::io(format!("reading {}", path.display()), e);
        if self.reader.is_none() {
            self.reader = Some(File::open(&path).map_err(cannot)?);
        }
        let reader = self.reader.as_ref().expect("opened above");
        let mut got = 0;
        while got < buf.len() {
            match reader.read_at(&mut buf[got..], self.read_at + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.read_failed = Some(Instant::now());
                    return Err(cannot(e));
                }
            }
        }
        self.read_failed = None;
        Ok(got)
    }

    /// Frames between `from` and `to` (a scan of their headers).
    fn count_frames(&mut self, from: u64, to: u64) -> u64 {
        let (mut at, mut n) = (from, 0);
        let mut header = [0u8; HEADER];
        let Ok(reader) = File::open(self.file.path()) else { return 0 };
        while at + HEADER as u64 <= to && reader.read_exact_at(&mut header, at).is_ok() {
            at += (HEADER + u32::from_le_bytes(header[..4].try_into().expect("4")) as usize) as u64;
            n += 1;
        }
        n
    }

    /// Moves the cursor past the records the outbox has settled since the
    /// last call, and gives delivered space back.
    pub(crate) fn settle(&mut self, outbox: &Outbox) -> Result<(), HandlerError> {
        let settled = self.loaded.len().saturating_sub(outbox.held_in_memory());
        if settled == 0 {
            return Ok(());
        }
        let last = self.loaded.drain(..settled).next_back().expect("settled > 0");
        // Everything read is settled: past skipped damage too.
        let last = if self.loaded.is_empty() { last.max(self.read_at) } else { last };
        self.cursor = last;
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&last.to_le_bytes());
        let sum = checksum(&b[..8]);
        b[8..].copy_from_slice(&sum.to_le_bytes());
        let path = cursor_path(self.file.path());
        self.cursor_file
            .write_all_at(&b, 0)
            .map_err(|e| HandlerError::io(format!("writing {}", path.display()), e))?;
        if self.cursor - self.punched >= PUNCH_EVERY {
            self.punch();
        }
        Ok(())
    }

    /// Frees the disk blocks of settled records (the file keeps its size
    /// and offsets).
    fn punch(&mut self) {
        let to = self.cursor & !4095;
        let from = self.punched & !4095;
        if to <= from {
            return;
        }
        if let Some(f) = self.file.file() {
            use std::os::fd::AsRawFd;
            // SAFETY: fallocate on a descriptor we own; a filesystem that
            // cannot punch holes answers EOPNOTSUPP, and keeps the blocks.
            unsafe {
                libc::fallocate(
                    f.as_raw_fd(),
                    libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                    from as libc::off_t,
                    (to - from) as libc::off_t,
                )
            };
        }
        self.punched = to;
    }

    /// Problems met opening the spool, for the handler to report once.
    pub(crate) fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }
}

fn cursor_path(spool: &Path) -> PathBuf {
    let mut name = spool.as_os_str().to_owned();
    name.push("-cursor");
    PathBuf::from(name)
}

/// What every network handler delivers through: its outbox and transport,
/// and its disk buffer when it has one (`buffer = "disk"`).
pub(crate) struct Sender {
    pub(crate) outbox: Outbox,
    pub(crate) transport: Box<dyn Transport>,
    /// The disk buffer: every client record goes through it.
    spool: Option<Spool>,
    policy: OverflowPolicy,
    counters: Arc<HandlerCounters>,
    /// A record encoded on its way to the spool.
    scratch: Vec<u8>,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("to", &self.transport.describe())
            .field("outbox", &self.outbox)
            .field("spool", &self.spool)
            .finish()
    }
}

impl Sender {
    /// The delivery of handler `cx` under `opts` through `transport`; with
    /// `buffer = "disk"`, its spool under `state_dir` is opened.
    pub(crate) fn new(
        opts: &DeliveryOptions,
        cx: &BuildContext<'_>,
        transport: Box<dyn Transport>,
    ) -> Result<Sender, HandlerError> {
        let spool = if opts.disk {
            let refuse = |why: &str| {
                cx.named(HandlerError::io("buffer = \"disk\"", std::io::Error::other(why.to_owned())))
            };
            let Some(dir) = cx.state_dir else {
                return Err(refuse(
                    "needs [hub] state_dir (where the buffer lives) and journal = true (which makes what it acknowledges durable)",
                ));
            };
            if cx.overflow == OverflowPolicy::DropOldest {
                return Err(refuse(
                    "overflow = \"drop_oldest\" cannot drop from a disk buffer: use drop_newest or block",
                ));
            }
            let path = dir.join(format!("{}.spool", crate::journal_name(cx.name)));
            Some(Spool::open(&path, opts.max_buffer_bytes).map_err(|e| cx.named(e))?)
        } else {
            None
        };
        Ok(Sender {
            outbox: Outbox::new(opts.clone(), cx.overflow, Arc::clone(&cx.counters)),
            transport,
            spool,
            policy: cx.overflow,
            counters: Arc::clone(&cx.counters),
            scratch: Vec::new(),
        })
    }

    /// Takes one client record (through the spool, if there is one).
    pub(crate) fn take(
        &mut self,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<(), HandlerError>,
    ) -> Result<(), HandlerError> {
        let Some(spool) = &mut self.spool else { return self.outbox.take(encode) };
        spool.count_recovered(&self.outbox);
        self.scratch.clear();
        encode(&mut self.scratch)?;
        if spool.full(self.scratch.len()) && self.policy != OverflowPolicy::Block {
            self.outbox.count_dropped(1);
            return Ok(());
        }
        spool.append(&self.scratch)?;
        self.outbox.count_held(1);
        Ok(())
    }

    /// Writes the spool out, loads what it holds into the outbox, runs
    /// `deliver`, and moves the spool's cursor past what was settled.
    fn through_spool(
        &mut self,
        deliver: impl FnOnce(&mut Outbox, &mut dyn Transport) -> Result<(), HandlerError>,
    ) -> Result<(), HandlerError> {
        let Some(spool) = &mut self.spool else { return deliver(&mut self.outbox, self.transport.as_mut()) };
        for note in spool.take_notes() {
            self.counters.set_last_error(&note);
            crate::diag::say("disk buffer", &note);
        }
        let written = spool.write_out();
        let loaded = spool.load(&mut self.outbox);
        let delivered = deliver(&mut self.outbox, self.transport.as_mut());
        let settled = spool.settle(&self.outbox);
        written.and(loaded).and(delivered).and(settled)
    }

    pub(crate) fn flush(&mut self) -> Result<(), HandlerError> {
        self.through_spool(|o, t| o.flush(t))
    }

    pub(crate) fn poll(&mut self) -> Result<(), HandlerError> {
        self.through_spool(|o, t| o.poll(t))
    }

    pub(crate) fn next_due(&self) -> Option<Instant> {
        match &self.spool {
            // Written records wait to be loaded as soon as there is room.
            Some(s) if s.unloaded() && self.outbox.has_room() => {
                Some(self.outbox.next_due().map_or(s.load_due(), |d| d.min(s.load_due())))
            }
            _ => self.outbox.next_due(),
        }
    }

    pub(crate) fn ready(&self) -> bool {
        match &self.spool {
            Some(s) => self.policy != OverflowPolicy::Block || !s.full(0),
            None => self.outbox.ready(),
        }
    }

    /// At shutdown; what is left in a disk buffer waits there for the next hub.
    pub(crate) fn drain(&mut self, deadline: Instant) -> Result<(), HandlerError> {
        self.through_spool(|o, t| o.drain(t, deadline))
    }

    pub(crate) fn close(&mut self) -> Result<(), HandlerError> {
        match &mut self.spool {
            Some(s) => s.write_out(),
            None => Ok(()),
        }
    }

    /// The spool, journaled like a file handler's output.
    pub(crate) fn journal_target(&self) -> Option<&Path> {
        self.spool.as_ref().map(Spool::path)
    }

    pub(crate) fn attach_journal(&mut self, journal: &crate::journal::Shared) {
        if let Some(s) = &mut self.spool {
            s.file_mut().attach_journal(journal);
        }
    }
}

/// A network handler that delivers through a [`Sender`] (a stream,
/// datagrams or RELP, with its disk buffer when it has one): `E` encodes
/// each record (SysLogHandler's syslog message, SocketHandler's pickle).
pub(crate) struct SenderHandler<E> {
    encoder: E,
    sender: Sender,
}

impl<E: Encode> SenderHandler<E> {
    pub(crate) fn new(encoder: E, sender: Sender) -> SenderHandler<E> {
        SenderHandler { encoder, sender }
    }
}

impl<E> std::fmt::Debug for SenderHandler<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SenderHandler").field("sender", &self.sender).finish()
    }
}

impl<E: Encode> Handler for SenderHandler<E> {
    fn emit(&mut self, ctx: &RecordContext<'_>) -> Result<(), HandlerError> {
        let encoder = &mut self.encoder;
        self.sender.take(|buf| encoder.encode(ctx, buf))
    }

    fn emit_report(&mut self, ctx: &RecordContext<'_>) -> Result<(), HandlerError> {
        let encoder = &mut self.encoder;
        self.sender.outbox.take_report(|buf| encoder.encode(ctx, buf))
    }

    fn flush(&mut self) -> Result<(), HandlerError> {
        self.sender.flush()
    }

    fn poll(&mut self) -> Result<(), HandlerError> {
        self.sender.poll()
    }

    fn next_due(&self) -> Option<Instant> {
        self.sender.next_due()
    }

    fn ready(&self) -> bool {
        self.sender.ready()
    }

    fn counts_deliveries(&self) -> bool {
        true
    }

    fn drain(&mut self, deadline: Instant) -> Result<(), HandlerError> {
        self.sender.drain(deadline)
    }

    fn close(&mut self) -> Result<(), HandlerError> {
        self.sender.close()
    }

    fn journal_target(&self) -> Option<&Path> {
        self.sender.journal_target()
    }

    fn attach_journal(&mut self, journal: &crate::journal::Shared) {
        self.sender.attach_journal(journal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_read_is_retried_after_a_pause_not_in_a_busy_loop() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(&dir.path().join("h.spool"), 1 << 20).unwrap();
        spool.append(b"one record").unwrap();
        spool.write_out().unwrap();
        let counters = Arc::new(HandlerCounters::default());
        let mut outbox = Outbox::new(DeliveryOptions::default(), OverflowPolicy::DropNewest, counters);

        spool.read_failed = Some(Instant::now());
        assert!(spool.load_due() >= Instant::now() + READ_RETRY / 2, "the next read waits");
        spool.load(&mut outbox).unwrap();
        assert_eq!(outbox.held_in_memory(), 0, "no read while the pause lasts");

        spool.read_failed = Instant::now().checked_sub(READ_RETRY);
        assert!(spool.load_due() <= Instant::now());
        spool.load(&mut outbox).unwrap();
        assert_eq!(outbox.held_in_memory(), 1, "read once the pause is over");
        assert!(spool.read_failed.is_none(), "a good read clears the failure");
    }
}
