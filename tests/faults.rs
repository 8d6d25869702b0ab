//! Faults, injected for real: a hub SIGKILLed mid-run, clients that die in
//! the middle of a frame, a full disk, a handler that hangs, clients that
//! idle or trickle. Each test ends with the accounting: produced = delivered
//! once + dropped and counted under a reason.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use logfunnel_protocol::{Batch, ClientFrame, FrameBuf, HubFrame, Record, encode_client_frame};

use crate::bad_clients::{connect, hello, read_hub_frame};
use crate::util::*;

fn file_len(p: &std::path::Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// The highest sequence number in the last 256 KiB of `p`: how far the
/// fastest worker has come (the tail holds recent lines of every live worker).
fn fastest_in_tail(p: &std::path::Path) -> u64 {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(p) else { return 0 };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let from = len.saturating_sub(256 << 10);
    let mut tail = Vec::new();
    if f.seek(SeekFrom::Start(from)).is_err() || f.read_to_end(&mut tail).is_err() {
        return 0;
    }
    let text = String::from_utf8_lossy(&tail);
    // The first line may be cut by the seek.
    let lines = text.lines().skip(usize::from(from > 0));
    sequences_in(lines).0.values().filter_map(|s| s.iter().max().copied()).max().unwrap_or(0)
}

#[test]
fn eight_workers_through_two_hub_sigkills_deliver_every_record_exactly_once() {
    const N: u64 = 200_000;
    let dir = Dir::new();
    let config = dir.file_config();
    let out = dir.path("out.log");
    let mut hub = HubProc::start(&dir, &config);
    let workers: Vec<_> = (0..8).map(|i| worker(&hub.socket, i, N, &["--message-bytes", "40"])).collect();
    // Kill when the fastest worker is a fifth, then half, of the way: every
    // worker is then mid-run at both kills (they block while the hub is down),
    // however unevenly a loaded machine schedules them.
    let mut truncations = 0;
    for fraction in [5, 2] {
        assert!(
            wait_until(Duration::from_secs(120), || fastest_in_tail(&out) >= N / fraction),
            "the output stopped growing at {} bytes: {}",
            file_len(&out),
            hub.stderr()
        );
        hub.signal(libc::SIGKILL);
        hub.child.wait().expect("reap the killed hub");
        hub = HubProc::start(&dir, &config);
        truncations += 1;
    }
    let reports: Vec<_> = workers.into_iter().map(worker_report).collect();
    let err = hub.stop();
    assert_eq!(truncations, 2);
    let (seqs, other) = sequences(&out);
    assert!(other.is_empty(), "unexpected lines: {:?}", &other[..other.len().min(5)]);
    for (w, r) in reports.iter().enumerate() {
        assert_eq!(r["dropped"], 0, "worker {w}: {r}");
        assert!(r["connects"].as_u64().unwrap() >= 3, "worker {w} reconnected after each kill: {r}");
        assert_complete(&seqs, w as u32, 0, N);
    }
    let total: usize = seqs.values().map(Vec::len).sum();
    assert_eq!(total as u64, 8 * N, "every record exactly once; hub: {err}");
}

#[test]
fn a_client_too_small_for_a_hub_outage_counts_and_reports_what_it_dropped() {
    const N: u64 = 60_000;
    let dir = Dir::new();
    let config = dir.file_config();
    let mut hub = HubProc::start(&dir, &config);
    // 64 KiB of queue and 64 KiB unacknowledged: far less than 1.5 s of records.
    let w = worker(
        &hub.socket,
        3,
        N,
        &["--drop-newest", "--max-unacked", "65536", "--queue-bytes", "65536", "--interval-us", "10"],
    );
    std::thread::sleep(Duration::from_millis(300));
    hub.signal(libc::SIGKILL);
    hub.child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    hub = HubProc::start(&dir, &config);
    let report = worker_report(w);
    hub.stop();
    let dropped = report["dropped"].as_u64().unwrap();
    let (seqs, other) = sequences(&dir.path("out.log"));
    let got = seqs.get(&(3, 0)).cloned().unwrap_or_default();
    assert!(dropped > 0, "a 1.5 s outage must overflow 128 KiB: {report}");
    assert!(got.windows(2).all(|p| p[0] < p[1]), "duplicated or reordered");
    assert_eq!(got.len() as u64 + dropped, N, "delivered {} + dropped {dropped} = produced", got.len());
    let reported: u64 = other
        .iter()
        .filter_map(|l| l.strip_prefix("logfunnel client dropped "))
        .map(|l| l.split(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(reported, dropped, "every drop is reported as a record: {other:?}");
}

pub(crate) fn batch_frame(worker: u32, first_seq: u64, n: u64) -> Vec<u8> {
    let records = (first_seq..first_seq + n)
        .map(|seq| Record::new(20, "raw", format!("w{worker} t0 s{}", seq - 1)))
        .collect();
    let mut f = FrameBuf::default();
    encode_client_frame(&ClientFrame::Batch(Batch { first_seq, records }), &mut f).unwrap();
    f.as_bytes().to_vec()
}

#[test]
fn a_client_that_dies_mid_frame_loses_only_that_frame_and_nobody_else_notices() {
    let dir = Dir::new();
    let hub = HubProc::start(&dir, &dir.file_config());
    let pool: Vec<_> = (0..3).map(|i| worker(&hub.socket, i, 50_000, &[])).collect();
    let next = batch_frame(0, 6, 5);
    // Every cut of the second frame: inside the length prefix, inside the
    // header, inside a record, one byte short.
    let cuts: Vec<usize> = (1..next.len()).step_by(3).chain([next.len() - 1]).collect();
    for (i, &cut) in cuts.iter().enumerate() {
        let w = 100 + i as u32;
        let mut s = connect(&hub.socket);
        assert_eq!(hello(&mut s, 10_000 + w as u64, 1), 1);
        s.write_all(&batch_frame(w, 1, 5)).unwrap();
        assert_eq!(read_hub_frame(&mut s), HubFrame::Ack { next_seq: 6 });
        s.write_all(&batch_frame(w, 6, 5)[..cut]).unwrap();
        drop(s); // what the kernel does when a client is SIGKILLed
    }
    pool.into_iter().for_each(finish_worker);
    let v = stats_when(&hub.socket, |v| v["truncated_frames"] == cuts.len() as u64);
    assert_eq!(v["truncated_frames"], cuts.len() as u64, "{v}");
    assert_eq!(v["bad_frames"], 0, "{v}");
    hub.stop();
    let (seqs, other) = sequences(&dir.path("out.log"));
    assert!(other.is_empty(), "{other:?}");
    for i in 0..cuts.len() {
        assert_complete(&seqs, 100 + i as u32, 0, 5);
    }
    for w in 0..3 {
        assert_complete(&seqs, w, 0, 50_000);
    }
}

#[test]
fn a_full_disk_counts_errors_spares_other_handlers_and_writing_resumes() {
    let dir = Dir::new();
    let full = dir.path("full.log");
    std::os::unix::fs::symlink("/dev/full", &full).unwrap();
    let cfg = config_with(
        &dir,
        "",
        &["disk"],
        &format!("[handlers.disk]\nclass = \"FileHandler\"\nfilename = {full:?}\n"),
    );
    let hub = HubProc::start(&dir, &cfg);
    finish_worker(worker(&hub.socket, 1, 20_000, &[]));
    let v = stats_when(&hub.socket, |v| handler(v, "disk")["failed"] == 20_000);
    let disk = handler(&v, "disk");
    assert_eq!((disk["failed"].as_u64(), disk["emitted"].as_u64()), (Some(20_000), Some(0)), "{disk}");
    assert_eq!(handler(&v, "file")["emitted"], 20_000, "the other handler is unaffected");
    // Space returns: the path now leads to a disk with room; SIGHUP reopens.
    std::fs::remove_file(&full).unwrap();
    std::fs::write(&full, b"").unwrap();
    hub.signal(libc::SIGHUP);
    assert!(wait_until(Duration::from_secs(5), || hub.stderr().contains("reopening")));
    std::thread::sleep(Duration::from_millis(200));
    finish_worker(worker(&hub.socket, 2, 20_000, &[]));
    let err = hub.stop();
    assert!(err.contains("No space left on device"), "{err}");
    let (seqs, other) = sequences(&full);
    assert!(other.is_empty(), "whole lines only: {other:?}");
    assert_complete(&seqs, 2, 0, 20_000);
    let (seqs, _) = sequences(&dir.path("out.log"));
    assert_complete(&seqs, 1, 0, 20_000);
    assert_complete(&seqs, 2, 0, 20_000);
}

pub(crate) fn mkfifo(path: &std::path::Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

#[test]
fn a_hung_handler_applies_its_policy_stalls_nothing_and_is_reported_at_the_shutdown_deadline() {
    const N: u64 = 50_000;
    let dir = Dir::new();
    let fifo = dir.path("nobody-reads.fifo");
    mkfifo(&fifo);
    // Opening a FIFO for writing blocks until a reader comes: it never does.
    let cfg = config_with(
        &dir,
        "shutdown_timeout = 2",
        &["hung"],
        &format!(
            "[handlers.hung]\nclass = \"FileHandler\"\nfilename = {fifo:?}\ndelay = true\nqueue_capacity = 1000\noverflow = \"drop_newest\"\n"
        ),
    );
    let hub = HubProc::start(&dir, &cfg);
    let started = Instant::now();
    let workers: Vec<_> = (0..4).map(|i| worker(&hub.socket, i, N, &[])).collect();
    workers.into_iter().for_each(finish_worker);
    assert!(started.elapsed() < Duration::from_secs(60), "the workers were stalled");
    let v = stats_when(&hub.socket, |v| handler(v, "file")["emitted"] == 4 * N);
    let hung = handler(&v, "hung");
    let (received, dropped) = (hung["received"].as_u64().unwrap(), hung["dropped"].as_u64().unwrap());
    assert_eq!(received + dropped, 4 * N, "every record routed to it is queued or counted dropped: {hung}");
    assert!(dropped > 0 && received <= 1000 + 5000, "{hung}");
    assert_eq!(hung["undelivered"], received, "{hung}");
    let stop = Instant::now();
    let err = hub.stop();
    let took = stop.elapsed();
    assert!(took < Duration::from_secs(8), "shutdown took {took:?} with a 2 s deadline");
    assert!(
        err.contains(&format!(
            "handler \"hung\" (FileHandler): {received} records not delivered by the shutdown deadline"
        )),
        "{err}"
    );
    let (seqs, _) = sequences(&dir.path("out.log"));
    for w in 0..4 {
        assert_complete(&seqs, w, 0, N);
    }
}

#[test]
fn idle_and_trickling_clients_are_timed_out_and_cost_nothing_after() {
    let dir = Dir::new();
    let cfg = config_with(
        &dir,
        "handshake_timeout = 1\nidle_timeout = 2\nframe_timeout = 1\nmax_connections = 2000",
        &[],
        "",
    );
    let hub = HubProc::start(&dir, &cfg);
    let pid = hub.child.id();
    std::thread::sleep(Duration::from_millis(200));
    let threads0 = proc_status(pid, "Threads");
    // 1,000 clients that never say a word; each round must time all of them out.
    let mut timed_out = 0u64;
    let mut silent_round = |extra: u64| {
        let silent: Vec<UnixStream> = (0..1000).map(|_| connect(&hub.socket)).collect();
        timed_out += 1000 + extra;
        let v = stats_when(&hub.socket, |v| v["timed_out"] == timed_out);
        assert_eq!(v["timed_out"], timed_out, "{v}");
        drop(silent);
        assert!(
            wait_until(Duration::from_secs(5), || proc_status(pid, "Threads") <= threads0 + 1),
            "reader threads left behind: {} (baseline {threads0})",
            proc_status(pid, "Threads")
        );
        proc_status(pid, "VmRSS")
    };
    // Round one also has 20 that trickle their hello a byte at a time, 20
    // that shake hands then idle, 20 that start a frame and stall.
    let mut shaken = Vec::new();
    for i in 0..40 {
        let mut s = connect(&hub.socket);
        hello(&mut s, 50_000 + i, 1);
        if i % 2 == 0 {
            s.write_all(&batch_frame(9, 1, 3)[..6]).unwrap();
        }
        shaken.push(s);
    }
    let trickle = std::thread::spawn({
        let socket = hub.socket.clone();
        move || {
            let mut ts: Vec<UnixStream> = (0..20).map(|_| connect(&socket)).collect();
            for _ in 0..8 {
                for s in &mut ts {
                    let _ = s.write_all(b"L");
                }
                std::thread::sleep(Duration::from_millis(300));
            }
            ts
        }
    });
    // Legitimate clients are served meanwhile.
    finish_worker(worker(&hub.socket, 1, 20_000, &[]));
    let rss1 = silent_round(60);
    drop((trickle.join().unwrap(), shaken));
    // A leak grows with every round; caches (thread stacks, allocator arenas) do not.
    let rss2 = silent_round(0);
    let rss3 = silent_round(0);
    assert!(rss3 < rss1 + 5 * 1024, "RSS after rounds: {rss1} kB, {rss2} kB, {rss3} kB");
    hub.stop();
    let (seqs, _) = sequences(&dir.path("out.log"));
    assert_complete(&seqs, 1, 0, 20_000);
}

#[test]
fn connections_beyond_max_connections_are_refused_and_counted() {
    let dir = Dir::new();
    let cfg = config_with(&dir, "max_connections = 20", &[], "");
    let hub = HubProc::start(&dir, &cfg);
    let held: Vec<UnixStream> = (0..30).map(|_| connect(&hub.socket)).collect();
    // `stats` itself needs a connection: it is refused too until some close.
    std::thread::sleep(Duration::from_millis(300));
    drop(held);
    let v = stats_when(&hub.socket, |v| v["over_limit"].as_u64() >= Some(10));
    assert!(v["over_limit"].as_u64().unwrap() >= 10, "{v}");
    finish_worker(worker(&hub.socket, 1, 1000, &[]));
    hub.stop();
}

#[test]
fn workers_that_exit_right_after_logging_lose_nothing_through_the_guard() {
    const N: u64 = 100_000;
    let dir = Dir::new();
    let hub = HubProc::start(&dir, &dir.file_config());
    let modes = ["finish", "drop", "flush-exit", "exit"];
    let workers: Vec<_> = modes
        .iter()
        .enumerate()
        .map(|(i, m)| worker(&hub.socket, i as u32, N, &["--exit-mode", m]))
        .collect();
    for (w, m) in workers.into_iter().zip(modes) {
        let out = w.wait_with_output().unwrap();
        assert!(out.status.success(), "{m}: {}", String::from_utf8_lossy(&out.stderr));
    }
    hub.stop();
    let (seqs, other) = sequences(&dir.path("out.log"));
    assert!(other.is_empty(), "{other:?}");
    // The guard's paths (finish, drop, an explicit flush before exit) lose
    // nothing, and neither does `std::process::exit` without a flush: the
    // client `init` installed flushes at exit.
    for w in 0..4 {
        assert_complete(&seqs, w, 0, N);
    }
}

#[test]
fn connection_churn_leaves_no_thread_or_descriptor_behind() {
    let dir = Dir::new();
    let hub = HubProc::start(&dir, &dir.file_config());
    let pid = hub.child.id();
    let fds = || std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count() as u64;
    std::thread::sleep(Duration::from_millis(200));
    let (threads0, fds0) = (proc_status(pid, "Threads"), fds());
    // 160 short-lived workers, 32 at a time, 2,000 records each.
    for wave in 0..5u32 {
        let ws: Vec<_> = (0..32).map(|i| worker(&hub.socket, wave * 32 + i, 2000, &[])).collect();
        ws.into_iter().for_each(finish_worker);
    }
    assert!(
        wait_until(Duration::from_secs(5), || proc_status(pid, "Threads") <= threads0 && fds() <= fds0 + 1)
    );
    let (threads1, fds1) = (proc_status(pid, "Threads"), fds());
    assert!(threads1 <= threads0 && fds1 <= fds0 + 1, "threads {threads0} → {threads1}, fds {fds0} → {fds1}");
    hub.stop();
    let (seqs, other) = sequences(&dir.path("out.log"));
    assert!(other.is_empty(), "{other:?}");
    for w in 0..160 {
        assert_complete(&seqs, w, 0, 2000);
    }
}

/// F8: a worker whose four threads are logging forks 1,000 children one
/// after another; each child logs 100 records and flushes. Nothing
/// deadlocks, every child's records arrive under their own session, the
/// parent's queued records are never sent twice (the children inherit
/// them, but must not send them), and no frame is mangled.
#[test]
fn forked_children_log_on_their_own_and_never_resend_the_parents_records() {
    let dir = Dir::new();
    let hub = HubProc::start(&dir, &dir.file_config());
    let parent = worker(
        &hub.socket,
        0,
        40_000,
        &["--threads", "4", "--interval-us", "50", "--fork-children", "1000", "--child-records", "100"],
    );
    let out = parent.wait_with_output().expect("worker output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "worker failed: {stdout} {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("\"children_failed\":0"), "some children failed or hung: {stdout}");
    let s = stats(&hub.socket);
    assert_eq!(s["bad_frames"], 0, "{s}");
    hub.stop();
    let (seqs, other) = sequences(&dir.path("out.log"));
    assert!(other.is_empty(), "unexpected lines: {:?}", &other[..other.len().min(3)]);
    for t in 0..4 {
        assert_complete(&seqs, 0, t, 10_000);
    }
    for child in 1..=1000 {
        assert_complete(&seqs, child, 0, 100);
    }
    assert_eq!(seqs.len(), 4 + 1000, "records from an unexpected worker or thread");
}

/// F5 on a real filesystem: a FileHandler on a tiny tmpfs that fills up.
/// Records that do not fit are counted as failed, every line in the file
/// is whole (a short write is cut back, never left torn), the other
/// handler is unaffected, and writing resumes as soon as space is freed.
#[test]
fn a_tiny_filesystem_fills_up_lines_stay_whole_and_writing_resumes_when_space_is_freed() {
    let dir = Dir::new();
    let mnt = dir.path("tiny");
    let _mount = Mount::tmpfs(&mnt, "size=1m");
    // Leave ~200 KiB free.
    std::fs::write(mnt.join("filler"), vec![b'f'; 800 << 10]).unwrap();
    let log = mnt.join("app.log");
    let cfg = config_with(
        &dir,
        "",
        &["disk"],
        &format!("[handlers.disk]\nclass = \"FileHandler\"\nfilename = {log:?}\n"),
    );
    let hub = HubProc::start(&dir, &cfg);
    finish_worker(worker(&hub.socket, 1, 20_000, &[]));
    let v = stats_when(&hub.socket, |v| {
        let d = handler(v, "disk");
        d["emitted"].as_u64().unwrap() + d["failed"].as_u64().unwrap() == 20_000
    });
    let disk = handler(&v, "disk").clone();
    let (emitted, failed) = (disk["emitted"].as_u64().unwrap(), disk["failed"].as_u64().unwrap());
    assert!(failed > 0 && emitted > 0, "the disk should fill part-way: {disk}");
    assert_eq!(handler(&v, "file")["emitted"], 20_000, "the other handler is unaffected");
    let (seqs, other) = sequences(&log);
    assert!(other.is_empty(), "a torn line: {:?}", &other[..other.len().min(3)]);
    let got = seqs.get(&(1, 0)).cloned().unwrap_or_default();
    assert_eq!(got.len() as u64, emitted, "the file holds exactly the records counted as emitted");
    assert!(got.windows(2).all(|w| w[0] < w[1]), "in order, no duplicates");

    // Space is freed: the next records are written, each on a line of its own.
    std::fs::remove_file(mnt.join("filler")).unwrap();
    finish_worker(worker(&hub.socket, 2, 2_000, &[]));
    hub.stop();
    let (seqs, other) = sequences(&log);
    assert!(other.is_empty(), "a torn line: {:?}", &other[..other.len().min(3)]);
    assert_complete(&seqs, 2, 0, 2_000);
}
