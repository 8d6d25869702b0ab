//! `[hub] metrics`: the real hub's endpoint, scraped over HTTP and parsed by
//! the `prometheus-client` Python package's own parser; every value must
//! equal what `logfunnel stats` says, for every counter the hub exports.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;

use logfunnel_hub::metrics::{Kind, PREFIXES};
use serde_json::Value;

use crate::util::*;

/// Fetches `http://ADDR/metrics` with urllib and parses it with
/// `prometheus_client.parser.text_string_to_metric_families`; prints the
/// families as JSON.
const SCRAPE: &str = r#"
import json, sys, urllib.request
try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    sys.exit("the prometheus-client Python package is missing: pip install prometheus-client (scripts/test installs it)")
with urllib.request.urlopen("http://%s/metrics" % sys.argv[1], timeout=10) as r:
    ctype = r.headers["Content-Type"]
    text = r.read().decode("utf-8")
families = []
for f in text_string_to_metric_families(text):
    families.append({"name": f.name, "type": f.type, "help": f.documentation,
                     "samples": [{"name": s.name, "labels": s.labels, "value": s.value} for s in f.samples]})
print(json.dumps({"content_type": ctype, "families": families}))
"#;

fn scrape(addr: &str) -> Value {
    let out = Command::new(python3()).args(["-c", SCRAPE, addr]).output().expect("run python3");
    assert!(out.status.success(), "scrape failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON from the scraper")
}

/// The `HOST:PORT` the hub printed for its metrics endpoint.
fn metrics_addr(hub: &HubProc) -> String {
    // The line follows the socket's first accept by a moment.
    wait_until(std::time::Duration::from_secs(10), || hub.stderr().contains("metrics at http://"));
    let err = hub.stderr();
    let at = err.find("metrics at http://").unwrap_or_else(|| panic!("no metrics address in: {err}"));
    err[at + "metrics at http://".len()..].split('/').next().unwrap().to_owned()
}

/// The value of the sample of family `family` (counters: `_total`) whose
/// labels include `labels`.
fn sample(families: &Value, family: &str, labels: &[(&str, String)]) -> Option<f64> {
    // The parser names a counter's family without `_total`, its sample with.
    let fam = families
        .as_array()?
        .iter()
        .find(|f| f["samples"].as_array().is_some_and(|s| s.iter().any(|s| s["name"] == family)))?;
    fam["samples"]
        .as_array()?
        .iter()
        .find(|s| {
            s["name"] == family && labels.iter().all(|(k, v)| s["labels"][*k].as_str() == Some(v.as_str()))
        })
        .and_then(|s| s["value"].as_f64())
}

#[test]
fn the_metrics_endpoint_parses_with_prometheus_own_parser_and_matches_stats() {
    let dir = Dir::new();
    let cfg = config_with(
        &dir,
        "metrics = \"127.0.0.1:0\"",
        &["null"],
        "[handlers.null]\nclass = \"NullHandler\"\noverflow = \"drop_newest\"\n",
    );
    let hub = HubProc::start(&dir, &cfg);
    let addr = metrics_addr(&hub);
    for i in 0..3 {
        finish_worker(worker(&hub.socket, i, 1000 + u64::from(i), &[]));
    }
    let stats = stats_when(&hub.socket, |v| handler(v, "file")["emitted"] == 3003);
    let scraped = scrape(&addr);
    assert_eq!(scraped["content_type"], "text/plain; version=0.0.4; charset=utf-8");
    let families = &scraped["families"];
    let types: Vec<(&str, &str)> = families
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["name"].as_str().unwrap(), f["type"].as_str().unwrap()))
        .collect();
    assert!(
        families.as_array().unwrap().iter().all(|f| !f["help"].as_str().unwrap_or("").is_empty()),
        "{types:?}"
    );
    // Every counter and gauge of every entity, against `stats --json` (its
    // counters do not move: nothing logs meanwhile).
    let [(hub_prefix, hub_table), (handler_prefix, handler_table), (client_prefix, client_table)] = PREFIXES;
    let mut checked = 0;
    let mut check = |object: &Value,
                     prefix: &str,
                     table: &[logfunnel_hub::metrics::Metric],
                     labels: &[(&str, String)]| {
        for m in table.iter().filter(|m| matches!(m.kind, Kind::Counter | Kind::Gauge)) {
            let family = m.family(prefix).unwrap();
            let want = match &object[m.field] {
                Value::Bool(b) => f64::from(u8::from(*b)),
                v => v.as_f64().unwrap_or_else(|| panic!("{} is not a number: {v}", m.field)) * m.scale,
            };
            let got =
                sample(families, &family, labels).unwrap_or_else(|| panic!("no sample {family} {labels:?}"));
            let kind = if m.kind == Kind::Counter { "counter" } else { "gauge" };
            assert!(types.iter().any(|(_, t)| *t == kind));
            if m.field == "open_connections" && prefix == hub_prefix {
                // `stats` sees itself open; the scrape (HTTP) is no client.
                assert_eq!(got, want - 1.0, "{family}");
            } else if m.field == "uptime_ms" {
                assert!(got >= want && got < want + 60.0, "{family}: {got} vs {want}");
            } else {
                assert_eq!(got, want, "{family} {labels:?}");
            }
            checked += 1;
        }
    };
    check(&stats, hub_prefix, hub_table, &[]);
    for h in stats["handlers"].as_array().unwrap() {
        let labels = [
            ("handler", h["name"].as_str().unwrap().to_owned()),
            ("class", h["class"].as_str().unwrap().to_owned()),
        ];
        check(h, handler_prefix, handler_table, &labels);
    }
    for c in stats["clients"].as_array().unwrap().iter().filter(|c| c["open"] == false) {
        let labels = [("conn", c["id"].to_string()), ("pid", c["pid"].to_string())];
        check(c, client_prefix, client_table, &labels);
    }
    assert!(checked > 40, "{checked} samples checked");
    let received =
        sample(families, "logfunnel_handler_records_received_total", &[("handler", "file".into())]);
    assert_eq!(received, Some(3003.0));

    // Not a metrics path, not a GET: refused with the HTTP status that says so.
    for (request, status) in [
        ("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", "404"),
        ("POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", "405"),
        ("HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n", "200"),
    ] {
        let mut conn = TcpStream::connect(&addr).unwrap();
        conn.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with(&format!("HTTP/1.1 {status}")), "{request:?}: {answer}");
    }
    hub.stop();
}

#[test]
fn a_bad_or_busy_metrics_address_is_a_clear_error() {
    let dir = Dir::new();
    let bad = config_with(&dir, "metrics = \"localhost:notaport\"", &[], "");
    let out = run(&["check-config", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("hub.metrics: expected HOST:PORT (e.g. \"127.0.0.1:9108\")"), "{err}");
    // A port another program holds: the hub does not start, and says why.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let cfg = config_with(&dir, &format!("metrics = \"{}\"", busy.local_addr().unwrap()), &[], "");
    let out = run(&["hub", "--config", cfg.to_str().unwrap(), "--socket", dir.socket().to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("metrics endpoint {}:", busy.local_addr().unwrap())), "{err}");
    assert!(!dir.socket().exists(), "the socket is not left behind");
}
