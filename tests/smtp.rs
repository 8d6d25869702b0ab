//! SMTPHandler against a real mail server (Debian's aiosmtpd, started by
//! the tests as an unprivileged user, writing a mailbox): Python's message
//! byte for byte against python3's own SMTPHandler (Date aside), STARTTLS
//! and implicit TLS with a login, the digest, a header-injection attempt,
//! and a mail server down for 30 s while workers log on.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::daemons::{Pki, Server, daemon_dir, free_port, unprivileged};
use crate::http::{random_records, send};
use crate::util::*;

const SERVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/smtp_server.py");
const ORACLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/http_collector.py");
/// Debian's python3, which python3-aiosmtpd is installed for.
const DEBIAN_PYTHON: &str = "/usr/bin/python3";

/// aiosmtpd on a loopback port, writing `mailbox.jsonl`; killed when dropped.
struct MailServer {
    _server: Server,
    port: u16,
    mailbox: PathBuf,
    _dir: tempfile::TempDir,
}

impl MailServer {
    fn start(port: u16, args: &[&str]) -> MailServer {
        let ok = Command::new(DEBIAN_PYTHON)
            .args(["-c", "import aiosmtpd"])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            ok,
            "the SMTP tests need aiosmtpd: apt-get install python3-aiosmtpd (scripts/test installs it)"
        );
        let dir = daemon_dir("lf-smtp-");
        let mailbox = dir.path().join("mailbox.jsonl");
        let port_s = port.to_string();
        let mut cmd_args = vec![SERVER, port_s.as_str(), mailbox.to_str().unwrap()];
        cmd_args.extend_from_slice(args);
        let (server, line) =
            Server::start(&mut unprivileged(Path::new(DEBIAN_PYTHON), &cmd_args), "start aiosmtpd");
        assert_eq!(line.trim(), "ready", "the mail server did not start");
        MailServer { _server: server, port, mailbox, _dir: dir }
    }

    fn mails(&self) -> Vec<Value> {
        json_lines(&self.mailbox, "mailbox line")
    }

    fn wait_mails(&self, n: usize, limit: Duration) -> Vec<Value> {
        poll(limit, Duration::from_millis(20), || self.mails(), |m| m.len() >= n)
    }
}

/// A mail's header lines (unfolded as sent) and its body.
fn parts(mail: &Value) -> (Vec<String>, String) {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD.decode(mail["data_b64"].as_str().unwrap()).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("headers and body");
    (head.split("\r\n").map(str::to_owned).collect(), body.to_owned())
}

fn header<'a>(headers: &'a [String], name: &str) -> Vec<&'a str> {
    headers.iter().filter_map(|h| h.strip_prefix(&format!("{name}: "))).collect()
}

const FORMAT: &str = "%(levelname)s %(name)s: %(message)s";

fn mail_config(server: &MailServer, extra: &str) -> String {
    format!(
        r#"
[formatters.f]
format = "{FORMAT}"
[handlers.mail]
class = "logging.handlers.SMTPHandler"
mailhost = ["127.0.0.1", {port}]
fromaddr = "app@example.org"
toaddrs = ["ops@example.org", "dev@example.org"]
subject = "app error"
formatter = "f"
escape_control_chars = false
{extra}
[root]
level = "NOTSET"
handlers = ["mail"]
"#,
        port = server.port
    )
}

#[test]
fn smtp_mails_match_pythons_smtp_handler_headers_and_bodies() {
    let d = Dir::new();
    let ours = MailServer::start(free_port(), &[]);
    let theirs = MailServer::start(free_port(), &[]);
    let mut records = random_records(0x3a11, 40);
    // Long lines: quoted-printable and base64, as Python's heuristics pick.
    records[3]["message"] = json!("x".repeat(120) + " end");
    records[4]["message"] = json!("✓".repeat(60));
    records[5]["message"] = json!(format!("{}\nsecond line\n.leading dot", "café ".repeat(30)));
    // And random bodies made of what the encoders must get right: long
    // runs, `=`, trailing spaces and tabs, CR, CRLF, dots, non-ASCII.
    let pieces = [
        "x".repeat(37),
        "é".repeat(13),
        " ".into(),
        "\t".into(),
        "=".into(),
        "\r".into(),
        "\r\n".into(),
        "\n".into(),
        ".".into(),
        "=3D ".into(),
        "日本語".into(),
        "a b c".into(),
    ];
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for r in records.iter_mut().skip(6) {
        let mut text = String::new();
        for _ in 0..1 + seed % 24 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            text.push_str(&pieces[(seed % pieces.len() as u64) as usize]);
        }
        r["message"] = json!(text);
        r["exc_text"] = Value::Null;
    }
    let hub = HubProc::start(&d, &d.write("hub.toml", &mail_config(&ours, "")));
    send(&hub.socket, &records);
    let got = ours.wait_mails(records.len(), Duration::from_secs(30));
    hub.stop();
    assert_eq!(got.len(), records.len(), "one mail per record, as Python");
    let spec = json!({
        "port": theirs.port, "fromaddr": "app@example.org",
        "toaddrs": ["ops@example.org", "dev@example.org"], "subject": "app error",
        "format": FORMAT, "records": records,
    });
    let out = Command::new(python3())
        .args([ORACLE, "mail", d.write("spec.json", &spec.to_string()).to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "python's SMTPHandler failed: {}", String::from_utf8_lossy(&out.stderr));
    let want = theirs.wait_mails(records.len(), Duration::from_secs(30));
    assert_eq!(want.len(), records.len());
    for (i, (a, b)) in got.iter().zip(&want).enumerate() {
        assert_eq!((&a["from"], &a["to"]), (&b["from"], &b["to"]), "envelope of mail {i}");
        let ((ha, ba), (hb, bb)) = (parts(a), parts(b));
        let no_date =
            |h: &[String]| h.iter().filter(|l| !l.starts_with("Date: ")).cloned().collect::<Vec<_>>();
        assert_eq!(no_date(&ha), no_date(&hb), "headers of mail {i} ({})", records[i]);
        assert_eq!(ba, bb, "body of mail {i} ({})", records[i]);
        assert_eq!(header(&ha, "Date").len(), 1);
    }
}

#[test]
fn smtp_starttls_and_implicit_tls_log_in_with_a_password_from_a_file() {
    let d = Dir::new();
    let pki_dir = daemon_dir("lf-pki-");
    let pki = Pki::new(pki_dir.path());
    let pw = pki_dir.path().join("pw");
    std::fs::write(&pw, "s3cr3t-pässword\n").unwrap();
    std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    // The server (as nobody) reads its own copy.
    let server_pw = pki_dir.path().join("server-pw");
    std::fs::copy(&pw, &server_pw).unwrap();
    std::fs::set_permissions(&server_pw, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let (cert, key, ca) = (pki.cert.to_str().unwrap(), pki.key.to_str().unwrap(), &pki.ca);
    let spw = server_pw.to_str().unwrap();
    let starttls = MailServer::start(free_port(), &["--starttls", cert, key, "--auth", "alice", spw]);
    let implicit = MailServer::start(free_port(), &["--ssl", cert, key, "--auth", "alice", spw]);
    let config = format!(
        r#"
[handlers.starttls]
class = "SMTPHandler"
mailhost = "localhost:{p1}"
fromaddr = "app@example.org"
toaddrs = "ops@example.org"
subject = "over starttls"
credentials = ["alice"]
password_file = {pw:?}
secure = []
tls_ca_file = {ca:?}
[handlers.implicit]
class = "SMTPHandler"
mailhost = "localhost:{p2}"
fromaddr = "app@example.org"
toaddrs = "ops@example.org"
subject = "over tls"
credentials = ["alice"]
password_file = {pw:?}
ssl = true
tls_ca_file = {ca:?}
[root]
level = "NOTSET"
handlers = ["starttls", "implicit"]
"#,
        p1 = starttls.port,
        p2 = implicit.port
    );
    let hub = HubProc::start(&d, &d.write("hub.toml", &config));
    send(&hub.socket, &random_records(5, 2));
    let a = starttls.wait_mails(2, Duration::from_secs(30));
    let b = implicit.wait_mails(2, Duration::from_secs(30));
    let s = stats(&hub.socket);
    let stderr = hub.stop();
    for (mails, subject) in [(&a, "over starttls"), (&b, "over tls")] {
        assert_eq!(mails.len(), 2, "{s}\n{stderr}");
        for m in mails.iter() {
            assert_eq!(m["tls"], true);
            assert_eq!(m["login"], "alice");
            assert_eq!(header(&parts(m).0, "Subject"), [subject]);
        }
    }
    assert!(!stderr.contains("s3cr3t") && !s.to_string().contains("s3cr3t"), "the password was printed");
}

#[test]
fn smtp_a_storm_becomes_a_digest_and_record_text_cannot_add_headers() {
    let d = Dir::new();
    let server = MailServer::start(free_port(), &[]);
    let extra = "batch_max_records = 50\nbatch_interval = 1\nsubject_format = \"%(levelname)s: %(message)s\"";
    let hub = HubProc::start(&d, &d.write("hub.toml", &mail_config(&server, extra)));
    let mut records = random_records(9, 120);
    records[0]["message"] = json!("boom\r\nBcc: victim@example.org\r\nX-Evil: 1\nSubject: forged");
    records[0]["levelno"] = json!(40);
    records[0]["exc_text"] = Value::Null;
    send(&hub.socket, &records);
    let s = stats_when(&hub.socket, |s| handler(s, "mail")["emitted"] == 120);
    hub.stop();
    assert_eq!(handler(&s, "mail")["emitted"], 120, "{s}");
    let mails = server.mails();
    assert!(mails.len() <= 4, "120 records became {} mails", mails.len());
    let mut listed = 0;
    for (i, m) in mails.iter().enumerate() {
        assert_eq!(m["to"], json!(["ops@example.org", "dev@example.org"]), "nobody else got it");
        let (headers, body) = parts(m);
        for h in &headers {
            assert!(
                !h.starts_with("Bcc:") && !h.starts_with("X-Evil:"),
                "a record added header {h:?} to mail {i}"
            );
        }
        assert_eq!(header(&headers, "Subject").len(), 1, "{headers:?}");
        let n: usize =
            body.split(' ').next().unwrap().parse().unwrap_or_else(|_| panic!("digest body {body:?}"));
        assert!(header(&headers, "Subject")[0].ends_with(&format!("({n} records)")), "{headers:?}");
        listed += n;
    }
    assert_eq!(listed, 120);
    let (first, body) = parts(&mails[0]);
    assert_eq!(
        header(&first, "Subject"),
        ["ERROR: boom  Bcc: victim@example.org  X-Evil: 1 Subject: forged (50 records)"]
    );
    // The body lists the records in order, the first one's text as sent.
    assert!(body.starts_with("50 log records:\r\n\r\nERROR "), "{body}");
    assert!(body.contains(": boom\r\nBcc: victim@example.org\r\n"), "{body}");
    let first_text =
        format!("{}: {}", records[1]["name"].as_str().unwrap(), records[1]["message"].as_str().unwrap());
    assert!(body.contains(first_text.lines().next().unwrap()), "{body}");
}

#[test]
fn smtp_a_mail_server_down_for_30_seconds_stalls_nothing_and_the_held_mail_arrives() {
    let d = Dir::new();
    let port = free_port();
    let out = d.path("out.log");
    let mail = format!(
        r#"[handlers.mail]
class = "SMTPHandler"
mailhost = "127.0.0.1:{port}"
fromaddr = "app@example.org"
toaddrs = "ops@example.org"
subject = "digest"
batch_max_records = 2000
batch_interval = 1
retry_initial = 0.2
retry_max = 1
timeout = 2"#
    );
    let config = beside_a_file(&d, "DEBUG", &["mail"], &mail);
    let hub = HubProc::start(&d, &d.write("hub.toml", &config));
    // 4 workers × 500 records/s for 36 s: the mail server is down for the
    // first 30 s, then up.
    const PER_WORKER: u64 = 18_000;
    let workers: Vec<_> = (0..4)
        .map(|i| worker(&hub.socket, i, PER_WORKER, &["--rate", "500", "--message-bytes", "60", "--latency"]))
        .collect();
    let longest_still = longest_still(&out, Duration::from_secs(30), Duration::from_secs(1));
    let during = stats(&hub.socket);
    let mail = handler(&during, "mail");
    assert!(mail["held"].as_u64().unwrap() > 0 && mail["retries"].as_u64().unwrap() > 0, "{mail}");
    assert_eq!(mail["emitted"], 0, "{mail}");
    let server = MailServer::start(port, &[]);
    let worst = workers.into_iter().map(slowest_log_call).max().unwrap();
    let s = stats_when(&hub.socket, |s| {
        handler(s, "mail")["held"] == 0 && handler(s, "mail")["queue_depth"] == 0
    });
    let mail = handler(&s, "mail").clone();
    hub.stop();
    let (seqs, _) = sequences(&out);
    for w in 0..4 {
        assert_complete(&seqs, w, 0, PER_WORKER);
    }
    eprintln!(
        "mail server down 30 s: the file stood still at most {longest_still:?}; slowest sampled log call {worst} ns; {mail}"
    );
    assert!(longest_still < Duration::from_secs(2), "the file handler stalled for {longest_still:?}");
    assert!(worst < 200_000_000, "a worker's log call waited {worst} ns");
    // Everything held was mailed once the server was back: every record,
    // once, in digests.
    assert_eq!(
        (mail["emitted"].as_u64(), mail["failed"].as_u64(), mail["dropped"].as_u64()),
        (Some(4 * PER_WORKER), Some(0), Some(0)),
        "{mail}"
    );
    let mails = server.mails();
    let bodies: Vec<String> = mails.iter().map(|m| parts(m).1).collect();
    let lines = bodies
        .iter()
        .flat_map(|b| b.split("\r\n").filter(|l| l.starts_with('w')).map(str::to_owned))
        .collect::<Vec<_>>();
    let (got, _) = sequences_in(lines.iter().map(String::as_str));
    for w in 0..4 {
        assert_complete(&got, w, 0, PER_WORKER);
    }
    assert!(mails.len() < 200, "{} mails for {} records", mails.len(), 4 * PER_WORKER);
}
