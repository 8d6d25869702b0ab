//! Nothing lost: pools of real worker processes through a real hub.

use std::time::Duration;

use crate::util::*;

#[test]
fn eight_workers_deliver_400k_records_exactly_once_and_in_order() {
    let dir = Dir::new();
    let hub = HubProc::start(&dir, &dir.file_config());
    let workers: Vec<_> = (0..8).map(|i| worker(&hub.socket, i, 50_000, &[])).collect();
    workers.into_iter().for_each(finish_worker);
    let err = hub.stop();
    let (seqs, other) = sequences(&dir.path("out.log"));
    assert!(other.is_empty(), "unexpected lines: {:?}", &other[..other.len().min(5)]);
    for w in 0..8 {
        assert_complete(&seqs, w, 0, 50_000);
    }
    let total: usize = seqs.values().map(Vec::len).sum();
    assert_eq!(total, 400_000);
    assert!(err.contains("400000 records received"), "hub summary: {err}");
}

#[test]
fn threads_of_one_process_each_keep_their_order() {
    let dir = Dir::new();
    let hub = HubProc::start(&dir, &dir.file_config());
    let workers: Vec<_> = (0..2).map(|i| worker(&hub.socket, i, 40_000, &["--threads", "4"])).collect();
    workers.into_iter().for_each(finish_worker);
    hub.stop();
    let (seqs, _) = sequences(&dir.path("out.log"));
    for w in 0..2 {
        for t in 0..4 {
            assert_complete(&seqs, w, t, 10_000);
        }
    }
}

#[test]
fn workers_started_before_the_hub_lose_nothing() {
    let dir = Dir::new();
    let config = dir.file_config();
    // 100,000 records of ~100 bytes are more than a worker can hold (1 MiB
    // queue + 8 MiB unacknowledged): with the default Block policy the
    // workers wait for the hub instead of dropping.
    let workers: Vec<_> = (0..4).map(|i| worker(&dir.socket(), i, 100_000, &[])).collect();
    std::thread::sleep(Duration::from_secs(1));
    let hub = HubProc::start(&dir, &config);
    workers.into_iter().for_each(finish_worker);
    hub.stop();
    let (seqs, other) = sequences(&dir.path("out.log"));
    assert!(other.is_empty(), "unexpected lines: {other:?}");
    for w in 0..4 {
        assert_complete(&seqs, w, 0, 100_000);
    }
}

#[test]
fn a_worker_killed_mid_run_disturbs_neither_the_hub_nor_the_others() {
    let dir = Dir::new();
    let hub = HubProc::start(&dir, &dir.file_config());
    // Worker 99 logs slowly, so it is surely mid-run when killed.
    let mut victim = worker(&hub.socket, 99, 10_000_000, &["--interval-us", "20"]);
    let others: Vec<_> = (0..7).map(|i| worker(&hub.socket, i, 50_000, &[])).collect();
    std::thread::sleep(Duration::from_millis(700));
    victim.kill().expect("SIGKILL the worker");
    victim.wait().expect("reap");
    others.into_iter().for_each(finish_worker);
    // The hub still serves new clients after the kill.
    let sent = run(&["send", "--socket", hub.socket.to_str().unwrap(), "w500 t0 s0 after the kill"]);
    assert!(sent.status.success(), "send after kill: {}", String::from_utf8_lossy(&sent.stderr));
    hub.stop();
    let (seqs, other) = sequences(&dir.path("out.log"));
    assert!(other.is_empty(), "unexpected lines: {other:?}");
    for w in 0..7 {
        assert_complete(&seqs, w, 0, 50_000);
    }
    assert_complete(&seqs, 500, 0, 1);
    // What the victim had delivered is a clean prefix: no gap, no duplicate.
    let victim_seqs = &seqs[&(99, 0)];
    assert!(!victim_seqs.is_empty(), "the victim delivered nothing before being killed");
    assert_complete(&seqs, 99, 0, victim_seqs.len() as u64);
}

#[test]
fn drop_newest_counts_what_it_drops_and_reports_it_to_the_hub() {
    let dir = Dir::new();
    let config = dir.file_config();
    // No hub for a while: the queue (1 MiB) and the unacknowledged buffer
    // (8 MiB) fill up, and the worker must drop, count and report.
    let w = worker(&dir.socket(), 1, 300_000, &["--drop-newest", "--message-bytes", "200"]);
    std::thread::sleep(Duration::from_millis(1500));
    let hub = HubProc::start(&dir, &config);
    let out = w.wait_with_output().expect("worker");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let dropped: u64 = stdout
        .split("\"dropped\":")
        .nth(1)
        .and_then(|s| s.trim_end_matches(|c: char| !c.is_ascii_digit()).parse().ok())
        .unwrap_or_else(|| panic!("no drop count in {stdout:?}"));
    hub.stop();
    let (seqs, other) = sequences(&dir.path("out.log"));
    let delivered = seqs.get(&(1, 0)).map_or(0, Vec::len) as u64;
    assert!(dropped > 0, "expected drops with no hub for 1.5 s");
    assert_eq!(delivered + dropped, 300_000, "delivered {delivered} + dropped {dropped}");
    // Delivered records are in order without duplicates.
    let s = &seqs[&(1, 0)];
    assert!(s.windows(2).all(|w| w[0] < w[1]), "out of order or duplicated");
    let reported: u64 = other
        .iter()
        .filter_map(|l| l.strip_prefix("logfunnel client dropped "))
        .map(|l| l.split(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(reported, dropped, "drop reports in the output: {other:?}");
}

#[test]
fn a_hub_restarted_mid_run_delivers_every_record_exactly_once() {
    let dir = Dir::new();
    let config = dir.file_config();
    let hub = HubProc::start(&dir, &config);
    // Slow enough to be mid-run at the restart.
    let workers: Vec<_> =
        (0..4).map(|i| worker(&dir.socket(), i, 20_000, &["--interval-us", "40"])).collect();
    std::thread::sleep(Duration::from_millis(500));
    hub.stop(); // SIGTERM: drains what it acknowledged
    std::thread::sleep(Duration::from_millis(300));
    let hub = HubProc::start(&dir, &config); // appends to the same file
    workers.into_iter().for_each(finish_worker);
    hub.stop();
    let (seqs, other) = sequences(&dir.path("out.log"));
    assert!(other.is_empty(), "unexpected lines: {other:?}");
    for w in 0..4 {
        assert_complete(&seqs, w, 0, 20_000);
    }
}
