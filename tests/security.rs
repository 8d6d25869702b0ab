//! Nobody let in: socket permissions, the peer-credential allowlist, hostile
//! socket paths, log injection. The cases that need a second user run as
//! root (CI does) and switch to `nobody` with setpriv(1).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::util::*;

const NOBODY: u32 = 65534;

/// A directory every user can enter, holding a copy of the binary every
/// user can run (the build tree may be private to root).
struct Shared {
    dir: tempfile::TempDir,
    bin: PathBuf,
}

fn shared_dir() -> Shared {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test runs a client as another user and must run as root (CI does; locally: sudo -E cargo nextest run)"
    );
    let ok = Command::new("setpriv").arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(ok, "setpriv(1) is missing: apt-get install util-linux (scripts/test installs it)");
    let dir = tempfile::Builder::new().prefix("lf-sec-").tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.path().join("logfunnel");
    std::fs::copy(BIN, &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    Shared { dir, bin }
}

fn as_nobody(bin: &Path, args: &[&str]) -> Output {
    Command::new("setpriv")
        .args(["--reuid", &NOBODY.to_string(), "--regid", &NOBODY.to_string(), "--clear-groups"])
        .arg(bin)
        .args(args)
        .output()
        .expect("run setpriv")
}

fn hub_in(shared: &Shared, toml: &str) -> HubProc {
    let d = Dir::new();
    let cfg = shared.dir.path().join("hub.toml");
    std::fs::write(&cfg, format!("{toml}\n[handlers.file]\nclass = \"FileHandler\"\nfilename = {:?}\n[root]\nlevel = \"NOTSET\"\nhandlers = [\"file\"]\n", shared.dir.path().join("out.log"))).unwrap();
    let mut hub = HubProc::spawn_at(&d, &cfg, &shared.dir.path().join("hub.sock"));
    hub.keep_dir(d);
    hub.wait_ready();
    hub
}

#[test]
fn another_user_cannot_open_a_0600_socket() {
    let shared = shared_dir();
    let hub = hub_in(&shared, "");
    let meta = std::fs::metadata(&hub.socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let out = as_nobody(&shared.bin, &["send", "--socket", hub.socket.to_str().unwrap(), "intruder"]);
    assert!(!out.status.success(), "nobody got in");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Permission denied"), "{err}");
    assert_eq!(stats(&hub.socket)["received"], 0);
    hub.stop();
}

#[test]
fn the_allowlist_refuses_a_peer_by_its_kernel_credentials_and_logs_it() {
    let shared = shared_dir();
    // The file mode lets everyone connect; only the allowlist keeps nobody out.
    let hub = hub_in(&shared, "[hub]\nsocket_mode = \"0666\"\nallowed_uids = [0]\nsocket_group = 65534");
    assert_eq!(std::fs::metadata(&hub.socket).unwrap().gid(), NOBODY, "socket_group applied");
    let out = as_nobody(&shared.bin, &["send", "--socket", hub.socket.to_str().unwrap(), "intruder"]);
    assert!(!out.status.success(), "nobody got in: {}", String::from_utf8_lossy(&out.stdout));
    // An allowed uid (root, this test) is served.
    let ok = run(&["send", "--socket", hub.socket.to_str().unwrap(), "w1 t0 s0"]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let v = stats(&hub.socket);
    assert_eq!(v["refused_peers"], 1, "{v}");
    assert_eq!(v["received"], 1, "{v}");
    let err = hub.stop();
    assert!(
        err.contains(&format!("uid {NOBODY} gid {NOBODY}")) && err.contains("not in allowed_uids"),
        "{err}"
    );
    let text = std::fs::read_to_string(shared.dir.path().join("out.log")).unwrap();
    assert_eq!(text, "w1 t0 s0\n");
}

#[test]
fn world_writable_directories_and_symlinked_socket_paths_are_refused() {
    let dir = Dir::new();
    let open = dir.path("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = run(&["hub", "--socket", open.join("hub.sock").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("writable by every user"), "{err}");
    let link = dir.path("link.sock");
    std::os::unix::fs::symlink(dir.path("elsewhere.sock"), &link).unwrap();
    let out = run(&["hub", "--socket", link.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("symbolic link"), "{err}");
    // An abstract socket name is a configuration error.
    let cfg = dir.write("abstract.toml", "[hub]\nsocket = \"@logfunnel\"\n");
    let out = run(&["check-config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("hub.socket: abstract socket"));
}

#[test]
fn control_characters_cannot_forge_lines_unless_raw_is_configured() {
    let dir = Dir::new();
    let raw = dir.path("raw.log");
    let cfg = config_with(
        &dir,
        "",
        &["raw"],
        &format!(
            "[handlers.raw]\nclass = \"FileHandler\"\nfilename = {raw:?}\nescape_control_chars = false\n"
        ),
    );
    let hub = HubProc::start(&dir, &cfg);
    let s = hub.socket.to_str().unwrap();
    for msg in ["ok\nFAKE 2026-01-01 CRITICAL root", "\x1b[2Jcleared", "a\rb\tc"] {
        let out = run(&["send", "--socket", s, msg]);
        assert!(out.status.success());
    }
    hub.stop();
    let text = std::fs::read_to_string(dir.path("out.log")).unwrap();
    assert_eq!(text, "ok\\nFAKE 2026-01-01 CRITICAL root\n\\x1b[2Jcleared\na\\rb\tc\n");
    let raw = std::fs::read_to_string(raw).unwrap();
    assert_eq!(raw.lines().count(), 4, "raw output keeps the bytes: {raw:?}");
}

/// S3: a client may claim any pid, host or extra field, but the kernel's
/// view of the connection (`%(peer_uid)s`, `%(peer_pid)s`) is the hub's
/// own, and an extra of the same name cannot shadow it.
#[test]
fn the_kernels_view_of_the_sender_cannot_be_forged() {
    use logfunnel_protocol::{Record, Value};
    let dir = Dir::new();
    let cfg = dir.write(
        "hub.toml",
        &format!(
            "[formatters.f]\nformat = \"%(peer_uid)s %(peer_gid)s %(peer_pid)s claimed=%(process)d %(message)s\"\n[handlers.file]\nclass = \"FileHandler\"\nfilename = {:?}\nformatter = \"f\"\n[root]\nlevel = \"NOTSET\"\nhandlers = [\"file\"]\n",
            dir.path("out.log")
        ),
    );
    let hub = HubProc::start(&dir, &cfg);
    let mut forged = Record::new(20, "app", "hello");
    forged.process = 4242;
    forged.extra = vec![("peer_uid".into(), Value::Str("666".into())), ("peer_pid".into(), Value::I64(1))];
    logfunnel_client::send_records(&hub.socket, vec![forged], std::time::Duration::from_secs(10)).unwrap();
    hub.stop();
    // SAFETY: getuid/getgid have no preconditions.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let line = std::fs::read_to_string(dir.path("out.log")).unwrap();
    assert_eq!(line, format!("{uid} {gid} {} claimed=4242 hello\n", std::process::id()));
}

/// Runs `logfunnel ARGS` that should refuse at once; one that runs on is
/// killed after 10 s (and its status is then no refusal).
fn refusal(args: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run logfunnel");
    if wait_timeout(&mut child, std::time::Duration::from_secs(10)).is_none() {
        let _ = child.kill();
    }
    child.wait_with_output().expect("output")
}

/// Every field a client controls is escaped, not only the message and the
/// logger name; exception text keeps its own line breaks.
#[test]
fn no_field_a_client_controls_can_forge_a_line_or_reach_the_terminal() {
    use logfunnel_protocol::{Record, Value};
    let dir = Dir::new();
    let cfg = dir.write(
        "hub.toml",
        &format!(
            "[formatters.all]\nformat = \"%(levelname)s|%(name)s|%(processName)s|%(threadName)s|%(pathname)s|%(funcName)s|%(module)s|%(hostname)s|%(user)s|%(message)s\"\n[handlers.file]\nclass = \"FileHandler\"\nfilename = {:?}\nformatter = \"all\"\n[root]\nlevel = \"NOTSET\"\nhandlers = [\"file\"]\n",
            dir.path("out.log")
        ),
    );
    let hub = HubProc::start(&dir, &cfg);
    let forge = "\n2026-01-01 00:00:00 CRITICAL root: forged\x1b[2J\r";
    let mut r = Record::new(20, format!("app{forge}"), format!("m{forge}"));
    r.process_name = Some(format!("proc{forge}"));
    r.thread_name = Some(format!("thread{forge}"));
    r.pathname = Some(format!("/src/x{forge}.py"));
    r.func_name = Some(format!("f{forge}"));
    r.module_path = Some(format!("mod{forge}"));
    r.exc_text = Some(format!("Traceback (most recent call last):\n  File \"x\"\nValueError: bad{forge}"));
    r.extra = vec![("user".into(), Value::Str(format!("u{forge}"))), (format!("k{forge}"), Value::I64(1))];
    logfunnel_client::send_records(&hub.socket, vec![r], std::time::Duration::from_secs(10)).unwrap();
    hub.stop();
    let text = std::fs::read_to_string(dir.path("out.log")).unwrap();
    assert!(!text.contains('\x1b') && !text.contains('\r'), "raw control bytes: {text:?}");
    let lines: Vec<&str> = text.lines().collect();
    // The record's own line holds every field, escaped; then the exception
    // text, whose line breaks are kept as Python writes tracebacks (so its
    // lines follow the record's), with every other control byte escaped.
    assert_eq!(lines.len(), 5, "{text}");
    let forged = "\\n2026-01-01 00:00:00 CRITICAL root: forged\\x1b[2J\\r";
    let got: Vec<&str> = lines[0].split('|').collect();
    let expected = [
        "INFO".to_owned(),
        format!("app{forged}"),
        format!("proc{forged}"),
        format!("thread{forged}"),
        format!("/src/x{forged}.py"),
        format!("f{forged}"),
        format!("x{forged}"),
        String::new(), // the connection's host name: this machine's
        format!("u{forged}"),
        format!("m{forged}"),
    ];
    assert_eq!(got.len(), expected.len(), "{}", lines[0]);
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        if i != 7 {
            assert_eq!(g, e, "field {i}");
        }
    }
    assert_eq!(lines[1..4], ["Traceback (most recent call last):", "  File \"x\"", "ValueError: bad"]);
    assert_eq!(lines[4], "2026-01-01 00:00:00 CRITICAL root: forged\\x1b[2J\\r");
}

/// A user who creates the socket's (predictable) directory first owns it:
/// the hub refuses it, instead of letting that user replace the socket or
/// plant links where the hub writes.
#[test]
fn a_socket_directory_owned_by_another_user_is_refused() {
    use std::os::unix::fs::chown;
    let shared = shared_dir();
    let theirs = shared.dir.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o755)).unwrap();
    chown(&theirs, Some(NOBODY), Some(NOBODY)).unwrap();
    let socket = theirs.join("hub.sock");
    let out = refusal(&["hub", "--socket", socket.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "the hub served a directory nobody owns");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("belongs to uid {NOBODY}")), "{err}");
    assert!(!socket.exists());
    // The same for a state_dir, which check-config finds too.
    let cfg = shared.dir.path().join("state.toml");
    std::fs::write(&cfg, format!("[hub]\nstate_dir = {theirs:?}\n")).unwrap();
    let out = run(&["check-config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("hub.state_dir: directory"), "{out:?}");
}

/// A link planted where the hub writes its journal, or the journal's
/// temporary file, is never followed: the file it points to is untouched.
#[test]
fn links_planted_for_the_journal_are_never_followed() {
    let dir = Dir::new();
    let victim = dir.path("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    let socket = dir.socket();
    let journal = dir.path("hub.sock.file.journal");
    std::os::unix::fs::symlink(&victim, journal.with_extension("journal.tmp")).unwrap();
    let cfg = dir.file_config();
    let hub = HubProc::start(&dir, &cfg);
    let out = run(&["send", "--socket", socket.to_str().unwrap(), "w1 t0 s0"]);
    assert!(out.status.success());
    hub.stop();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    assert!(!std::fs::symlink_metadata(journal.with_extension("journal.tmp")).is_ok_and(|m| m.is_symlink()));
    // A link at the journal itself: the hub refuses to start.
    std::fs::remove_file(&journal).unwrap();
    std::os::unix::fs::symlink(&victim, &journal).unwrap();
    let out = refusal(&["hub", "--config", cfg.to_str().unwrap(), "--socket", socket.to_str().unwrap()]);
    assert!(!out.status.success(), "the hub followed a link for its journal");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
}

/// `--socket` naming a regular file never deletes it; an abstract name is
/// refused on the command line as in the configuration.
#[test]
fn only_a_stale_socket_is_ever_replaced_and_abstract_names_are_refused() {
    let dir = Dir::new();
    let file = dir.path("notes.txt");
    std::fs::write(&file, "keep me\n").unwrap();
    let out = refusal(&["hub", "--socket", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a socket"), "{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me\n");
    let out = refusal(&["hub", "--socket", "@logfunnel-test"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("abstract socket names are refused"), "{err}");
}
