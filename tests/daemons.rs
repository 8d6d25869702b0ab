//! Real syslog daemons for the tests: rsyslog and syslog-ng, each started
//! on its own configuration, in its own directory, on loopback ports chosen
//! at run time, as an unprivileged user (`nobody`, through setpriv, when the
//! tests run as root), and stopped by PID. Also a test PKI (a CA and a
//! certificate for localhost) for TLS, small capture servers, and the
//! helper servers the tests run as scripts.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{poll, wait_timeout};

const NOBODY: u32 = 65534;

/// A free loopback TCP port (and UDP: the same number is free for both
/// often enough; each kind is checked where it is used).
pub fn free_port() -> u16 {
    loop {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// A private directory the daemon's user owns (the tests' own temporary
/// directories belong to root and are closed to others).
pub fn daemon_dir(prefix: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix(prefix).tempdir().expect("temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    if euid() == 0 {
        chown(dir.path());
    }
    dir
}

fn chown(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string; changes the owner of a file we created.
    assert_eq!(unsafe { libc::chown(c.as_ptr(), NOBODY, NOBODY) }, 0, "chown {}", path.display());
}

/// `cmd` as `nobody` when the tests run as root, as itself otherwise.
pub fn unprivileged(program: &Path, args: &[&str]) -> Command {
    if euid() == 0 {
        let ok = Command::new("setpriv").arg("--version").output().is_ok_and(|o| o.status.success());
        assert!(ok, "setpriv(1) is missing: apt-get install util-linux (scripts/test installs it)");
        let mut c = Command::new("setpriv");
        c.args(["--reuid", &NOBODY.to_string(), "--regid", &NOBODY.to_string(), "--clear-groups", "--"]);
        c.arg(program).args(args);
        c
    } else {
        let mut c = Command::new(program);
        c.args(args);
        c
    }
}

/// A helper server the tests start (a script): it prints one line when it
/// is ready; killed when dropped.
pub struct Server {
    child: Child,
}

impl Server {
    /// Starts `cmd` (`what` names it if it cannot start) and returns it with
    /// the first line it printed.
    pub fn start(cmd: &mut Command, what: &str) -> (Server, String) {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("{what}: {e:?}"));
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        (Server { child }, line)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (20 s at most) until `ready` holds; fails with `diagnostics` if
/// `child` (the daemon `name`) exits first or does not get ready in time.
fn wait_started(
    child: &mut Child,
    name: &str,
    mut ready: impl FnMut() -> bool,
    diagnostics: impl Fn() -> String,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{name} exited with {status}: {}", diagnostics());
        }
        assert!(Instant::now() < deadline, "{name} did not start: {}", diagnostics());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stop_pid(child: &mut Child, signal: i32) {
    // SAFETY: signalling our own child by its pid.
    unsafe { libc::kill(child.id() as i32, signal) };
    if wait_timeout(child, Duration::from_secs(10)).is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A test certificate authority, a server certificate for
/// `localhost`/127.0.0.1, and a client certificate (for daemons that
/// authenticate their senders).
pub struct Pki {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl Pki {
    pub fn new(dir: &Path) -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "logfunnel test CA");
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut leaf = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        leaf.subject_alt_names.push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
        leaf.distinguished_name.push(DnType::CommonName, "localhost");
        let leaf = leaf.signed_by(&key, &ca).unwrap();
        let client_key = KeyPair::generate().unwrap();
        let mut client = CertificateParams::new(vec!["logfunnel-hub".to_owned()]).unwrap();
        client.distinguished_name.push(DnType::CommonName, "logfunnel-hub");
        let client = client.signed_by(&client_key, &ca).unwrap();
        let pki = Pki {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
        };
        std::fs::write(&pki.ca, ca.pem()).unwrap();
        std::fs::write(&pki.cert, leaf.pem()).unwrap();
        std::fs::write(&pki.key, key.serialize_pem()).unwrap();
        std::fs::write(&pki.client_cert, client.pem()).unwrap();
        std::fs::write(&pki.client_key, client_key.serialize_pem()).unwrap();
        if euid() == 0 {
            for p in [&pki.ca, &pki.cert, &pki.key] {
                chown(p);
            }
        }
        pki
    }
}

/// One message as a daemon wrote it (the tests' output template).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub pri: u32,
    pub host: String,
    pub tag: String,
    pub app: String,
    pub procid: String,
    pub msg: String,
}

impl Line {
    fn parse(text: &str) -> Option<Line> {
        let f: Vec<&str> = text.splitn(6, '|').collect();
        (f.len() == 6).then(|| Line {
            pri: f[0].parse().unwrap_or(9999),
            host: f[1].to_owned(),
            tag: f[2].to_owned(),
            app: f[3].to_owned(),
            procid: f[4].to_owned(),
            msg: f[5].to_owned(),
        })
    }
}

fn read_lines(path: &Path) -> Vec<Line> {
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_string(&mut text);
    }
    // Only whole lines: the daemon may be in the middle of one.
    let whole = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    whole.lines().filter_map(Line::parse).collect()
}

/// The kinds of rsyslog input the tests use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// imudp.
    Udp,
    /// imtcp: LF, octet counting, and (for Python's bytes) NUL as delimiters.
    Tcp,
    /// imtcp with TLS (GnuTLS, rsyslog-gnutls).
    Tls,
    /// imrelp (rsyslog-relp).
    Relp,
    /// imrelp with TLS.
    RelpTls,
    /// imuxsock on a socket of its own (a private /dev/log).
    UnixDgram,
    /// imptcp on a Unix stream socket, NUL and LF as delimiters.
    UnixStream,
}

/// Where a handler reaches an input: a port, or a socket path.
#[derive(Debug, Clone)]
pub enum Address {
    Port(u16),
    Path(PathBuf),
}

impl Address {
    pub fn port(&self) -> u16 {
        match self {
            Address::Port(p) => *p,
            Address::Path(p) => panic!("{} is a path, not a port", p.display()),
        }
    }
    pub fn path(&self) -> &Path {
        match self {
            Address::Path(p) => p,
            Address::Port(p) => panic!("{p} is a port, not a path"),
        }
    }
}

/// A running rsyslogd; see the module docs.
pub struct Rsyslog {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    config: PathBuf,
    pub inputs: BTreeMap<String, (Input, Address)>,
}

fn rsyslogd() -> &'static str {
    let ok = Command::new("rsyslogd").arg("-v").output().is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "rsyslogd is missing: apt-get install rsyslog rsyslog-gnutls rsyslog-relp (scripts/test installs them)"
    );
    "rsyslogd"
}

impl Rsyslog {
    /// Starts rsyslogd with one input (and one output file) per name.
    pub fn start(inputs: &[(&str, Input)], pki: Option<&Pki>) -> Rsyslog {
        let dir = daemon_dir("lf-rsyslog-");
        let d = dir.path();
        let mut global = format!(
            "global(workDirectory=\"{}\" processInternalMessages=\"on\" maxMessageSize=\"64k\"",
            d.display()
        );
        if let Some(p) = pki {
            global += &format!(
                " DefaultNetstreamDriverCAFile=\"{}\" DefaultNetstreamDriverCertFile=\"{}\" DefaultNetstreamDriverKeyFile=\"{}\"",
                p.ca.display(),
                p.cert.display(),
                p.key.display()
            );
        }
        let mut conf = global + ")\n";
        conf += "module(load=\"imudp\")\nmodule(load=\"imtcp\" AddtlFrameDelimiter=\"0\")\nmodule(load=\"imptcp\")\n";
        conf += "module(load=\"imrelp\")\nmodule(load=\"imuxsock\" SysSock.Use=\"off\")\n";
        conf += "template(name=\"t\" type=\"string\" string=\"%pri%|%hostname%|%syslogtag%|%programname%|%procid%|%msg%\\n\")\n";
        let mut map = BTreeMap::new();
        for (name, kind) in inputs {
            let out = d.join(format!("{name}.log"));
            conf += &format!(
                "ruleset(name=\"{name}\") {{ action(type=\"omfile\" file=\"{}\" template=\"t\") }}\n",
                out.display()
            );
            let addr = match kind {
                Input::UnixDgram | Input::UnixStream => Address::Path(d.join(format!("{name}.sock"))),
                _ => Address::Port(free_port()),
            };
            conf += &match (kind, &addr) {
                (Input::Udp, Address::Port(p)) => format!(
                    "input(type=\"imudp\" address=\"127.0.0.1\" port=\"{p}\" ruleset=\"{name}\" rateLimit.Interval=\"0\")\n"
                ),
                (Input::Tcp, Address::Port(p)) => {
                    format!("input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{p}\" ruleset=\"{name}\")\n")
                }
                (Input::Tls, Address::Port(p)) => format!(
                    "input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{p}\" ruleset=\"{name}\" StreamDriver.Name=\"gtls\" StreamDriver.Mode=\"1\" StreamDriver.AuthMode=\"anon\")\n"
                ),
                (Input::Relp, Address::Port(p)) => {
                    format!("input(type=\"imrelp\" address=\"127.0.0.1\" port=\"{p}\" ruleset=\"{name}\")\n")
                }
                (Input::RelpTls, Address::Port(p)) => {
                    let pki = pki.expect("a TLS input needs the PKI");
                    format!(
                        "input(type=\"imrelp\" address=\"127.0.0.1\" port=\"{p}\" ruleset=\"{name}\" tls=\"on\" tls.authmode=\"certvalid\" tls.cacert=\"{}\" tls.mycert=\"{}\" tls.myprivkey=\"{}\")\n",
                        pki.ca.display(),
                        pki.cert.display(),
                        pki.key.display()
                    )
                }
                (Input::UnixDgram, Address::Path(s)) => format!(
                    "input(type=\"imuxsock\" Socket=\"{}\" ruleset=\"{name}\" RateLimit.Interval=\"0\" UseSpecialParser=\"off\" ParseHostname=\"on\")\n",
                    s.display()
                ),
                (Input::UnixStream, Address::Path(s)) => format!(
                    "input(type=\"imptcp\" path=\"{}\" unlink=\"on\" ruleset=\"{name}\" AddtlFrameDelimiter=\"0\" fileCreateMode=\"0666\")\n",
                    s.display()
                ),
                _ => unreachable!("addresses follow their kinds"),
            };
            map.insert((*name).to_owned(), (*kind, addr));
        }
        conf += &format!("*.* action(type=\"omfile\" file=\"{}\")\n", d.join("internal.log").display());
        let config = d.join("rsyslog.conf");
        std::fs::write(&config, conf).unwrap();
        let mut r = Rsyslog { child: None, dir, config, inputs: map };
        r.launch();
        r
    }

    fn launch(&mut self) {
        let d = self.dir.path();
        let _ = std::fs::remove_file(d.join("rsyslogd.pid"));
        let stderr = std::fs::OpenOptions::new().create(true).append(true).open(d.join("stderr")).unwrap();
        let child = unprivileged(
            Path::new(rsyslogd()),
            &["-n", "-f", self.config.to_str().unwrap(), "-i", d.join("rsyslogd.pid").to_str().unwrap()],
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("start rsyslogd");
        self.child = Some(child);
        self.wait_ready();
    }

    /// Waits until every input is up: TCP ports accept, sockets exist, and
    /// rsyslog has logged its start.
    fn wait_ready(&mut self) {
        let Rsyslog { child, dir, inputs, .. } = self;
        let ready = || {
            let started = std::fs::read_to_string(dir.path().join("internal.log"))
                .is_ok_and(|t| t.lines().last().is_some_and(|l| l.contains("] start")));
            let inputs_up = inputs.values().all(|(kind, addr)| match (kind, addr) {
                (Input::Udp, _) => true,
                (_, Address::Port(p)) => std::net::TcpStream::connect(("127.0.0.1", *p)).is_ok(),
                (_, Address::Path(s)) => s.exists(),
            });
            started && inputs_up
        };
        wait_started(child.as_mut().unwrap(), "rsyslogd", ready, || rsyslog_diagnostics(dir.path()));
    }

    pub fn diagnostics(&self) -> String {
        rsyslog_diagnostics(self.dir.path())
    }

    pub fn address(&self, name: &str) -> &Address {
        &self.inputs[name].1
    }

    /// The messages of one input so far.
    pub fn lines(&self, name: &str) -> Vec<Line> {
        read_lines(&self.dir.path().join(format!("{name}.log")))
    }

    /// Waits until `name` holds at least `n` messages (or `limit` passes).
    pub fn wait_lines(&self, name: &str, n: usize, limit: Duration) -> Vec<Line> {
        poll(limit, Duration::from_millis(50), || self.lines(name), |l| l.len() >= n)
    }

    /// Stops rsyslogd (SIGTERM, by PID) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_pid(&mut c, libc::SIGTERM);
        }
    }

    /// Starts it again on the same configuration, ports and files.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }
}

/// rsyslogd's stderr and its own log, for a failure message.
fn rsyslog_diagnostics(d: &Path) -> String {
    format!(
        "stderr: {}\ninternal log: {}",
        std::fs::read_to_string(d.join("stderr")).unwrap_or_default(),
        std::fs::read_to_string(d.join("internal.log")).unwrap_or_default()
    )
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Where scripts/test puts Debian's syslog-ng-core, unpacked: it conflicts
/// with the rsyslog package, so it cannot be installed beside it.
pub const SYSLOG_NG_ROOT: &str = "/opt/logfunnel-test/syslog-ng";

/// A running syslog-ng with one `syslog()` source (RFC 5424 over TCP with
/// octet counting) writing to a file.
pub struct SyslogNg {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub port: u16,
}

impl SyslogNg {
    pub fn start() -> SyslogNg {
        let root = Path::new(SYSLOG_NG_ROOT);
        let bin = root.join("usr/sbin/syslog-ng");
        assert!(
            bin.exists(),
            "syslog-ng is missing at {}: scripts/test unpacks Debian's syslog-ng-core there (apt-get download syslog-ng-core; dpkg -x syslog-ng-core_*.deb {SYSLOG_NG_ROOT}; plus its libraries: apt-get install libivykis0 libnet1 libjson-c5 libpcre3 libwrap0 libglib2.0-0)",
            bin.display()
        );
        let dir = daemon_dir("lf-syslog-ng-");
        let d = dir.path();
        let port = free_port();
        let conf = format!(
            "@version: 3.38\n\
             options {{ keep-hostname(yes); use-dns(no); use-fqdn(no); log-msg-size(65536); }};\n\
             source s_net {{ syslog(ip(\"127.0.0.1\") port({port}) transport(\"tcp\") flags(no-multi-line)); }};\n\
             destination d_file {{ file(\"{out}\" template(\"${{PRI}}|${{HOST}}|${{PROGRAM}}[${{PID}}]|${{PROGRAM}}|${{PID}}|${{MSG}}\\n\") template-escape(no)); }};\n\
             log {{ source(s_net); destination(d_file); }};\n",
            out = d.join("net.log").display()
        );
        let config = d.join("syslog-ng.conf");
        std::fs::write(&config, conf).unwrap();
        let lib = root.join("usr/lib/syslog-ng");
        let stderr = std::fs::File::create(d.join("stderr")).unwrap();
        if euid() == 0 {
            chown(&d.join("stderr"));
        }
        let args = [
            "-F".to_owned(),
            format!("--cfgfile={}", config.display()),
            format!("--module-path={}", lib.join("3.38").display()),
            format!("--persist-file={}", d.join("persist").display()),
            format!("--pidfile={}", d.join("pid").display()),
            format!("--control={}", d.join("ctl").display()),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let child = unprivileged(&bin, &args)
            .env("LD_LIBRARY_PATH", &lib)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start syslog-ng");
        let mut s = SyslogNg { child: Some(child), dir, port };
        let SyslogNg { child, dir, .. } = &mut s;
        wait_started(
            child.as_mut().unwrap(),
            "syslog-ng",
            || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
            || std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default(),
        );
        s
    }

    pub fn wait_lines(&self, n: usize, limit: Duration) -> Vec<Line> {
        poll(
            limit,
            Duration::from_millis(50),
            || read_lines(&self.dir.path().join("net.log")),
            |l| l.len() >= n,
        )
    }
}

impl Drop for SyslogNg {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_pid(&mut c, libc::SIGTERM);
        }
    }
}

/// Every datagram that reaches a UDP port or a Unix datagram socket, read
/// as it arrives (a sender may block when a Unix socket's queue is full).
pub struct DgramCapture {
    pub port: u16,
    got: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl DgramCapture {
    /// On a new loopback UDP port (`port`).
    pub fn udp() -> DgramCapture {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let port = sock.local_addr().unwrap().port();
        DgramCapture::spawn(port, move |buf| sock.recv(buf))
    }

    /// On a new Unix datagram socket at `path`.
    pub fn unix(path: &Path) -> DgramCapture {
        let sock = std::os::unix::net::UnixDatagram::bind(path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        DgramCapture::spawn(0, move |buf| sock.recv(buf))
    }

    fn spawn(port: u16, recv: impl Fn(&mut [u8]) -> std::io::Result<usize> + Send + 'static) -> DgramCapture {
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (g, s) = (got.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 70_000];
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(n) = recv(&mut buf) {
                    g.lock().unwrap().push(buf[..n].to_vec());
                }
            }
        });
        DgramCapture { port, got, stop }
    }

    /// Waits for at least `n` datagrams (or 20 s) and returns them all.
    pub fn wait(&self, n: usize) -> Vec<Vec<u8>> {
        poll(
            Duration::from_secs(20),
            Duration::from_millis(20),
            || self.got.lock().unwrap().clone(),
            |g| g.len() >= n,
        )
    }
}

impl Drop for DgramCapture {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
