//! What a new user meets first: the README's quick start pasted as a
//! script, commands run before the hub is up, a guard dropped at once or a
//! hub that never answers, and LOGFUNNEL_LEVEL.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::*;

/// The README's quick start, run as a bash script: the `cargo` line is left
/// out (the test puts the freshly built binary first on PATH), and the
/// socket goes into the test's own directory.
#[test]
fn the_readme_quick_start_runs_as_a_script() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = &readme[readme.find("## Quick start").expect("a Quick start section")..];
    let block = section.split("```sh\n").nth(1).and_then(|b| b.split("\n```").next()).expect("a sh block");
    let dir = Dir::new();
    let script: String = block
        .lines()
        .filter(|l| !l.starts_with("cargo "))
        .map(|l| l.replace("/tmp/demo", dir.tmp.path().to_str().unwrap()) + "\n")
        .collect();
    assert!(script.contains("logfunnel hub &") && script.contains("logfunnel send"), "{script}");
    let bin_dir = std::path::Path::new(BIN).parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    // Files, not pipes: the hub writes 20,000 lines to its stderr, more
    // than a pipe holds while nobody reads it.
    let file = |name: &str| std::fs::File::create(dir.path(name)).unwrap();
    let mut child = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .env("PATH", path)
        .env_remove("LOGFUNNEL_SOCKET")
        .stdin(Stdio::null())
        .stdout(file("stdout"))
        .stderr(file("stderr"))
        .process_group(0)
        .spawn()
        .unwrap();
    let status = wait_timeout(&mut child, Duration::from_secs(120));
    let read = |name: &str| std::fs::read_to_string(dir.path(name)).unwrap_or_default();
    let (stdout, stderr) = (read("stdout"), read("stderr"));
    let status = status.unwrap_or_else(|| {
        // SAFETY: the script's own process group (its hub included).
        unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
        panic!("the quick start did not finish in 120 s:\n{stdout}\n{stderr}")
    });
    assert!(status.success(), "quick start failed ({status}):\n{stdout}\n{stderr}");
    assert!(stderr.contains("WARNING  app.db ["), "the record reached the hub's stderr:\n{stderr}");
    assert!(stderr.contains("] disk almost full"), "{stderr}");
    assert!(stderr.contains("logfunnel hub: stopped: 20001 records received"), "{stderr}");
    assert!(stdout.contains("lost                                        0"), "{stdout}");
}

#[test]
fn send_stats_and_wait_wait_for_a_hub_that_is_starting() {
    let dir = Dir::new();
    let cfg = dir.file_config();
    let socket = dir.socket();
    let s = socket.to_str().unwrap().to_owned();
    let spawn = |args: &[&str]| {
        Command::new(BIN).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
    };
    // Started before the hub: each must wait for it rather than fail.
    let send = spawn(&["send", "--socket", &s, "--timeout", "20", "sent before the hub was up"]);
    let wait = spawn(&["wait", "--socket", &s, "--timeout", "20"]);
    let stats = spawn(&["stats", "--socket", &s, "--timeout", "20", "--json"]);
    std::thread::sleep(Duration::from_millis(300));
    let hub = HubProc::start(&dir, &cfg);
    for (what, child) in [("send", send), ("wait", wait), ("stats", stats)] {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
    }
    hub.stop();
    let text = std::fs::read_to_string(dir.path("out.log")).unwrap();
    assert_eq!(text, "sent before the hub was up\n");
    // No hub at all: `wait` gives up after its timeout, saying so.
    let out = run(&["wait", "--socket", &s, "--timeout", "0.3"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("no hub answers on {s} (waited 0.3s)")), "{err}");
}

#[test]
fn a_guard_dropped_at_once_still_delivers_and_records_after_finish_are_reported() {
    const N: u64 = 5000;
    let dir = Dir::new();
    let hub = HubProc::start(&dir, &dir.file_config());
    // `let _ = logfunnel_client::init()?;` drops the guard at once.
    let dropped = worker(&hub.socket, 0, N, &["--exit-mode", "early-drop"]);
    let out = dropped.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    // Guard::finish stops the client: what is logged later is not sent, and
    // the process says so on stderr at exit.
    let finished = worker(&hub.socket, 1, N, &["--exit-mode", "early-finish"]);
    let out = finished.wait_with_output().unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("logfunnel client: {N} records were logged after their client was stopped")),
        "{err}"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["after_stop"], N);
    hub.stop();
    let (seqs, other) = sequences(&dir.path("out.log"));
    assert!(other.is_empty(), "{other:?}");
    assert_complete(&seqs, 0, 0, N);
    assert!(!seqs.contains_key(&(1, 0)), "records after finish were sent");
}

#[test]
fn guard_finish_turns_records_the_hub_never_took_into_a_failing_exit() {
    let dir = Dir::new();
    // No hub on this socket: `guard.finish()?` returns the flush error.
    let child = worker(&dir.socket(), 0, 10, &["--flush-timeout-ms", "200"]);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("flushing to the hub: 10 records not yet acknowledged by the hub"), "{err}");
}

#[test]
fn logfunnel_level_directives_filter_records_in_the_worker() {
    let dir = Dir::new();
    let hub = HubProc::start(&dir, &dir.file_config());
    let with_level = |id: u32, logger: &str, level: &str| {
        Command::new(BIN)
            .args(["worker", "--id", &id.to_string(), "--records", "100", "--logger", logger])
            .env("LOGFUNNEL_SOCKET", &hub.socket)
            .env("LOGFUNNEL_LEVEL", level)
            .output()
            .unwrap()
    };
    for (id, logger) in [(0, "app.db"), (1, "app.db.pool"), (2, "app.web"), (3, "app.dbx")] {
        let out = with_level(id, logger, "warn,app.db=info");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let v = stats_when(&hub.socket, |v| handler(v, "file")["emitted"] == 200);
    // Filtered in the workers: the hub never received the others.
    assert_eq!(v["received"], 200, "{v}");
    let out = with_level(9, "app", "info,app.db=loud");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "LOGFUNNEL_LEVEL=\"info,app.db=loud\": directive 2 (\"app.db=loud\"): \"loud\" is not a level"
        ),
        "{err}"
    );
    hub.stop();
    let (seqs, _) = sequences(&dir.path("out.log"));
    assert_eq!(seqs.keys().map(|k| k.0).collect::<Vec<_>>(), [0, 1]);
}
