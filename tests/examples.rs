//! The programs in examples/, run as the README shows them (cargo test and
//! cargo nextest build them next to this test binary).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::*;

/// The built example `name`; fails with a hint if it is missing or older
/// than its source.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().and_then(Path::parent).unwrap().join("examples").join(name);
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(format!("{name}.rs"));
    let built = std::fs::metadata(&bin).and_then(|m| m.modified());
    let written = std::fs::metadata(&source).and_then(|m| m.modified()).unwrap();
    assert!(
        built.as_ref().is_ok_and(|b| *b >= written),
        "{} is missing or older than {}: build the examples (cargo build --examples; cargo test and cargo nextest run do)",
        bin.display(),
        source.display()
    );
    bin
}

#[test]
fn process_pool_delivers_every_workers_records_in_order() {
    let dir = Dir::new();
    let out = dir.path("pool.log");
    let run = Command::new(example("process_pool"))
        .args(["--workers", "3", "--records", "500", "--out", out.to_str().unwrap()])
        .env_remove("LOGFUNNEL_SOCKET")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}{}", String::from_utf8_lossy(&run.stderr));
    assert_eq!(stdout.trim(), "pool: 3 workers (0 failed), hub received 1503 records, wrote 1503");
    let text = std::fs::read_to_string(&out).unwrap();
    for w in 0..3 {
        let lines: Vec<&str> = text.lines().filter(|l| l.contains(&format!(" worker-{w} "))).collect();
        let want: Vec<String> = (0..500)
            .map(|i| format!("INFO    pool.worker: worker {w} processed item {i}"))
            .chain(std::iter::once(format!("WARNING pool.worker: worker {w} done")))
            .collect();
        let got: Vec<&str> =
            lines.iter().map(|l| l.split_once(&format!("worker-{w} ")).unwrap().1.trim_start()).collect();
        assert_eq!(got, want, "worker {w}");
    }
}

#[test]
fn process_pool_under_logfunnel_run_uses_its_hub() {
    let dir = Dir::new();
    let cfg = dir.file_config();
    let pool = example("process_pool");
    let out = run_under(&cfg, &[pool.to_str().unwrap(), "--workers", "2", "--records", "100"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.starts_with("pool: 2 workers (0 failed), logged to the hub on "), "{stdout}");
    let text = std::fs::read_to_string(dir.path("out.log")).unwrap();
    assert_eq!(text.lines().count(), 202, "{text}");
}

#[test]
fn tracing_service_events_reach_a_real_hub_with_their_spans_and_fields() {
    let dir = Dir::new();
    let cfg = dir.write(
        "hub.toml",
        &format!(
            "[formatters.req]\nformat = \"%(name)s|%(levelname)s|%(span)s|%(request_id)s|%(user)s|%(message)s\"\n\
             [formatters.plain]\nformat = \"%(name)s|%(levelname)s|%(span)s|%(message)s\"\n\
             [handlers.req]\nclass = \"FileHandler\"\nfilename = {:?}\nformatter = \"req\"\n\
             [handlers.plain]\nclass = \"FileHandler\"\nfilename = {:?}\nformatter = \"plain\"\n\
             [root]\nlevel = \"DEBUG\"\nhandlers = [\"plain\"]\n[loggers.service]\nhandlers = [\"req\"]\npropagate = false\n",
            dir.path("requests.log"),
            dir.path("other.log")
        ),
    );
    let hub = HubProc::start(&dir, &cfg);
    // Run twice: properly (guard.finish()?), and with the guard dropped at
    // once and std::process::exit at the end: the same records arrive.
    for args in [&[][..], &["--exit"][..]] {
        let out = Command::new(example("tracing_service"))
            .args(args)
            .env("LOGFUNNEL_SOCKET", &hub.socket)
            .env("LOGFUNNEL_LEVEL", "info,service.db=debug")
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(out.stderr.is_empty(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let err = hub.stop();
    assert!(err.contains("28 emitted, 0 dropped, 0 failed"), "{err}");
    let requests = std::fs::read_to_string(dir.path("requests.log")).unwrap();
    let lines: Vec<&str> = requests.lines().collect();
    assert_eq!(lines.len(), 24, "{requests}");
    assert_eq!(lines[..12], lines[12..], "both runs delivered the same records");
    assert_eq!(lines[0], "service.db|DEBUG|load|1000|ada|SELECT name FROM items WHERE id = 0");
    assert_eq!(lines[1], "service.http|WARNING|request|1000|ada|GET /items/0: no such item");
    assert_eq!(lines[3], "service.http|INFO|request|1001|grace|GET /items/3 -> item-3");
    // LOGFUNNEL_LEVEL=info kept the example's own DEBUG lines out.
    let other = std::fs::read_to_string(dir.path("other.log")).unwrap();
    assert_eq!(other, "startup|INFO||service up\nstartup|INFO||service down\n".repeat(2));
}

#[test]
fn the_example_configurations_for_mail_and_opentelemetry_pass_check_config() {
    for (name, var) in [("errors-by-mail.toml", "SMTP_PASSWORD"), ("otel-collector.toml", "OTEL_TOKEN")] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(name);
        let out = Command::new(env!("CARGO_BIN_EXE_logfunnel"))
            .args(["check-config", path.to_str().unwrap()])
            .env(var, "example-secret")
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        // Without the secret, the error names the variable, not a value.
        let out = Command::new(env!("CARGO_BIN_EXE_logfunnel"))
            .args(["check-config", path.to_str().unwrap()])
            .env_remove(var)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{name}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("{var} is not set")), "{name}");
    }
}
