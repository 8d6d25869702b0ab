//! The delivery journal of one durable handler: exactly-once in its files
//! across a hub that is SIGKILLed.
//!
//! The problem: a killed hub loses what it held in memory, so it must not
//! acknowledge a record before the record is in the file; and a restarted hub
//! receives again every record its predecessor wrote but had not yet
//! acknowledged, so it must know which records the files already hold.
//!
//! The journal is an append-only file under `state_dir`. After each flush of
//! its handler (everything emitted so far has been handed to the operating
//! system with `write(2)`), the worker appends one entry: the identity
//! (device, inode) and length of the file being written, and the sequence
//! high-water mark of every client session that changed since the last
//! entry. Only once that entry is written are the batches in that flush
//! settled and acknowledged; while the journal cannot be written (a full
//! disk), nothing more is acknowledged and the clients keep their records.
//!
//! A handler that switches files (a rollover, a reopen after a move, SIGHUP)
//! tells the journal before it writes the first byte to the new file: an
//! *intent* entry lists every file written since the last commit, each with
//! the length the journal last vouched for (the new one with its length when
//! opened), and no new high-water marks. So the last entry always names
//! every file that may hold unacknowledged records, wherever a rotation has
//! moved them within the directory.
//!
//! On start, the journal is replayed. Each file the last entry lists is found
//! by device and inode (at the output path, or renamed within its directory)
//! and cut back to its journaled length: what follows was written after the
//! last entry, never acknowledged, and is about to be resent by its clients.
//! Cuts fall on line boundaries, so no torn line is left. The high-water
//! marks then let the worker drop every resent record a file already holds.
//! Files are in the page cache once written, so this survives the death of
//! the process, not of the machine (no fsync: see README, "Guarantees").
//!
//! Entry: `u32 len | u64 checksum (FNV-1a of the payload) | payload`, payload
//! `u32 f | f × (u64 dev, u64 ino, u64 len) | u32 n | n × (u64 session, u64
//! next_seq)`, all little-endian, after the magic `LFJRNL02` and the output
//! path the journal is for (`u32 len | bytes`; a journal found for another
//! path is not used). (Journals of
//! the first format, `LFJRNL01`, one file per entry and no `f`, are read and
//! rewritten in this one.) An entry that fails its length, shape or checksum
//! (the hub died mid-append, or a full disk cut the write short) is skipped:
//! replay looks for the next whole entry after it, so a torn entry never
//! hides the entries written after it.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const MAGIC_V1: &[u8; 8] = b"LFJRNL01";
const MAGIC: &[u8; 8] = b"LFJRNL02";
/// Past this size the journal is rewritten as one entry.
const COMPACT_AT: u64 = 1 << 20;
/// Sessions remembered per handler; the least recently written are forgotten first.
const MAX_SESSIONS: usize = 65_536;
/// Files one entry may list (written since the last commit: rollovers
/// between two commits, each one bounded by a batch).
const MAX_FILES: usize = 4096;
const MAX_ENTRY: usize = 8 + 24 * MAX_FILES + 16 * MAX_SESSIONS;

/// A journal shared by a handler's worker (which commits) and its file
/// (which announces each file it opens).
pub type Shared = Arc<Mutex<Journal>>;

/// What opening a journal found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Recovery {
    /// Bytes cut from the ends of the output files (written, never acknowledged).
    pub(crate) truncated_bytes: u64,
    /// The files cut, and how much from each.
    pub(crate) cuts: Vec<(PathBuf, u64)>,
    /// Sessions whose high-water marks were restored.
    pub(crate) sessions: usize,
    /// Notes for the operator, if anything was unusual.
    pub(crate) notes: Vec<String>,
}

/// One handler's journal (see the module's documentation).
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    target: PathBuf,
    file: File,
    size: u64,
    /// session → (next sequence number not yet in the output, last-touched tick)
    marks: HashMap<u64, (u64, u64)>,
    dirty: Vec<u64>,
    tick: u64,
    /// The files the last entry written lists, with their vouched lengths.
    listed: Vec<FileState>,
    /// The file being written (its descriptor, for its identity and length).
    current: Option<(FileState, File)>,
    /// Problems met outside `commit` (an intent entry, a compaction), for
    /// the worker to count and report.
    errors: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct FileState {
    dev: u64,
    ino: u64,
    len: u64,
}

impl FileState {
    fn same_file(&self, other: &FileState) -> bool {
        self.dev == other.dev && self.ino == other.ino
    }
}

#[cfg(unix)]
fn state_of(m: &std::fs::Metadata) -> FileState {
    use std::os::unix::fs::MetadataExt;
    FileState { dev: m.dev(), ino: m.ino(), len: m.len() }
}

#[cfg(not(unix))]
fn state_of(m: &std::fs::Metadata) -> FileState {
    FileState { dev: 0, ino: 0, len: m.len() }
}

fn file_state(path: &Path) -> io::Result<Option<FileState>> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(Some(state_of(&m))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// FNV-1a of `bytes` (also the disk buffer's record checksum).
pub(crate) fn checksum(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Where the file `want` is now: the output path, or a name in its
/// directory (a rotation renamed it). Links are not followed.
fn locate(target: &Path, want: &FileState) -> Option<PathBuf> {
    if file_state(target).ok().flatten().is_some_and(|s| s.same_file(want)) {
        return Some(target.to_path_buf());
    }
    let dir = target.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file() && state_of(&m).same_file(want)))
}

impl Journal {
    /// Opens (or creates) the journal at `path` for the output file
    /// `target`, and recovers: cuts the unacknowledged tails of the files
    /// the last entry lists, restores the high-water marks. `Ok(None)` when
    /// the target is not a regular file (a FIFO, a device): nothing to
    /// truncate or journal.
    pub(crate) fn open(path: &Path, target: &Path) -> io::Result<Option<(Journal, Recovery)>> {
        if std::fs::metadata(target).is_ok_and(|m| !m.is_file()) {
            return Ok(None);
        }
        let mut recovery = Recovery::default();
        let mut marks: Marks = HashMap::new();
        let mut last: Option<Vec<FileState>> = None;
        match no_follow(OpenOptions::new().read(true)).open(path) {
            Ok(mut f) => {
                let mut bytes = Vec::new();
                f.read_to_end(&mut bytes)?;
                (last, marks) = replay(&bytes, path, target, &mut recovery);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut listed = Vec::new();
        for want in last.unwrap_or_default() {
            if want.dev == 0 && want.ino == 0 {
                continue;
            }
            let Some(found) = locate(target, &want) else {
                recovery.notes.push(format!(
                    "a file it journaled (device {}, inode {}, {} bytes vouched for) is no longer in {}: if it was moved elsewhere, what it holds past {} bytes was never acknowledged and will be written again when its clients resend it",
                    want.dev,
                    want.ino,
                    want.len,
                    target.parent().unwrap_or(Path::new(".")).display(),
                    want.len
                ));
                continue;
            };
            let now = file_state(&found)?.unwrap_or_default();
            if now.len > want.len {
                // Written after the last entry: never acknowledged, so every
                // one of these records is about to be resent.
                OpenOptions::new().write(true).open(&found)?.set_len(want.len)?;
                recovery.truncated_bytes += now.len - want.len;
                recovery.cuts.push((found, now.len - want.len));
            } else if now.len < want.len {
                recovery.notes.push(format!(
                    "{} is shorter than journaled ({} < {} bytes): truncated by someone else?",
                    found.display(),
                    now.len,
                    want.len
                ));
            }
            listed.push(FileState { len: want.len.min(now.len), ..want });
        }
        recovery.sessions = marks.len();
        let file = no_follow(OpenOptions::new().create(true).append(true)).open(path)?;
        let mut j = Journal {
            path: path.to_path_buf(),
            target: target.to_path_buf(),
            file,
            size: 0,
            marks,
            dirty: Vec::new(),
            tick: 0,
            listed,
            current: None,
            errors: Vec::new(),
        };
        j.compact()?;
        Ok(Some((j, recovery)))
    }

    /// The next sequence number of `session` not yet in the output.
    pub(crate) fn next_seq(&self, session: u64) -> u64 {
        self.marks.get(&session).map_or(0, |m| m.0)
    }

    /// Notes that every record of `session` below `next` is in the output
    /// (in the handler's buffer; journaled at the next commit).
    pub(crate) fn advance(&mut self, session: u64, next: u64) {
        self.tick += 1;
        let tick = self.tick;
        match self.marks.get_mut(&session) {
            Some(m) => {
                if next > m.0 {
                    m.0 = next;
                    m.1 = tick;
                    self.dirty.push(session);
                }
            }
            None => {
                if self.marks.len() >= MAX_SESSIONS
                    && let Some(oldest) = self.marks.iter().min_by_key(|(_, m)| m.1).map(|(k, _)| *k)
                {
                    self.marks.remove(&oldest);
                }
                self.marks.insert(session, (next, tick));
                self.dirty.push(session);
            }
        }
    }

    /// The handler opened `file` (at start, after a rollover, a reopen):
    /// before anything is written to a file the journal does not list, an
    /// intent entry lists it with its length now, beside every file listed
    /// already. A failure is kept for the worker to report; writing goes
    /// on (nothing is acknowledged until a commit succeeds, so a crash
    /// before then can only make the new file's records be written twice).
    pub(crate) fn opened(&mut self, file: &File) {
        let Ok(meta) = file.metadata() else { return };
        if !meta.is_file() {
            return;
        }
        let state = state_of(&meta);
        let Ok(clone) = file.try_clone() else { return };
        if self.current.as_ref().is_some_and(|(c, _)| c.same_file(&state)) {
            self.current = Some((state, clone));
            return;
        }
        let known = self.listed.iter().any(|l| l.same_file(&state));
        let first = self.current.is_none();
        self.current = Some((state, clone));
        if known && first {
            // The file the last entry names, opened again at start.
            return;
        }
        // A listed identity on a file opened anew is a reused inode: the
        // file listed under it is gone, and this one starts at `len`.
        self.listed.retain(|l| !l.same_file(&state));
        if self.listed.len() >= MAX_FILES {
            self.listed.remove(0);
        }
        self.listed.push(state);
        let entry = encode_entry(&self.listed, &[]);
        if let Err(e) = self.append(&entry) {
            self.errors.push(format!(
                "cannot write the journal's entry for the newly opened {}: {e} (until a commit succeeds, its records are not acknowledged; a crash before then writes them twice)",
                self.target.display()
            ));
        }
    }

    /// Appends an entry for what the handler has just flushed. On an error
    /// nothing it covers may be acknowledged: the sessions stay dirty and
    /// the next commit carries them.
    pub(crate) fn commit(&mut self) -> io::Result<()> {
        let files = match &self.current {
            Some((_, f)) => vec![state_of(&f.metadata()?)],
            None => match file_state(&self.target)? {
                Some(s) if self.listed.is_empty() => vec![s],
                _ => self.listed.clone(),
            },
        };
        self.dirty.sort_unstable();
        self.dirty.dedup();
        let sessions: Vec<(u64, u64)> =
            self.dirty.iter().filter_map(|s| self.marks.get(s).map(|m| (*s, m.0))).collect();
        self.append(&encode_entry(&files, &sessions))?;
        self.dirty.clear();
        self.listed = files;
        if self.size > COMPACT_AT
            && let Err(e) = self.compact()
        {
            // The entry is written; only the journal's size is at stake.
            self.errors.push(format!("cannot compact the journal: {e}"));
        }
        Ok(())
    }

    /// Problems met since the last call, outside `commit`'s own result.
    pub(crate) fn take_errors(&mut self) -> Vec<String> {
        std::mem::take(&mut self.errors)
    }

    /// Appends `entry`; a write cut short is cut back off (replay would
    /// skip it anyway), so the journal ends on a whole entry.
    fn append(&mut self, entry: &[u8]) -> io::Result<()> {
        match self.file.write_all(entry) {
            Ok(()) => {
                self.size += entry.len() as u64;
                Ok(())
            }
            Err(e) => {
                let _ = self.file.set_len(self.size);
                Err(e)
            }
        }
    }

    /// Rewrites the journal as one entry holding every session (write a new
    /// file, rename it over the old one: the old stays whole until then).
    /// Only where the marks in memory are all vouched for: at open, and
    /// right after a commit.
    fn compact(&mut self) -> io::Result<()> {
        let sessions: Vec<(u64, u64)> = self.marks.iter().map(|(s, m)| (*s, m.0)).collect();
        let mut bytes = MAGIC.to_vec();
        let named = path_bytes(&self.target);
        bytes.extend_from_slice(&(named.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&named);
        bytes.extend_from_slice(&encode_entry(&self.listed, &sessions));
        let tmp = self.path.with_extension("journal.tmp");
        // A new file, never one found there: whatever is in the way (a
        // leftover, or a link planted to have the hub overwrite another
        // file) is removed first; unlinking a symlink never follows it.
        match std::fs::remove_file(&tmp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let written = no_follow(OpenOptions::new().write(true).create_new(true))
            .open(&tmp)
            .and_then(|mut f| f.write_all(&bytes));
        if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, &self.path)) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        self.file = no_follow(OpenOptions::new().append(true)).open(&self.path)?;
        self.size = bytes.len() as u64;
        self.dirty.clear();
        Ok(())
    }
}

type Marks = HashMap<u64, (u64, u64)>;

/// Reads a journal's bytes: the files its last whole entry lists, and each
/// session's high-water mark over all entries; notes what was odd.
pub(crate) fn replay(
    bytes: &[u8],
    path: &Path,
    target: &Path,
    recovery: &mut Recovery,
) -> (Option<Vec<FileState>>, Marks) {
    let mut marks: Marks = HashMap::new();
    let mut last = None;
    let version = match bytes.get(..8) {
        Some(m) if m == MAGIC => Some(2),
        Some(m) if m == MAGIC_V1 => Some(1),
        _ => None,
    };
    // Since the second format, a journal names the path it is for.
    let header = match version {
        Some(2) => parse_header(&bytes[MAGIC.len()..]),
        _ => Some((Vec::new(), 0)),
    };
    let version = match (version, &header) {
        (Some(v), Some((named, _))) if v == 1 || *named == path_bytes(target) => Some(v),
        (Some(_), named) => {
            recovery.notes.push(format!(
                "journal {} was written for {}, not {}: starting afresh",
                path.display(),
                named
                    .as_ref()
                    .map_or("an unreadable path".into(), |(n, _)| String::from_utf8_lossy(n).into_owned()),
                target.display()
            ));
            None
        }
        (None, _) => None,
    };
    if let Some(version) = version {
        let mut at = MAGIC.len() + header.as_ref().map_or(0, |(_, used)| *used);
        let mut skipped = 0;
        let mut torn_tail = false;
        while at < bytes.len() {
            match parse_entry(&bytes[at..], version) {
                Some((files, sessions, used)) => {
                    last = Some(files);
                    for (s, next) in sessions {
                        let e = marks.entry(s).or_insert((0, 0));
                        e.0 = e.0.max(next);
                    }
                    at += used;
                    torn_tail = false;
                }
                None => {
                    // Not a whole entry here: look for the next one.
                    at += 1;
                    skipped += 1;
                    torn_tail = true;
                }
            }
        }
        if skipped > 0 {
            recovery.notes.push(if torn_tail {
                    format!(
                        "journal {}: ignored {skipped} bytes of a torn entry at its end (a write cut short by the hub's death or a full disk); the last whole entry before it was used",
                        path.display()
                    )
                } else {
                    format!(
                        "journal {}: skipped {skipped} bytes of a torn entry (a write cut short, e.g. by a full disk); the whole entries after it were used",
                        path.display()
                    )
                });
        }
    } else if !bytes.is_empty() && recovery.notes.is_empty() {
        recovery.notes.push(format!("journal {}: not a journal; starting afresh", path.display()));
    }
    (last, marks)
}

/// Opens without following a symbolic link at the path (ELOOP instead).
#[cfg(unix)]
fn no_follow(o: &mut OpenOptions) -> &mut OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    o.custom_flags(libc::O_NOFOLLOW)
}

#[cfg(not(unix))]
fn no_follow(o: &mut OpenOptions) -> &mut OpenOptions {
    o
}

fn path_bytes(p: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    p.as_os_str().as_bytes().to_vec()
}

/// The path a journal names after its magic, and the bytes it takes.
fn parse_header(b: &[u8]) -> Option<(Vec<u8>, usize)> {
    let n = u32::from_le_bytes(b.get(..4)?.try_into().ok()?) as usize;
    Some((b.get(4..4 + n)?.to_vec(), 4 + n))
}

fn encode_entry(files: &[FileState], sessions: &[(u64, u64)]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(8 + 24 * files.len() + 16 * sessions.len());
    payload.extend_from_slice(&(files.len() as u32).to_le_bytes());
    for f in files {
        payload.extend_from_slice(&f.dev.to_le_bytes());
        payload.extend_from_slice(&f.ino.to_le_bytes());
        payload.extend_from_slice(&f.len.to_le_bytes());
    }
    payload.extend_from_slice(&(sessions.len() as u32).to_le_bytes());
    for (s, n) in sessions {
        payload.extend_from_slice(&s.to_le_bytes());
        payload.extend_from_slice(&n.to_le_bytes());
    }
    let mut out = Vec::with_capacity(12 + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&checksum(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

type Parsed = (Vec<FileState>, Vec<(u64, u64)>, usize);

/// One entry at the start of `b` (format `version`), if a whole one is
/// there. The cheap checks (length, shape) come before the checksum, so
/// that looking for the next entry after a torn one costs little.
fn parse_entry(b: &[u8], version: u8) -> Option<Parsed> {
    let u32_at = |b: &[u8], i: usize| b.get(i..i + 4).map(|s| u32::from_le_bytes(s.try_into().expect("4")));
    let u64_at = |b: &[u8], i: usize| b.get(i..i + 8).map(|s| u64::from_le_bytes(s.try_into().expect("8")));
    let len = u32_at(b, 0)? as usize;
    if !(8..=MAX_ENTRY).contains(&len) {
        return None;
    }
    let payload = b.get(12..12 + len)?;
    let (nfiles, files_at) = if version == 1 { (1, 0) } else { (u32_at(payload, 0)? as usize, 4) };
    if nfiles > MAX_FILES {
        return None;
    }
    let sessions_at = files_at + 24 * nfiles;
    let n = u32_at(payload, sessions_at)? as usize;
    if sessions_at + 4 + 16 * n != len || checksum(payload) != u64_at(b, 4)? {
        return None;
    }
    let files = (0..nfiles)
        .map(|i| {
            let at = files_at + 24 * i;
            Some(FileState {
                dev: u64_at(payload, at)?,
                ino: u64_at(payload, at + 8)?,
                len: u64_at(payload, at + 16)?,
            })
        })
        .collect::<Option<_>>()?;
    let at = sessions_at + 4;
    let sessions = (0..n)
        .map(|i| Some((u64_at(payload, at + 16 * i)?, u64_at(payload, at + 8 + 16 * i)?)))
        .collect::<Option<_>>()?;
    Some((files, sessions, 12 + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(jp: &Path, out: &Path) -> (Journal, Recovery) {
        Journal::open(jp, out).unwrap().unwrap()
    }

    fn append(path: &Path, bytes: &[u8]) -> File {
        let mut f = OpenOptions::new().create(true).append(true).open(path).unwrap();
        f.write_all(bytes).unwrap();
        f
    }

    #[test]
    fn truncates_the_unjournaled_tail_and_restores_marks() {
        let dir = tempfile::tempdir().unwrap();
        let (jp, out) = (dir.path().join("j"), dir.path().join("out.log"));
        let f = append(&out, b"one\n");
        let (mut j, r) = open(&jp, &out);
        assert_eq!(r, Recovery::default());
        j.opened(&f);
        j.advance(42, 11);
        j.commit().unwrap();
        // Written after the last commit, then the hub dies.
        append(&out, b"two\n");
        j.advance(42, 20);
        drop(j);
        let (j, r) = open(&jp, &out);
        assert_eq!(r.truncated_bytes, 4);
        assert_eq!(std::fs::read(&out).unwrap(), b"one\n");
        assert_eq!(j.next_seq(42), 11, "the mark of the last commit, not of the lost write");
        assert_eq!(j.next_seq(7), 0);
    }

    #[test]
    fn a_torn_last_entry_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let (jp, out) = (dir.path().join("j"), dir.path().join("out.log"));
        let (mut j, _) = open(&jp, &out);
        j.advance(1, 5);
        j.commit().unwrap();
        j.advance(1, 9);
        j.commit().unwrap();
        drop(j);
        let full = std::fs::read(&jp).unwrap();
        std::fs::write(&jp, &full[..full.len() - 3]).unwrap();
        let (j, r) = open(&jp, &out);
        assert_eq!(j.next_seq(1), 5);
        assert!(r.notes[0].contains("torn entry at its end"), "{:?}", r.notes);
    }

    /// A full disk cut an entry short, space came back, and later entries
    /// were whole: they count, and the file is cut to the newest length.
    #[test]
    fn a_torn_entry_in_the_middle_hides_nothing_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let (jp, out) = (dir.path().join("j"), dir.path().join("out.log"));
        let f = append(&out, b"a\n");
        let (mut j, _) = open(&jp, &out);
        j.opened(&f);
        j.advance(1, 1);
        j.commit().unwrap();
        let torn = std::fs::metadata(&jp).unwrap().len();
        append(&out, b"b\n");
        j.advance(1, 2);
        j.commit().unwrap();
        drop(j);
        // The second entry torn: its first 7 bytes stay, then come whole entries.
        let full = std::fs::read(&jp).unwrap();
        let second = full[torn as usize..].to_vec();
        std::fs::write(&jp, &full[..torn as usize + 7]).unwrap();
        append(&jp, &second);
        append(&out, b"c\n");
        let (j, r) = open(&jp, &out);
        assert_eq!(j.next_seq(1), 2, "the entry after the torn one counts");
        assert_eq!(
            std::fs::read(&out).unwrap(),
            b"a\nb\n",
            "cut to the newest entry's length, not an old one"
        );
        assert_eq!(r.truncated_bytes, 2);
        assert!(r.notes[0].contains("skipped 7 bytes"), "{:?}", r.notes);
    }

    /// Rollovers between two commits: the intent entries name every file
    /// written since, and recovery cuts each one, wherever it was renamed.
    #[test]
    fn every_file_written_since_the_last_commit_is_cut_back_after_rollovers() {
        let dir = tempfile::tempdir().unwrap();
        let (jp, out) = (dir.path().join("j"), dir.path().join("out.log"));
        let f = append(&out, b"a1\n");
        let (mut j, _) = open(&jp, &out);
        j.opened(&f);
        j.advance(1, 1);
        j.commit().unwrap();
        append(&out, b"a2\n");
        j.advance(1, 2);
        // Rollover: out.log → out.log.1, a new out.log, then another.
        std::fs::rename(&out, dir.path().join("out.log.1")).unwrap();
        j.opened(&append(&out, b""));
        append(&out, b"b1\n");
        std::fs::rename(dir.path().join("out.log.1"), dir.path().join("out.log.2")).unwrap();
        std::fs::rename(&out, dir.path().join("out.log.1")).unwrap();
        j.opened(&append(&out, b""));
        append(&out, b"c1\n");
        drop(j);
        let (j, r) = open(&jp, &out);
        assert_eq!(std::fs::read(dir.path().join("out.log.2")).unwrap(), b"a1\n");
        assert_eq!(std::fs::read(dir.path().join("out.log.1")).unwrap(), b"");
        assert_eq!(std::fs::read(&out).unwrap(), b"");
        assert_eq!(r.truncated_bytes, 9);
        assert_eq!(j.next_seq(1), 1);
    }

    #[test]
    fn a_replaced_output_file_is_not_truncated_and_devices_have_no_journal() {
        let dir = tempfile::tempdir().unwrap();
        let (jp, out) = (dir.path().join("j"), dir.path().join("out.log"));
        let f = append(&out, b"a\n");
        let (mut j, _) = open(&jp, &out);
        j.opened(&f);
        j.commit().unwrap();
        drop(j);
        // Rotated away (kept, so the new file cannot reuse its inode).
        std::fs::rename(&out, dir.path().join("out.log.1")).unwrap();
        std::fs::write(&out, b"rotated and longer\n").unwrap();
        let (_, r) = open(&jp, &out);
        assert_eq!(r.truncated_bytes, 0);
        assert_eq!(std::fs::read(&out).unwrap().len(), 19);
        assert!(Journal::open(&jp, Path::new("/dev/null")).unwrap().is_none());
    }

    #[test]
    fn a_journal_written_for_another_file_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let (jp, out, other) =
            (dir.path().join("j"), dir.path().join("out.log"), dir.path().join("other.log"));
        let f = append(&out, b"a\n");
        let (mut j, _) = open(&jp, &out);
        j.opened(&f);
        j.advance(3, 9);
        j.commit().unwrap();
        drop(j);
        append(&out, b"b\n");
        let (j, r) = open(&jp, &other);
        assert_eq!((j.next_seq(3), r.truncated_bytes), (0, 0));
        assert!(r.notes[0].contains("was written for"), "{:?}", r.notes);
        assert_eq!(std::fs::read(&out).unwrap(), b"a\nb\n", "another handler's file is never cut");
    }

    #[test]
    fn journals_of_the_first_format_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let (jp, out) = (dir.path().join("j"), dir.path().join("out.log"));
        std::fs::write(&out, b"one\ntwo\n").unwrap();
        let s = file_state(&out).unwrap().unwrap();
        let mut payload = Vec::new();
        for v in [s.dev, s.ino, 4] {
            payload.extend_from_slice(&v.to_le_bytes());
        }
        payload.extend_from_slice(&1u32.to_le_bytes());
        payload.extend_from_slice(&42u64.to_le_bytes());
        payload.extend_from_slice(&7u64.to_le_bytes());
        let mut bytes = MAGIC_V1.to_vec();
        bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&checksum(&payload).to_le_bytes());
        bytes.extend_from_slice(&payload);
        std::fs::write(&jp, &bytes).unwrap();
        let (j, r) = open(&jp, &out);
        assert_eq!((j.next_seq(42), r.truncated_bytes), (7, 4));
        assert_eq!(&std::fs::read(&jp).unwrap()[..8], MAGIC, "rewritten in the current format");
    }
}
