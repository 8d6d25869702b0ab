//! Configuration files as users bring them: a Python dictConfig saved as
//! JSON, `check-config` on broken ones, and SIGHUP reopening every kind of
//! file handler for an external logrotate.

use std::time::{Duration, Instant};

use crate::util::{Dir, HubProc, run};

/// A Django/Flask-style LOGGING dict, dumped with `json.dump`.
const PYTHON_PROJECT_CONFIG: &str = r#"{
  "version": 1,
  "disable_existing_loggers": false,
  "formatters": {
    "verbose": {"format": "{levelname} {asctime} {module} {process:d} {thread:d} {message}", "style": "{"},
    "simple": {"format": "%(levelname)s %(message)s"}
  },
  "filters": {"jobs_only": {"name": "app.jobs"}},
  "handlers": {
    "console": {"class": "logging.StreamHandler", "formatter": "simple", "level": "WARNING"},
    "file": {"class": "logging.handlers.RotatingFileHandler", "filename": "LOGDIR/app.log",
             "maxBytes": 1048576, "backupCount": 3, "formatter": "verbose"},
    "jobs": {"class": "logging.handlers.TimedRotatingFileHandler", "filename": "LOGDIR/jobs.log",
             "when": "midnight", "backupCount": 7, "filters": ["jobs_only"], "formatter": "simple"}
  },
  "loggers": {
    "app": {"handlers": ["file", "jobs"], "level": "INFO", "propagate": true}
  },
  "root": {"handlers": ["console"], "level": "WARNING"}
}"#;

#[test]
fn a_python_projects_json_dictconfig_runs_unchanged() {
    let dir = Dir::new();
    let cfg =
        dir.write("logging.json", &PYTHON_PROJECT_CONFIG.replace("LOGDIR", dir.tmp.path().to_str().unwrap()));
    let check = run(&["check-config", cfg.to_str().unwrap()]);
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));

    let hub = HubProc::start(&dir, &cfg);
    let s = hub.socket.to_str().unwrap().to_owned();
    for (logger, level, msg) in
        [("app.jobs", "INFO", "job started"), ("app.web", "INFO", "GET /"), ("app", "DEBUG", "too quiet")]
    {
        let out = run(&["send", "--socket", &s, "--logger", logger, "--level", level, msg]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let err = hub.stop();
    let app = std::fs::read_to_string(dir.path("app.log")).unwrap();
    let lines: Vec<&str> = app.lines().collect();
    assert_eq!(lines.len(), 2, "{app}");
    assert!(lines[0].starts_with("INFO ") && lines[0].ends_with(" job started"), "{app}");
    assert!(lines[1].ends_with(" GET /"), "{app}");
    assert_eq!(std::fs::read_to_string(dir.path("jobs.log")).unwrap(), "INFO job started\n");
    // Nothing reached WARNING: the console stayed quiet.
    assert!(!err.contains("job started"), "{err}");
}

#[test]
fn check_config_names_every_problem_in_a_json_dictconfig() {
    let dir = Dir::new();
    let cfg = dir.write(
        "broken.json",
        r#"{"version": 1,
  "formatters": {"f": {"format": "%(message)s %(oops"}},
  "handlers": {
    "a": {"class": "logging.handlers.SMTPHandlerz"},
    "b": {"class": "logging.FileHandler", "formatter": "missing"},
    "c": {"class": "logging.handlers.RotatingFileHandler", "filename": "x.log", "level": "LOUD", "formatter": "f"},
    "m": {"class": "logging.handlers.MemoryHandler", "capacity": 10, "target": "n"},
    "n": {"class": "logging.handlers.MemoryHandler", "capacity": 10, "target": "m"},
    "p": {"()": "myproject.logging.Handler"}
  },
  "root": {"handlers": ["a", "zz"]}}"#,
    );
    let out = run(&["check-config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "formatters.f.format:",
        "handlers.a.class: unknown handler class \"logging.handlers.SMTPHandlerz\"",
        "handlers.b.filename: missing",
        "handlers.b.formatter: unknown formatter \"missing\"",
        "handlers.c.level: \"LOUD\" is not a level",
        "handlers.c.formatter: formatter \"f\" is invalid (see formatters.f)",
        "handlers.m.target: cycle through MemoryHandler targets: m → n → m",
        "handlers.p.\"()\": '()' factories cannot be mapped",
        "root.handlers[1]: unknown handler \"zz\"",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
}

/// logrotate's usual recipe (move the files, then SIGHUP): every file
/// handler starts a new file at the same path.
#[test]
fn sighup_reopens_every_kind_of_file_handler() {
    let dir = Dir::new();
    let kinds = [
        ("file", "FileHandler", ""),
        ("rotating", "RotatingFileHandler", "max_bytes = 1000000\nbackup_count = 2\n"),
        ("timed", "TimedRotatingFileHandler", "when = \"midnight\"\n"),
        ("watched", "WatchedFileHandler", ""),
    ];
    let mut cfg = String::new();
    for (name, class, extra) in kinds {
        cfg += &format!(
            "[handlers.{name}]\nclass = \"{class}\"\nfilename = {:?}\n{extra}\n",
            dir.path(&format!("{name}.log"))
        );
    }
    cfg += "[root]\nlevel = \"NOTSET\"\nhandlers = [\"file\", \"rotating\", \"timed\", \"watched\"]\n";
    let cfg = dir.write("hub.toml", &cfg);
    let hub = HubProc::start(&dir, &cfg);
    let s = hub.socket.to_str().unwrap().to_owned();
    assert!(run(&["send", "--socket", &s, "before"]).status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    for (name, _, _) in kinds {
        let log = dir.path(&format!("{name}.log"));
        while std::fs::read_to_string(&log).unwrap_or_default() != "before\n" {
            assert!(Instant::now() < deadline, "{name}.log was not written");
            std::thread::sleep(Duration::from_millis(10));
        }
        std::fs::rename(&log, dir.path(&format!("{name}.log.old"))).unwrap();
    }
    hub.signal(libc::SIGHUP);
    for (name, _, _) in kinds {
        while !dir.path(&format!("{name}.log")).exists() {
            assert!(Instant::now() < deadline, "{name}.log not reopened after SIGHUP:\n{}", hub.stderr());
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    assert!(run(&["send", "--socket", &s, "after"]).status.success());
    hub.stop();
    for (name, _, _) in kinds {
        let read = |suffix: &str| std::fs::read_to_string(dir.path(&format!("{name}.log{suffix}"))).unwrap();
        assert_eq!(read(".old"), "before\n", "{name}");
        assert_eq!(read(""), "after\n", "{name}");
    }
}
