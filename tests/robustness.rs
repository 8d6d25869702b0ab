//! No input crashes, stalls or fools the hub: configurations and format
//! strings that once panicked, sizes that once aborted, configurations that
//! `check-config` passed and the hub then refused, handlers that panic,
//! clients that send what no honest client would, and the operations around
//! the hub (a FIFO with no reader, a full disk, a drained shutdown, stdin,
//! a client whose clock jumps years ahead).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use logfunnel_protocol::Record;

use crate::faults::mkfifo;
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

// ---------------------------------------------------------------------------
// 3. Hostile clients cost only themselves

/// A raw client: preamble and Hello with `process_name`; returns the stream.
fn raw_client(socket: &Path, process_name: String, session: u64) -> std::os::unix::net::UnixStream {
    use logfunnel_protocol::{ClientFrame, FrameBuf, Hello, HubFrame, PROTOCOL_VERSION, Preamble};
    let mut s = crate::bad_clients::connect(socket);
    let mut out = Preamble { version: PROTOCOL_VERSION, status: 0 }.to_bytes().to_vec();
    let mut f = FrameBuf::default();
    let hello = Hello { pid: 1, process_name, host_name: "h".into(), session, first_seq: 1 };
    logfunnel_protocol::encode_client_frame(&ClientFrame::Hello(hello), &mut f).unwrap();
    out.extend_from_slice(f.as_bytes());
    std::io::Write::write_all(&mut s, &out).unwrap();
    assert_eq!(crate::bad_clients::read_preamble(&mut s).status, Preamble::OK);
    assert!(matches!(crate::bad_clients::read_hub_frame(&mut s), HubFrame::Welcome { .. }));
    s
}

/// A batch frame of `records`, length prefix included.
fn batch_bytes(first_seq: u64, records: Vec<Record>) -> Vec<u8> {
    let mut f = logfunnel_protocol::FrameBuf::default();
    let batch = logfunnel_protocol::Batch { first_seq, records };
    logfunnel_protocol::encode_client_frame(&logfunnel_protocol::ClientFrame::Batch(batch), &mut f).unwrap();
    f.as_bytes().to_vec()
}

/// A config with a NullHandler on the root and configured loggers.
fn null_config(dir: &Dir, extra: &str) -> std::path::PathBuf {
    dir.write(
        "hub.toml",
        &format!(
            "[handlers.null]\nclass = \"NullHandler\"\n{extra}\n[root]\nlevel = \"NOTSET\"\nhandlers = [\"null\"]\n[loggers.app]\nlevel = \"INFO\"\n[loggers.\"app.db\"]\nlevel = \"DEBUG\"\n"
        ),
    )
}

#[test]
fn a_logger_name_of_300000_dots_stalls_nobody() {
    let dir = Dir::new();
    let hub = HubProc::start(&dir, &null_config(&dir, ""));
    // Each hostile record has a name of its own (no route is cached).
    let hostile = std::thread::spawn({
        let socket = hub.socket.clone();
        move || {
            for i in 0..5 {
                let name = format!("app.{i}{}", ".".repeat(300_000));
                let _ = logfunnel_client::send_records(
                    &socket,
                    vec![Record::new(20, name, "deep")],
                    Duration::from_secs(120),
                );
            }
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    // Routing each of those once took 16 s, and every client waited for it.
    for i in 0..5 {
        let out = run(&[
            "send",
            "--socket",
            hub.socket.to_str().unwrap(),
            "--timeout",
            "5",
            &format!("honest {i}"),
        ]);
        assert!(out.status.success(), "an honest client stalled: {}", String::from_utf8_lossy(&out.stderr));
    }
    hostile.join().unwrap();
    let v = stats(&hub.socket);
    assert_eq!(handler(&v, "null")["emitted"], 10, "{v}");
    hub.stop();
}

#[test]
fn decoded_memory_is_bounded_per_connection_and_in_total() {
    let dir = Dir::new();
    let hub = HubProc::start(&dir, &null_config(&dir, ""));
    let pid = hub.child.id();
    let rss0 = proc_status(pid, "VmRSS");
    // Frames of ~7 MiB: one record with two million minimal extra fields, and
    // half a million minimal records. Each decodes to over 100 MiB.
    let extras = batch_bytes(
        1,
        vec![Record {
            extra: (0..2_000_000).map(|_| (String::new(), logfunnel_protocol::Value::Bool(true))).collect(),
            ..Record::new(20, "x", "")
        }],
    );
    let minimal = batch_bytes(1, (0..500_000).map(|_| Record::new(20, "", "")).collect());
    let extras = std::sync::Arc::new(extras);
    let minimal = std::sync::Arc::new(minimal);
    let clients: Vec<_> = (0..24u64)
        .map(|i| {
            let (socket, extras, minimal) = (hub.socket.clone(), extras.clone(), minimal.clone());
            std::thread::spawn(move || {
                for round in 0..3u64 {
                    let mut s = raw_client(&socket, format!("hostile-{i}"), 1000 + i * 10 + round);
                    let frame = if (i + round) % 2 == 0 { &extras } else { &minimal };
                    let _ = std::io::Write::write_all(&mut s, frame);
                    // The hub answers (refuses, or acknowledges) or closes.
                    let mut b = [0u8; 1];
                    let _ = std::io::Read::read(&mut s, &mut b);
                }
            })
        })
        .collect();
    // An honest client is served meanwhile.
    let out = run(&["send", "--socket", hub.socket.to_str().unwrap(), "--timeout", "30", "honest"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    clients.into_iter().for_each(|c| c.join().unwrap());
    let peak = proc_status(pid, "VmHWM");
    let v = stats(&hub.socket);
    assert!(v["bad_frames"].as_u64().unwrap() > 0, "{v}");
    // Measured: 2.6 GiB before decoding was bounded; now the frames as
    // sent (24 × 7 MiB, received whole before they are judged) plus at most
    // 64 MiB of decoded records: about 240 MiB.
    assert!(peak < rss0 + 400 * 1024, "hub peak RSS {} MiB (from {} MiB)", peak / 1024, rss0 / 1024);
    hub.stop();
}

#[test]
fn handler_queues_are_bounded_in_bytes() {
    let dir = Dir::new();
    let fifo = dir.path("nobody-reads.fifo");
    mkfifo(&fifo);
    // A hung handler (its FIFO is never read) keeps what its queue holds.
    let cfg = dir.write(
        "hub.toml",
        &format!(
            "[hub]\nshutdown_timeout = 1\n[handlers.null]\nclass = \"NullHandler\"\n[handlers.hung]\nclass = \"FileHandler\"\nfilename = {fifo:?}\ndelay = true\noverflow = \"drop_newest\"\n[root]\nlevel = \"NOTSET\"\nhandlers = [\"null\", \"hung\"]\n"
        ),
    );
    let hub = HubProc::start(&dir, &cfg);
    let pid = hub.child.id();
    let rss0 = proc_status(pid, "VmRSS");
    let workers: Vec<_> =
        (0..8).map(|i| worker(&hub.socket, i, 1000, &["--message-bytes", "65536"])).collect();
    workers.into_iter().for_each(finish_worker);
    let v = stats_when(&hub.socket, |v| handler(v, "null")["emitted"] == 8000);
    let hung = handler(&v, "hung");
    assert!(hung["dropped"].as_u64().unwrap() > 0, "{hung}");
    let peak = proc_status(pid, "VmHWM");
    assert!(peak < rss0 + 120 * 1024, "hub peak RSS {} MiB (from {} MiB): {hung}", peak / 1024, rss0 / 1024);
    hub.stop();
}

#[test]
fn huge_hello_fields_are_cut_and_stats_keep_working() {
    let dir = Dir::new();
    let hub = HubProc::start(&dir, &null_config(&dir, ""));
    let _held: Vec<_> = (0..3).map(|i| raw_client(&hub.socket, "p".repeat(3 << 20), 7 + i)).collect();
    let v = stats(&hub.socket);
    let names: Vec<usize> =
        v["clients"].as_array().unwrap().iter().map(|c| c["process_name"].as_str().unwrap().len()).collect();
    assert!(names.iter().all(|&n| n <= 4096), "{names:?}");
    assert!(v["truncated_fields"].as_u64().unwrap() >= 3, "{v}");
    hub.stop();
}

#[test]
fn messages_over_the_limit_are_cut_by_one_rule_and_counted_by_the_hub() {
    let dir = Dir::new();
    let hub = HubProc::start(&dir, &dir.file_config());
    let s = hub.socket.to_str().unwrap();
    // Too long for an argument: one line on stdin.
    let mut send = Command::new(BIN)
        .args(["send", "--socket", s])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = send.stdin.take().unwrap();
    writeln!(stdin, "{}", "x".repeat(300 << 10)).unwrap();
    drop(stdin);
    let out = send.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The Rust client (which cuts by the rule), and a raw client that ignores it.
    finish_worker(worker(&hub.socket, 1, 1, &["--message-bytes", "300000"]));
    let mut raw = raw_client(&hub.socket, "raw".into(), 99);
    raw.write_all(&batch_bytes(1, vec![Record::new(20, "app", "y".repeat(400 << 10))])).unwrap();
    assert!(matches!(crate::bad_clients::read_hub_frame(&mut raw), logfunnel_protocol::HubFrame::Ack { .. }));
    let v = stats_when(&hub.socket, |v| v["truncated_messages"] == 3);
    assert_eq!(v["truncated_messages"], 3, "{v}");
    hub.stop();
    let text = std::fs::read_to_string(dir.path("out.log")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{}", lines.iter().map(|l| l.len().to_string()).collect::<Vec<_>>().join(","));
    for line in lines {
        assert!(line.len() <= logfunnel_protocol::MAX_MESSAGE_BYTES, "{} bytes", line.len());
        let tail = &line[line.len() - 40..];
        assert!(tail.contains(" …[truncated ") && tail.ends_with(" bytes]"), "{tail}");
    }
}

#[test]
fn a_hub_waiting_for_a_fifo_reader_at_start_obeys_sigterm_and_gives_up_clearly() {
    let dir = Dir::new();
    let fifo = dir.path("nobody-reads.fifo");
    mkfifo(&fifo);
    let cfg = dir.write(
        "hub.toml",
        &format!("[handlers.f]\nclass = \"FileHandler\"\nfilename = {fifo:?}\n[root]\nhandlers = [\"f\"]\n"),
    );
    // SIGTERM while it waits for a reader: it stops at once.
    let mut hub = HubProc::spawn(&dir, &cfg);
    std::thread::sleep(Duration::from_millis(500));
    hub.signal(libc::SIGTERM);
    let status = wait_timeout(&mut hub.child, Duration::from_secs(3));
    assert!(status.is_some(), "SIGTERM was ignored while opening the FIFO: {}", hub.stderr());
    assert!(!hub.socket.exists());
    // Left alone, it gives up with an error saying why.
    let mut hub = HubProc::spawn(&dir, &cfg);
    let status = wait_timeout(&mut hub.child, Duration::from_secs(30)).expect("the hub waited forever");
    assert!(!status.success());
    let err = hub.stderr();
    assert!(err.contains("no reader") && err.contains("handler \"f\""), "{err}");
    // With a reader, it starts.
    let reader = std::thread::spawn({
        let fifo = fifo.clone();
        move || std::fs::read_to_string(fifo).unwrap()
    });
    let hub = HubProc::start(&dir, &cfg);
    send_raw(&hub.socket, vec![Record::new(30, "app", "through the pipe")]);
    hub.stop();
    assert_eq!(reader.join().unwrap(), "through the pipe\n");
}

#[test]
fn a_drained_rotating_file_handler_reports_nothing_undelivered() {
    let dir = Dir::new();
    // It rolls over every ten records: slower than the clients, so its
    // queue is full when the hub is stopped and never runs dry until the end.
    let cfg = dir.write(
        "hub.toml",
        &format!(
            "[handlers.rot]\nclass = \"RotatingFileHandler\"\nfilename = {:?}\nmax_bytes = 10000\nbackup_count = 2\n[root]\nlevel = \"NOTSET\"\nhandlers = [\"rot\"]\n",
            dir.path("rot.log")
        ),
    );
    let hub = HubProc::start(&dir, &cfg);
    let workers: Vec<_> =
        (0..4).map(|i| worker(&hub.socket, i, 2_000_000, &["--message-bytes", "1000"])).collect();
    let emitted = || handler(&stats(&hub.socket), "rot")["emitted"].as_u64().unwrap();
    assert!(wait_until(Duration::from_secs(30), || emitted() > 50_000));
    let err = hub.stop();
    for mut w in workers {
        let _ = w.kill();
        let _ = w.wait();
    }
    // Every record it took was written and flushed before it closed.
    assert!(!err.contains("not delivered"), "{err}");
    let last = err.lines().rev().find(|l| l.contains("stopped:")).unwrap();
    assert!(last.contains(" 0 undelivered") && last.contains(" 0 failed"), "{last}");
}

#[test]
fn send_streams_stdin_in_bounded_batches_as_lines_arrive() {
    let dir = Dir::new();
    let hub = HubProc::start(&dir, &dir.file_config());
    let mut send = Command::new(BIN)
        .args(["send", "--socket", hub.socket.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = send.stdin.take().unwrap();
    writeln!(stdin, "first\nsecond\nthird").unwrap();
    stdin.flush().unwrap();
    let lines = || std::fs::read_to_string(dir.path("out.log")).unwrap_or_default().lines().count();
    assert!(wait_until(Duration::from_secs(10), || lines() == 3), "nothing delivered before EOF");
    // A line that is not UTF-8 costs only itself (replacement characters),
    // and 10,000 more go through.
    stdin.write_all(b"bad \xff\xfe bytes\n").unwrap();
    for i in 0..10_000 {
        writeln!(stdin, "line {i}").unwrap();
    }
    drop(stdin);
    let out = send.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    hub.stop();
    let text = std::fs::read_to_string(dir.path("out.log")).unwrap();
    let got: Vec<&str> = text.lines().collect();
    assert_eq!(got.len(), 10_004);
    assert_eq!(got[3], "bad \u{fffd}\u{fffd} bytes");
    assert_eq!(got[10_003], "line 9999");
}

#[test]
fn a_record_from_the_far_future_does_not_stop_timed_rotation() {
    let dir = Dir::new();
    let cfg = dir.write(
        "hub.toml",
        &format!(
            "[handlers.t]\nclass = \"TimedRotatingFileHandler\"\nfilename = {:?}\nwhen = \"S\"\nutc = true\n[root]\nlevel = \"NOTSET\"\nhandlers = [\"t\"]\n",
            dir.path("t.log")
        ),
    );
    let hub = HubProc::start(&dir, &cfg);
    let now_ns =
        || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64;
    // A client whose clock jumped to 2100.
    send_raw(
        &hub.socket,
        vec![Record { created_ns: 4_102_444_800_000_000_000, ..Record::new(30, "app", "from 2100") }],
    );
    for i in 0..4 {
        std::thread::sleep(Duration::from_millis(1100));
        send_raw(
            &hub.socket,
            vec![Record { created_ns: now_ns(), ..Record::new(30, "app", format!("now {i}")) }],
        );
    }
    hub.stop();
    let backups = std::fs::read_dir(dir.tmp.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("t.log."))
        .count();
    assert!(backups >= 3, "rotation stopped after the record from the future: {backups} backups");
}
