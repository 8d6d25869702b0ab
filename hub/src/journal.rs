//! The delivery journal of one durable handler: exactly-once in a file
//! across a hub that is SIGKILLed.
//!
//! The problem: a killed hub loses what it held in memory, so it must not
//! acknowledge a record before the record is in the file; and a restarted hub
//! receives again every record its predecessor wrote but had not yet
//! acknowledged, so it must know which records the file already holds.
//!
//! The journal is an append-only file next to the socket. After each flush
//! of its handler (everything emitted so far has been handed to the
//! operating system with `write(2)`), the worker appends one entry: the
//! output file's identity (device, inode) and length, and the sequence
//! high-water mark of every client session that changed since the last entry.
//! Only then are the batches in that flush settled and acknowledged.
//!
//! On start, the journal is replayed. If the output file is the one the last
//! entry describes and is longer, the tail (records written after the last
//! entry, never acknowledged, and about to be resent by their clients) is
//! truncated away; the high-water marks then let the worker drop every
//! resent record the file already holds. Both files are in the page cache
//! once written, so this survives the death of the process, not of the
//! machine (no fsync: see README, "Guarantees").
//!
//! Entry: `u32 len | u64 checksum (FNV-1a of the payload) | payload`, payload
//! `u64 dev | u64 ino | u64 file_len | u32 n | n × (u64 session, u64 next_seq)`,
//! all little-endian. A torn last entry (the hub died mid-append) fails its
//! length or checksum and is ignored, with everything after it.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"LFJRNL01";
/// Past this size the journal is rewritten as one entry.
const COMPACT_AT: u64 = 1 << 20;
/// Sessions remembered per handler; the least recently written are forgotten first.
const MAX_SESSIONS: usize = 65_536;
const MAX_ENTRY: usize = 16 + 20 * MAX_SESSIONS + 64;

/// What opening a journal found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Recovery {
    /// Bytes cut from the end of the output file (written, never acknowledged).
    pub(crate) truncated_bytes: u64,
    /// Sessions whose high-water marks were restored.
    pub(crate) sessions: usize,
    /// A note for the operator, if anything was unusual.
    pub(crate) note: Option<String>,
}

#[derive(Debug)]
pub(crate) struct Journal {
    path: PathBuf,
    target: PathBuf,
    file: File,
    size: u64,
    /// session → (next sequence number not yet in the file, last-touched tick)
    marks: HashMap<u64, (u64, u64)>,
    dirty: Vec<u64>,
    tick: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct FileState {
    dev: u64,
    ino: u64,
    len: u64,
}

#[cfg(unix)]
fn file_state(path: &Path) -> io::Result<Option<FileState>> {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(path) {
        Ok(m) => Ok(Some(FileState { dev: m.dev(), ino: m.ino(), len: m.len() })),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(not(unix))]
fn file_state(path: &Path) -> io::Result<Option<FileState>> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(Some(FileState { dev: 0, ino: 0, len: m.len() })),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn checksum(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl Journal {
    /// Opens (or creates) the journal at `path` for the output file
    /// `target`, and recovers: truncates the target's unacknowledged tail,
    /// restores the high-water marks. `Ok(None)` when the target is not a
    /// regular file (a FIFO, a device): nothing to truncate or journal.
    pub(crate) fn open(path: &Path, target: &Path) -> io::Result<Option<(Journal, Recovery)>> {
        if std::fs::metadata(target).is_ok_and(|m| !m.is_file()) {
            return Ok(None);
        }
        let mut recovery = Recovery::default();
        let mut marks: HashMap<u64, (u64, u64)> = HashMap::new();
        let mut last: Option<FileState> = None;
        match no_follow(OpenOptions::new().read(true)).open(path) {
            Ok(mut f) => {
                let mut bytes = Vec::new();
                f.read_to_end(&mut bytes)?;
                if bytes.len() >= MAGIC.len() && &bytes[..MAGIC.len()] == MAGIC {
                    let mut at = MAGIC.len();
                    while let Some((state, sessions, used)) = parse_entry(&bytes[at..]) {
                        last = Some(state);
                        for (s, next) in sessions {
                            let e = marks.entry(s).or_insert((0, 0));
                            e.0 = e.0.max(next);
                        }
                        at += used;
                    }
                    if at < bytes.len() {
                        recovery.note = Some(format!(
                            "journal {}: ignored {} bytes of a torn last entry",
                            path.display(),
                            bytes.len() - at
                        ));
                    }
                } else if !bytes.is_empty() {
                    recovery.note =
                        Some(format!("journal {}: not a journal; starting afresh", path.display()));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        if let (Some(want), Some(now)) = (last, file_state(target)?)
            && want.dev == now.dev
            && want.ino == now.ino
            && want.dev != 0
        {
            if now.len > want.len {
                // Written after the last entry: never acknowledged, so every
                // one of these records is about to be resent.
                OpenOptions::new().write(true).open(target)?.set_len(want.len)?;
                recovery.truncated_bytes = now.len - want.len;
            } else if now.len < want.len {
                recovery.note = Some(format!(
                    "{} is shorter than journaled ({} < {} bytes): truncated by someone else?",
                    target.display(),
                    now.len,
                    want.len
                ));
            }
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

    /// Appends an entry for what the handler has just flushed.
    pub(crate) fn commit(&mut self) -> io::Result<()> {
        let state = file_state(&self.target)?.unwrap_or_default();
        self.dirty.sort_unstable();
        self.dirty.dedup();
        let sessions: Vec<(u64, u64)> =
            self.dirty.iter().filter_map(|s| self.marks.get(s).map(|m| (*s, m.0))).collect();
        self.dirty.clear();
        let entry = encode_entry(state, &sessions);
        self.file.write_all(&entry)?;
        self.size += entry.len() as u64;
        if self.size > COMPACT_AT { self.compact() } else { Ok(()) }
    }

    /// Rewrites the journal as one entry holding every session (write a new
    /// file, rename it over the old one: the old stays whole until then).
    fn compact(&mut self) -> io::Result<()> {
        let state = file_state(&self.target)?.unwrap_or_default();
        let sessions: Vec<(u64, u64)> = self.marks.iter().map(|(s, m)| (*s, m.0)).collect();
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&encode_entry(state, &sessions));
        let tmp = self.path.with_extension("journal.tmp");
        // A new file, never one found there: whatever is in the way (a
        // leftover, or a link planted to have the hub overwrite another
        // file) is removed first; unlinking a symlink never follows it.
        match std::fs::remove_file(&tmp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        {
            let mut f = no_follow(OpenOptions::new().write(true).create_new(true)).open(&tmp)?;
            f.write_all(&bytes)?;
        }
        std::fs::rename(&tmp, &self.path)?;
        self.file = no_follow(OpenOptions::new().append(true)).open(&self.path)?;
        self.size = bytes.len() as u64;
        self.dirty.clear();
        Ok(())
    }
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

fn encode_entry(state: FileState, sessions: &[(u64, u64)]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(28 + 16 * sessions.len());
    payload.extend_from_slice(&state.dev.to_le_bytes());
    payload.extend_from_slice(&state.ino.to_le_bytes());
    payload.extend_from_slice(&state.len.to_le_bytes());
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

type Parsed = (FileState, Vec<(u64, u64)>, usize);

fn parse_entry(b: &[u8]) -> Option<Parsed> {
    let u32_at = |b: &[u8], i: usize| b.get(i..i + 4).map(|s| u32::from_le_bytes(s.try_into().expect("4")));
    let u64_at = |b: &[u8], i: usize| b.get(i..i + 8).map(|s| u64::from_le_bytes(s.try_into().expect("8")));
    let len = u32_at(b, 0)? as usize;
    if !(28..=MAX_ENTRY).contains(&len) {
        return None;
    }
    let sum = u64_at(b, 4)?;
    let payload = b.get(12..12 + len)?;
    if checksum(payload) != sum {
        return None;
    }
    let state = FileState { dev: u64_at(payload, 0)?, ino: u64_at(payload, 8)?, len: u64_at(payload, 16)? };
    let n = u32_at(payload, 24)? as usize;
    if 28 + 16 * n != len {
        return None;
    }
    let sessions = (0..n)
        .map(|i| Some((u64_at(payload, 28 + 16 * i)?, u64_at(payload, 36 + 16 * i)?)))
        .collect::<Option<_>>()?;
    Some((state, sessions, 12 + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_the_unjournaled_tail_and_restores_marks() {
        let dir = tempfile::tempdir().unwrap();
        let (jp, out) = (dir.path().join("j"), dir.path().join("out.log"));
        std::fs::write(&out, b"one\n").unwrap();
        let (mut j, r) = Journal::open(&jp, &out).unwrap().unwrap();
        assert_eq!(r, Recovery::default());
        j.advance(42, 11);
        j.commit().unwrap();
        // Written after the last commit, then the hub dies.
        std::fs::OpenOptions::new().append(true).open(&out).unwrap().write_all(b"two\n").unwrap();
        j.advance(42, 20);
        drop(j);
        let (j, r) = Journal::open(&jp, &out).unwrap().unwrap();
        assert_eq!(r.truncated_bytes, 4);
        assert_eq!(std::fs::read(&out).unwrap(), b"one\n");
        assert_eq!(j.next_seq(42), 11, "the mark of the last commit, not of the lost write");
        assert_eq!(j.next_seq(7), 0);
    }

    #[test]
    fn a_torn_last_entry_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let (jp, out) = (dir.path().join("j"), dir.path().join("out.log"));
        let (mut j, _) = Journal::open(&jp, &out).unwrap().unwrap();
        j.advance(1, 5);
        j.commit().unwrap();
        j.advance(1, 9);
        j.commit().unwrap();
        drop(j);
        let full = std::fs::read(&jp).unwrap();
        std::fs::write(&jp, &full[..full.len() - 3]).unwrap();
        let (j, r) = Journal::open(&jp, &out).unwrap().unwrap();
        assert_eq!(j.next_seq(1), 5);
        assert!(r.note.unwrap().contains("torn"));
    }

    #[test]
    fn a_replaced_output_file_is_not_truncated_and_devices_have_no_journal() {
        let dir = tempfile::tempdir().unwrap();
        let (jp, out) = (dir.path().join("j"), dir.path().join("out.log"));
        std::fs::write(&out, b"a\n").unwrap();
        let (mut j, _) = Journal::open(&jp, &out).unwrap().unwrap();
        j.commit().unwrap();
        drop(j);
        // Rotated away (kept, so the new file cannot reuse its inode).
        std::fs::rename(&out, dir.path().join("out.log.1")).unwrap();
        std::fs::write(&out, b"rotated and longer\n").unwrap();
        let (_, r) = Journal::open(&jp, &out).unwrap().unwrap();
        assert_eq!(r.truncated_bytes, 0);
        assert_eq!(std::fs::read(&out).unwrap().len(), 19);
        assert!(Journal::open(&jp, Path::new("/dev/null")).unwrap().is_none());
    }
}
