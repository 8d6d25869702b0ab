//! A Python `logging.config.dictConfig` dict, read from JSON (as
//! `json.load` gives it) or YAML (as PyYAML's `yaml.safe_load` gives it),
//! turned into the TOML values the rest of the configuration reads.
//!
//! On the way, `cfg://` references are resolved as Python's
//! `BaseConfigurator.cfg_convert` resolves them, and every key's line in a
//! YAML file is kept so that problems point at it. YAML scalars follow
//! PyYAML's YAML 1.1 rules, not YAML 1.2's: `propagate: no` is `False`,
//! `0644` is octal, `1e3` is a string and `~` is `None`.

use std::collections::BTreeMap;

use saphyr_parser::{Event, Parser, ScalarStyle};
use toml::{Table, Value};

use super::ConfigIssue;
use super::keys::join;

/// A value of the dict, with the line it starts on (YAML only).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Item {
    node: Node,
    line: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Item>),
    /// Keys in the order written, each with the line of its key.
    Map(Vec<(String, Item)>),
}

/// The dict as the configuration reads it.
#[derive(Debug, Default)]
pub(crate) struct Doc {
    pub(crate) table: Table,
    /// Key path → line, for YAML.
    pub(crate) lines: BTreeMap<String, usize>,
    pub(crate) issues: Vec<ConfigIssue>,
    /// Top-level keys that `cfg://` references read (not "ignored").
    pub(crate) referenced: Vec<String>,
}

/// Reads JSON as `json.load` does (duplicate keys: the last one wins, in the
/// place of the first).
pub(crate) fn from_json(text: &str) -> Result<Item, String> {
    let json: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    fn item(v: &serde_json::Value) -> Item {
        use serde_json::Value as J;
        let node = match v {
            J::Null => Node::Null,
            J::Bool(b) => Node::Bool(*b),
            J::Number(n) => match n.as_i64() {
                Some(i) => Node::Int(i),
                None => Node::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            J::String(s) => Node::Str(s.clone()),
            J::Array(a) => Node::List(a.iter().map(item).collect()),
            J::Object(m) => Node::Map(m.iter().map(|(k, v)| (k.clone(), item(v))).collect()),
        };
        Item { node, line: None }
    }
    Ok(item(&json))
}

/// Reads YAML as PyYAML's `safe_load` does; an error names its line.
pub(crate) fn from_yaml(text: &str) -> Result<Item, (String, Option<usize>)> {
    let mut builder =
        YamlBuilder { anchors: BTreeMap::new(), stack: Vec::new(), docs: Vec::new(), values: 0 };
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| {
            (
                format!("not valid YAML: {} (column {})", e.info(), e.marker().col() + 1),
                Some(e.marker().line()),
            )
        })?;
        builder.event(event, span.start.line()).map_err(|(m, l)| (m, Some(l)))?;
    }
    match builder.docs.len() {
        0 => Err(("the YAML file holds no document (dictConfig needs a mapping)".into(), None)),
        1 => Ok(builder.docs.pop().expect("one document")),
        _ => Err(("expected a single document in the stream (as yaml.safe_load)".into(), None)),
    }
}

/// An open collection: the item being built, its anchor, and for a mapping
/// the key (with its line) waiting for its value.
type Open = (Item, usize, Option<(Item, usize)>);

struct YamlBuilder {
    /// Each anchor's item, and how many values it holds.
    anchors: BTreeMap<usize, (Item, usize)>,
    stack: Vec<Open>,
    docs: Vec<Item>,
    /// Values created so far, aliases expanded: bounded, so that nested
    /// aliases ("billion laughs") cannot take the hub's memory.
    values: usize,
}

/// The most values a YAML config may expand to, and the deepest nesting.
const MAX_VALUES: usize = 1_000_000;
const MAX_DEPTH: usize = 100;

fn count(item: &Item) -> usize {
    1 + match &item.node {
        Node::List(items) => items.iter().map(count).sum(),
        Node::Map(entries) => entries.iter().map(|(_, v)| count(v)).sum(),
        _ => 0,
    }
}

impl YamlBuilder {
    fn event(&mut self, event: Event<'_>, line: usize) -> Result<(), (String, usize)> {
        let is_seq = matches!(event, Event::SequenceStart(..));
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                let tag = tag.map(|t| format!("{}{}", t.handle, t.suffix));
                let item = Item {
                    node: scalar(&text, style, tag.as_deref()).map_err(|m| (m, line))?,
                    line: Some(line),
                };
                self.value(item, anchor, line)?;
            }
            Event::Alias(id) => {
                let (item, size) =
                    self.anchors.get(&id).cloned().ok_or(("unknown alias".to_string(), line))?;
                self.values += size;
                if self.values > MAX_VALUES {
                    return Err((
                        format!("the YAML expands to over {MAX_VALUES} values (aliases of aliases)"),
                        line,
                    ));
                }
                self.value(Item { line: Some(line), ..item }, 0, line)?;
            }
            Event::SequenceStart(anchor, tag) | Event::MappingStart(anchor, tag) => {
                if let Some(t) = tag.filter(|t| !matches!(t.suffix.as_str(), "seq" | "map" | "omap")) {
                    return Err((unsupported_tag(&format!("{}{}", t.handle, t.suffix)), line));
                }
                if self.stack.len() >= MAX_DEPTH {
                    return Err((format!("nested deeper than {MAX_DEPTH} levels"), line));
                }
                let node = if is_seq { Node::List(Vec::new()) } else { Node::Map(Vec::new()) };
                self.stack.push((Item { node, line: Some(line) }, anchor, None));
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (mut item, anchor, _) = self.stack.pop().ok_or(("unbalanced YAML".to_string(), line))?;
                if let Node::Map(entries) = &mut item.node {
                    merge_keys(entries).map_err(|m| (m, line))?;
                }
                let at = item.line.unwrap_or(line);
                self.value(item, anchor, at)?;
            }
            Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart(_)
            | Event::DocumentEnd
            | Event::Nothing => {}
        }
        Ok(())
    }

    /// A finished value: a list element, a key, a key's value, or a document.
    fn value(&mut self, item: Item, anchor: usize, line: usize) -> Result<(), (String, usize)> {
        self.values += 1;
        if anchor != 0 {
            let size = count(&item);
            self.anchors.insert(anchor, (item.clone(), size));
        }
        let Some((parent, _, pending)) = self.stack.last_mut() else {
            self.docs.push(item);
            return Ok(());
        };
        match &mut parent.node {
            Node::List(items) => items.push(item),
            Node::Map(entries) => match pending.take() {
                None => *pending = Some((item, line)),
                Some((key, key_line)) => {
                    let key = match key.node {
                        Node::Str(s) => s,
                        // "<<" merges, resolved when the mapping ends.
                        other => {
                            return Err((
                                format!(
                                    "a key that YAML 1.1 reads as {} ({:?}): dictConfig's names are strings; quote it",
                                    kind(&other),
                                    other
                                ),
                                key_line,
                            ));
                        }
                    };
                    let item = Item { line: Some(key_line), ..item };
                    match entries.iter_mut().find(|(k, _)| *k == key && k != "<<") {
                        // A dict keeps the last value in the first place.
                        Some(entry) => entry.1 = item,
                        None => entries.push((key, item)),
                    }
                }
            },
            _ => unreachable!("only collections are open"),
        }
        Ok(())
    }
}

fn kind(node: &Node) -> &'static str {
    match node {
        Node::Null => "None",
        Node::Bool(_) => "a bool",
        Node::Int(_) => "an int",
        Node::Float(_) => "a float",
        Node::Str(_) => "a string",
        Node::List(_) => "a list",
        Node::Map(_) => "a mapping",
    }
}

/// PyYAML's merge keys (`<<: *defaults`): the merged mappings' keys first
/// (the first mapping of a list wins), then the mapping's own, which win.
fn merge_keys(entries: &mut Vec<(String, Item)>) -> Result<(), String> {
    if !entries.iter().any(|(k, _)| k == "<<") {
        return Ok(());
    }
    let mut merged: Vec<(String, Item)> = Vec::new();
    let mut own = Vec::new();
    for (k, v) in std::mem::take(entries) {
        if k != "<<" {
            own.push((k, v));
            continue;
        }
        let maps = match v.node {
            Node::Map(m) => vec![m],
            Node::List(items) => items
                .into_iter()
                .map(|i| match i.node {
                    Node::Map(m) => Ok(m),
                    _ => Err("a merge key (<<) takes mappings only".to_string()),
                })
                .collect::<Result<_, _>>()?,
            _ => return Err("a merge key (<<) takes a mapping or a list of mappings".into()),
        };
        for map in maps.into_iter().rev() {
            merged.extend(map);
        }
    }
    for (k, v) in merged.into_iter().chain(own) {
        match entries.iter_mut().find(|(e, _)| *e == k) {
            Some(entry) => entry.1 = v,
            None => entries.push((k, v)),
        }
    }
    Ok(())
}

fn unsupported_tag(tag: &str) -> String {
    format!(
        "tag {tag}: yaml.safe_load refuses it, and Python objects built from tags cannot run in the hub \
         (write the plain value)"
    )
}

/// A scalar as PyYAML's SafeLoader resolves and constructs it.
fn scalar(text: &str, style: ScalarStyle, tag: Option<&str>) -> Result<Node, String> {
    let core =
        |t: &str| tag.is_some_and(|tag| tag == format!("tag:yaml.org,2002:{t}") || tag == format!("!!{t}"));
    if let Some(tag) = tag {
        if core("str") {
            return Ok(Node::Str(text.into()));
        }
        if !(core("int") || core("float") || core("bool") || core("null")) {
            return Err(unsupported_tag(tag));
        }
    } else if style != ScalarStyle::Plain {
        return Ok(Node::Str(text.into()));
    }
    let node = if is_null_scalar(text) {
        Some(Node::Null)
    } else if let Some(b) = yaml_bool(text) {
        Some(Node::Bool(b))
    } else if is_yaml_float(text) {
        Some(Node::Float(yaml_float(text)))
    } else if is_yaml_int(text) {
        Some(
            yaml_int(text)
                .map(Node::Int)
                .ok_or_else(|| format!("{text}: an integer too large for the hub"))?,
        )
    } else if is_timestamp(text) {
        return Err(format!("{text:?} is a date or time to YAML 1.1 (datetime in Python); quote it"));
    } else if text == "=" {
        return Err(
            "could not determine a constructor for the tag 'tag:yaml.org,2002:value' (quote '=')".into()
        );
    } else {
        None
    };
    match (node, tag) {
        (Some(n), None) => Ok(n),
        (Some(n), Some(_)) if core(tag_name(&n)) => Ok(n),
        (_, Some(tag)) => Err(format!("{text:?} is not a valid {tag}")),
        (None, None) => Ok(Node::Str(text.into())),
    }
}

fn tag_name(n: &Node) -> &'static str {
    match n {
        Node::Null => "null",
        Node::Bool(_) => "bool",
        Node::Int(_) => "int",
        Node::Float(_) => "float",
        _ => "str",
    }
}

fn is_null_scalar(t: &str) -> bool {
    matches!(t, "" | "~" | "null" | "Null" | "NULL")
}

fn yaml_bool(t: &str) -> Option<bool> {
    match t {
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => Some(true),
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => Some(false),
        _ => None,
    }
}

fn strip_sign(t: &str) -> (bool, &str) {
    match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    }
}

/// `[0-5]?[0-9]` groups after a `:` (sexagesimal).
fn sexagesimal_tail(parts: &[&str]) -> bool {
    parts.iter().all(|p| {
        let b = p.as_bytes();
        match b.len() {
            1 => b[0].is_ascii_digit(),
            2 => (b'0'..=b'5').contains(&b[0]) && b[1].is_ascii_digit(),
            _ => false,
        }
    })
}

fn all(t: &str, f: impl Fn(u8) -> bool) -> bool {
    t.bytes().all(f)
}

/// PyYAML's int: `[-+]?0b[0-1_]+ | [-+]?0[0-7_]+ | [-+]?(0|[1-9][0-9_]*) |
/// [-+]?0x[0-9a-fA-F_]+ | [-+]?[1-9][0-9_]*(:[0-5]?[0-9])+`.
fn is_yaml_int(t: &str) -> bool {
    let (_, u) = strip_sign(t);
    if let Some(b) = u.strip_prefix("0b") {
        return !b.is_empty() && all(b, |c| matches!(c, b'0' | b'1' | b'_'));
    }
    if let Some(x) = u.strip_prefix("0x") {
        return !x.is_empty() && all(x, |c| c.is_ascii_hexdigit() || c == b'_');
    }
    if u == "0" {
        return true;
    }
    if let Some(o) = u.strip_prefix('0') {
        return !o.is_empty() && all(o, |c| (b'0'..=b'7').contains(&c) || c == b'_');
    }
    let mut parts = u.split(':');
    let head = parts.next().unwrap_or("");
    let head_ok = head.as_bytes().first().is_some_and(|c| (b'1'..=b'9').contains(c))
        && all(head, |c| c.is_ascii_digit() || c == b'_');
    let rest: Vec<&str> = parts.collect();
    head_ok && (rest.is_empty() || sexagesimal_tail(&rest))
}

fn yaml_int(t: &str) -> Option<i64> {
    let clean: String = t.chars().filter(|c| *c != '_').collect();
    let (neg, u) = strip_sign(&clean);
    let v: i128 = if let Some(b) = u.strip_prefix("0b") {
        i128::from_str_radix(b, 2).ok()?
    } else if let Some(x) = u.strip_prefix("0x") {
        i128::from_str_radix(x, 16).ok()?
    } else if u.contains(':') {
        u.split(':').try_fold(0i128, |acc, p| Some(acc.checked_mul(60)? + p.parse::<i128>().ok()?))?
    } else if u.len() > 1 && u.starts_with('0') {
        i128::from_str_radix(&u[1..], 8).ok()?
    } else {
        u.parse().ok()?
    };
    i64::try_from(if neg { -v } else { v }).ok()
}

/// PyYAML's float: `[-+]?([0-9][0-9_]*)?\.[0-9_]*([eE][-+][0-9]+)? |
/// [-+]?[0-9][0-9_]*(:[0-5]?[0-9])+\.[0-9_]* | [-+]?\.(inf|Inf|INF) |
/// \.(nan|NaN|NAN)` (the first alternative as PyYAML writes it: a dot is
/// required, an exponent needs its sign).
fn is_yaml_float(t: &str) -> bool {
    if matches!(t, ".nan" | ".NaN" | ".NAN") {
        return true;
    }
    let (_, u) = strip_sign(t);
    if matches!(u, ".inf" | ".Inf" | ".INF") {
        return true;
    }
    let Some(dot) = u.find('.') else { return false };
    let (head, tail) = (&u[..dot], &u[dot + 1..]);
    if head.contains(':') {
        let mut parts = head.split(':');
        let first = parts.next().unwrap_or("");
        let rest: Vec<&str> = parts.collect();
        return first.as_bytes().first().is_some_and(u8::is_ascii_digit)
            && all(first, |c| c.is_ascii_digit() || c == b'_')
            && sexagesimal_tail(&rest)
            && all(tail, |c| c.is_ascii_digit() || c == b'_');
    }
    // `[0-9][0-9_]*` before the dot, or nothing (then a digit after it).
    let head_ok = head.is_empty()
        || head.as_bytes()[0].is_ascii_digit() && all(head, |c| c.is_ascii_digit() || c == b'_');
    let (frac, exp) = match tail.find(['e', 'E']) {
        Some(e) => (&tail[..e], Some(&tail[e + 1..])),
        None => (tail, None),
    };
    let frac_ok = all(frac, |c| c.is_ascii_digit() || c == b'_')
        && (!head.is_empty() || frac.as_bytes().first().is_some_and(u8::is_ascii_digit));
    let exp_ok = exp.is_none_or(|e| {
        let (sign, digits) = (e.as_bytes().first(), e.get(1..).unwrap_or(""));
        matches!(sign, Some(b'-' | b'+')) && !digits.is_empty() && all(digits, |c| c.is_ascii_digit())
    });
    // The no-digit-before-the-dot form takes no sign in PyYAML's pattern.
    let sign_ok = !head.is_empty() || t.len() == u.len();
    head_ok && frac_ok && exp_ok && sign_ok
}

fn yaml_float(t: &str) -> f64 {
    let clean: String = t.chars().filter(|c| *c != '_').collect::<String>().to_lowercase();
    let (neg, u) = strip_sign(&clean);
    let v = if u == ".inf" {
        f64::INFINITY
    } else if u == ".nan" {
        f64::NAN
    } else if u.contains(':') {
        u.split(':').fold(0.0, |acc, p| acc * 60.0 + p.parse::<f64>().unwrap_or(0.0))
    } else {
        u.parse().unwrap_or(f64::NAN)
    };
    if neg { -v } else { v }
}

/// PyYAML's timestamp: `YYYY-MM-DD`, or a date and time.
fn is_timestamp(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() >= 10
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && t[5..]
            .split(['-', 'T', 't', ' ', ':'])
            .take(2)
            .all(|p| (1..=2).contains(&p.len()) && all(p, |c| c.is_ascii_digit()))
        && (b.len() == 10 || t.get(8..).is_some_and(|r| r.chars().any(|c| matches!(c, 'T' | 't' | ' '))))
}

/// The key of a table that stands for Python's `None` where it is a value
/// (TOML has no null).
pub(crate) const NULL_KEY: &str = "\u{0}None";

fn null_marker() -> Value {
    Value::Table(Table::from_iter([(NULL_KEY.to_owned(), Value::Boolean(true))]))
}

/// Whether `v` is the [`NULL_KEY`] table.
pub(crate) fn is_null(v: &Value) -> bool {
    v.as_table().is_some_and(|t| t.len() == 1 && t.contains_key(NULL_KEY))
}

/// The dict's values as TOML values: `None` is absent (Python's defaults
/// apply), `cfg://` references are resolved.
pub(crate) fn to_doc(root: &Item) -> Doc {
    let mut doc = Doc::default();
    match &root.node {
        Node::Map(entries) => {
            let mut cx = Cx { root, doc: &mut doc };
            let mut table = Table::new();
            for (k, v) in entries {
                if let Some(value) = cx.convert(v, &join("", k), "", 0, 1) {
                    table.insert(k.clone(), value);
                }
            }
            doc.table = table;
        }
        _ => doc.issues.push(ConfigIssue {
            path: String::new(),
            message: format!("a dictConfig is a mapping (a dict), found {}", kind(&root.node)),
        }),
    }
    doc
}

struct Cx<'a> {
    root: &'a Item,
    doc: &'a mut Doc,
}

impl Cx<'_> {
    fn issue(&mut self, path: &str, message: String) {
        self.doc.issues.push(ConfigIssue { path: path.to_owned(), message });
    }

    /// `path` is where the value sits; `reader` is where the reference
    /// being followed sits (`""`: none yet), which decides what it sees;
    /// `level` counts the keys in `path` (a list's items count as deep).
    fn convert(
        &mut self,
        item: &Item,
        path: &str,
        reader: &str,
        depth: usize,
        level: usize,
    ) -> Option<Value> {
        if let Some(line) = item.line {
            self.doc.lines.entry(path.to_owned()).or_insert(line);
        }
        Some(match &item.node {
            // A None where dictConfig reads a key (`config.get(key)`) leaves
            // Python's default; deeper (a static_fields value) it is a value.
            Node::Null if level <= 3 => return None,
            Node::Null => null_marker(),
            Node::Bool(b) => Value::Boolean(*b),
            Node::Int(i) => Value::Integer(*i),
            Node::Float(f) => Value::Float(*f),
            Node::Str(s) => match s.strip_prefix("cfg://") {
                Some(reference) => {
                    let reader = if reader.is_empty() { path } else { reader };
                    let root = self.root;
                    match resolve(root, reference, reader, depth, &mut self.doc.referenced) {
                        Ok(target) if depth < 32 => {
                            return self.convert(
                                &Item { line: item.line, ..target.clone() },
                                path,
                                reader,
                                depth + 1,
                                level,
                            );
                        }
                        Ok(_) => {
                            self.issue(path, format!("{s:?}: cfg:// references go round in a cycle"));
                            return None;
                        }
                        Err(message) => {
                            self.issue(path, format!("{s:?}: {message}"));
                            return None;
                        }
                    }
                }
                None => Value::String(s.clone()),
            },
            Node::List(items) => Value::Array(
                items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, it)| {
                        self.convert(it, &format!("{path}[{i}]"), reader, depth, usize::MAX)
                    })
                    .collect(),
            ),
            Node::Map(entries) => {
                let mut t = Table::new();
                for (k, v) in entries {
                    if let Some(value) =
                        self.convert(v, &join(path, k), reader, depth, level.saturating_add(1))
                    {
                        t.insert(k.clone(), value);
                    }
                }
                Value::Table(t)
            }
        })
    }
}

/// Python's `cfg_convert`: `word`, then `.word` and `[index]` steps; a
/// reference met on the way is followed first, as Python converts each
/// value it reads.
fn resolve<'r>(
    root: &'r Item,
    reference: &str,
    reader: &str,
    depth: usize,
    referenced: &mut Vec<String>,
) -> Result<&'r Item, String> {
    if depth > 32 {
        return Err("cfg:// references go round in a cycle".into());
    }
    let is_word = |c: char| c == '_' || c.is_alphanumeric();
    let word = |rest: &mut &str| -> Option<String> {
        let end = rest.find(|c: char| !is_word(c)).unwrap_or(rest.len());
        if end == 0 {
            return None;
        }
        let w = rest[..end].to_owned();
        *rest = rest[end..].trim_start();
        Some(w)
    };
    let mut rest = reference.trim_start();
    let first = word(&mut rest).ok_or_else(|| format!("Unable to convert {reference:?}"))?;
    let mut steps: Vec<String> = vec![first];
    while !rest.is_empty() {
        let at = rest;
        let bad = || format!("Unable to convert {reference:?} at {at:?}");
        if let Some(r) = rest.strip_prefix('.') {
            rest = r.trim_start();
            steps.push(word(&mut rest).ok_or_else(bad)?);
        } else if let Some(r) = rest.strip_prefix('[') {
            rest = r.trim_start();
            let w = word(&mut rest).ok_or_else(bad)?;
            rest = rest.strip_prefix(']').ok_or_else(bad)?.trim_start();
            steps.push(format!("[{w}]"));
        } else {
            return Err(bad());
        }
    }
    if let Some(message) = configured_object(&steps, reader) {
        return Err(message);
    }
    if !referenced.contains(&steps[0]) {
        referenced.push(steps[0].clone());
    }
    let mut cur: &Item = root;
    for step in &steps {
        if let Node::Str(s) = &cur.node
            && let Some(inner) = s.strip_prefix("cfg://")
        {
            cur = resolve(root, inner, reader, depth + 1, referenced)?;
        }
        let index = step.strip_prefix('[').and_then(|s| s.strip_suffix(']'));
        let digits = index.is_some_and(|i| i.bytes().all(|b| b.is_ascii_digit()));
        cur = match (&cur.node, index) {
            (Node::List(items), Some(idx)) if digits => idx
                .parse::<usize>()
                .ok()
                .and_then(|i| items.get(i))
                .ok_or_else(|| format!("list index out of range: {idx}"))?,
            (Node::Map(_), Some(idx)) if digits => return Err(format!("KeyError: {idx}")),
            (Node::Map(entries), key) => {
                let key = key.unwrap_or(step);
                entries
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v)
                    .ok_or_else(|| format!("KeyError: {key:?}"))?
            }
            (other, _) => return Err(format!("{} is not subscriptable", kind(other))),
        };
    }
    Ok(cur)
}

/// Python replaces each entry of `formatters`, `filters` and `handlers` by
/// the object it builds; a reference into one reads that object, not the
/// dict, except into a handler not yet built (handlers are built in name
/// order) from another handler. Those Python cannot read are refused here.
fn configured_object(steps: &[String], reader: &str) -> Option<String> {
    let section = steps[0].as_str();
    if !matches!(section, "formatters" | "filters" | "handlers") || steps.len() < 2 {
        return None;
    }
    let target = steps[1].trim_start_matches('[').trim_end_matches(']');
    if section == "handlers"
        && let Some(rest) = reader.strip_prefix("handlers.")
    {
        // The referring handler's name (quoted by `join` when not a plain word).
        let referrer = match rest.strip_prefix('"') {
            Some(quoted) => quoted.split('"').next().unwrap_or(""),
            None => rest.split(['.', '[']).next().unwrap_or(""),
        };
        if target > referrer {
            return None;
        }
    }
    Some(format!(
        "points into {section}.{target}, which Python has replaced by the object it built when this is read \
         (a reference there fails or reads the object); write the value itself"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Table {
        let doc = to_doc(&from_yaml(text).unwrap());
        assert!(doc.issues.is_empty(), "{:?}", doc.issues);
        doc.table
    }

    /// The scalars PyYAML's safe_load reads differently from YAML 1.2
    /// (checked against yaml.safe_load in tests/config_files.rs too).
    #[test]
    fn scalars_are_pyyamls() {
        let t = yaml(
            "a: no\nb: On\nc: 0644\nd: 1e3\ne: 1.0e+3\nf: ~\ng: 0x1F\nh: 1_000\ni: 1:30\nj: .5\nk: '1'\nl: -.inf\nm: 08\nn: y\no: 1.5:30\n",
        );
        assert_eq!(t["a"], Value::Boolean(false));
        assert_eq!(t["b"], Value::Boolean(true));
        assert_eq!(t["c"], Value::Integer(0o644));
        assert_eq!(t["d"], Value::String("1e3".into()));
        assert_eq!(t["e"], Value::Float(1000.0));
        assert!(!t.contains_key("f"));
        assert_eq!(t["g"], Value::Integer(31));
        assert_eq!(t["h"], Value::Integer(1000));
        assert_eq!(t["i"], Value::Integer(90));
        assert_eq!(t["j"], Value::Float(0.5));
        assert_eq!(t["k"], Value::String("1".into()));
        assert_eq!(t["l"], Value::Float(f64::NEG_INFINITY));
        assert_eq!(t["m"], Value::String("08".into()));
        assert_eq!(t["n"], Value::String("y".into()));
        assert_eq!(t["o"], Value::String("1.5:30".into()));
        // Found by the fuzzer: non-ASCII where an exponent or a date might be.
        assert_eq!(yaml("a: ..eŋ.\nb: 2023-éé-01 x\n")["a"], Value::String("..eŋ.".into()));
    }

    #[test]
    fn anchors_merges_and_lines() {
        let text =
            "base: &b\n  level: INFO\n  handlers: [x]\nloggers:\n  app:\n    <<: *b\n    level: DEBUG\n";
        let doc = to_doc(&from_yaml(text).unwrap());
        let app = doc.table["loggers"]["app"].as_table().unwrap();
        assert_eq!(app["level"].as_str(), Some("DEBUG"));
        assert_eq!(app["handlers"].as_array().unwrap().len(), 1);
        assert_eq!(doc.lines["loggers.app.level"], 7);
        assert_eq!(doc.lines["loggers.app"], 5);
        let err = from_yaml("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.0.starts_with("not valid YAML") && err.1.is_some(), "{err:?}");
        assert!(from_yaml("on: 1\n").unwrap_err().0.contains("quote it"));
        assert!(from_yaml("a: !!python/name:os.system x\n").unwrap_err().0.contains("safe_load refuses"));
        let mut laughs = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            laughs += &format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n",
                p = i - 1
            );
        }
        assert!(from_yaml(&laughs).unwrap_err().0.contains("expands to over"));
        assert!(from_yaml(&"[".repeat(10_000)).is_err());
        let deep: String = (0..200).map(|i| format!("{}k{i}:\n", " ".repeat(i))).collect();
        assert!(from_yaml(&deep).unwrap_err().0.contains("nested deeper"));
    }

    #[test]
    fn cfg_references_resolve_as_python() {
        let text = r#"{"version": 1, "email": {"to": ["a@x", "b@x"]},
            "handlers": {"a": {"x": "cfg://handlers.b.level", "y": "cfg://email.to[1]", "z": "cfg://email . to"},
                         "b": {"level": "INFO", "w": "cfg://handlers.a.level"}},
            "loggers": {"l": {"level": "cfg://handlers.b.level", "r": "cfg://root.level"}}, "root": {"level": 10}}"#;
        let doc = to_doc(&from_json(text).unwrap());
        let a = doc.table["handlers"]["a"].as_table().unwrap();
        assert_eq!(a["x"].as_str(), Some("INFO"));
        assert_eq!(a["y"].as_str(), Some("b@x"));
        assert_eq!(a["z"].as_array().unwrap().len(), 2);
        assert_eq!(doc.table["loggers"]["l"]["r"].as_integer(), Some(10));
        let paths: Vec<&str> = doc.issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths, ["handlers.b.w", "loggers.l.level"], "{:?}", doc.issues);
        assert_eq!(doc.referenced, ["handlers", "email", "root"]);
    }
}
