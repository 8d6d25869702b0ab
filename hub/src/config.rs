//! Configuration: TOML shaped like Python's `logging.config.dictConfig`.
//!
//! Parsing is by hand over `toml::Value` rather than serde derives so that
//! every problem is collected (not just the first) and named by its key path,
//! which `logfunnel check-config` prints. Every table is read through one
//! key reader ([`keys::Section`]); this file reads the top level, `[hub]`,
//! formatters, filters, loggers and the keys every handler shares, and each
//! handler class reads its own keys in its own file (`handlers/*.rs`).

pub mod common;
mod dictconfig;
pub mod keys;
mod python;

pub use common::{
    DEFAULT_HANDLER_QUEUE, DEFAULT_HANDLER_QUEUE_BYTES, FilterConfig, MAX_HANDLER_QUEUE,
    MAX_HANDLER_QUEUE_BYTES, OverflowPolicy,
};
pub use keys::ConfigIssue;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use keys::{Section, Unknown, join};
use logfunnel_protocol::Level;
use python::Construct;
use toml::{Table, Value};

use crate::formatter::{Formatter, JsonFields, JsonOptions, JsonValue, Style};
use crate::handler::{BuildContext, Forward, Handler, HandlerError, HandlerOptions, default_formatter};
use crate::handlers::CLASSES;
use crate::stats::HandlerCounters;

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

/// Every problem found in a configuration.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    /// Where the configuration came from (a file name, or "embedded default").
    pub source_name: String,
    /// The problems, in key order.
    pub issues: Vec<ConfigIssue>,
    /// Where each key path starts in the file (YAML), for the messages.
    pub lines: BTreeMap<String, usize>,
}

impl ConfigError {
    fn new(source_name: &str, issues: Vec<ConfigIssue>) -> ConfigError {
        ConfigError { source_name: source_name.to_owned(), issues, lines: BTreeMap::new() }
    }

    /// The line an issue's key path starts on, if known (the nearest
    /// enclosing key's for a missing key).
    pub fn line_of(&self, issue: &ConfigIssue) -> Option<usize> {
        line_of(&self.lines, &issue.path)
    }
}

fn line_of(lines: &BTreeMap<String, usize>, path: &str) -> Option<usize> {
    let mut p = path;
    loop {
        if let Some(l) = lines.get(p) {
            return Some(*l);
        }
        // Drop the last `.key`, `."key"` or `[i]`.
        let cut = if p.ends_with(']') {
            p.rfind('[')
        } else if let Some(open) = p.strip_suffix('"') {
            open.rfind('"').map(|q| q.saturating_sub(1))
        } else {
            p.rfind('.')
        };
        p = &p[..cut?];
    }
}

/// `line N: path: message`, or the issue alone when its line is unknown.
fn located(lines: &BTreeMap<String, usize>, issue: &ConfigIssue) -> String {
    match line_of(lines, &issue.path) {
        Some(l) => format!("line {l}: {issue}"),
        None => issue.to_string(),
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.issues.len();
        write!(f, "{}: {n} problem{}", self.source_name, if n == 1 { "" } else { "s" })?;
        for issue in &self.issues {
            write!(f, "\n  {}", located(&self.lines, issue))?;
        }
        Ok(())
    }
}

/// The listener queue's default capacity, in batches. Small on purpose:
/// under a flood every queue is full, and the batches in flight are the
/// hub's working set; 8 batches (with 4096-record handler queues) keep it
/// in cache (docs/BENCHMARKS.md#small-hub-queues). Clients buffer bursts in
/// their own rings.
pub const DEFAULT_LISTENER_QUEUE: usize = 8;

/// The largest listener queue, in batches (its slots are allocated at start).
pub const MAX_LISTENER_QUEUE: usize = 1 << 16;

/// The `[hub]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct HubConfig {
    /// Socket path (`--socket` and `LOGFUNNEL_SOCKET` take precedence).
    pub socket: Option<PathBuf>,
    /// Permission bits of the socket file (default 0600).
    pub socket_mode: u32,
    /// Capacity of the listener queue, in batches (default [`DEFAULT_LISTENER_QUEUE`]).
    pub queue_capacity: usize,
    /// Access control, client limits, journal and shutdown (see `hub/src/access.rs`).
    pub policy: crate::access::HubPolicy,
    /// `HOST:PORT` of the Prometheus metrics endpoint, if any (see `metrics.rs`).
    pub metrics: Option<String>,
    /// Listeners for Python's SocketHandler and DatagramHandler (see `python_in.rs`).
    pub python: crate::python_in::PythonInputs,
}

/// A named formatter.
#[derive(Debug, Clone)]
pub struct FormatterConfig {
    /// The compiled formatter.
    pub formatter: Formatter,
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
    /// Queue capacity in bytes of the batches the queued records keep in
    /// memory (default [`DEFAULT_HANDLER_QUEUE_BYTES`]).
    pub queue_bytes: usize,
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

/// `logging.handlers.QueueHandler` with `handlers` (Python 3.12's
/// dictConfig form): the hub is the QueueListener, so records the
/// QueueHandler takes go straight to those handlers, each through its own
/// filters, and through its level only with `respect_handler_level`.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueConfig {
    /// The QueueHandler's level.
    pub level: Level,
    /// Its filters.
    pub filters: Vec<String>,
    /// Its formatter, which "prepares" each record (`QueueHandler.prepare`:
    /// its output becomes the message); `None` is Python's `%(message)s`.
    pub formatter: Option<String>,
    /// The handlers the listener passes records to.
    pub handlers: Vec<String>,
    /// QueueListener's `respect_handler_level` (default false, as in 3.12).
    pub respect_handler_level: bool,
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
    /// `[loggers.*]` (entries named `""` or `"root"` configure `root`, as in
    /// Python 3.9+, and are not here).
    pub loggers: BTreeMap<String, LoggerConfig>,
    /// QueueHandlers by name (see [`QueueConfig`]).
    pub queues: BTreeMap<String, QueueConfig>,
    /// Handlers that receive records through a QueueHandler, and that
    /// QueueHandler's formatter (`None`: `%(message)s`), which prepares them.
    pub prepared: BTreeMap<String, Option<String>>,
    /// What was accepted but deserves a word (keys a Python dictConfig
    /// carries that Python ignores too…), each with its line when known.
    pub warnings: Vec<String>,
}

impl Config {
    /// The embedded default (stderr, the default format).
    pub fn embedded_default() -> Config {
        Config::from_toml_str(EMBEDDED_DEFAULT, "embedded default")
            .expect("the embedded default configuration is valid")
    }

    /// Reads and validates a configuration file: TOML, or a Python
    /// dictConfig saved as JSON (`.json`) or YAML (`.yaml`, `.yml`).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(
                &name,
                vec![ConfigIssue { path: String::new(), message: format!("cannot read: {e}") }],
            )
        })?;
        let ext = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase());
        match ext.as_deref() {
            Some("json") => Config::from_json_str(&text, &name),
            Some("yaml" | "yml") => Config::from_yaml_str(&text, &name),
            _ => Config::from_toml_str(&text, &name),
        }
    }

    /// Parses and validates a Python dictConfig written as JSON (what
    /// `json.dump(LOGGING)` gives). The same keys as the TOML form are
    /// accepted, with Python's meaning; keys Python ignores are accepted
    /// with a warning; what only Python can run is refused, saying so.
    pub fn from_json_str(text: &str, source_name: &str) -> Result<Config, ConfigError> {
        let item = dictconfig::from_json(text).map_err(|message| {
            ConfigError::new(source_name, vec![ConfigIssue { path: String::new(), message }])
        })?;
        Config::from_dict(&item, source_name)
    }

    /// Parses and validates a Python dictConfig written as YAML, read as
    /// PyYAML's `yaml.safe_load` reads it. Problems name their line.
    pub fn from_yaml_str(text: &str, source_name: &str) -> Result<Config, ConfigError> {
        let item = dictconfig::from_yaml(text).map_err(|(message, line)| {
            let mut e = ConfigError::new(source_name, vec![ConfigIssue { path: String::new(), message }]);
            if let Some(l) = line {
                e.lines.insert(String::new(), l);
            }
            e
        })?;
        Config::from_dict(&item, source_name)
    }

    fn from_dict(item: &dictconfig::Item, source_name: &str) -> Result<Config, ConfigError> {
        let doc = dictconfig::to_doc(item);
        let mut p = Parser::new(true);
        p.issues = doc.issues;
        p.referenced = doc.referenced;
        let config = p.config(&doc.table);
        p.finish(config, source_name, doc.lines)
    }

    /// Parses and validates TOML text; `source_name` names it in errors.
    pub fn from_toml_str(text: &str, source_name: &str) -> Result<Config, ConfigError> {
        let table: Table = text.parse::<Table>().map_err(|e| {
            ConfigError::new(
                source_name,
                vec![ConfigIssue {
                    path: String::new(),
                    message: format!("not valid TOML: {}", e.to_string().trim_end()),
                }],
            )
        })?;
        let mut p = Parser::new(false);
        let config = p.config(&table);
        p.finish(config, source_name, BTreeMap::new())
    }

    /// Whether the hub escapes control characters in a handler's records
    /// before formatting (`escape_control_chars`). A JSON formatter escapes
    /// them itself, as JSON does.
    pub fn escapes_records(&self, handler: &str) -> bool {
        let Some(h) = self.handlers.get(handler) else { return false };
        let json =
            h.formatter.as_ref().and_then(|f| self.formatters.get(f)).is_some_and(|f| f.formatter.is_json());
        h.escape_control_chars && !json
    }

    /// Builds configured handler `name` from its options and what its table
    /// and the hub's say about it; `queue_of` finds another handler's queue
    /// (a MemoryHandler's target), `counters` are its own.
    pub(crate) fn build_handler(
        &self,
        name: &str,
        queue_of: &dyn Fn(&str) -> Option<Arc<dyn Forward>>,
        counters: Arc<HandlerCounters>,
    ) -> Result<Box<dyn Handler>, HandlerError> {
        let handler = &self.handlers[name];
        let named = |name: Option<&String>| {
            name.and_then(|f| self.formatters.get(f))
                .map(|f| f.formatter.clone())
                .unwrap_or_else(default_formatter)
        };
        let mut formatter =
            named(handler.formatter.as_ref()).with_control_escapes(handler.escape_control_chars);
        if let Some(queue_formatter) = self.prepared.get(name) {
            // Behind a QueueHandler: its formatter prepares each record.
            formatter = formatter.prepared_by(named(queue_formatter.as_ref()));
        }
        let target_filters =
            handler.options.target().and_then(|t| self.handlers.get(t)).map_or_else(Vec::new, |t| {
                t.filters.iter().filter_map(|f| self.filters.get(f).cloned()).collect()
            });
        let policy = &self.hub.policy;
        handler.options.build(&BuildContext {
            name,
            formatter,
            names_formatter: handler.formatter.is_some(),
            overflow: handler.overflow,
            state_dir: policy.state_dir.as_deref().filter(|_| policy.journal),
            target_filters,
            queue_of,
            counters,
        })
    }
}

struct Parser {
    issues: Vec<ConfigIssue>,
    warnings: Vec<ConfigIssue>,
    /// Names given as values, checked once every section is read.
    refs: Vec<keys::Reference>,
    /// A Python dictConfig (JSON or YAML): keys mean what they mean to
    /// Python's `dictConfig`, and those it ignores are only warned about.
    dict: bool,
    /// Top-level keys read through `cfg://` references.
    referenced: Vec<String>,
    /// Entries refused as a whole (`handlers.x`…): reported once, so
    /// naming them elsewhere adds no message.
    refused: Vec<String>,
}

/// Which logger table is being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LoggerKind {
    /// `[root]`: no `propagate`.
    Root,
    /// `loggers.root` or `loggers.""`: the root logger by another name,
    /// whose `propagate` Python sets and never uses.
    RootByName,
    /// Any other `loggers.NAME`.
    Named,
}

impl Parser {
    fn new(dict: bool) -> Parser {
        Parser {
            issues: Vec::new(),
            warnings: Vec::new(),
            refs: Vec::new(),
            dict,
            referenced: Vec::new(),
            refused: Vec::new(),
        }
    }

    fn issue(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.issues.push(ConfigIssue { path: path.into(), message: message.into() });
    }

    fn take(&mut self, mut section: Section<'_>) {
        self.refs.extend(section.take_refs());
        let (issues, warnings) = section.finish_with_warnings();
        self.issues.extend(issues);
        self.warnings.extend(warnings);
    }

    /// What a key nobody reads means in a table that Python reads only a
    /// few keys of (`python_ignores`), or passes to a constructor.
    fn unknown(&self, python_ignores: bool) -> Unknown {
        match (self.dict, python_ignores) {
            (false, _) => Unknown::Error,
            (true, true) => Unknown::Warn,
            (true, false) => Unknown::WarnNonIdentifier,
        }
    }

    fn is_refused(&self, section: &str, name: &str) -> bool {
        self.refused.contains(&join(section, name))
    }

    fn finish(
        self,
        mut config: Config,
        source_name: &str,
        lines: BTreeMap<String, usize>,
    ) -> Result<Config, ConfigError> {
        if self.issues.is_empty() {
            config.warnings = self.warnings.iter().map(|w| located(&lines, w)).collect();
            Ok(config)
        } else {
            Err(ConfigError { source_name: source_name.to_owned(), issues: self.issues, lines })
        }
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
        let mut top = Section::new("", table).with_unknown(self.unknown(true));
        for key in std::mem::take(&mut self.referenced) {
            // A project's own section, read through cfg:// references.
            let _ = top.value_named(&key);
        }
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
        let (handlers, queues) = self.handlers(&mut top, &formatters, &filters);
        for r in std::mem::take(&mut self.refs) {
            if !table.get(r.section).and_then(Value::as_table).is_some_and(|t| t.contains_key(&r.name)) {
                self.issue(r.path, format!("unknown {} {:?}", r.section.trim_end_matches('s'), r.name));
            }
        }
        self.targets(&handlers, &queues);
        self.shared_files(&handlers);
        self.disk_buffers(&handlers, &hub.policy);
        let known = |h: &str| handlers.contains_key(h) || queues.contains_key(h);
        // Python 3.9+: getLogger("root") and getLogger("") are the root
        // logger, and dictConfig configures the `loggers` first, `root` last.
        let mut root =
            LoggerConfig { level: None, handlers: Vec::new(), filters: Vec::new(), propagate: false };
        let mut loggers = BTreeMap::new();
        let named = self.named(&mut top, &["loggers"]);
        if named.iter().filter(|(n, _)| n.is_empty() || n == "root").count() > 1 {
            self.issue(
                "loggers",
                "loggers.\"\" and loggers.root both configure the root logger (Python applies them in the \
                 order written); keep one",
            );
        }
        for (name, t) in named {
            let root_by_name = name.is_empty() || name == "root";
            let kind = if root_by_name { LoggerKind::RootByName } else { LoggerKind::Named };
            let mut s = Section::new(join("loggers", &name), t).with_unknown(self.unknown(true));
            let logger = self.logger(&mut s, kind, &known, &filters);
            self.take(s);
            if root_by_name {
                apply_to_root(&mut root, logger);
            } else {
                loggers.insert(name, logger);
            }
        }
        if let Some(mut s) = top.sub_table(&["root"]) {
            let s_unknown = self.unknown(true);
            s = s.with_unknown(s_unknown);
            // `if root:` in dictConfig: an empty table changes nothing.
            if !s.table().is_empty() {
                let logger = self.logger(&mut s, LoggerKind::Root, &known, &filters);
                apply_to_root(&mut root, logger);
            }
            self.take(s);
        }
        let prepared = self.prepared(&handlers, &queues, &root, &loggers);
        self.take(top);
        Config { hub, formatters, filters, handlers, root, loggers, queues, prepared, warnings: Vec::new() }
    }

    fn formatters(&mut self, top: &mut Section<'_>) -> BTreeMap<String, FormatterConfig> {
        let mut out = BTreeMap::new();
        for (name, t) in self.named(top, &["formatters"]) {
            // dictConfig: with '()' every identifier key is a keyword
            // argument; without it Python reads format, datefmt, style,
            // validate and class, and ignores the rest.
            let custom = self.dict && t.contains_key("()");
            let mut s = Section::new(join("formatters", &name), t).with_unknown(self.unknown(!custom));
            let factory: keys::Keys = if !self.dict {
                &["class", "()"]
            } else if custom {
                &["()"]
            } else {
                &["class"]
            };
            let class = s.string(factory);
            let key = if custom { "()" } else { factory[0] };
            if custom && s.has(&["."]) {
                s.issue(".", python::dot_refusal(Construct::Formatter));
            }
            let built = match class.as_deref() {
                Some(c) if python::is_json_formatter(c) => self.json_formatter(&mut s, custom),
                None | Some("logging.Formatter" | "Formatter") => self.text_formatter(&mut s, custom),
                Some(c) if python::is_python_code(c) => {
                    s.issue(key, python::refusal(Construct::Formatter, c));
                    self.refused.push(s.path().to_owned());
                    self.issues.extend(s.abandon());
                    continue;
                }
                Some(c) => {
                    s.issue(
                        key,
                        format!("unknown formatter class {c:?} (logging.Formatter, or python-json-logger's JsonFormatter)"),
                    );
                    self.issues.extend(s.abandon());
                    continue;
                }
            };
            let utc = s.boolean(&["utc"]).unwrap_or(false);
            if let Some(f) = built {
                out.insert(name, FormatterConfig { formatter: f.with_utc(utc) });
            }
            self.take(s);
        }
        out
    }

    /// `logging.Formatter(fmt, datefmt, style, validate)`.
    fn text_formatter(&mut self, s: &mut Section<'_>, custom: bool) -> Option<Formatter> {
        // Python's keyword is `fmt`; dictConfig reads `format`, and with
        // '()' retries a `format` as `fmt`. Without '()' it ignores `fmt`.
        let format = s.string(if self.dict && !custom { &["format"] } else { &["format", "fmt"] });
        let datefmt = s.string(&["datefmt"]);
        let style = self.style(s)?;
        let _ = s.boolean(&["validate"]);
        if custom && s.has(&["defaults"]) {
            s.issue("defaults", "Formatter defaults are not supported by the hub yet");
        }
        Formatter::new(format.as_deref(), datefmt.as_deref(), style)
            .map_err(|e| s.issue("format", e.to_string()))
            .ok()
    }

    fn style(&mut self, s: &mut Section<'_>) -> Option<Style> {
        match s.string(&["style"]) {
            None => Some(Style::Percent),
            Some(st) => {
                let parsed = Style::parse(&st);
                if parsed.is_none() {
                    s.issue("style", format!("{st:?} is not a style (use \"%\", \"{{\" or \"$\")"));
                }
                parsed
            }
        }
    }

    /// python-json-logger's `JsonFormatter`: every argument with '()' (and
    /// in TOML); with `class`, dictConfig passes only the format, datefmt,
    /// style and validate, as Python does.
    fn json_formatter(&mut self, s: &mut Section<'_>, custom: bool) -> Option<Formatter> {
        let all = custom || !self.dict;
        let format_keys: keys::Keys = if all { &["format", "fmt"] } else { &["format"] };
        let fields = match s.value(format_keys) {
            Some((_, Value::Array(items))) => JsonFields::Names(
                items.iter().map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)).collect(),
            ),
            Some((_, Value::String(f))) => json_fields(s, Some(f.clone())),
            Some((key, other)) => {
                s.issue(
                    key,
                    format!("expected a format string or a list of names, found {}", keys::show(other)),
                );
                json_fields(s, None)
            }
            None => json_fields(s, None),
        };
        let datefmt = s.string(&["datefmt"]);
        let mut opts = JsonOptions { fields, datefmt, ..JsonOptions::default() };
        if all {
            opts.prefix = s.string(&["prefix"]).unwrap_or_default();
            opts.rename_fields = s
                .parsed(&["rename_fields"], "a table of field names", |v| {
                    v.as_table()?.iter().map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect()
                })
                .unwrap_or_default();
            opts.rename_fields_keep_missing = s.boolean(&["rename_fields_keep_missing"]).unwrap_or(false);
            opts.static_fields = s.parsed(&["static_fields"], "a table", json_table).unwrap_or_default();
            opts.defaults = s.parsed(&["defaults"], "a table", json_table).unwrap_or_default();
            opts.reserved_attrs = s.has(&["reserved_attrs"]).then(|| s.string_list(&["reserved_attrs"]));
            opts.timestamp = s
                .parsed(&["timestamp"], "true, false or a key", |v| match v {
                    Value::Boolean(b) => Some(b.then(|| "timestamp".to_owned())),
                    Value::String(k) => Some(Some(k.clone()).filter(|k| !k.is_empty())),
                    _ => None,
                })
                .flatten();
            opts.ensure_ascii = s.boolean(&["json_ensure_ascii"]).unwrap_or(true);
            let _ = s.boolean(&["exc_info_as_array"]);
            let _ = s.boolean(&["stack_info_as_array"]);
            if s.has(&["json_indent"]) {
                s.issue("json_indent", "the hub writes one JSON object per line: remove json_indent");
            }
            for key in ["json_default", "json_encoder", "json_serializer"] {
                if let Some(v) = s.value_named(key) {
                    s.issue(
                        key,
                        format!("{} is Python code, which the hub cannot run: remove it", keys::show(v)),
                    );
                }
            }
        }
        Formatter::json(opts).map_err(|e| s.issue("format", e.to_string())).ok()
    }

    fn filters(&mut self, top: &mut Section<'_>) -> BTreeMap<String, FilterConfig> {
        let mut out = BTreeMap::new();
        for (name, t) in self.named(top, &["filters"]) {
            let custom = self.dict && t.contains_key("()");
            let mut s = Section::new(join("filters", &name), t).with_unknown(self.unknown(!custom));
            if custom {
                match s.string(&["()"]) {
                    // logging.Filter(name=''): Python's name filter.
                    Some(c) if matches!(c.as_str(), "logging.Filter" | "Filter") => {}
                    Some(c) => {
                        let message = if python::is_python_code(&c) {
                            python::refusal(Construct::Filter, &c)
                        } else {
                            format!("unknown filter class {c:?} (logging.Filter)")
                        };
                        s.issue("()", message);
                        self.refused.push(s.path().to_owned());
                        self.issues.extend(s.abandon());
                        continue;
                    }
                    None => {}
                }
                if s.has(&["."]) {
                    s.issue(".", python::dot_refusal(Construct::Filter));
                }
            }
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
    ) -> (BTreeMap<String, HandlerConfig>, BTreeMap<String, QueueConfig>) {
        let defined_formatters = top.table().get("formatters").and_then(Value::as_table);
        let mut out = BTreeMap::new();
        let mut queues = BTreeMap::new();
        for (name, t) in self.named(top, &["handlers"]) {
            // dictConfig passes every identifier key to the constructor
            // (which refuses the ones it does not know) and ignores others.
            let custom = self.dict && t.contains_key("()");
            let factory = if custom { "()" } else { "class" };
            let factory_keys: keys::Keys = if custom { &["()"] } else { &["class"] };
            let mut s = Section::new(join("handlers", &name), t).with_unknown(self.unknown(false));
            let Some(class_name) = s.required_string(factory_keys, "e.g. class = \"FileHandler\"") else {
                self.issues.extend(s.abandon());
                continue;
            };
            if python::is_python_code(&class_name) {
                s.issue(factory, python::refusal(Construct::Handler, &class_name));
                self.refused.push(s.path().to_owned());
                self.issues.extend(s.abandon());
                continue;
            }
            if self.dict && s.has(&["."]) {
                s.issue(".", python::dot_refusal(Construct::Handler));
            }
            let short = class_name
                .strip_prefix("logging.handlers.")
                .or(class_name.strip_prefix("logging."))
                .unwrap_or(&class_name);
            match short {
                "QueueHandler" => {
                    let common = self.common(&mut s, defined_formatters, formatters, filters);
                    if let Some(q) = queue_handler(&mut s, common) {
                        queues.insert(name, q);
                    }
                    self.take(s);
                    continue;
                }
                "QueueListener" => {
                    s.issue(
                        factory,
                        "QueueListener is not a handler: the hub itself is the QueueHandler → QueueListener pair; \
                         write class \"logging.handlers.QueueHandler\" with handlers [...] (Python 3.12's form, \
                         where a QueueListener is the QueueHandler's `listener`)",
                    );
                    self.issues.extend(s.abandon());
                    continue;
                }
                "MemoryHandler" if custom => {
                    s.issue(
                        "()",
                        "with '()', dictConfig passes MemoryHandler's target as a plain name, which the \
                         MemoryHandler cannot flush to; write class \"logging.handlers.MemoryHandler\"",
                    );
                    self.issues.extend(s.abandon());
                    continue;
                }
                _ => {}
            }
            let Some(class) = CLASSES.iter().find(|c| c.name == short) else {
                s.issue("class", unknown_class(&class_name, short));
                // Its other keys cannot be judged without a class.
                self.issues.extend(s.abandon());
                continue;
            };
            let options = (class.parse)(&mut s);
            let (level, formatter, handler_filters) =
                self.common(&mut s, defined_formatters, formatters, filters);
            let queue_capacity =
                s.positive_at_most(&["queue_capacity"], MAX_HANDLER_QUEUE).unwrap_or(DEFAULT_HANDLER_QUEUE);
            let queue_bytes = s
                .positive_at_most(&["queue_bytes"], MAX_HANDLER_QUEUE_BYTES)
                .unwrap_or(DEFAULT_HANDLER_QUEUE_BYTES);
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
                        queue_bytes,
                        overflow,
                        escape_control_chars,
                    },
                );
            }
        }
        (out, queues)
    }

    /// Refuses two handlers writing one file. Each keeps its own buffer,
    /// rotation and delivery journal, so sharing a file interleaves their
    /// writes, rotates it under the other, and lets one's recovery cut what
    /// the other wrote and had acknowledged. Paths are compared after
    /// resolving `.`, `..` and links in the directory, and as (device,
    /// inode) when the file exists. Devices and FIFOs (`/dev/null`, a pipe)
    /// may be shared: nothing is journaled or rotated there.
    fn shared_files(&mut self, handlers: &BTreeMap<String, HandlerConfig>) {
        // (handler, normalised path, (device, inode) if the file exists)
        type Seen<'a> = (&'a str, PathBuf, Option<(u64, u64)>);
        let mut seen: Vec<Seen<'_>> = Vec::new();
        for (name, h) in handlers {
            let Some(path) = h.options.output_file() else { continue };
            let meta = std::fs::metadata(path).ok();
            if meta.as_ref().is_some_and(|m| !m.is_file()) {
                continue;
            }
            let id = meta.map(|m| {
                use std::os::unix::fs::MetadataExt;
                (m.dev(), m.ino())
            });
            let normal = normalized(path);
            if let Some((other, _, _)) =
                seen.iter().find(|(_, p, i)| *p == normal || id.is_some() && *i == id)
            {
                self.issue(
                    join(&join("handlers", name), "filename"),
                    format!(
                        "handler {other:?} writes {} too: two handlers may not share a file (each rotates, \
                         buffers and journals its own); send both loggers to one handler, or give each its own file",
                        normal.display()
                    ),
                );
                continue;
            }
            seen.push((name, normal, id));
        }
    }

    /// A disk buffer needs a `state_dir` to live in and the journal that
    /// makes what it acknowledges durable; it cannot drop its oldest records.
    fn disk_buffers(&mut self, handlers: &BTreeMap<String, HandlerConfig>, hub: &crate::access::HubPolicy) {
        for (name, h) in handlers {
            if !h.options.disk_buffer() {
                continue;
            }
            let path = join("handlers", name);
            if hub.state_dir.is_none() || !hub.journal {
                self.issue(
                    join(&path, "buffer"),
                    "\"disk\" needs [hub] state_dir (where the buffer lives) and journal = true (which makes what it acknowledges durable)",
                );
            }
            if h.overflow == OverflowPolicy::DropOldest {
                self.issue(
                    join(&path, "overflow"),
                    "\"drop_oldest\" cannot drop from a disk buffer: use \"drop_newest\" or \"block\"",
                );
            }
        }
    }

    /// The keys every handler has: level, formatter, filters.
    fn common(
        &mut self,
        s: &mut Section<'_>,
        defined_formatters: Option<&Table>,
        formatters: &BTreeMap<String, FormatterConfig>,
        filters: &BTreeMap<String, FilterConfig>,
    ) -> (Level, Option<String>, Vec<String>) {
        let level = s.level(&["level"]).unwrap_or(Level::NOTSET);
        let formatter = s.string(&["formatter"]);
        if let Some(f) = &formatter
            && !formatters.contains_key(f)
            && !self.is_refused("formatters", f)
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
        self.check_filters(s, &handler_filters, filters);
        (level, formatter, handler_filters)
    }

    /// Filter names that are neither defined nor refused (already reported).
    fn check_filters(&self, s: &mut Section<'_>, names: &[String], filters: &BTreeMap<String, FilterConfig>) {
        let path = s.key_path("filters");
        for (i, n) in names.iter().enumerate() {
            if !filters.contains_key(n) && !self.is_refused("filters", n) {
                s.issue_at(format!("{path}[{i}]"), format!("unknown filter {n:?}"));
            }
        }
    }

    /// Which handlers receive records prepared by a QueueHandler (see
    /// [`Config::prepared`]). A handler gets one kind of record: one reached
    /// both through a QueueHandler and otherwise is refused.
    fn prepared<'h>(
        &mut self,
        handlers: &'h BTreeMap<String, HandlerConfig>,
        queues: &'h BTreeMap<String, QueueConfig>,
        root: &'h LoggerConfig,
        loggers: &'h BTreeMap<String, LoggerConfig>,
    ) -> BTreeMap<String, Option<String>> {
        // Each handler's ways in: None directly, Some((queue, its formatter)).
        type Way<'h> = Option<(&'h str, Option<&'h str>)>;
        fn add<'h>(
            ways: &mut BTreeMap<&'h str, Vec<Way<'h>>>,
            handlers: &'h BTreeMap<String, HandlerConfig>,
            h: &str,
            way: Way<'h>,
        ) {
            if let Some((k, _)) = handlers.get_key_value(h) {
                let list = ways.entry(k.as_str()).or_default();
                if !list.contains(&way) {
                    list.push(way);
                }
            }
        }
        let mut ways: BTreeMap<&'h str, Vec<Way<'h>>> = BTreeMap::new();
        for logger in std::iter::once(root).chain(loggers.values()) {
            for h in &logger.handlers {
                add(&mut ways, handlers, h, None);
                if let Some((q, queue)) = queues.get_key_value(h) {
                    for t in &queue.handlers {
                        add(&mut ways, handlers, t, Some((q.as_str(), queue.formatter.as_deref())));
                    }
                }
            }
        }
        // A MemoryHandler passes on what it was given (targets do not loop).
        for _ in 0..handlers.len() {
            for (name, h) in handlers {
                if let Some(target) = h.options.target() {
                    for way in ways.get(name.as_str()).cloned().unwrap_or_default() {
                        add(&mut ways, handlers, target, way);
                    }
                }
            }
        }
        let mut out = BTreeMap::new();
        for (h, list) in ways {
            let formats: Vec<Option<Option<&str>>> = list.iter().map(|w| w.map(|(_, f)| f)).collect();
            if formats.iter().skip(1).any(|f| *f != formats[0]) {
                let queue = list.iter().flatten().next().map_or("", |(q, _)| *q);
                self.issue(
                    join("handlers", h),
                    format!(
                        "receives records through QueueHandler {queue:?} and otherwise: the QueueHandler makes its \
                         formatter's output each record's message (QueueHandler.prepare), and a hub handler formats \
                         one kind of record; attach it one way"
                    ),
                );
            } else if let Some(Some(f)) = formats.first() {
                out.insert(h.to_owned(), f.map(str::to_owned));
            }
        }
        out
    }

    /// No chain of handlers passing records on to another (MemoryHandler's
    /// `target`) loops.
    fn targets(
        &mut self,
        handlers: &BTreeMap<String, HandlerConfig>,
        queues: &BTreeMap<String, QueueConfig>,
    ) {
        for (name, q) in queues {
            for (i, h) in q.handlers.iter().enumerate() {
                let path = format!("{}[{i}]", join(&join("handlers", name), "handlers"));
                if queues.contains_key(h) {
                    self.issue(path, format!("{h:?} is a QueueHandler too: list its handlers here instead"));
                } else if !handlers.contains_key(h)
                    && !self.issues.iter().any(|x| x.path.starts_with(&join("handlers", h)))
                {
                    self.issue(path, format!("unknown handler {h:?}"));
                }
            }
        }
        for (name, h) in handlers {
            if let Some(t) = h.options.target()
                && queues.contains_key(t)
            {
                self.issue(
                    join(&join("handlers", name), "target"),
                    format!("{t:?} is a QueueHandler: target one of its handlers (the hub is the listener)"),
                );
            }
        }
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
        kind: LoggerKind,
        known: &dyn Fn(&str) -> bool,
        filters: &BTreeMap<String, FilterConfig>,
    ) -> LoggerConfig {
        let level = s.level(&["level"]);
        let hs = s.string_list(&["handlers"]);
        // A handler that failed to parse was already reported; only names
        // that appear nowhere in [handlers] are unknown.
        for (i, h) in hs.iter().enumerate() {
            if !known(h) && !self.issues.iter().any(|x| x.path.starts_with(&join("handlers", h))) {
                s.issue_at(format!("{}[{i}]", s.key_path("handlers")), format!("unknown handler {h:?}"));
            }
        }
        let fs = s.string_list(&["filters"]);
        self.check_filters(s, &fs, filters);
        let propagate = match kind {
            LoggerKind::Root => false,
            // Python sets it on the root logger, which has no parent.
            LoggerKind::RootByName => {
                let _ = s.boolean(&["propagate"]);
                false
            }
            LoggerKind::Named => s.boolean(&["propagate"]).unwrap_or(true),
        };
        LoggerConfig { level, handlers: hs, filters: fs, propagate }
    }
}

/// A QueueHandler's own keys (see [`QueueConfig`]).
fn queue_handler(s: &mut Section<'_>, common: (Level, Option<String>, Vec<String>)) -> Option<QueueConfig> {
    let (level, formatter, filters) = common;
    if !s.has(&["handlers"]) {
        s.missing(
            &["handlers"],
            "the handlers this QueueHandler's listener passes records to; the hub is the listener",
        );
        return None;
    }
    let handlers = s.string_list(&["handlers"]);
    let respect_handler_level = s.boolean(&["respect_handler_level"]).unwrap_or(false);
    // The queue and the listener are the hub's own: Python's standard ones
    // are accepted, anything else is Python code.
    const QUEUES: &[&str] =
        &["queue.Queue", "queue.SimpleQueue", "multiprocessing.Queue", "multiprocessing.JoinableQueue"];
    const LISTENERS: &[&str] = &["logging.handlers.QueueListener"];
    for (key, known) in [("queue", QUEUES), ("listener", LISTENERS)] {
        let spelling: keys::Keys = if key == "queue" { &["queue"] } else { &["listener"] };
        let Some((_, v)) = s.value(spelling) else { continue };
        let name = match v {
            Value::String(n) => Some(n.as_str()),
            Value::Table(t) => t.get("()").and_then(Value::as_str),
            _ => None,
        };
        match name {
            Some(n) if known.contains(&n) => {
                if key == "queue" && v.as_table().is_some_and(|t| t.keys().any(|k| k != "()")) {
                    s.warn(
                        key,
                        "the hub queues records in each handler's own bounded queue (queue_capacity, overflow); \
                         this queue's arguments are not used",
                    );
                }
            }
            Some(n) => s.issue(key, python::refusal(Construct::Handler, n)),
            None => s.issue(key, format!("{}: the hub has its own {key}; remove it", keys::show(v))),
        }
    }
    Some(QueueConfig { level, filters, formatter, handlers, respect_handler_level })
}

/// The `[hub]` section: the socket, the listener queue, the metrics
/// endpoint, and the policy read by `access.rs` (access, client limits, journal, shutdown).
fn hub(s: &mut Section<'_>) -> HubConfig {
    let policy = crate::access::HubPolicy::parse(s);
    let socket = s.string(&["socket"]).map(PathBuf::from);
    if let Some(Err(e)) = socket.as_deref().map(crate::access::check_socket_path) {
        s.issue("socket", e);
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
    let queue_capacity =
        s.positive_at_most(&["queue_capacity"], MAX_LISTENER_QUEUE).unwrap_or(DEFAULT_LISTENER_QUEUE);
    let metrics = s.parsed(&["metrics"], "HOST:PORT (e.g. \"127.0.0.1:9108\")", |v| {
        let text = v.as_str()?;
        // Resolved here so that check-config finds a bad address; the hub
        // binds the first address it resolves to.
        use std::net::ToSocketAddrs;
        text.to_socket_addrs().ok()?.next().map(|_| text.to_owned())
    });
    let python = crate::python_in::PythonInputs::parse(s);
    let allowlist = !policy.allowed_uids.is_empty() || !policy.allowed_gids.is_empty();
    if python.unix_dgram.is_some() && allowlist {
        s.issue(
            "python_unix_dgram",
            "datagrams carry no peer credentials, so allowed_uids/allowed_gids cannot be enforced on it; use python_unix (a stream socket) or rely on socket_mode and socket_group",
        );
    }
    HubConfig { socket, socket_mode, queue_capacity, policy, metrics, python }
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

/// python-json-logger's `fmt` given as a string, with its style.
fn json_fields(s: &mut Section<'_>, fmt: Option<String>) -> JsonFields {
    let style = s.string(&["style"]).unwrap_or_else(|| "%".into());
    let validate = s.boolean(&["validate"]).unwrap_or(true);
    JsonFields::Format { fmt, style, validate }
}

/// A table of JSON values (`static_fields`, `defaults`), in its order.
fn json_table(v: &Value) -> Option<Vec<(String, JsonValue)>> {
    fn json(v: &Value) -> JsonValue {
        match v {
            v if dictconfig::is_null(v) => JsonValue::Null,
            Value::String(s) => JsonValue::Str(s.clone()),
            Value::Integer(i) => JsonValue::Int(*i),
            Value::Float(f) => JsonValue::Float(*f),
            Value::Boolean(b) => JsonValue::Bool(*b),
            Value::Datetime(d) => JsonValue::Str(d.to_string()),
            Value::Array(a) => JsonValue::List(a.iter().map(json).collect()),
            Value::Table(t) => JsonValue::Object(t.iter().map(|(k, v)| (k.clone(), json(v))).collect()),
        }
    }
    Some(v.as_table()?.iter().map(|(k, v)| (k.clone(), json(v))).collect())
}

/// `common_logger_config` on the root logger: a level if given, the
/// handlers replaced, the filters added.
/// `path` made absolute with `.` and `..` resolved, and the links in its
/// directory too when that exists (the file itself may not exist yet).
fn normalized(path: &Path) -> PathBuf {
    use std::path::Component;
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    // The kernel's own reading of the directory, links and `..` included.
    if let (Some(dir), Some(name)) =
        (absolute.parent().and_then(|d| std::fs::canonicalize(d).ok()), absolute.file_name())
    {
        return dir.join(name);
    }
    let mut out = PathBuf::new();
    for c in absolute.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    match (out.parent().and_then(|d| std::fs::canonicalize(d).ok()), out.file_name()) {
        (Some(dir), Some(name)) => dir.join(name),
        _ => out,
    }
}

fn apply_to_root(root: &mut LoggerConfig, logger: LoggerConfig) {
    if logger.level.is_some() {
        root.level = logger.level;
    }
    root.handlers = logger.handlers;
    root.filters.extend(logger.filters);
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
    fn two_handlers_writing_one_file_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::os::unix::fs::symlink(dir.path(), dir.path().join("link")).unwrap();
        std::fs::write(dir.path().join("exists.log"), "").unwrap();
        std::fs::hard_link(dir.path().join("exists.log"), dir.path().join("hard.log")).unwrap();
        let pair = |a: &str, class_b: &str, b: &str| {
            issues(&format!(
                "[handlers.all]\nclass = \"FileHandler\"\nfilename = \"{a}\"\n\
                 [handlers.errors]\nclass = \"{class_b}\"\nfilename = \"{b}\"\nlevel = \"ERROR\"\n\
                 [root]\nhandlers = [\"all\", \"errors\"]\n"
            ))
        };
        for (a, class, b) in [
            (format!("{d}/app.log"), "FileHandler", format!("{d}/app.log")),
            (format!("{d}/app.log"), "RotatingFileHandler", format!("{d}/sub/../app.log")),
            (format!("{d}/app.log"), "WatchedFileHandler", format!("{d}/./link/app.log")),
            (format!("{d}/exists.log"), "TimedRotatingFileHandler", format!("{d}/hard.log")),
        ] {
            let got = pair(&a, class, &b);
            assert_eq!(got.len(), 1, "{a} and {b}: {got:?}");
            assert!(
                got[0].starts_with("handlers.errors.filename: handler \"all\" writes")
                    && got[0].contains("share a file"),
                "{got:?}"
            );
        }
        assert!(pair(&format!("{d}/a.log"), "FileHandler", &format!("{d}/b.log")).is_empty());
        assert!(pair("/dev/null", "FileHandler", "/dev/null").is_empty(), "a device may be shared");
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
        // One message per construct: the Python code, not its arguments.
        let expect = [
            "handlers.h.\"()\": \"myapp.MyHandler\" is Python code, which the hub cannot run: keep this handler in the Python process",
            "handlers.m.\".\": '.' sets attributes on the Python handler object",
            "handlers.m.class: unknown handler class \"logging.handlers.SMTPHandlerX\"",
            // Resolved as Python resolves it (h is configured after f), and h has no level.
            "handlers.f.level: \"cfg://handlers.h.level\": KeyError: \"level\"",
        ];
        for e in expect {
            assert!(got.iter().any(|g| g.starts_with(e)), "missing {e:?} in {got:#?}");
        }
        assert_eq!(got.len(), expect.len(), "{got:#?}");
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
            if name.starts_with("Queue") {
                // The hub is the pair: a QueueHandler passes records to its
                // handlers (tested below), a QueueListener is its `listener`.
                continue;
            }
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
        let near_later = class_issue("logging.handlers.BufferingHandlr").unwrap();
        assert!(
            near_later.contains("did you mean \"BufferingHandler\"? (BufferingHandler is one of Python's"),
            "{near_later}"
        );
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn loggers_named_root_or_empty_configure_the_root_logger() {
        let c = Config::from_json_str(
            r#"{"version": 1, "handlers": {"a": {"class": "logging.NullHandler"}, "b": {"class": "logging.NullHandler"}},
                "loggers": {"": {"level": "INFO", "handlers": ["a"], "filters": []}, "app": {"handlers": ["b"]}}}"#,
            "x.json",
        )
        .unwrap();
        assert_eq!(c.root.level, Some(Level::INFO));
        assert_eq!(c.root.handlers, ["a"]);
        assert_eq!(c.loggers.keys().collect::<Vec<_>>(), ["app"]);
        // `root` comes last: its level wins, its (absent) handlers replace.
        let c = Config::from_toml_str(
            "[handlers.a]\nclass = \"NullHandler\"\n[loggers.root]\nlevel = \"INFO\"\nhandlers = [\"a\"]\npropagate = false\n[root]\nlevel = \"ERROR\"\n",
            "x.toml",
        )
        .unwrap();
        assert_eq!((c.root.level, c.root.handlers.len()), (Some(Level::ERROR), 0));
        let both = issues("[loggers.root]\n[loggers.\"\"]\n");
        assert!(
            both[0].starts_with("loggers: loggers.\"\" and loggers.root both configure the root logger"),
            "{both:?}"
        );
    }

    #[test]
    fn queue_handlers_json_formatters_and_warnings() {
        let c = Config::from_json_str(
            r#"{"version": 1, "custom": 1, "formatters": {"j": {"()": "pythonjsonlogger.json.JsonFormatter",
                  "static_fields": {"a": 1}, "timestamp": true}, "p": {"format": "%(message)s", "fmt": "ignored"}},
                "handlers": {"f": {"class": "logging.NullHandler", "formatter": "j"},
                             "q": {"class": "logging.handlers.QueueHandler", "handlers": ["f"],
                                   "queue": {"()": "queue.Queue", "maxsize": 10}, "listener": "logging.handlers.QueueListener"}},
                "loggers": {"app": {"handlers": ["q"], "qualname": "app"}}}"#,
            "x.json",
        )
        .unwrap();
        assert!(c.formatters["j"].formatter.is_json());
        assert_eq!(c.queues["q"].handlers, ["f"]);
        assert_eq!(c.prepared.get("f"), Some(&None));
        assert!(!c.escapes_records("f"), "JSON escapes its own output");
        let w = c.warnings.join("\n");
        for e in [
            "custom: ignored",
            "formatters.p.fmt: ignored",
            "loggers.app.qualname: ignored",
            "handlers.q.queue: the hub queues",
        ] {
            assert!(w.contains(e), "missing {e:?} in {w}");
        }
        // A handler fed both ways, a nested QueueHandler, a queue target.
        let got = issues(
            r#"
[handlers.f]
class = "NullHandler"
[handlers.q]
class = "QueueHandler"
handlers = ["f", "q2"]
[handlers.q2]
class = "QueueHandler"
handlers = ["f"]
[handlers.m]
class = "MemoryHandler"
capacity = 1
target = "q"
[handlers.qq]
class = "QueueHandler"
[root]
handlers = ["q", "f"]
"#,
        );
        let expect = [
            "handlers.qq.handlers: missing",
            "handlers.q.handlers[1]: \"q2\" is a QueueHandler too",
            "handlers.m.target: \"q\" is a QueueHandler",
            "handlers.f: receives records through QueueHandler \"q\" and otherwise",
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
