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
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).expect("the worker's JSON line");
    let dropped = report["dropped"].as_u64().unwrap_or_else(|| panic!("no drop count in {stdout:?}"));
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

#[test]
fn a_saturated_hub_slows_the_workers_down_without_losing_or_reconnecting() {
    use std::io::Read;
    let dir = Dir::new();
    // Short queues everywhere, and a handler writing to a pipe nobody reads
    // for 7 s: backpressure reaches the workers' log calls.
    let cfg = dir.write(
        "hub.toml",
        "[hub]\nqueue_capacity = 2\n[handlers.out]\nclass = \"StreamHandler\"\nstream = \"ext://sys.stdout\"\nqueue_capacity = 1000\n[root]\nlevel = \"NOTSET\"\nhandlers = [\"out\"]\n",
    );
    let mut hub = std::process::Command::new(BIN)
        .args(["hub", "--config", cfg.to_str().unwrap(), "--socket", dir.socket().to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(dir.socket()).is_err() {
        assert!(std::time::Instant::now() < deadline, "hub did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let workers: Vec<_> = (0..2).map(|i| worker(&dir.socket(), i, 150_000, &[])).collect();
    std::thread::sleep(Duration::from_secs(7));
    let mut stdout = hub.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        stdout.read_to_string(&mut text).unwrap();
        text
    });
    for w in workers {
        let out = w.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout} {}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("\"dropped\":0"), "{stdout}");
        assert!(stdout.contains("\"connects\":1}"), "the worker reconnected: {stdout}");
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(hub.id() as i32, libc::SIGTERM) };
    assert!(hub.wait().unwrap().success());
    let text = reader.join().unwrap();
    let path = dir.write("out.log", &text);
    let (seqs, other) = sequences(&path);
    assert!(other.is_empty(), "{:?}", &other[..other.len().min(3)]);
    for w in 0..2 {
        assert_complete(&seqs, w, 0, 150_000);
    }
}
