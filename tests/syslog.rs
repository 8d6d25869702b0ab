//! SysLogHandler against the real daemons (rsyslog and syslog-ng, started
//! by the tests), against Python's own SysLogHandler byte for byte, and the
//! delivery layer under faults: a daemon restarted mid-run, a target that
//! is down for 30 s while the rest of the hub must not notice.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::daemons::*;
use crate::util::*;

/// `logfunnel send` one record; panics if it fails.
fn send(socket: &Path, logger: &str, level: &str, message: &str) {
    let out = run(&[
        "send",
        "--socket",
        socket.to_str().unwrap(),
        "--logger",
        logger,
        "--level",
        level,
        "--",
        message,
    ]);
    assert!(out.status.success(), "send failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// What rsyslog writes for a message: control characters as `#ooo`.
fn rsyslog_escaped(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if (c as u32) < 0x20 {
            out.push_str(&format!("#{:03o}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// (logger, level name, syslog severity, message): newlines, non-ASCII,
/// percent signs and brackets, each message unique.
const RECORDS: &[(&str, &str, u32, &str)] = &[
    ("app.db", "ERROR", 3, "späm ünïcode ✓ 日本語"),
    ("app.web", "WARNING", 4, "first line\nsecond line"),
    ("app", "INFO", 6, "100% [done] {ok} <tag>"),
    ("app.worker", "DEBUG", 7, "tab\there"),
    ("other", "CRITICAL", 2, "last: \u{1F600}"),
];

#[test]
fn every_transport_into_rsyslog_delivers_each_record_once_with_its_pri_host_tag_and_text() {
    let d = Dir::new();
    let pki_dir = daemon_dir("lf-pki-");
    let pki = Pki::new(pki_dir.path());
    let inputs = [
        ("udp", Input::Udp),
        ("tcp_python", Input::Tcp),
        ("tcp_octets", Input::Tcp),
        ("tls", Input::Tls),
        ("relp", Input::Relp),
        ("relp_tls", Input::RelpTls),
        ("unix", Input::UnixDgram),
        ("unix_stream", Input::UnixStream),
    ];
    let rs = Rsyslog::start(&inputs, Some(&pki));
    let port = |n| rs.address(n).port();
    let path = |n| rs.address(n).path().to_owned();
    // Python's format (the TAG is the logger name, as a Python config
    // would write it) where the transport keeps Python's bytes; RFC 5424
    // and 3164 headers with raw newlines where octet counting or RELP
    // frames them.
    let config = format!(
        r#"
[formatters.py]
format = "%(name)s: %(message)s"
[handlers.udp]
class = "logging.handlers.SysLogHandler"
address = ["127.0.0.1", {udp}]
facility = "local3"
formatter = "py"
[handlers.tcp_python]
class = "SysLogHandler"
address = ["127.0.0.1", {tcp_python}]
socktype = "ext://socket.SOCK_STREAM"
facility = "local3"
formatter = "py"
[handlers.tcp_octets]
class = "SysLogHandler"
address = "127.0.0.1:{tcp_octets}"
socktype = "tcp"
format = "rfc5424"
facility = "local3"
app_name = "octets"
escape_control_chars = false
[handlers.tls]
class = "SysLogHandler"
address = "localhost:{tls}"
socktype = "tcp"
tls = true
tls_ca_file = {ca:?}
format = "rfc5424"
facility = "local3"
app_name = "tls"
escape_control_chars = false
[handlers.relp]
class = "SysLogHandler"
address = "127.0.0.1:{relp}"
socktype = "tcp"
relp = true
format = "rfc3164"
facility = "local3"
app_name = "relp"
[handlers.relp_tls]
class = "SysLogHandler"
address = "localhost:{relp_tls}"
socktype = "tcp"
relp = true
tls = true
tls_ca_file = {ca:?}
tls_cert_file = {client_cert:?}
tls_key_file = {client_key:?}
format = "rfc5424"
facility = "local3"
app_name = "relp_tls"
escape_control_chars = false
[handlers.unix]
class = "SysLogHandler"
address = {unix:?}
facility = "local3"
formatter = "py"
[handlers.unix_stream]
class = "SysLogHandler"
address = {unix_stream:?}
facility = "local3"
formatter = "py"
[root]
level = "DEBUG"
handlers = ["udp", "tcp_python", "tcp_octets", "tls", "relp", "relp_tls", "unix", "unix_stream"]
"#,
        udp = port("udp"),
        tcp_python = port("tcp_python"),
        tcp_octets = port("tcp_octets"),
        tls = port("tls"),
        relp = port("relp"),
        relp_tls = port("relp_tls"),
        ca = pki.ca,
        client_cert = pki.client_cert,
        client_key = pki.client_key,
        unix = path("unix"),
        unix_stream = path("unix_stream"),
    );
    let hub = HubProc::start(&d, &d.write("hub.toml", &config));
    for (logger, level, _, msg) in RECORDS {
        send(&hub.socket, logger, level, msg);
    }
    let host = {
        let out = Command::new("hostname").output().expect("hostname");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    for (name, _) in inputs {
        let lines = rs.wait_lines(name, RECORDS.len(), Duration::from_secs(20));
        assert_eq!(lines.len(), RECORDS.len(), "{name}: {lines:#?}\n{}", rs.diagnostics());
        for ((logger, _, severity, msg), line) in RECORDS.iter().zip(&lines) {
            let ctx = format!("{name}: {line:?}");
            assert_eq!(line.pri, 19 * 8 + severity, "{ctx}");
            // The hub escapes control characters unless told otherwise;
            // rsyslog escapes those it receives as #ooo.
            let raw = matches!(name, "tcp_octets" | "tls" | "relp_tls");
            let text = if raw { (*msg).to_owned() } else { msg.replace('\n', "\\n") };
            match name {
                "tcp_octets" | "tls" | "relp" | "relp_tls" => {
                    assert_eq!(line.host, host, "{ctx}");
                    let app = if name == "tcp_octets" { "octets" } else { name };
                    assert_eq!(line.app, app, "{ctx}");
                    assert!(line.procid.parse::<u32>().is_ok(), "{ctx}");
                    let got = line.msg.strip_prefix(' ').unwrap_or(&line.msg);
                    assert_eq!(got, rsyslog_escaped(&text), "{ctx}");
                }
                _ => {
                    assert_eq!(line.tag, format!("{logger}:"), "{ctx}");
                    assert_eq!(line.msg.trim_start(), rsyslog_escaped(&text), "{ctx}");
                }
            }
        }
    }
    let stats = stats(&hub.socket);
    for (name, _) in inputs {
        let h = handler(&stats, name);
        assert_eq!(h["emitted"], RECORDS.len() as u64, "{h}");
        assert_eq!(
            (h["failed"].as_u64(), h["dropped"].as_u64(), h["held"].as_u64()),
            (Some(0), Some(0), Some(0))
        );
    }
    hub.stop();
}

#[test]
fn octet_counted_rfc5424_into_syslog_ng() {
    let d = Dir::new();
    let ng = SyslogNg::start();
    let config = format!(
        "[handlers.ng]\nclass = \"SysLogHandler\"\naddress = \"127.0.0.1:{}\"\nsocktype = \"tcp\"\nformat = \"rfc5424\"\nframing = \"octet_counting\"\nfacility = \"daemon\"\napp_name = \"api\"\nescape_control_chars = false\n[root]\nlevel = \"DEBUG\"\nhandlers = [\"ng\"]\n",
        ng.port
    );
    let hub = HubProc::start(&d, &d.write("hub.toml", &config));
    for (logger, level, _, msg) in RECORDS {
        send(&hub.socket, logger, level, msg);
    }
    let lines = ng.wait_lines(RECORDS.len(), Duration::from_secs(20));
    assert_eq!(lines.len(), RECORDS.len(), "{lines:#?}");
    for ((_, _, severity, msg), line) in RECORDS.iter().zip(&lines) {
        assert_eq!(line.pri, 3 * 8 + severity, "{line:?}");
        assert_eq!((line.app.as_str(), line.tag.starts_with("api[")), ("api", true), "{line:?}");
        // flags(no-multi-line): syslog-ng turns newlines into spaces.
        assert_eq!(line.msg, msg.replace('\n', " "), "{line:?}");
    }
    hub.stop();
}

#[test]
fn the_hub_sends_pythons_exact_bytes() {
    let py = python3();
    let d = Dir::new();
    // Three handler variants, each to its own UDP capture, plus a Unix
    // datagram socket and TCP: Python's defaults; ident with no NUL;
    // another facility.
    let caps: Vec<DgramCapture> = (0..3).map(|_| DgramCapture::udp()).collect();
    let variants = [
        ("facility = \"user\"", "{}"),
        (
            "facility = \"local7\"\nident = \"häm-\"\nappend_nul = false",
            "{\"facility\": \"local7\", \"ident\": \"häm-\", \"append_nul\": false}",
        ),
        ("facility = 3", "{\"facility\": 3}"),
    ];
    let unix_path = d.path("dgram.sock");
    let unix = DgramCapture::unix(&unix_path);
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp_port = tcp.local_addr().unwrap().port();
    let mut config = String::from("[formatters.f]\nformat = \"%(name)s %(levelname)s %(message)s\"\n");
    let mut names = Vec::new();
    for (i, ((toml, _), cap)) in variants.iter().zip(&caps).enumerate() {
        config += &format!(
            "[handlers.v{i}]\nclass = \"SysLogHandler\"\naddress = [\"127.0.0.1\", {}]\nformatter = \"f\"\nescape_control_chars = false\n{toml}\n",
            cap.port
        );
        names.push(format!("\"v{i}\""));
    }
    config += &format!(
        "[handlers.unix]\nclass = \"SysLogHandler\"\naddress = {unix_path:?}\nformatter = \"f\"\nescape_control_chars = false\n[handlers.tcp]\nclass = \"SysLogHandler\"\naddress = [\"127.0.0.1\", {tcp_port}]\nsocktype = \"tcp\"\nformatter = \"f\"\nescape_control_chars = false\n"
    );
    config += &format!("[root]\nlevel = \"NOTSET\"\nhandlers = [{}, \"unix\", \"tcp\"]\n", names.join(", "));
    // Random records: Python's names for levels (and numbers Python knows
    // no name for), text with newlines, tabs, NUL-free control characters,
    // percent signs and every width of UTF-8.
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let pieces = [
        "späm",
        "%s",
        "%(name)s",
        "100%",
        "\n",
        "\t",
        "\r",
        "\u{1b}[31m",
        "日本",
        "😀",
        " ",
        "<13>",
        "x",
        "Ω",
    ];
    let levels = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", "25", "45", "1", "60"];
    let loggers = ["root", "app", "app.db", "a.b.c", "ünï"];
    let records: Vec<(String, String, String)> = (0..60)
        .map(|i| {
            let n = 1 + rng.next() % 8;
            let msg: String = (0..n).map(|_| *rng.pick(&pieces)).collect::<String>() + &format!(" #{i}");
            (rng.pick(&loggers).to_string(), rng.pick(&levels).to_string(), msg)
        })
        .collect();

    // The hub's bytes.
    let hub = HubProc::start(&d, &d.write("hub.toml", &config));
    for (logger, level, msg) in &records {
        send(&hub.socket, logger, level, msg);
    }
    let hub_udp: Vec<Vec<Vec<u8>>> = caps.iter().map(|c| c.wait(records.len())).collect();
    let hub_unix = unix.wait(records.len());
    let (mut conn, _) = tcp.accept().unwrap();
    hub.stop();
    let mut hub_tcp = Vec::new();
    conn.read_to_end(&mut hub_tcp).unwrap();

    // Python's bytes, from its own SysLogHandler with the same records.
    let caps2: Vec<DgramCapture> = (0..3).map(|_| DgramCapture::udp()).collect();
    let unix_path2 = d.path("dgram2.sock");
    let unix2 = DgramCapture::unix(&unix_path2);
    let tcp2 = TcpListener::bind("127.0.0.1:0").unwrap();
    let spec = format!(
        "{{\"udp\": [{}], \"kwargs\": [{}], \"unix\": {:?}, \"tcp\": {}, \"records\": {}}}",
        caps2.iter().map(|c| c.port.to_string()).collect::<Vec<_>>().join(", "),
        variants.iter().map(|(_, k)| *k).collect::<Vec<_>>().join(", "),
        unix_path2.to_str().unwrap(),
        tcp2.local_addr().unwrap().port(),
        serde_json::to_string(&records).unwrap()
    );
    let script = r#"
import json, logging, logging.handlers, socket, sys
spec = json.loads(sys.stdin.read())
fmt = logging.Formatter("%(name)s %(levelname)s %(message)s")
handlers = []
for port, kw in zip(spec["udp"], spec["kwargs"]):
    kw = dict(kw)
    append_nul = kw.pop("append_nul", True)
    ident = kw.pop("ident", "")
    h = logging.handlers.SysLogHandler(address=("127.0.0.1", port), **kw)
    h.append_nul = append_nul
    h.ident = ident
    handlers.append(h)
handlers.append(logging.handlers.SysLogHandler(address=spec["unix"]))
handlers.append(logging.handlers.SysLogHandler(address=("127.0.0.1", spec["tcp"]), socktype=socket.SOCK_STREAM))
root = logging.getLogger()
root.setLevel(1)
for h in handlers:
    h.setFormatter(fmt)
    root.addHandler(h)
for name, level, msg in spec["records"]:
    lvl = int(level) if level.isdigit() else getattr(logging, level)
    logging.getLogger(None if name == "root" else name).log(lvl, msg)
for h in handlers:
    h.close()
"#;
    let mut child = Command::new(py).args(["-c", script]).stdin(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(spec.as_bytes()).unwrap();
    let (mut conn2, _) = tcp2.accept().unwrap();
    assert!(child.wait().unwrap().success());
    let py_udp: Vec<Vec<Vec<u8>>> = caps2.iter().map(|c| c.wait(records.len())).collect();
    let py_unix = unix2.wait(records.len());
    let mut py_tcp = Vec::new();
    conn2.read_to_end(&mut py_tcp).unwrap();

    let show = |d: &[Vec<u8>]| d.iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect::<Vec<_>>();
    for (i, (h, p)) in hub_udp.iter().zip(&py_udp).enumerate() {
        assert_eq!(h.len(), records.len(), "variant {i}: the hub sent {} datagrams", h.len());
        for (j, (a, b)) in h.iter().zip(p).enumerate() {
            assert_eq!(
                a,
                b,
                "variant {i}, record {j} {:?}: hub {:?} python {:?}",
                records[j],
                show(std::slice::from_ref(a)),
                show(std::slice::from_ref(b))
            );
        }
        assert_eq!(h, p, "variant {i}");
    }
    assert_eq!(hub_unix.len(), records.len());
    assert_eq!(show(&hub_unix), show(&py_unix), "unix datagrams");
    assert_eq!(hub_unix, py_unix);
    assert_eq!(String::from_utf8_lossy(&hub_tcp), String::from_utf8_lossy(&py_tcp), "tcp stream");
    assert_eq!(hub_tcp, py_tcp);
}

/// 4 workers log steadily through the hub to rsyslog; rsyslog is stopped
/// for 5 s mid-run and started again. Returns what rsyslog holds, the
/// handler's counters, and the number of records sent.
fn restart_mid_run(transport: &str) -> (Seqs, serde_json::Value, u64) {
    let d = Dir::new();
    let mut rs = Rsyslog::start(&[("in", if transport == "relp" { Input::Relp } else { Input::Tcp })], None);
    let port = rs.address("in").port();
    let extra =
        if transport == "relp" { "relp = true\nformat = \"rfc5424\"" } else { "format = \"rfc5424\"" };
    let config = format!(
        "[handlers.sys]\nclass = \"SysLogHandler\"\naddress = \"127.0.0.1:{port}\"\nsocktype = \"tcp\"\n{extra}\nretry_initial = 0.2\nretry_max = 1\n[root]\nlevel = \"DEBUG\"\nhandlers = [\"sys\"]\n"
    );
    let hub = HubProc::start(&d, &d.write("hub.toml", &config));
    const PER_WORKER: u64 = 4000;
    let workers: Vec<_> = (0..4)
        .map(|i| worker(&hub.socket, i, PER_WORKER, &["--rate", "300", "--message-bytes", "60"]))
        .collect();
    std::thread::sleep(Duration::from_secs(4));
    rs.stop();
    std::thread::sleep(Duration::from_secs(5));
    rs.restart();
    for w in workers {
        finish_worker(w);
    }
    let total = 4 * PER_WORKER;
    let s =
        stats_when(&hub.socket, |s| handler(s, "sys")["held"] == 0 && handler(s, "sys")["queue_depth"] == 0);
    let h = handler(&s, "sys").clone();
    // Everything the handler settled must be in rsyslog's file by now (or
    // soon): wait until it stops growing.
    let mut last = 0;
    let lines = loop {
        std::thread::sleep(Duration::from_millis(500));
        let lines = rs.lines("in");
        if lines.len() == last {
            break lines;
        }
        last = lines.len();
    };
    hub.stop();
    (workers_only(&lines), h, total)
}

/// The workers' sequences in what rsyslog holds (nothing else may be there).
fn workers_only(lines: &[Line]) -> Seqs {
    let (seqs, other) = sequences_in(lines.iter().map(|l| l.msg.as_str()));
    assert!(
        other.is_empty(),
        "{} messages are not the workers', e.g. {:?}",
        other.len(),
        &other[..other.len().min(3)]
    );
    seqs
}

/// Distinct worker records among `lines`.
fn unique_records(lines: &[Line]) -> u64 {
    let (seqs, _) = sequences_in(lines.iter().map(|l| l.msg.as_str()));
    let distinct = |v: &Vec<u64>| {
        let mut u = v.clone();
        u.sort_unstable();
        u.dedup();
        u.len() as u64
    };
    seqs.values().map(distinct).sum()
}

/// Asserts every one of workers 0–3 delivered all of `0..n` (in any order,
/// some perhaps twice); returns how many arrived twice.
fn duplicates_of_complete(seqs: &Seqs, n: u64, context: &str) -> usize {
    let mut duplicates = 0;
    for w in 0..4u32 {
        let got = seqs.get(&(w, 0)).cloned().unwrap_or_default();
        let mut unique = got.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique, (0..n).collect::<Vec<u64>>(), "worker {w}: records missing {context}");
        duplicates += got.len() - unique.len();
    }
    duplicates
}

#[test]
fn rsyslog_restarted_mid_run_over_relp_loses_nothing() {
    let (seqs, h, total) = restart_mid_run("relp");
    // Every record arrives. A record rsyslog took in the instant it shut
    // down can arrive twice: librelp drops the responses still queued when
    // it closes a session (RELP's documented window), so the handler sends
    // that frame again. Such duplicates are few and right at the restart.
    let duplicates = duplicates_of_complete(&seqs, 4000, "");
    assert!(duplicates <= 16, "{duplicates} records arrived twice");
    eprintln!("relp restart: {duplicates} duplicates out of {total}");
    assert_eq!(h["emitted"].as_u64(), Some(total), "{h}");
    assert_eq!((h["failed"].as_u64(), h["dropped"].as_u64()), (Some(0), Some(0)), "{h}");
    assert!(h["retries"].as_u64().unwrap() > 0, "the outage was seen: {h}");
}

#[test]
fn rsyslog_restarted_mid_run_over_tcp_loses_at_most_what_the_handler_reports() {
    let (seqs, h, total) = restart_mid_run("tcp");
    let mut missing = 0;
    for w in 0..4u32 {
        let got = seqs.get(&(w, 0)).cloned().unwrap_or_default();
        let mut sorted = got.clone();
        sorted.dedup();
        assert_eq!(sorted.len(), got.len(), "worker {w}: a record arrived twice");
        assert!(got.windows(2).all(|p| p[0] < p[1]), "worker {w}: out of order");
        missing += 4000 - got.len() as u64;
    }
    let failed = h["failed"].as_u64().unwrap();
    eprintln!("tcp restart: {missing} of {total} missing at rsyslog, {failed} reported as unconfirmed");
    assert!(
        missing <= failed,
        "{missing} records missing at rsyslog, but the handler reported only {failed} as failed: {h}"
    );
    assert_eq!(h["unconfirmed"].as_u64(), Some(failed), "every failure here is a record in doubt: {h}");
    assert_eq!(h["emitted"].as_u64().unwrap() + failed, total, "{h}");
    assert!(h["retries"].as_u64().unwrap() > 0, "the outage was seen: {h}");
}

/// Reads octet-counted syslog messages (RFC 6587) from one connection.
fn read_octet_counted(stream: std::net::TcpStream) -> Vec<String> {
    let mut r = BufReader::new(stream);
    let mut out = Vec::new();
    loop {
        let mut len = Vec::new();
        if r.read_until(b' ', &mut len).unwrap_or(0) == 0 {
            return out;
        }
        let Ok(n) = String::from_utf8_lossy(&len).trim().parse::<usize>() else { return out };
        let mut msg = vec![0u8; n];
        if r.read_exact(&mut msg).is_err() {
            return out;
        }
        out.push(String::from_utf8_lossy(&msg).into_owned());
    }
}

#[test]
fn a_syslog_target_down_for_30_seconds_stalls_nothing_and_what_it_held_arrives() {
    let d = Dir::new();
    let port = free_port();
    // A small buffer, so the outage overflows it (and the drop policy shows).
    let sys = format!(
        r#"[handlers.sys]
class = "SysLogHandler"
address = "127.0.0.1:{port}"
socktype = "tcp"
format = "rfc5424"
buffer_max_records = 20000
retry_initial = 0.2
retry_max = 1"#
    );
    let config = beside_a_file(&d, "DEBUG", &["sys"], &sys);
    let hub = HubProc::start(&d, &d.write("hub.toml", &config));
    // 4 workers × 1000 records/s for 40 s: the target is down for the
    // first 30 s, then up.
    const PER_WORKER: u64 = 40_000;
    let workers: Vec<_> = (0..4)
        .map(|i| {
            worker(&hub.socket, i, PER_WORKER, &["--rate", "1000", "--message-bytes", "60", "--latency"])
        })
        .collect();
    // Watch the file grow while the target is down: the longest time it
    // stood still is how long the file handler stalled.
    let out = d.path("out.log");
    let longest_still = longest_still(&out, Duration::from_secs(30), Duration::from_secs(1));
    let during = stats(&hub.socket);
    let sys = handler(&during, "sys");
    assert!(sys["dropped"].as_u64().unwrap() > 0, "the outage should overflow the buffer: {sys}");
    assert!(sys["held"].as_u64().unwrap() > 0 && sys["retries"].as_u64().unwrap() > 0, "{sys}");
    assert!(sys["last_error"].as_str().unwrap().contains("refused"), "{sys}");
    // The target comes back: a server that reads every message.
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("the port is still free");
    let reader = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        read_octet_counted(conn)
    });
    // The log call never waited on the hub: the slowest sampled call.
    let worst = workers.into_iter().map(slowest_log_call).max().unwrap();
    let s =
        stats_when(&hub.socket, |s| handler(s, "sys")["held"] == 0 && handler(s, "sys")["queue_depth"] == 0);
    let sys = handler(&s, "sys").clone();
    let stderr = hub.stop();
    let messages = reader.join().unwrap();

    // The file: complete, in order, and it never stood still for long.
    let (seqs, _) = sequences(&out);
    for w in 0..4 {
        assert_complete(&seqs, w, 0, PER_WORKER);
    }
    eprintln!(
        "target down 30 s: the file stood still at most {longest_still:?}; slowest sampled log call {worst} ns; {} dropped",
        sys["dropped"]
    );
    assert!(
        longest_still < Duration::from_secs(2),
        "the file handler stalled for {longest_still:?} while the syslog target was down"
    );
    assert!(worst < 200_000_000, "a worker's log call waited {worst} ns");
    // The syslog target: every record it got is a worker's, once; together
    // with what was dropped (and counted) that is everything.
    let bodies: Vec<&str> = messages.iter().map(|m| m.splitn(8, ' ').nth(7).unwrap_or("")).collect();
    let (got, reports) = sequences_in(bodies.iter().copied());
    let delivered: u64 = got.values().map(|v| v.len() as u64).sum();
    for (k, v) in &got {
        let mut u = v.clone();
        u.sort_unstable();
        u.dedup();
        assert_eq!(u.len(), v.len(), "{k:?}: duplicates");
    }
    let dropped = sys["dropped"].as_u64().unwrap();
    assert_eq!(delivered + dropped, 4 * PER_WORKER, "delivered {delivered} + dropped {dropped}: {sys}");
    assert_eq!(sys["emitted"].as_u64(), Some(delivered), "{sys}");
    // The drops were reported: on the hub's stderr, and to the target itself.
    assert!(stderr.contains("handler \"sys\" dropped"), "{stderr}");
    assert!(reports.iter().any(|r| r.contains("handler \"sys\" dropped")), "{reports:?}");
}

#[test]
fn a_target_that_accepts_but_never_reads_is_given_up_on_and_retried_without_stalling_anything() {
    let d = Dir::new();
    // Accepts connections and never reads from them: the hub's writes fill
    // the kernels' buffers, then make no progress.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = held.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            keep.lock().unwrap().push(conn);
        }
    });
    let sys = format!(
        r#"[handlers.sys]
class = "SysLogHandler"
address = "127.0.0.1:{port}"
socktype = "tcp"
format = "rfc5424"
timeout = 0.5
retry_initial = 0.2
retry_max = 0.5
buffer_max_records = 5000"#
    );
    let config = beside_a_file(&d, "DEBUG", &["sys"], &sys);
    let hub = HubProc::start(&d, &d.write("hub.toml", &config));
    // 2 KB messages: a few MB fill the connection's buffers quickly.
    let w = worker(&hub.socket, 0, 20_000, &["--rate", "4000", "--message-bytes", "2000"]);
    finish_worker(w);
    let s = stats_when(&hub.socket, |s| handler(s, "sys")["held"] == 0 && handler(s, "sys")["retries"] != 0);
    let sys = handler(&s, "sys").clone();
    assert!(sys["retries"].as_u64().unwrap() >= 1 && sys["unconfirmed"].as_u64().unwrap() > 0, "{sys}");
    // Nothing was silently lost: delivered (into buffers nobody reads),
    // unconfirmed (counted as failed), dropped or still held.
    let n = |k: &str| sys[k].as_u64().unwrap();
    assert_eq!(n("emitted") + n("failed") + n("dropped") + n("held") + n("queue_depth"), 20_000, "{sys}");
    assert!(
        held.lock().unwrap().len() >= 2,
        "the handler reconnected after giving up on the first connection"
    );
    let (seqs, _) = sequences(&d.path("out.log"));
    assert_complete(&seqs, 0, 0, 20_000);
    let stderr = hub.stop();
    assert!(stderr.contains("the peer took no data for"), "{stderr}");
}

/// A test directory and a private `state` directory in it (for `state_dir`).
fn dir_with_state() -> (Dir, std::path::PathBuf) {
    let d = Dir::new();
    let state = d.path("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    (d, state)
}

/// rsyslog (RELP) is down for 60 s while 4 workers log through a
/// SysLogHandler with a disk buffer, and the hub is SIGKILLed once in the
/// middle of the outage: once rsyslog is back, every record reaches it
/// (at-least-once: duplicates are counted, and bounded by what was in
/// flight when it went down).
#[test]
fn a_disk_buffer_delivers_everything_after_a_60_second_outage_and_a_hub_sigkill() {
    const PER_WORKER: u64 = 6000;
    let (d, state) = dir_with_state();
    let mut rs = Rsyslog::start(&[("in", Input::Relp)], None);
    let port = rs.address("in").port();
    let config = format!(
        "[hub]\nstate_dir = {state:?}\n[handlers.sys]\nclass = \"SysLogHandler\"\naddress = \"127.0.0.1:{port}\"\nsocktype = \"tcp\"\nrelp = true\nformat = \"rfc5424\"\nretry_initial = 0.2\nretry_max = 1\nbuffer = \"disk\"\nmax_buffer_bytes = 67108864\n[root]\nlevel = \"DEBUG\"\nhandlers = [\"sys\"]\n"
    );
    let cfg = d.write("hub.toml", &config);
    let mut hub = HubProc::start(&d, &cfg);
    let workers: Vec<_> = (0..4)
        .map(|i| worker(&hub.socket, i, PER_WORKER, &["--rate", "300", "--message-bytes", "60"]))
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    rs.stop();
    let down = Instant::now();
    std::thread::sleep(Duration::from_secs(10));
    let spool = state.join("sys.spool");
    assert!(std::fs::metadata(&spool).is_ok_and(|m| m.len() > 0), "records wait in the disk buffer");
    hub.signal(libc::SIGKILL);
    hub.child.wait().unwrap();
    hub = HubProc::start(&d, &cfg);
    // The clients are acknowledged by the disk buffer: they finish while
    // rsyslog is still down.
    for w in workers {
        finish_worker(w);
    }
    assert!(down.elapsed() < Duration::from_secs(60), "the workers waited for rsyslog");
    std::thread::sleep(Duration::from_secs(60).saturating_sub(down.elapsed()));
    rs.restart();
    let total = 4 * PER_WORKER;
    let lines = poll(
        Duration::from_secs(60),
        Duration::from_millis(500),
        || rs.lines("in"),
        |l| unique_records(l) == total,
    );
    let s = stats_when(&hub.socket, |s| handler(s, "sys")["held"] == 0);
    let h = handler(&s, "sys").clone();
    let err = hub.stop();
    let duplicates = duplicates_of_complete(&workers_only(&lines), PER_WORKER, &err);
    eprintln!("disk buffer, 60 s outage and a SIGKILL: {duplicates} duplicates out of {total}");
    // In flight when rsyslog went down: at most a RELP window (1024 frames).
    assert!(duplicates <= 1024, "{duplicates} records arrived twice");
    assert_eq!(
        (h["failed"].as_u64(), h["dropped"].as_u64(), h["held"].as_u64()),
        (Some(0), Some(0), Some(0)),
        "{h}"
    );
}

/// A disk buffer that fills up (its target is away) applies the handler's
/// overflow policy and counts every record it drops; refusing to start
/// without a `state_dir` to keep it in.
#[test]
fn a_full_disk_buffer_applies_its_overflow_policy_and_counts_what_it_drops() {
    const N: u64 = 5000;
    let (d, state) = dir_with_state();
    let port = free_port();
    // Python's SocketHandler delivers through the same disk buffer, beside it.
    let handler_toml = format!(
        "[handlers.sys]\nclass = \"SysLogHandler\"\naddress = \"127.0.0.1:{port}\"\nsocktype = \"tcp\"\nrelp = true\nbuffer = \"disk\"\nmax_buffer_bytes = 65536\noverflow = \"drop_newest\"\n[handlers.py]\nclass = \"logging.handlers.SocketHandler\"\nhost = \"127.0.0.1\"\nport = {port}\nbuffer = \"disk\"\nmax_buffer_bytes = 65536\n[root]\nlevel = \"DEBUG\"\nhandlers = [\"sys\", \"py\"]\n"
    );
    let without = d.write("without.toml", &handler_toml);
    let out = Command::new(BIN)
        .args(["hub", "--config", without.to_str().unwrap(), "--socket", d.socket().to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("needs [hub] state_dir"), "{err}");
    let check = Command::new(BIN).args(["check-config", without.to_str().unwrap()]).output().unwrap();
    let err = String::from_utf8_lossy(&check.stderr);
    assert_eq!(check.status.code(), Some(2), "{err}");
    assert!(err.contains("handlers.sys.buffer") && err.contains("needs [hub] state_dir"), "{err}");
    let cfg = d.write("hub.toml", &format!("[hub]\nstate_dir = {state:?}\n{handler_toml}"));
    let hub = HubProc::start(&d, &cfg);
    finish_worker(worker(&hub.socket, 1, N, &["--message-bytes", "60"]));
    let accounted = |s: &serde_json::Value, name: &str| {
        let h = handler(s, name);
        h["held"].as_u64().unwrap() + h["dropped"].as_u64().unwrap()
    };
    let s = stats_when(&hub.socket, |s| accounted(s, "sys") == N && accounted(s, "py") == N);
    for name in ["sys", "py"] {
        let h = handler(&s, name);
        let (held, dropped) = (h["held"].as_u64().unwrap(), h["dropped"].as_u64().unwrap());
        assert_eq!(held + dropped, N, "every record is held on disk or counted as dropped: {h}");
        assert!(dropped > 0 && held > 0, "64 KiB holds some of {N} records of 100 bytes and more: {h}");
        let spool = state.join(format!("{name}.spool"));
        assert!(std::fs::metadata(spool).unwrap().len() <= 65536 + 4096, "bounded");
    }
    drop(hub);
}

/// The hub is SIGKILLed while it delivers from its disk buffer to a live
/// rsyslog (RELP): records delivered but written after the journal's last
/// entry are cut, resent by their clients and delivered again; nothing is
/// lost, and what arrives twice is bounded by what was in flight.
#[test]
fn a_disk_buffer_delivering_to_a_live_rsyslog_loses_nothing_through_a_hub_sigkill() {
    const PER_WORKER: u64 = 4000;
    let (d, state) = dir_with_state();
    let rs = Rsyslog::start(&[("in", Input::Relp)], None);
    let port = rs.address("in").port();
    let cfg = d.write(
        "hub.toml",
        &format!(
            "[hub]\nstate_dir = {state:?}\n[handlers.sys]\nclass = \"SysLogHandler\"\naddress = \"127.0.0.1:{port}\"\nsocktype = \"tcp\"\nrelp = true\nformat = \"rfc5424\"\nretry_initial = 0.2\nretry_max = 1\nbuffer = \"disk\"\n[root]\nlevel = \"DEBUG\"\nhandlers = [\"sys\"]\n"
        ),
    );
    let mut hub = HubProc::start(&d, &cfg);
    let workers: Vec<_> = (0..4)
        .map(|i| worker(&hub.socket, i, PER_WORKER, &["--rate", "300", "--message-bytes", "60"]))
        .collect();
    std::thread::sleep(Duration::from_secs(4));
    hub.signal(libc::SIGKILL);
    hub.child.wait().unwrap();
    hub = HubProc::start(&d, &cfg);
    workers.into_iter().for_each(finish_worker);
    let total = 4 * PER_WORKER;
    stats_when(&hub.socket, |s| handler(s, "sys")["held"] == 0);
    assert!(wait_until(Duration::from_secs(30), || unique_records(&rs.lines("in")) == total));
    let err = hub.stop();
    let duplicates = duplicates_of_complete(&workers_only(&rs.lines("in")), PER_WORKER, &err);
    eprintln!("disk buffer, live rsyslog, a SIGKILL: {duplicates} duplicates out of {total}");
    assert!(duplicates <= 1024, "{duplicates} records arrived twice");
}
