//! `logging.handlers.HTTPHandler`: records to a web server.
//!
//! By default each record is one request carrying Python's form fields
//! (`mapLogRecord`, i.e. the record's `__dict__`, urlencoded exactly as
//! `urllib.parse.urlencode` does), in the query string (GET) or the body
//! (POST), as python3's HTTPHandler sends a record a QueueListener hands
//! it. Beyond Python: two batch formats for the collectors people run —
//! JSON lines (one object per record, the fields a user picks; Vector's
//! `http_server`, Fluent Bit's `http` input, Elasticsearch-style ingest)
//! and OTLP/HTTP logs in its JSON encoding (any OpenTelemetry collector) —
//! with gzip, a bearer token, extra headers, timeouts that are always set,
//! and retries with backoff on connection errors, 429 and 5xx (Retry-After
//! honoured). Other 4xx are not retried: the records are counted as failed
//! and the response's first line is reported. Requests run on a thread of
//! their own ([`Offload`]), so a server that hangs stalls nothing else.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use logfunnel_protocol::pickle::Scalar;
use logfunnel_protocol::{ValueRef, level_name};
use toml::Value;

use crate::config::keys::{Section, show};
use crate::delivery::Encode;
use crate::delivery::offload::{Exchange, Offload, OffloadHandler, Outcome, Settled};
use crate::delivery::{DeliveryOptions, Outbox};
use crate::formatter::{Formatter, JsonFields, JsonOptions, RecordContext, python_float_str, record_dict};
use crate::handler::{BuildContext, Handler, HandlerError, HandlerOptions};
use crate::secret::{self, Secret};

/// Python's `method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    /// Fields in the query string.
    Get,
    /// Fields in a form body.
    Post,
}

/// What a request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpFormat {
    /// Python's: one request per record, its form fields.
    Python,
    /// One JSON object per line, many records per request.
    JsonLines,
    /// OTLP/HTTP logs, JSON encoding (an ExportLogsServiceRequest).
    OtlpJson,
}

/// HTTPHandler's options (docs/CONFIG.md, "HTTPHandler").
#[derive(Debug, Clone, PartialEq)]
pub struct HttpOptions {
    /// `host` (with an optional `:port`).
    pub host: String,
    /// `url`: the path (and query) on the host.
    pub url: String,
    /// `method`.
    pub method: HttpMethod,
    /// `secure`: HTTPS.
    pub secure: bool,
    /// `credentials[0]` or `username`: basic auth's user.
    pub username: Option<String>,
    /// `password_env` / `password_file`: basic auth's password.
    pub password: Option<Secret>,
    /// `token_env` / `token_file`: a bearer token.
    pub token: Option<Secret>,
    /// `headers`: extra request headers.
    pub headers: Vec<(String, String)>,
    /// `format`.
    pub format: HttpFormat,
    /// `fields`: the record attributes of a JSON line.
    pub fields: Option<Vec<String>>,
    /// `resource_attributes`: more OTLP resource attributes.
    pub resource_attributes: Vec<(String, String)>,
    /// `compression = "gzip"`.
    pub gzip: bool,
    /// `timeout`: for a whole request.
    pub timeout: Duration,
    /// `tls_ca_file`: the CAs to trust (default: the system's store).
    pub tls_ca_file: Option<PathBuf>,
    /// Batching, buffering and retries.
    pub delivery: DeliveryOptions,
}

impl HttpOptions {
    /// The request URL without the record's fields.
    fn endpoint(&self) -> String {
        if self.host.is_empty() {
            return self.url.clone();
        }
        let scheme = if self.secure { "https" } else { "http" };
        let slash = if self.url.starts_with('/') { "" } else { "/" };
        format!("{scheme}://{}{slash}{}", self.host, self.url)
    }
}

/// Reads Python's `credentials` (`["user"]`; a password written there is
/// refused: it comes from `password_env`/`password_file`) or `username`,
/// and the password through the secret store.
pub(crate) fn read_credentials(s: &mut Section<'_>) -> (Option<String>, Option<Secret>) {
    let mut user = None;
    if let Some((key, v)) = s.value(&["credentials"]) {
        match v {
            Value::Array(a) if a.len() == 1 || a.len() == 2 => match &a[0] {
                Value::String(u) if a.len() == 1 => user = Some(u.clone()),
                Value::String(_) => s.issue(
                    key,
                    "a password is not read from the configuration: write credentials = [\"user\"] and password_env or password_file",
                ),
                other => s.issue(key, format!("expected a user name, found {}", show(other))),
            },
            other => s.issue(key, format!("expected [\"user\"], found {}", show(other))),
        }
    }
    if let Some(u) = s.string(&["username"]) {
        if user.is_some() {
            s.issue("username", "given twice (also in credentials)");
        }
        user = Some(u);
    }
    let password = secret::read(s, "password");
    if password.is_some() && user.is_none() {
        s.issue("password_env", "a password needs a user (credentials = [\"user\"] or username)");
    }
    if user.is_some() && password.is_none() {
        s.issue("credentials", "a user needs a password (password_env or password_file)");
    }
    (user, password)
}

impl HandlerOptions for HttpOptions {
    fn parse(s: &mut Section<'_>) -> Option<HttpOptions> {
        let host = s.string(&["host"]);
        let url = s.string(&["url"]);
        let method = s.parsed(&["method"], "\"GET\" or \"POST\" (method must be GET or POST)", |v| {
            match v.as_str()?.to_ascii_uppercase().as_str() {
                "GET" => Some(HttpMethod::Get),
                "POST" => Some(HttpMethod::Post),
                _ => None,
            }
        });
        let secure = s.boolean(&["secure"]).unwrap_or(false);
        let (username, password) = read_credentials(s);
        let token = secret::read(s, "token");
        if token.is_some() && username.is_some() {
            s.issue("token_env", "give credentials (basic auth) or a token (bearer), not both");
        }
        let mut headers = Vec::new();
        if let Some(mut h) = s.sub_table(&["headers"]) {
            for (name, v) in h.table() {
                let valid_name = !name.is_empty()
                    && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
                match v.as_str() {
                    Some(text) if valid_name && !text.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) => {
                        headers.push((name.clone(), text.to_owned()))
                    }
                    _ if !valid_name => h.issue(name, "not a header name"),
                    _ => h.issue(name, "expected a string without CR, LF or NUL"),
                }
            }
            s.merge_issues(h);
        }
        let format = s
            .choice(
                &["format"],
                &[
                    ("python", HttpFormat::Python),
                    ("json_lines", HttpFormat::JsonLines),
                    ("otlp_json", HttpFormat::OtlpJson),
                ],
            )
            .unwrap_or(HttpFormat::Python);
        let fields = s.has(&["fields"]).then(|| s.string_list(&["fields"]));
        if fields.is_some() && format != HttpFormat::JsonLines {
            s.issue("fields", "applies to format = \"json_lines\"");
        }
        let mut resource_attributes = Vec::new();
        if let Some(mut r) = s.sub_table(&["resource_attributes"]) {
            for (k, v) in r.table() {
                match v.as_str() {
                    Some(text) => resource_attributes.push((k.clone(), text.to_owned())),
                    None => r.issue(k, format!("expected a string, found {}", show(v))),
                }
            }
            s.merge_issues(r);
        }
        if !resource_attributes.is_empty() && format != HttpFormat::OtlpJson {
            s.issue("resource_attributes", "applies to format = \"otlp_json\"");
        }
        let gzip = s.choice(&["compression"], &[("none", false), ("gzip", true)]).unwrap_or(false);
        if gzip && format == HttpFormat::Python {
            s.issue("compression", "applies to the batch formats (json_lines, otlp_json)");
        }
        let timeout = s.seconds(&["timeout"], false).unwrap_or(Duration::from_secs(10));
        let tls_ca_file = s.string(&["tls_ca_file"]).map(PathBuf::from);
        // Python's form sends one record per request: batches only bound
        // what one exchange carries.
        let defaults = match format {
            HttpFormat::Python => DeliveryOptions { batch_max_records: 100, ..Default::default() },
            _ => DeliveryOptions { batch_max_records: 1000, batch_max_bytes: 1 << 20, ..Default::default() },
        };
        let delivery = DeliveryOptions::read(s, defaults);
        let method = match (method, format) {
            (Some(HttpMethod::Get), HttpFormat::JsonLines | HttpFormat::OtlpJson) => {
                s.issue("method", "the batch formats are sent with POST");
                return None;
            }
            (Some(m), _) => m,
            // Python's default is GET; the batch formats are bodies.
            (None, HttpFormat::Python) => HttpMethod::Get,
            (None, _) => HttpMethod::Post,
        };
        let (host, url) = match (host, url) {
            (Some(h), Some(u)) if !h.is_empty() => (h, u),
            (None, Some(u)) if u.starts_with("http://") || u.starts_with("https://") => {
                if secure && u.starts_with("http://") {
                    s.issue("secure", "the url says http://");
                }
                (String::new(), u)
            }
            (None, Some(_)) => {
                s.issue("host", "missing (or give url as http://host:port/path)");
                return None;
            }
            (_, None) => {
                s.issue("url", "missing (the path on the server, e.g. \"/log\")");
                return None;
            }
            (Some(_), Some(_)) => {
                s.issue("host", "is empty");
                return None;
            }
        };
        if tls_ca_file.is_some() && !(secure || url.starts_with("https://")) {
            s.issue("tls_ca_file", "applies to HTTPS (secure = true)");
        }
        let o = HttpOptions {
            host,
            url,
            method,
            secure,
            username,
            password,
            token,
            headers,
            format,
            fields,
            resource_attributes,
            gzip,
            timeout,
            tls_ca_file,
            delivery,
        };
        if let Err(e) = o.endpoint().parse::<ureq::http::Uri>() {
            s.issue("url", format!("{:?} is not a URL: {e}", o.endpoint()));
            return None;
        }
        Some(o)
    }

    fn build(&self, cx: &BuildContext<'_>) -> Result<Box<dyn Handler>, HandlerError> {
        let formatter = match (self.format, &self.fields) {
            (HttpFormat::JsonLines, Some(fields)) => Some(
                Formatter::json(JsonOptions {
                    fields: JsonFields::Names(fields.clone()),
                    ..Default::default()
                })
                .map_err(HandlerError::Format)?,
            ),
            (HttpFormat::JsonLines, None) if !cx.formatter().is_json() => Some(
                Formatter::json(JsonOptions {
                    fields: JsonFields::Names(vec!["name".into(), "levelname".into(), "message".into()]),
                    timestamp: Some("timestamp".into()),
                    ..Default::default()
                })
                .map_err(HandlerError::Format)?,
            ),
            (HttpFormat::JsonLines, None) => Some(cx.formatter()),
            (HttpFormat::OtlpJson, _) if cx.names_formatter => Some(cx.formatter()),
            _ => None,
        };
        let exchange =
            HttpExchange::new(self).map_err(|e| cx.named(HandlerError::io("setting up HTTP", e)))?;
        let counters = Arc::clone(&cx.counters);
        let describe =
            format!("{} {}", if self.method == HttpMethod::Get { "GET" } else { "POST" }, self.endpoint());
        let transport = Offload::new(
            exchange,
            "logfunnel-http",
            describe,
            Box::new(move |why: &str| counters.set_last_error(why)),
        )
        .map_err(|e| cx.named(HandlerError::io("starting the HTTP thread", e)))?;
        let policy = cx.overflow;
        let encoder = Encoder {
            format: self.format,
            formatter,
            resource: self.resource_attributes.clone(),
            scratch: Vec::new(),
        };
        Ok(Box::new(OffloadHandler::new(
            encoder,
            Outbox::new(self.delivery.clone(), policy, Arc::clone(&cx.counters)),
            transport,
        )))
    }
}

struct Encoder {
    format: HttpFormat,
    /// JSON lines: the JSON formatter; OTLP: the body's, when the handler
    /// names one (else the body is the message).
    formatter: Option<Formatter>,
    resource: Vec<(String, String)>,
    scratch: Vec<u8>,
}

/// `urllib.parse.quote_plus` of UTF-8 text: letters, digits and `_.-~`
/// as they are, space as `+`, every other byte as `%XX`.
fn quote_plus(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => out.push(b),
            b' ' => out.push(b'+'),
            _ => out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]),
        }
    }
}

/// A value as Python's `str()` shows it.
fn py_str(v: &Scalar) -> String {
    match v {
        Scalar::Str(s) => s.clone(),
        Scalar::Int(i) => i.to_string(),
        Scalar::Float(f) => python_float_str(*f),
        Scalar::Bool(b) => if *b { "True" } else { "False" }.to_owned(),
        Scalar::None => "None".to_owned(),
    }
}

/// `urlencode(record.__dict__)` for the record python3's QueueListener
/// hands its HTTPHandler: the record's attributes as `SocketHandler` sends
/// them ([`record_dict`]), after `QueueHandler.prepare` — the message
/// formatted into `msg` with its traceback appended as `Formatter.format`
/// does, `exc_text` None, and `message` (the same text) last.
pub(crate) fn python_form(ctx: &RecordContext<'_>, out: &mut Vec<u8>) {
    let r = ctx.record;
    let mut msg = String::from(r.message);
    if let Some(exc) = r.exc_text.filter(|e| !e.is_empty()) {
        if !msg.ends_with('\n') {
            msg.push('\n');
        }
        msg.push_str(exc);
    }
    let mut first = true;
    let mut pair = |out: &mut Vec<u8>, k: &str, v: &str| {
        if !std::mem::take(&mut first) {
            out.push(b'&');
        }
        quote_plus(out, k);
        out.push(b'=');
        quote_plus(out, v);
    };
    for (k, v) in record_dict(ctx) {
        match k.as_str() {
            "msg" => pair(out, &k, &msg),
            "exc_text" => pair(out, &k, "None"),
            _ => pair(out, &k, &py_str(&v)),
        }
    }
    pair(out, "message", &msg);
}

/// OpenTelemetry's severity number for a Python level: below DEBUG TRACE 1, DEBUG 5,
/// INFO 9, WARN 13, ERROR 17, FATAL 21, and the levels between them on the
/// three steps after each (DEBUG2 … DEBUG4 …).
pub(crate) fn severity_number(levelno: u32) -> u32 {
    match levelno {
        0..10 => 1,
        50.. => 21 + (levelno - 50).min(3),
        _ => 5 + (levelno / 10 - 1) * 4 + (levelno % 10).min(3),
    }
}

fn json_str(out: &mut Vec<u8>, s: &str) {
    // serde_json writes valid JSON for any str (control characters escaped).
    let _ = serde_json::to_writer(&mut *out, s);
}

/// `{"key":"k","value":{…}}` for an OTLP attribute.
fn otlp_attr(out: &mut Vec<u8>, key: &str, v: &ValueRef<'_>) {
    if !out.ends_with(b"[") {
        out.push(b',');
    }
    out.extend_from_slice(b"{\"key\":");
    json_str(out, key);
    out.extend_from_slice(b",\"value\":{");
    match v {
        ValueRef::Str(s) => {
            out.extend_from_slice(b"\"stringValue\":");
            json_str(out, s);
        }
        ValueRef::I64(i) => {
            let _ = write!(out, "\"intValue\":\"{i}\"");
        }
        ValueRef::U64(u) if *u <= i64::MAX as u64 => {
            let _ = write!(out, "\"intValue\":\"{u}\"");
        }
        ValueRef::U64(u) => {
            let _ = write!(out, "\"stringValue\":\"{u}\"");
        }
        ValueRef::F64(f) if f.is_finite() => {
            let _ = write!(out, "\"doubleValue\":{f:?}");
        }
        ValueRef::F64(f) => {
            let text = if f.is_nan() {
                "NaN"
            } else if *f > 0.0 {
                "Infinity"
            } else {
                "-Infinity"
            };
            let _ = write!(out, "\"doubleValue\":\"{text}\"");
        }
        ValueRef::Bool(b) => {
            let _ = write!(out, "\"boolValue\":{b}");
        }
    }
    out.extend_from_slice(b"}}");
}

impl Encoder {
    fn encode(&mut self, ctx: &RecordContext<'_>, out: &mut Vec<u8>) -> Result<(), HandlerError> {
        match self.format {
            HttpFormat::Python => {
                python_form(ctx, out);
                Ok(())
            }
            HttpFormat::JsonLines => {
                if let Some(f) = &mut self.formatter {
                    f.format(ctx, out)?;
                }
                out.push(b'\n');
                Ok(())
            }
            HttpFormat::OtlpJson => self.otlp(ctx, out),
        }
    }

    /// One record as three JSON texts split by NULs (which JSON never holds
    /// raw): its resource, its scope and its logRecord. The request groups
    /// consecutive records of the same resource and scope.
    fn otlp(&mut self, ctx: &RecordContext<'_>, out: &mut Vec<u8>) -> Result<(), HandlerError> {
        let r = ctx.record;
        let mut body = std::mem::take(&mut self.scratch);
        body.clear();
        // The body is the message (OpenTelemetry's Python handler sends
        // getMessage(); the traceback goes to exception.stacktrace), or the
        // record as the handler's own formatter writes it.
        let formatted = match &mut self.formatter {
            Some(f) => f.format(ctx, &mut body).map_err(HandlerError::from),
            None => {
                body.extend_from_slice(r.message.as_bytes());
                Ok(())
            }
        };
        if let Err(e) = formatted {
            self.scratch = body;
            return Err(e);
        }
        out.extend_from_slice(b"{\"attributes\":[");
        otlp_attr(out, "service.name", &ValueRef::Str(r.process_name.unwrap_or(ctx.process_name)));
        otlp_attr(out, "process.pid", &ValueRef::I64(r.process.into()));
        if !ctx.host_name.is_empty() {
            otlp_attr(out, "host.name", &ValueRef::Str(ctx.host_name));
        }
        for (k, v) in &self.resource {
            otlp_attr(out, k, &ValueRef::Str(v));
        }
        out.extend_from_slice(b"]}\0{\"name\":");
        json_str(out, r.name);
        out.extend_from_slice(b"}\0");
        let now = logfunnel_protocol::now_ns() as u64;
        let _ = write!(
            out,
            "{{\"timeUnixNano\":\"{}\",\"observedTimeUnixNano\":\"{now}\",\"severityNumber\":{},\"severityText\":",
            r.created_ns.max(0),
            severity_number(r.levelno)
        );
        json_str(out, &level_name(r.levelno));
        out.extend_from_slice(b",\"body\":{\"stringValue\":");
        json_str(out, &String::from_utf8_lossy(&body));
        self.scratch = body;
        out.extend_from_slice(b"},\"attributes\":[");
        if let Some(p) = r.pathname {
            otlp_attr(out, "code.filepath", &ValueRef::Str(p));
        }
        if r.lineno > 0 {
            otlp_attr(out, "code.lineno", &ValueRef::I64(r.lineno.into()));
        }
        if let Some(f) = r.func_name {
            otlp_attr(out, "code.function", &ValueRef::Str(f));
        }
        otlp_attr(out, "thread.id", &ValueRef::U64(r.thread));
        if let Some(t) = r.thread_name {
            otlp_attr(out, "thread.name", &ValueRef::Str(t));
        }
        if let Some(e) = r.exc_text {
            otlp_attr(out, "exception.stacktrace", &ValueRef::Str(e));
        }
        for (i, (k, v)) in r.extra.iter().enumerate() {
            if !r.extra[..i].iter().any(|(p, _)| p == k) {
                otlp_attr(out, k, v);
            }
        }
        out.extend_from_slice(b"]}");
        Ok(())
    }
}

/// The ExportLogsServiceRequest for `records` (each from [`Encoder::otlp`]).
pub(crate) fn otlp_request(records: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(records.iter().map(|r| r.len()).sum::<usize>() + 64);
    out.extend_from_slice(b"{\"resourceLogs\":[");
    let mut last: Option<(&[u8], &[u8])> = None;
    for rec in records {
        let mut parts = rec.splitn(3, |&b| b == 0);
        let (Some(res), Some(scope), Some(log)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        match last {
            Some((r, s)) if r == res && s == scope => out.push(b','),
            Some((r, _)) if r == res => {
                out.extend_from_slice(b"]},{\"scope\":");
                out.extend_from_slice(scope);
                out.extend_from_slice(b",\"logRecords\":[");
            }
            prev => {
                if prev.is_some() {
                    out.extend_from_slice(b"]}]},");
                }
                out.extend_from_slice(b"{\"resource\":");
                out.extend_from_slice(res);
                out.extend_from_slice(b",\"scopeLogs\":[{\"scope\":");
                out.extend_from_slice(scope);
                out.extend_from_slice(b",\"logRecords\":[");
            }
        }
        out.extend_from_slice(log);
        last = Some((res, scope));
    }
    if last.is_some() {
        out.extend_from_slice(b"]}]}");
    }
    out.extend_from_slice(b"]}");
    out
}

/// The requests, made on the handler's HTTP thread.
struct HttpExchange {
    agent: ureq::Agent,
    endpoint: String,
    method: HttpMethod,
    format: HttpFormat,
    headers: Vec<(String, String)>,
    gzip: bool,
}

/// Loads the CAs to trust: `ca_file`, or the system's store.
pub(crate) fn root_certs(ca_file: Option<&std::path::Path>) -> std::io::Result<Vec<Vec<u8>>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
    let certs: Vec<Vec<u8>> = match ca_file {
        Some(path) => CertificateDer::pem_file_iter(path)
            .map_err(|e| bad(format!("tls_ca_file {}: {e}", path.display())))?
            .map(|c| c.map(|c| c.to_vec()).map_err(|e| bad(format!("tls_ca_file {}: {e}", path.display()))))
            .collect::<Result<_, _>>()?,
        None => rustls_native_certs::load_native_certs().certs.into_iter().map(|c| c.to_vec()).collect(),
    };
    if certs.is_empty() {
        return Err(bad(match ca_file {
            Some(p) => format!("tls_ca_file {}: no certificate in it", p.display()),
            None => "no trusted certificate in the system's store (set tls_ca_file)".into(),
        }));
    }
    Ok(certs)
}

impl HttpExchange {
    fn new(o: &HttpOptions) -> std::io::Result<HttpExchange> {
        let https = o.endpoint().starts_with("https://");
        let mut config = ureq::Agent::config_builder()
            // ureq has no timeouts unless they are set.
            .timeout_global(Some(o.timeout))
            .timeout_connect(Some(o.timeout))
            .http_status_as_error(false)
            // Python follows no redirect either: a 3xx is reported.
            .max_redirects(0)
            .user_agent(concat!("logfunnel/", env!("CARGO_PKG_VERSION")));
        if https {
            let certs = root_certs(o.tls_ca_file.as_deref())?
                .into_iter()
                .map(|der| ureq::tls::Certificate::from_der(&der).to_owned())
                .collect();
            config = config.tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::Specific(Arc::new(certs)))
                    .build(),
            );
        }
        let mut headers = o.headers.clone();
        if let (Some(u), Some(p)) = (&o.username, &o.password) {
            use base64::Engine as _;
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{}", p.expose()));
            headers.push(("Authorization".into(), format!("Basic {token}")));
        }
        if let Some(t) = &o.token {
            headers.push(("Authorization".into(), format!("Bearer {}", t.expose())));
        }
        Ok(HttpExchange {
            agent: config.build().into(),
            endpoint: o.endpoint(),
            method: o.method,
            format: o.format,
            headers,
            gzip: o.gzip,
        })
    }

    /// One request: `Ok` delivered, `Err((retry, why, retry_after))`.
    fn request(&mut self, query: Option<&[u8]>, body: Option<(&str, Vec<u8>)>) -> Result<(), Failure> {
        let url;
        let target = match query {
            Some(q) => {
                let sep = if self.endpoint.contains('?') { '&' } else { '?' };
                // The query is ASCII (percent-encoded).
                url = format!("{}{sep}{}", self.endpoint, String::from_utf8_lossy(q));
                &url
            }
            None => &self.endpoint,
        };
        let result = match body {
            None => {
                let mut req = self.agent.get(target);
                for (k, v) in &self.headers {
                    req = req.header(k.as_str(), v.as_str());
                }
                req.call()
            }
            Some((content_type, bytes)) => {
                let mut req = self.agent.post(target).header("Content-Type", content_type);
                for (k, v) in &self.headers {
                    req = req.header(k.as_str(), v.as_str());
                }
                let bytes = if self.gzip {
                    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                    let _ = enc.write_all(&bytes);
                    req = req.header("Content-Encoding", "gzip");
                    enc.finish().unwrap_or_default()
                } else {
                    bytes
                };
                req.send(&bytes[..])
            }
        };
        let mut resp = match result {
            Ok(r) => r,
            Err(ureq::Error::BadUri(e)) => return Err(Failure::Reject(format!("bad URL: {e}"))),
            Err(ureq::Error::Timeout(t)) => {
                return Err(Failure::Retry(format!("no answer in time ({t})"), None));
            }
            Err(e) => return Err(Failure::Retry(e.to_string(), None)),
        };
        let status = resp.status();
        let code = status.as_u16();
        if status.is_success() {
            // Read the answer so the connection can be used again.
            let _ = resp.body_mut().with_config().limit(1 << 20).read_to_vec();
            return Ok(());
        }
        let retry_after =
            resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(parse_retry_after);
        let text = resp.body_mut().with_config().limit(64 << 10).read_to_string().unwrap_or_default();
        let first = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
        let first: String = first.chars().take(200).collect();
        let reason = status.canonical_reason().unwrap_or("");
        let why = if first.is_empty() {
            format!("HTTP {code} {reason}")
        } else {
            format!("HTTP {code} {reason}: {first}")
        };
        if code == 429 || code == 408 || status.is_server_error() {
            Err(Failure::Retry(why, retry_after))
        } else {
            Err(Failure::Reject(why))
        }
    }
}

enum Failure {
    Retry(String, Option<Duration>),
    Reject(String),
}

/// Retry-After: seconds, or an HTTP date.
fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let secs = when.timestamp() - chrono::Utc::now().timestamp();
    Some(Duration::from_secs(secs.max(0) as u64))
}

impl Exchange for HttpExchange {
    fn exchange(&mut self, records: &[&[u8]]) -> Outcome {
        let mut outcome = Outcome::default();
        match self.format {
            HttpFormat::Python => {
                for rec in records {
                    let r = match self.method {
                        HttpMethod::Get => self.request(Some(rec), None),
                        HttpMethod::Post => {
                            self.request(None, Some(("application/x-www-form-urlencoded", rec.to_vec())))
                        }
                    };
                    match r {
                        Ok(()) => outcome.settled.push(Settled::Delivered),
                        Err(Failure::Reject(why)) => outcome.settled.push(Settled::Rejected(why)),
                        Err(Failure::Retry(why, after)) => {
                            outcome.retry = Some((why, after));
                            break;
                        }
                    }
                }
            }
            HttpFormat::JsonLines | HttpFormat::OtlpJson => {
                let (ct, body) = if self.format == HttpFormat::JsonLines {
                    ("application/x-ndjson", records.concat())
                } else {
                    ("application/json", otlp_request(records))
                };
                match self.request(None, Some((ct, body))) {
                    Ok(()) => outcome.settled = vec![Settled::Delivered; records.len()],
                    Err(Failure::Reject(why)) => outcome.reject = Some(why),
                    Err(Failure::Retry(why, after)) => outcome.retry = Some((why, after)),
                }
            }
        }
        outcome
    }
}

impl Encode for Encoder {
    fn encode(&mut self, ctx: &RecordContext<'_>, out: &mut Vec<u8>) -> Result<(), HandlerError> {
        Encoder::encode(self, ctx, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn options(extra: &str) -> Result<HttpOptions, Vec<String>> {
        let text = format!("[handlers.h]\nclass = \"logging.handlers.HTTPHandler\"\n{extra}\n");
        match Config::from_toml_str(&text, "test") {
            Ok(c) => Ok(c.handlers["h"].options::<HttpOptions>().unwrap().clone()),
            Err(e) => Err(e.issues.iter().map(ToString::to_string).collect()),
        }
    }

    #[test]
    fn keys_read_as_python_writes_them() {
        let o = options("host = \"127.0.0.1:8080\"\nurl = \"/log\"\nmethod = \"post\"").unwrap();
        assert_eq!(
            (o.method, o.format, o.endpoint().as_str()),
            (HttpMethod::Post, HttpFormat::Python, "http://127.0.0.1:8080/log")
        );
        let o = options("host = \"h\"\nurl = \"log\"\nsecure = true").unwrap();
        assert_eq!((o.method, o.endpoint().as_str()), (HttpMethod::Get, "https://h/log"));
        let o = options("url = \"http://c:4318/v1/logs\"\nformat = \"otlp_json\"\ncompression = \"gzip\"")
            .unwrap();
        assert_eq!(
            (o.method, o.gzip, o.endpoint().as_str()),
            (HttpMethod::Post, true, "http://c:4318/v1/logs")
        );
    }

    #[test]
    fn bad_values_name_their_key_and_passwords_stay_out_of_the_file() {
        let e = options("host = \"h\"\nurl = \"/\"\nmethod = \"PUT\"\ncredentials = [\"u\", \"hunter2\"]")
            .unwrap_err();
        assert!(e.iter().any(|m| m.starts_with("handlers.h.method: expected \"GET\" or \"POST\"")), "{e:?}");
        assert!(
            e.iter()
                .any(|m| m.starts_with("handlers.h.credentials: a password is not read")
                    && !m.contains("hunter2")),
            "{e:?}"
        );
        let e = options("host = \"h\"").unwrap_err();
        assert!(e[0].starts_with("handlers.h.url: missing"), "{e:?}");
        let e = options("url = \"http://h/\"\nformat = \"json_lines\"\nmethod = \"GET\"").unwrap_err();
        assert!(e[0].contains("sent with POST"), "{e:?}");
        let e = options("url = \"http://h/\"\nheaders = { \"X-A\" = \"a\\r\\nInjected: 1\" }").unwrap_err();
        assert!(e[0].starts_with("handlers.h.headers.X-A: expected a string without CR"), "{e:?}");
    }

    #[test]
    fn quote_plus_is_pythons() {
        let mut out = Vec::new();
        quote_plus(&mut out, "café %s/?&=+~_.-'(z',)");
        assert_eq!(String::from_utf8(out).unwrap(), "caf%C3%A9+%25s%2F%3F%26%3D%2B~_.-%27%28z%27%2C%29");
    }

    #[test]
    fn severities_follow_opentelemetrys_ranges() {
        let got: Vec<u32> =
            [5, 10, 11, 15, 20, 25, 30, 40, 50, 51, 60].iter().map(|&l| severity_number(l)).collect();
        assert_eq!(got, [1, 5, 6, 8, 9, 12, 13, 17, 21, 22, 24]);
    }

    #[test]
    fn otlp_requests_group_records_by_resource_and_scope() {
        let recs: Vec<&[u8]> = vec![b"R1\0S1\0L1", b"R1\0S1\0L2", b"R1\0S2\0L3", b"R2\0S2\0L4"];
        let body = String::from_utf8(otlp_request(&recs)).unwrap();
        assert_eq!(
            body,
            "{\"resourceLogs\":[{\"resource\":R1,\"scopeLogs\":[{\"scope\":S1,\"logRecords\":[L1,L2]},{\"scope\":S2,\"logRecords\":[L3]}]},{\"resource\":R2,\"scopeLogs\":[{\"scope\":S2,\"logRecords\":[L4]}]}]}"
        );
        assert_eq!(otlp_request(&[]), b"{\"resourceLogs\":[]}");
    }

    #[test]
    fn retry_after_is_seconds_or_a_date() {
        assert_eq!(parse_retry_after(" 120 "), Some(Duration::from_secs(120)));
        let soon = chrono::Utc::now() + chrono::Duration::seconds(30);
        let got = parse_retry_after(&soon.format("%a, %d %b %Y %H:%M:%S GMT").to_string()).unwrap();
        assert!((28..=30).contains(&got.as_secs()), "{got:?}");
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon"), None);
    }
}
