//! Python's `SocketHandler` / `DatagramHandler` records: a 4-byte
//! big-endian length, then `pickle.dumps(record.__dict__, 1)` after
//! `makePickle` merged `msg` with `args` (and set `args` and `exc_info` to
//! None). [`record_from_pickle`] turns one into a [`Record`].
//!
//! LogRecord attributes that a [`Record`] has no exact field for travel as
//! extras under their Python names, first in the list: `created`, `msecs` and `relativeCreated` as Python computed them,
//! `levelname`, `filename`, `module`, `stack_info` and `taskName` as sent,
//! and any attribute whose value is None (or not of its usual type) as its
//! Python `str()`. A formatter told the record came from Python (the hub's
//! `RecordContext::python`) takes these instead of computing its own.

use crate::pickle::{Id, Pickle, PickleError, Py, loads_dict};
use crate::{MAX_MESSAGE_BYTES, Record, Value};

/// The attributes `LogRecord.__init__` sets, in its order (Python 3.11's:
/// 3.12 adds `taskName` at the end).
pub const RECORD_ATTRS: &[&str] = &[
    "name",
    "msg",
    "args",
    "levelname",
    "levelno",
    "pathname",
    "filename",
    "module",
    "exc_info",
    "exc_text",
    "stack_info",
    "lineno",
    "funcName",
    "created",
    "msecs",
    "relativeCreated",
    "thread",
    "threadName",
    "processName",
    "process",
];

/// Whether a key of a LogRecord's dict is one of its own attributes (or
/// `taskName`, `message`, `asctime`, which Python adds): never an extra.
pub fn is_own_attr(key: &str) -> bool {
    RECORD_ATTRS.contains(&key) || matches!(key, "taskName" | "message" | "asctime")
}

/// A record decoded from Python, and how many objects in it were replaced
/// by placeholders (never unpickled).
#[derive(Debug, Clone, PartialEq)]
pub struct PythonRecord {
    /// The record.
    pub record: Record,
    /// Objects (class instances, functions…) shown as placeholder text.
    pub objects: u32,
}

/// Decodes one pickled LogRecord dict (the frame's payload, without its
/// length prefix). Anything but a dict is refused.
pub fn record_from_pickle(payload: &[u8]) -> Result<PythonRecord, PickleError> {
    let p = loads_dict(payload)?;
    let Py::Dict(items) = p.root() else { unreachable!("loads_dict returns dicts") };
    let get =
        |key: &str| items.iter().find(|(k, _)| matches!(p.get(*k), Py::Str(s) if s == key)).map(|kv| kv.1);
    let text = |id: Id| p.str(id, MAX_MESSAGE_BYTES);
    let opt_text = |key: &str| match get(key).map(|id| (id, p.get(id))) {
        None | Some((_, Py::None)) => None,
        Some((id, _)) => Some(text(id)),
    };
    let int = |key: &str| match get(key).map(|id| p.get(id)) {
        Some(Py::Int(i)) => Some(*i),
        Some(Py::Bool(b)) => Some(i64::from(*b)),
        _ => None,
    };
    let float = |key: &str| match get(key).map(|id| p.get(id)) {
        Some(Py::Float(f)) => Some(*f),
        Some(Py::Int(i)) => Some(*i as f64),
        _ => None,
    };
    let mut extra: Vec<(String, Value)> = Vec::new();
    // Python's own values where the record's fields would not give them back.
    for key in ["created", "msecs", "relativeCreated"] {
        if let Some(f) = float(key) {
            extra.push((key.into(), Value::F64(f)));
        }
    }
    for key in ["levelname", "filename", "module", "stack_info", "taskName"] {
        if let Some(id) = get(key).filter(|id| !(key == "stack_info" && *p.get(*id) == Py::None)) {
            extra.push((key.into(), value(&p, id)));
        }
    }
    // Attributes a field holds only when they have their usual type.
    let unfit = |key: &str, ok: fn(&Py) -> bool| get(key).is_some_and(|id| !ok(p.get(id)));
    let is_str = |v: &Py| matches!(v, Py::Str(_));
    let is_u32 = |v: &Py| matches!(v, Py::Int(i) if u32::try_from(*i).is_ok());
    let is_u64 = |v: &Py| matches!(v, Py::Int(i) if *i >= 0);
    for (key, ok) in [
        ("levelno", is_u32 as fn(&Py) -> bool),
        ("pathname", is_str),
        ("lineno", is_u32),
        ("funcName", is_str),
        ("thread", is_u64),
        ("threadName", is_str),
        ("processName", is_str),
        ("process", is_u32),
    ] {
        if unfit(key, ok) {
            let id = get(key).expect("present");
            extra.push((key.into(), value(&p, id)));
        }
    }
    // The caller's extra fields, in the record's order.
    for (k, v) in items {
        let key = text(*k);
        if is_own_attr(&key) {
            continue;
        }
        extra.push((key, value(&p, *v)));
    }
    let created = float("created").unwrap_or(0.0);
    let record = Record {
        created_ns: (created * 1e9).round() as i64,
        levelno: int("levelno").and_then(|i| u32::try_from(i).ok()).unwrap_or(0),
        name: get("name").map_or_else(|| "root".into(), text),
        message: get("msg").map_or_else(String::new, text),
        pathname: opt_text("pathname"),
        lineno: int("lineno").and_then(|i| u32::try_from(i).ok()).unwrap_or(0),
        func_name: opt_text("funcName"),
        module_path: None,
        process: int("process").and_then(|i| u32::try_from(i).ok()).unwrap_or(0),
        process_name: opt_text("processName"),
        thread: int("thread").and_then(|i| u64::try_from(i).ok()).unwrap_or(0),
        thread_name: opt_text("threadName"),
        exc_text: opt_text("exc_text"),
        extra,
    };
    Ok(PythonRecord { record, objects: p.objects })
}

/// A value as an extra field: scalars keep their type, anything else
/// becomes its Python `str()`.
fn value(p: &Pickle, id: Id) -> Value {
    match p.get(id) {
        Py::Str(s) => Value::Str(crate::cut_str(s, MAX_MESSAGE_BYTES).to_owned()),
        Py::Int(i) => Value::I64(*i),
        Py::BigInt(s) => s.parse::<u64>().map_or_else(|_| Value::Str(s.clone()), Value::U64),
        Py::Float(f) => Value::F64(*f),
        Py::Bool(b) => Value::Bool(*b),
        _ => Value::Str(p.str(id, MAX_MESSAGE_BYTES)),
    }
}
