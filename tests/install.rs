//! contrib/systemd: the unit passes `systemd-analyze verify`, and its
//! commands (ExecStartPre, ExecStart, ExecReload's SIGHUP, the stop's
//! SIGTERM) work with the shipped hub.toml, with systemd's readiness
//! protocol (Type=notify) spoken over a real NOTIFY_SOCKET.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::*;

fn contrib(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/systemd").join(name)).unwrap()
}

/// The value of `key=` in the unit, with the installed binary's path
/// replaced by the one under test.
fn unit_line(unit: &str, key: &str) -> Vec<String> {
    let line =
        unit.lines().find_map(|l| l.strip_prefix(&format!("{key}="))).unwrap_or_else(|| panic!("no {key}="));
    line.split_whitespace().map(|w| w.replace("/usr/local/bin/logfunnel", BIN)).collect()
}

#[test]
fn the_systemd_unit_verifies() {
    let found = Command::new("systemd-analyze").arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(found, "systemd-analyze is needed: apt-get install -y systemd (scripts/test installs it)");
    let dir = Dir::new();
    // Verified as installed, but with ExecStart's binary where it was built.
    let unit = dir
        .write("logfunnel.service", &contrib("logfunnel.service").replace("/usr/local/bin/logfunnel", BIN));
    let out = Command::new("systemd-analyze").arg("verify").arg(&unit).output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "systemd-analyze verify:\n{said}");
}

#[test]
fn the_units_commands_run_the_shipped_config_and_speak_sd_notify() {
    let dir = Dir::new();
    let unit = contrib("logfunnel.service");
    // /run/logfunnel, /var/lib/logfunnel and /var/log/logfunnel as systemd
    // would make them; the group is this test's own.
    let run_dir = dir.path("run");
    for d in ["run", "lib", "log"] {
        std::fs::create_dir(dir.path(d)).unwrap();
        std::fs::set_permissions(dir.path(d), std::os::unix::fs::PermissionsExt::from_mode(0o750)).unwrap();
    }
    // SAFETY: getgid cannot fail.
    let gid = unsafe { libc::getgid() };
    let config = contrib("hub.toml")
        .replace("socket_group = \"logfunnel\"", &format!("socket_group = {gid}"))
        .replace("/var/lib/logfunnel", dir.path("lib").to_str().unwrap())
        .replace("/var/log/logfunnel", dir.path("log").to_str().unwrap())
        .replace("127.0.0.1:9108", "127.0.0.1:0");
    let config_path = dir.write("hub.toml", &config);
    let paths = |args: Vec<String>| -> Vec<String> {
        args.into_iter()
            .map(|a| {
                a.replace("/etc/logfunnel/hub.toml", config_path.to_str().unwrap())
                    .replace("/run/logfunnel", run_dir.to_str().unwrap())
            })
            .collect()
    };
    let pre = paths(unit_line(&unit, "ExecStartPre"));
    let out = Command::new(&pre[0]).args(&pre[1..]).output().unwrap();
    assert!(out.status.success(), "ExecStartPre: {}", String::from_utf8_lossy(&out.stderr));

    let notify = UnixDatagram::bind(dir.path("notify")).unwrap();
    notify.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let start = paths(unit_line(&unit, "ExecStart"));
    let hub = Command::new(&start[0])
        .args(&start[1..])
        .env("NOTIFY_SOCKET", dir.path("notify"))
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(dir.path("hub.stderr")).unwrap())
        .spawn()
        .unwrap();
    // Killed if an assertion below fails first.
    struct Reaped(std::process::Child);
    impl Drop for Reaped {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut hub = Reaped(hub);
    let mut buf = [0u8; 512];
    let n = notify.recv(&mut buf).expect("READY=1 from the hub");
    let ready = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(ready.starts_with("READY=1\n"), "{ready}");
    // READY means clients can connect: at once, no retry.
    let socket = run_dir.join("logfunnel.sock");
    std::os::unix::net::UnixStream::connect(&socket).expect("the socket accepts as soon as READY=1 is sent");
    let sent = run(&["send", "--socket", socket.to_str().unwrap(), "first, right after READY"]);
    assert!(sent.status.success(), "{}", String::from_utf8_lossy(&sent.stderr));
    let meta = std::fs::metadata(&socket).unwrap();
    assert_eq!(
        (
            std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
            std::os::unix::fs::MetadataExt::gid(&meta)
        ),
        (0o660, gid)
    );
    // ExecReload: SIGHUP reopens the file (moved away as logrotate does).
    let log = dir.path("log/app.log");
    assert!(wait_until(Duration::from_secs(10), || std::fs::read_to_string(&log)
        .is_ok_and(|t| t.contains("first"))));
    std::fs::rename(&log, dir.path("log/app.log.1")).unwrap();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(hub.0.id() as i32, libc::SIGHUP) };
    assert!(wait_until(Duration::from_secs(10), || std::fs::read_to_string(dir.path("hub.stderr"))
        .is_ok_and(|t| t.contains("SIGHUP"))));
    let sent = run(&["send", "--socket", socket.to_str().unwrap(), "second, after the reload"]);
    assert!(sent.status.success());
    // The stop: SIGTERM, STOPPING=1, a drained exit 0.
    unsafe { libc::kill(hub.0.id() as i32, libc::SIGTERM) };
    let n = notify.recv(&mut buf).expect("STOPPING=1 from the hub");
    assert_eq!(&buf[..n], b"STOPPING=1");
    let status = wait_timeout(&mut hub.0, Duration::from_secs(30)).expect("the hub exits");
    assert!(status.success(), "{}", std::fs::read_to_string(dir.path("hub.stderr")).unwrap_or_default());
    assert!(
        std::fs::read_to_string(dir.path("log/app.log.1")).unwrap().contains("] first, right after READY\n")
    );
    assert!(std::fs::read_to_string(&log).unwrap().contains("] second, after the reload\n"));
    assert!(
        std::fs::read_dir(dir.path("lib")).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".journal")),
        "the journal lives in state_dir"
    );
}
