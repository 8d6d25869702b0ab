//! Differential tests: python3's logging module is the oracle. The same
//! dictConfig (as JSON, which the hub reads too) and the same records go
//! through Python's handlers (tests/python/oracle.py) and through a real
//! hub; the files they leave must be byte-identical, backups included.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use logfunnel_protocol::{Record, Value as RecordValue};
use serde_json::{Value, json};

use crate::util::{Dir, HubProc, assert_complete, finish_worker, python3, sequences, worker};

mod formatter;
mod random;

const ORACLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/oracle.py");

/// US Eastern with its 2007 rules, as CPython's DST tests use: no tz database needed.
const EASTERN: &str = "EST+05EDT,M3.2.0,M11.1.0";

/// A record as the oracle reads it (LogRecord attribute names).
fn record(created_ns: i64, name: &str, levelno: u32, message: &str) -> Value {
    json!({
        "created_ns": created_ns, "name": name, "levelno": levelno, "message": message,
        "pathname": "/srv/app/jobs/worker.py", "lineno": 42, "funcName": "handle",
        "process": 4242, "processName": "Worker-1", "thread": 140_000_000_000_001u64,
        "threadName": "MainThread", "exc_text": null, "extra": {},
    })
}

/// The same record for the hub.
pub fn to_record(v: &Value) -> Record {
    let s = |k: &str| v[k].as_str().map(str::to_owned);
    let extra = v["extra"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, x)| {
                    let value = match x {
                        Value::Number(n) if n.is_i64() => RecordValue::I64(n.as_i64().unwrap()),
                        Value::Number(n) => RecordValue::F64(n.as_f64().unwrap()),
                        Value::Bool(b) => RecordValue::Bool(*b),
                        other => RecordValue::Str(other.as_str().unwrap_or_default().to_owned()),
                    };
                    (k.clone(), value)
                })
                .collect()
        })
        .unwrap_or_default();
    Record {
        created_ns: v["created_ns"].as_i64().unwrap(),
        levelno: v["levelno"].as_u64().unwrap() as u32,
        name: s("name").unwrap(),
        message: s("message").unwrap(),
        pathname: s("pathname"),
        lineno: v["lineno"].as_u64().unwrap() as u32,
        func_name: s("funcName"),
        module_path: None,
        process: v["process"].as_u64().unwrap() as u32,
        process_name: s("processName"),
        thread: v["thread"].as_u64().unwrap(),
        thread_name: s("threadName"),
        exc_text: s("exc_text"),
        extra,
    }
}

/// Every file under `dir`, by relative name.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("read output dir") {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        out.insert(name, std::fs::read(&path).unwrap());
    }
    out
}

fn wait_lines(path: &Path, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let lines = std::fs::read_to_string(path).map_or(0, |t| t.lines().count());
        if lines >= n {
            return;
        }
        assert!(Instant::now() < deadline, "{} has {lines} lines, expected {n}", path.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn prepare(dir: &Path, spec: &Value) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, target) in spec["symlinks"].as_object().into_iter().flatten() {
        std::os::unix::fs::symlink(target.as_str().unwrap(), dir.join(name)).unwrap();
    }
    for (name, text) in spec["existing"].as_object().into_iter().flatten() {
        std::fs::write(dir.join(name), text.as_str().unwrap()).unwrap();
    }
    for (name, mtime) in spec["mtimes"].as_object().into_iter().flatten() {
        let path = dir.join(name);
        std::fs::write(&path, "").unwrap();
        let t = libc::timespec { tv_sec: mtime.as_i64().unwrap() as libc::time_t, tv_nsec: 0 };
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: a valid path and two timespecs.
        assert_eq!(unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), [t, t].as_ptr(), 0) }, 0);
    }
}

/// Runs `spec` through python3 and through the hub (with `TZ=tz`) and
/// asserts the two output directories are identical. Returns the hub's files.
fn differential(spec: Value, tz: &str) -> BTreeMap<String, Vec<u8>> {
    let dir = Dir::new();
    let (py_dir, hub_dir): (PathBuf, PathBuf) = (dir.path("python"), dir.path("hub"));
    std::fs::create_dir_all(&py_dir).unwrap();
    let spec_path = dir.write("spec.json", &spec.to_string());

    let py_stdout = dir.path("python.stdout");
    let out = Command::new(python3())
        .arg(ORACLE)
        .arg(&spec_path)
        .arg(&py_dir)
        .arg(&py_stdout)
        .env("TZ", tz)
        .output()
        .unwrap();
    assert!(out.status.success(), "oracle failed: {}", String::from_utf8_lossy(&out.stderr));

    prepare(&hub_dir, &spec);
    // The same text for both: a YAML file, or the dict as JSON.
    let config = match spec["yaml"].as_str() {
        Some(yaml) => dir.write("logging.yaml", yaml),
        None => dir.write("logging.json", &spec["config"].to_string()),
    };
    let hub = HubProc::start_in(&dir, &config, &hub_dir, &[("TZ", tz)]);
    let records = spec["records"].as_array().unwrap();
    let mut sent = 0;
    for action in spec["actions"].as_array().into_iter().flatten() {
        let before = action["before"].as_u64().unwrap() as usize;
        send(&hub.socket, &records[sent..before]);
        // The actions' specs log one line per record to the file they touch.
        wait_lines(
            &hub_dir.join(action["wait_file"].as_str().unwrap()),
            action["wait_lines"].as_u64().unwrap() as usize,
        );
        if let Some(pair) = action["rename"].as_array() {
            std::fs::rename(hub_dir.join(pair[0].as_str().unwrap()), hub_dir.join(pair[1].as_str().unwrap()))
                .unwrap();
        }
        if let Some(name) = action["delete"].as_str() {
            std::fs::remove_file(hub_dir.join(name)).unwrap();
        }
        sent = before;
    }
    send(&hub.socket, &records[sent..]);
    let hub_stdout = hub.stdout_when_stopped();
    let py_stdout = std::fs::read(&py_stdout).unwrap_or_default();
    assert!(
        hub_stdout == py_stdout,
        "stdout differs.\n--- python ---\n{}\n--- hub ---\n{}",
        String::from_utf8_lossy(&py_stdout),
        String::from_utf8_lossy(&hub_stdout)
    );

    let (python, ours) = (tree(&py_dir), tree(&hub_dir));
    let names = |t: &BTreeMap<String, Vec<u8>>| t.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&ours), names(&python), "the hub and Python left different files");
    for (name, bytes) in &python {
        let mine = &ours[name];
        if mine != bytes {
            panic!(
                "{name} differs.\n--- python ---\n{}\n--- hub ---\n{}",
                String::from_utf8_lossy(bytes),
                String::from_utf8_lossy(mine)
            );
        }
    }
    ours
}

fn send(socket: &Path, records: &[Value]) {
    if records.is_empty() {
        return;
    }
    let records = records.iter().map(to_record).collect();
    logfunnel_client::send_records(socket, records, Duration::from_secs(20)).expect("send records");
}

const S: i64 = 1_000_000_000;
/// 2023-03-10 00:00:00 EST, in ns.
const MARCH_2023: i64 = 1_678_424_400 * S;
/// 2023-11-01 12:00:00 EDT, in ns.
const NOVEMBER_2023: i64 = 1_698_854_400 * S;
/// 2023-11-14 22:13:20 UTC, in ns.
const NOV_14: i64 = 1_700_000_000 * S;

#[test]
fn formatter_and_file_handler_match_python() {
    let config = json!({
        "version": 1,
        "disable_existing_loggers": false,
        "formatters": {
            "full": {"format": "%(asctime)s|%(created)f|%(msecs)03d|%(levelname)-8s|%(levelno)d|%(name)s|%(module)s|%(filename)s|%(pathname)s|%(funcName)s|%(lineno)d|%(process)d|%(processName)s|%(thread)d|%(threadName)s|%(message)s"},
            "brace": {"format": "{asctime} {levelname:>8} {name!r:12} {message}", "style": "{", "datefmt": "%d/%m/%Y %H:%M:%S %Z"},
            "dollar": {"format": "$asctime ${levelname} $name: $message [$user]", "style": "$"},
            "padded": {"format": "%(levelname)-8s|%(name)10.3s|%(lineno)05d|%(msecs)3.0f|%(message)r"},
        },
        "filters": {"db": {"name": "app.db"}},
        "handlers": {
            "full": {"class": "logging.FileHandler", "filename": "full.log", "formatter": "full"},
            "brace": {"class": "logging.FileHandler", "filename": "brace.log", "formatter": "brace",
                      "level": "WARNING", "mode": "w"},
            "dollar": {"class": "logging.FileHandler", "filename": "dollar.log", "formatter": "dollar",
                       "filters": ["db"]},
            "padded": {"class": "logging.FileHandler", "filename": "padded.log", "formatter": "padded", "delay": true},
            "unused": {"class": "logging.FileHandler", "filename": "never.log", "delay": true},
        },
        "loggers": {
            "app": {"level": "INFO", "handlers": ["brace"]},
            "app.db": {"handlers": ["dollar"]},
            "noisy": {"level": "ERROR", "handlers": ["padded"], "propagate": false},
        },
        "root": {"level": "DEBUG", "handlers": ["full"]},
    });
    // Raw control characters, as Python writes them (the hub escapes them
    // by default against log injection; tests/security.rs covers that).
    let mut config = config;
    for h in config["handlers"].as_object_mut().unwrap().values_mut() {
        h["escape_control_chars"] = json!(false);
    }
    let names = ["app", "app.db", "app.dbx", "app.db.pool", "noisy", "other.thing", "appx"];
    let messages =
        ["plain", "café ☕ naïve", "100% done", "tabs\tand\nnew lines", "", "{braces} $dollar %(pct)s"];
    let mut records = Vec::new();
    for i in 0..84u32 {
        // Milliseconds that are not binary fractions too (Python 3.11 floors
        // msecs from the float, so x.123 can show as 122: both must agree).
        let created = MARCH_2023 + i64::from(i) * 3_217_375_000_000 + i64::from(i % 7) * 123_456_789;
        let level = [10, 20, 25, 30, 40, 50, 15][i as usize % 7];
        let mut r =
            record(created, names[i as usize % names.len()], level, messages[i as usize % messages.len()]);
        if i % 3 != 0 {
            r["extra"] = json!({"user": format!("u{i}")});
        }
        if i % 11 == 0 {
            r["exc_text"] = json!(
                "Traceback (most recent call last):\n  File \"w.py\", line 1, in <module>\nZeroDivisionError: division by zero"
            );
        }
        r["lineno"] = json!(i * 37);
        records.push(r);
    }
    let spec = json!({
        "config": config,
        "records": records,
        "existing": {"brace.log": "truncated by mode w\n", "full.log": "appended to\n"},
    });
    let files = differential(spec, EASTERN);
    // The cases above must really have exercised the handlers.
    assert!(files["full.log"].len() > 5_000);
    assert!(!files["dollar.log"].is_empty() && !files["padded.log"].is_empty());
    assert!(!files.contains_key("never.log"));
}

#[test]
fn rotating_file_handler_matches_python() {
    let config = json!({
        "version": 1,
        "formatters": {"short": {"format": "%(levelname)s %(message)s"}},
        "handlers": {
            "r": {"class": "logging.handlers.RotatingFileHandler", "filename": "r.log", "formatter": "short",
                  "maxBytes": 120, "backupCount": 3},
            "never": {"class": "logging.handlers.RotatingFileHandler", "filename": "never.log",
                      "maxBytes": 50, "backupCount": 0},
            "unbounded": {"class": "logging.handlers.RotatingFileHandler", "filename": "unbounded.log",
                          "backupCount": 4},
            "delayed": {"class": "logging.handlers.RotatingFileHandler", "filename": "delayed.log",
                        "maxBytes": 64, "backupCount": 2, "delay": true, "mode": "w"},
            "units": {"class": "logging.handlers.RotatingFileHandler", "filename": "units.log",
                      "maxBytes": 100, "backupCount": 20},
            // Not a regular file: never rotated (bpo-45401).
            "devnull": {"class": "logging.handlers.RotatingFileHandler", "filename": "null.log",
                        "maxBytes": 10, "backupCount": 2},
        },
        "loggers": {"units": {"handlers": ["units"], "propagate": false}},
        "root": {"level": "DEBUG", "handlers": ["r", "never", "unbounded", "delayed", "devnull"]},
    });
    let mut records = Vec::new();
    for i in 0..60u32 {
        let message = match i % 9 {
            // Characters, not bytes, count towards max_bytes (Python's len()).
            0 => "é".repeat(20 + i as usize % 13),
            4 => format!("{i} {}", "x".repeat(70)),
            7 => "a record longer than max_bytes on its own ".repeat(4),
            _ => format!("record {i} {}", "y".repeat(i as usize % 17)),
        };
        records.push(record(MARCH_2023 + i64::from(i) * S, "app", 20, &message));
    }
    // 31 characters but 61 bytes each: two fit under max_bytes = 100 by
    // Python's count (61 + 31 < 100), one by a byte count.
    for i in 0..12 {
        records.push(record(MARCH_2023 + (100 + i) * S, "units", 20, &"é".repeat(30)));
    }
    let spec = json!({"config": config, "records": records, "existing": {"r.log": "x".repeat(100)},
                      "symlinks": {"null.log": "/dev/null"}});
    let files = differential(spec, "UTC");
    assert!(!files.contains_key("null.log.1"));
    // Rotation happened and the oldest backups fell off the end.
    assert!(files.contains_key("r.log.3") && !files.contains_key("r.log.4"));
    assert!(files.contains_key("delayed.log.2"));
    assert_eq!(files.keys().filter(|k| k.starts_with("never.log")).count(), 1);
    assert_eq!(files["units.log.1"].len(), 122, "two records per file");
}

/// Every `when`, across the spring-forward DST change, local and UTC.
#[test]
fn timed_rotating_file_handler_matches_python_across_dst() {
    timed_case(MARCH_2023, (37 * 60 + 11) * S, 400);
}

/// …and across the autumn change, where an hour repeats.
#[test]
fn timed_rotating_file_handler_matches_python_across_dst_end() {
    timed_case(NOVEMBER_2023, (23 * 60 + 7) * S + 250_000_000, 700);
}

fn timed_case(start: i64, step: i64, n: u32) {
    let handler = |file: &str, extra: Value| {
        let mut h = json!({"class": "logging.handlers.TimedRotatingFileHandler", "filename": file,
                           "formatter": "line"});
        h.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        h
    };
    let handlers = json!({
        "h": handler("h.log", json!({"when": "H", "backupCount": 5})),
        "m90": handler("m90.log", json!({"when": "m", "interval": 90, "backupCount": 4})),
        "d": handler("d.log", json!({"when": "D", "backupCount": 3})),
        "midnight": handler("midnight.log", json!({"when": "midnight"})),
        "at": handler("at.log", json!({"when": "MIDNIGHT", "atTime": "02:30", "backupCount": 6})),
        "w0": handler("w0.log", json!({"when": "W0"})),
        "w3at": handler("w3at.log", json!({"when": "W3", "atTime": "12:00:00"})),
        "utc": handler("utc.log", json!({"when": "midnight", "utc": true, "backupCount": 2})),
    });
    let names: Vec<String> = handlers.as_object().unwrap().keys().cloned().collect();
    let config = json!({
        "version": 1,
        "formatters": {"line": {"format": "%(asctime)s %(message)s"}},
        "handlers": handlers,
        "root": {"level": "DEBUG", "handlers": names},
    });
    let records: Vec<Value> =
        (0..n).map(|i| record(start + i64::from(i) * step, "app", 20, &format!("r{i}"))).collect();
    let mtimes: BTreeMap<String, i64> = handlers_files(&config).into_iter().map(|f| (f, start / S)).collect();
    let spec = json!({"config": config, "records": records, "mtimes": mtimes});
    let files = differential(spec, EASTERN);
    assert!(files.keys().filter(|k| k.starts_with("h.log.")).count() == 5, "{:?}", files.keys());
    assert!(files.keys().any(|k| k.starts_with("w3at.log.")), "{:?}", files.keys());
}

fn handlers_files(config: &Value) -> Vec<String> {
    config["handlers"]
        .as_object()
        .unwrap()
        .values()
        .map(|h| h["filename"].as_str().unwrap().to_owned())
        .collect()
}

/// when = "S" with records a fraction of a second apart: Python's suffixes,
/// and its choice of which backups to delete.
#[test]
fn timed_rotating_by_seconds_matches_python() {
    let config = json!({
        "version": 1,
        "handlers": {
            "s": {"class": "logging.handlers.TimedRotatingFileHandler", "filename": "s.log", "when": "S",
                  "backupCount": 2},
            "s3": {"class": "logging.handlers.TimedRotatingFileHandler", "filename": "s3.log", "when": "s",
                   "interval": 3},
        },
        "root": {"level": "DEBUG", "handlers": ["s", "s3"]},
    });
    let records: Vec<Value> =
        (0..40).map(|i| record(NOV_14 + i64::from(i) * 400_000_000, "app", 20, &format!("r{i}"))).collect();
    let spec = json!({"config": config, "records": records,
                      "mtimes": {"s.log": NOV_14 / S, "s3.log": NOV_14 / S}});
    let files = differential(spec, "UTC");
    assert_eq!(files.keys().filter(|k| k.starts_with("s.log.")).count(), 2);
}

/// A WatchedFileHandler's file moved away, then deleted: both times the
/// next records go to a new file at the same path.
#[test]
fn watched_file_handler_matches_python_after_mv_and_rm() {
    let config = json!({
        "version": 1,
        "handlers": {"w": {"class": "logging.handlers.WatchedFileHandler", "filename": "w.log"}},
        "root": {"level": "DEBUG", "handlers": ["w"]},
    });
    let records: Vec<Value> =
        (0..30).map(|i| record(NOV_14 + i64::from(i) * S, "app", 20, &format!("line {i}"))).collect();
    let spec = json!({
        "config": config,
        "records": records,
        "actions": [
            {"before": 10, "rename": ["w.log", "w.log.1"], "wait_file": "w.log", "wait_lines": 10},
            {"before": 20, "delete": "w.log", "wait_file": "w.log", "wait_lines": 10},
        ],
    });
    let files = differential(spec, "UTC");
    assert_eq!(String::from_utf8_lossy(&files["w.log"]).lines().next(), Some("line 20"));
}

/// The thing Python's RotatingFileHandler cannot do across processes: 16
/// worker processes, one rotating log, nothing lost or duplicated.
#[test]
fn sixteen_processes_share_one_rotating_log() {
    let dir = Dir::new();
    let config = dir.write(
        "hub.toml",
        &format!(
            "[handlers.file]\nclass = \"RotatingFileHandler\"\nfilename = {:?}\nmax_bytes = 262144\nbackup_count = 100000\n\n[root]\nlevel = \"NOTSET\"\nhandlers = [\"file\"]\n",
            dir.path("app.log")
        ),
    );
    let hub = HubProc::start(&dir, &config);
    let per_worker = 20_000;
    let workers: Vec<_> = (0..16).map(|id| worker(&hub.socket, id, per_worker, &[])).collect();
    for w in workers {
        finish_worker(w);
    }
    hub.stop();

    let backups = (1..).take_while(|i| dir.path(&format!("app.log.{i}")).exists()).count();
    assert!(backups >= 10, "expected many rotations, found {backups} backups");
    // Oldest first: app.log.N … app.log.1, then app.log.
    let all = dir.path("all.log");
    let mut joined = Vec::new();
    for i in (1..=backups).rev() {
        let part = std::fs::read(dir.path(&format!("app.log.{i}"))).unwrap();
        assert!(part.len() < 262_144, "app.log.{i} is {} bytes, over max_bytes", part.len());
        assert!(part.ends_with(b"\n"), "app.log.{i} ends mid-record");
        joined.extend(part);
    }
    joined.extend(std::fs::read(dir.path("app.log")).unwrap());
    std::fs::write(&all, joined).unwrap();
    let (seqs, other) = sequences(&all);
    assert!(other.is_empty(), "unexpected lines: {:?}", &other[..other.len().min(5)]);
    for id in 0..16 {
        assert_complete(&seqs, id, 0, per_worker);
    }
}

/// Where logfunnel deliberately differs from Python: a WatchedFileHandler
/// learns of a deleted file from inotify and reopens without waiting for
/// the next record, so the deleted file's space is released at once.
#[test]
fn watched_file_is_reopened_without_waiting_for_a_record() {
    let dir = Dir::new();
    let config = dir.write(
        "hub.toml",
        &format!(
            "[handlers.w]\nclass = \"WatchedFileHandler\"\nfilename = {:?}\n\n[root]\nhandlers = [\"w\"]\nlevel = \"NOTSET\"\n",
            dir.path("w.log")
        ),
    );
    let hub = HubProc::start(&dir, &config);
    let records: Vec<Value> =
        (0..5).map(|i| record(NOV_14 + i * S, "app", 20, &format!("line {i}"))).collect();
    send(&hub.socket, &records);
    wait_lines(&dir.path("w.log"), 5);
    std::fs::remove_file(dir.path("w.log")).unwrap();
    // No record follows: the new file appears because of the watch alone,
    // and the hub no longer holds the deleted one open.
    let deadline = Instant::now() + Duration::from_secs(20);
    let fds = format!("/proc/{}/fd", hub.child.id());
    let holds_deleted = || {
        std::fs::read_dir(&fds).unwrap().filter_map(|e| std::fs::read_link(e.unwrap().path()).ok()).any(
            |target| {
                let t = target.to_string_lossy().into_owned();
                t.contains("w.log") && t.ends_with("(deleted)")
            },
        )
    };
    while !dir.path("w.log").exists() || holds_deleted() {
        assert!(Instant::now() < deadline, "the hub did not reopen w.log after it was deleted");
        std::thread::sleep(Duration::from_millis(20));
    }
    send(&hub.socket, &[record(NOV_14 + 10 * S, "app", 20, "after")]);
    hub.stop();
    assert_eq!(std::fs::read_to_string(dir.path("w.log")).unwrap(), "after\n");
}

/// Where logfunnel deliberately differs from Python: when the backup name a
/// timed rollover wants already exists, Python 3.11 deletes that file (and
/// 3.13 stops rotating for good); the hub keeps it and uses `NAME.1`.
#[test]
fn timed_rollover_never_deletes_an_existing_backup() {
    let dir = Dir::new();
    let config = dir.write(
        "hub.toml",
        &format!(
            "[handlers.s]\nclass = \"TimedRotatingFileHandler\"\nfilename = {:?}\nwhen = \"S\"\n\n[root]\nhandlers = [\"s\"]\nlevel = \"NOTSET\"\n",
            dir.path("s.log")
        ),
    );
    let spec =
        json!({"mtimes": {"s.log": NOV_14 / S}, "existing": {"s.log.2023-11-14_22-13-20": "precious\n"}});
    prepare(dir.tmp.path(), &spec);
    let hub = HubProc::start_in(&dir, &config, dir.tmp.path(), &[("TZ", "UTC")]);
    let records: Vec<Value> =
        (0..3).map(|i| record(NOV_14 + 500_000_000 + i * S, "app", 20, &format!("r{i}"))).collect();
    send(&hub.socket, &records);
    hub.stop();
    let read = |name: &str| std::fs::read_to_string(dir.path(name)).unwrap();
    assert_eq!(read("s.log.2023-11-14_22-13-20"), "precious\n");
    assert_eq!(read("s.log.2023-11-14_22-13-20.1"), "r0\n");
    assert_eq!(read("s.log.2023-11-14_22-13-21"), "r1\n");
    assert_eq!(read("s.log"), "r2\n");
}

/// MemoryHandler: held until `capacity` or a record at `flushLevel`, then
/// passed to the target whatever the target's level (but through its
/// filters); a chain of two; and `flushOnClose = false`, which Python 3.11's
/// shutdown ignores (it flushes every handler), and so does the hub.
#[test]
fn memory_handler_matches_python() {
    let config = json!({
        "version": 1,
        "formatters": {"lvl": {"format": "%(levelname)s %(name)s %(message)s"}},
        "filters": {"app": {"name": "app"}},
        "handlers": {
            "file": {"class": "logging.FileHandler", "filename": "mem.log", "formatter": "lvl",
                     "level": "CRITICAL", "filters": ["app"]},
            "mem": {"class": "logging.handlers.MemoryHandler", "capacity": 4, "target": "file"},
            "chained": {"class": "logging.FileHandler", "filename": "chained.log", "formatter": "lvl"},
            "inner": {"class": "logging.handlers.MemoryHandler", "capacity": 3, "flushLevel": 30,
                      "target": "chained"},
            "outer": {"class": "logging.handlers.MemoryHandler", "capacity": 5, "target": "inner"},
            "tail": {"class": "logging.FileHandler", "filename": "tail.log", "formatter": "lvl"},
            "lossy": {"class": "logging.handlers.MemoryHandler", "capacity": 6, "target": "tail",
                      "flushOnClose": false},
        },
        "root": {"level": "DEBUG", "handlers": ["mem", "outer", "lossy"]},
    });
    let records: Vec<Value> = (0..23u32)
        .map(|i| {
            let level = [10, 20, 20, 40, 10, 30, 20][i as usize % 7];
            let name = if i % 5 == 4 { "other" } else { "app.jobs" };
            record(NOV_14 + i64::from(i) * S, name, level, &format!("m{i}"))
        })
        .collect();
    let spec = json!({"config": config, "records": records});
    let files = differential(spec, "UTC");
    let lines = |name: &str| String::from_utf8_lossy(&files[name]).lines().count();
    assert!(lines("mem.log") > 0 && lines("chained.log") > 0);
    assert_eq!(lines("tail.log"), 23, "the held tail is passed on at shutdown");
}

/// logrotate's copytruncate empties the file under the hub: like Python
/// (which seeks to the end before measuring), the rotating handler measures
/// the file as it now is, rather than rotating early on a stale size.
#[test]
fn a_rotating_handler_sees_a_copytruncate() {
    let dir = Dir::new();
    let log = dir.path("app.log");
    let cfg = dir.write(
        "hub.toml",
        &format!(
            "[handlers.r]\nclass = \"RotatingFileHandler\"\nfilename = {log:?}\nmax_bytes = 1000\nbackup_count = 3\n\n[root]\nhandlers = [\"r\"]\nlevel = \"NOTSET\"\n"
        ),
    );
    let hub = HubProc::start(&dir, &cfg);
    let line = |i: i64| record(NOV_14 + i * S, "app", 20, &format!("{i:03} {}", "x".repeat(95)));
    send(&hub.socket, &(0..9).map(line).collect::<Vec<_>>());
    wait_lines(&log, 9);
    // copytruncate: copy away, then empty the file in place.
    std::fs::copy(&log, dir.path("app.log.copied")).unwrap();
    std::fs::OpenOptions::new().write(true).open(&log).unwrap().set_len(0).unwrap();
    send(&hub.socket, &(9..14).map(line).collect::<Vec<_>>());
    hub.stop();
    assert!(!dir.path("app.log.1").exists(), "rotated on the size before the truncation");
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 5);
}

/// Records from a few loggers at every level, for the routing tests.
fn routing_records() -> Vec<Value> {
    let names = ["app", "app.db", "django.request", "other", "root", ""];
    (0..60u32)
        .map(|i| {
            let level = [10, 20, 30, 40, 50][i as usize % 5];
            let mut r =
                record(NOV_14 + i64::from(i) * S, names[i as usize % names.len()], level, &format!("m{i}"));
            r["exc_text"] = if i % 7 == 3 {
                json!("Traceback (most recent call last):\nValueError: x")
            } else {
                json!(null)
            };
            r
        })
        .collect()
}

fn file_handlers(names: &[&str], formatter: &str) -> Value {
    names
        .iter()
        .map(|n| {
            (
                (*n).to_owned(),
                json!({"class": "logging.FileHandler", "filename": format!("{n}.log"), "formatter": formatter}),
            )
        })
        .collect::<serde_json::Map<String, Value>>()
        .into()
}

/// Python 3.9+ treats a `loggers` entry named "root" as the root logger:
/// its handlers get what propagates to the root. dictConfig configures the
/// `loggers` first and `root` last, whose handlers replace them.
#[test]
fn a_logger_named_root_is_the_root_logger_as_in_python() {
    let config = json!({
        "version": 1,
        "formatters": {"line": {"format": "%(levelname)s %(name)s %(message)s"}},
        "handlers": file_handlers(&["everything", "app"], "line"),
        "loggers": {
            "root": {"level": "INFO", "handlers": ["everything"]},
            "app": {"level": "DEBUG", "handlers": ["app"]},
        },
    });
    let files = differential(json!({"config": config, "records": routing_records()}), "UTC");
    assert!(String::from_utf8_lossy(&files["everything.log"]).lines().count() > 30);
    // `root` after `loggers.root`: its level applies, and a root without
    // handlers leaves none (dictConfig removes them first).
    let config = json!({
        "version": 1,
        "formatters": {"line": {"format": "%(levelname)s %(name)s %(message)s"}},
        "handlers": file_handlers(&["everything", "app", "errors"], "line"),
        "loggers": {
            "root": {"level": "INFO", "handlers": ["everything"], "propagate": false},
            "app": {"handlers": ["app"]},
        },
        "root": {"level": "ERROR", "handlers": ["errors"]},
    });
    let files = differential(json!({"config": config, "records": routing_records()}), "UTC");
    assert!(files["everything.log"].is_empty(), "root's handlers were replaced");
    assert!(!files["errors.log"].is_empty());
}

/// The Django idiom: the root logger configured as `loggers[""]`.
#[test]
fn a_logger_named_empty_is_the_root_logger_as_in_python() {
    let config = json!({
        "version": 1,
        "disable_existing_loggers": false,
        "formatters": {"verbose": {"format": "{levelname} {name} {message}", "style": "{"}},
        "handlers": file_handlers(&["console", "requests"], "verbose"),
        "loggers": {
            "": {"handlers": ["console"], "level": "WARNING"},
            "django.request": {"handlers": ["requests"], "level": "DEBUG", "propagate": true},
        },
    });
    let files = differential(json!({"config": config, "records": routing_records()}), "UTC");
    let console = String::from_utf8_lossy(&files["console.log"]).into_owned();
    assert!(console.contains("DEBUG django.request"), "propagated to the root's handlers: {console}");
}

/// Keys Python's dictConfig ignores (gunicorn's `qualname`, a project's own
/// top-level keys) run unchanged, with the same output.
#[test]
fn keys_python_ignores_run_unchanged() {
    let config = json!({
        "version": 1,
        "disable_existing_loggers": false,
        "incremental": false,
        "my_app_settings": {"retries": 3},
        "root": {"level": "INFO", "handlers": ["error_file"]},
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": ["error_file"], "propagate": false, "qualname": "gunicorn.error"},
            "gunicorn.access": {"level": "INFO", "handlers": ["access_file"], "propagate": false, "qualname": "gunicorn.access"},
        },
        "handlers": {
            "error_file": {"class": "logging.FileHandler", "formatter": "generic", "filename": "error.log"},
            "access_file": {"class": "logging.FileHandler", "formatter": "access", "filename": "access.log"},
        },
        "formatters": {
            "generic": {"format": "%(asctime)s [%(process)d] [%(levelname)s] %(message)s",
                        "datefmt": "[%Y-%m-%d %H:%M:%S %z]", "class": "logging.Formatter", "color": false},
            "access": {"format": "%(message)s", "class": "logging.Formatter"},
        },
        "filters": {"unused": {"name": "x", "comment": "ignored by Python too"}},
    });
    let records: Vec<Value> = (0..20u32)
        .map(|i| {
            record(
                NOV_14 + i64::from(i) * S,
                ["gunicorn.error", "gunicorn.access", "app"][i as usize % 3],
                20,
                &format!("r{i}"),
            )
        })
        .collect();
    let files = differential(json!({"config": config, "records": records}), EASTERN);
    assert!(!files["access.log"].is_empty() && !files["error.log"].is_empty());
}

/// Standard-library constructs that mean something to the hub: a '()'
/// logging.Filter and logging.Formatter (with `format` and with `fmt`),
/// cfg:// references, and a QueueHandler with handlers (3.12's form, which
/// the oracle builds as 3.12 does) whose formatter prepares each record.
#[test]
fn stdlib_constructs_run_as_in_python() {
    let config = json!({
        "version": 1,
        "settings": {"level": "INFO", "names": ["app.db", "app"]},
        "formatters": {
            "plain": {"()": "logging.Formatter", "format": "%(levelname)s|%(name)s|%(message)s"},
            "braces": {"()": "logging.Formatter", "fmt": "{name}: {message}!", "style": "{"},
            "prep": {"format": "[%(levelname)s] %(message)s"},
        },
        "filters": {"db": {"()": "logging.Filter", "name": "cfg://settings.names[0]"}},
        "handlers": {
            "a_db": {"class": "logging.FileHandler", "filename": "db.log", "formatter": "plain",
                     "filters": ["db"], "level": "cfg://handlers.b_all.level"},
            "b_all": {"class": "logging.FileHandler", "filename": "all.log", "formatter": "braces", "level": "DEBUG"},
            "c_errors": {"class": "logging.FileHandler", "filename": "errors.log", "formatter": "plain", "level": "ERROR"},
            "queue": {"class": "logging.handlers.QueueHandler", "handlers": ["a_db", "c_errors"],
                      "respect_handler_level": true, "level": "cfg://settings.level"},
            "queue2": {"class": "logging.handlers.QueueHandler", "handlers": ["b_all"], "formatter": "prep"},
        },
        "loggers": {"app": {"handlers": ["queue2"], "level": "DEBUG"}},
        "root": {"level": "DEBUG", "handlers": ["queue"]},
    });
    let files = differential(json!({"config": config, "records": routing_records()}), "UTC");
    assert!(!files["db.log"].is_empty() && !files["errors.log"].is_empty());
    // Prepared by queue2's formatter: the traceback is inside the message.
    let all = String::from_utf8_lossy(&files["all.log"]).into_owned();
    assert!(all.contains("[ERROR] m") && all.contains("ValueError: x!"), "{all}");
}

/// The Python HOWTO's YAML dictConfig ("Configuring Logging"), unchanged:
/// `propagate: no` is YAML 1.1's False, and the output on stdout is
/// python3's, byte for byte.
#[test]
fn the_howto_yaml_config_runs_unchanged() {
    const HOWTO: &str = "version: 1
formatters:
  simple:
    format: '%(asctime)s - %(name)s - %(levelname)s - %(message)s'
handlers:
  console:
    class: logging.StreamHandler
    level: DEBUG
    formatter: simple
    stream: ext://sys.stdout
loggers:
  simpleExample:
    level: DEBUG
    handlers: [console]
    propagate: no
root:
  level: DEBUG
  handlers: [console]
";
    let records: Vec<Value> =
        ["debug message", "info message", "warn message", "error message", "critical message"]
            .iter()
            .enumerate()
            .flat_map(|(i, m)| {
                let level = [10, 20, 30, 40, 50][i];
                [
                    record(NOV_14 + i as i64 * 1_234_567_891, "simpleExample", level, m),
                    record(NOV_14 + i as i64 * 1_234_567_891 + 7, "other", level, m),
                ]
            })
            .collect();
    differential(json!({"yaml": HOWTO, "records": records}), EASTERN);
}

/// The logging.config documentation's schema example, as JSON and as
/// YAML: a name filter, a RotatingFileHandler, stdout; python3's bytes.
#[test]
fn the_schema_example_runs_unchanged_as_json_and_yaml() {
    const YAML: &str = "version: 1
formatters:
  brief:
    format: '%(message)s'
  precise:
    format: '%(asctime)s %(levelname)-8s %(name)-15s %(message)s'
    datefmt: '%Y-%m-%d %H:%M:%S'
handlers:
  console:
    class : logging.StreamHandler
    formatter: brief
    level   : INFO
    filters: [allow_foo]
    stream  : ext://sys.stdout
  file:
    class : logging.handlers.RotatingFileHandler
    formatter: precise
    filename: logconfig.log
    maxBytes: 1024
    backupCount: 3
loggers:
  foo.bar.baz:
    # other configuration for logger 'foo.bar.baz'
    handlers: [file]
root:
  level: DEBUG
  handlers: [console, file]
filters:
  allow_foo:
    name: foo
";
    let records: Vec<Value> = (0..40u32)
        .map(|i| {
            let name = ["foo", "foo.bar.baz", "foobar", "bar"][i as usize % 4];
            record(
                NOV_14 + i64::from(i) * 61 * S,
                name,
                [10, 20, 30][i as usize % 3],
                &format!("message number {i}"),
            )
        })
        .collect();
    let files = differential(json!({"yaml": YAML, "records": records.clone()}), EASTERN);
    assert!(files.contains_key("logconfig.log.1"), "{:?}", files.keys());
    let python = Command::new(python3())
        .args(["-c", "import json, sys, yaml; print(json.dumps(yaml.safe_load(sys.stdin.read())))"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    python.stdin.as_ref().unwrap().write_all(YAML.as_bytes()).unwrap();
    let out = python.wait_with_output().unwrap();
    assert!(out.status.success(), "PyYAML is needed: pip install PyYAML (scripts/test does)");
    let config: Value = serde_json::from_slice(&out.stdout).unwrap();
    differential(json!({"config": config, "records": records}), EASTERN);
}

/// python-json-logger's JsonFormatter, both spellings, through a real hub:
/// the same objects as the real package (installed from the registry).
#[test]
fn json_formatter_matches_python_json_logger_through_the_hub() {
    let config = json!({
        "version": 1,
        "formatters": {
            "json": {"()": "pythonjsonlogger.json.JsonFormatter",
                     "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
                     "rename_fields": {"levelname": "level", "asctime": "time"},
                     "static_fields": {"service": "api", "env": "prod", "replicas": 3},
                     "timestamp": "@timestamp"},
            "old": {"()": "pythonjsonlogger.jsonlogger.JsonFormatter", "fmt": "{message}{lineno}", "style": "{",
                    "json_ensure_ascii": false},
            "bare": {"class": "pythonjsonlogger.json.JsonFormatter"},
        },
        "handlers": {
            "json": {"class": "logging.FileHandler", "filename": "json.log", "formatter": "json"},
            // Without ensure_ascii Python writes DEL and C1 controls raw;
            // the hub escapes them unless told not to (tested on its own).
            "old": {"class": "logging.FileHandler", "filename": "old.log", "formatter": "old",
                    "escape_control_chars": false},
            "bare": {"class": "logging.FileHandler", "filename": "bare.log", "formatter": "bare"},
        },
        "root": {"level": "DEBUG", "handlers": ["json", "old", "bare"]},
    });
    let mut records = routing_records();
    for (i, r) in records.iter_mut().enumerate() {
        r["message"] =
            json!(["plain", "café ☕ \"quoted\"", "tab\tnew\nline", "\u{1}\u{7f}\u{85}", "😀"][i % 5]);
        if i % 2 == 0 {
            r["extra"] =
                json!({"user": format!("u{i}"), "count": i, "ratio": i as f64 / 3.0, "ok": i % 4 == 0});
        }
    }
    let files = differential(json!({"config": config, "records": records}), "UTC");
    let first = String::from_utf8_lossy(&files["json.log"]).lines().next().unwrap_or_default().to_owned();
    assert!(first.starts_with("{\"time\": ") && first.contains("\"service\": \"api\""), "{first}");
}
