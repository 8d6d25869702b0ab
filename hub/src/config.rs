//! Configuration: TOML shaped like Python's `logging.config.dictConfig`.
//!
//! Parsing is by hand over `toml::Value` rather than serde derives so that
//! every problem is collected (not just the first) and named by its key path,
//! which `logfunnel check-config` prints. Every table is read through one
//! key reader ([`keys::Section`]); this file reads the top level, `[hub]`,
//! formatters, filters, loggers and the keys every handler shares, and each
//! handler class reads its own keys in its own file (`handlers/*.rs`).

pub mod keys;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use keys::{Section, join};
use logfunnel_protocol::Level;
use toml::{Table, Value};

use crate::formatter::{Formatter, Style};
use crate::handlers::{CLASSES, HandlerOptions};

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
    /// `HOST:PORT` of the Prometheus metrics endpoint, if any (see `metrics.rs`).
    pub metrics: Option<String>,
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

/// What a handler does when records arrive faster than it can take them:
/// its queue is full, or (network handlers) what it holds for delivery is.
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

impl OverflowPolicy {
    /// The policy as the configuration spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            OverflowPolicy::Block => "block",
            OverflowPolicy::DropNewest => "drop_newest",
            OverflowPolicy::DropOldest => "drop_oldest",
        }
    }
}

/// A named handler: its class's options and the keys every handler has.
#[derive(Debug, Clone)]
pub struct HandlerConfig {
    /// The Python class name (`RotatingFileHandler`…).
    pub class: &'static str,
    /// Whether it delivers to a remote (a network handler; see
    /// [`HandlerConfig::queue_policy`]).
    pub delivers: bool,
    /// The class's own options (see [`HandlerConfig::options`]).
    pub options: Arc<dyn HandlerOptions>,
    /// Handler level (records below it are not given to it).
    pub level: Level,
    /// Formatter name, if any (Python's default is `%(message)s`).
    pub formatter: Option<String>,
    /// Filter names.
    pub filters: Vec<String>,
    /// Queue capacity in records (default [`DEFAULT_HANDLER_QUEUE`]).
    pub queue_capacity: usize,
    /// What happens when records come faster than the handler can take
    /// them: for a local handler, when its queue is full (default `block`);
    /// for a network handler, when what it holds for delivery reaches its
    /// `buffer_max_*` (default `drop_newest`).
    pub overflow: OverflowPolicy,
    /// Escape control characters in messages (default true; false = raw).
    pub escape_control_chars: bool,
}

impl HandlerConfig {
    /// The policy of the handler's queue. A network handler's worker never
    /// waits on its remote (delivery is non-blocking; what cannot go out
    /// waits in its buffer, under `overflow`), so its queue only ever waits
    /// for formatting, as a file handler's does: a burst is never dropped
    /// while the remote keeps up.
    pub fn queue_policy(&self) -> OverflowPolicy {
        if self.delivers { OverflowPolicy::Block } else { self.overflow }
    }

    /// The class's options as their concrete type, e.g.
    /// `handler.options::<RotatingFileOptions>()`.
    pub fn options<T: HandlerOptions>(&self) -> Option<&T> {
        let any: &dyn std::any::Any = self.options.as_ref();
        any.downcast_ref::<T>()
    }
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
        let mut p = Parser { issues: Vec::new(), refs: Vec::new() };
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
        let mut p = Parser { issues: Vec::new(), refs: Vec::new() };
        let config = p.config(&table);
        if p.issues.is_empty() { Ok(config) } else { Err(fail(p.issues)) }
    }
}

struct Parser {
    issues: Vec<ConfigIssue>,
    /// Names given as values, checked once every section is read.
    refs: Vec<keys::Reference>,
}

impl Parser {
    fn issue(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.issues.push(ConfigIssue { path: path.into(), message: message.into() });
    }

    fn take(&mut self, mut section: Section<'_>) {
        self.refs.extend(section.take_refs());
        self.issues.extend(section.finish());
    }

    /// The named sub-tables of a section (`[handlers.NAME]`).
    fn named<'t>(&mut self, top: &mut Section<'t>, key: keys::Keys) -> Vec<(String, &'t Table)> {
        let Some(section) = top.sub_table(key) else { return Vec::new() };
        let table = section.table();
        table
            .iter()
            .filter_map(|(name, v)| match v {
                Value::Table(t) => Some((name.clone(), t)),
                other => {
                    self.issue(join(key[0], name), format!("expected a table, found {}", other.type_str()));
                    None
                }
            })
            .collect()
    }

    fn config(&mut self, table: &Table) -> Config {
        let mut top = Section::new("", table);
        if let Some((_, v)) = top.value(&["version"])
            && v.as_integer() != Some(1)
        {
            top.issue("version", format!("dictConfig version must be 1, found {v}"));
        }
        top.accept(&["disable_existing_loggers"]);
        if let Some((_, v)) = top.value(&["incremental"])
            && v.as_bool() != Some(false)
        {
            top.issue(
                "incremental",
                "incremental configuration is not supported (a hub config is always complete)",
            );
        }
        let hub = match top.sub_table(&["hub"]) {
            Some(mut s) => {
                let hub = hub(&mut s);
                self.take(s);
                hub
            }
            None => hub(&mut Section::new("hub", &Table::new())),
        };
        let formatters = self.formatters(&mut top);
        let filters = self.filters(&mut top);
        let handlers = self.handlers(&mut top, &formatters, &filters);
        for r in std::mem::take(&mut self.refs) {
            if !table.get(r.section).and_then(Value::as_table).is_some_and(|t| t.contains_key(&r.name)) {
                self.issue(r.path, format!("unknown {} {:?}", r.section.trim_end_matches('s'), r.name));
            }
        }
        self.targets(&handlers);
        let root = match top.sub_table(&["root"]) {
            Some(mut s) => {
                let root = self.logger(&mut s, true, &handlers, &filters);
                self.take(s);
                root
            }
            None => LoggerConfig { level: None, handlers: Vec::new(), filters: Vec::new(), propagate: false },
        };
        let mut loggers = BTreeMap::new();
        for (name, t) in self.named(&mut top, &["loggers"]) {
            let mut s = Section::new(join("loggers", &name), t);
            let logger = self.logger(&mut s, false, &handlers, &filters);
            self.take(s);
            loggers.insert(name, logger);
        }
        self.take(top);
        Config { hub, formatters, filters, handlers, root, loggers }
    }

    fn formatters(&mut self, top: &mut Section<'_>) -> BTreeMap<String, FormatterConfig> {
        let mut out = BTreeMap::new();
        for (name, t) in self.named(top, &["formatters"]) {
            let mut s = Section::new(join("formatters", &name), t);
            if let Some(class) = s.string(&["class", "()"])
                && !matches!(class.as_str(), "logging.Formatter" | "Formatter")
            {
                s.issue("class", format!("unknown formatter class {class:?} (only logging.Formatter)"));
            }
            let format = s.string(&["format", "fmt"]);
            let datefmt = s.string(&["datefmt"]);
            let style = match s.string(&["style"]) {
                None => Some(Style::Percent),
                Some(st) => {
                    let parsed = Style::parse(&st);
                    if parsed.is_none() {
                        s.issue("style", format!("{st:?} is not a style (use \"%\", \"{{\" or \"$\")"));
                    }
                    parsed
                }
            };
            let utc = s.boolean(&["utc"]).unwrap_or(false);
            let _ = s.boolean(&["validate"]);
            if let Some(style) = style {
                match Formatter::new(format.as_deref(), datefmt.as_deref(), style) {
                    Ok(f) => {
                        out.insert(name, FormatterConfig { formatter: f.with_utc(utc) });
                    }
                    Err(e) => s.issue("format", e.to_string()),
                }
            }
            self.take(s);
        }
        out
    }

    fn filters(&mut self, top: &mut Section<'_>) -> BTreeMap<String, FilterConfig> {
        let mut out = BTreeMap::new();
        for (name, t) in self.named(top, &["filters"]) {
            let mut s = Section::new(join("filters", &name), t);
            let prefix = s.string(&["name"]).unwrap_or_default();
            self.take(s);
            out.insert(name, FilterConfig { name: prefix });
        }
        out
    }

    fn handlers(
        &mut self,
        top: &mut Section<'_>,
        formatters: &BTreeMap<String, FormatterConfig>,
        filters: &BTreeMap<String, FilterConfig>,
    ) -> BTreeMap<String, HandlerConfig> {
        let defined_formatters = top.table().get("formatters").and_then(Value::as_table);
        let mut out = BTreeMap::new();
        for (name, t) in self.named(top, &["handlers"]) {
            let mut s = Section::new(join("handlers", &name), t);
            let Some(class_name) = s.required_string(&["class"], "e.g. class = \"FileHandler\"") else {
                self.issues.extend(s.abandon());
                continue;
            };
            let short = class_name
                .strip_prefix("logging.handlers.")
                .or(class_name.strip_prefix("logging."))
                .unwrap_or(&class_name);
            let Some(class) = CLASSES.iter().find(|c| c.name == short) else {
                s.issue("class", unknown_class(&class_name, short));
                // Its other keys cannot be judged without a class.
                self.issues.extend(s.abandon());
                continue;
            };
            let options = (class.parse)(&mut s);
            let level = s.level(&["level"]).unwrap_or(Level::NOTSET);
            let formatter = s.string(&["formatter"]);
            if let Some(f) = &formatter
                && !formatters.contains_key(f)
            {
                let message = if defined_formatters.is_some_and(|t| t.contains_key(f)) {
                    // Named here too, so a bad format string points at every
                    // handler it would have broken.
                    format!("formatter {f:?} is invalid (see {})", join("formatters", f))
                } else {
                    format!("unknown formatter {f:?}")
                };
                s.issue("formatter", message);
            }
            let handler_filters = s.string_list(&["filters"]);
            check_refs(&mut s, "filters", &handler_filters, filters, "filter");
            let queue_capacity = s.positive(&["queue_capacity"]).unwrap_or(DEFAULT_HANDLER_QUEUE);
            let overflow = s
                .choice(
                    &["overflow"],
                    &[
                        ("block", OverflowPolicy::Block),
                        ("drop_newest", OverflowPolicy::DropNewest),
                        ("drop_oldest", OverflowPolicy::DropOldest),
                    ],
                )
                .unwrap_or(class.default_overflow());
            let escape_control_chars = s.boolean(&["escape_control_chars"]).unwrap_or(true);
            self.take(s);
            if let Some(options) = options {
                out.insert(
                    name,
                    HandlerConfig {
                        class: class.name,
                        delivers: class.delivers,
                        options,
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

    /// No chain of handlers passing records on to another (MemoryHandler's
    /// `target`) loops.
    fn targets(&mut self, handlers: &BTreeMap<String, HandlerConfig>) {
        let target_of = |name: &str| handlers.get(name)?.options.target();
        for name in handlers.keys() {
            let Some(target) = target_of(name) else { continue };
            let path = join(&join("handlers", name), "target");
            if !handlers.contains_key(target) {
                continue; // unknown or invalid, and reported
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

    fn logger(
        &mut self,
        s: &mut Section<'_>,
        is_root: bool,
        handlers: &BTreeMap<String, HandlerConfig>,
        filters: &BTreeMap<String, FilterConfig>,
    ) -> LoggerConfig {
        let level = s.level(&["level"]);
        let hs = s.string_list(&["handlers"]);
        // A handler that failed to parse was already reported; only names
        // that appear nowhere in [handlers] are unknown.
        for (i, h) in hs.iter().enumerate() {
            if !handlers.contains_key(h)
                && !self.issues.iter().any(|x| x.path.starts_with(&join("handlers", h)))
            {
                s.issue_at(format!("{}[{i}]", s.key_path("handlers")), format!("unknown handler {h:?}"));
            }
        }
        let fs = s.string_list(&["filters"]);
        check_refs(s, "filters", &fs, filters, "filter");
        let propagate = if is_root { false } else { s.boolean(&["propagate"]).unwrap_or(true) };
        LoggerConfig { level, handlers: hs, filters: fs, propagate }
    }
}

/// The `[hub]` section: the socket, the listener queue, the metrics
/// endpoint, and the access and delivery settings read by `access.rs`.
fn hub(s: &mut Section<'_>) -> HubConfig {
    let access = crate::access::AccessConfig::parse(s);
    let socket = s.string(&["socket"]).map(PathBuf::from);
    if let Some(sock) = &socket
        && sock.to_string_lossy().starts_with(['@', '\0'])
    {
        // Linux's abstract namespace has no permissions: any local process could connect.
        s.issue(
            "socket",
            "abstract socket names are refused (no permissions apply to them); use a file path in a private directory",
        );
    }
    let socket_mode = s
        .parsed(&["socket_mode"], "a permission mode in octal (e.g. \"0660\")", |v| {
            match v {
                Value::String(t) => u32::from_str_radix(t.trim_start_matches("0o"), 8).ok(),
                Value::Integer(i) => u32::try_from(*i).ok(),
                _ => None,
            }
            .filter(|m| *m <= 0o777)
        })
        .unwrap_or(0o600);
    let queue_capacity = s.positive(&["queue_capacity"]).unwrap_or(DEFAULT_LISTENER_QUEUE);
    let metrics = s.parsed(&["metrics"], "HOST:PORT (e.g. \"127.0.0.1:9108\")", |v| {
        let text = v.as_str()?;
        // Resolved here so that check-config finds a bad address; the hub
        // binds the first address it resolves to.
        use std::net::ToSocketAddrs;
        text.to_socket_addrs().ok()?.next().map(|_| text.to_owned())
    });
    HubConfig { socket, socket_mode, queue_capacity, access, metrics }
}

/// Python's standard handler classes (`logging`, `logging.handlers`), and
/// the queue pair's listener: what a Python configuration may name. Those
/// not in [`CLASSES`] are "not supported yet", found at run time so that a
/// class added there stops being reported here.
const PYTHON_HANDLERS: &[&str] = &[
    "StreamHandler",
    "FileHandler",
    "NullHandler",
    "WatchedFileHandler",
    "RotatingFileHandler",
    "TimedRotatingFileHandler",
    "SocketHandler",
    "DatagramHandler",
    "SysLogHandler",
    "NTEventLogHandler",
    "SMTPHandler",
    "BufferingHandler",
    "MemoryHandler",
    "HTTPHandler",
    "QueueHandler",
    "QueueListener",
];

/// The message for a class that is not in [`CLASSES`]: Python's handlers
/// not built yet say so, a near miss gets "did you mean", anything else the
/// list of supported classes.
fn unknown_class(class_name: &str, short: &str) -> String {
    let supported: Vec<&str> = CLASSES.iter().map(|c| c.name).collect();
    let is_supported = |n: &str| supported.contains(&n);
    let later = |n: &str| {
        let why = match n {
            "QueueHandler" | "QueueListener" => {
                "; the hub itself is the QueueHandler → QueueListener pair (its clients queue, it listens): give the listener's handlers to the loggers directly"
            }
            "NTEventLogHandler" => "; it writes to the Windows event log",
            _ => "",
        };
        format!("{n} is one of Python's standard handlers that logfunnel does not implement yet{why}")
    };
    if PYTHON_HANDLERS.contains(&short) && !is_supported(short) {
        return format!(
            "{class_name:?} is not supported yet ({}; supported: {})",
            later(short),
            supported.join(", ")
        );
    }
    let lower = short.to_ascii_lowercase();
    let nearest = supported
        .iter()
        .chain(PYTHON_HANDLERS)
        .map(|n| (edit_distance(&lower, &n.to_ascii_lowercase()), *n))
        .min_by_key(|(d, _)| *d)
        .filter(|(d, n)| *d <= (n.len() / 5).max(2));
    match nearest {
        Some((_, n)) if is_supported(n) => {
            format!("unknown handler class {class_name:?}: did you mean {n:?}?")
        }
        Some((_, n)) => format!("unknown handler class {class_name:?}: did you mean {n:?}? ({})", later(n)),
        None => format!("unknown handler class {class_name:?} (supported: {})", supported.join(", ")),
    }
}

/// Levenshtein distance (insertions, deletions, substitutions).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

fn check_refs<T>(s: &mut Section<'_>, key: &str, names: &[String], known: &BTreeMap<String, T>, what: &str) {
    let path = s.key_path(key);
    for (i, n) in names.iter().enumerate() {
        if !known.contains_key(n) {
            s.issue_at(format!("{path}[{i}]"), format!("unknown {what} {n:?}"));
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::{FileOptions, RotatingFileOptions, Schedule, TimedRotatingFileOptions, When};

    fn issues(text: &str) -> Vec<String> {
        match Config::from_toml_str(text, "test") {
            Ok(_) => Vec::new(),
            Err(e) => e.issues.iter().map(|i| i.to_string()).collect(),
        }
    }

    #[test]
    fn the_embedded_default_and_the_design_example_are_valid() {
        // A complete example (docs/CONFIG.md's keys), with the file in the working directory (a
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
            matches!(c.handlers["file"].options::<FileOptions>(), Some(FileOptions { filename, append: true, .. }) if filename.is_absolute())
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
        let schedule = &ok.handlers["t"].options::<TimedRotatingFileOptions>().unwrap().schedule;
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
            c.handlers["file"].options::<RotatingFileOptions>(),
            Some(RotatingFileOptions { max_bytes: 1048576, backup_count: 5, .. })
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
    fn pythons_handlers_not_built_yet_and_near_misses_get_their_own_messages() {
        let class_issue = |class: &str| {
            let text = format!("[handlers.h]\nclass = {class:?}\n");
            issues(&text).into_iter().find(|i| i.starts_with("handlers.h.class:"))
        };
        let supported: Vec<&str> = CLASSES.iter().map(|c| c.name).collect();
        for name in PYTHON_HANDLERS {
            let got = class_issue(&format!("logging.handlers.{name}"));
            if supported.contains(name) {
                assert_eq!(got, None, "{name} is supported");
            } else {
                let got = got.unwrap_or_else(|| panic!("{name} accepted"));
                assert!(got.contains("is not supported yet"), "{got}");
            }
        }
        let q = class_issue("QueueListener").unwrap();
        assert!(q.contains("the hub itself is the QueueHandler → QueueListener pair"), "{q}");
        // Every one-letter slip of a supported class (random edits) is
        // answered with that class.
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for _ in 0..500 {
            let name = supported[next(supported.len())];
            let mut chars: Vec<char> = name.chars().collect();
            let at = next(chars.len());
            let letter = (b'a' + next(26) as u8) as char;
            match next(4) {
                0 => chars[at] = letter,
                1 => chars.insert(at, letter),
                2 => {
                    chars.remove(at);
                }
                _ => chars = name.to_ascii_lowercase().chars().collect(),
            }
            let typo: String = chars.into_iter().collect();
            if PYTHON_HANDLERS.iter().chain(&supported).any(|n| n.eq_ignore_ascii_case(&typo))
                && typo != name.to_ascii_lowercase()
            {
                continue;
            }
            if typo == name {
                continue;
            }
            let got = class_issue(&typo).unwrap_or_else(|| panic!("{typo:?} accepted"));
            assert!(got.ends_with(&format!("did you mean {name:?}?")), "{typo:?}: {got}");
        }
        let far = class_issue("KafkaHandler").unwrap();
        assert!(far.contains("(supported: StreamHandler, FileHandler"), "{far}");
        let near_later = class_issue("logging.handlers.SMTPHandlr").unwrap();
        assert!(
            near_later.contains("did you mean \"SMTPHandler\"? (SMTPHandler is one of Python's"),
            "{near_later}"
        );
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
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
