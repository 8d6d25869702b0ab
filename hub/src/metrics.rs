//! `[hub] metrics = "127.0.0.1:9108"`: the counters of `logfunnel stats` in
//! Prometheus' text exposition format (version 0.0.4) at `GET /metrics`.
//!
//! What is exported is driven by the counters themselves: the hub's
//! [`HubStats`] is serialized (serde) and each field is looked up in one of
//! three tables ([`HUB`], [`HANDLER`], [`CLIENT`]) that say what kind of
//! metric it is. A new counter in `protocol/src/stats.rs` is one line in
//! its table; a test fails until that line exists (and a field left out
//! would still be exported, as `untyped`). String fields are labels of
//! their entity's samples (a handler's `name` and `class`) or, when marked
//! [`Kind::Info`], an info-style metric whose label carries the text (a
//! last error), exported while the text is not empty.
//!
//! The server is a plain HTTP/1.1 responder on its own thread, one request
//! per connection, each bounded in size and time, so a slow or hostile
//! scraper cannot hold the hub's other work.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value as J;

use crate::HubShared;
use crate::stats::HubStats;

/// How a field becomes a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up: `<prefix><name>_total`.
    Counter,
    /// A level now: `<prefix><name>`.
    Gauge,
    /// A string (or number) that names the entity: a label `name` on each
    /// of its samples.
    Label,
    /// A string exported as `<prefix><name>_info{<name>="text"} 1` while
    /// not empty (a last error: one series per text, not per record).
    Info,
    /// Not a metric (a nested list, exported by its own table).
    Skip,
}

/// One field of a stats struct, as a metric.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    /// The field's name in the stats struct (and its JSON).
    pub field: &'static str,
    pub kind: Kind,
    /// The metric's name after the prefix (counters get `_total`), or the
    /// label's name.
    pub name: &'static str,
    pub help: &'static str,
    /// The field's value is multiplied by this (milliseconds → seconds).
    pub scale: f64,
}

impl Metric {
    /// The metric family's name under `prefix` (None for labels and skipped fields).
    pub fn family(&self, prefix: &str) -> Option<String> {
        family(self.kind, prefix, self.name)
    }
}

fn family(kind: Kind, prefix: &str, name: &str) -> Option<String> {
    match kind {
        Counter => Some(format!("{prefix}{name}_total")),
        Gauge => Some(format!("{prefix}{name}")),
        Info => Some(format!("{prefix}{name}_info")),
        Label | Skip => None,
    }
}

/// The prefixes of the hub's, each handler's and each connection's metrics,
/// with their tables.
pub const PREFIXES: [(&str, &[Metric]); 3] =
    [("logfunnel_", HUB), ("logfunnel_handler_", HANDLER), ("logfunnel_client_", CLIENT)];

const fn m(field: &'static str, kind: Kind, name: &'static str, help: &'static str) -> Metric {
    Metric { field, kind, name, help, scale: 1.0 }
}

const fn scaled(
    field: &'static str,
    kind: Kind,
    name: &'static str,
    help: &'static str,
    scale: f64,
) -> Metric {
    Metric { field, kind, name, help, scale }
}

use Kind::{Counter, Gauge, Info, Label, Skip};

/// `HubStats`: the hub as a whole (prefix `logfunnel_`).
pub const HUB: &[Metric] = &[
    scaled("uptime_ms", Gauge, "uptime_seconds", "Seconds since the hub started.", 0.001),
    m("connections", Counter, "connections", "Client connections accepted."),
    m(
        "refused",
        Counter,
        "refused_connections",
        "Connections refused (bad magic, wrong version, malformed frames).",
    ),
    m("open_connections", Gauge, "open_connections", "Client connections open now."),
    m("bad_frames", Counter, "bad_frames", "Frames refused as malformed; each closed its connection."),
    m(
        "bad_handshakes",
        Counter,
        "bad_handshakes",
        "Connections refused at the handshake (wrong magic or version).",
    ),
    m("truncated_frames", Counter, "truncated_frames", "Connections that ended in the middle of a frame."),
    m("timed_out", Counter, "timed_out_connections", "Connections closed for idling or sending too slowly."),
    m("refused_peers", Counter, "refused_peers", "Connections refused by the uid/gid allowlist."),
    m(
        "over_limit",
        Counter,
        "over_limit_connections",
        "Connections refused because max_connections were open.",
    ),
    m(
        "shutdown_incomplete",
        Gauge,
        "shutdown_incomplete",
        "1 when a shutdown's deadline passed with records undelivered.",
    ),
    m("received", Counter, "records_received", "Records received from all clients."),
    m("duplicates", Counter, "records_duplicate", "Resent records dropped as duplicates of received ones."),
    m(
        "filtered",
        Counter,
        "records_filtered",
        "Records below their logger's effective level (filtered, not lost).",
    ),
    m("listener_queue_depth", Gauge, "listener_queue_depth", "Batches waiting in the listener queue now."),
    m(
        "truncated_messages",
        Counter,
        "messages_truncated",
        "Messages over the protocol's limit, cut by its rule (by their client or by the hub).",
    ),
    m(
        "truncated_fields",
        Counter,
        "fields_truncated",
        "Records and Hellos with another field over its limit, cut by the hub.",
    ),
    m(
        "decoded_bytes",
        Gauge,
        "decoded_bytes",
        "Bytes of decoded frames on their way to the handler queues now.",
    ),
    m(
        "python_objects",
        Counter,
        "python_objects_not_unpickled",
        "Objects in Python clients' records shown as placeholder text, never unpickled.",
    ),
    m("handlers", Skip, "", ""),
    m("clients", Skip, "", ""),
];

/// `HandlerStats`: one series per handler (prefix `logfunnel_handler_`).
pub const HANDLER: &[Metric] = &[
    m("name", Label, "handler", ""),
    m("class", Label, "class", ""),
    m("received", Counter, "records_received", "Records accepted into the handler's queue."),
    m("emitted", Counter, "records_emitted", "Records the handler wrote."),
    m("failed", Counter, "records_failed", "Records that failed (I/O or format errors)."),
    m("dropped", Counter, "records_dropped", "Records dropped by the queue's overflow policy."),
    m("queue_depth", Gauge, "queue_depth", "Records in the handler's queue now."),
    m(
        "undelivered",
        Gauge,
        "records_undelivered",
        "Records taken but neither written, failed nor dropped yet.",
    ),
    m(
        "duplicates",
        Counter,
        "records_duplicate",
        "Resent records the output already held (dropped by its journal).",
    ),
    m(
        "durable",
        Gauge,
        "journaled",
        "1 when the handler journals its output (exactly-once across a killed hub).",
    ),
    m(
        "recovered_truncated_bytes",
        Gauge,
        "recovered_truncated_bytes",
        "Bytes of unacknowledged output cut at start-up.",
    ),
    m("journal_errors", Counter, "journal_errors", "Failed writes of the handler's delivery journal."),
    m(
        "held",
        Gauge,
        "records_held",
        "Records a network handler holds for delivery (a batch, the connection or a retry).",
    ),
    m("retries", Counter, "retries", "Delivery attempts that failed and were scheduled again."),
    m(
        "unconfirmed",
        Counter,
        "records_unconfirmed",
        "Records written to a connection that broke before the peer confirmed them (also failed).",
    ),
    m("last_error", Info, "last_error", "The handler's last delivery error, while it has one."),
    scaled(
        "last_error_unix_ms",
        Gauge,
        "last_error_timestamp_seconds",
        "When the last delivery error happened, seconds since the epoch (0: none).",
        0.001,
    ),
    m(
        "panics",
        Counter,
        "panics",
        "Calls into the handler that panicked (the record failed; it kept serving).",
    ),
];

/// `ConnectionStats`: one series per connection, open or recently closed
/// (prefix `logfunnel_client_`).
pub const CLIENT: &[Metric] = &[
    m("id", Label, "conn", ""),
    m("pid", Label, "pid", ""),
    m("process_name", Label, "process", ""),
    m("received", Counter, "records_received", "Records received on this connection."),
    m("duplicates", Counter, "records_duplicate", "Resent records dropped as duplicates on this connection."),
    m("open", Gauge, "open", "1 while the connection is open."),
];

/// Collects samples per metric family, so each family's HELP and TYPE come
/// once, followed by all its samples (as the format requires).
#[derive(Default)]
struct Families {
    order: Vec<String>,
    text: std::collections::HashMap<String, String>,
}

impl Families {
    fn sample(&mut self, family: &str, help: &str, kind: &str, labels: &str, value: f64) {
        let body = self.text.entry(family.to_owned()).or_insert_with(|| {
            self.order.push(family.to_owned());
            format!("# HELP {family} {}\n# TYPE {family} {kind}\n", escape_help(help))
        });
        let _ = writeln!(body, "{family}{labels} {}", number(value));
    }

    fn finish(self) -> String {
        let mut out = String::new();
        for f in &self.order {
            out += &self.text[f];
        }
        out
    }
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 { format!("{}", v as i64) } else { format!("{v}") }
}

fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn label_text(v: &J) -> String {
    match v {
        J::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One entity's samples: `object` is its serialized stats, `table` says
/// what each field is.
fn entity(out: &mut Families, prefix: &str, table: &[Metric], object: &serde_json::Map<String, J>) {
    let mut labels: Vec<(String, String)> = Vec::new();
    for d in table.iter().filter(|d| d.kind == Label) {
        if let Some(v) = object.get(d.field) {
            labels.push((d.name.to_owned(), label_text(v)));
        }
    }
    let render = |extra: &[(String, String)]| {
        let all: Vec<String> =
            labels.iter().chain(extra).map(|(k, v)| format!("{k}=\"{}\"", escape_label(v))).collect();
        if all.is_empty() { String::new() } else { format!("{{{}}}", all.join(",")) }
    };
    for (field, value) in object {
        let d = table.iter().find(|d| d.field == field);
        let (kind, name, help, scale) = match d {
            Some(d) => (d.kind, d.name, d.help, d.scale),
            // A field nobody described yet is still exported, untyped.
            None => (Gauge, field.as_str(), "", 1.0),
        };
        let number = match value {
            J::Number(n) => n.as_f64(),
            J::Bool(b) => Some(f64::from(u8::from(*b))),
            _ => None,
        };
        let family = family(kind, prefix, name);
        match (kind, family) {
            (Counter | Gauge, Some(family)) if number.is_some() => {
                let type_name = match (kind, d) {
                    (Counter, _) => "counter",
                    (_, None) => "untyped",
                    _ => "gauge",
                };
                let help = if help.is_empty() {
                    format!("The {field} field of logfunnel stats.")
                } else {
                    help.to_owned()
                };
                out.sample(&family, &help, type_name, &render(&[]), number.unwrap_or(0.0) * scale);
            }
            (Info, Some(family)) => {
                let text = label_text(value);
                if !text.is_empty() {
                    out.sample(&family, help, "gauge", &render(&[(name.to_owned(), text)]), 1.0);
                }
            }
            _ => {}
        }
    }
}

/// The hub's counters in Prometheus' text format.
pub fn render(stats: &HubStats) -> String {
    let json = serde_json::to_value(stats).unwrap_or(J::Null);
    render_value(&json, HUB, HANDLER, CLIENT)
}

pub(crate) fn render_value(json: &J, hub: &[Metric], handler: &[Metric], client: &[Metric]) -> String {
    let mut out = Families::default();
    out.sample(
        "logfunnel_build_info",
        "The logfunnel hub's version.",
        "gauge",
        &format!("{{version=\"{}\"}}", env!("CARGO_PKG_VERSION")),
        1.0,
    );
    let Some(top) = json.as_object() else { return out.finish() };
    let [(hub_prefix, _), (handler_prefix, _), (client_prefix, _)] = PREFIXES;
    entity(&mut out, hub_prefix, hub, top);
    for (list, prefix, table) in [("handlers", handler_prefix, handler), ("clients", client_prefix, client)] {
        for item in top.get(list).and_then(J::as_array).into_iter().flatten() {
            if let Some(object) = item.as_object() {
                entity(&mut out, prefix, table, object);
            }
        }
    }
    out.finish()
}

/// The metrics endpoint's thread.
pub(crate) struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Binds `address` (`HOST:PORT`) and serves `/metrics` from `shared`.
pub(crate) fn start(address: &str, shared: Arc<HubShared>) -> io::Result<MetricsServer> {
    let addrs: Vec<SocketAddr> = address.to_socket_addrs()?.collect();
    let listener = TcpListener::bind(&addrs[..])?;
    let addr = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let stop = Arc::clone(&stop);
        std::thread::Builder::new().name("logfunnel-metrics".into()).spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::Acquire) {
                    break;
                }
                if let Ok(conn) = conn {
                    let _ = serve(conn, &shared);
                }
            }
        })?
    };
    Ok(MetricsServer { addr, stop, thread: Some(thread) })
}

impl MetricsServer {
    /// The address actually bound (port 0 picks one).
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A request is at most this long; more is a 431.
const MAX_REQUEST: usize = 8 << 10;
const IO_TIMEOUT: Duration = Duration::from_secs(2);

fn serve(mut conn: TcpStream, shared: &HubShared) -> io::Result<()> {
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut request = Vec::new();
    let mut chunk = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && !request.windows(2).any(|w| w == b"\n\n") {
        if request.len() > MAX_REQUEST {
            return respond(
                &mut conn,
                "431 Request Header Fields Too Large",
                "text/plain",
                "request too large\n",
                true,
            );
        }
        match conn.read(&mut chunk)? {
            0 => break,
            n => request.extend_from_slice(&chunk[..n]),
        }
    }
    let line = request.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let head = method == "HEAD";
    if method != "GET" && !head {
        return respond(&mut conn, "405 Method Not Allowed", "text/plain", "only GET\n", head);
    }
    match path {
        "/metrics" => {
            let body = render(&shared.snapshot());
            respond(&mut conn, "200 OK", "text/plain; version=0.0.4; charset=utf-8", &body, head)
        }
        "/" => respond(
            &mut conn,
            "200 OK",
            "text/plain; charset=utf-8",
            "logfunnel hub: metrics at /metrics\n",
            head,
        ),
        _ => respond(&mut conn, "404 Not Found", "text/plain", "not found: metrics are at /metrics\n", head),
    }
}

fn respond(conn: &mut TcpStream, status: &str, content_type: &str, body: &str, head: bool) -> io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if status.starts_with("405") {
        out += "Allow: GET, HEAD\r\n";
    }
    out += "\r\n";
    if !head {
        out += body;
    }
    conn.write_all(out.as_bytes())?;
    conn.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{ConnectionStats, HandlerStats};

    fn sample_stats() -> HubStats {
        let h = |name: &str| HandlerStats {
            name: name.into(),
            class: "FileHandler".into(),
            received: 10,
            emitted: 9,
            failed: 1,
            dropped: 0,
            queue_depth: 0,
            undelivered: 0,
            duplicates: 0,
            durable: true,
            recovered_truncated_bytes: 0,
            journal_errors: 0,
            held: 0,
            retries: 2,
            unconfirmed: 0,
            last_error: String::new(),
            last_error_unix_ms: 0,
            panics: 0,
        };
        HubStats {
            uptime_ms: 1500,
            handlers: vec![h("file"), h("a \"quoted\"\nname\\")],
            clients: vec![ConnectionStats {
                id: 1,
                pid: 42,
                process_name: "worker".into(),
                received: 10,
                duplicates: 0,
                open: true,
            }],
            ..HubStats::default()
        }
    }

    /// Every field of every stats struct has its line in a table, and every
    /// line names a field: a counter added to protocol/src/stats.rs fails
    /// here until it is described.
    #[test]
    fn every_stats_field_is_described_and_every_description_is_a_field() {
        let json = serde_json::to_value(sample_stats()).unwrap();
        let keys = |v: &J| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        for (what, fields, table) in [
            ("HubStats", keys(&json), HUB),
            ("HandlerStats", keys(&json["handlers"][0]), HANDLER),
            ("ConnectionStats", keys(&json["clients"][0]), CLIENT),
        ] {
            for f in &fields {
                assert!(table.iter().any(|d| d.field == f), "{what}.{f} has no line in the metrics table");
            }
            for d in table {
                assert!(
                    fields.iter().any(|f| f == d.field),
                    "the metrics table names {what}.{} (no such field)",
                    d.field
                );
                assert!(
                    d.kind == Skip || d.kind == Label || !d.help.is_empty(),
                    "{what}.{} has no help",
                    d.field
                );
            }
        }
    }

    /// docs/CONFIG.md lists every metric the tables make, with its type.
    #[test]
    fn config_md_lists_every_metric() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/CONFIG.md")).unwrap();
        for (prefix, table) in PREFIXES {
            for d in table.iter().filter(|d| matches!(d.kind, Counter | Gauge)) {
                let family = d.family(prefix).unwrap();
                let kind = if d.kind == Counter { "counter" } else { "gauge" };
                let row = format!("| `{family}` | {kind} |");
                assert!(doc.contains(&row), "docs/CONFIG.md has no row {row:?} (field {})", d.field);
            }
        }
    }

    #[test]
    fn strings_become_labels_or_info_and_are_escaped() {
        let text = render(&sample_stats());
        assert!(text.contains("logfunnel_uptime_seconds 1.5\n"), "{text}");
        assert!(
            text.contains("logfunnel_handler_retries_total{handler=\"file\",class=\"FileHandler\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "logfunnel_handler_records_received_total{handler=\"file\",class=\"FileHandler\"} 10\n"
            ),
            "{text}"
        );
        assert!(text.contains("{handler=\"a \\\"quoted\\\"\\nname\\\\\",class=\"FileHandler\"}"), "{text}");
        assert!(
            text.contains("logfunnel_client_open{conn=\"1\",pid=\"42\",process=\"worker\"} 1\n"),
            "{text}"
        );
        // Each family's HELP and TYPE once, before all its samples.
        assert_eq!(text.matches("# TYPE logfunnel_handler_records_emitted_total counter").count(), 1);
        // An info-style string field (a last error), and a field nobody described.
        let mut json = serde_json::to_value(sample_stats()).unwrap();
        json["handlers"][0]["last_error"] = J::String("connection refused".into());
        json["handlers"][1]["last_error"] = J::String(String::new());
        json["handlers"][0]["brand_new"] = J::from(3);
        let text = render_value(&json, HUB, HANDLER, CLIENT);
        assert!(
            text.contains("logfunnel_handler_last_error_info{handler=\"file\",class=\"FileHandler\",last_error=\"connection refused\"} 1\n"),
            "{text}"
        );
        assert_eq!(text.matches("last_error_info{").count(), 1, "an empty error is not a series");
        assert!(
            text.contains(
                "# TYPE logfunnel_handler_brand_new untyped\nlogfunnel_handler_brand_new{handler=\"file\""
            ),
            "{text}"
        );
    }
}
