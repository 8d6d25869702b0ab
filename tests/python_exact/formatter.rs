//! The formatter against CPython 3.11, record by record: the hub's
//! `Formatter` and tests/python/formatter_oracle.py (CPython's own
//! `logging.Formatter`, on records built by CPython's own `LogRecord`
//! constructor with its clock set to the record's time) format the same
//! records, and every output, error and refusal is compared. The bugs found
//! this way each have a test below; `random_formats_match_python` keeps
//! looking with a seeded generator of format strings, datefmts and records.

use std::io::Write as _;
use std::process::{Command, Stdio};

use logfunnel_hub::formatter::{FormatError, Formatter, PeerCred, RecordContext, Style};
use logfunnel_protocol::{Record, Value as RecordValue};
use serde_json::{Value, json};

use crate::util::python3;

const ORACLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/formatter_oracle.py");
const HOST: &str = "box-1";
const PROCESS_NAME: &str = "MainProcess";

/// A record and the hub start its `relativeCreated` counts from.
#[derive(Debug, Clone)]
pub(crate) struct Rec {
    pub(crate) record: Record,
    pub(crate) start_ns: i64,
}

impl Rec {
    pub(crate) fn new(created_ns: i64, start_ns: i64) -> Rec {
        let mut record = Record::new(20, "app.net", "hello");
        record.created_ns = created_ns;
        record.pathname = Some("/srv/app/net.py".into());
        record.lineno = 42;
        record.func_name = Some("connect".into());
        record.process = 4242;
        record.thread = 140_000_000_000_001;
        Rec { record, start_ns }
    }

    pub(crate) fn extra(mut self, key: &str, value: RecordValue) -> Rec {
        self.record.extra.push((key.into(), value));
        self
    }
}

/// A formatter: Python's `logging.Formatter(fmt, datefmt, style)`, or a
/// JSON formatter given as a dictConfig `'()'` entry (its class and keyword
/// arguments), which the hub reads through its configuration.
#[derive(Debug, Clone)]
pub(crate) enum Spec {
    Text { fmt: Option<String>, datefmt: Option<String>, style: Style },
    Json { class: String, kwargs: Value },
}

impl Spec {
    pub(crate) fn text(fmt: &str, datefmt: Option<&str>, style: Style) -> Spec {
        Spec::Text { fmt: Some(fmt.into()), datefmt: datefmt.map(Into::into), style }
    }
}

fn typed(v: &RecordValue) -> Value {
    match v {
        RecordValue::Str(s) => json!({"t": "s", "v": s}),
        RecordValue::I64(i) => json!({"t": "i", "v": i}),
        RecordValue::U64(u) => json!({"t": "i", "v": u}),
        RecordValue::F64(f) => json!({"t": "f", "v": format!("{:016x}", f.to_bits())}),
        RecordValue::Bool(b) => json!({"t": "b", "v": b}),
    }
}

/// The record as the oracle reads it: what the hub's formatter shows for
/// each attribute.
fn record_json(r: &Rec) -> Value {
    let rec = &r.record;
    json!({
        "created_ns": rec.created_ns, "start_ns": r.start_ns, "name": rec.name, "levelno": rec.levelno,
        "message": rec.message, "pathname": rec.pathname, "lineno": rec.lineno, "funcName": rec.func_name,
        "process": rec.process, "processName": rec.process_name.as_deref().unwrap_or(PROCESS_NAME),
        "thread": rec.thread,
        "threadName": rec.thread_name.clone().unwrap_or_else(|| format!("Thread-{}", rec.thread)),
        "exc_text": rec.exc_text, "hostname": HOST,
        "extra": rec.extra.iter().map(|(k, v)| json!([k, typed(v)])).collect::<Vec<_>>(),
    })
}

fn spec_json(spec: &Spec) -> Value {
    match spec {
        Spec::Text { fmt, datefmt, style } => {
            json!({"json": false, "fmt": fmt, "datefmt": datefmt, "style": style.as_str()})
        }
        Spec::Json { class, kwargs } => json!({"json": true, "class": class, "kwargs": kwargs}),
    }
}

/// A text shown in a failure message: long ones cut in the middle.
fn shown(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= 400 {
        return format!("{s:?}");
    }
    let head: String = chars[..200].iter().collect();
    let tail: String = chars[chars.len() - 100..].iter().collect();
    format!("{head:?} … ({} characters) … {tail:?}", chars.len())
}

fn unhex(s: &str) -> String {
    let bytes: Vec<u8> =
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// What python3 made of every (formatter, record) pair, formatter by
/// formatter: ('O', output), ('E', error) or ('C', constructor's error).
fn run_oracle(records: &[Rec], specs: &[Spec], utc: bool) -> Vec<(char, String)> {
    let version = Command::new(python3()).arg("--version").output().unwrap();
    let version = String::from_utf8_lossy(&version.stdout).into_owned();
    assert!(version.starts_with("Python 3.11"), "the formatter follows CPython 3.11; python3 is {version}");
    let input = json!({
        "utc": utc,
        "records": records.iter().map(record_json).collect::<Vec<_>>(),
        "formatters": specs.iter().map(spec_json).collect::<Vec<_>>(),
    });
    let mut child = Command::new(python3())
        .arg(ORACLE)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    child.stdin.take().unwrap().write_all(input.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the formatter oracle failed: {}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<(char, String)> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (kind, payload) = l.split_once(' ').unwrap_or((l, ""));
            (kind.chars().next().unwrap(), unhex(payload))
        })
        .collect();
    assert_eq!(lines.len(), records.len() * specs.len());
    lines
}

/// The hub's formatter for `spec`.
pub(crate) fn build(spec: &Spec, utc: bool) -> Result<Formatter, String> {
    match spec {
        Spec::Text { fmt, datefmt, style } => Formatter::new(fmt.as_deref(), datefmt.as_deref(), *style)
            .map(|f| f.with_utc(utc))
            .map_err(|e| e.to_string()),
        Spec::Json { class, kwargs } => {
            let mut entry = kwargs.as_object().cloned().unwrap_or_default();
            entry.insert("()".into(), json!(class));
            let config = json!({"version": 1, "formatters": {"f": entry}});
            match logfunnel_hub::Config::from_json_str(&config.to_string(), "spec.json") {
                // Python's bytes: DEL and C1 controls raw without ensure_ascii
                // (a handler's escape_control_chars escapes them by default).
                Ok(mut c) => {
                    Ok(c.formatters.remove("f").unwrap().formatter.with_utc(utc).with_control_escapes(false))
                }
                Err(e) => Err(e.to_string()),
            }
        }
    }
}

/// Formats every record with every spec in the hub and in python3; returns
/// one description per disagreement (empty when they agree) and how many
/// outputs were compared byte for byte.
pub(crate) fn compare(records: &[Rec], specs: &[Spec], utc: bool) -> (Vec<String>, usize) {
    let python = run_oracle(records, specs, utc);
    let mut mismatches = Vec::new();
    let mut identical = 0;
    for (si, spec) in specs.iter().enumerate() {
        let built = build(spec, utc);
        for (ri, rec) in records.iter().enumerate() {
            let (kind, py) = &python[si * records.len() + ri];
            let case =
                || format!("{spec:?} (utc {utc})\n  record {:?} (start_ns {})", rec.record, rec.start_ns);
            let mut f = match &built {
                Ok(f) => f.clone(),
                // Refusing a format is right when Python refuses it or fails
                // on every record with it.
                Err(e) => {
                    if *kind == 'O' {
                        mismatches.push(format!("{}\n  hub refused ({e}); python: {}", case(), shown(py)));
                    }
                    continue;
                }
            };
            let view = rec.record.view();
            let ctx = RecordContext {
                record: &view,
                peer: PeerCred::UNKNOWN,
                process_name: PROCESS_NAME,
                host_name: HOST,
                start_ns: rec.start_ns,
                python: false,
            };
            let mut out = Vec::new();
            match (f.format(&ctx, &mut out), kind) {
                (Ok(()), 'O') => {
                    if out == py.as_bytes() {
                        identical += 1;
                    } else {
                        mismatches.push(format!(
                            "{}\n  hub    {}\n  python {}",
                            case(),
                            shown(&String::from_utf8_lossy(&out)),
                            shown(py)
                        ));
                    }
                }
                (Err(e), 'E') => {
                    // Python's message where the hub reproduces it.
                    let same = match &e {
                        FormatError::MissingField(_) | FormatError::Conversion(_) => {
                            e.to_string() == *py || py.contains("surrogates not allowed")
                        }
                        _ => true,
                    };
                    if !same {
                        mismatches.push(format!(
                            "{}\n  hub error {e:?}\n  python error {}",
                            case(),
                            shown(py)
                        ));
                    }
                }
                (result, _) => mismatches.push(format!(
                    "{}\n  hub {result:?} {}\n  python {kind} {}",
                    case(),
                    shown(&String::from_utf8_lossy(&out)),
                    shown(py)
                )),
            }
        }
    }
    (mismatches, identical)
}

fn assert_matches_python(records: &[Rec], specs: &[Spec], utc: bool) -> usize {
    let (mismatches, identical) = compare(records, specs, utc);
    assert!(
        mismatches.is_empty(),
        "{} differences from python3:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    identical
}

const P: Style = Style::Percent;
const B: Style = Style::Brace;
const S: i64 = 1_000_000_000;
/// 2023-11-14 22:13:20 UTC.
const NOV_14: i64 = 1_700_000_000 * S;

/// `repr()` of a float whose shortest digits end on a tie: 1700000000.00390625
/// is exactly half way between 1700000000.0039062 and …63, both of which
/// read back as it; Python takes the even one.
#[test]
fn float_repr_ties_round_half_even_as_python() {
    // 662936471232937.25, 1690060720831323.25, -13804445983131.0625.
    let ties = [2_651_745_884_931_749.0 / 4.0, 6_760_242_883_325_293.0 / 4.0, -220_871_135_730_097.0 / 16.0];
    let records: Vec<Rec> = [3_906_250, 253_906_250, 999_996_093_750]
        .iter()
        .enumerate()
        .map(|(i, ns)| {
            Rec::new(NOV_14 + ns, NOV_14 - 1000 * S)
                .extra("f0", RecordValue::F64(ties[i]))
                .extra("f1", RecordValue::F64(ties[(i + 1) % 3]))
                .extra("f2", RecordValue::F64(ties[(i + 2) % 3] * 4.0))
        })
        .collect();
    let specs = [
        Spec::text("%(created)s|%(created)r|%(f0)s|%(f1)r|%(f2)s", None, P),
        Spec::text("{created}|{created!r}|{f0}|{f1:,}|{f2!r}|{f0:>30}", None, B),
    ];
    assert_eq!(assert_matches_python(&records, &specs, true), 6);
}

/// `relativeCreated` as 3.11 computes it, `(created - _startTime) * 1000`
/// in float seconds, not 3.13's integer nanoseconds.
#[test]
fn relative_created_is_python_3_11s() {
    let records: Vec<Rec> = (0..40i64)
        .map(|i| Rec::new(NOV_14 + i * 37_123_456_789 + i * i * 1_111, NOV_14 - 3_600 * S + i * 987_654_321))
        .collect();
    let specs = [
        Spec::text("%(relativeCreated)s|%(relativeCreated)r|%(relativeCreated).15g", None, P),
        Spec::text("{relativeCreated}|{relativeCreated:f}|{relativeCreated:.20e}", None, B),
    ];
    assert_eq!(assert_matches_python(&records, &specs, true), 80);
}

/// A datefmt with a NUL is never read by a format without asctime; with
/// one, every record fails (and the hub refuses it up front).
#[test]
fn a_nul_in_datefmt_matters_only_to_formats_that_show_the_time() {
    let records = [Rec::new(NOV_14 + 123_456_789, NOV_14)];
    let specs = [
        Spec::text("%(levelname)s %(message)s", Some("%H\0%M"), P),
        Spec::text("{message}", Some("\0"), B),
        Spec::text("%(asctime)s %(message)s", Some("%H\0%M"), P),
    ];
    assert_eq!(assert_matches_python(&records, &specs, true), 2);
    assert!(build(&specs[2], true).is_err());
}

/// A precision from the record (`{message:.{n}}`) far above the width limit
/// truncates a string as in Python; only numbers refuse it.
#[test]
fn a_huge_precision_from_the_record_truncates_a_string() {
    let records = [
        Rec::new(NOV_14, NOV_14).extra("n", RecordValue::I64(5_000_000_000)),
        Rec::new(NOV_14, NOV_14).extra("n", RecordValue::I64(3)),
    ];
    let specs = [
        Spec::text("{message:.{n}}|{name:>8.{n}}|{levelname!r:.{n}}", None, B),
        Spec::text("%(message).2000000s|%(name)-3.5000000s|", None, P),
    ];
    assert_eq!(assert_matches_python(&records, &specs, true), 4);
}

/// A seed from LOGFUNNEL_FORMAT_SEED, else from the clock (printed, so a
/// failure can be replayed).
fn seed() -> u64 {
    match std::env::var("LOGFUNNEL_FORMAT_SEED") {
        Ok(s) => s.trim().parse().expect("LOGFUNNEL_FORMAT_SEED is a number"),
        Err(_) => {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
        }
    }
}

/// Random format strings (all three styles, flags, widths, precisions,
/// conversions, nested specs, literal text, invalid syntax), datefmts and
/// records (times around boundaries and before 1970, every attribute,
/// typed extras including floats that tie, missing extras), formatted by
/// python3 and by the hub. A few thousand pairs per run, in seconds; set
/// LOGFUNNEL_FORMAT_SEED to replay a run, LOGFUNNEL_FORMAT_ROUNDS for more.
#[test]
fn random_formats_match_python() {
    let seed = seed();
    let rounds: usize =
        std::env::var("LOGFUNNEL_FORMAT_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(2);
    eprintln!("random_formats_match_python: seed {seed} (replay with LOGFUNNEL_FORMAT_SEED={seed})");
    let mut identical = 0;
    for round in 0..rounds {
        let mut g = crate::python_exact::random::Gen::new(seed.wrapping_add(round as u64));
        let records: Vec<Rec> = (0..12).map(|_| g.record()).collect();
        let specs: Vec<Spec> = (0..150).map(|_| g.spec()).collect();
        let utc = g.chance(0.5);
        let (mismatches, n) = compare(&records, &specs, utc);
        assert!(
            mismatches.is_empty(),
            "seed {seed} round {round} (replay with LOGFUNNEL_FORMAT_SEED={seed}): {} differences from python3:\n{}",
            mismatches.len(),
            mismatches[..mismatches.len().min(10)].join("\n")
        );
        identical += n;
    }
    eprintln!("random_formats_match_python: {identical} outputs identical to python3's");
    // The generator must mostly produce formats that both accept.
    assert!(identical > rounds * 12 * 150 / 4, "only {identical} outputs compared");
}

/// python-json-logger's JsonFormatter (the real package, installed from the
/// registry) against the hub's, over generated records (typed extras,
/// tracebacks, odd strings) and the package's options.
#[test]
fn json_formatter_matches_python_json_logger() {
    let seed = seed();
    eprintln!(
        "json_formatter_matches_python_json_logger: seed {seed} (replay with LOGFUNNEL_FORMAT_SEED={seed})"
    );
    let mut g = crate::python_exact::random::Gen::new(seed);
    let records: Vec<Rec> = (0..40).map(|_| g.record()).filter(|r| r.record.created_ns > 0).collect();
    let json = |class: &str, kwargs: Value| Spec::Json { class: class.into(), kwargs };
    let new = "pythonjsonlogger.json.JsonFormatter";
    let old = "pythonjsonlogger.jsonlogger.JsonFormatter";
    let specs = [
        json(new, json!({})),
        json(old, json!({"fmt": "%(asctime)s %(levelname)s %(name)s %(message)s"})),
        json(
            new,
            json!({"fmt": "%(message)s %(created)f %(msecs)d %(relativeCreated)s %(taskName)s %(nope)s",
                         "rename_fields": {"message": "msg", "user": "who", "levelname": "level"},
                         "static_fields": {"service": "api", "zone": "eu", "n": 1, "nested": {"b": [1, 2.5, null], "a": true}},
                         "timestamp": true}),
        ),
        json(
            new,
            json!({"fmt": "{asctime} {levelname} {message}", "style": "{", "datefmt": "%Y-%m-%dT%H:%M:%S%z",
                         "json_ensure_ascii": false, "prefix": ">> "}),
        ),
        json(
            new,
            json!({"fmt": "$name ${levelno} $$x", "style": "$", "timestamp": "ts",
                         "rename_fields": {"ts": "@timestamp", "missing": "gone"}, "rename_fields_keep_missing": true}),
        ),
        json(
            new,
            json!({"fmt": ["name", "message", "lineno", "exc_info"], "reserved_attrs": ["ratio", "msg", "args"]}),
        ),
        json(
            new,
            json!({"fmt": "name, levelname ,message", "style": ",", "defaults": {"user": "nobody", "team": "core"}}),
        ),
        json(new, json!({"fmt": "%(message)s", "reserved_attrs": []})),
        json(
            new,
            json!({"fmt": "%(funcName)s %(module)s %(filename)s %(pathname)s %(process)d %(thread)d %(threadName)s %(processName)s %(exc_text)s %(stack_info)s %(args)s"}),
        ),
        // Refused alike.
        json(new, json!({"fmt": "no fields here"})),
        json(new, json!({"style": "?"})),
    ];
    let mut identical = 0;
    for utc in [true, false] {
        identical += assert_matches_python(&records, &specs, utc);
    }
    assert!(identical >= records.len() * 2 * (specs.len() - 2), "only {identical} outputs compared");
}
