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
        "handlers.p.\"()\": \"myproject.logging.Handler\" is Python code, which the hub cannot run",
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

/// Django's documented LOGGING example: what is Python code (the
/// RequireDebug filters, AdminEmailHandler, a custom formatter) is refused
/// with one message each that names it and says what to do; nothing is
/// reported about its arguments or about the handlers and loggers that
/// name it.
#[test]
fn check_config_refuses_python_code_once_per_construct_with_a_remedy() {
    let dir = Dir::new();
    let cfg = dir.write(
        "django.json",
        r#"{
  "version": 1,
  "disable_existing_loggers": false,
  "filters": {
    "require_debug_false": {"()": "django.utils.log.RequireDebugFalse"},
    "require_debug_true": {"()": "django.utils.log.RequireDebugTrue"}
  },
  "formatters": {
    "django.server": {"()": "django.utils.log.ServerFormatter", "format": "[{server_time}] {message}", "style": "{"}
  },
  "handlers": {
    "console": {"level": "INFO", "filters": ["require_debug_true"], "class": "logging.StreamHandler"},
    "django.server": {"level": "INFO", "class": "logging.StreamHandler", "formatter": "django.server"},
    "mail_admins": {"level": "ERROR", "filters": ["require_debug_false"], "class": "django.utils.log.AdminEmailHandler",
                    "include_html": true}
  },
  "loggers": {
    "django": {"handlers": ["console", "mail_admins"], "level": "INFO"},
    "django.server": {"handlers": ["django.server"], "level": "INFO", "propagate": false}
  }
}"#,
    );
    let out = run(&["check-config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().skip(1).map(str::trim).collect();
    let expected = [
        "formatters.\"django.server\".\"()\": \"django.utils.log.ServerFormatter\" is Python code",
        "filters.require_debug_false.\"()\": \"django.utils.log.RequireDebugFalse\" is Python code, which the hub cannot run: keep this filter in the Python process",
        "filters.require_debug_true.\"()\": \"django.utils.log.RequireDebugTrue\" is Python code",
        "handlers.mail_admins.class: \"django.utils.log.AdminEmailHandler\" is Python code, which the hub cannot run: keep this handler in the Python process",
    ];
    for (line, e) in lines.iter().zip(expected) {
        assert!(line.starts_with(e), "expected {e:?}, got {line:?} in:\n{err}");
    }
    assert_eq!(lines.len(), expected.len(), "one message per construct:\n{err}");
    assert!(lines[1].contains("settings.DEBUG") && lines[3].contains("SMTPHandler"), "{err}");
}

/// A YAML dictConfig: problems name their line, keys Python ignores are
/// warnings (named), and a YAML syntax error points at its line.
#[test]
fn check_config_reads_yaml_and_points_at_lines() {
    let dir = Dir::new();
    let good = dir.write(
        "logging.yaml",
        "version: 1\nproject: {name: shop}\nloggers:\n  gunicorn.error:\n    level: INFO\n    qualname: gunicorn.error\n",
    );
    let out = run(&["check-config", good.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("warning: line 2: project: ignored"), "{err}");
    assert!(err.contains("warning: line 6: loggers.\"gunicorn.error\".qualname: ignored"), "{err}");
    let bad = dir.write(
        "bad.yaml",
        "version: 1\nhandlers:\n  file:\n    class: logging.FileHandler\n    level: LOUD\n  mail:\n    class: myapp.Mailer\n",
    );
    let out = run(&["check-config", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for e in [
        "line 3: handlers.file.filename: missing",
        "line 5: handlers.file.level: \"LOUD\" is not a level",
        "line 7: handlers.mail.class: \"myapp.Mailer\" is Python code",
    ] {
        assert!(err.contains(e), "missing {e:?} in:\n{err}");
    }
    let broken = dir.write("broken.yml", "version: 1\nroot:\n  level: [DEBUG\n");
    let out = run(&["check-config", broken.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 4: not valid YAML") || err.contains("line 3: not valid YAML"), "{err}");
    // TOML stays strict: a typo there is an error.
    let toml = dir.write("hub.toml", "[loggers.app]\nlevel = \"INFO\"\nqualname = \"app\"\n");
    let out = run(&["check-config", toml.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("loggers.app.qualname: unknown key"));
}
