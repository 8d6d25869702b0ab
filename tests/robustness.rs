//! No input crashes, stalls or fools the hub: configurations and format
//! strings that once panicked, sizes that once aborted, configurations that
//! `check-config` passed and the hub then refused, handlers that panic,
//! clients that send what no honest client would, and the operations around
//! the hub (a FIFO with no reader, a full disk, a drained shutdown, stdin,
//! a client whose clock jumps years ahead).

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use logfunnel_protocol::Record;

use crate::util::*;

/// Sends `records` as one client session (the test process is the client).
pub(crate) fn send_raw(socket: &Path, records: Vec<Record>) {
    logfunnel_client::send_records(socket, records, Duration::from_secs(20))
        .expect("the hub takes the records");
}

/// `logfunnel hub` on `config`: `Ok(hub)` once it serves, `Err(stderr)` if it exits first.
fn hub_or_refusal(dir: &Dir, config: &Path) -> Result<HubProc, String> {
    let mut hub = HubProc::spawn(dir, config);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if std::os::unix::net::UnixStream::connect(&hub.socket).is_ok() {
            return Ok(hub);
        }
        if let Some(status) = hub.child.try_wait().unwrap() {
            let err = hub.stderr();
            assert!(
                !err.contains("panicked") && status.code() != Some(101) && status.code().is_some(),
                "the hub crashed ({status}) instead of refusing: {err}"
            );
            return Err(err);
        }
        assert!(Instant::now() < deadline, "the hub neither served nor exited: {}", hub.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A TOML string (JSON's escapes are TOML's: `\u0000` and all).
fn toml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

fn check_config(path: &Path) -> Output {
    run(&["check-config", path.to_str().unwrap()])
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The output of `python3 -c script`, which must succeed.
fn python(script: &str) -> String {
    let out = Command::new(python3()).arg("-c").arg(script).output().expect("run python3");
    assert!(out.status.success(), "python3 failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

// ---------------------------------------------------------------------------
// 1. No panic from any configuration or format string

#[test]
fn float_precisions_of_65536_and_more_format_as_python_does() {
    let dir = Dir::new();
    let formats = [
        ("pct", "%", "%(created).70000e"),
        ("fixed", "{", "{created:.65536f}"),
        ("nested", "{", "{created:.{lineno}e}"),
        ("general", "%", "%(created)#.70000g"),
    ];
    let mut toml = String::new();
    for (name, style, fmt) in formats {
        toml += &format!(
            "[formatters.{name}]\nformat = {fmt:?}\nstyle = {style:?}\n[handlers.{name}]\nclass = \"FileHandler\"\nfilename = {:?}\nformatter = {name:?}\n",
            dir.path(&format!("{name}.log"))
        );
    }
    let names: Vec<String> = formats.iter().map(|(n, ..)| format!("{n:?}")).collect();
    toml += &format!("[root]\nlevel = \"NOTSET\"\nhandlers = [{}]\n", names.join(", "));
    let cfg = dir.write("hub.toml", &toml);
    let check = check_config(&cfg);
    assert!(check.status.success(), "{}", text(&check));
    let hub = HubProc::start(&dir, &cfg);
    let created_ns = 1_700_000_000_123_456_789i64;
    let lineno = 70_000;
    send_raw(&hub.socket, vec![Record { created_ns, lineno, ..Record::new(20, "app", "m") }]);
    nothing_failed(&hub.stop());
    let expected = python(&format!(
        "import sys\nc = {created_ns} / 1e9\nfor s in ['%.70000e' % c, format(c, '.65536f'), format(c, '.{lineno}e'), '%#.70000g' % c]:\n    sys.stdout.write(s + '\\n')\n"
    ));
    let expected: Vec<&str> = expected.lines().collect();
    for (i, (name, ..)) in formats.iter().enumerate() {
        let got = std::fs::read_to_string(dir.path(&format!("{name}.log"))).unwrap();
        assert_eq!(got.len(), expected[i].len() + 1, "{name}: length differs from Python's");
        assert!(got == format!("{}\n", expected[i]), "{name}: differs from Python's");
    }
}

/// The hub's stderr at exit says nothing failed.
fn nothing_failed(err: &str) {
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains(" 0 failed"), "{err}");
}

#[test]
fn every_size_is_bounded_when_the_configuration_is_read() {
    let dir = Dir::new();
    let huge = [i64::MAX, 1 << 40];
    let mut cases: Vec<(String, &str)> = Vec::new();
    for n in huge {
        cases.push((format!("[hub]\nqueue_capacity = {n}\n"), "hub.queue_capacity"));
        cases.push((format!("[hub]\nmax_connections = {n}\n"), "hub.max_connections"));
        cases.push((
            format!("[handlers.q]\nclass = \"NullHandler\"\nqueue_capacity = {n}\n"),
            "handlers.q.queue_capacity",
        ));
        cases.push((
            format!("[handlers.q]\nclass = \"NullHandler\"\nqueue_bytes = {n}\n"),
            "handlers.q.queue_bytes",
        ));
        cases.push((
            format!(
                "[handlers.n]\nclass = \"NullHandler\"\n[handlers.m]\nclass = \"MemoryHandler\"\ntarget = \"n\"\ncapacity = {n}\n"
            ),
            "handlers.m.capacity",
        ));
    }
    cases.push((
        format!(
            "[handlers.r]\nclass = \"RotatingFileHandler\"\nfilename = {:?}\nmax_bytes = 100\nbackup_count = 4000000000\n",
            dir.path("r.log")
        ),
        "handlers.r.backup_count",
    ));
    for (i, (toml, key)) in cases.iter().enumerate() {
        let cfg = dir.write(&format!("c{i}.toml"), toml);
        let check = check_config(&cfg);
        let said = text(&check);
        assert_eq!(check.status.code(), Some(2), "{toml}: {said}");
        assert!(said.contains(&format!("{key}: ")) && said.contains("limit"), "{toml}: {said}");
        assert!(!said.contains("panicked"), "{said}");
        let refused = hub_or_refusal(&dir, &cfg).err().unwrap_or_else(|| panic!("the hub ran {toml}"));
        assert!(refused.contains(&format!("{key}: ")), "{toml}: {refused}");
    }
}

#[test]
fn check_config_finds_everything_the_hub_would_refuse_short_of_binding() {
    let dir = Dir::new();
    let file = |name: &str, filename: &str| {
        let (name, filename) = (toml_str(name), toml_str(filename));
        format!(
            "[handlers.{name}]\nclass = \"FileHandler\"\nfilename = {filename}\n[root]\nhandlers = [{name}]\n"
        )
    };
    std::fs::create_dir(dir.path("a-directory")).unwrap();
    std::fs::write(dir.path("a-file"), "").unwrap();
    let out = dir.path("out.log");
    let out = out.to_str().unwrap();
    let long_name = "h".repeat(300);
    // (config, the key check-config must name; None: both must accept it)
    let cases: Vec<(String, Option<&str>)> = vec![
        (file("f", dir.path("a-directory").to_str().unwrap()), Some("handlers.f.filename")),
        (file("f", &format!("{}/bad\u{0}name.log", dir.tmp.path().display())), Some("handlers.f.filename")),
        (file(&long_name, out), None),
        (file("nul\u{0}name", out), None),
        (
            format!("[hub]\nstate_dir = {:?}\n{}", dir.path("no-such-dir"), file("f", out)),
            Some("hub.state_dir"),
        ),
        (format!("[hub]\nstate_dir = {:?}\n{}", dir.path("a-file"), file("f", out)), Some("hub.state_dir")),
        (format!("[hub]\nsocket_group = \"no-such-group-lf\"\n{}", file("f", out)), Some("hub.socket_group")),
    ];
    for (i, (toml, key)) in cases.iter().enumerate() {
        let cfg = dir.write(&format!("c{i}.toml"), toml);
        let check = check_config(&cfg);
        let said = text(&check);
        let hub = hub_or_refusal(&dir, &cfg);
        match key {
            Some(key) => {
                assert_eq!(check.status.code(), Some(2), "check-config passed {toml:?}: {said}");
                assert!(said.contains(&format!("{key}: ")), "{toml:?}: {said}");
                let refused = hub.err().unwrap_or_else(|| panic!("the hub ran {toml:?}"));
                assert!(refused.contains(&format!("{key}: ")), "{toml:?}: {refused}");
            }
            None => {
                assert!(check.status.success(), "{toml:?}: {said}");
                let hub =
                    hub.unwrap_or_else(|e| panic!("check-config passed {toml:?}, the hub refused: {e}"));
                send_raw(&hub.socket, vec![Record::new(30, "app", format!("case {i}"))]);
                hub.stop();
                let written = std::fs::read_to_string(out).unwrap();
                assert!(written.ends_with(&format!("case {i}\n")), "{written}");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// 2. A handler that fails never stalls the hub

/// A handler with a bug: it panics on every record whose message says "boom".
struct Exploding {
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl logfunnel_hub::Handler for Exploding {
    fn emit(
        &mut self,
        ctx: &logfunnel_hub::formatter::RecordContext<'_>,
    ) -> Result<(), logfunnel_hub::HandlerError> {
        let message = ctx.record.message;
        if message.contains("boom") {
            panic!("exploded on {message:?}");
        }
        self.seen.lock().unwrap().push(message.to_owned());
        Ok(())
    }

    fn flush(&mut self) -> Result<(), logfunnel_hub::HandlerError> {
        Ok(())
    }
}

#[test]
fn a_panicking_handler_fails_the_record_keeps_serving_and_stalls_no_one() {
    let dir = Dir::new();
    let config = logfunnel_hub::Config::load(&dir.file_config()).unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let hub = logfunnel_hub::HubBuilder::new(config, dir.socket())
        .root_handler("exploding", Box::new(Exploding { seen: std::sync::Arc::clone(&seen) }))
        .start()
        .expect("hub starts");
    let socket = dir.socket();
    let s = socket.to_str().unwrap();
    let send = |message: &str| {
        let out = run(&["send", "--socket", s, "--timeout", "10", message]);
        assert!(out.status.success(), "{message}: {}", String::from_utf8_lossy(&out.stderr));
    };
    send("before");
    send("boom one");
    // More than a handler queue holds: a dead worker would stall these.
    let records: Vec<Record> = (0..10_000)
        .map(|i| Record::new(20, "app", if i == 5000 { "boom two".to_owned() } else { format!("r{i}") }))
        .collect();
    send_raw(&socket, records);
    send("after");
    let v = stats_when(&socket, |v| handler(v, "exploding")["emitted"] == 10_001);
    let h = handler(&v, "exploding");
    assert_eq!(h["emitted"], 10_001, "{h}");
    assert_eq!(h["failed"], 2, "{h}");
    assert_eq!(h["panics"], 2, "{h}");
    assert!(h["last_error"].as_str().unwrap().contains("exploded on \"boom two\""), "{h}");
    assert_eq!(seen.lock().unwrap().last().map(String::as_str), Some("after"));
    let end = serde_json::to_value(hub.shutdown()).unwrap();
    let e = handler(&end, "exploding");
    assert_eq!((&e["undelivered"], &e["failed"], &e["panics"]), (&0.into(), &2.into(), &2.into()), "{e}");
    let f = handler(&end, "file");
    assert_eq!((&f["emitted"], &f["undelivered"]), (&10_003.into(), &0.into()), "{f}");
}

// ---------------------------------------------------------------------------
// 5. Operations that behave

#[test]
fn handler_errors_on_a_full_disk_are_rate_limited_and_summarised() {
    let dir = Dir::new();
    let cfg = config_with(
        &dir,
        "",
        &["full"],
        "[handlers.full]\nclass = \"FileHandler\"\nfilename = \"/dev/full\"\n",
    );
    let hub = HubProc::start(&dir, &cfg);
    // Two seconds of records in small bursts: every flush fails, each
    // error with another count of lost records.
    let started = Instant::now();
    let mut sent = 0u64;
    while started.elapsed() < Duration::from_secs(2) {
        send_raw(&hub.socket, (0..50).map(|i| Record::new(20, "app", format!("r{i}"))).collect());
        sent += 50;
    }
    let v = stats_when(&hub.socket, |v| handler(v, "full")["failed"] == sent);
    assert_eq!(handler(&v, "full")["failed"], sent, "every record counted as failed");
    let err = hub.stop();
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("\"full\"")).collect();
    assert!(
        lines.len() <= 20,
        "{} lines about the full disk: {:#?}",
        lines.len(),
        &lines[..lines.len().min(40)]
    );
    assert!(lines.iter().any(|l| l.contains("No space left on device")), "{err}");
    let summary = lines
        .iter()
        .find_map(|l| l.split("handler \"full\" errors: ").nth(1))
        .unwrap_or_else(|| panic!("no summary of what was suppressed: {err}"));
    let held: u64 = summary.split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap();
    assert!(held > 0, "{summary}");
}
