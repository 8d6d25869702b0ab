//! The one key reader every part of the configuration goes through.
//!
//! A [`Section`] wraps one TOML table (`[hub]`, `[handlers.file]` …) and its
//! key path. Each typed getter takes every accepted spelling of a key
//! (snake_case first, then Python's), records that the key is known, and
//! collects a [`ConfigIssue`] naming the key path when the value is wrong.
//! [`Section::finish`] then reports every key nobody asked for: the set of
//! known keys is exactly the set of keys the code reads, so a handler's
//! options and their parsing live together in its own file, and a typo never
//! silently does nothing.

use std::fmt;
use std::time::Duration;

use logfunnel_protocol::{Level, parse_level};
use toml::{Table, Value};

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

/// Accepted spellings of a key: snake_case first, then Python's names.
pub type Keys = &'static [&'static str];

/// `path.key`, quoting keys that are not plain identifiers.
pub fn join(path: &str, key: &str) -> String {
    let quoted = if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        key.to_owned()
    } else {
        format!("{key:?}")
    };
    if path.is_empty() { quoted } else { format!("{path}.{quoted}") }
}

/// What a key nobody read means. TOML is the hub's own format, where a
/// typo is ours to catch; in a Python dictConfig (JSON or YAML), keys that
/// Python's `dictConfig` itself ignores are accepted with a warning, so a
/// Python project's config runs unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unknown {
    /// An error (TOML; and any table Python would not ignore either).
    #[default]
    Error,
    /// A warning naming it: Python ignores it (a logger's `qualname`, a
    /// project's own top-level keys).
    Warn,
    /// A warning for keys that are not Python identifiers (dictConfig
    /// passes only identifiers to a handler's constructor), an error for the
    /// others (Python's constructor would refuse them).
    WarnNonIdentifier,
}

/// One table of the configuration being read; see the module docs.
#[derive(Debug)]
pub struct Section<'t> {
    path: String,
    table: &'t Table,
    known: Vec<Keys>,
    /// Keys whose names are made at run time (`password_env`…).
    known_named: Vec<String>,
    issues: Vec<ConfigIssue>,
    warnings: Vec<ConfigIssue>,
    refs: Vec<Reference>,
    unknown: Unknown,
}

/// A value naming another part of the configuration (a MemoryHandler's
/// `target` names a handler), checked once every section has been read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The key path of the value.
    pub path: String,
    /// The top-level section the name must be defined in (`handlers`…).
    pub section: &'static str,
    /// The name.
    pub name: String,
}

impl<'t> Section<'t> {
    /// A reader of `table`, found at key path `path` (`""` for the top level).
    pub fn new(path: impl Into<String>, table: &'t Table) -> Section<'t> {
        Section {
            path: path.into(),
            table,
            known: Vec::new(),
            known_named: Vec::new(),
            issues: Vec::new(),
            warnings: Vec::new(),
            refs: Vec::new(),
            unknown: Unknown::Error,
        }
    }

    /// The same reader, with `unknown` deciding what unread keys mean.
    pub fn with_unknown(mut self, unknown: Unknown) -> Section<'t> {
        self.unknown = unknown;
        self
    }

    /// Records a warning about `key` (`""`: the section itself): accepted,
    /// but worth telling.
    pub fn warn(&mut self, key: &str, message: impl Into<String>) {
        let path = if key.is_empty() { self.path.clone() } else { self.key_path(key) };
        self.warnings.push(ConfigIssue { path, message: message.into() });
    }

    /// The warnings so far (see [`Section::warn`]); unread keys are judged
    /// by [`Section::finish`].
    pub fn take_warnings(&mut self) -> Vec<ConfigIssue> {
        std::mem::take(&mut self.warnings)
    }

    /// This section's key path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The key path of `key` in this section.
    pub fn key_path(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// The table itself (for checks across keys).
    pub fn table(&self) -> &'t Table {
        self.table
    }

    /// Records a problem with `key` (`""`: the section itself).
    pub fn issue(&mut self, key: &str, message: impl Into<String>) {
        let path = if key.is_empty() { self.path.clone() } else { self.key_path(key) };
        self.issues.push(ConfigIssue { path, message: message.into() });
    }

    /// Records a problem at a full key path (a nested item such as `address[1]`).
    pub fn issue_at(&mut self, path: String, message: impl Into<String>) {
        self.issues.push(ConfigIssue { path, message: message.into() });
    }

    /// Whether any problem was recorded so far.
    pub fn has_issues(&self) -> bool {
        !self.issues.is_empty()
    }

    /// Marks `keys` as known without reading them (accepted and ignored).
    pub fn accept(&mut self, keys: Keys) {
        self.known.push(keys);
    }

    /// Whether the key is present under any spelling (marks it known).
    pub fn has(&mut self, keys: Keys) -> bool {
        self.known.push(keys);
        keys.iter().any(|k| self.table.contains_key(*k))
    }

    /// The raw value and the spelling it was found under (two spellings at
    /// once are an error).
    pub fn value(&mut self, keys: Keys) -> Option<(&'static str, &'t Value)> {
        self.known.push(keys);
        let mut found: Option<(&'static str, &'t Value)> = None;
        for k in keys {
            if let Some(v) = self.table.get(*k) {
                match found {
                    Some((first, _)) => {
                        let first = self.key_path(first);
                        self.issue(k, format!("given twice (also as {first})"));
                    }
                    None => found = Some((k, v)),
                }
            }
        }
        found
    }

    /// The raw value of a key whose name is made at run time (`{key}_env`).
    pub fn value_named(&mut self, key: &str) -> Option<&'t Value> {
        self.known_named.push(key.to_owned());
        self.table.get(key)
    }

    /// Records that the value of `key` names an entry of top-level `section`.
    pub fn reference(&mut self, key: &str, section: &'static str, name: &str) {
        self.refs.push(Reference { path: self.key_path(key), section, name: name.to_owned() });
    }

    /// The references recorded so far (see [`Section::reference`]).
    pub fn take_refs(&mut self) -> Vec<Reference> {
        std::mem::take(&mut self.refs)
    }

    /// Reports a missing required key, with a hint.
    pub fn missing(&mut self, keys: Keys, hint: &str) {
        self.issue(keys[0], format!("missing ({hint})"));
    }

    /// Reads a value with `parse`; `expected` completes "expected …, found X".
    pub fn parsed<T>(
        &mut self,
        keys: Keys,
        expected: &str,
        parse: impl FnOnce(&'t Value) -> Option<T>,
    ) -> Option<T> {
        let (key, v) = self.value(keys)?;
        let parsed = parse(v);
        if parsed.is_none() {
            self.issue(key, format!("expected {expected}, found {}", show(v)));
        }
        parsed
    }

    /// A string.
    pub fn string(&mut self, keys: Keys) -> Option<String> {
        self.parsed(keys, "a string", |v| v.as_str().map(str::to_owned))
    }

    /// A string that must be present.
    pub fn required_string(&mut self, keys: Keys, hint: &str) -> Option<String> {
        if !self.has(keys) {
            self.missing(keys, hint);
            return None;
        }
        self.string(keys)
    }

    /// `true` or `false`.
    pub fn boolean(&mut self, keys: Keys) -> Option<bool> {
        self.parsed(keys, "true or false", Value::as_bool)
    }

    /// An integer above zero.
    pub fn positive(&mut self, keys: Keys) -> Option<usize> {
        self.parsed(keys, "a positive integer", |v| {
            v.as_integer().filter(|i| *i > 0).and_then(|i| usize::try_from(i).ok())
        })
    }

    /// An integer from 1 to `max`: every size is bounded when it is read,
    /// not when memory runs out.
    pub fn positive_at_most(&mut self, keys: Keys, max: usize) -> Option<usize> {
        let n = self.positive(keys)?;
        if n > max {
            self.issue(keys[0], format!("{n} is more than the limit of {max}"));
            return None;
        }
        Some(n)
    }

    /// A number of bytes, zero or more.
    pub fn bytes(&mut self, keys: Keys) -> Option<u64> {
        self.parsed(keys, "a number of bytes (0 or more)", |v| {
            v.as_integer().and_then(|i| u64::try_from(i).ok())
        })
    }

    /// A count that fits 32 bits, zero or more.
    pub fn count(&mut self, keys: Keys) -> Option<u32> {
        self.parsed(keys, "a count (0 or more)", |v| v.as_integer().and_then(|i| u32::try_from(i).ok()))
    }

    /// A number of seconds (integer or float); `zero_ok` allows 0.
    pub fn seconds(&mut self, keys: Keys, zero_ok: bool) -> Option<Duration> {
        let expected =
            if zero_ok { "a number of seconds (0 = never)" } else { "a number of seconds above 0" };
        self.parsed(keys, expected, |v| {
            let s = match v {
                Value::Integer(i) => *i as f64,
                Value::Float(f) => *f,
                _ => return None,
            };
            (s.is_finite() && (s > 0.0 || zero_ok && s == 0.0) && s < 1e9).then(|| Duration::from_secs_f64(s))
        })
    }

    /// A level: a name Python knows (any case), or a number.
    pub fn level(&mut self, keys: Keys) -> Option<Level> {
        let (key, v) = self.value(keys)?;
        let parsed = match v {
            Value::String(s) => parse_level(s),
            Value::Integer(i) => u32::try_from(*i).ok().map(Level),
            _ => None,
        };
        if parsed.is_none() {
            self.issue(
                key,
                format!(
                    "{} is not a level (use NOTSET, DEBUG, INFO, WARNING, ERROR, CRITICAL or a number)",
                    show(v)
                ),
            );
        }
        parsed
    }

    /// A list of strings (names of formatters, filters, handlers…).
    pub fn string_list(&mut self, keys: Keys) -> Vec<String> {
        let Some((key, v)) = self.value(keys) else { return Vec::new() };
        let path = self.key_path(key);
        match v {
            Value::Array(items) => items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| match item {
                    Value::String(s) => Some(s.clone()),
                    other => {
                        self.issue_at(
                            format!("{path}[{i}]"),
                            format!("expected a name, found {}", show(other)),
                        );
                        None
                    }
                })
                .collect(),
            other => {
                self.issue(key, format!("expected a list of names, found {}", other.type_str()));
                Vec::new()
            }
        }
    }

    /// One of `choices` (compared as written); the message lists them.
    pub fn choice<T: Copy>(&mut self, keys: Keys, choices: &[(&str, T)]) -> Option<T> {
        let (key, v) = self.value(keys)?;
        let found = v.as_str().and_then(|s| choices.iter().find(|(name, _)| *name == s).map(|(_, t)| *t));
        if found.is_none() {
            let names: Vec<String> = choices.iter().map(|(n, _)| format!("{n:?}")).collect();
            self.issue(key, format!("{} is not one of {}", show(v), names.join(", ")));
        }
        found
    }

    /// A sub-table, as a section of its own (its issues come back through
    /// [`Section::merge`]).
    pub fn sub_table(&mut self, keys: Keys) -> Option<Section<'t>> {
        let (key, v) = self.value(keys)?;
        match v {
            Value::Table(t) => Some(Section::new(self.key_path(key), t)),
            other => {
                self.issue(key, format!("expected a table, found {}", other.type_str()));
                None
            }
        }
    }

    /// Takes over the issues of a nested section (checking its unknown keys).
    pub fn merge(&mut self, nested: Section<'_>) {
        let (issues, warnings) = nested.finish_with_warnings();
        self.issues.extend(issues);
        self.warnings.extend(warnings);
    }

    /// The issues so far, without judging unknown keys (a table whose
    /// meaning is unknown, such as a handler of an unknown class).
    pub fn abandon(self) -> Vec<ConfigIssue> {
        self.issues
    }

    /// Takes over the issues of a nested section whose keys are data (a
    /// map of levels…), so none of them is "unknown".
    pub fn merge_issues(&mut self, nested: Section<'_>) {
        self.issues.extend(nested.abandon());
    }

    /// Every issue, with one for each key nobody asked for (or, as
    /// [`Unknown`] says, a warning: see [`Section::finish_with_warnings`]).
    pub fn finish(self) -> Vec<ConfigIssue> {
        self.finish_with_warnings().0
    }

    /// Every issue and every warning.
    pub fn finish_with_warnings(mut self) -> (Vec<ConfigIssue>, Vec<ConfigIssue>) {
        let mut unknown = Vec::new();
        for key in self.table.keys() {
            if !self.known.iter().any(|spellings| spellings.contains(&key.as_str()))
                && !self.known_named.contains(key)
            {
                let ignored = match self.unknown {
                    Unknown::Error => false,
                    Unknown::Warn => true,
                    Unknown::WarnNonIdentifier => !is_identifier(key),
                };
                if ignored {
                    self.warn(key, "ignored (Python's dictConfig does not read it either)");
                } else {
                    unknown.push(key.clone());
                }
            }
        }
        if !unknown.is_empty() {
            let mut names: Vec<&str> = self.known.iter().map(|s| s[0]).collect();
            names.extend(self.known_named.iter().map(String::as_str));
            let mut seen = std::collections::BTreeSet::new();
            names.retain(|n| seen.insert(*n));
            let message = format!("unknown key (expected one of: {})", names.join(", "));
            for key in unknown {
                self.issue(&key, message.clone());
            }
        }
        (self.issues, self.warnings)
    }
}

/// Python's `str.isidentifier()` as dictConfig's `valid_ident` applies it
/// (ASCII letters, digits and `_`, not starting with a digit; non-ASCII
/// letters count too).
pub fn is_identifier(key: &str) -> bool {
    let mut chars = key.chars();
    chars.next().is_some_and(|c| c == '_' || c.is_alphabetic())
        && chars.all(|c| c == '_' || c.is_alphanumeric())
}

/// A value as the messages show it: strings quoted, tables by type.
pub fn show(v: &Value) -> String {
    match v {
        Value::Table(_) | Value::Array(_) => match v {
            Value::Array(a) if a.len() <= 4 && a.iter().all(|x| !matches!(x, Value::Table(_))) => {
                v.to_string()
            }
            _ => format!("a {}", v.type_str()),
        },
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(s: &str) -> Table {
        s.parse().unwrap()
    }

    #[test]
    fn known_keys_are_exactly_the_keys_read_and_problems_name_their_path() {
        let t = table("a = 1\nmaxBytes = 2\nb = \"x\"\ntypo = true\nlist = [\"x\", 3]\nsecs = 0");
        let mut s = Section::new("handlers.f", &t);
        assert_eq!(s.positive(&["a"]), Some(1));
        assert_eq!(s.bytes(&["max_bytes", "maxBytes"]), Some(2));
        assert_eq!(s.positive(&["b"]), None);
        assert_eq!(s.string_list(&["list"]), ["x"]);
        assert_eq!(s.seconds(&["secs"], false), None);
        assert_eq!(s.string(&["absent"]), None);
        let issues: Vec<String> = s.finish().iter().map(ToString::to_string).collect();
        assert_eq!(
            issues,
            [
                "handlers.f.b: expected a positive integer, found \"x\"",
                "handlers.f.list[1]: expected a name, found 3",
                "handlers.f.secs: expected a number of seconds above 0, found 0",
                "handlers.f.typo: unknown key (expected one of: a, max_bytes, b, list, secs, absent)",
            ]
        );
    }

    #[test]
    fn two_spellings_at_once_are_an_error() {
        let t = table("backup_count = 1\nbackupCount = 2");
        let mut s = Section::new("h", &t);
        assert_eq!(s.count(&["backup_count", "backupCount"]), Some(1));
        let issues = s.finish();
        assert_eq!(issues[0].to_string(), "h.backupCount: given twice (also as h.backup_count)");
    }

    #[test]
    fn choices_and_levels() {
        let t = table("mode = \"x\"\nlevel = \"loud\"\nok = \"b\"");
        let mut s = Section::new("", &t);
        assert_eq!(s.choice(&["ok"], &[("a", 1), ("b", 2)]), Some(2));
        assert_eq!(s.choice(&["mode"], &[("a", 1)]), None);
        assert_eq!(s.level(&["level"]), None);
        let issues: Vec<String> = s.finish().iter().map(ToString::to_string).collect();
        assert_eq!(issues[0], "mode: \"x\" is not one of \"a\"");
        assert!(issues[1].starts_with("level: \"loud\" is not a level"));
    }
}
