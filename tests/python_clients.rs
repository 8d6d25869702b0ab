//! Python's own SocketHandler and DatagramHandler into the hub (`[hub]
//! python_tcp`, `python_unix`, `python_udp`, `python_unix_dgram`), with
//! real python3 and nothing but its standard library
//! (tests/python/socket_clients.py): the hub's files must hold exactly what
//! each Python process's own FileHandler wrote with the same format.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::util::{Dir, HubProc, proc_status, python3, stats, stats_when};

const CLIENTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/socket_clients.py");
/// The format tests/python/socket_clients.py gives its own FileHandlers.
const FMT: &str = "%(asctime)s|%(created)f|%(msecs)03d|%(relativeCreated).3f|%(name)s|%(levelno)d|%(levelname)s|%(pathname)s|%(filename)s|%(module)s|%(lineno)d|%(funcName)s|%(thread)d|%(threadName)s|%(process)d|%(processName)s|%(seq)d|%(tags)s|%(message)s";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A config with `[hub]` lines `hub` and one FileHandler (format [`FMT`])
/// per logger name, each logger writing only to its own file.
fn hub_config(dir: &Dir, hub: &str, loggers: &[&str]) -> std::path::PathBuf {
    let mut text = format!("[hub]\n{hub}\n\n[formatters.f]\nformat = '{FMT}'\n\n");
    for name in loggers {
        text.push_str(&format!(
            "[handlers.file_{name}]\nclass = \"FileHandler\"\nfilename = {:?}\nformatter = \"f\"\n\n[loggers.{name}]\nlevel = \"DEBUG\"\nhandlers = [\"file_{name}\"]\npropagate = false\n\n",
            dir.path(&format!("hub-{name}.log"))
        ));
    }
    text.push_str("[handlers.rest]\nclass = \"FileHandler\"\nformatter = \"f\"\nfilename = ");
    text.push_str(&format!(
        "{:?}\n\n[root]\nlevel = \"NOTSET\"\nhandlers = [\"rest\"]\n",
        dir.path("rest.log")
    ));
    dir.write("hub.toml", &text)
}

fn run_python(args: &[&str]) {
    let out = Command::new(python3()).arg(CLIENTS).args(args).output().expect("run python3");
    assert!(
        out.status.success(),
        "python3 {CLIENTS} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn emitted(s: &serde_json::Value) -> u64 {
    s["handlers"].as_array().unwrap().iter().map(|h| h["emitted"].as_u64().unwrap()).sum()
}

/// Runs the pool against `target` and compares every worker's file.
fn pool_into_the_hub(dir: &Dir, hub_keys: &str, target: &str) {
    const WORKERS: usize = 4;
    const COUNT: u64 = 10_000;
    let names: Vec<String> = (0..WORKERS).map(|i| format!("w{i}")).collect();
    let loggers: Vec<&str> = names.iter().map(String::as_str).collect();
    let config = hub_config(dir, hub_keys, &loggers);
    let hub = HubProc::start(dir, &config);
    run_python(&["pool", target, dir.path("").to_str().unwrap(), &COUNT.to_string(), &WORKERS.to_string()]);
    let total = WORKERS as u64 * COUNT;
    let s = stats_when(&hub.socket, |s| emitted(s) >= total);
    assert_eq!(s["received"], total, "{s}");
    assert_eq!(s["bad_frames"], 0, "{s}");
    assert_eq!(s["python_objects"], 0, "{s}");
    let err = hub.stop();
    for name in &names {
        let ours = std::fs::read(dir.path(&format!("hub-{name}.log"))).unwrap();
        let python = std::fs::read(dir.path(&format!("expected-{}.log", &name[1..]))).unwrap();
        assert!(python.iter().filter(|&&b| b == b'\n').count() as u64 >= COUNT);
        if ours != python {
            let (a, b) = (String::from_utf8_lossy(&ours), String::from_utf8_lossy(&python));
            let first = a.lines().zip(b.lines()).find(|(x, y)| x != y);
            panic!(
                "logger {name}: the hub's file ({} bytes) differs from Python's FileHandler's ({} bytes); first differing line:\n{first:?}\nhub stderr: {err}",
                ours.len(),
                python.len()
            );
        }
        let text = String::from_utf8(ours).unwrap();
        assert!(text.contains("KeyError: 'missing'") && text.contains("Traceback (most recent call last):"));
        assert!(
            text.contains("|5|['list', 1, None, 2.5, 'é']|")
                && text.contains("Stack (most recent call last):")
        );
    }
    assert_eq!(std::fs::read(dir.path("rest.log")).unwrap_or_default(), b"");
}

#[test]
fn a_pool_of_four_through_socket_handler_over_tcp_writes_what_pythons_file_handler_writes() {
    let dir = Dir::new();
    let port = free_port();
    pool_into_the_hub(&dir, &format!("python_tcp = \"127.0.0.1:{port}\""), &format!("127.0.0.1:{port}"));
}

#[test]
fn a_pool_of_four_through_socket_handler_over_a_unix_socket_writes_what_pythons_file_handler_writes() {
    let dir = Dir::new();
    let path = dir.path("py.sock");
    pool_into_the_hub(&dir, &format!("python_unix = {path:?}"), path.to_str().unwrap());
    // The socket had the main socket's mode, and is gone with the hub.
    assert!(!path.exists());
}

#[test]
fn datagram_handler_records_arrive_as_python_wrote_them_and_losses_are_not_claimed() {
    const COUNT: u64 = 2_000;
    let dir = Dir::new();
    let (port, path) = (free_udp_port(), dir.path("py.dgram"));
    let config = hub_config(
        &dir,
        &format!("python_udp = \"127.0.0.1:{port}\"\npython_unix_dgram = {path:?}"),
        &["udp", "dgram"],
    );
    let hub = HubProc::start(&dir, &config);
    run_python(&[
        "datagrams",
        &format!("127.0.0.1:{port}"),
        path.to_str().unwrap(),
        dir.path("").to_str().unwrap(),
        &COUNT.to_string(),
    ]);
    // A Unix datagram sender blocks when the hub's queue is full: all arrive.
    let s = stats_when(&hub.socket, |s| emitted(s) > COUNT);
    std::thread::sleep(Duration::from_millis(300));
    let s2 = stats(&hub.socket);
    assert_eq!(s2["received"], emitted(&s2), "{s} {s2}");
    assert_eq!(s2["bad_frames"], 0, "{s2}");
    hub.stop();
    let dgram = std::fs::read(dir.path("hub-dgram.log")).unwrap();
    assert_eq!(
        dgram,
        std::fs::read(dir.path("expected-dgram.log")).unwrap(),
        "Unix datagrams: byte-identical"
    );
    // UDP: the kernel may drop datagrams (nobody is told); whatever arrived
    // is exactly a record Python wrote, once, and in order.
    let udp = String::from_utf8(std::fs::read(dir.path("hub-udp.log")).unwrap()).unwrap();
    let expected = String::from_utf8(std::fs::read(dir.path("expected-udp.log")).unwrap()).unwrap();
    let (got, want) = (records(&udp), records(&expected));
    assert_eq!(want.len() as u64, COUNT);
    in_order_subset(&got, &want);
    let received = s2["received"].as_u64().unwrap();
    assert_eq!(received, got.len() as u64 + COUNT, "what stats claims is what the files hold");
}

/// A file of formatted records split into records (a record starts with
/// its asctime, `20..-`; traceback and stack lines do not).
fn records(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        if line.starts_with("20") && line.as_bytes().get(4) == Some(&b'-') {
            out.push(line.to_owned());
        } else if let Some(last) = out.last_mut() {
            last.push('\n');
            last.push_str(line);
        }
    }
    out
}

/// Asserts that every record of `got` is one of `want`, once and in order
/// (datagrams the kernel dropped are missing, nothing else may differ).
fn in_order_subset(got: &[String], want: &[String]) {
    assert!(!got.is_empty(), "no datagram arrived");
    let mut at = 0;
    for r in got {
        let found = want[at..].iter().position(|w| w == r);
        assert!(found.is_some(), "a record that Python did not write (or out of order): {r:?}");
        at += found.unwrap() + 1;
    }
}

/// Sends `frame` on a new connection; returns whether the hub closed it.
fn closed_after(port: u16, frame: &[u8]) -> bool {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let _ = c.write_all(frame);
    let _ = c.shutdown(std::net::Shutdown::Write);
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut b = [0u8; 16];
    matches!(c.read(&mut b), Ok(0) | Err(_))
}

fn framed(pickle: &[u8]) -> Vec<u8> {
    let mut v = (pickle.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(pickle);
    v
}

#[test]
fn hostile_pickles_are_refused_and_counted_and_the_hub_keeps_serving() {
    let dir = Dir::new();
    let port = free_port();
    let config = hub_config(&dir, &format!("python_tcp = \"127.0.0.1:{port}\""), &["objects"]);
    let hub = HubProc::start(&dir, &config);
    let rss_before = proc_status(hub.child.id(), "VmRSS");
    // Each would import, construct or call something (or needs buffers): as
    // the whole stream it is not a dict, and is refused.
    let refused: Vec<(&str, Vec<u8>)> = vec![
        ("GLOBAL+REDUCE", b"cos\nsystem\n(S'id'\ntR.".to_vec()),
        ("STACK_GLOBAL+REDUCE", b"\x80\x04\x8c\x02os\x8c\x06system\x93\x8c\x02id\x85R.".to_vec()),
        ("INST", b"(S'id'\nios\nsystem\n.".to_vec()),
        ("OBJ", b"(cos\nsystem\nS'id'\no.".to_vec()),
        ("NEWOBJ", b"\x80\x02cbuiltins\nobject\n)\x81.".to_vec()),
        ("NEWOBJ_EX", b"\x80\x04cbuiltins\nobject\n)}\x92.".to_vec()),
        ("BUILD", b"\x80\x02cbuiltins\nobject\n)\x81}b.".to_vec()),
        ("EXT1", b"\x80\x02\x82\x01.".to_vec()),
        ("EXT2", b"\x80\x02\x83\x01\x00.".to_vec()),
        ("EXT4", b"\x80\x02\x84\x01\x00\x00\x00.".to_vec()),
        ("PERSID", b"Pid\n.".to_vec()),
        ("BINPERSID", b"S'id'\nQ.".to_vec()),
        ("NEXT_BUFFER", b"\x80\x05\x97.".to_vec()),
        ("READONLY_BUFFER", b"\x80\x05}\x98.".to_vec()),
        ("unknown opcode", b"}\xff.".to_vec()),
        ("list bomb", {
            let mut v = b"}(X\x01\x00\x00\x00a".to_vec();
            v.extend(std::iter::repeat_n(b']', 100_000));
            v.extend(std::iter::repeat_n(b'a', 99_999));
            v.extend(b"u.");
            v
        }),
        ("mark bomb", vec![b'('; 100_000]),
        ("2^31 string", b"}X\x00\x00\x00\x80".to_vec()),
        ("truncated", b"}q\x00(X\x04\x00\x00\x00nameq\x01X\x03".to_vec()),
        ("a list, not a dict", b"]q\x00.".to_vec()),
    ];
    let mut expected_bad = 0;
    for (what, p) in &refused {
        assert!(closed_after(port, &framed(p)), "{what}: the connection stays open");
        expected_bad += 1;
    }
    // A length prefix of 2^31: refused before anything is allocated.
    assert!(closed_after(port, &0x8000_0000u32.to_be_bytes()));
    expected_bad += 1;
    // Random bytes behind a right length.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..100 {
        let bytes: Vec<u8> = (0..1000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert!(closed_after(port, &framed(&bytes)));
        expected_bad += 1;
    }
    // A frame cut short by its sender: counted as truncated, not as bad.
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.write_all(&[0, 0, 1, 0, b'}']).unwrap();
    drop(c);
    let s = stats_when(&hub.socket, |s| s["bad_frames"] == expected_bad && s["truncated_frames"] == 1);
    assert_eq!(s["bad_frames"], expected_bad, "{s}");
    assert_eq!(s["truncated_frames"], 1, "{s}");
    assert_eq!(s["received"], 0, "{s}");
    // Objects inside a record: kept as placeholders, counted.
    run_python(&["objects", &format!("127.0.0.1:{port}")]);
    let s = stats_when(&hub.socket, |s| s["received"] == 2);
    assert_eq!(s["python_objects"], 2, "{s}");
    // Connections that announce records of almost 8 MiB and send a byte:
    // each costs what arrived, not what it announced.
    let announced: Vec<TcpStream> = (0..64)
        .map(|_| {
            let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
            c.write_all(&[0x00, 0x7f, 0xff, 0xff, b'}']).unwrap();
            c
        })
        .collect();
    let s = stats_when(&hub.socket, |s| s["open_connections"].as_u64().unwrap() >= 65);
    assert!(s["open_connections"].as_u64().unwrap() >= 65, "{s}");
    let rss_after = proc_status(hub.child.id(), "VmRSS");
    assert!(rss_after < rss_before + 64 * 1024, "hub RSS grew from {rss_before} kB to {rss_after} kB");
    drop(announced);
    hub.stop();
    let text = std::fs::read_to_string(dir.path("hub-objects.log")).unwrap();
    assert!(text.contains("|1|<decimal.Decimal object, not unpickled>|a decimal"), "{text}");
    assert!(text.contains("|2|<datetime.datetime object, not unpickled>|a datetime"), "{text}");
}

#[test]
fn the_unix_listener_has_the_main_sockets_protections() {
    use std::os::unix::fs::PermissionsExt;
    let dir = Dir::new();
    let path = dir.path("py.sock");
    let config = hub_config(&dir, &format!("python_unix = {path:?}\nsocket_mode = \"0660\""), &[]);
    let hub = HubProc::start(&dir, &config);
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o660);
    hub.stop();
    // A world-writable directory is refused.
    let open = Dir::new();
    std::fs::create_dir(open.path("pub")).unwrap();
    std::fs::set_permissions(open.path("pub"), std::fs::Permissions::from_mode(0o777)).unwrap();
    let config = hub_config(&open, &format!("python_unix = {:?}", open.path("pub/py.sock")), &[]);
    let out = Command::new(crate::util::BIN)
        .args(["hub", "--config", config.to_str().unwrap(), "--socket", open.socket().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("writable by every user"), "{err}");
    // An allowlist without our uid closes our connection before reading it.
    let dir = Dir::new();
    let path = dir.path("py.sock");
    let config = hub_config(&dir, &format!("python_unix = {path:?}\nallowed_uids = [4242424]"), &[]);
    let hub = HubProc::start(&dir, &config);
    let mut c = std::os::unix::net::UnixStream::connect(&path).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = c.write_all(&framed(b"}."));
    let mut b = [0u8; 4];
    assert!(matches!(c.read(&mut b), Ok(0) | Err(_)));
    // (`stats` itself is refused too: the allowlist holds for every socket.)
    assert!(
        crate::util::wait_until(Duration::from_secs(10), || hub
            .stderr()
            .contains("refused a python_unix client")),
        "{}",
        hub.stderr()
    );
    let err = hub.stop();
    assert!(err.contains("is not in allowed_uids/allowed_gids"), "{err}");
    assert_eq!(std::fs::read(dir.path("rest.log")).unwrap_or_default(), b"");
}

#[test]
fn python_connections_beyond_max_connections_are_refused_counted_and_the_hub_keeps_serving() {
    let dir = Dir::new();
    let port = free_port();
    let config = hub_config(&dir, &format!("python_tcp = \"127.0.0.1:{port}\"\nmax_connections = 3"), &[]);
    let hub = HubProc::start(&dir, &config);
    // Six idle connections: three are served (and wait), three are refused.
    let held: Vec<TcpStream> = (0..6).map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap()).collect();
    let s = stats_when(&hub.socket, |s| s["over_limit"].as_u64() >= Some(3));
    assert_eq!(s["over_limit"], 3, "{s}");
    assert!(
        crate::util::wait_until(Duration::from_secs(10), || hub
            .stderr()
            .contains("refused a Python connection: 3 already connected (max_connections)")),
        "{}",
        hub.stderr()
    );
    // Once they close, Python's own SocketHandler is served again.
    drop(held);
    let script = format!(
        "import logging, logging.handlers\nh = logging.handlers.SocketHandler('127.0.0.1', {port})\nlog = logging.getLogger('after')\nlog.addHandler(h)\nlog.error('served after the limit', extra={{'seq': 1, 'tags': 't'}})\nh.close()\n"
    );
    let out = Command::new(python3()).args(["-c", &script]).output().expect("run python3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = stats_when(&hub.socket, |s| emitted(s) >= 1);
    assert_eq!((&s["received"], emitted(&s)), (&1.into(), 1), "{s}");
    hub.stop();
    let rest = std::fs::read_to_string(dir.path("rest.log")).unwrap();
    assert_eq!(rest.lines().count(), 1, "{rest}");
    assert!(rest.contains("|after|40|ERROR|") && rest.ends_with("|served after the limit\n"), "{rest}");
}

#[test]
fn logfunnel_run_gives_a_python_pool_its_socket_in_the_environment() {
    let dir = Dir::new();
    let config = dir.file_config();
    let script = r#"
import logging, logging.handlers, multiprocessing, os

def work(i):
    log = logging.getLogger("pool")
    log.setLevel(logging.INFO)
    h = logging.handlers.SocketHandler(os.environ["LOGFUNNEL_PYTHON_SOCKET"], None)
    log.addHandler(h)
    for n in range(100):
        log.info("worker %d record %d", i, n)
    h.close()

if __name__ == "__main__":
    with multiprocessing.Pool(2) as p:
        p.map(work, [0, 1])
"#;
    let out = Command::new(crate::util::BIN)
        .args(["run", "--config", config.to_str().unwrap(), "--", python3(), "-c", script])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(dir.path("out.log")).unwrap();
    for i in 0..2 {
        let mine: Vec<&str> = text.lines().filter(|l| l.starts_with(&format!("worker {i} "))).collect();
        let want: Vec<String> = (0..100).map(|n| format!("worker {i} record {n}")).collect();
        assert_eq!(mine, want, "{text}");
    }
    assert_eq!(text.lines().count(), 200);
}

const RECEIVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/cookbook_receiver.py");

/// The cookbook's receiver, stopped when dropped.
struct Receiver(std::process::Child);

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the cookbook's receiver on `port`, writing FMT to `out`.
fn receiver(port: u16, out: &Path, udp: bool) -> Receiver {
    let mut cmd = Command::new(python3());
    cmd.args([RECEIVER, &port.to_string(), out.to_str().unwrap(), FMT]);
    if udp {
        cmd.arg("udp");
    }
    let mut child = cmd.stdout(std::process::Stdio::piped()).spawn().expect("start the cookbook receiver");
    let mut line = [0u8; 6];
    child.stdout.as_mut().unwrap().read_exact(&mut line).expect("the receiver says ready");
    assert_eq!(&line, b"ready\n");
    Receiver(child)
}

/// A hub taking Python's records on `inbound` and passing them all to the
/// handler `out` (`out` holds its class and port), after one Python process
/// has sent it `count` records.
fn relay(dir: &Dir, inbound: u16, out: &str, count: u64) -> HubProc {
    let text = format!(
        "[hub]\npython_tcp = \"127.0.0.1:{inbound}\"\n\n[handlers.out]\nhost = \"127.0.0.1\"\n{out}\n\n[root]\nlevel = \"NOTSET\"\nhandlers = [\"out\"]\n"
    );
    let hub = HubProc::start(dir, &dir.write("hub.toml", &text));
    let target = format!("127.0.0.1:{inbound}");
    run_python(&["pool", &target, dir.path("").to_str().unwrap(), &count.to_string(), "1"]);
    hub
}

fn handler_stats<'a>(s: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    crate::util::handler(s, name)
}

#[test]
fn the_hubs_socket_handler_holds_records_until_the_cookbook_receiver_is_up_and_python_rebuilds_each_one() {
    const COUNT: u64 = 2_000;
    let dir = Dir::new();
    let (inbound, outbound) = (free_port(), free_port());
    // Python's records into the hub while nobody listens on the way out:
    // Python's own SocketHandler would drop them all; the hub holds them.
    let hub = relay(
        &dir,
        inbound,
        &format!("class = \"logging.handlers.SocketHandler\"\nport = {outbound}\noverflow = \"block\""),
        COUNT,
    );
    let s = stats_when(&hub.socket, |s| handler_stats(s, "out")["retries"].as_u64().unwrap() >= 1);
    let out = handler_stats(&s, "out");
    assert_eq!(out["emitted"], 0, "{s}");
    assert!(out["held"].as_u64().unwrap() > 0, "{s}");
    let recv_log = dir.path("received.log");
    let rx = receiver(outbound, &recv_log, false);
    let s = stats_when(&hub.socket, |s| handler_stats(s, "out")["emitted"] == COUNT);
    assert_eq!(handler_stats(&s, "out")["emitted"], COUNT, "{s}");
    assert_eq!(handler_stats(&s, "out")["failed"], 0, "{s}");
    hub.stop();
    let expected = std::fs::read(dir.path("expected-0.log")).unwrap();
    let complete = || std::fs::read(&recv_log).is_ok_and(|r| r.len() >= expected.len());
    assert!(crate::util::wait_until(Duration::from_secs(10), complete));
    drop(rx);
    let got = std::fs::read(&recv_log).unwrap();
    if got != expected {
        let (a, b) = (String::from_utf8_lossy(&got), String::from_utf8_lossy(&expected));
        let first = a.lines().zip(b.lines()).find(|(x, y)| x != y);
        panic!("the receiver's file differs from Python's own: first differing line {first:?}");
    }
}

#[test]
fn the_hubs_datagram_handler_sends_what_the_cookbook_receiver_rebuilds() {
    const COUNT: u64 = 300;
    let dir = Dir::new();
    let (inbound, outbound) = (free_port(), free_udp_port());
    let recv_log = dir.path("received.log");
    let rx = receiver(outbound, &recv_log, true);
    let hub = relay(&dir, inbound, &format!("class = \"DatagramHandler\"\nport = {outbound}"), COUNT);
    let s = stats_when(&hub.socket, |s| handler_stats(s, "out")["emitted"] == COUNT);
    assert_eq!(handler_stats(&s, "out")["emitted"], COUNT, "{s}");
    hub.stop();
    let expected = String::from_utf8(std::fs::read(dir.path("expected-0.log")).unwrap()).unwrap();
    // UDP: what the kernel dropped (the receiver is slow) is missing; what
    // arrived must be Python's own records, once and in order.
    let size = || std::fs::metadata(&recv_log).map_or(0, |m| m.len());
    let mut last = u64::MAX;
    while size() != last {
        last = size();
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(rx);
    let got = records(&std::fs::read_to_string(&recv_log).unwrap());
    let want = records(&expected);
    assert_eq!(want.len() as u64, COUNT);
    in_order_subset(&got, &want);
}
