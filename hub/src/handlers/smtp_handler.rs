//! `logging.handlers.SMTPHandler`: records by mail.
//!
//! By default one mail per record, as python3 writes it: the same From,
//! To, Subject, Date, Content-Type, Content-Transfer-Encoding and
//! MIME-Version headers, and the formatted record as the body, encoded as
//! Python's `email` package chooses (7bit, 8bit, quoted-printable or base64).
//! Beyond Python: a digest (`batch_max_records`, `batch_interval`) turns a
//! storm into a few mails, each listing its records with their count in
//! the subject; STARTTLS (`secure`) or implicit TLS (`ssl`), verified
//! against the system's store or a CA file; the password from the secret
//! store; a subject made from the record (`subject_format`) with any CR or
//! LF a record brings neutralised. Mails are sent by lettre on a thread of
//! their own ([`Offload`]), so a mail server that is away or slow stalls
//! nothing; what it cannot take waits in the outbox and is retried.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{Address, SmtpTransport, Transport as _};
use toml::Value;

use super::http_handler::{read_credentials, root_certs};
use crate::config::keys::{Section, show};
use crate::delivery::Encode;
use crate::delivery::offload::{Exchange, Offload, OffloadHandler, Outcome, Settled};
use crate::delivery::{DeliveryOptions, Outbox};
use crate::formatter::{Formatter, RecordContext, Style};
use crate::handler::{BuildContext, Handler, HandlerError, HandlerOptions};
use crate::secret::Secret;

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// None (Python without `secure`).
    None,
    /// STARTTLS, required (Python's `secure`).
    StartTls,
    /// TLS from the first byte (SMTPS, port 465).
    Implicit,
}

/// SMTPHandler's options (docs/CONFIG.md, "SMTPHandler").
#[derive(Debug, Clone, PartialEq)]
pub struct SmtpOptions {
    /// `mailhost`'s host.
    pub host: String,
    /// `mailhost`'s port (25 by default, as Python).
    pub port: u16,
    /// `fromaddr`.
    pub fromaddr: String,
    /// `toaddrs`.
    pub toaddrs: Vec<String>,
    /// `subject`.
    pub subject: String,
    /// `subject_format`: a subject made from the mail's first record.
    pub subject_format: Option<String>,
    /// `credentials[0]` / `username`.
    pub username: Option<String>,
    /// `password_env` / `password_file`.
    pub password: Option<Secret>,
    /// `secure` / `ssl`.
    pub tls: SmtpTls,
    /// `tls_ca_file` (default: the system's store).
    pub tls_ca_file: Option<PathBuf>,
    /// `timeout` (Python's default: 5 s).
    pub timeout: Duration,
    /// Batching (the digest), buffering and retries.
    pub delivery: DeliveryOptions,
}

fn header_safe(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

fn parse_mailhost(s: &mut Section<'_>) -> Option<(String, u16)> {
    let Some((key, v)) = s.value(&["mailhost"]) else {
        s.issue("mailhost", "missing (\"host\", \"host:port\" or [\"host\", port])");
        return None;
    };
    let parsed = match v {
        Value::Array(a) if a.len() == 2 => match (&a[0], &a[1]) {
            (Value::String(h), Value::Integer(p)) => u16::try_from(*p).ok().map(|p| (h.clone(), p)),
            _ => None,
        },
        Value::String(t) => match t.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') || h.starts_with('[') => {
                let h = h.trim_start_matches('[').trim_end_matches(']');
                p.parse().ok().map(|p| (h.to_owned(), p))
            }
            _ => Some((t.clone(), 25)),
        },
        _ => None,
    };
    let parsed = parsed.filter(|(h, p)| !h.is_empty() && *p > 0 && header_safe(h));
    if parsed.is_none() {
        s.issue(
            key,
            format!("{} is not a mail host (write \"host\", \"host:port\" or [\"host\", port])", show(v)),
        );
    }
    parsed
}

impl HandlerOptions for SmtpOptions {
    fn parse(s: &mut Section<'_>) -> Option<SmtpOptions> {
        let mailhost = parse_mailhost(s);
        let fromaddr = s.string(&["fromaddr"]);
        let toaddrs = match s.value(&["toaddrs"]) {
            // Python: a str becomes [str].
            Some((_, Value::String(t))) => vec![t.clone()],
            Some(_) => s.string_list(&["toaddrs"]),
            None => Vec::new(),
        };
        for (key, addr) in
            fromaddr.iter().map(|a| ("fromaddr", a)).chain(toaddrs.iter().map(|a| ("toaddrs", a)))
        {
            if envelope_address(addr).is_none() {
                s.issue(key, format!("{addr:?} is not a mail address"));
            }
        }
        if fromaddr.is_none() {
            s.issue("fromaddr", "missing");
        }
        if toaddrs.is_empty() {
            s.issue("toaddrs", "missing (one address or a list)");
        }
        let subject = s.string(&["subject"]);
        if subject.is_none() {
            s.issue("subject", "missing");
        }
        if let Some(t) = &subject
            && !header_safe(t)
        {
            s.issue("subject", "holds a control character (a CR or LF would start a new header)");
        }
        let subject_format = s.string(&["subject_format"]);
        if let Some(f) = &subject_format
            && let Err(e) = Formatter::new(Some(f), None, Style::Percent)
        {
            s.issue("subject_format", e.to_string());
        }
        let (username, password) = read_credentials(s);
        let secure = match s.value(&["secure"]) {
            None => false,
            Some((_, Value::Boolean(b))) => *b,
            // Python's `secure=()`: STARTTLS without key or certificate files.
            Some((_, Value::Array(a))) if a.is_empty() => true,
            Some((key, v)) => {
                s.issue(
                    key,
                    format!(
                        "{} is not supported: write secure = [] (or true) for STARTTLS; key and certificate files are refused by Python 3.12's starttls too",
                        show(v)
                    ),
                );
                false
            }
        };
        let ssl = s.boolean(&["ssl"]).unwrap_or(false);
        if secure && ssl {
            s.issue("ssl", "give secure (STARTTLS) or ssl (implicit TLS), not both");
        }
        let tls = if ssl {
            SmtpTls::Implicit
        } else if secure {
            SmtpTls::StartTls
        } else {
            SmtpTls::None
        };
        let tls_ca_file = s.string(&["tls_ca_file"]).map(PathBuf::from);
        if tls_ca_file.is_some() && tls == SmtpTls::None {
            s.issue("tls_ca_file", "applies with secure or ssl");
        }
        let timeout = s.seconds(&["timeout"], false).unwrap_or(Duration::from_secs(5));
        // Python's: one mail per record. A digest is asked for with
        // batch_max_records / batch_interval.
        let defaults = DeliveryOptions {
            batch_max_records: 1,
            batch_max_bytes: 4 << 20,
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            ..Default::default()
        };
        let delivery = DeliveryOptions::read(s, defaults);
        let (host, port) = mailhost?;
        Some(SmtpOptions {
            host,
            port,
            fromaddr: fromaddr?,
            toaddrs,
            subject: subject?,
            subject_format,
            username,
            password,
            tls,
            tls_ca_file,
            timeout,
            delivery,
        })
    }

    fn build(&self, cx: &BuildContext<'_>) -> Result<Box<dyn Handler>, HandlerError> {
        let named = |what: &str, e: String| cx.named(HandlerError::io(what, std::io::Error::other(e)));
        let tls_params = || -> Result<TlsParameters, String> {
            let mut b = TlsParameters::builder(self.host.clone());
            b = match &self.tls_ca_file {
                Some(path) => {
                    let mut b = b.certificate_store(CertificateStore::None);
                    for der in root_certs(Some(path)).map_err(|e| e.to_string())? {
                        b = b.add_root_certificate(Certificate::from_der(der).map_err(|e| e.to_string())?);
                    }
                    b
                }
                None => b.certificate_store(CertificateStore::Default),
            };
            b.build_rustls().map_err(|e| e.to_string())
        };
        let tls = match self.tls {
            SmtpTls::None => Tls::None,
            SmtpTls::StartTls => Tls::Required(tls_params().map_err(|e| named("setting up TLS", e))?),
            SmtpTls::Implicit => Tls::Wrapper(tls_params().map_err(|e| named("setting up TLS", e))?),
        };
        let mut builder = SmtpTransport::builder_dangerous(self.host.clone())
            .port(self.port)
            .timeout(Some(self.timeout))
            .tls(tls);
        if let (Some(u), Some(p)) = (&self.username, &self.password) {
            builder = builder.credentials(Credentials::new(u.clone(), p.expose().to_owned()));
        }
        let from = envelope_address(&self.fromaddr);
        let to: Option<Vec<Address>> = self.toaddrs.iter().map(|a| envelope_address(a)).collect();
        let envelope =
            Envelope::new(from, to.unwrap_or_default()).map_err(|e| named("the envelope", e.to_string()))?;
        let exchange = MailExchange {
            transport: builder.build(),
            envelope,
            from: self.fromaddr.clone(),
            to: self.toaddrs.join(","),
            subject: self.subject.clone(),
        };
        let counters = Arc::clone(&cx.counters);
        let transport = Offload::new(
            exchange,
            "logfunnel-smtp",
            format!("mail server {}:{}", self.host, self.port),
            Box::new(move |why: &str| counters.set_last_error(why)),
        )
        .map_err(|e| cx.named(HandlerError::io("starting the SMTP thread", e)))?;
        let subject = match &self.subject_format {
            Some(f) => Some(Formatter::new(Some(f), None, Style::Percent).map_err(HandlerError::Format)?),
            None => None,
        };
        let encoder = MailEncoder { formatter: cx.formatter(), subject, scratch: Vec::new() };
        let outbox = Outbox::new(self.delivery.clone(), cx.overflow, Arc::clone(&cx.counters));
        Ok(Box::new(OffloadHandler::new(encoder, outbox, transport)))
    }
}

/// The bare address of `Name <a@b>` or `a@b`, for the envelope.
fn envelope_address(text: &str) -> Option<Address> {
    if !header_safe(text) {
        return None;
    }
    let bare = match (text.rfind('<'), text.rfind('>')) {
        (Some(a), Some(b)) if a < b => &text[a + 1..b],
        _ => text.trim(),
    };
    bare.parse().ok()
}

/// The longest subject `subject_format` makes, in characters.
const SUBJECT_MAX_CHARS: usize = 200;

struct MailEncoder {
    formatter: Formatter,
    subject: Option<Formatter>,
    scratch: Vec<u8>,
}

impl Encode for MailEncoder {
    /// A record as the mail thread reads it: the subject it brings (its
    /// length as 4 bytes, then the text; empty without `subject_format`),
    /// then the formatted record.
    fn encode(&mut self, ctx: &RecordContext<'_>, out: &mut Vec<u8>) -> Result<(), HandlerError> {
        let at = out.len();
        out.extend_from_slice(&[0; 4]);
        if let Some(f) = &mut self.subject {
            let mut s = std::mem::take(&mut self.scratch);
            s.clear();
            let r = f.format(ctx, &mut s);
            // A CR or LF (any control character) from a record would end
            // the Subject header and start one of the record's choosing. A
            // traceback would make it endless: it is cut.
            let text: String = String::from_utf8_lossy(&s)
                .chars()
                .take(SUBJECT_MAX_CHARS)
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            self.scratch = s;
            r?;
            out.extend_from_slice(text.as_bytes());
            let len = (out.len() - at - 4) as u32;
            out[at..at + 4].copy_from_slice(&len.to_le_bytes());
        }
        self.formatter.format(ctx, out)?;
        Ok(())
    }
}

/// One mail per exchange, on the SMTP thread.
struct MailExchange {
    transport: SmtpTransport,
    envelope: Envelope,
    from: String,
    to: String,
    subject: String,
}

fn split_record(rec: &[u8]) -> (&str, &[u8]) {
    let len = rec.get(..4).map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
    let subject = rec.get(4..4 + len).and_then(|s| std::str::from_utf8(s).ok()).unwrap_or("");
    (subject, rec.get(4 + len..).unwrap_or(&[]))
}

impl MailExchange {
    /// The mail for `records`: Python's for one record, a digest for more.
    fn message(&self, records: &[&[u8]]) -> Vec<u8> {
        let (first_subject, _) = split_record(records[0]);
        let base = if first_subject.is_empty() { self.subject.as_str() } else { first_subject };
        let (subject, body) = if records.len() == 1 {
            (base.to_owned(), String::from_utf8_lossy(split_record(records[0]).1).into_owned())
        } else {
            let mut body = format!("{} log records:\n", records.len());
            for r in records {
                body.push('\n');
                body.push_str(&String::from_utf8_lossy(split_record(r).1));
                body.push('\n');
            }
            (format!("{base} ({} records)", records.len()), body)
        };
        let date = chrono::Local::now().format("%a, %d %b %Y %H:%M:%S %z");
        python_message(&self.from, &self.to, &subject, &date.to_string(), &body)
    }
}

/// The bytes of python3's `EmailMessage` for these headers and a body set
/// with `set_content`, as smtplib sends it (CRLF line ends).
pub(crate) fn python_message(from: &str, to: &str, subject: &str, date: &str, body: &str) -> Vec<u8> {
    let (cte, payload) = encode_text(body.as_bytes());
    let mut out = String::new();
    for (name, value) in [("From", from), ("To", to), ("Subject", &encode_header(subject)), ("Date", date)] {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
        out.push('\n');
    }
    out.push_str("Content-Type: text/plain; charset=\"utf-8\"\n");
    out.push_str("Content-Transfer-Encoding: ");
    out.push_str(cte);
    out.push_str("\nMIME-Version: 1.0\n\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&payload);
    // smtplib's linesep.
    let mut wire = Vec::with_capacity(bytes.len() + bytes.len() / 40);
    for &b in &bytes {
        if b == b'\n' {
            wire.push(b'\r');
        }
        wire.push(b);
    }
    wire
}

/// A header value: as it is when ASCII, else one RFC 2047 encoded word per
/// run of non-ASCII words (as Python's `Log =?utf-8?b?4pyT?= subj`).
fn encode_header(value: &str) -> String {
    use base64::Engine as _;
    if value.is_ascii() {
        return value.to_owned();
    }
    let words: Vec<&str> = value.split(' ').collect();
    let mut out: Vec<String> = Vec::new();
    let mut run: Vec<&str> = Vec::new();
    let flush = |run: &mut Vec<&str>, out: &mut Vec<String>| {
        if !run.is_empty() {
            let text = run.join(" ");
            out.push(format!("=?utf-8?b?{}?=", base64::engine::general_purpose::STANDARD.encode(text)));
            run.clear();
        }
    };
    for w in words {
        if w.is_ascii() {
            flush(&mut run, &mut out);
            out.push(w.to_owned());
        } else {
            run.push(w);
        }
    }
    flush(&mut run, &mut out);
    out.join(" ")
}

/// Python's `email.contentmanager._encode_text` heuristics (policy
/// default: lines of at most 78 bytes, 8bit allowed): the transfer encoding
/// and the payload.
pub(crate) fn encode_text(body: &[u8]) -> (&'static str, Vec<u8>) {
    let lines = split_lines(body);
    let normal = |lines: &[&[u8]]| {
        let mut v = lines.join(&b'\n');
        v.push(b'\n');
        v
    };
    if lines.iter().map(|l| l.len()).max().unwrap_or(0) <= 78 {
        let data = normal(&lines);
        return (if data.is_ascii() { "7bit" } else { "8bit" }, data);
    }
    let sniff = normal(&lines[..lines.len().min(10)]);
    let sniff_qp = qp_body_encode(&sniff, 78);
    // binascii.b2a_base64 adds a newline.
    let sniff_b64 = sniff.len().div_ceil(3) * 4 + 1;
    if sniff_qp.len() > sniff_b64 {
        use base64::Engine as _;
        let data = normal(&lines);
        let mut out = Vec::new();
        for chunk in data.chunks(78 / 4 * 3) {
            out.extend_from_slice(base64::engine::general_purpose::STANDARD.encode(chunk).as_bytes());
            out.push(b'\n');
        }
        ("base64", out)
    } else if lines.len() <= 10 {
        ("quoted-printable", sniff_qp)
    } else {
        ("quoted-printable", qp_body_encode(&normal(&lines), 78))
    }
}

/// `bytes.splitlines()`: at `\n`, `\r\n` and `\r`.
fn split_lines(b: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < b.len() {
        match b[i] {
            b'\n' => {
                out.push(&b[start..i]);
                start = i + 1;
            }
            b'\r' => {
                out.push(&b[start..i]);
                if b.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if start < b.len() {
        out.push(&b[start..]);
    }
    out
}

/// `email.quoprimime.body_encode(body.decode('latin-1'), maxlinelen)`.
fn qp_body_encode(body: &[u8], maxlinelen: usize) -> Vec<u8> {
    if body.is_empty() {
        return Vec::new();
    }
    let quote = |b: u8| format!("={b:02X}").into_bytes();
    let mut enc = Vec::with_capacity(body.len() * 2);
    for &b in body {
        let safe = (b' '..=b'~').contains(&b) && b != b'=' || b == b'\t' || b == b'\r' || b == b'\n';
        if safe { enc.push(b) } else { enc.extend_from_slice(&quote(b)) }
    }
    let maxlinelen1 = maxlinelen - 1;
    let mut lines: Vec<Vec<u8>> = Vec::new();
    for line in split_lines(&enc) {
        let mut start: isize = 0;
        let laststart = line.len() as isize - 1 - maxlinelen as isize;
        while start <= laststart {
            let stop = (start as usize) + maxlinelen1;
            let s = start as usize;
            if line[stop - 2] == b'=' {
                lines.push(line[s..stop - 1].to_vec());
                start = stop as isize - 2;
            } else if line[stop - 1] == b'=' {
                lines.push(line[s..stop].to_vec());
                start = stop as isize - 1;
            } else {
                let mut l = line[s..stop].to_vec();
                l.push(b'=');
                lines.push(l);
                start = stop as isize;
            }
        }
        let s = start as usize;
        match line.last() {
            Some(&ws @ (b' ' | b'\t')) => {
                let room = start - laststart;
                let mut l = line[s..line.len() - 1].to_vec();
                if room >= 3 {
                    l.extend_from_slice(&quote(ws));
                } else if room == 2 {
                    l.push(ws);
                    l.extend_from_slice(b"=\n");
                } else {
                    l.extend_from_slice(b"=\n");
                    l.extend_from_slice(&quote(ws));
                }
                lines.push(l);
            }
            _ => lines.push(line[s..].to_vec()),
        }
    }
    if matches!(body.last(), Some(b'\r' | b'\n')) {
        lines.push(Vec::new());
    }
    lines.join(&b'\n')
}

impl Exchange for MailExchange {
    fn exchange(&mut self, records: &[&[u8]]) -> Outcome {
        let mut outcome = Outcome::default();
        if records.is_empty() {
            return outcome;
        }
        let mut message = self.message(records);
        // lettre ends the data with CRLF "." CRLF itself.
        if message.ends_with(b"\r\n") {
            message.truncate(message.len() - 2);
        }
        match self.transport.send_raw(&self.envelope, &message) {
            Ok(_) => outcome.settled = vec![Settled::Delivered; records.len()],
            Err(e) if e.is_permanent() => {
                outcome.reject = Some(format!("the mail server refused the mail: {e}"))
            }
            Err(e) => outcome.retry = Some((e.to_string(), None)),
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn options(extra: &str) -> Result<SmtpOptions, Vec<String>> {
        let text = format!("[handlers.m]\nclass = \"logging.handlers.SMTPHandler\"\n{extra}\n");
        match Config::from_toml_str(&text, "test") {
            Ok(c) => Ok(c.handlers["m"].options::<SmtpOptions>().unwrap().clone()),
            Err(e) => Err(e.issues.iter().map(ToString::to_string).collect()),
        }
    }

    #[test]
    fn keys_read_as_python_writes_them() {
        let o = options("mailhost = [\"smtp.example.org\", 587]\nfromaddr = \"app@example.org\"\ntoaddrs = \"ops@example.org\"\nsubject = \"boom\"\nsecure = []").unwrap();
        assert_eq!((o.host.as_str(), o.port, o.tls), ("smtp.example.org", 587, SmtpTls::StartTls));
        assert_eq!(o.toaddrs, ["ops@example.org"]);
        assert_eq!(o.delivery.batch_max_records, 1, "one mail per record, as Python");
        let o = options("mailhost = \"localhost\"\nfromaddr = \"Me <a@b.org>\"\ntoaddrs = [\"x@y.org\", \"z@y.org\"]\nsubject = \"s\"\nssl = true").unwrap();
        assert_eq!((o.port, o.tls), (25, SmtpTls::Implicit));
    }

    #[test]
    fn bad_values_name_their_key() {
        let e = options("mailhost = \"h:0\"\nfromaddr = \"nobody\"\ntoaddrs = [\"a@b\\r\\nBcc: x@y\"]\nsubject = \"a\\nb\"\nsecure = [\"key.pem\"]\ncredentials = [\"u\", \"pw\"]").unwrap_err();
        for want in [
            "handlers.m.mailhost: \"h:0\" is not a mail host",
            "handlers.m.fromaddr: \"nobody\" is not a mail address",
            "handlers.m.toaddrs: \"a@b\\r\\nBcc: x@y\" is not a mail address",
            "handlers.m.subject: holds a control character",
            "handlers.m.secure: [\"key.pem\"] is not supported",
            "handlers.m.credentials: a password is not read",
        ] {
            assert!(e.iter().any(|g| g.starts_with(want)), "missing {want:?} in {e:#?}");
        }
    }

    #[test]
    fn transfer_encodings_follow_pythons_heuristics() {
        assert_eq!(encode_text(b"hello\nworld"), ("7bit", b"hello\nworld\n".to_vec()));
        assert_eq!(encode_text("caf\u{e9}".as_bytes()).0, "8bit");
        let long = "a".repeat(100);
        let (cte, data) = encode_text(long.as_bytes());
        assert_eq!(cte, "quoted-printable");
        assert_eq!(String::from_utf8(data).unwrap(), format!("{}=\n{}\n", "a".repeat(77), "a".repeat(23)));
        let (cte, _) = encode_text("✓".repeat(40).as_bytes());
        assert_eq!(cte, "base64");
    }

    #[test]
    fn non_ascii_subjects_become_encoded_words() {
        assert_eq!(encode_header("Log ✓ subj"), "Log =?utf-8?b?4pyT?= subj");
        assert_eq!(encode_header("plain"), "plain");
    }

    /// Undoes a transfer encoding (RFC 2045's rules, written independently
    /// of the encoder).
    fn decode(cte: &str, data: &[u8]) -> Vec<u8> {
        use base64::Engine as _;
        match cte {
            "base64" => {
                let text: Vec<u8> = data.iter().copied().filter(|b| *b != b'\n').collect();
                base64::engine::general_purpose::STANDARD.decode(text).unwrap()
            }
            "quoted-printable" => {
                let mut out = Vec::new();
                let mut i = 0;
                while i < data.len() {
                    match data[i] {
                        b'=' if data.get(i + 1) == Some(&b'\n') => i += 2,
                        b'=' => {
                            let hex = std::str::from_utf8(&data[i + 1..i + 3]).unwrap();
                            out.push(u8::from_str_radix(hex, 16).unwrap());
                            i += 3;
                        }
                        b => {
                            out.push(b);
                            i += 1;
                        }
                    }
                }
                out
            }
            _ => data.to_vec(),
        }
    }

    #[test]
    fn every_body_survives_its_transfer_encoding_and_lines_stay_short() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let alphabet: &[&[u8]] = &[
            b"x",
            b" ",
            b"\t",
            b"=",
            b"\r",
            b"\n",
            b"\r\n",
            b".",
            "\u{e9}".as_bytes(),
            "\u{2713}".as_bytes(),
            b"\x7f",
        ];
        for _ in 0..3000 {
            let len = next() % 300;
            let mut body = Vec::new();
            for _ in 0..len {
                let piece = alphabet[(next() % alphabet.len() as u64) as usize];
                let run = if next() % 8 == 0 { 1 + next() % 90 } else { 1 };
                for _ in 0..run {
                    body.extend_from_slice(piece);
                }
            }
            let (cte, data) = encode_text(&body);
            // What Python's encoders encode: the lines joined by LF, with one at the end.
            let mut want = split_lines(&body).join(&b'\n');
            want.push(b'\n');
            assert_eq!(decode(cte, &data), want, "{cte} of {:?}", String::from_utf8_lossy(&body));
            if cte == "quoted-printable" || cte == "base64" {
                assert!(data.split(|b| *b == b'\n').all(|l| l.len() <= 78), "{cte} line too long");
            }
        }
    }
}
