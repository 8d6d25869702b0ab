//! HTTPHandler against a real HTTP server (python3's http.server, started
//! by the tests, recording every request): Python's form fields byte for
//! byte against python3's own HTTPHandler, JSON lines over HTTPS, OTLP bodies parsed by
//! the opentelemetry-proto package, retries on 503, no retry on 400, and a
//! server that hangs while a FileHandler beside it keeps pace.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::daemons::Server;
use crate::python_exact::to_record;
use crate::util::*;

const COLLECTOR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/http_collector.py");

/// The recording server, stopped when dropped.
pub struct Collector {
    _server: Server,
    pub port: u16,
    out: PathBuf,
}

impl Collector {
    pub fn start(dir: &Dir, name: &str, args: &[&str]) -> Collector {
        let out = dir.path(&format!("{name}.jsonl"));
        let (server, line) = Server::start(
            Command::new(python3()).args([COLLECTOR, "serve", out.to_str().unwrap()]).args(args),
            "start the HTTP collector",
        );
        let port = line.trim().parse().unwrap_or_else(|_| panic!("collector said {line:?}"));
        Collector { _server: server, port, out }
    }

    pub fn requests(&self) -> Vec<Value> {
        json_lines(&self.out, "collector line")
    }

    /// Waits for `n` requests answered 200 (30 s at most) and returns all.
    pub fn wait_ok(&self, n: usize) -> Vec<Value> {
        let ok = |all: &Vec<Value>| all.iter().filter(|r| r["status"] == 200).count() >= n;
        poll(Duration::from_secs(30), Duration::from_millis(20), || self.requests(), ok)
    }
}

pub fn body(r: &Value) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(r["body_b64"].as_str().unwrap()).unwrap()
}

pub fn header<'a>(r: &'a Value, name: &str) -> Option<&'a str> {
    r["headers"].as_array()?.iter().find(|h| h[0].as_str().unwrap().eq_ignore_ascii_case(name))?[1].as_str()
}

/// Random records as the oracle reads them: text that urlencoding must
/// get right (spaces, `&=+%`, non-ASCII, newlines), extras of every type,
/// records without caller, thread name or traceback.
pub fn random_records(seed: u64, n: usize) -> Vec<Value> {
    let mut rng = Rng(seed | 1);
    let pieces = ["a b", "&x=1", "100%", "+", "café", "日本", "\n", "~_.-", "'q'", "(z,)", "", "✓ ok", "/?#"];
    (0..n)
        .map(|i| {
            let msg: String = (0..1 + rng.next() % 5).map(|_| *rng.pick(&pieces)).collect::<String>()
                + &format!(" #{i}");
            let mut extra = serde_json::Map::new();
            for _ in 0..rng.next() % 4 {
                let key = *rng.pick(&["user", "order_id", "ratio", "ok", "tag", "name", "message"]);
                let v = match key {
                    "order_id" => json!(rng.next() % 100_000),
                    "ratio" => json!((rng.next() % 1000) as f64 / 7.0),
                    "ok" => json!(rng.next().is_multiple_of(2)),
                    _ => json!(rng.pick(&pieces)),
                };
                extra.insert(key.to_owned(), v);
            }
            // Python refuses extras named like the record's attributes.
            extra.remove("name");
            extra.remove("message");
            let levelno = [10, 20, 30, 40, 50, 25][(rng.next() % 6) as usize];
            let some = |rng: &mut Rng, v: &str| if rng.next().is_multiple_of(4) { Value::Null } else { json!(v) };
            json!({
                "created_ns": 1_700_000_000_000_000_000i64 + (rng.next() % 1_000_000_000_000) as i64,
                "name": rng.pick(&["app", "app.db", "web.request", "root"]),
                "levelno": levelno,
                "message": msg,
                "pathname": some(&mut rng, "/srv/app/jobs/wörker.py"),
                "lineno": rng.next() % 500,
                "funcName": some(&mut rng, "handle"),
                "process": 1000 + rng.next() % 60000,
                "processName": rng.pick(&["MainProcess", "Worker-1"]),
                "thread": rng.next() % (1 << 47),
                "threadName": some(&mut rng, "MainThread"),
                "exc_text": if rng.next().is_multiple_of(5) { json!("Traceback (most recent call last):\n  boom") } else { Value::Null },
                "extra": extra,
            })
        })
        .collect()
}

pub fn send(socket: &Path, records: &[Value]) {
    let records = records.iter().map(to_record).collect();
    logfunnel_client::send_records(socket, records, Duration::from_secs(20)).expect("send records");
}

fn hub_with(dir: &Dir, handler: &str) -> HubProc {
    let config = format!("{handler}\n[root]\nlevel = \"NOTSET\"\nhandlers = [\"web\"]\n");
    HubProc::start(dir, &dir.write("hub.toml", &config))
}

/// What python3's HTTPHandler sends for the same records.
fn python_requests(
    dir: &Dir,
    records: &[Value],
    method: &str,
    hub_fields: &[String],
    creds: bool,
) -> Vec<Value> {
    let py = Collector::start(dir, "python", &[]);
    let spec = json!({
        "host": format!("127.0.0.1:{}", py.port), "url": "/log?x=1", "method": method,
        "credentials": if creds { json!(["user", "päss"]) } else { Value::Null },
        "records": records, "hub_fields": hub_fields,
    });
    let spec_path = dir.write("spec.json", &spec.to_string());
    let out =
        Command::new(python3()).args([COLLECTOR, "send", spec_path.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "python's HTTPHandler failed: {}", String::from_utf8_lossy(&out.stderr));
    py.wait_ok(records.len())
}

/// The urlencoded fields of a request: its body (POST) or its query (GET).
fn fields(r: &Value) -> String {
    match r["method"].as_str().unwrap() {
        "POST" => String::from_utf8(body(r)).unwrap(),
        _ => r["path"].as_str().unwrap().split_once('?').unwrap().1.to_owned(),
    }
}

fn form_fields_match_python(method: &str, seed: u64) {
    let d = Dir::new();
    let hub_side = Collector::start(&d, "hub", &[]);
    let pw = d.write("pw", "päss\n");
    std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let hub = hub_with(
        &d,
        &format!(
            "[handlers.web]\nclass = \"logging.handlers.HTTPHandler\"\nhost = \"127.0.0.1:{}\"\nurl = \"/log?x=1\"\nmethod = \"{method}\"\ncredentials = [\"user\"]\npassword_file = {pw:?}\nescape_control_chars = false\n",
            hub_side.port
        ),
    );
    let records = random_records(seed, 60);
    send(&hub.socket, &records);
    let got = hub_side.wait_ok(records.len());
    hub.stop();
    assert_eq!(got.len(), records.len(), "one request per record: {got:#?}");
    let ours: Vec<String> = got.iter().map(fields).collect();
    let theirs = python_requests(&d, &records, method, &ours, true);
    assert_eq!(theirs.len(), records.len());
    for (i, (a, b)) in got.iter().zip(&theirs).enumerate() {
        // relativeCreated aside (it counts from each process's start, and
        // the oracle was given the hub's), the fields are byte for byte
        // python3's.
        assert_eq!(fields(a), fields(b), "record {i}: {}", records[i]);
        assert_eq!(a["method"], b["method"]);
        assert_eq!(
            a["path"].as_str().unwrap().split('?').next(),
            b["path"].as_str().unwrap().split('?').next()
        );
        for h in ["Content-Type", "Authorization"] {
            assert_eq!(header(a, h), header(b, h), "record {i}: header {h}");
        }
    }
    assert_eq!(header(&got[0], "Authorization"), Some("Basic dXNlcjpww6Rzcw=="));
}

#[test]
fn http_get_form_fields_match_pythons_http_handler() {
    form_fields_match_python("GET", 0x5eed_0001);
}

#[test]
fn http_post_form_fields_match_pythons_http_handler() {
    form_fields_match_python("POST", 0x5eed_0002);
}

/// The opentelemetry-proto package, or a failure saying how to get it.
fn need_otlp_parser() {
    let ok = Command::new(python3())
        .args([
            "-c",
            "import opentelemetry.proto.collector.logs.v1.logs_service_pb2, google.protobuf.json_format",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "the OTLP tests parse bodies with opentelemetry-proto: python3 -m pip install opentelemetry-proto (scripts/test installs it)"
    );
}

#[test]
fn http_json_lines_and_otlp_reach_collectors_and_parse() {
    need_otlp_parser();
    let d = Dir::new();
    let pki = crate::daemons::Pki::new(&d.path(""));
    let lines =
        Collector::start(&d, "lines", &["--tls", pki.cert.to_str().unwrap(), pki.key.to_str().unwrap()]);
    let otlp = Collector::start(&d, "otlp", &[]);
    let token = d.write("token", "t0k3n\n");
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let config = format!(
        r#"
[handlers.lines]
class = "HTTPHandler"
host = "localhost:{l}"
url = "/ingest"
secure = true
tls_ca_file = {ca:?}
format = "json_lines"
fields = ["name", "levelname", "message", "process"]
escape_control_chars = false
headers = {{ "X-Tenant" = "blue" }}
[handlers.otlp]
class = "HTTPHandler"
url = "http://127.0.0.1:{o}/v1/logs"
format = "otlp_json"
compression = "gzip"
token_file = {token:?}
resource_attributes = {{ "deployment.environment" = "test" }}
escape_control_chars = false
batch_interval = 0.2
[root]
level = "NOTSET"
handlers = ["lines", "otlp"]
"#,
        l = lines.port,
        o = otlp.port,
        ca = pki.ca
    );
    let hub = HubProc::start(&d, &d.write("hub.toml", &config));
    let records = random_records(7, 300);
    send(&hub.socket, &records);
    let s = stats_when(&hub.socket, |s| {
        handler(s, "lines")["emitted"] == 300 && handler(s, "otlp")["emitted"] == 300
    });
    hub.stop();
    assert_eq!(handler(&s, "lines")["emitted"], 300, "{s}");
    assert_eq!(handler(&s, "otlp")["emitted"], 300, "{s}");

    // JSON lines: one object per record, in order, the fields picked.
    let reqs = lines.requests();
    assert!(reqs.len() < 300, "records are batched: {} requests", reqs.len());
    let mut objects = Vec::new();
    for r in &reqs {
        assert_eq!(header(r, "X-Tenant"), Some("blue"));
        assert_eq!(header(r, "Content-Type"), Some("application/x-ndjson"));
        for line in String::from_utf8(body(r)).unwrap().lines() {
            objects.push(serde_json::from_str::<Value>(line).unwrap());
        }
    }
    assert_eq!(objects.len(), 300);
    for (o, r) in objects.iter().zip(&records) {
        assert_eq!(o["name"], r["name"]);
        assert_eq!(o["message"], r["message"]);
        assert_eq!(o["process"], r["process"]);
        for (k, v) in r["extra"].as_object().unwrap() {
            assert!(same(&o[k], v), "extra {k}: {} vs {v}", o[k]);
        }
    }

    // OTLP: parsed by opentelemetry-proto's own JSON parser.
    let reqs = otlp.requests();
    let mut logs = Vec::new();
    for r in &reqs {
        assert_eq!(r["gzip"], true);
        assert_eq!(header(r, "Authorization"), Some("Bearer t0k3n"));
        assert!(r["otlp_error"].is_null(), "opentelemetry-proto refused the body: {r}");
        for rl in r["otlp"]["resourceLogs"].as_array().unwrap() {
            let res: Vec<(String, Value)> = rl["resource"]["attributes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| (a["key"].as_str().unwrap().to_owned(), a["value"].clone()))
                .collect();
            for sl in rl["scopeLogs"].as_array().unwrap() {
                for lr in sl["logRecords"].as_array().unwrap() {
                    logs.push((res.clone(), sl["scope"]["name"].clone(), lr.clone()));
                }
            }
        }
    }
    assert_eq!(logs.len(), 300);
    let severity = |l: u64| match l {
        10 => (5, "DEBUG"),
        20 => (9, "INFO"),
        25 => (12, "Level 25"),
        30 => (13, "WARNING"),
        40 => (17, "ERROR"),
        _ => (21, "CRITICAL"),
    };
    for ((res, scope, lr), r) in logs.iter().zip(&records) {
        let attr =
            |list: &[(String, Value)], k: &str| list.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(attr(res, "service.name"), Some(json!({"stringValue": r["processName"]})));
        assert_eq!(attr(res, "process.pid"), Some(json!({"intValue": r["process"].to_string()})));
        assert_eq!(attr(res, "deployment.environment"), Some(json!({"stringValue": "test"})));
        assert_eq!(scope, &r["name"]);
        assert_eq!(lr["timeUnixNano"], r["created_ns"].to_string());
        let (num, text) = severity(r["levelno"].as_u64().unwrap());
        assert_eq!(lr["severityNumber"].as_str().map(str::to_owned), Some(severity_name(num)), "{lr}");
        assert_eq!(lr["severityText"], text);
        assert_eq!(lr["body"]["stringValue"], r["message"]);
        let attrs: Vec<(String, Value)> = lr["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| (a["key"].as_str().unwrap().to_owned(), a["value"].clone()))
            .collect();
        for (k, v) in r["extra"].as_object().unwrap() {
            let want = match v {
                Value::Bool(b) => json!({"boolValue": b}),
                Value::Number(n) if n.is_u64() => json!({"intValue": n.to_string()}),
                Value::Number(n) => json!({"doubleValue": n.as_f64().unwrap()}),
                other => json!({"stringValue": other}),
            };
            let got = attr(&attrs, k).unwrap_or_else(|| panic!("no attribute {k} in {lr}"));
            assert!(same(&got, &want), "extra {k} of {r}: {got}");
        }
        if let Some(exc) = r["exc_text"].as_str() {
            assert_eq!(attr(&attrs, "exception.stacktrace"), Some(json!({"stringValue": exc})));
        }
    }
}

/// Equal, floats within rounding (serde_json's parser may be one unit in
/// the last place off).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            (x - y).abs() <= 1e-12 * x.abs().max(1.0)
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// The name protobuf's JSON printer gives a SeverityNumber.
fn severity_name(n: u64) -> String {
    let names = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];
    let (group, step) = (((n - 1) / 4) as usize, (n - 1) % 4);
    if step == 0 {
        format!("SEVERITY_NUMBER_{}", names[group])
    } else {
        format!("SEVERITY_NUMBER_{}{}", names[group], step + 1)
    }
}

#[test]
fn http_503_is_retried_after_its_retry_after_and_400_is_counted_not_retried() {
    let d = Dir::new();
    let flaky = Collector::start(&d, "flaky", &["--plan", "503,200", "--retry-after", "1"]);
    let refusing = Collector::start(&d, "refusing", &["--plan", "400,400,400,400,400"]);
    let config = format!(
        r#"
[handlers.flaky]
class = "HTTPHandler"
url = "http://127.0.0.1:{f}/ingest"
format = "json_lines"
retry_initial = 0.05
[handlers.refusing]
class = "HTTPHandler"
host = "127.0.0.1:{r}"
url = "/log"
method = "POST"
retry_initial = 0.05
[root]
level = "NOTSET"
handlers = ["flaky", "refusing"]
"#,
        f = flaky.port,
        r = refusing.port
    );
    let hub = HubProc::start(&d, &d.write("hub.toml", &config));
    let records = random_records(11, 5);
    let start = Instant::now();
    send(&hub.socket, &records);
    let s = stats_when(&hub.socket, |s| {
        handler(s, "flaky")["emitted"] == 5 && handler(s, "refusing")["failed"] == 5
    });
    let took = start.elapsed();
    hub.stop();
    let flaky_h = handler(&s, "flaky");
    assert_eq!((flaky_h["emitted"].as_u64(), flaky_h["failed"].as_u64()), (Some(5), Some(0)), "{s}");
    assert_eq!(flaky_h["retries"], 1, "{s}");
    let reqs = flaky.requests();
    assert_eq!(reqs.iter().map(|r| r["status"].as_u64().unwrap()).collect::<Vec<_>>(), [503, 200]);
    assert_eq!(body(&reqs[0]), body(&reqs[1]), "the same batch, sent again");
    assert!(took >= Duration::from_millis(900), "Retry-After: 1 was not honoured ({took:?})");
    let refusing_h = handler(&s, "refusing");
    assert_eq!((refusing_h["emitted"].as_u64(), refusing_h["failed"].as_u64()), (Some(0), Some(5)), "{s}");
    assert_eq!(refusing_h["retries"], 0, "a 400 is not retried: {s}");
    assert_eq!(refusing.requests().len(), 5, "one request per record, none again");
    let why = refusing_h["last_error"].as_str().unwrap_or_default();
    assert!(why.contains("HTTP 400 Bad Request: status 400 from the test server"), "{why}");
}

#[test]
fn http_a_hanging_server_times_out_is_retried_and_a_file_handler_keeps_pace() {
    let d = Dir::new();
    let hanging = Collector::start(&d, "hanging", &["--hang", "20"]);
    let out = d.path("out.log");
    let web = format!(
        r#"[handlers.web]
class = "HTTPHandler"
url = "http://127.0.0.1:{p}/ingest"
format = "json_lines"
timeout = 1
retry_initial = 0.1"#,
        p = hanging.port
    );
    let config = beside_a_file(&d, "NOTSET", &["web"], &web);
    let hub = HubProc::start(&d, &d.write("hub.toml", &config));
    // A worker logging steadily while the first request hangs.
    let w = worker(&hub.socket, 0, 3000, &["--rate", "1000", "--message-bytes", "40"]);
    let longest_still = longest_still(&out, Duration::from_millis(2500), Duration::from_millis(300));
    finish_worker(w);
    let s = stats_when(&hub.socket, |s| handler(s, "web")["emitted"] == 3000);
    hub.stop();
    let web = handler(&s, "web");
    assert_eq!(web["emitted"], 3000, "{s}");
    assert!(web["retries"].as_u64().unwrap() >= 1, "the hung request timed out and was retried: {s}");
    assert!(web["last_error"].as_str().unwrap_or_default().contains("no answer in time"), "{s}");
    let (seqs, _) = sequences(&out);
    assert_complete(&seqs, 0, 0, 3000);
    assert!(longest_still < Duration::from_millis(500), "the file handler stood still {longest_still:?}");
}
