//! The command line contracts: check-config, send, socket handling.

use std::os::unix::fs::PermissionsExt;

use crate::util::*;

#[test]
fn check_config_accepts_a_good_file_and_names_every_problem_in_a_bad_one() {
    let dir = Dir::new();
    let good = dir.file_config();
    let out = run(&["check-config", good.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let bad = dir.write(
        "bad.toml",
        "[handlers.f]\nclass = \"FileHandler\"\nformatter = \"missing\"\n[root]\nlevel = \"LOUD\"\nhandlers = [\"f\", \"ghost\"]\n",
    );
    let out = run(&["check-config", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "handlers.f.filename: missing",
        "handlers.f.formatter: unknown formatter \"missing\"",
        "root.level:",
        "root.handlers[1]: unknown handler \"ghost\"",
    ] {
        assert!(err.contains(needle), "{needle:?} not in:\n{err}");
    }
    let broken = dir.write("broken.toml", "[handlers\n");
    let out = run(&["check-config", broken.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not valid TOML"));
}

#[test]
fn send_without_a_hub_fails_clearly() {
    let dir = Dir::new();
    let out = run(&["send", "--timeout", "0.2", "--socket", dir.socket().to_str().unwrap(), "hello"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no hub answers on"), "{err}");
    assert!(err.contains("(waited 0.2s)"), "{err}");
}

#[test]
fn send_delivers_with_level_and_logger_through_the_default_format() {
    let dir = Dir::new();
    let cfg = dir.write(
        "hub.toml",
        &format!(
            "[formatters.f]\nformat = \"%(levelname)s:%(name)s:%(message)s\"\n[handlers.file]\nclass = \"logging.FileHandler\"\nfilename = {:?}\nformatter = \"f\"\n[root]\nlevel = \"INFO\"\nhandlers = [\"file\"]\n",
            dir.path("out.log")
        ),
    );
    let hub = HubProc::start(&dir, &cfg);
    let s = hub.socket.to_str().unwrap().to_owned();
    for (level, msg) in [("DEBUG", "filtered by root level"), ("WARNING", "kept"), ("ERROR", "also kept")] {
        let out = run(&["send", "--socket", &s, "--level", level, "--logger", "app.db", msg]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    hub.stop();
    let text = std::fs::read_to_string(dir.path("out.log")).unwrap();
    assert_eq!(text, "WARNING:app.db:kept\nERROR:app.db:also kept\n");
}

#[test]
fn a_second_hub_is_refused_and_a_stale_socket_is_replaced() {
    let dir = Dir::new();
    let cfg = dir.file_config();
    // A stale socket file: bound, then abandoned without unlinking.
    drop(std::os::unix::net::UnixListener::bind(dir.socket()).unwrap());
    assert!(dir.socket().exists());
    let hub = HubProc::start(&dir, &cfg);
    let mode = std::fs::metadata(dir.socket()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket mode {mode:o}");
    let second = run(&["hub", "--config", cfg.to_str().unwrap(), "--socket", dir.socket().to_str().unwrap()]);
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("another hub is already listening"), "{err}");
    let err = hub.stop();
    assert!(err.contains("replacing stale socket"), "{err}");
    assert!(!dir.socket().exists(), "the socket file is removed on exit");
}

#[test]
fn a_hub_with_a_broken_config_does_not_start() {
    let dir = Dir::new();
    let cfg = dir.write("bad.toml", "[handlers.x]\nclass = \"NoSuchHandler\"\n");
    let out = run(&["hub", "--config", cfg.to_str().unwrap(), "--socket", dir.socket().to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("handlers.x.class: unknown handler class"), "{err}");
    assert!(!dir.socket().exists());
}

#[test]
fn bench_reports_zero_lost_as_json() {
    let out = run(&["bench", "--processes", "3", "--threads", "2", "--records", "60000", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().expect("a JSON line");
    let v: serde_json::Value = serde_json::from_str(last).expect("valid JSON");
    assert_eq!(v["records"], 60000);
    assert_eq!(v["lost"], 0);
    assert_eq!(v["duplicates"], 0);
    assert_eq!(v["output_lines"], 60000);
    assert!(v["records_per_sec"].as_f64().unwrap() > 0.0);
}

#[test]
fn run_gives_the_command_a_private_hub_drains_it_and_returns_the_exit_status() {
    let dir = Dir::new();
    let cfg = dir.file_config();
    let out = run_under(&cfg, &[BIN, "worker", "--id", "3", "--records", "5000"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (seqs, other) = sequences(&dir.path("out.log"));
    assert!(other.is_empty(), "{other:?}");
    assert_complete(&seqs, 3, 0, 5000);
    let out = run_under(&cfg, &["sh", "-c", "test -S \"$LOGFUNNEL_SOCKET\" && exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn stats_shows_per_handler_and_per_connection_counters() {
    let dir = Dir::new();
    let hub = HubProc::start(&dir, &dir.file_config());
    finish_worker(worker(&hub.socket, 4, 2500, &[]));
    // The worker has exited; its reader notices the Bye a moment later.
    let v = stats_when(&hub.socket, |v| v["clients"][0]["open"] == false);
    assert_eq!(v["received"], 2500);
    assert_eq!(v["handlers"][0]["name"], "file");
    assert_eq!(v["handlers"][0]["received"], 2500);
    assert_eq!(v["clients"][0]["process_name"], "worker-4");
    assert_eq!(v["clients"][0]["received"], 2500);
    assert_eq!(v["clients"][0]["open"], false);
    let table = run(&["stats", "--socket", hub.socket.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("FileHandler") && text.contains("worker-4"), "{text}");
    // Every counter the guarantees rely on is exposed.
    for key in [
        "open_connections",
        "bad_frames",
        "bad_handshakes",
        "truncated_frames",
        "timed_out",
        "refused_peers",
        "over_limit",
        "duplicates",
    ] {
        assert!(v[key].is_u64(), "stats lacks {key}: {v}");
    }
    for key in
        ["undelivered", "duplicates", "recovered_truncated_bytes", "journal_errors", "dropped", "failed"]
    {
        assert!(v["handlers"][0][key].is_u64(), "handler stats lack {key}: {v}");
    }
    assert_eq!(v["handlers"][0]["durable"], true, "an appending FileHandler is journaled");
    for col in ["UNDELIVERED", "DUPLICATES", "JOURNAL", "timed out", "allowlist", "mid-frame"] {
        assert!(text.contains(col), "{col} missing from {text}");
    }
    hub.stop();
}

#[test]
fn sighup_reopens_files_for_external_rotation() {
    let dir = Dir::new();
    let hub = HubProc::start(&dir, &dir.file_config());
    let s = hub.socket.to_str().unwrap().to_owned();
    assert!(run(&["send", "--socket", &s, "w1 t0 s0 before rotation"]).status.success());
    // Wait until the first record is on disk, then rotate like logrotate.
    let log = dir.path("out.log");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::read_to_string(&log).unwrap_or_default().is_empty() {
        assert!(std::time::Instant::now() < deadline, "first record never written");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    std::fs::rename(&log, dir.path("out.log.1")).unwrap();
    hub.signal(libc::SIGHUP);
    // The reopen is queued behind nothing; give the handler a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !log.exists() {
        assert!(std::time::Instant::now() < deadline, "file not reopened after SIGHUP:\n{}", hub.stderr());
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(run(&["send", "--socket", &s, "w1 t0 s1 after rotation"]).status.success());
    let err = hub.stop();
    assert!(err.contains("SIGHUP"), "{err}");
    assert_eq!(std::fs::read_to_string(dir.path("out.log.1")).unwrap(), "w1 t0 s0 before rotation\n");
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "w1 t0 s1 after rotation\n");
}

#[test]
fn a_record_the_format_cannot_render_is_counted_as_failed_and_reported() {
    let dir = Dir::new();
    let cfg = dir.write(
        "hub.toml",
        &format!(
            "[formatters.f]\nformat = \"%(user)s %(message)s\"\n[handlers.file]\nclass = \"FileHandler\"\nfilename = {:?}\nformatter = \"f\"\n[handlers.plain]\nclass = \"NullHandler\"\n[root]\nlevel = \"NOTSET\"\nhandlers = [\"file\", \"plain\"]\n",
            dir.path("out.log")
        ),
    );
    let hub = HubProc::start(&dir, &cfg);
    let s = hub.socket.to_str().unwrap().to_owned();
    assert!(run(&["send", "--socket", &s, "no user field here"]).status.success());
    // The failing handler counts the failure; the other handler is unaffected.
    let v = stats_when(&hub.socket, |v| handler(v, "file")["failed"] == 1);
    let file = handler(&v, "file");
    assert_eq!(file["failed"], 1, "{file}");
    assert_eq!(file["emitted"], 0, "{file}");
    let err = hub.stop();
    assert!(err.contains("handler \"file\": Formatting field not found in record: 'user'"), "{err}");
    assert!(err.contains("1 emitted") && err.contains("1 failed"), "{err}");
}

#[test]
fn records_lost_to_a_failing_write_are_counted_as_failed_not_emitted() {
    let dir = Dir::new();
    let cfg = dir.write(
        "hub.toml",
        &format!(
            "[handlers.full]\nclass = \"FileHandler\"\nfilename = \"/dev/full\"\n[handlers.file]\nclass = \"FileHandler\"\nfilename = {:?}\n[root]\nlevel = \"NOTSET\"\nhandlers = [\"full\", \"file\"]\n",
            dir.path("out.log")
        ),
    );
    let hub = HubProc::start(&dir, &cfg);
    let s = hub.socket.to_str().unwrap().to_owned();
    let mut send = std::process::Command::new(BIN)
        .args(["send", "--socket", &s])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    send.stdin.take().unwrap().write_all(b"w2 t0 s0\nw2 t0 s1\nw2 t0 s2\n").unwrap();
    assert!(send.wait().unwrap().success());
    let v = stats_when(&hub.socket, |v| handler(v, "full")["failed"] == 3);
    let full = handler(&v, "full");
    assert_eq!((full["failed"].as_u64(), full["emitted"].as_u64()), (Some(3), Some(0)), "{full}");
    let err = hub.stop();
    assert!(
        err.contains("writing /dev/full: No space left on device") && err.contains("3 buffered records lost"),
        "{err}"
    );
    // The other handler is unaffected.
    let (seqs, _) = sequences(&dir.path("out.log"));
    assert_complete(&seqs, 2, 0, 3);
}

#[test]
fn check_config_names_bad_access_and_delivery_keys() {
    let dir = Dir::new();
    let good = dir.write(
        "good.toml",
        "[hub]\nsocket_mode = \"0660\"\nsocket_group = \"root\"\nallowed_uids = [0]\nallowed_gids = [0]\nhandshake_timeout = 5\nidle_timeout = 0\nframe_timeout = 2.5\nmax_connections = 64\nshutdown_timeout = 3\njournal = false\nstate_dir = \"/var/lib/logfunnel\"\n[handlers.h]\nclass = \"StreamHandler\"\nescape_control_chars = false\n[root]\nhandlers = [\"h\"]\n",
    );
    let out = run(&["check-config", good.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let bad = dir.write(
        "bad.toml",
        "[hub]\nallowed_uids = [\"root\"]\nidle_timeout = -1\nframe_timeout = 0\nmax_connections = 0\njournal = \"yes\"\nsocket_group = []\n[handlers.h]\nclass = \"StreamHandler\"\nescape_control_chars = \"no\"\n",
    );
    let out = run(&["check-config", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for key in [
        "hub.allowed_uids:",
        "hub.idle_timeout:",
        "hub.frame_timeout:",
        "hub.max_connections:",
        "hub.journal:",
        "hub.socket_group:",
        "handlers.h.escape_control_chars:",
    ] {
        assert!(err.contains(key), "{key:?} not in:\n{err}");
    }
}

#[test]
fn bash_completions_load_and_know_every_subcommand() {
    let dir = Dir::new();
    let out = run(&["completions", "bash"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let script = dir.write("logfunnel.bash", &String::from_utf8(out.stdout).unwrap());
    // Loaded by bash as a user's shell would, then asked what it completes
    // after `logfunnel ` and after `logfunnel hub --`.
    let probe = format!(
        "source {0:?}; complete -p logfunnel >/dev/null || exit 3; \
         COMP_WORDS=(logfunnel ''); COMP_CWORD=1; COMP_LINE='logfunnel '; COMP_POINT=10; _logfunnel logfunnel '' logfunnel; echo \"${{COMPREPLY[*]}}\"; \
         COMP_WORDS=(logfunnel hub --); COMP_CWORD=2; COMP_LINE='logfunnel hub --'; COMP_POINT=16; _logfunnel logfunnel -- hub; echo \"${{COMPREPLY[*]}}\"",
        script
    );
    let out = std::process::Command::new("bash").args(["-c", &probe]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let subcommands = lines.next().unwrap_or_default();
    for sub in ["hub", "send", "bench", "run", "check-config", "stats", "wait", "completions"] {
        assert!(subcommands.split(' ').any(|w| w == sub), "{sub} not offered: {subcommands}");
    }
    assert!(!subcommands.split(' ').any(|w| w == "worker"), "the hidden worker is offered: {subcommands}");
    let hub_flags = lines.next().unwrap_or_default();
    assert!(hub_flags.contains("--config") && hub_flags.contains("--socket"), "{hub_flags}");
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = run(&["completions", shell]);
        assert!(out.status.success() && out.stdout.len() > 500, "{shell}");
    }
}
