//! Helpers for the end-to-end tests: a temporary directory, the real
//! `logfunnel hub` as a child process, real worker processes, and the
//! checks every test ends with.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_logfunnel");

pub struct Dir {
    pub tmp: tempfile::TempDir,
}

impl Dir {
    pub fn new() -> Dir {
        Dir { tmp: tempfile::Builder::new().prefix("lf-e2e-").tempdir().expect("temp dir") }
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }
    pub fn socket(&self) -> PathBuf {
        self.path("hub.sock")
    }
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).expect("write file");
        p
    }
    /// A config with one FileHandler writing `%(message)s` to `out.log`.
    pub fn file_config(&self) -> PathBuf {
        let text = format!(
            "[handlers.file]\nclass = \"FileHandler\"\nfilename = {:?}\n\n[root]\nlevel = \"NOTSET\"\nhandlers = [\"file\"]\n",
            self.path("out.log")
        );
        self.write("hub.toml", &text)
    }
}

pub struct HubProc {
    pub child: Child,
    pub socket: PathBuf,
    stderr_path: PathBuf,
    dir: Option<Dir>,
}

impl HubProc {
    /// Starts `logfunnel hub` and waits until its socket accepts connections.
    pub fn start(dir: &Dir, config: &Path) -> HubProc {
        let hub = HubProc::spawn(dir, config);
        hub.wait_ready();
        hub
    }

    pub fn spawn(dir: &Dir, config: &Path) -> HubProc {
        HubProc::spawn_at(dir, config, &dir.socket())
    }

    /// Keeps `dir` (its stderr file) alive as long as the hub.
    pub fn keep_dir(&mut self, dir: Dir) {
        self.dir = Some(dir);
    }

    /// Like `spawn`, with the socket at `socket`.
    pub fn spawn_at(dir: &Dir, config: &Path, socket: &Path) -> HubProc {
        HubProc::spawn_in(dir, config, socket, None, &[])
    }

    fn spawn_in(
        dir: &Dir,
        config: &Path,
        socket: &Path,
        cwd: Option<&Path>,
        env: &[(&str, &str)],
    ) -> HubProc {
        let stderr_path = dir.path("hub.stderr");
        // Appended: a restarted hub's output follows its predecessor's.
        let stderr =
            std::fs::OpenOptions::new().create(true).append(true).open(&stderr_path).expect("stderr file");
        let mut cmd = Command::new(BIN);
        cmd.args(["hub", "--config"]).arg(config).arg("--socket").arg(socket).envs(env.iter().copied());
        if let Some(cwd) = cwd {
            cmd.current_dir(cwd);
        }
        // Its stdout (a StreamHandler's ext://sys.stdout) is kept too.
        let stdout = std::fs::File::create(dir.path("hub.stdout")).expect("stdout file");
        let child = cmd.stdin(Stdio::null()).stdout(stdout).stderr(stderr).spawn().expect("spawn hub");
        HubProc { child, socket: socket.to_path_buf(), stderr_path, dir: None }
    }

    /// Stops the hub (as `stop`) and returns what it wrote to its stdout.
    pub fn stdout_when_stopped(self) -> Vec<u8> {
        let path = self.stderr_path.with_file_name("hub.stdout");
        self.stop();
        std::fs::read(path).unwrap_or_default()
    }

    /// Starts `logfunnel hub` in working directory `cwd` (relative file
    /// names in the config resolve there) with extra environment (e.g. TZ).
    pub fn start_in(dir: &Dir, config: &Path, cwd: &Path, env: &[(&str, &str)]) -> HubProc {
        let hub = HubProc::spawn_in(dir, config, &dir.socket(), Some(cwd), env);
        hub.wait_ready();
        hub
    }

    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while UnixStream::connect(&self.socket).is_err() {
            assert!(Instant::now() < deadline, "hub did not start: {}", self.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: sending a signal to our own child.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    /// SIGTERM, then waits for a clean exit; returns the hub's stderr.
    pub fn stop(mut self) -> String {
        self.signal(libc::SIGTERM);
        let status =
            wait_timeout(&mut self.child, Duration::from_secs(30)).expect("hub did not exit after SIGTERM");
        let err = self.stderr();
        assert!(status.success(), "hub exited with {status}: {err}");
        err
    }
}

impl Drop for HubProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn wait_timeout(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            return Some(s);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Starts `logfunnel worker` (a real process using the client crate).
pub fn worker(socket: &Path, id: u32, records: u64, extra: &[&str]) -> Child {
    Command::new(BIN)
        .args(["worker", "--id", &id.to_string(), "--records", &records.to_string()])
        .args(extra)
        .env("LOGFUNNEL_SOCKET", socket)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn worker")
}

/// Waits for a worker and asserts it succeeded with nothing dropped.
pub fn finish_worker(child: Child) {
    let report = worker_report(child);
    assert_eq!(report["dropped"], 0, "worker dropped records: {report}");
}

pub fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).stdin(Stdio::null()).output().expect("run logfunnel")
}

/// `logfunnel run --config <config> -- <command>`.
pub fn run_under(config: &Path, command: &[&str]) -> Output {
    run(&[&["run", "--config", config.to_str().unwrap(), "--"], command].concat())
}

/// Per (worker, thread): the sequence numbers in file order.
pub type Seqs = BTreeMap<(u32, u32), Vec<u64>>;

/// The sequences found in an output file, and the lines that carry none.
pub fn sequences(path: &Path) -> (Seqs, Vec<String>) {
    let mut text = String::new();
    std::fs::File::open(path).expect("output file").read_to_string(&mut text).expect("utf-8 output");
    sequences_in(text.lines())
}

/// The sequences in messages of the form `w<id> t<thread> s<seq> …`
/// (leading spaces ignored), and the messages that are not of that form.
pub fn sequences_in<'a>(messages: impl Iterator<Item = &'a str>) -> (Seqs, Vec<String>) {
    let mut seqs = Seqs::new();
    let mut other = Vec::new();
    for line in messages {
        let line = line.trim_start();
        let mut it = line.split(' ');
        let parsed = (|| {
            let w = it.next()?.strip_prefix('w')?.parse().ok()?;
            let t = it.next()?.strip_prefix('t')?.parse().ok()?;
            let s = it.next()?.strip_prefix('s')?.parse().ok()?;
            Some((w, t, s))
        })();
        match parsed {
            Some((w, t, s)) => seqs.entry((w, t)).or_default().push(s),
            None => other.push(line.to_owned()),
        }
    }
    (seqs, other)
}

/// Asserts that worker `w` thread `t` delivered exactly 0..n, in order.
pub fn assert_complete(seqs: &Seqs, w: u32, t: u32, n: u64) {
    let got = seqs.get(&(w, t)).map(Vec::as_slice).unwrap_or(&[]);
    assert_eq!(got.len() as u64, n, "worker {w} thread {t}: {} records, expected {n}", got.len());
    if let Some(i) = got.iter().enumerate().position(|(i, &s)| s != i as u64) {
        panic!("worker {w} thread {t}: position {i} holds seq {} (gap, duplicate or reorder)", got[i]);
    }
}

/// `logfunnel stats --json` against a running hub.
pub fn stats(socket: &Path) -> serde_json::Value {
    let out = run(&["stats", "--json", "--socket", socket.to_str().unwrap()]);
    assert!(out.status.success(), "stats failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("stats prints JSON")
}

/// Polls `stats` until `done` holds (or 10 s pass) and returns the last answer;
/// the caller asserts on it, so a timeout shows what the hub last said.
pub fn stats_when(socket: &Path, done: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    poll(Duration::from_secs(10), Duration::from_millis(20), || stats(socket), done)
}

/// Calls `fetch` every `every` until `done` holds of its answer or `limit`
/// passes, and returns the last answer: the caller asserts on it, so a
/// timeout shows what was last seen.
pub fn poll<T>(
    limit: Duration,
    every: Duration,
    mut fetch: impl FnMut() -> T,
    done: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        let v = fetch();
        if done(&v) || Instant::now() >= deadline {
            return v;
        }
        std::thread::sleep(every);
    }
}

/// One handler's counters in a `stats` answer.
pub fn handler<'a>(stats: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    stats["handlers"].as_array().unwrap().iter().find(|h| h["name"] == name).expect("handler in stats")
}

/// python3, or a failure saying how to install it.
pub fn python3() -> &'static str {
    let ok = Command::new("python3").arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "python3 is needed for the differential tests: apt-get install -y python3 (or run scripts/test)"
    );
    "python3"
}

/// A number from /proc/<pid>/status (`Threads`, `VmRSS` in kB…).
pub fn proc_status(pid: u32, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

/// Waits until `done` holds, up to `limit`; returns whether it did.
pub fn wait_until(limit: Duration, done: impl Fn() -> bool) -> bool {
    poll(limit, Duration::from_millis(10), done, |&ok| ok)
}

/// A config with a FileHandler writing `%(message)s` to `out.log`, plus `extra`
/// (more TOML: a `[hub]` section, more handlers named in `handlers`).
pub fn config_with(dir: &Dir, hub: &str, handlers: &[&str], extra: &str) -> PathBuf {
    dir.write("hub.toml", &format!("[hub]\n{hub}\n{}", beside_a_file(dir, "NOTSET", handlers, extra)))
}

/// Config text: a FileHandler writing `%(message)s` to `out.log`, then
/// `extra` (more TOML), and the root logger at `level` sending to the file
/// and to `handlers` (named in `extra`).
pub fn beside_a_file(dir: &Dir, level: &str, handlers: &[&str], extra: &str) -> String {
    let names: Vec<String> =
        std::iter::once("file").chain(handlers.iter().copied()).map(|n| format!("{n:?}")).collect();
    format!(
        "[handlers.file]\nclass = \"FileHandler\"\nfilename = {:?}\n\n{extra}\n[root]\nlevel = {level:?}\nhandlers = [{}]\n",
        dir.path("out.log"),
        names.join(", ")
    )
}

/// Waits for a worker run with `--latency`, asserts it dropped nothing,
/// and returns its slowest sampled log call in nanoseconds.
pub fn slowest_log_call(child: Child) -> u64 {
    let report = worker_report(child);
    assert_eq!(report["dropped"], 0, "{report}");
    report["latency_ns"].as_array().unwrap().iter().map(|p| p[0].as_u64().unwrap()).max().unwrap()
}

/// The JSON values in a file of one a line (none if it is missing);
/// `what` names a line in the failure a bad one gives.
pub fn json_lines(path: &Path, what: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect(what))
        .collect()
}

/// A small deterministic generator (xorshift), for random inputs the hub
/// and python3 must treat alike.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
}

/// Waits for a worker and returns its JSON report (it must have succeeded).
pub fn worker_report(child: Child) -> serde_json::Value {
    let out: Output = child.wait_with_output().expect("worker output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "worker failed ({}): {stdout} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("worker report {stdout:?}: {e}"))
}

/// A tmpfs mounted for a test, unmounted when dropped (even when the test fails).
pub struct Mount(PathBuf);

impl Mount {
    /// Creates `dir` and mounts a tmpfs there with `options` (`size=1m`…).
    pub fn tmpfs(dir: &Path, options: &str) -> Mount {
        std::fs::create_dir_all(dir).expect("mount point");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(mounted, "mounting a tmpfs needs root (scripts/test runs as root, as CI does)");
        Mount(dir.to_path_buf())
    }

    /// Fills the filesystem: a file `name` grows until the disk is full.
    pub fn fill(&self, name: &str) {
        use std::io::Write;
        let mut f = std::fs::File::create(self.0.join(name)).expect("filler");
        let page = vec![b'f'; 4096];
        while f.write_all(&page).is_ok() {}
        // The last partial page, byte by byte.
        while f.write_all(b"f").is_ok() {}
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Watches `path` grow for `run`: the longest it stood still after the
/// first `grace` (how long a handler writing it stalled).
pub fn longest_still(path: &Path, run: Duration, grace: Duration) -> Duration {
    let start = Instant::now();
    let (mut last_size, mut last_growth, mut longest) = (0, Instant::now(), Duration::ZERO);
    while start.elapsed() < run {
        let size = std::fs::metadata(path).map_or(0, |m| m.len());
        let now = Instant::now();
        if size > last_size {
            (last_size, last_growth) = (size, now);
        } else if start.elapsed() > grace {
            longest = longest.max(now - last_growth);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    longest
}
