//! `logging.handlers.SysLogHandler`: records to a syslog daemon, over a
//! Unix socket (`/dev/log`), UDP, TCP, TLS or RELP.
//!
//! By default the bytes are Python's: `<PRI>`, ident, the formatted record
//! and a NUL, with Python's facility names and level → priority mapping.
//! Beyond Python: RFC 5424 and RFC 3164 headers, RFC 6587 octet counting
//! (so a central daemon splits messages right even when they hold newlines),
//! TLS (RFC 5425), reconnection when the daemon restarts, and RELP, whose
//! acknowledgements make forwarding to a restarting rsyslog lose nothing.
//! Delivery (batches, retries, the bounded buffer and its counters) is the
//! shared [`crate::delivery`] layer; this file says what the bytes are and
//! which transport carries them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use logfunnel_protocol::{Level, ValueRef, parse_level};
use toml::Value;

use crate::config::keys::{Section, show};
use crate::delivery::datagram::{DatagramTransport, Target, UnixAuto};
use crate::delivery::link::{Endpoint, Link, TlsOptions};
use crate::delivery::relp::RelpTransport;
use crate::delivery::spool::{Sender, SenderHandler};
use crate::delivery::stream::StreamTransport;
use crate::delivery::{DeliveryOptions, Encode, Transport};
use crate::formatter::unix_time::broken_down;
use crate::formatter::{Formatter, RecordContext};
use crate::handler::{BuildContext, Handler, HandlerError, HandlerOptions};

/// Where records go: Python's `address`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyslogAddress {
    /// A Unix socket path (`"/dev/log"`).
    Unix(PathBuf),
    /// `["host", port]` or `"host:port"`.
    Inet {
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
    },
}

/// Python's `socktype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SockType {
    /// `SOCK_DGRAM`: UDP, or a Unix datagram socket.
    Dgram,
    /// `SOCK_STREAM`: TCP, or a Unix stream socket.
    Stream,
}

/// What precedes the formatted record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyslogFormat {
    /// Python's: `<PRI>` only.
    Python,
    /// RFC 3164 (BSD): `<PRI>Mmm dd hh:mm:ss HOST APP[PID]: `.
    Rfc3164,
    /// RFC 5424: `<PRI>1 TIMESTAMP HOST APP PROCID MSGID SD `.
    Rfc5424,
}

/// How messages are delimited on a stream (TCP, TLS, a Unix stream socket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// None: Python's bytes as they are (its NUL ends each message).
    None,
    /// RFC 6587 octet counting: `LEN SP MSG`.
    OctetCounting,
    /// A line feed after each message (RFC 6587's non-transparent framing).
    Newline,
}

/// SysLogHandler's options (docs/CONFIG.md, "SysLogHandler").
#[derive(Debug, Clone, PartialEq)]
pub struct SysLogOptions {
    /// `address`.
    pub address: SyslogAddress,
    /// `socktype`; `None` is Python's default (UDP for a host; for a Unix
    /// path, a datagram socket falling back to a stream socket).
    pub socktype: Option<SockType>,
    /// `facility`, as its number (`user` = 1).
    pub facility: u8,
    /// `format`.
    pub format: SyslogFormat,
    /// `framing` on stream sockets.
    pub framing: Framing,
    /// `append_nul`: a NUL after each message.
    pub append_nul: bool,
    /// `ident`: text put before each formatted record.
    pub ident: String,
    /// `hostname` in RFC headers (default: the client's host name).
    pub hostname: Option<String>,
    /// `app_name` in RFC headers (default: the client's process name).
    pub app_name: Option<String>,
    /// `msgid` in RFC 5424 headers (default `-`).
    pub msgid: Option<String>,
    /// `structured_data`: a record's extra fields as RFC 5424 structured data.
    pub structured_data: bool,
    /// `sd_id`: the SD-ID of those fields.
    pub sd_id: String,
    /// `utc`: RFC timestamps in UTC instead of local time.
    pub utc: bool,
    /// `priority_map`: level → syslog priority, over Python's mapping.
    pub priority_map: Vec<(u32, u8)>,
    /// `tls` and its `tls_*` keys.
    pub tls: Option<TlsOptions>,
    /// `relp`: RELP instead of plain syslog over TCP.
    pub relp: bool,
    /// `relp_window`: RELP frames sent ahead of their acknowledgements.
    pub relp_window: usize,
    /// `timeout`: for connecting and the TLS handshake.
    pub timeout: Duration,
    /// Batching, buffering and retries.
    pub delivery: DeliveryOptions,
}

/// Python's `facility_names`.
const FACILITIES: &[(&str, u8)] = &[
    ("kern", 0),
    ("user", 1),
    ("mail", 2),
    ("daemon", 3),
    ("auth", 4),
    ("syslog", 5),
    ("lpr", 6),
    ("news", 7),
    ("uucp", 8),
    ("cron", 9),
    ("authpriv", 10),
    ("ftp", 11),
    ("ntp", 12),
    ("security", 13),
    ("console", 14),
    ("solaris-cron", 15),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

/// Python's `priority_names`.
const PRIORITIES: &[(&str, u8)] = &[
    ("emerg", 0),
    ("panic", 0),
    ("alert", 1),
    ("crit", 2),
    ("critical", 2),
    ("err", 3),
    ("error", 3),
    ("warn", 4),
    ("warning", 4),
    ("notice", 5),
    ("info", 6),
    ("debug", 7),
];

/// A facility or priority given as a name (any case; `LOG_` prefix and
/// `ext://logging.handlers.SysLogHandler.` as dictConfig may write them) or
/// as its number.
fn name_or_number(v: &Value, names: &[(&str, u8)], max: u8) -> Option<u8> {
    match v {
        Value::Integer(i) => u8::try_from(*i).ok().filter(|n| *n <= max),
        Value::String(s) => {
            let s = s.strip_prefix("ext://logging.handlers.SysLogHandler.").unwrap_or(s);
            let lower = s.to_ascii_lowercase();
            let bare = lower.strip_prefix("log_").unwrap_or(&lower);
            let bare = if bare == "solcron" { "solaris-cron" } else { bare };
            names.iter().find(|(n, _)| *n == bare).map(|(_, v)| *v)
        }
        _ => None,
    }
}

fn parse_address(s: &mut Section<'_>) -> Option<SyslogAddress> {
    let Some((key, v)) = s.value(&["address"]) else {
        // Python's default: ('localhost', 514).
        return Some(SyslogAddress::Inet { host: "localhost".into(), port: 514 });
    };
    let inet = |host: &str, port: i64| {
        let port = u16::try_from(port).ok().filter(|p| *p > 0)?;
        (!host.is_empty()).then(|| SyslogAddress::Inet { host: host.to_owned(), port })
    };
    let parsed = match v {
        Value::Array(a) if a.len() == 2 => match (&a[0], &a[1]) {
            (Value::String(h), Value::Integer(p)) => inet(h, *p),
            _ => None,
        },
        Value::String(t) if t.starts_with('/') || t.starts_with('.') => {
            Some(SyslogAddress::Unix(PathBuf::from(t)))
        }
        Value::String(t) => match t.rsplit_once(':') {
            Some((h, p)) => {
                let h = h.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(h);
                p.parse().ok().and_then(|p| inet(h, p))
            }
            // A bare name is a path, as in Python (a str address is a socket path).
            None if !t.is_empty() => Some(SyslogAddress::Unix(PathBuf::from(t))),
            None => None,
        },
        _ => None,
    };
    if parsed.is_none() {
        s.issue(
            key,
            format!("{} is not an address (write \"/dev/log\", \"host:port\" or [\"host\", port])", show(v)),
        );
    }
    parsed
}

impl HandlerOptions for SysLogOptions {
    fn parse(s: &mut Section<'_>) -> Option<SysLogOptions> {
        let address = parse_address(s);
        let socktype =
            s.parsed(&["socktype"], "\"udp\", \"tcp\" (or socket.SOCK_DGRAM / SOCK_STREAM)", |v| match v {
                Value::Integer(1) => Some(SockType::Stream),
                Value::Integer(2) => Some(SockType::Dgram),
                Value::String(t) => match t.to_ascii_lowercase().as_str() {
                    "udp" | "dgram" | "sock_dgram" | "ext://socket.sock_dgram" => Some(SockType::Dgram),
                    "tcp" | "stream" | "sock_stream" | "ext://socket.sock_stream" => Some(SockType::Stream),
                    _ => None,
                },
                _ => None,
            });
        let facility = s
            .parsed(&["facility"], "a facility name (user, local0 … local7, …) or number", |v| {
                name_or_number(v, FACILITIES, 23)
            })
            .unwrap_or(1);
        let format = s
            .choice(
                &["format"],
                &[
                    ("python", SyslogFormat::Python),
                    ("rfc3164", SyslogFormat::Rfc3164),
                    ("rfc5424", SyslogFormat::Rfc5424),
                ],
            )
            .unwrap_or(SyslogFormat::Python);
        let tls_on = s.boolean(&["tls"]).unwrap_or(false);
        let tls = TlsOptions {
            ca_file: s.string(&["tls_ca_file"]).map(PathBuf::from),
            server_name: s.string(&["tls_server_name"]),
            cert_file: s.string(&["tls_cert_file"]).map(PathBuf::from),
            key_file: s.string(&["tls_key_file"]).map(PathBuf::from),
        };
        let any_tls_key = tls.ca_file.is_some()
            || tls.server_name.is_some()
            || tls.cert_file.is_some()
            || tls.key_file.is_some();
        if !tls_on && any_tls_key {
            s.issue("tls", "tls_* keys are given but tls is not true");
        }
        if tls.cert_file.is_some() != tls.key_file.is_some() {
            s.issue("tls_cert_file", "tls_cert_file and tls_key_file go together");
        }
        let relp = s.boolean(&["relp"]).unwrap_or(false);
        let relp_window = s.positive(&["relp_window"]).unwrap_or(1024).min(1 << 20);
        // Octet counting is what RFC 5425 (TLS) asks for and what any
        // daemon reading RFC 5424 understands; Python's bytes stay as they
        // are otherwise.
        let default_framing =
            if tls_on || format == SyslogFormat::Rfc5424 { Framing::OctetCounting } else { Framing::None };
        let framing_given = s.has(&["framing"]);
        let framing = s
            .choice(
                &["framing"],
                &[
                    ("none", Framing::None),
                    ("octet_counting", Framing::OctetCounting),
                    ("newline", Framing::Newline),
                ],
            )
            .unwrap_or(default_framing);
        let append_nul = s
            .boolean(&["append_nul"])
            .unwrap_or(format == SyslogFormat::Python && framing == Framing::None && !relp);
        let ident = s.string(&["ident"]).unwrap_or_default();
        let hostname = s.string(&["hostname"]);
        let app_name = s.string(&["app_name"]);
        let msgid = s.string(&["msgid"]);
        let structured_data = s.boolean(&["structured_data"]).unwrap_or(true);
        let sd_id = s.string(&["sd_id"]).unwrap_or_else(|| "logfunnel@32473".into());
        if !valid_sd_name(&sd_id) {
            s.issue(
                "sd_id",
                format!("{sd_id:?} is not an SD-ID (1–32 printable ASCII characters, no space, =, ] or \")"),
            );
        }
        let utc = s.boolean(&["utc"]).unwrap_or(false);
        let mut priority_map = Vec::new();
        if let Some(mut m) = s.sub_table(&["priority_map"]) {
            let table = m.table();
            for (level, v) in table {
                let levelno = parse_level(level)
                    .or_else(|| level.strip_prefix("Level ").and_then(|n| n.trim().parse().ok()).map(Level));
                let priority = name_or_number(v, PRIORITIES, 7);
                match (levelno, priority) {
                    (Some(l), Some(p)) => priority_map.push((l.0, p)),
                    (None, _) => m.issue(level, "not a level name or number"),
                    (_, None) => m.issue(
                        level,
                        format!("{} is not a syslog priority (debug … emerg, or 0–7)", show(v)),
                    ),
                }
            }
            // Every key of the table is a level: none is "unknown".
            s.merge_issues(m);
        }
        let timeout = s.seconds(&["timeout"], false).unwrap_or(Duration::from_secs(5));
        // RELP keeps one batch in flight and refills its window as answers
        // come: a batch of many windows pauses for a round trip only at its
        // end.
        let defaults = if relp {
            DeliveryOptions {
                batch_max_records: 16 * relp_window,
                batch_max_bytes: 4 << 20,
                ..Default::default()
            }
        } else {
            DeliveryOptions::default()
        };
        let delivery = DeliveryOptions::read(s, defaults);
        let address = address?;
        let inet = matches!(address, SyslogAddress::Inet { .. });
        let stream = match (&address, socktype) {
            (SyslogAddress::Inet { .. }, t) => t == Some(SockType::Stream),
            (SyslogAddress::Unix(_), t) => t == Some(SockType::Stream),
        };
        if (tls_on || relp) && !(inet && stream) {
            s.issue(if relp { "relp" } else { "tls" }, "needs a host:port address and socktype = \"tcp\"");
        }
        if framing_given && inet && !stream {
            s.issue("framing", "framing applies to stream sockets (socktype = \"tcp\")");
        }
        if framing_given && relp {
            s.issue("framing", "RELP frames messages itself");
        }
        Some(SysLogOptions {
            address,
            socktype,
            facility,
            format,
            framing,
            append_nul,
            ident,
            hostname,
            app_name,
            msgid,
            structured_data,
            sd_id,
            utc,
            priority_map,
            tls: tls_on.then_some(tls),
            relp,
            relp_window,
            timeout,
            delivery,
        })
    }

    fn build(&self, cx: &BuildContext<'_>) -> Result<Box<dyn Handler>, HandlerError> {
        let transport: Box<dyn Transport> = match (&self.address, self.socktype) {
            (SyslogAddress::Unix(path), None) => Box::new(UnixAuto::new(path.clone(), self.timeout)),
            (SyslogAddress::Unix(path), Some(SockType::Dgram)) => {
                Box::new(DatagramTransport::new(Target::Unix(path.clone())))
            }
            (SyslogAddress::Unix(path), Some(SockType::Stream)) => Box::new(StreamTransport::new(
                Link::new(Endpoint::Unix(path.clone()), None, self.timeout),
                "syslog",
            )),
            (SyslogAddress::Inet { host, port }, None | Some(SockType::Dgram)) => {
                Box::new(DatagramTransport::new(Target::Udp { host: host.clone(), port: *port }))
            }
            (SyslogAddress::Inet { host, port }, Some(SockType::Stream)) => {
                let tls = match &self.tls {
                    Some(t) => Some(t.build(host).map_err(|e| {
                        cx.named(HandlerError::io("setting up TLS", std::io::Error::other(e)))
                    })?),
                    None => None,
                };
                let link = Link::new(Endpoint::Tcp { host: host.clone(), port: *port }, tls, self.timeout);
                if self.relp {
                    Box::new(RelpTransport::new(link, self.relp_window))
                } else {
                    Box::new(StreamTransport::new(link, "syslog"))
                }
            }
        };
        let octets = self.framing == Framing::OctetCounting && !self.relp;
        let newline = self.framing == Framing::Newline && !self.relp;
        Ok(Box::new(SenderHandler::new(
            Encoder {
                formatter: cx.formatter(),
                options: Arc::new(self.clone()),
                octets,
                newline,
                host_fallback: hub_host_name(),
                scratch: Vec::new(),
                second: None,
            },
            Sender::new(&self.delivery, cx, transport)?,
        )))
    }

    fn disk_buffer(&self) -> bool {
        self.delivery.disk
    }
}

/// Formats records into syslog messages: Python's SysLogHandler (see the
/// module docs), delivered by a [`SenderHandler`].
struct Encoder {
    formatter: Formatter,
    options: Arc<SysLogOptions>,
    /// Framing applied here (RELP frames messages itself; datagrams need none).
    octets: bool,
    newline: bool,
    /// The hub's host name, for records whose client did not say.
    host_fallback: String,
    scratch: Vec<u8>,
    /// The broken-down time of the last second formatted (RFC headers).
    second: Option<(i64, Civil)>,
}

/// A second as a calendar shows it, and the UTC offset in force.
#[derive(Debug, Clone, Copy, Default)]
struct Civil {
    year: i32,
    /// 0–11.
    month: i32,
    day: i32,
    hour: i32,
    minute: i32,
    second: i32,
    offset: i64,
}

const MONTHS: [&str; 12] =
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

impl Encode for Encoder {
    fn encode(&mut self, ctx: &RecordContext<'_>, out: &mut Vec<u8>) -> Result<(), HandlerError> {
        self.framed(ctx, out)
    }
}

impl Encoder {
    /// The syslog priority of a record: `priority_map`, else Python's
    /// `mapPriority` (by level name; unknown levels are `warning`), with
    /// Rust's TRACE as `debug`.
    fn severity(&self, levelno: u32) -> u8 {
        if let Some((_, p)) = self.options.priority_map.iter().find(|(l, _)| *l == levelno) {
            return *p;
        }
        match levelno {
            5 | 10 => 7,
            20 => 6,
            30 => 4,
            40 => 3,
            50 => 2,
            _ => 4,
        }
    }

    /// The record as one syslog message, framed as configured.
    fn framed(&mut self, ctx: &RecordContext<'_>, out: &mut Vec<u8>) -> Result<(), HandlerError> {
        if self.octets {
            let mut msg = std::mem::take(&mut self.scratch);
            msg.clear();
            let result = self.message(ctx, &mut msg);
            if result.is_ok() {
                out.extend_from_slice(msg.len().to_string().as_bytes());
                out.push(b' ');
                out.extend_from_slice(&msg);
            }
            self.scratch = msg;
            result
        } else {
            self.message(ctx, out)?;
            if self.newline {
                out.push(b'\n');
            }
            Ok(())
        }
    }

    /// One message: PRI, header, ident, the formatted record, NUL.
    fn message(&mut self, ctx: &RecordContext<'_>, out: &mut Vec<u8>) -> Result<(), HandlerError> {
        use std::io::Write as _;
        let o = Arc::clone(&self.options);
        let rec = ctx.record;
        let pri = u32::from(o.facility) << 3 | u32::from(self.severity(rec.levelno));
        let _ = write!(out, "<{pri}>");
        match o.format {
            SyslogFormat::Python => {}
            SyslogFormat::Rfc3164 => {
                let (tm, _) = self.time(rec.created_ns);
                let _ = write!(
                    out,
                    "{} {:>2} {:02}:{:02}:{:02} ",
                    MONTHS[tm.month.clamp(0, 11) as usize],
                    tm.day,
                    tm.hour,
                    tm.minute,
                    tm.second
                );
                push_token(out, self.host(ctx), 255);
                out.push(b' ');
                push_token(out, self.app(ctx), 32);
                let _ = write!(out, "[{}]: ", rec.process);
            }
            SyslogFormat::Rfc5424 => {
                let (tm, micros) = self.time(rec.created_ns);
                let _ = write!(
                    out,
                    "1 {:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{micros:06}",
                    tm.year,
                    tm.month + 1,
                    tm.day,
                    tm.hour,
                    tm.minute,
                    tm.second
                );
                if o.utc || tm.offset == 0 {
                    out.push(b'Z');
                } else {
                    let off = tm.offset;
                    let sign = if off < 0 { '-' } else { '+' };
                    let _ = write!(out, "{sign}{:02}:{:02}", off.abs() / 3600, off.abs() % 3600 / 60);
                }
                out.push(b' ');
                push_token(out, self.host(ctx), 255);
                out.push(b' ');
                push_token(out, self.app(ctx), 48);
                let _ = write!(out, " {} ", rec.process);
                push_token(out, o.msgid.as_deref().unwrap_or("-"), 32);
                out.push(b' ');
                if o.structured_data && !rec.extra.is_empty() {
                    structured_data(out, &o.sd_id, &rec.extra);
                } else {
                    out.push(b'-');
                }
                out.push(b' ');
            }
        }
        out.extend_from_slice(o.ident.as_bytes());
        self.formatter.format(ctx, out)?;
        if o.append_nul {
            out.push(0);
        }
        Ok(())
    }

    fn host<'a>(&'a self, ctx: &RecordContext<'a>) -> &'a str {
        match &self.options.hostname {
            Some(h) => h,
            None if !ctx.host_name.is_empty() => ctx.host_name,
            None => &self.host_fallback,
        }
    }

    fn app<'a>(&'a self, ctx: &RecordContext<'a>) -> &'a str {
        match &self.options.app_name {
            Some(a) => a,
            None => ctx.record.process_name.unwrap_or(ctx.process_name),
        }
    }

    /// The record's time broken down (cached per second), and its microseconds.
    fn time(&mut self, created_ns: i64) -> (Civil, i64) {
        let second = created_ns.div_euclid(1_000_000_000);
        let micros = created_ns.rem_euclid(1_000_000_000) / 1000;
        match self.second {
            Some((s, c)) if s == second => (c, micros),
            _ => {
                let c = broken_down(second, self.options.utc).map_or(Civil::default(), |tm| Civil {
                    year: tm.tm_year + 1900,
                    month: tm.tm_mon,
                    day: tm.tm_mday,
                    hour: tm.tm_hour,
                    minute: tm.tm_min,
                    second: tm.tm_sec,
                    offset: tm.tm_gmtoff,
                });
                self.second = Some((second, c));
                (c, micros)
            }
        }
    }
}

/// A header field: printable ASCII without spaces (others become `_`), at
/// most `max` bytes, `-` when empty (RFC 5424's NILVALUE).
fn push_token(out: &mut Vec<u8>, s: &str, max: usize) {
    if s.is_empty() {
        out.push(b'-');
        return;
    }
    out.extend(s.bytes().take(max).map(|b| if (33..=126).contains(&b) { b } else { b'_' }));
}

fn valid_sd_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes().all(|b| (33..=126).contains(&b) && !matches!(b, b'=' | b']' | b'"'))
}

/// `[ID key="value" …]`: names cleaned to what RFC 5424 allows, values
/// escaped (`"`, `\` and `]` take a backslash).
fn structured_data(out: &mut Vec<u8>, id: &str, extra: &[(&str, ValueRef<'_>)]) {
    out.push(b'[');
    out.extend_from_slice(id.as_bytes());
    for (key, value) in extra {
        out.push(b' ');
        let name: Vec<u8> = key
            .bytes()
            .take(32)
            .map(|b| if (33..=126).contains(&b) && !matches!(b, b'=' | b']' | b'"') { b } else { b'_' })
            .collect();
        if name.is_empty() {
            out.push(b'_');
        }
        out.extend_from_slice(&name);
        out.extend_from_slice(b"=\"");
        let text = match value {
            ValueRef::Str(s) => (*s).to_owned(),
            ValueRef::I64(i) => i.to_string(),
            ValueRef::U64(u) => u.to_string(),
            ValueRef::F64(f) => crate::formatter::python_float_str(*f),
            ValueRef::Bool(b) => if *b { "True" } else { "False" }.to_owned(),
        };
        for b in text.bytes() {
            if matches!(b, b'"' | b'\\' | b']') {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
    }
    out.push(b']');
}

/// This machine's name (for records whose client sent none).
pub(crate) fn hub_host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
    // when the name fits.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let len = buf.iter().position(|&b| b == 0).unwrap_or(0);
    if ok && len > 0 { String::from_utf8_lossy(&buf[..len]).into_owned() } else { "localhost".into() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn options(extra: &str) -> Result<SysLogOptions, Vec<String>> {
        let text = format!("[handlers.s]\nclass = \"logging.handlers.SysLogHandler\"\n{extra}\n");
        match Config::from_toml_str(&text, "test") {
            Ok(c) => Ok(c.handlers["s"].options::<SysLogOptions>().unwrap().clone()),
            Err(e) => Err(e.issues.iter().map(ToString::to_string).collect()),
        }
    }

    #[test]
    fn addresses_and_socket_types_read_as_python_and_toml_write_them() {
        let o = options("").unwrap();
        assert_eq!(o.address, SyslogAddress::Inet { host: "localhost".into(), port: 514 });
        assert_eq!((o.socktype, o.facility, o.append_nul, o.framing), (None, 1, true, Framing::None));
        let o = options("address = [\"logs.example.org\", 6514]\nsocktype = \"ext://socket.SOCK_STREAM\"")
            .unwrap();
        assert_eq!(o.address, SyslogAddress::Inet { host: "logs.example.org".into(), port: 6514 });
        assert_eq!(o.socktype, Some(SockType::Stream));
        let o = options("address = \"[::1]:514\"\nfacility = \"LOG_LOCAL3\"").unwrap();
        assert_eq!(o.address, SyslogAddress::Inet { host: "::1".into(), port: 514 });
        assert_eq!(o.facility, 19);
        let o = options("address = \"/dev/log\"\nfacility = 23").unwrap();
        assert_eq!((o.address, o.facility), (SyslogAddress::Unix("/dev/log".into()), 23));
        let o = options("address = \"h:1\"\nsocktype = \"tcp\"\ntls = true\ntls_ca_file = \"/x\"").unwrap();
        assert_eq!((o.framing, o.append_nul), (Framing::OctetCounting, false));
        let o = options("address = \"h:1\"\nsocktype = \"tcp\"\nformat = \"rfc5424\"").unwrap();
        assert_eq!(o.framing, Framing::OctetCounting);
    }

    #[test]
    fn bad_values_name_their_key() {
        let e = options(
            "address = \"h:99999\"\nsocktype = \"sctp\"\nfacility = \"local9\"\nformat = \"json\"\npriority_map = { NOTICE2 = \"info\", WARNING = \"loud\" }\nsd_id = \"a b\"",
        )
        .unwrap_err();
        for want in [
            "handlers.s.address: \"h:99999\" is not an address",
            "handlers.s.socktype: expected",
            "handlers.s.facility: expected a facility name",
            "handlers.s.format: \"json\" is not one of",
            "handlers.s.priority_map.NOTICE2: not a level",
            "handlers.s.priority_map.WARNING: \"loud\" is not a syslog priority",
            "handlers.s.sd_id: \"a b\" is not an SD-ID",
        ] {
            assert!(e.iter().any(|g| g.starts_with(want)), "missing {want:?} in {e:#?}");
        }
        let e = options("address = \"/dev/log\"\nrelp = true").unwrap_err();
        assert!(e[0].starts_with("handlers.s.relp: needs a host:port address"), "{e:?}");
        let e = options("tls_ca_file = \"/x\"").unwrap_err();
        assert!(e[0].contains("tls is not true"), "{e:?}");
    }

    fn encoder(extra: &str) -> Encoder {
        let o = options(extra).unwrap();
        Encoder {
            formatter: crate::handler::default_formatter(),
            octets: o.framing == Framing::OctetCounting,
            newline: o.framing == Framing::Newline,
            options: Arc::new(o),
            host_fallback: "hubhost".into(),
            scratch: Vec::new(),
            second: None,
        }
    }

    fn encode(e: &mut Encoder, levelno: u32, message: &str, extra: Vec<(&str, ValueRef<'_>)>) -> Vec<u8> {
        let mut rec = logfunnel_protocol::Record::new(levelno, "app", message);
        rec.created_ns = 1_700_000_000_123_456_789;
        rec.process = 42;
        let mut view = rec.view();
        view.extra = extra;
        let ctx = RecordContext {
            record: &view,
            peer: crate::formatter::PeerCred::UNKNOWN,
            process_name: "worker",
            host_name: "web1",
            start_ns: 0,
            python: false,
        };
        let mut out = Vec::new();
        e.encode(&ctx, &mut out).unwrap();
        out
    }

    #[test]
    fn pythons_bytes_and_priorities() {
        // CPython's test_logging: b'<11>sp\xc3\xa4m\x00' for ERROR on LOG_USER.
        let mut e = encoder("");
        assert_eq!(encode(&mut e, 40, "späm", vec![]), "<11>späm\0".as_bytes());
        let mut e = encoder("append_nul = false\nident = \"häm-\"");
        assert_eq!(encode(&mut e, 40, "späm", vec![]), "<11>häm-späm".as_bytes());
        let mut e = encoder("facility = \"local7\"\npriority_map = { \"Level 25\" = \"notice\", 35 = 1 }");
        let pri = |e: &mut Encoder, l| String::from_utf8(encode(e, l, "", vec![])).unwrap();
        assert_eq!(pri(&mut e, 10), "<191>\0");
        assert_eq!(pri(&mut e, 5), "<191>\0", "TRACE is debug");
        assert_eq!(pri(&mut e, 20), "<190>\0");
        assert_eq!(pri(&mut e, 30), "<188>\0");
        assert_eq!(pri(&mut e, 50), "<186>\0");
        assert_eq!(pri(&mut e, 25), "<189>\0", "priority_map");
        assert_eq!(pri(&mut e, 35), "<185>\0");
        assert_eq!(pri(&mut e, 45), "<188>\0", "unknown levels are warning, as in Python");
    }

    #[test]
    fn rfc_headers_framing_and_structured_data() {
        let mut e = encoder(
            "format = \"rfc5424\"\nutc = true\nmsgid = \"audit\"\naddress = \"h:1\"\nsocktype = \"tcp\"",
        );
        let got = encode(
            &mut e,
            20,
            "hello\nworld",
            vec![("user", ValueRef::Str("a\"b]")), ("n", ValueRef::I64(-3))],
        );
        let msg = "<14>1 2023-11-14T22:13:20.123456Z web1 worker 42 audit [logfunnel@32473 user=\"a\\\"b\\]\" n=\"-3\"] hello\nworld";
        assert_eq!(String::from_utf8(got).unwrap(), format!("{} {msg}", msg.len()));
        let mut e = encoder(
            "format = \"rfc3164\"\nutc = true\nhostname = \"my host\"\napp_name = \"api\"\nframing = \"newline\"\naddress = \"h:1\"\nsocktype = \"tcp\"",
        );
        let got = encode(&mut e, 30, "x", vec![]);
        assert_eq!(String::from_utf8(got).unwrap(), "<12>Nov 14 22:13:20 my_host api[42]: x\n");
    }
}
