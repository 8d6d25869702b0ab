//! The delivery journal under faults: two handlers on one file, a full
//! disk under the journal, handler names that would share a journal.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use logfunnel_protocol::{HubFrame, decode_hub_frame};

use crate::bad_clients::{connect, hello};
use crate::faults::batch_frame;
use crate::util::*;

#[test]
fn two_handlers_writing_one_file_are_refused_by_check_config_and_by_the_hub() {
    let dir = Dir::new();
    let log = dir.path("app.log");
    let shared = dir.path("sub/../app.log");
    std::fs::create_dir(dir.path("sub")).unwrap();
    let cfg = config_with(
        &dir,
        "",
        &[],
        &format!(
            "[handlers.errors]\nclass = \"RotatingFileHandler\"\nfilename = {shared:?}\nlevel = \"ERROR\"\nmax_bytes = 1000\nbackup_count = 2\n[handlers.all]\nclass = \"FileHandler\"\nfilename = {log:?}\n"
        ),
    );
    let out = run(&["check-config", cfg.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("handlers.errors.filename") && err.contains("may not share a file"), "{err}");
    let hub = std::process::Command::new(BIN)
        .args(["hub", "--config", cfg.to_str().unwrap(), "--socket", dir.socket().to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&hub.stderr);
    assert!(!hub.status.success() && err.contains("may not share a file"), "{err}");
    assert!(!dir.socket().exists(), "the hub refused before listening");
}

/// The next frame from the hub if one comes within `limit`.
fn ack_within(s: &mut UnixStream, limit: Duration) -> Option<u64> {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut len = [0u8; 4];
    match s.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
            return None;
        }
        Err(e) => panic!("reading the hub: {e}"),
    }
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = vec![0u8; u32::from_le_bytes(len) as usize];
    s.read_exact(&mut buf).unwrap();
    match decode_hub_frame(&buf).unwrap() {
        HubFrame::Ack { next_seq } => Some(next_seq),
        other => panic!("expected an Ack, got {other:?}"),
    }
}

/// A client that sends 5-record batches of worker 7 and reads the acks.
struct Sender {
    s: UnixStream,
    next: u64,
}

const SESSION: u64 = 0x5e55;

impl Sender {
    fn connect(socket: &std::path::Path, first_seq: u64) -> Sender {
        let mut s = connect(socket);
        hello(&mut s, SESSION, first_seq);
        Sender { s, next: first_seq }
    }

    /// Sends the next batch; whether it was acknowledged within `limit`.
    fn send(&mut self, limit: Duration) -> bool {
        self.s.write_all(&batch_frame(7, self.next, 5)).unwrap();
        self.next += 5;
        ack_within(&mut self.s, limit) == Some(self.next)
    }

    /// Resends everything from `from` (what a client holds unacknowledged).
    fn resend_from(socket: &std::path::Path, from: u64, to: u64) -> Sender {
        let mut s = Sender::connect(socket, from);
        while s.next < to {
            s.s.write_all(&batch_frame(7, s.next, 5)).unwrap();
            s.next += 5;
        }
        assert_eq!(
            ack_within(&mut s.s, Duration::from_secs(10)),
            Some(to),
            "the resent records are acknowledged"
        );
        s
    }
}

/// Sends batches until one is not acknowledged (the journal's disk is full:
/// its last page takes a few more entries first); returns its first seq.
fn send_until_unacknowledged(sender: &mut Sender) -> u64 {
    for _ in 0..500 {
        if !sender.send(Duration::from_millis(1000)) {
            return sender.next - 5;
        }
    }
    panic!("every batch was acknowledged although the journal's disk is full");
}

#[test]
fn a_full_journal_disk_acknowledges_nothing_and_no_sigkill_loses_or_repeats_a_record() {
    let dir = Dir::new();
    let state = dir.path("state");
    let mount = Mount::tmpfs(&state, "size=256k,mode=0700");
    let cfg = config_with(&dir, &format!("state_dir = {state:?}"), &[], "");
    let out = dir.path("out.log");
    let mut hub = HubProc::start(&dir, &cfg);
    let mut sender = Sender::connect(&hub.socket, 1);
    assert!(sender.send(Duration::from_secs(10)), "acknowledged while the journal can be written");

    // 1. The disk fills up: what the journal cannot vouch for is never
    // acknowledged, however long the client waits.
    mount.fill("filler");
    let unacked_from = send_until_unacknowledged(&mut sender);
    assert_eq!(
        ack_within(&mut sender.s, Duration::from_millis(1500)),
        None,
        "acknowledged without a journal entry"
    );
    let v = stats(&hub.socket);
    assert!(handler(&v, "file")["journal_errors"].as_u64().unwrap() > 0, "{v}");
    // ... and the hub is killed while the disk is still full.
    hub.signal(libc::SIGKILL);
    hub.child.wait().unwrap();
    std::fs::remove_file(state.join("filler")).unwrap();
    hub = HubProc::start(&dir, &cfg);
    assert!(hub.stderr().contains("never acknowledged"), "{}", hub.stderr());
    let mut sender = Sender::resend_from(&hub.socket, unacked_from, unacked_from + 5);

    // 2. The disk fills up and recovers, the journal goes on, then a SIGKILL:
    // the entries after the failed ones count.
    mount.fill("filler");
    send_until_unacknowledged(&mut sender);
    std::fs::remove_file(state.join("filler")).unwrap();
    assert_eq!(
        ack_within(&mut sender.s, Duration::from_secs(10)),
        Some(sender.next),
        "acknowledged once the journal has room again"
    );
    for _ in 0..20 {
        assert!(sender.send(Duration::from_secs(10)));
    }
    let last = sender.next;
    let written = std::fs::metadata(&out).unwrap().len();
    hub.signal(libc::SIGKILL);
    hub.child.wait().unwrap();
    hub = HubProc::start(&dir, &cfg);
    assert_eq!(
        std::fs::metadata(&out).unwrap().len(),
        written,
        "nothing acknowledged was cut: {}",
        hub.stderr()
    );
    drop(sender);
    hub.stop();
    let (seqs, other) = sequences(&out);
    assert!(other.is_empty(), "{other:?}");
    assert_complete(&seqs, 7, 0, last - 1);
}

/// `x.y` and `x_y` were one journal file; each handler now has its own, and
/// both files come through a SIGKILL exactly once.
#[test]
fn handler_names_that_looked_alike_have_journals_of_their_own() {
    const N: u64 = 100_000;
    let dir = Dir::new();
    let (a, b) = (dir.path("a.log"), dir.path("b.log"));
    let cfg = config_with(
        &dir,
        "",
        &["x.y", "x_y"],
        &format!(
            "[handlers.\"x.y\"]\nclass = \"FileHandler\"\nfilename = {a:?}\n[handlers.x_y]\nclass = \"FileHandler\"\nfilename = {b:?}\n"
        ),
    );
    let mut hub = HubProc::start(&dir, &cfg);
    let journals = || -> Vec<String> {
        std::fs::read_dir(dir.tmp.path())
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".journal"))
            .collect()
    };
    // The socket listens before the journals are opened (connections wait in its backlog).
    wait_until(Duration::from_secs(10), || journals().len() >= 3);
    assert_eq!(journals().len(), 3, "one journal per handler: {:?}", journals());
    let workers: Vec<_> = (0..4).map(|i| worker(&hub.socket, i, N, &["--message-bytes", "40"])).collect();
    assert!(
        wait_until(Duration::from_secs(60), || std::fs::metadata(&b).map_or(0, |m| m.len()) > 4 * N * 33 / 3)
    );
    hub.signal(libc::SIGKILL);
    hub.child.wait().unwrap();
    hub = HubProc::start(&dir, &cfg);
    workers.into_iter().for_each(finish_worker);
    hub.stop();
    for path in [&a, &b] {
        let (seqs, other) = sequences(path);
        assert!(other.is_empty(), "{other:?}");
        for w in 0..4 {
            assert_complete(&seqs, w, 0, N);
        }
    }
}

/// Every file of `dir` whose name starts with `base`: the current file and
/// its backups (and, for the watched handler, the files moved away).
fn family(dir: &Dir, base: &str) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir.tmp.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(base))
        .map(|e| e.path())
        .collect();
    files.sort();
    files
}

fn family_bytes(dir: &Dir, base: &str) -> u64 {
    family(dir, base).iter().map(|p| std::fs::metadata(p).map_or(0, |m| m.len())).sum()
}

/// 4 workers log through one file handler while the hub is SIGKILLed three
/// times with rotations in flight (and `during` runs beside, for an external
/// `mv`); then every record is in the current file or a backup exactly once,
/// and every line is whole.
fn three_sigkills_through(handler: &str, during: impl Fn(&Dir) + Sync) {
    const WORKERS: u32 = 4;
    const N: u64 = 30_000;
    let dir = Dir::new();
    let base = dir.path("app.log");
    let cfg = dir.write(
        "hub.toml",
        &format!("{}filename = {base:?}\n\n[root]\nlevel = \"NOTSET\"\nhandlers = [\"h\"]\n", handler),
    );
    let mut hub = HubProc::start(&dir, &cfg);
    // Paced, so that every worker is mid-run at each kill.
    let mut workers: Vec<_> = (0..WORKERS)
        .map(|i| worker(&hub.socket, i, N, &["--message-bytes", "40", "--interval-us", "150"]))
        .collect();
    let total = u64::from(WORKERS) * N * 33;
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                during(&dir);
                std::thread::sleep(Duration::from_millis(150));
            }
        });
        for quarter in 1..=3 {
            let reached =
                wait_until(Duration::from_secs(120), || family_bytes(&dir, "app.log") >= total * quarter / 4);
            assert!(
                reached,
                "the output stopped growing at {} bytes: {}",
                family_bytes(&dir, "app.log"),
                hub.stderr()
            );
            for (w, child) in workers.iter_mut().enumerate() {
                assert!(child.try_wait().unwrap().is_none(), "worker {w} finished before kill {quarter}");
            }
            hub.signal(libc::SIGKILL);
            hub.child.wait().expect("reap the killed hub");
            hub = HubProc::start(&dir, &cfg);
        }
        let reports: Vec<_> = workers.into_iter().map(worker_report).collect();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for (w, r) in reports.iter().enumerate() {
            assert_eq!(r["dropped"], 0, "worker {w}: {r}");
            assert!(r["connects"].as_u64().unwrap() >= 2, "worker {w} reconnected: {r}");
        }
    });
    let err = hub.stop();
    let files = family(&dir, "app.log");
    assert!(files.len() >= 4, "rotations happened: {files:?}");
    let mut all = Seqs::new();
    for f in &files {
        let (seqs, other) = sequences(f);
        assert!(
            other.is_empty(),
            "a torn or foreign line in {}: {:?}",
            f.display(),
            &other[..other.len().min(3)]
        );
        for (k, v) in seqs {
            all.entry(k).or_default().extend(v);
        }
    }
    for w in 0..WORKERS {
        let got = all.entry((w, 0)).or_default();
        got.sort_unstable();
        let dups = got.windows(2).filter(|p| p[0] == p[1]).count();
        got.dedup();
        assert_eq!(
            (got.len() as u64, dups),
            (N, 0),
            "worker {w}: distinct records and duplicates; hub: {err}"
        );
    }
}

#[test]
fn rotating_file_handler_through_three_sigkills_writes_every_record_exactly_once() {
    three_sigkills_through(
        "[handlers.h]\nclass = \"RotatingFileHandler\"\nmax_bytes = 65536\nbackup_count = 10000\n",
        |_| {},
    );
}

#[test]
fn timed_rotating_file_handler_through_three_sigkills_writes_every_record_exactly_once() {
    three_sigkills_through("[handlers.h]\nclass = \"TimedRotatingFileHandler\"\nwhen = \"S\"\n", |_| {});
}

#[test]
fn watched_file_handler_through_three_sigkills_and_moves_writes_every_record_exactly_once() {
    let moves = std::sync::atomic::AtomicU32::new(0);
    three_sigkills_through("[handlers.h]\nclass = \"WatchedFileHandler\"\n", |dir| {
        // What logrotate does without copytruncate: the file is moved aside.
        let k = moves.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let _ = std::fs::rename(dir.path("app.log"), dir.path(&format!("app.log.moved{k:05}")));
    });
}
