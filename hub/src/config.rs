//! Configuration: TOML shaped like Python's `logging.config.dictConfig`.
//!
//! Parsing is by hand over `toml::Value` rather than serde derives so that
//! every problem is collected (not just the first) and named by its key path,
//! which `logfunnel check-config` prints.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use logfunnel_protocol::{Level, parse_level};
use toml::{Table, Value};

use crate::formatter::{Formatter, Style};

/// The configuration used when none is given: every record to stderr.
pub const EMBEDDED_DEFAULT: &str = r#"
# logfunnel's embedded default: everything to stderr.
[formatters.default]
format = "%(asctime)s %(levelname)-8s %(name)s [%(process)d] %(message)s"

[handlers.console]
class = "StreamHandler"
stream = "ext://sys.stderr"
formatter = "default"

[root]
level = "NOTSET"
handlers = ["console"]
"#;

/// One problem in a configuration, with the key path it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Dotted key path, e.g. `handlers.file.filename`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in a configuration.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    /// Where the configuration came from (a file name, or "embedded default").
    pub source_name: String,
    /// The problems, in key order.
    pub issues: Vec<ConfigIssue>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.issues.len();
        write!(f, "{}: {n} problem{}", self.source_name, if n == 1 { "" } else { "s" })?;
        for issue in &self.issues {
            write!(f, "\n  {issue}")?;
        }
        Ok(())
    }
}

/// The listener queue's default capacity, in batches. Small on purpose:
/// under a flood every queue is full, and the batches in flight are the
/// hub's working set; 8 batches (with 4096-record handler queues) keep it
/// in cache, which measured 8 % less CPU per record than 64 (and 16384) —
/// see docs/BENCHMARKS.md. Clients buffer bursts in their own rings.
pub const DEFAULT_LISTENER_QUEUE: usize = 8;

/// A handler queue's default capacity, in records.
pub const DEFAULT_HANDLER_QUEUE: usize = 4096;

/// The `[hub]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct HubConfig {
    /// Socket path (`--socket` and `LOGFUNNEL_SOCKET` take precedence).
    pub socket: Option<PathBuf>,
    /// Permission bits of the socket file (default 0600).
    pub socket_mode: u32,
    /// Capacity of the listener queue, in batches (default [`DEFAULT_LISTENER_QUEUE`]).
    pub queue_capacity: usize,
    /// Access control and client limits (see `hub/src/access.rs`).
    pub access: crate::access::AccessConfig,
}

/// A named formatter.
#[derive(Debug, Clone)]
pub struct FormatterConfig {
    /// The compiled formatter.
    pub formatter: Formatter,
}

/// Python's `Filter(name)`: passes records of this logger and its children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterConfig {
    /// Logger name prefix ("" passes everything).
    pub name: String,
}

impl FilterConfig {
    /// Python's `Filter.filter` on a record's logger name.
    pub fn passes(&self, record_name: &str) -> bool {
        let n = &self.name;
        n.is_empty()
            || record_name == n
            || (record_name.starts_with(n.as_str()) && record_name.as_bytes()[n.len()] == b'.')
    }
}

/// What a handler queue does when it is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OverflowPolicy {
    /// Wait for room (backpressure up to the clients).
    #[default]
    Block,
    /// Drop the records that do not fit, and count them.
    DropNewest,
    /// Drop the oldest queued records to make room, and count them.
    DropOldest,
}

/// Which standard stream a StreamHandler writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StdStream {
    /// `ext://sys.stderr` (Python's default).
    Stderr,
    /// `ext://sys.stdout`.
    Stdout,
}

/// Where and how a file handler opens its file (Python's FileHandler arguments).
#[derive(Debug, Clone, PartialEq)]
pub struct FileOptions {
    /// Absolute path (relative names are resolved against the hub's
    /// working directory at load time, as Python's `abspath` does).
    pub filename: PathBuf,
    /// Mode `a` (append) rather than `w` (truncate at start).
    pub append: bool,
    /// Open on the first record rather than at start.
    pub delay: bool,
}

/// TimedRotatingFileHandler's `when`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// `S`: seconds.
    Seconds,
    /// `M`: minutes.
    Minutes,
    /// `H`: hours.
    Hours,
    /// `D`: days (counted from the start, not aligned to midnight).
    Days,
    /// `MIDNIGHT`: at midnight (or `at_time`).
    Midnight,
    /// `W0`–`W6`: weekly on that day (0 is Monday).
    Weekday(u8),
}

impl When {
    /// Python's parsing of `when` (case-insensitive), with its messages.
    pub fn parse(s: &str) -> Result<When, String> {
        let upper = s.to_ascii_uppercase();
        Ok(match upper.as_str() {
            "S" => When::Seconds,
            "M" => When::Minutes,
            "H" => When::Hours,
            "D" => When::Days,
            "MIDNIGHT" => When::Midnight,
            w if w.starts_with('W') => {
                if w.len() != 2 {
                    return Err(format!(
                        "You must specify a day for weekly rollover from 0 to 6 (0 is Monday): {upper}"
                    ));
                }
                match w.as_bytes()[1] {
                    d @ b'0'..=b'6' => When::Weekday(d - b'0'),
                    _ => return Err(format!("Invalid day specified for weekly rollover: {upper}")),
                }
            }
            _ => return Err(format!("Invalid rollover interval specified: {upper}")),
        })
    }
}

/// When a TimedRotatingFileHandler rolls over and what it keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// The unit (or `MIDNIGHT`, or a weekday).
    pub when: When,
    /// How many units per file (Python 3.11 ignores it for MIDNIGHT and Wn).
    pub interval: u32,
    /// Compute times in UTC instead of local time.
    pub utc: bool,
    /// Seconds after midnight for MIDNIGHT and Wn (`atTime`).
    pub at_time: Option<u32>,
    /// Backups kept (0 keeps all).
    pub backup_count: u32,
}

/// The class-specific part of a handler.
#[derive(Debug, Clone, PartialEq)]
pub enum HandlerKind {
    /// `logging.StreamHandler`.
    Stream {
        /// The stream.
        stream: StdStream,
    },
    /// `logging.FileHandler`.
    File(FileOptions),
    /// `logging.handlers.RotatingFileHandler`.
    RotatingFile {
        /// The file.
        file: FileOptions,
        /// Roll over before the file would reach this size (0: never).
        max_bytes: u64,
        /// Backups kept as `.1` … `.N` (0: never roll over).
        backup_count: u32,
    },
    /// `logging.handlers.TimedRotatingFileHandler`.
    TimedRotatingFile {
        /// The file (always opened in mode `a`).
        file: FileOptions,
        /// When to roll over.
        schedule: Schedule,
    },
    /// `logging.handlers.WatchedFileHandler`.
    WatchedFile(FileOptions),
    /// `logging.handlers.MemoryHandler`.
    Memory {
        /// Records held before they are all passed on.
        capacity: usize,
        /// A record at this level or above passes everything on at once.
        flush_level: Level,
        /// The handler that receives them.
        target: String,
        /// Python's `flushOnClose`. Accepted, but like Python 3.11's
        /// `logging.shutdown()`, the hub's shutdown passes held records on
        /// regardless.
        flush_on_close: bool,
    },
    /// `logging.NullHandler`.
    Null,
}

impl HandlerKind {
    /// The Python class name.
    pub fn class_name(&self) -> &'static str {
        match self {
            HandlerKind::Stream { .. } => "StreamHandler",
            HandlerKind::File(_) => "FileHandler",
            HandlerKind::RotatingFile { .. } => "RotatingFileHandler",
            HandlerKind::TimedRotatingFile { .. } => "TimedRotatingFileHandler",
            HandlerKind::WatchedFile(_) => "WatchedFileHandler",
            HandlerKind::Memory { .. } => "MemoryHandler",
            HandlerKind::Null => "NullHandler",
        }
    }

    /// The file a file handler writes.
    pub fn file(&self) -> Option<&FileOptions> {
        match self {
            HandlerKind::File(f) | HandlerKind::WatchedFile(f) => Some(f),
            HandlerKind::RotatingFile { file, .. } | HandlerKind::TimedRotatingFile { file, .. } => {
                Some(file)
            }
            HandlerKind::Stream { .. } | HandlerKind::Memory { .. } | HandlerKind::Null => None,
        }
    }
}

/// A named handler.
#[derive(Debug, Clone)]
pub struct HandlerConfig {
    /// Class and its options.
    pub kind: HandlerKind,
    /// Handler level (records below it are not given to it).
    pub level: Level,
    /// Formatter name, if any (Python's default is `%(message)s`).
    pub formatter: Option<String>,
    /// Filter names.
    pub filters: Vec<String>,
    /// Queue capacity in records (default [`DEFAULT_HANDLER_QUEUE`]).
    pub queue_capacity: usize,
    /// What happens when the queue is full.
    pub overflow: OverflowPolicy,
    /// Escape control characters in messages (default true; false = raw).
    pub escape_control_chars: bool,
}

/// The root logger or a named logger.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggerConfig {
    /// Level; `None` means NOTSET (defer to the parent; root defaults to WARNING).
    pub level: Option<Level>,
    /// Handler names.
    pub handlers: Vec<String>,
    /// Filter names.
    pub filters: Vec<String>,
    /// Whether records continue to the parent's handlers.
    pub propagate: bool,
}

/// A whole, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[hub]`.
    pub hub: HubConfig,
    /// `[formatters.*]`.
    pub formatters: BTreeMap<String, FormatterConfig>,
    /// `[filters.*]`.
    pub filters: BTreeMap<String, FilterConfig>,
    /// `[handlers.*]`.
    pub handlers: BTreeMap<String, HandlerConfig>,
    /// `[root]`.
    pub root: LoggerConfig,
    /// `[loggers.*]`.
    pub loggers: BTreeMap<String, LoggerConfig>,
}

impl Config {
    /// The embedded default (stderr, the default format).
    pub fn embedded_default() -> Config {
        Config::from_toml_str(EMBEDDED_DEFAULT, "embedded default")
            .expect("the embedded default configuration is valid")
    }

    /// Reads and validates a configuration file: TOML, or a Python
    /// dictConfig saved as JSON when the name ends in `.json`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            source_name: name.clone(),
            issues: vec![ConfigIssue { path: String::new(), message: format!("cannot read: {e}") }],
        })?;
        if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json")) {
            Config::from_json_str(&text, &name)
        } else {
            Config::from_toml_str(&text, &name)
        }
    }

    /// Parses and validates a Python dictConfig written as JSON (what
    /// `json.dump(LOGGING)` gives). The same keys as the TOML form are
    /// accepted; what only Python can do (`()` factories, `cfg://`
    /// references, `.` attributes) is an error naming the key.
    pub fn from_json_str(text: &str, source_name: &str) -> Result<Config, ConfigError> {
        let fail = |issues| ConfigError { source_name: source_name.to_owned(), issues };
        let json: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            fail(vec![ConfigIssue { path: String::new(), message: format!("not valid JSON: {e}") }])
        })?;
        let mut p = Parser { issues: Vec::new() };
        let table = match json_to_toml(&json, "", &mut p) {
            Some(Value::Table(t)) => t,
            _ => {
                p.issue("", "a dictConfig must be a JSON object");
                Table::new()
            }
        };
        let config = p.config(&table);
        if p.issues.is_empty() { Ok(config) } else { Err(fail(p.issues)) }
    }

    /// Parses and validates TOML text; `source_name` names it in errors.
    pub fn from_toml_str(text: &str, source_name: &str) -> Result<Config, ConfigError> {
        let fail = |issues| ConfigError { source_name: source_name.to_owned(), issues };
        let table: Table = text.parse::<Table>().map_err(|e| {
            fail(vec![ConfigIssue {
                path: String::new(),
                message: format!("not valid TOML: {}", e.to_string().trim_end()),
            }])
        })?;
        let mut p = Parser { issues: Vec::new() };
        let config = p.config(&table);
        if p.issues.is_empty() { Ok(config) } else { Err(fail(p.issues)) }
    }
}

struct Parser {
    issues: Vec<ConfigIssue>,
}

/// Accepted spellings of a key: snake_case first, then Python's names.
type Keys = &'static [&'static str];

fn join(path: &str, key: &str) -> String {
    let quoted = if key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        key.to_owned()
    } else {
        format!("{key:?}")
    };
    if path.is_empty() { quoted } else { format!("{path}.{quoted}") }
}

impl Parser {
    fn issue(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.issues.push(ConfigIssue { path: path.into(), message: message.into() });
    }

    /// Reports keys of `table` not in `allowed`.
    fn unknown_keys(&mut self, path: &str, table: &Table, allowed: &[Keys]) {
        for key in table.keys() {
            if !allowed.iter().any(|spellings| spellings.contains(&key.as_str())) {
                let names: Vec<&str> = allowed.iter().map(|s| s[0]).collect();
                self.issue(join(path, key), format!("unknown key (expected one of: {})", names.join(", ")));
            }
        }
    }

    fn get<'t>(&mut self, path: &str, table: &'t Table, keys: Keys) -> Option<(String, &'t Value)> {
        let mut found = None;
        for k in keys {
            if let Some(v) = table.get(*k) {
                if let Some((first, _)) = &found {
                    self.issue(join(path, k), format!("given twice (also as {first})"));
                } else {
                    found = Some((join(path, k), v));
                }
            }
        }
        found
    }

    fn string(&mut self, path: &str, table: &Table, keys: Keys) -> Option<String> {
        let (p, v) = self.get(path, table, keys)?;
        match v {
            Value::String(s) => Some(s.clone()),
            other => {
                self.issue(p, format!("expected a string, found {}", other.type_str()));
                None
            }
        }
    }

    fn boolean(&mut self, path: &str, table: &Table, keys: Keys) -> Option<bool> {
        let (p, v) = self.get(path, table, keys)?;
        match v {
            Value::Boolean(b) => Some(*b),
            other => {
                self.issue(p, format!("expected true or false, found {}", other.type_str()));
                None
            }
        }
    }

    fn positive(&mut self, path: &str, table: &Table, keys: Keys) -> Option<usize> {
        let (p, v) = self.get(path, table, keys)?;
        match v {
            Value::Integer(i) if *i > 0 => Some(*i as usize),
            other => {
                self.issue(p, format!("expected a positive integer, found {other}"));
                None
            }
        }
    }

    fn non_negative(&mut self, path: &str, table: &Table, keys: Keys) -> Option<u64> {
        let (p, v) = self.get(path, table, keys)?;
        match v {
            Value::Integer(i) if *i >= 0 => Some(*i as u64),
            other => {
                self.issue(p, format!("expected a number of bytes (0 or more), found {other}"));
                None
            }
        }
    }

    fn count(&mut self, path: &str, table: &Table, keys: Keys) -> Option<u32> {
        let (p, v) = self.get(path, table, keys)?;
        match v {
            Value::Integer(i) if (0..=i64::from(u32::MAX)).contains(i) => Some(*i as u32),
            other => {
                self.issue(p, format!("expected a count (0 or more), found {other}"));
                None
            }
        }
    }

    fn level(&mut self, path: &str, table: &Table) -> Option<Level> {
        self.level_at(path, table, &["level"])
    }

    fn level_at(&mut self, path: &str, table: &Table, keys: Keys) -> Option<Level> {
        let (p, v) = self.get(path, table, keys)?;
        let parsed = match v {
            Value::String(s) => parse_level(s),
            Value::Integer(i) => u32::try_from(*i).ok().map(Level),
            _ => None,
        };
        if parsed.is_none() {
            self.issue(
                p,
                format!("{v} is not a level (use NOTSET, DEBUG, INFO, WARNING, ERROR, CRITICAL or a number)"),
            );
        }
        parsed
    }

    fn string_list(&mut self, path: &str, table: &Table, keys: Keys) -> Vec<String> {
        let Some((p, v)) = self.get(path, table, keys) else { return Vec::new() };
        match v {
            Value::Array(items) => items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| match item {
                    Value::String(s) => Some(s.clone()),
                    other => {
                        self.issue(format!("{p}[{i}]"), format!("expected a name, found {other}"));
                        None
                    }
                })
                .collect(),
            other => {
                self.issue(p, format!("expected a list of names, found {}", other.type_str()));
                Vec::new()
            }
        }
    }

    fn section<'t>(&mut self, table: &'t Table, key: &str) -> Option<&'t Table> {
        match table.get(key)? {
            Value::Table(t) => Some(t),
            other => {
                self.issue(key, format!("expected a table, found {}", other.type_str()));
                None
            }
        }
    }

    /// The named sub-tables of a section (`[handlers.NAME]`).
    fn named<'t>(&mut self, table: &'t Table, key: &str) -> Vec<(String, &'t Table)> {
        let Some(section) = self.section(table, key) else { return Vec::new() };
        section
            .iter()
            .filter_map(|(name, v)| match v {
                Value::Table(t) => Some((name.clone(), t)),
                other => {
                    self.issue(join(key, name), format!("expected a table, found {}", other.type_str()));
                    None
                }
            })
            .collect()
    }

    fn config(&mut self, table: &Table) -> Config {
        self.unknown_keys(
            "",
            table,
            &[
                &["hub"],
                &["formatters"],
                &["filters"],
                &["handlers"],
                &["root"],
                &["loggers"],
                &["version"],
                &["disable_existing_loggers"],
                &["incremental"],
            ],
        );
        if let Some(v) = table.get("version")
            && v.as_integer() != Some(1)
        {
            self.issue("version", format!("dictConfig version must be 1, found {v}"));
        }
        if let Some(v) = table.get("incremental")
            && v.as_bool() != Some(false)
        {
            self.issue(
                "incremental",
                "incremental configuration is not supported (a hub config is always complete)",
            );
        }
        let hub = self.hub(table);
        let formatters = self.formatters(table);
        let filters = self.filters(table);
        let handlers = self.handlers(table, &formatters, &filters);
        self.memory_targets(&handlers);
        let root = match self.section(table, "root") {
            Some(t) => self.logger("root", t, true, &handlers, &filters),
            None => LoggerConfig { level: None, handlers: Vec::new(), filters: Vec::new(), propagate: false },
        };
        let mut loggers = BTreeMap::new();
        for (name, t) in self.named(table, "loggers") {
            let path = join("loggers", &name);
            let logger = self.logger(&path, t, false, &handlers, &filters);
            loggers.insert(name, logger);
        }
        Config { hub, formatters, filters, handlers, root, loggers }
    }

    fn hub(&mut self, table: &Table) -> HubConfig {
        let mut hub = HubConfig {
            socket: None,
            socket_mode: 0o600,
            queue_capacity: DEFAULT_LISTENER_QUEUE,
            access: crate::access::AccessConfig::default(),
        };
        let Some(t) = self.section(table, "hub") else { return hub };
        let mut allowed: Vec<Keys> = vec![&["socket"], &["socket_mode"], &["queue_capacity"]];
        allowed.extend_from_slice(crate::access::KEYS);
        self.unknown_keys("hub", t, &allowed);
        match crate::access::AccessConfig::parse(t) {
            Ok(a) => hub.access = a,
            Err(issues) => {
                for (key, message) in issues {
                    self.issue(join("hub", key), message);
                }
            }
        }
        hub.socket = self.string("hub", t, &["socket"]).map(PathBuf::from);
        if let Some(sock) = &hub.socket
            && sock.to_string_lossy().starts_with(['@', '\0'])
        {
            // Linux's abstract namespace has no permissions: any local process could connect.
            self.issue(
                "hub.socket",
                "abstract socket names are refused (no permissions apply to them); use a file path in a private directory",
            );
        }
        if let Some((p, v)) = self.get("hub", t, &["socket_mode"]) {
            let mode = match v {
                Value::String(s) => u32::from_str_radix(s.trim_start_matches("0o"), 8).ok(),
                Value::Integer(i) => u32::try_from(*i).ok(),
                _ => None,
            };
            match mode {
                Some(m) if m <= 0o777 => hub.socket_mode = m,
                _ => {
                    self.issue(p, format!("{v} is not a permission mode (write it in octal, e.g. \"0660\")"))
                }
            }
        }
        if let Some(n) = self.positive("hub", t, &["queue_capacity"]) {
            hub.queue_capacity = n;
        }
        hub
    }

    fn formatters(&mut self, table: &Table) -> BTreeMap<String, FormatterConfig> {
        let mut out = BTreeMap::new();
        for (name, t) in self.named(table, "formatters") {
            let path = join("formatters", &name);
            self.unknown_keys(
                &path,
                t,
                &[&["format", "fmt"], &["datefmt"], &["style"], &["utc"], &["validate"], &["class", "()"]],
            );
            if let Some(class) = self.string(&path, t, &["class", "()"])
                && !matches!(class.as_str(), "logging.Formatter" | "Formatter")
            {
                self.issue(
                    join(&path, "class"),
                    format!("unknown formatter class {class:?} (only logging.Formatter)"),
                );
            }
            let format = self.string(&path, t, &["format", "fmt"]);
            let datefmt = self.string(&path, t, &["datefmt"]);
            let style = match self.string(&path, t, &["style"]) {
                None => Some(Style::Percent),
                Some(s) => {
                    let st = Style::parse(&s);
                    if st.is_none() {
                        self.issue(
                            join(&path, "style"),
                            format!("{s:?} is not a style (use \"%\", \"{{\" or \"$\")"),
                        );
                    }
                    st
                }
            };
            let utc = self.boolean(&path, t, &["utc"]).unwrap_or(false);
            let _ = self.boolean(&path, t, &["validate"]);
            let Some(style) = style else { continue };
            match Formatter::new(format.as_deref(), datefmt.as_deref(), style) {
                Ok(f) => {
                    out.insert(name, FormatterConfig { formatter: f.with_utc(utc) });
                }
                Err(e) => self.issue(join(&path, "format"), e.to_string()),
            }
        }
        out
    }

    fn filters(&mut self, table: &Table) -> BTreeMap<String, FilterConfig> {
        let mut out = BTreeMap::new();
        for (name, t) in self.named(table, "filters") {
            let path = join("filters", &name);
            self.unknown_keys(&path, t, &[&["name"]]);
            let prefix = self.string(&path, t, &["name"]).unwrap_or_default();
            out.insert(name, FilterConfig { name: prefix });
        }
        out
    }

    fn handlers(
        &mut self,
        table: &Table,
        formatters: &BTreeMap<String, FormatterConfig>,
        filters: &BTreeMap<String, FilterConfig>,
    ) -> BTreeMap<String, HandlerConfig> {
        let mut out = BTreeMap::new();
        for (name, t) in self.named(table, "handlers") {
            let path = join("handlers", &name);
            let common: [Keys; 7] = [
                &["class"],
                &["level"],
                &["formatter"],
                &["filters"],
                &["queue_capacity"],
                &["overflow"],
                &["escape_control_chars"],
            ];
            let Some(class) = self.string(&path, t, &["class"]) else {
                if !t.contains_key("class") {
                    self.issue(join(&path, "class"), "missing (e.g. class = \"FileHandler\")");
                }
                continue;
            };
            let short =
                class.strip_prefix("logging.handlers.").or(class.strip_prefix("logging.")).unwrap_or(&class);
            let (kind, extra): (Option<HandlerKind>, Vec<Keys>) = match short {
                "StreamHandler" => {
                    let stream = match self.string(&path, t, &["stream"]).as_deref() {
                        None | Some("ext://sys.stderr") | Some("stderr") => Some(StdStream::Stderr),
                        Some("ext://sys.stdout") | Some("stdout") => Some(StdStream::Stdout),
                        Some(other) => {
                            self.issue(
                                join(&path, "stream"),
                                format!("{other:?} is not a stream (use \"ext://sys.stderr\" or \"ext://sys.stdout\")"),
                            );
                            None
                        }
                    };
                    (stream.map(|stream| HandlerKind::Stream { stream }), vec![&["stream"]])
                }
                "FileHandler" => {
                    (self.file_options(&path, t, true).map(HandlerKind::File), FILE_KEYS.to_vec())
                }
                "WatchedFileHandler" => {
                    (self.file_options(&path, t, true).map(HandlerKind::WatchedFile), FILE_KEYS.to_vec())
                }
                "RotatingFileHandler" => {
                    let file = self.file_options(&path, t, true);
                    let max_bytes = self.non_negative(&path, t, &["max_bytes", "maxBytes"]).unwrap_or(0);
                    let backup_count = self.count(&path, t, &["backup_count", "backupCount"]).unwrap_or(0);
                    let mut keys = FILE_KEYS.to_vec();
                    keys.extend([&["max_bytes", "maxBytes"][..], &["backup_count", "backupCount"]]);
                    (file.map(|file| HandlerKind::RotatingFile { file, max_bytes, backup_count }), keys)
                }
                "TimedRotatingFileHandler" => {
                    let file = self.file_options(&path, t, false);
                    let schedule = self.schedule(&path, t);
                    let mut keys: Vec<Keys> = FILE_KEYS.iter().copied().filter(|k| k[0] != "mode").collect();
                    keys.extend([
                        &["when"][..],
                        &["interval"],
                        &["utc"],
                        &["at_time", "atTime"],
                        &["backup_count", "backupCount"],
                    ]);
                    let kind = match (file, schedule) {
                        (Some(file), Some(schedule)) => {
                            Some(HandlerKind::TimedRotatingFile { file, schedule })
                        }
                        _ => None,
                    };
                    (kind, keys)
                }
                "MemoryHandler" => {
                    let capacity = self.positive(&path, t, &["capacity"]);
                    if capacity.is_none() && !t.contains_key("capacity") {
                        self.issue(join(&path, "capacity"), "missing (how many records to hold)");
                    }
                    let flush_level =
                        self.level_at(&path, t, &["flush_level", "flushLevel"]).unwrap_or(Level::ERROR);
                    let target = self.string(&path, t, &["target"]);
                    if let Some(target) = &target
                        && !table
                            .get("handlers")
                            .and_then(Value::as_table)
                            .is_some_and(|h| h.contains_key(target))
                    {
                        self.issue(join(&path, "target"), format!("unknown handler {target:?}"));
                    }
                    if target.is_none() && !t.contains_key("target") {
                        self.issue(
                            join(&path, "target"),
                            "missing (the handler that receives the records; the hub cannot set one later)",
                        );
                    }
                    let flush_on_close =
                        self.boolean(&path, t, &["flush_on_close", "flushOnClose"]).unwrap_or(true);
                    let kind = match (capacity, target) {
                        (Some(capacity), Some(target)) => {
                            Some(HandlerKind::Memory { capacity, flush_level, target, flush_on_close })
                        }
                        _ => None,
                    };
                    let keys: Vec<Keys> = vec![
                        &["capacity"],
                        &["flush_level", "flushLevel"],
                        &["target"],
                        &["flush_on_close", "flushOnClose"],
                    ];
                    (kind, keys)
                }
                "NullHandler" => (Some(HandlerKind::Null), vec![]),
                _ => {
                    self.issue(
                        join(&path, "class"),
                        format!(
                            "unknown handler class {class:?} (supported: {})",
                            SUPPORTED_CLASSES.join(", ")
                        ),
                    );
                    continue;
                }
            };
            let mut allowed: Vec<Keys> = common.to_vec();
            allowed.extend(extra);
            self.unknown_keys(&path, t, &allowed);
            let level = self.level(&path, t).unwrap_or(Level::NOTSET);
            let formatter = self.string(&path, t, &["formatter"]);
            if let Some(f) = &formatter
                && !formatters.contains_key(f)
            {
                let defined =
                    table.get("formatters").and_then(Value::as_table).is_some_and(|t| t.contains_key(f));
                let message = if defined {
                    // Named here too, so a bad format string points at every
                    // handler it would have broken.
                    format!("formatter {f:?} is invalid (see {})", join("formatters", f))
                } else {
                    format!("unknown formatter {f:?}")
                };
                self.issue(join(&path, "formatter"), message);
            }
            let handler_filters = self.string_list(&path, t, &["filters"]);
            self.check_refs(&join(&path, "filters"), &handler_filters, filters, "filter");
            let queue_capacity =
                self.positive(&path, t, &["queue_capacity"]).unwrap_or(DEFAULT_HANDLER_QUEUE);
            let overflow = match self.string(&path, t, &["overflow"]).as_deref() {
                None | Some("block") => OverflowPolicy::Block,
                Some("drop_newest") => OverflowPolicy::DropNewest,
                Some("drop_oldest") => OverflowPolicy::DropOldest,
                Some(other) => {
                    self.issue(
                        join(&path, "overflow"),
                        format!(
                            "{other:?} is not a policy (use \"block\", \"drop_newest\" or \"drop_oldest\")"
                        ),
                    );
                    OverflowPolicy::Block
                }
            };
            let escape_control_chars = self.boolean(&path, t, &["escape_control_chars"]).unwrap_or(true);
            if let Some(kind) = kind {
                out.insert(
                    name,
                    HandlerConfig {
                        kind,
                        level,
                        formatter,
                        filters: handler_filters,
                        queue_capacity,
                        overflow,
                        escape_control_chars,
                    },
                );
            }
        }
        out
    }

    /// FileHandler's arguments (`allow_mode`: TimedRotatingFileHandler has none).
    fn file_options(&mut self, path: &str, t: &Table, allow_mode: bool) -> Option<FileOptions> {
        let filename = self.string(path, t, &["filename"]);
        if filename.is_none() && !t.contains_key("filename") {
            self.issue(join(path, "filename"), "missing (a file handler needs a file name)");
        }
        let append = if !allow_mode {
            true
        } else {
            match self.string(path, t, &["mode"]).as_deref() {
                None | Some("a") => true,
                Some("w") => false,
                Some(other) => {
                    self.issue(
                        join(path, "mode"),
                        format!("{other:?} is not supported (use \"a\" or \"w\")"),
                    );
                    true
                }
            }
        };
        if let Some(enc) = self.string(path, t, &["encoding"])
            && !matches!(enc.to_ascii_lowercase().replace('_', "-").as_str(), "utf-8" | "utf8" | "locale")
        {
            self.issue(join(path, "encoding"), format!("{enc:?} is not supported: logfunnel writes UTF-8"));
        }
        if let Some(errors) = self.string(path, t, &["errors"])
            && errors != "strict"
        {
            self.issue(
                join(path, "errors"),
                format!("{errors:?} is not supported (records are valid UTF-8 already)"),
            );
        }
        let delay = self.boolean(path, t, &["delay"]).unwrap_or(false);
        let filename = filename?;
        if filename.is_empty() {
            self.issue(join(path, "filename"), "empty file name");
            return None;
        }
        let filename = absolute(Path::new(&filename));
        // Python opens the file when the handler is configured (unless
        // `delay`), so a missing directory is a configuration error there too.
        if !delay
            && let Some(dir) = filename.parent()
            && !dir.is_dir()
        {
            self.issue(join(path, "filename"), format!("directory {} does not exist", dir.display()));
        }
        Some(FileOptions { filename, append, delay })
    }

    /// TimedRotatingFileHandler's `when`, `interval`, `utc`, `at_time`, `backup_count`.
    fn schedule(&mut self, path: &str, t: &Table) -> Option<Schedule> {
        let when = match self.string(path, t, &["when"]) {
            None => Some(When::Hours),
            Some(w) => When::parse(&w).map_err(|e| self.issue(join(path, "when"), e)).ok(),
        };
        let interval = match self.get(path, t, &["interval"]) {
            None => Some(1),
            Some((_, Value::Integer(i))) if (1..=i64::from(u32::MAX)).contains(i) => Some(*i as u32),
            Some((p, v)) => {
                self.issue(p, format!("expected a positive number of units, found {v}"));
                None
            }
        };
        let utc = self.boolean(path, t, &["utc"]).unwrap_or(false);
        let at_time = match self.get(path, t, &["at_time", "atTime"]) {
            None => None,
            Some((p, v)) => {
                let parsed = match v {
                    Value::String(s) => parse_time_of_day(s),
                    Value::Datetime(d) if d.date.is_none() && d.offset.is_none() => d.time.map(|t| {
                        u32::from(t.hour) * 3600 + u32::from(t.minute) * 60 + u32::from(t.second.unwrap_or(0))
                    }),
                    _ => None,
                };
                if parsed.is_none() {
                    self.issue(p, format!("{v} is not a time of day (write \"HH:MM\" or \"HH:MM:SS\")"));
                }
                parsed
            }
        };
        let backup_count = self.count(path, t, &["backup_count", "backupCount"]).unwrap_or(0);
        Some(Schedule { when: when?, interval: interval?, utc, at_time, backup_count })
    }

    /// No chain of MemoryHandler targets loops.
    fn memory_targets(&mut self, handlers: &BTreeMap<String, HandlerConfig>) {
        let target_of = |name: &str| match &handlers.get(name)?.kind {
            HandlerKind::Memory { target, .. } => Some(target.as_str()),
            _ => None,
        };
        for name in handlers.keys() {
            let Some(target) = target_of(name) else { continue };
            let path = join(&join("handlers", name), "target");
            if !handlers.contains_key(target) {
                continue; // reported where it was parsed
            }
            let mut chain = vec![name.as_str()];
            let mut cur = target;
            loop {
                if let Some(start) = chain.iter().position(|n| *n == cur) {
                    // Reported once, at the loop's first member in name order.
                    let members = &chain[start..];
                    if start == 0 && members.iter().all(|m| name.as_str() <= *m) {
                        let mut shown: Vec<&str> = members.to_vec();
                        shown.push(cur);
                        self.issue(
                            path,
                            format!("cycle through MemoryHandler targets: {}", shown.join(" → ")),
                        );
                    }
                    break;
                }
                chain.push(cur);
                match target_of(cur) {
                    Some(next) if handlers.contains_key(next) => cur = next,
                    _ => break,
                }
            }
        }
    }

    fn check_refs<T>(&mut self, path: &str, names: &[String], known: &BTreeMap<String, T>, what: &str) {
        for (i, n) in names.iter().enumerate() {
            if !known.contains_key(n) {
                self.issue(format!("{path}[{i}]"), format!("unknown {what} {n:?}"));
            }
        }
    }

    fn logger(
        &mut self,
        path: &str,
        t: &Table,
        is_root: bool,
        handlers: &BTreeMap<String, HandlerConfig>,
        filters: &BTreeMap<String, FilterConfig>,
    ) -> LoggerConfig {
        let mut allowed: Vec<Keys> = vec![&["level"], &["handlers"], &["filters"]];
        if !is_root {
            allowed.push(&["propagate"]);
        }
        self.unknown_keys(path, t, &allowed);
        let level = self.level(path, t);
        let hs = self.string_list(path, t, &["handlers"]);
        // A handler that failed to parse was already reported; only names
        // that appear nowhere in [handlers] are unknown.
        for (i, h) in hs.iter().enumerate() {
            if !handlers.contains_key(h)
                && !self.issues.iter().any(|x| x.path.starts_with(&join("handlers", h)))
            {
                self.issue(format!("{}[{i}]", join(path, "handlers")), format!("unknown handler {h:?}"));
            }
        }
        let fs = self.string_list(path, t, &["filters"]);
        self.check_refs(&join(path, "filters"), &fs, filters, "filter");
        let propagate = if is_root { false } else { self.boolean(path, t, &["propagate"]).unwrap_or(true) };
        LoggerConfig { level, handlers: hs, filters: fs, propagate }
    }
}

/// JSON → TOML values, reporting what Python alone could interpret.
/// `null` counts as absent, as Python's defaults would apply.
fn json_to_toml(v: &serde_json::Value, path: &str, p: &mut Parser) -> Option<Value> {
    use serde_json::Value as J;
    Some(match v {
        J::Null => return None,
        J::Bool(b) => Value::Boolean(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        J::String(s) => {
            if s.starts_with("cfg://") {
                p.issue(path, format!("{s:?}: cfg:// references are not supported (write the value itself)"));
            }
            Value::String(s.clone())
        }
        J::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| json_to_toml(item, &format!("{path}[{i}]"), p))
                .collect(),
        ),
        J::Object(map) => {
            let mut t = Table::new();
            for (k, item) in map {
                let key_path = join(path, k);
                match k.as_str() {
                    "()" if !path.starts_with("formatters") => {
                        p.issue(key_path, "'()' factories cannot be mapped: logfunnel runs no Python code");
                        continue;
                    }
                    "." => {
                        p.issue(key_path, "'.' attribute settings cannot be mapped");
                        continue;
                    }
                    _ => {}
                }
                if let Some(value) = json_to_toml(item, &key_path, p) {
                    t.insert(k.clone(), value);
                }
            }
            Value::Table(t)
        }
    })
}

/// The handler classes a configuration may name.
const SUPPORTED_CLASSES: &[&str] = &[
    "StreamHandler",
    "FileHandler",
    "RotatingFileHandler",
    "TimedRotatingFileHandler",
    "WatchedFileHandler",
    "MemoryHandler",
    "NullHandler",
];

/// FileHandler's keys, shared by the file handlers.
const FILE_KEYS: &[Keys] = &[&["filename"], &["mode"], &["encoding"], &["delay"], &["errors"]];

/// `"HH:MM"` or `"HH:MM:SS"` → seconds after midnight.
fn parse_time_of_day(s: &str) -> Option<u32> {
    let parts: Vec<&str> = s.split(':').collect();
    if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.len() != 2) {
        return None;
    }
    let n: Vec<u32> = parts.iter().map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let (h, m, sec) = (n[0], n[1], n.get(2).copied().unwrap_or(0));
    (h < 24 && m < 60 && sec < 60).then_some(h * 3600 + m * 60 + sec)
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issues(text: &str) -> Vec<String> {
        match Config::from_toml_str(text, "test") {
            Ok(_) => Vec::new(),
            Err(e) => e.issues.iter().map(|i| i.to_string()).collect(),
        }
    }

    #[test]
    fn the_embedded_default_and_the_design_example_are_valid() {
        // DESIGN.md's example, with the file in the working directory (a
        // missing directory is an error of its own, tested below).
        let c = Config::embedded_default();
        assert_eq!(c.root.handlers, ["console"]);
        let design = r#"
[hub]
socket = "/run/app/logfunnel.sock"
socket_mode = "0600"
[formatters.plain]
format = "%(asctime)s %(levelname)-8s %(name)s [%(process)d] %(message)s"
datefmt = "%Y-%m-%d %H:%M:%S"
[filters.db_only]
name = "app.db"
[handlers.file]
class = "logging.FileHandler"
filename = "app.log"
level = "INFO"
formatter = "plain"
filters = ["db_only"]
[root]
level = "DEBUG"
handlers = ["file"]
[loggers."app.db"]
level = "WARNING"
handlers = ["file"]
propagate = false
"#;
        let c = Config::from_toml_str(design, "design").unwrap();
        assert_eq!(c.hub.socket_mode, 0o600);
        assert_eq!(c.loggers["app.db"].level, Some(Level::WARNING));
        assert!(!c.loggers["app.db"].propagate);
        assert!(
            matches!(&c.handlers["file"].kind, HandlerKind::File(FileOptions { filename, append: true, .. }) if filename.is_absolute())
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_key_path() {
        let got = issues(
            r#"
[handlers.a]
class = "RotatingFileHandlerX"
[handlers.b]
class = "FileHandler"
formatter = "nope"
level = "LOUD"
filenme = "x.log"
[root]
handlers = ["a", "b", "c"]
level = "INFO"
"#,
        );
        let expect = [
            "handlers.a.class: unknown handler class",
            "handlers.b.filename: missing",
            "handlers.b.filenme: unknown key",
            "handlers.b.level: \"LOUD\" is not a level",
            "handlers.b.formatter: unknown formatter \"nope\"",
            "root.handlers[2]: unknown handler \"c\"",
        ];
        for e in expect {
            assert!(got.iter().any(|g| g.starts_with(e)), "missing {e:?} in {got:#?}");
        }
        assert_eq!(got.len(), expect.len(), "{got:#?}");
    }

    #[test]
    fn bad_toml_and_bad_values_are_errors_not_panics() {
        assert!(issues("[handlers")[0].starts_with("not valid TOML"));
        assert!(issues("[hub]\nsocket_mode = \"9999\"")[0].starts_with("hub.socket_mode:"));
        assert!(
            issues("[handlers.x]\nclass = \"NullHandler\"\noverflow = \"maybe\"")[0]
                .starts_with("handlers.x.overflow:")
        );
        assert!(issues("version = 2")[0].starts_with("version:"));
        let missing = issues("[handlers.f]\nclass = \"FileHandler\"\nfilename = \"/no/such/dir/x.log\"");
        assert_eq!(missing, ["handlers.f.filename: directory /no/such/dir does not exist"]);
        assert!(
            issues("[handlers.f]\nclass = \"FileHandler\"\nfilename = \"/no/such/dir/x.log\"\ndelay = true")
                .is_empty()
        );
    }

    #[test]
    fn file_handler_options_are_checked() {
        let got = issues(
            r#"
[formatters.bad]
format = "%(message)q"
[handlers.r]
class = "logging.handlers.RotatingFileHandler"
filename = "r.log"
maxBytes = -1
backup_count = 2
backupCount = 3
formatter = "bad"
[handlers.t]
class = "TimedRotatingFileHandler"
filename = "t.log"
when = "W7"
interval = 0
at_time = "25:00"
mode = "w"
[handlers.t2]
class = "TimedRotatingFileHandler"
filename = "t.log"
when = "fortnight"
[handlers.w]
class = "WatchedFileHandler"
"#,
        );
        let expect = [
            "formatters.bad.format:",
            "handlers.r.maxBytes: expected a number of bytes",
            "handlers.r.backupCount: given twice (also as handlers.r.backup_count)",
            "handlers.r.formatter: formatter \"bad\" is invalid (see formatters.bad)",
            "handlers.t.when: Invalid day specified for weekly rollover: W7",
            "handlers.t.interval: expected a positive number of units, found 0",
            "handlers.t.at_time: \"25:00\" is not a time of day",
            "handlers.t.mode: unknown key",
            "handlers.t2.when: Invalid rollover interval specified: FORTNIGHT",
            "handlers.w.filename: missing",
        ];
        for e in expect {
            assert!(got.iter().any(|g| g.starts_with(e)), "missing {e:?} in {got:#?}");
        }
        assert_eq!(got.len(), expect.len(), "{got:#?}");
        let ok = Config::from_toml_str(
            "[handlers.t]\nclass = \"TimedRotatingFileHandler\"\nfilename = \"t.log\"\nwhen = \"midnight\"\nat_time = 04:30:00\nbackupCount = 7\n",
            "test",
        )
        .unwrap();
        let HandlerKind::TimedRotatingFile { schedule, .. } = &ok.handlers["t"].kind else { panic!() };
        assert_eq!(
            schedule,
            &Schedule {
                when: When::Midnight,
                interval: 1,
                utc: false,
                at_time: Some(4 * 3600 + 1800),
                backup_count: 7
            }
        );
    }

    #[test]
    fn a_python_dictconfig_in_json_is_accepted_and_what_cannot_map_is_named() {
        let json = r#"{
  "version": 1,
  "disable_existing_loggers": false,
  "formatters": {"std": {"format": "%(asctime)s %(levelname)s %(message)s", "datefmt": null}},
  "handlers": {
    "file": {"class": "logging.handlers.RotatingFileHandler", "filename": "app.log",
             "maxBytes": 1048576, "backupCount": 5, "formatter": "std", "level": "INFO"},
    "console": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout"}
  },
  "loggers": {"app": {"handlers": ["file"], "level": 10, "propagate": false}},
  "root": {"handlers": ["console"], "level": "WARNING"}
}"#;
        let c = Config::from_json_str(json, "logging.json").unwrap();
        assert!(matches!(
            c.handlers["file"].kind,
            HandlerKind::RotatingFile { max_bytes: 1048576, backup_count: 5, .. }
        ));
        assert_eq!(c.loggers["app"].level, Some(Level::DEBUG));
        let bad = r#"{"version": 1,
  "handlers": {"h": {"()": "myapp.MyHandler"},
               "m": {"class": "logging.handlers.SMTPHandlerX", ".": {"x": 1}},
               "f": {"class": "logging.FileHandler", "filename": "x.log", "level": "cfg://handlers.h.level"}},
  "root": {"handlers": ["h"]}}"#;
        let got: Vec<String> = match Config::from_json_str(bad, "bad.json") {
            Err(e) => e.issues.iter().map(|i| i.to_string()).collect(),
            Ok(_) => panic!("accepted"),
        };
        for e in [
            "handlers.h.\"()\": '()' factories cannot be mapped",
            "handlers.h.class: missing",
            "handlers.m.\".\": '.' attribute settings cannot be mapped",
            "handlers.m.class: unknown handler class \"logging.handlers.SMTPHandlerX\"",
            "handlers.f.level: \"cfg://handlers.h.level\": cfg:// references are not supported",
        ] {
            assert!(got.iter().any(|g| g.starts_with(e)), "missing {e:?} in {got:#?}");
        }
        assert!(Config::from_json_str("[1]", "x.json").is_err());
        assert!(
            Config::from_json_str("{", "x.json").unwrap_err().issues[0].message.starts_with("not valid JSON")
        );
    }

    #[test]
    fn memory_handler_targets_are_checked() {
        let got = issues(
            r#"
[handlers.a]
class = "MemoryHandler"
capacity = 10
target = "b"
[handlers.b]
class = "logging.handlers.MemoryHandler"
capacity = 10
flushLevel = "WARNING"
target = "c"
[handlers.c]
class = "MemoryHandler"
capacity = 5
target = "a"
[handlers.d]
class = "MemoryHandler"
capacity = 0
target = "nowhere"
[handlers.e]
class = "MemoryHandler"
target = "d"
[handlers.self]
class = "MemoryHandler"
capacity = 1
target = "self"
"#,
        );
        let expect = [
            "handlers.a.target: cycle through MemoryHandler targets: a → b → c → a",
            "handlers.d.capacity: expected a positive integer, found 0",
            "handlers.d.target: unknown handler \"nowhere\"",
            "handlers.e.capacity: missing",
            "handlers.self.target: cycle through MemoryHandler targets: self → self",
        ];
        for e in expect {
            assert!(got.iter().any(|g| g.starts_with(e)), "missing {e:?} in {got:#?}");
        }
        assert_eq!(got.len(), expect.len(), "{got:#?}");
    }

    #[test]
    fn python_filter_semantics() {
        let f = FilterConfig { name: "A.B".into() };
        assert!(f.passes("A.B"));
        assert!(f.passes("A.B.C"));
        assert!(!f.passes("A.BB"));
        assert!(!f.passes("A"));
        assert!(FilterConfig { name: String::new() }.passes("anything"));
    }
}
