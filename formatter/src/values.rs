//! Record values: what each attribute a format names (`%(levelname)s`,
//! `{created}`, an extra…) is for a record, as CPython's `LogRecord` has it.

use std::borrow::Cow;
use std::fmt::Write as _;

use logfunnel_protocol::pickle::Scalar as PyAttr;
use logfunnel_protocol::python::{RECORD_ATTRS, is_own_attr};
use logfunnel_protocol::{RecordView, ValueRef, level_name};

use crate::error::FormatError;
use crate::time::{Clock, msecs};

/// Everything a format string can reference besides the record itself.
#[derive(Debug, Clone, Copy)]
pub struct RecordContext<'a> {
    /// The record being formatted.
    pub record: &'a RecordView<'a>,
    /// Who sent it, as the kernel saw the connection (not as it claims).
    pub peer: PeerCred,
    /// The connection's `processName`, used when `record.process_name` is None.
    pub process_name: &'a str,
    /// The connection's host name, exposed as `%(hostname)s`.
    pub host_name: &'a str,
    /// Hub start time (ns since the epoch), the origin of `relativeCreated`.
    pub start_ns: i64,
    /// The record came from Python's SocketHandler or DatagramHandler: its
    /// extras named like LogRecord's own attributes (`created`, `msecs`,
    /// `relativeCreated`, `levelname`, `stack_info`…) hold the values Python
    /// sent, which take the place of those computed here.
    pub python: bool,
}

/// A client connection's credentials from the kernel (SO_PEERCRED), shown
/// as `%(peer_uid)s`, `%(peer_gid)s` and `%(peer_pid)s`: unlike `process` or
/// `hostname`, which the client states itself, these cannot be forged by
/// it. `None` where the platform cannot tell (or for the hub's own records).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PeerCred {
    /// The peer's user id.
    pub uid: Option<u32>,
    /// The peer's primary group id.
    pub gid: Option<u32>,
    /// The peer's process id.
    pub pid: Option<u32>,
}

impl PeerCred {
    /// Credentials not known.
    pub const UNKNOWN: PeerCred = PeerCred { uid: None, gid: None, pid: None };
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Attr {
    Name,
    Msg,
    Args,
    Levelname,
    Levelno,
    Pathname,
    Filename,
    Module,
    ExcInfo,
    ExcText,
    StackInfo,
    Lineno,
    FuncName,
    Created,
    Msecs,
    RelativeCreated,
    Thread,
    ThreadName,
    ProcessName,
    Process,
    Message,
    Asctime,
    /// The kernel's view of the sender (see [`PeerCred`]); extras of the same
    /// name cannot shadow them.
    PeerUid,
    PeerGid,
    PeerPid,
    /// An extra, else `hostname`.
    Other(String),
}

impl Attr {
    pub(crate) fn from_name(name: &str) -> Attr {
        match name {
            "name" => Attr::Name,
            "msg" => Attr::Msg,
            "args" => Attr::Args,
            "levelname" => Attr::Levelname,
            "levelno" => Attr::Levelno,
            "pathname" => Attr::Pathname,
            "filename" => Attr::Filename,
            "module" => Attr::Module,
            "exc_info" => Attr::ExcInfo,
            "exc_text" => Attr::ExcText,
            "stack_info" => Attr::StackInfo,
            "lineno" => Attr::Lineno,
            "funcName" => Attr::FuncName,
            "created" => Attr::Created,
            "msecs" => Attr::Msecs,
            "relativeCreated" => Attr::RelativeCreated,
            "thread" => Attr::Thread,
            "threadName" => Attr::ThreadName,
            "processName" => Attr::ProcessName,
            "process" => Attr::Process,
            "message" => Attr::Message,
            "asctime" => Attr::Asctime,
            "peer_uid" => Attr::PeerUid,
            "peer_gid" => Attr::PeerGid,
            "peer_pid" => Attr::PeerPid,
            other => Attr::Other(other.to_owned()),
        }
    }

    /// Whether a Python record's extra of this name is the attribute itself
    /// (see [`RecordContext::python`]).
    fn python_sends(&self) -> bool {
        use Attr::*;
        !matches!(
            self,
            Name | Msg
                | Message
                | Args
                | ExcInfo
                | ExcText
                | Asctime
                | PeerUid
                | PeerGid
                | PeerPid
                | Other(_)
        )
    }

    /// A value of the attribute's type, for attributes whose type never
    /// changes; used to refuse formats that would fail on every record.
    pub(crate) fn sample(&self) -> Option<Val<'static>> {
        use Attr::*;
        match self {
            Name | Msg | Message | Asctime | Levelname | Pathname | Filename | Module | FuncName
            | ProcessName | ThreadName => Some(Val::Str("x")),
            Levelno | Lineno | Process | Thread => Some(Val::Int(0)),
            Created | Msecs | RelativeCreated => Some(Val::Float(0.0)),
            Args | ExcInfo | StackInfo => Some(Val::None),
            ExcText | PeerUid | PeerGid | PeerPid | Other(_) => None,
        }
    }
}

/// A Python value, borrowed from the record or a scratch buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Val<'a> {
    Str(&'a str),
    Int(i128),
    Float(f64),
    Bool(bool),
    None,
}

impl Val<'_> {
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Val::Str(_) => "str",
            Val::Int(_) => "int",
            Val::Float(_) => "float",
            Val::Bool(_) => "bool",
            Val::None => "NoneType",
        }
    }
}

pub(crate) fn attr_name(attr: &Attr) -> &str {
    use Attr::*;
    match attr {
        Name => "name",
        Msg => "msg",
        Args => "args",
        Levelname => "levelname",
        Levelno => "levelno",
        Pathname => "pathname",
        Filename => "filename",
        Module => "module",
        ExcInfo => "exc_info",
        ExcText => "exc_text",
        StackInfo => "stack_info",
        Lineno => "lineno",
        FuncName => "funcName",
        Created => "created",
        Msecs => "msecs",
        RelativeCreated => "relativeCreated",
        Thread => "thread",
        ThreadName => "threadName",
        ProcessName => "processName",
        Process => "process",
        Message => "message",
        Asctime => "asctime",
        PeerUid => "peer_uid",
        PeerGid => "peer_gid",
        PeerPid => "peer_pid",
        Other(name) => name,
    }
}

pub(crate) const UNKNOWN_FILE: &str = "(unknown file)";
pub(crate) const UNKNOWN_FUNCTION: &str = "(unknown function)";

/// `record.created`: the float nearest the nanosecond time, as Python 3.13's
/// `time_ns() / 1e9` (3.11's `time.time()` has no better precision).
pub(crate) fn created(record: &RecordView<'_>) -> f64 {
    record.created_ns as f64 / 1e9
}

/// `record.created` as [`created`], or as Python sent it.
pub(crate) fn created_of(ctx: &RecordContext<'_>) -> f64 {
    if ctx.python
        && let Some((_, ValueRef::F64(f))) = ctx.record.extra.iter().find(|(k, _)| *k == "created")
    {
        return *f;
    }
    created(ctx.record)
}

/// Python 3.11's `relativeCreated`: `(created - _startTime) * 1000`, in
/// float seconds (3.13 computes it from integer nanoseconds, which differs
/// in the last digits on most records).
fn relative_created(created_ns: i64, start_ns: i64) -> f64 {
    (created_ns as f64 / 1e9 - start_ns as f64 / 1e9) * 1000.0
}

/// `os.path.basename` (posix; Windows also splits at backslashes).
pub(crate) fn basename(path: &str) -> &str {
    let seps: &[char] = if cfg!(windows) { &['/', '\\'] } else { &['/'] };
    path.rfind(seps).map_or(path, |i| &path[i + 1..])
}

/// `os.path.splitext(filename)[0]`: a leading run of dots is not an extension.
fn strip_extension(filename: &str) -> &str {
    match filename.rfind('.') {
        Some(dot) if filename[..dot].bytes().any(|b| b != b'.') => &filename[..dot],
        _ => filename,
    }
}

pub(crate) fn value_of_extra<'v>(value: &ValueRef<'v>) -> Val<'v> {
    match *value {
        ValueRef::Str(s) => Val::Str(s),
        ValueRef::I64(i) => Val::Int(i128::from(i)),
        ValueRef::U64(u) => Val::Int(i128::from(u)),
        ValueRef::F64(f) => Val::Float(f),
        ValueRef::Bool(b) => Val::Bool(b),
    }
}

/// The value of `attr` for this record; computed text goes into `slot`.
pub(crate) fn lookup<'v>(
    attr: &Attr,
    ctx: &'v RecordContext<'_>,
    clock: &mut Clock,
    slot: &'v mut String,
) -> Result<Val<'v>, FormatError> {
    let r: &'v RecordView<'_> = ctx.record;
    if ctx.python
        && attr.python_sends()
        && let Some((_, value)) = r.extra.iter().find(|(k, _)| *k == attr_name(attr))
    {
        return Ok(value_of_extra(value));
    }
    Ok(match attr {
        Attr::Name => Val::Str(r.name),
        Attr::Msg | Attr::Message => Val::Str(r.message),
        Attr::Args | Attr::ExcInfo | Attr::StackInfo => Val::None,
        Attr::Levelname => match level_name(r.levelno) {
            Cow::Borrowed(name) => Val::Str(name),
            Cow::Owned(name) => {
                slot.clear();
                slot.push_str(&name);
                Val::Str(slot)
            }
        },
        Attr::Levelno => Val::Int(r.levelno.into()),
        Attr::Pathname => Val::Str(r.pathname.unwrap_or(UNKNOWN_FILE)),
        Attr::Filename => Val::Str(r.pathname.map_or(UNKNOWN_FILE, basename)),
        Attr::Module => Val::Str(r.pathname.map_or(UNKNOWN_FILE, |p| strip_extension(basename(p)))),
        Attr::ExcText => r.exc_text.map_or(Val::None, Val::Str),
        Attr::Lineno => Val::Int(r.lineno.into()),
        Attr::FuncName => Val::Str(r.func_name.unwrap_or(UNKNOWN_FUNCTION)),
        Attr::Created => Val::Float(created(r)),
        Attr::Msecs => Val::Float(msecs(created(r))),
        Attr::RelativeCreated => Val::Float(relative_created(r.created_ns, ctx.start_ns)),
        Attr::Thread => Val::Int(r.thread.into()),
        Attr::ThreadName => match r.thread_name {
            Some(name) => Val::Str(name),
            None => {
                slot.clear();
                let _ = write!(slot, "Thread-{}", r.thread);
                Val::Str(slot)
            }
        },
        Attr::ProcessName => Val::Str(r.process_name.unwrap_or(ctx.process_name)),
        Attr::Process => Val::Int(r.process.into()),
        Attr::Asctime => {
            slot.clear();
            clock.asctime(created_of(ctx), slot)?;
            Val::Str(slot)
        }
        Attr::PeerUid => ctx.peer.uid.map_or(Val::None, |v| Val::Int(v.into())),
        Attr::PeerGid => ctx.peer.gid.map_or(Val::None, |v| Val::Int(v.into())),
        Attr::PeerPid => ctx.peer.pid.map_or(Val::None, |v| Val::Int(v.into())),
        Attr::Other(name) => match r.extra.iter().find(|(k, _)| *k == name.as_str()) {
            Some((_, value)) => value_of_extra(value),
            None if name == "hostname" => Val::Str(ctx.host_name),
            None => return Err(FormatError::MissingField(name.clone())),
        },
    })
}

/// The record's `__dict__` as Python's `SocketHandler.makePickle` sends it:
/// `msg` the formatted message, `args` and `exc_info` None, every attribute
/// with the value a format string sees (Python's own, for a record that came
/// from Python), then `taskName` if a Python client sent one, then the
/// extras in their order (an extra named like an attribute is left out, as
/// Python refuses such extras).
pub fn record_dict(ctx: &RecordContext<'_>) -> Vec<(String, PyAttr)> {
    use PyAttr as P;
    let mut clock = Clock { utc: false, datefmt: None, second: None, text: String::new() };
    let mut slot = String::new();
    let mut out = Vec::with_capacity(RECORD_ATTRS.len() + ctx.record.extra.len());
    let own = |v: Val<'_>| match v {
        Val::Str(s) => P::Str(s.to_owned()),
        Val::Int(i) => P::Int(i),
        Val::Float(f) => P::Float(f),
        Val::Bool(b) => P::Bool(b),
        Val::None => P::None,
    };
    for name in RECORD_ATTRS {
        let value = lookup(&Attr::from_name(name), ctx, &mut clock, &mut slot).map_or(P::None, own);
        out.push(((*name).to_owned(), value));
    }
    for (i, (k, v)) in ctx.record.extra.iter().enumerate() {
        let reserved = RECORD_ATTRS.contains(k) || matches!(*k, "message" | "asctime");
        let python_own = ctx.python && is_own_attr(k) && *k != "taskName";
        if reserved || python_own || ctx.record.extra[..i].iter().any(|(x, _)| x == k) {
            continue;
        }
        out.push(((*k).to_owned(), own(value_of_extra(v))));
    }
    out
}
