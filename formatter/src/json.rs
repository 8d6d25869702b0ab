//! python-json-logger's `JsonFormatter` (4.x; `pythonjsonlogger.json`,
//! formerly `pythonjsonlogger.jsonlogger`): one JSON object per record, the
//! same keys in the same order with the same values as the package writes
//! for the same record (the differential tests run the real package).
//!
//! The object is built as `BaseJsonFormatter.add_fields` builds it: the
//! `defaults`, then the fields the format names (`record.__dict__.get`, so
//! an absent one is `null`), then `static_fields`, then `exc_info` (the
//! record's traceback text), then every other attribute of the record that
//! is not reserved (the extras, in the record's order), then the timestamp;
//! renamed keys keep the place of their first appearance, as a Python dict
//! does. Serialized as `json.dumps` does by default: `", "` and `": "`,
//! `ensure_ascii`, `NaN`/`Infinity`, floats as `repr()`.

use std::fmt::Write as _;

use crate::error::FormatError;
use crate::float::push_float_str;
use crate::parse::{Style, python_validate};
use crate::time::Clock;
use crate::values::{Attr, RecordContext, Val, lookup, value_of_extra};

/// A value given in the configuration (`static_fields`, `defaults`).
#[derive(Debug, Clone, PartialEq)]
pub enum JsonValue {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float (written as Python's `repr()`).
    Float(f64),
    /// A string.
    Str(String),
    /// A list.
    List(Vec<JsonValue>),
    /// An object, in its order.
    Object(Vec<(String, JsonValue)>),
}

/// How the fields to show are named: python-json-logger's `fmt`.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonFields {
    /// A format string in a style (`"%"`, `"{"`, `"$"`, or `","` for a
    /// comma-separated list); only its field names are used.
    Format {
        /// The format (`None`: the style's default, which names `message`).
        fmt: Option<String>,
        /// The style, as Python spells it.
        style: String,
        /// Whether the format is validated as `logging.Formatter` does.
        validate: bool,
    },
    /// A list of field names.
    Names(Vec<String>),
}

/// `JsonFormatter`'s arguments (python-json-logger's names).
#[derive(Debug, Clone, PartialEq)]
pub struct JsonOptions {
    /// `fmt` (and `style`, `validate`).
    pub fields: JsonFields,
    /// `datefmt`, for `asctime`.
    pub datefmt: Option<String>,
    /// `prefix`: text before the object.
    pub prefix: String,
    /// `rename_fields`: output keys for record attributes.
    pub rename_fields: Vec<(String, String)>,
    /// `rename_fields_keep_missing`: renamed keys appear as `null` when absent.
    pub rename_fields_keep_missing: bool,
    /// `static_fields`: added to every object.
    pub static_fields: Vec<(String, JsonValue)>,
    /// `defaults`: first in every object, overridden by the record's fields.
    pub defaults: Vec<(String, JsonValue)>,
    /// `reserved_attrs`: attributes never added as extras (default: every
    /// LogRecord attribute).
    pub reserved_attrs: Option<Vec<String>>,
    /// `timestamp`: the key of an ISO 8601 UTC time (`true`: `"timestamp"`).
    pub timestamp: Option<String>,
    /// `json_ensure_ascii` (default true): non-ASCII as `\uXXXX`.
    pub ensure_ascii: bool,
}

impl Default for JsonOptions {
    fn default() -> JsonOptions {
        JsonOptions {
            fields: JsonFields::Format { fmt: None, style: "%".into(), validate: true },
            datefmt: None,
            prefix: String::new(),
            rename_fields: Vec::new(),
            rename_fields_keep_missing: false,
            static_fields: Vec::new(),
            defaults: Vec::new(),
            reserved_attrs: None,
            timestamp: None,
            ensure_ascii: true,
        }
    }
}

// python-json-logger's `RESERVED_ATTRS` on Python 3.11 are these (the
// LogRecord's own attributes, in the order `LogRecord.__init__` sets them:
// the order in which they appear when not reserved), then `message` and
// `asctime`.
use logfunnel_protocol::python::RECORD_ATTRS;

/// A compiled JSON formatter (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct Json {
    opts: JsonOptions,
    required: Vec<String>,
    skip: Vec<String>,
    /// Escape DEL and C1 controls too (the handler's `escape_control_chars`;
    /// only matters without `ensure_ascii`, which escapes them anyway).
    pub(crate) escape_controls: bool,
    entries: Vec<(String, String)>,
    slot: String,
    raw: String,
}

impl Json {
    pub(crate) fn new(opts: JsonOptions) -> Result<Json, String> {
        let required = match &opts.fields {
            JsonFields::Names(names) => names.clone(),
            JsonFields::Format { fmt, style, validate } => {
                let parsed = Style::parse(style);
                match (parsed, style.as_str()) {
                    (_, ",") => fmt
                        .as_deref()
                        .unwrap_or("")
                        .split(',')
                        .map(str::trim)
                        .filter(|f| !f.is_empty())
                        .map(str::to_owned)
                        .collect(),
                    (Some(st), _) => {
                        let fmt = fmt.as_deref().filter(|f| !f.is_empty()).unwrap_or(st.default_format());
                        if *validate {
                            python_validate(fmt, st).map_err(|reason| {
                                format!("Invalid format '{fmt}' for '{style}' style: {reason}")
                            })?;
                        }
                        field_names(fmt, st)
                    }
                    (None, _) if !validate => return Err(format!("Style {style:?} is not supported")),
                    (None, _) => return Err("Style must be one of: '%{$,'".into()),
                }
            }
        };
        let mut skip = required.clone();
        match &opts.reserved_attrs {
            Some(r) => skip.extend(r.iter().cloned()),
            None => skip.extend(RECORD_ATTRS.iter().chain(&["message", "asctime"]).map(|s| (*s).to_owned())),
        }
        Ok(Json {
            opts,
            required,
            skip,
            escape_controls: true,
            entries: Vec::new(),
            slot: String::new(),
            raw: String::new(),
        })
    }

    /// Whether the record's time is formatted (`asctime` is a field).
    pub(crate) fn uses_time(&self) -> bool {
        self.required.iter().any(|f| f == "asctime")
    }

    fn rename<'k>(&'k self, key: &'k str) -> &'k str {
        self.opts.rename_fields.iter().find(|(from, _)| from == key).map_or(key, |(_, to)| to)
    }

    fn encoding(&self) -> Enc {
        Enc { ascii: self.opts.ensure_ascii, controls: self.escape_controls }
    }

    pub(crate) fn format(
        &mut self,
        ctx: &RecordContext<'_>,
        clock: &mut Clock,
        out: &mut Vec<u8>,
    ) -> Result<(), FormatError> {
        let mut entries = std::mem::take(&mut self.entries);
        entries.clear();
        let result = self.fill(ctx, clock, &mut entries);
        if result.is_ok() {
            let enc = self.encoding();
            out.extend_from_slice(self.opts.prefix.as_bytes());
            out.push(b'{');
            let mut key = String::new();
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    out.extend_from_slice(b", ");
                }
                key.clear();
                push_string(enc, &mut key, k);
                out.extend_from_slice(key.as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(v.as_bytes());
            }
            out.push(b'}');
        }
        self.entries = entries;
        result
    }

    /// `log_data[key] = value`: a new key goes last, an old one keeps its place.
    fn set(&self, entries: &mut Vec<(String, String)>, key: &str, value: String) {
        let key = self.rename(key);
        match entries.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value,
            None => entries.push((key.to_owned(), value)),
        }
    }

    /// The JSON text of record attribute `name` (`None` if absent).
    fn attribute(
        &mut self,
        name: &str,
        ctx: &RecordContext<'_>,
        clock: &mut Clock,
    ) -> Result<String, FormatError> {
        let enc = self.encoding();
        let mut text = String::new();
        let value = match lookup(&Attr::from_name(name), ctx, clock, &mut self.slot) {
            Ok(v) => v,
            // record.__dict__.get(field): absent is None.
            Err(FormatError::MissingField(_)) => Val::None,
            Err(e) => return Err(e),
        };
        push_val(enc, &mut text, &mut self.raw, value);
        Ok(text)
    }

    fn fill(
        &mut self,
        ctx: &RecordContext<'_>,
        clock: &mut Clock,
        entries: &mut Vec<(String, String)>,
    ) -> Result<(), FormatError> {
        let r = ctx.record;
        let enc = self.encoding();
        for (k, v) in &self.opts.defaults {
            let mut text = String::new();
            push_value(enc, &mut text, v);
            self.set(entries, k, text);
        }
        for i in 0..self.required.len() {
            let field = std::mem::take(&mut self.required[i]);
            let text = self.attribute(&field, ctx, clock);
            self.required[i] = field;
            let text = text?;
            self.set(entries, &self.required[i], text);
        }
        for (k, v) in &self.opts.static_fields {
            let mut text = String::new();
            push_value(enc, &mut text, v);
            self.set(entries, k, text);
        }
        if let Some(exc) = r.exc_text.filter(|e| !e.is_empty()) {
            let mut text = String::new();
            push_string(enc, &mut text, exc);
            self.set(entries, "exc_info", text);
        }
        // merge_record_extra: record.__dict__ in its order, skipping the
        // required and reserved names and private ones.
        for name in RECORD_ATTRS.iter().copied() {
            if !self.skipped(name) {
                let text = self.attribute(name, ctx, clock)?;
                self.set(entries, name, text);
            }
        }
        for (i, (key, value)) in r.extra.iter().enumerate() {
            // The record's own attributes win over extras of the same name,
            // and an extra given twice counts once (as every lookup does).
            if self.skipped(key) || RECORD_ATTRS.contains(key) || r.extra[..i].iter().any(|(k, _)| k == key) {
                continue;
            }
            let mut text = String::new();
            push_val(enc, &mut text, &mut self.raw, value_of_extra(value));
            self.set(entries, key, text);
        }
        if !self.skipped("message") {
            let mut text = String::new();
            push_string(enc, &mut text, r.message);
            self.set(entries, "message", text);
        }
        if let Some(key) = &self.opts.timestamp {
            let mut text = String::new();
            push_string(enc, &mut text, &iso_utc(r.created_ns as f64 / 1e9));
            self.set(entries, key, text);
        }
        if self.opts.rename_fields_keep_missing {
            for (_, to) in &self.opts.rename_fields {
                if !entries.iter().any(|(k, _)| k == to) {
                    entries.push((to.clone(), "null".into()));
                }
            }
        }
        Ok(())
    }

    fn skipped(&self, key: &str) -> bool {
        self.skip.iter().any(|s| s == key) || key.starts_with('_')
    }
}

/// How strings are escaped: `ensure_ascii`, and the hub's escaping of DEL
/// and C1 controls (which `json.dumps(ensure_ascii=False)` leaves raw).
#[derive(Debug, Clone, Copy)]
struct Enc {
    ascii: bool,
    controls: bool,
}

fn push_val(enc: Enc, dst: &mut String, raw: &mut String, v: Val<'_>) {
    match v {
        Val::Str(s) => push_string(enc, dst, s),
        Val::Int(i) => {
            let _ = write!(dst, "{i}");
        }
        Val::Float(x) => push_float(dst, raw, x),
        Val::Bool(b) => dst.push_str(if b { "true" } else { "false" }),
        Val::None => dst.push_str("null"),
    }
}

fn push_value(enc: Enc, dst: &mut String, v: &JsonValue) {
    match v {
        JsonValue::Null => dst.push_str("null"),
        JsonValue::Bool(b) => dst.push_str(if *b { "true" } else { "false" }),
        JsonValue::Int(i) => {
            let _ = write!(dst, "{i}");
        }
        JsonValue::Float(x) => push_float(dst, &mut String::new(), *x),
        JsonValue::Str(s) => push_string(enc, dst, s),
        JsonValue::List(items) => {
            dst.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    dst.push_str(", ");
                }
                push_value(enc, dst, item);
            }
            dst.push(']');
        }
        JsonValue::Object(items) => {
            dst.push('{');
            for (i, (k, item)) in items.iter().enumerate() {
                if i > 0 {
                    dst.push_str(", ");
                }
                push_string(enc, dst, k);
                dst.push_str(": ");
                push_value(enc, dst, item);
            }
            dst.push('}');
        }
    }
}

/// A JSON string as `json.dumps` writes it.
fn push_string(enc: Enc, dst: &mut String, s: &str) {
    dst.push('"');
    for c in s.chars() {
        match c {
            '"' => dst.push_str("\\\""),
            '\\' => dst.push_str("\\\\"),
            '\n' => dst.push_str("\\n"),
            '\r' => dst.push_str("\\r"),
            '\t' => dst.push_str("\\t"),
            '\u{8}' => dst.push_str("\\b"),
            '\u{c}' => dst.push_str("\\f"),
            c if (c as u32) < 0x20 || enc.ascii && !(' '..='~').contains(&c) => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    let _ = write!(dst, "\\u{u:04x}");
                }
            }
            // Not escaped by json.dumps(ensure_ascii=False); the hub escapes
            // them unless the handler says otherwise, so that a terminal
            // showing the log cannot be driven by them.
            c if enc.controls && (c == '\u{7f}' || ('\u{80}'..='\u{9f}').contains(&c)) => {
                let _ = write!(dst, "\\u{:04x}", c as u32);
            }
            c => dst.push(c),
        }
    }
    dst.push('"');
}

/// A float as `json.dumps` writes it: `repr()`, or `NaN`/`Infinity`.
fn push_float(dst: &mut String, raw: &mut String, x: f64) {
    if x.is_nan() {
        dst.push_str("NaN");
    } else if x.is_infinite() {
        dst.push_str(if x > 0.0 { "Infinity" } else { "-Infinity" });
    } else {
        push_float_str(dst, raw, x);
    }
}

/// `datetime.fromtimestamp(created, tz=timezone.utc).isoformat()`: the
/// microseconds rounded half to even from the float, as CPython does.
fn iso_utc(created: f64) -> String {
    let mut sec = created.trunc();
    let mut us = round_half_even((created - sec) * 1e6);
    if us >= 1e6 {
        us -= 1e6;
        sec += 1.0;
    } else if us < 0.0 {
        us += 1e6;
        sec -= 1.0;
    }
    let mut out = match chrono::DateTime::from_timestamp(sec as i64, 0) {
        Some(t) => t.format("%Y-%m-%dT%H:%M:%S").to_string(),
        None => return String::new(),
    };
    if us != 0.0 {
        let _ = write!(out, ".{:06}", us as u32);
    }
    out.push_str("+00:00");
    out
}

/// CPython's `_PyTime_RoundHalfEven`.
fn round_half_even(x: f64) -> f64 {
    let rounded = x.round();
    if (x - rounded).abs() == 0.5 { 2.0 * (x / 2.0).round() } else { rounded }
}

/// The field names python-json-logger reads from a format (its regular
/// expressions: `%\((.+?)\)`, `\{(.+?)\}`, and Template's `$name`/`${name}`).
fn field_names(fmt: &str, style: Style) -> Vec<String> {
    let chars: Vec<char> = fmt.chars().collect();
    let mut out = Vec::new();
    // `open` then `.+?` (no newline) then `close`, from `from`.
    let lazy = |from: usize, close: char| -> Option<usize> {
        if chars.get(from).is_none_or(|c| *c == '\n') {
            return None;
        }
        let mut j = from + 1;
        while let Some(&c) = chars.get(j) {
            if c == close {
                return Some(j);
            }
            if c == '\n' {
                return None;
            }
            j += 1;
        }
        None
    };
    let mut i = 0;
    while i < chars.len() {
        let matched = match style {
            Style::Percent if chars[i] == '%' && chars.get(i + 1) == Some(&'(') => {
                lazy(i + 2, ')').map(|end| (i + 2, end, end + 1))
            }
            Style::Brace if chars[i] == '{' => lazy(i + 1, '}').map(|end| (i + 1, end, end + 1)),
            Style::Dollar if chars[i] == '$' => match chars.get(i + 1) {
                Some('$') => {
                    i += 2;
                    continue;
                }
                Some('{') => lazy(i + 2, '}').map(|end| (i + 2, end, end + 1)),
                Some(c) if c.is_ascii_alphabetic() || *c == '_' => {
                    let mut end = i + 2;
                    while chars.get(end).is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_') {
                        end += 1;
                    }
                    Some((i + 1, end, end))
                }
                _ => None,
            },
            _ => None,
        };
        match matched {
            Some((start, end, next)) => {
                out.push(chars[start..end].iter().collect());
                i = next;
            }
            None => i += 1,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_follow_python_json_loggers_expressions() {
        assert_eq!(
            field_names("%(asctime)s %(levelname)-8s %(message)s", Style::Percent),
            ["asctime", "levelname", "message"]
        );
        assert_eq!(field_names("%())s %(a(b)c)s %(x\n)s", Style::Percent), [")", "a(b"]);
        assert_eq!(
            field_names("{asctime:>10} {{x}} {message!r}", Style::Brace),
            ["asctime:>10", "{x", "message!r"]
        );
        assert_eq!(field_names("$a ${b c} $$d $_e1 $1 ${}", Style::Dollar), ["a", "b c", "_e1"]);
    }

    #[test]
    fn timestamps_round_half_even_as_datetime() {
        assert_eq!(iso_utc(1_700_000_000.0), "2023-11-14T22:13:20+00:00");
        assert_eq!(iso_utc(1_700_000_000.25), "2023-11-14T22:13:20.250000+00:00");
        assert_eq!(iso_utc(-1.5), "1969-12-31T23:59:58.500000+00:00");
        assert_eq!(round_half_even(2.5), 2.0);
        assert_eq!(round_half_even(3.5), 4.0);
    }
}
