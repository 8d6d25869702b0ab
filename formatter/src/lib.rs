//! Python's `logging.Formatter`, reproduced byte for byte (CPython 3.11),
//! and python-json-logger's `JsonFormatter` ([`Formatter::json`], in
//! `json.rs`).
//!
//! A [`Formatter`] validates its format string the way `Formatter(...,
//! validate=True)` does and parses it once into segments; formatting a record
//! walks those segments and writes straight into the caller's buffer, reusing
//! the formatter's scratch buffers, so the steady state allocates nothing.
//!
//! # Record attributes
//!
//! | name | Python type | source |
//! |---|---|---|
//! | `name`, `msg`, `message` | str | `record.name`, `record.message` (already formatted, as after `QueueHandler.prepare`) |
//! | `args`, `exc_info`, `stack_info` | None | always `None`, as after `QueueHandler.prepare` |
//! | `levelname` / `levelno` | str / int | [`logfunnel_protocol::level_name`] / `record.levelno` |
//! | `pathname` | str | `record.pathname`, or `"(unknown file)"` |
//! | `filename` | str | `os.path.basename(pathname)` |
//! | `module` | str | `os.path.splitext(filename)[0]` |
//! | `funcName` | str | `record.func_name`, or `"(unknown function)"` |
//! | `lineno` | int | `record.lineno` (0 when unknown, as Python) |
//! | `created` | float | `created_ns / 1e9` |
//! | `msecs` | float | 3.11's `int((created - int(created)) * 1000) + 0.0` |
//! | `relativeCreated` | float | 3.11's `(created - start) * 1000`, `start` the hub's start as a float |
//! | `asctime` | str | [`Formatter`]'s `formatTime` |
//! | `process` / `processName` | int / str | `record.process` / `record.process_name`, else the connection's |
//! | `thread` / `threadName` | int / str | `record.thread` / `record.thread_name`, else `"Thread-<thread>"` |
//! | `exc_text` | str or None | `record.exc_text` |
//! | any key of `record.extra` | str, int, float or bool | the first entry with that key |
//! | `hostname` | str | the connection's host name, unless an extra is called so |
//!
//! A record whose caller is unknown gets what CPython's `Logger.makeRecord`
//! gives when `findCaller` fails: pathname, filename and module are all
//! `"(unknown file)"`, funcName is `"(unknown function)"`, lineno is 0.
//! (`logging.makeLogRecord({})` would give empty strings instead, but that is
//! a record nobody logged.) A thread without a name is called
//! `"Thread-<thread>"`, after Python's default `Thread-N`, with the OS thread
//! id for N so that names stay distinct. `taskName` does not exist in 3.11, so
//! `%(taskName)s` is a missing field unless an extra provides it. Python's own
//! attributes take precedence over extras of the same name (Python refuses
//! such extras outright).
//!
//! # Deviations from Python
//!
//! Output is byte-identical to CPython 3.11's (the differential tests run
//! python3 on the same records). Where behaviour differs:
//! - Format strings that Python accepts but that fail on *every* record are
//!   refused at construction ([`FormatError::Invalid`]) instead: syntax errors
//!   after the first valid field (`"%(message)s %(x"`), conversions without a
//!   `%(key)` (which Python fills with the repr of `record.__dict__`), `*`
//!   widths, positional `{}`/`{0}` fields, and a conversion or spec that can
//!   never suit an attribute of fixed type (`%(levelname)d`, `{lineno:s}`).
//! - `{` style: attribute and index lookups in field names (`{created.real}`,
//!   `{message[0]}`) are refused at construction.
//! - Widths and precisions above [`MAX_WIDTH`] are refused (Python would try
//!   to build the string and run out of memory), and a record whose text
//!   would pass [`MAX_RECORD_BYTES`] fails to format.
//! - `%c` of a surrogate code point fails the record with the error Python's
//!   handler raises when it encodes the line (a Rust string cannot hold a
//!   lone surrogate; Python fails one step later, on the write).
//! - On non-Unix targets asctime with a `datefmt` goes through chrono's
//!   strftime rather than the C library's, so exotic directives may differ.

mod json;

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::Write as _;

pub use json::{JsonFields, JsonOptions, JsonValue};

use logfunnel_protocol::{RecordView, ValueRef, append_short, level_name};

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

/// The format string style, as Python's `style` argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `'%'`: `%(name)s`, printf semantics.
    Percent,
    /// `'{'`: `str.format`.
    Brace,
    /// `'$'`: `string.Template.substitute`.
    Dollar,
}

impl Style {
    /// Parses Python's style argument: `"%"`, `"{"` or `"$"`.
    pub fn parse(s: &str) -> Option<Style> {
        match s {
            "%" => Some(Style::Percent),
            "{" => Some(Style::Brace),
            "$" => Some(Style::Dollar),
            _ => None,
        }
    }

    /// The style's character, as Python spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Style::Percent => "%",
            Style::Brace => "{",
            Style::Dollar => "$",
        }
    }

    /// The format used when none (or an empty one) is given.
    pub fn default_format(self) -> &'static str {
        match self {
            Style::Percent => "%(message)s",
            Style::Brace => "{message}",
            Style::Dollar => "${message}",
        }
    }
}

/// Why a formatter could not be built or a record could not be formatted.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The format string is invalid for its style, or can never format a
    /// record (see the module docs). `reason` follows Python's wording.
    #[error("Invalid format '{fmt}' for '{style}' style: {reason}")]
    Invalid {
        /// The format string.
        fmt: String,
        /// The style's character.
        style: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The date format cannot be used.
    #[error("Invalid datefmt '{datefmt}': {reason}")]
    BadDateFormat {
        /// The date format.
        datefmt: String,
        /// What is wrong.
        reason: String,
    },
    /// The format references a field the record does not have (Python's
    /// `ValueError` raised from the `KeyError`).
    #[error("Formatting field not found in record: {}", py_repr(.0))]
    MissingField(String),
    /// A value the conversion cannot take, with Python's message (Python
    /// raises TypeError, ValueError or OverflowError).
    #[error("{0}")]
    Conversion(String),
    /// The record's time cannot be converted to a calendar time.
    #[error("timestamp out of range for platform time_t: {0}")]
    TimeOutOfRange(f64),
    /// A JSON formatter's arguments are wrong (python-json-logger's message).
    #[error("{0}")]
    Json(String),
}

/// The largest width or precision a format may ask for.
pub const MAX_WIDTH: usize = 1_000_000;

/// The most text one record may format to (widths taken from the record,
/// as in `{message:>{lineno}}`, could otherwise add up without bound).
pub const MAX_RECORD_BYTES: usize = 16 << 20;

/// `formatTime`'s default `default_time_format`.
const DEFAULT_TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// Python's `logging.Formatter` for [`Record`]s. See the module docs.
#[derive(Debug, Clone)]
pub struct Formatter {
    style: Style,
    fmt: String,
    datefmt: Option<String>,
    uses_time: bool,
    time_only_checked: bool,
    segments: Vec<Segment>,
    clock: Clock,
    slots: Slots,
    work: Work,
    /// A JSON formatter instead of `segments` (python-json-logger's).
    json: Option<Box<json::Json>>,
    /// A QueueHandler's formatter that "prepares" each record first: its
    /// output becomes the message, and exc_text is cleared.
    prepare: Option<Box<Formatter>>,
    prepared: Vec<u8>,
}

impl Formatter {
    /// Builds a formatter, validating `fmt` as Python's `validate=True`
    /// does. `None` or `""` selects the style's default format; a `None` or
    /// empty `datefmt` selects `YYYY-MM-DD HH:MM:SS,mmm` (both are falsy in
    /// Python).
    pub fn new(fmt: Option<&str>, datefmt: Option<&str>, style: Style) -> Result<Formatter, FormatError> {
        let fmt = match fmt {
            Some(f) if !f.is_empty() => f,
            _ => style.default_format(),
        };
        let invalid =
            |reason: String| FormatError::Invalid { fmt: fmt.to_owned(), style: style.as_str(), reason };
        let segments = match style {
            Style::Percent => parse_percent(fmt),
            Style::Brace => parse_brace(fmt, false),
            Style::Dollar => parse_dollar(fmt),
        }
        .map_err(invalid)?;
        check_fixed_types(&segments).map_err(invalid)?;
        let datefmt = datefmt.filter(|d| !d.is_empty());
        let uses_time = match style {
            Style::Percent => fmt.contains("%(asctime)"),
            Style::Brace => fmt.contains("{asctime"),
            Style::Dollar => fmt.contains("$asctime") || fmt.contains("${asctime}"),
        };
        // Python looks at datefmt only when usesTime() (a NUL in it then
        // fails every record, so it is refused; otherwise it is never read).
        let date = if uses_time { datefmt.map(DateFmt::new).transpose()? } else { None };
        let formats_time = segments.iter().any(|s| match s {
            Segment::Field(f) => {
                f.attr == Attr::Asctime
                    || matches!(&f.render, Render::Brace { spec: BraceSpec::Nested(parts), .. }
                        if parts.iter().any(|p| matches!(p, SpecPart::Field(Attr::Asctime))))
            }
            Segment::Lit(_) => false,
        });
        Ok(Formatter {
            style,
            fmt: fmt.to_owned(),
            datefmt: datefmt.map(str::to_owned),
            uses_time,
            // usesTime() is a substring test ("%%(asctime)s" passes it):
            // Python then computes asctime, and fails the records whose time
            // it cannot convert, even if no field shows it.
            time_only_checked: uses_time && !formats_time,
            segments,
            clock: Clock { utc: false, datefmt: date, second: None, text: String::new() },
            slots: Slots::default(),
            work: Work::default(),
            json: None,
            prepare: None,
            prepared: Vec::new(),
        })
    }

    /// python-json-logger's `JsonFormatter` with these arguments: one JSON
    /// object per record (see `json.rs`).
    pub fn json(opts: JsonOptions) -> Result<Formatter, FormatError> {
        let datefmt = opts.datefmt.clone().filter(|d| !d.is_empty());
        let fmt = match &opts.fields {
            JsonFields::Format { fmt, .. } => fmt.clone().unwrap_or_default(),
            JsonFields::Names(names) => names.join(","),
        };
        let json = json::Json::new(opts).map_err(FormatError::Json)?;
        let uses_time = json.uses_time();
        let date = if uses_time { datefmt.as_deref().map(DateFmt::new).transpose()? } else { None };
        Ok(Formatter {
            style: Style::Percent,
            fmt,
            datefmt,
            uses_time,
            time_only_checked: false,
            segments: Vec::new(),
            clock: Clock { utc: false, datefmt: date, second: None, text: String::new() },
            slots: Slots::default(),
            work: Work::default(),
            json: Some(Box::new(json)),
            prepare: None,
            prepared: Vec::new(),
        })
    }

    /// Whether this is a JSON formatter.
    pub fn is_json(&self) -> bool {
        self.json.is_some()
    }

    /// For a JSON formatter: whether DEL and C1 control characters are
    /// escaped (`\u007f`) even without `ensure_ascii` (the handler's
    /// `escape_control_chars`; JSON escapes every other control itself).
    pub fn with_control_escapes(mut self, on: bool) -> Formatter {
        if let Some(json) = &mut self.json {
            json.escape_controls = on;
        }
        self
    }

    /// Formats records as they arrive through a QueueHandler whose own
    /// formatter is `prepare`: Python's `QueueHandler.prepare` makes that
    /// formatter's output the record's message and clears its exc_text.
    pub fn prepared_by(mut self, prepare: Formatter) -> Formatter {
        self.prepare = Some(Box::new(prepare));
        self
    }

    /// Converts times with `time.gmtime` instead of `time.localtime`.
    pub fn with_utc(mut self, utc: bool) -> Formatter {
        self.clock.utc = utc;
        self.clock.second = None;
        self
    }

    /// Python's `usesTime()`: a substring test on the format string.
    pub fn uses_time(&self) -> bool {
        self.uses_time
    }

    /// The format string in use (the style's default if none was given).
    pub fn fmt(&self) -> &str {
        &self.fmt
    }

    /// The date format, if one is in use.
    pub fn datefmt(&self) -> Option<&str> {
        self.datefmt.as_deref()
    }

    /// The style.
    pub fn style(&self) -> Style {
        self.style
    }

    /// Appends the formatted record to `out`, without a trailing newline
    /// (handlers add the terminator). A non-empty `exc_text` follows on a new
    /// line, as Python appends it. On error `out` is left as it was.
    pub fn format(&mut self, ctx: &RecordContext<'_>, out: &mut Vec<u8>) -> Result<(), FormatError> {
        let start = out.len();
        // `%(message)s` prepares a record without a traceback into itself.
        let identity = |p: &Formatter| {
            p.json.is_none() && p.prepare.is_none() && p.style == Style::Percent && p.fmt == "%(message)s"
        };
        let result = match self.prepare.as_mut() {
            Some(p) if identity(p) && ctx.record.exc_text.is_none_or(str::is_empty) => {
                self.format_into(ctx, out, start)
            }
            None => self.format_into(ctx, out, start),
            Some(prepare) => {
                let mut text = std::mem::take(&mut self.prepared);
                text.clear();
                let result = prepare.format(ctx, &mut text).and_then(|()| {
                    // Formatter output is built from UTF-8 text only.
                    let message =
                        std::str::from_utf8(&text).map_err(|e| FormatError::Conversion(e.to_string()))?;
                    let record = RecordView { message, exc_text: None, ..ctx.record.clone() };
                    self.format_into(&RecordContext { record: &record, ..*ctx }, out, start)
                });
                self.prepared = text;
                result
            }
        };
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    fn format_into(
        &mut self,
        ctx: &RecordContext<'_>,
        out: &mut Vec<u8>,
        start: usize,
    ) -> Result<(), FormatError> {
        if let Some(json) = &mut self.json {
            return json.format(ctx, &mut self.clock, out);
        }
        self.work.surrogate = None;
        if self.time_only_checked {
            self.clock.second_text(created(ctx.record))?;
        }
        for segment in &self.segments {
            match segment {
                Segment::Lit(text) => append_short(out, text.as_bytes()),
                Segment::Field(field) => {
                    render_field(field, ctx, &mut self.clock, &mut self.slots, &mut self.work, out)?;
                    // Each field is at most MAX_WIDTH wide; their sum is bounded too.
                    if out.len() - start > MAX_RECORD_BYTES {
                        return Err(FormatError::Conversion(format!(
                            "the formatted record would exceed {MAX_RECORD_BYTES} bytes"
                        )));
                    }
                }
            }
        }
        if let Some(exc) = ctx.record.exc_text.filter(|e| !e.is_empty()) {
            if out[start..].last() != Some(&b'\n') {
                out.push(b'\n');
            }
            out.extend_from_slice(exc.as_bytes());
        }
        if let Some((cp, at)) = self.work.surrogate.take() {
            // What Python's handler says when it encodes the line.
            let text = String::from_utf8_lossy(&out[start..]);
            let from = at.saturating_sub(start);
            let pos = text[from.min(text.len())..].find(char::REPLACEMENT_CHARACTER).map_or(0, |i| i + from);
            let position = text[..pos].chars().count();
            return Err(FormatError::Conversion(format!(
                "'utf-8' codec can't encode character '\\u{cp:04x}' in position {position}: surrogates not allowed"
            )));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Parsed format

#[derive(Debug, Clone)]
enum Segment {
    Lit(String),
    Field(Field),
}

#[derive(Debug, Clone)]
struct Field {
    attr: Attr,
    render: Render,
}

#[derive(Debug, Clone)]
enum Render {
    /// `str(value)`: `$` fields, `%(x)s`, `{x}`.
    Plain,
    Printf(Printf),
    Brace {
        conv: Option<Conv>,
        spec: BraceSpec,
    },
}

/// `!s`, `!r`, `!a`.
#[derive(Debug, Clone, Copy)]
enum Conv {
    Str,
    Repr,
    Ascii,
}

#[derive(Debug, Clone)]
enum BraceSpec {
    Fixed(Spec),
    /// A spec with `{field}`s in it (`{message:>{width}}`), built per record.
    Nested(Vec<SpecPart>),
}

#[derive(Debug, Clone)]
enum SpecPart {
    Lit(String),
    Field(Attr),
}

/// One `%(key)...c` conversion.
#[derive(Debug, Clone, Default)]
struct Printf {
    left: bool,
    plus: bool,
    space: bool,
    alt: bool,
    zero: bool,
    width: usize,
    precision: Option<usize>,
    conv: char,
}

/// A parsed `str.format` spec: `[[fill]align][sign][#][0][width][,_][.prec][type]`.
#[derive(Debug, Clone, Default)]
struct Spec {
    empty: bool,
    fill: Option<char>,
    align: Option<char>,
    sign: Option<char>,
    alt: bool,
    zero: bool,
    width: usize,
    grouping: Option<char>,
    precision: Option<usize>,
    ty: Option<char>,
}

impl Spec {
    /// Fill and alignment for numbers: '0' means zero padding after the sign.
    fn numeric_pad(&self) -> Pad {
        Pad {
            fill: self.fill.unwrap_or(if self.zero { '0' } else { ' ' }),
            align: self.align.unwrap_or(if self.zero { '=' } else { '>' }),
            width: self.width,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Attr {
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
    fn from_name(name: &str) -> Attr {
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

    /// A value of the attribute's type, for attributes whose type never
    /// changes; used to refuse formats that would fail on every record.
    fn sample(&self) -> Option<Val<'static>> {
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
enum Val<'a> {
    Str(&'a str),
    Int(i128),
    Float(f64),
    Bool(bool),
    None,
}

impl Val<'_> {
    fn type_name(&self) -> &'static str {
        match self {
            Val::Str(_) => "str",
            Val::Int(_) => "int",
            Val::Float(_) => "float",
            Val::Bool(_) => "bool",
            Val::None => "NoneType",
        }
    }
}

/// Buffers that looked-up values borrow from.
#[derive(Debug, Clone, Default)]
struct Slots {
    value: String,
    nested: String,
    spec: String,
}

/// Buffers the renderers write intermediate text into.
#[derive(Debug, Clone, Default)]
struct Work {
    text: String,
    num: String,
    raw: String,
    grouped: Vec<u8>,
    /// The first lone surrogate written (as U+FFFD) and the output offset
    /// at or after which it sits: see [`code_point`].
    surrogate: Option<(u32, usize)>,
}

// ---------------------------------------------------------------------------
// Parsing and validation

fn is_word(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// Reads ASCII digits at `*i`, if any (saturating at `usize::MAX`).
fn parse_digits(chars: &[char], i: &mut usize) -> Option<usize> {
    let start = *i;
    let mut n: usize = 0;
    while let Some(d) = chars.get(*i).and_then(|c| c.to_digit(10)) {
        n = n.saturating_mul(10).saturating_add(d as usize);
        *i += 1;
    }
    (*i > start).then_some(n)
}

/// A width: refused above [`MAX_WIDTH`] (Python would build the string).
fn parse_width(chars: &[char], i: &mut usize) -> Result<usize, String> {
    match parse_digits(chars, i) {
        Some(n) if n > MAX_WIDTH => Err("width too big".into()),
        n => Ok(n.unwrap_or(0)),
    }
}

/// A precision is not bounded here: on a string it only truncates, as in
/// Python, whatever its size; a number refuses one above [`MAX_WIDTH`] when
/// it is rendered ([`check_precision`]).
fn parse_precision(chars: &[char], i: &mut usize) -> Option<usize> {
    parse_digits(chars, i)
}

/// Numbers with more than [`MAX_WIDTH`] digits of precision are refused
/// (Python would build the string; strings are only truncated).
fn check_precision(precision: Option<usize>) -> Result<(), String> {
    match precision {
        Some(p) if p > MAX_WIDTH => {
            Err(format!("precision {p} too big for a number (the limit is {MAX_WIDTH})"))
        }
        _ => Ok(()),
    }
}

/// PercentStyle.validate: `%\(\w+\)[#0+ -]*(\*|\d+)?(\.(\*|\d+))?[diouxefgcrsa%]`
/// (case-insensitive) must match somewhere.
fn percent_pattern_found(chars: &[char]) -> bool {
    let at = |i: usize| chars.get(i).copied();
    (0..chars.len()).any(|start| {
        if at(start) != Some('%') || at(start + 1) != Some('(') {
            return false;
        }
        let mut i = start + 2;
        let name = i;
        while at(i).is_some_and(is_word) {
            i += 1;
        }
        if i == name || at(i) != Some(')') {
            return false;
        }
        i += 1;
        while matches!(at(i), Some('#' | '0' | '+' | ' ' | '-')) {
            i += 1;
        }
        if at(i) == Some('*') {
            i += 1;
        } else {
            while at(i).is_some_and(|c| c.is_ascii_digit()) {
                i += 1;
            }
        }
        if at(i) == Some('.') {
            if at(i + 1) == Some('*') {
                i += 2;
            } else if at(i + 1).is_some_and(|c| c.is_ascii_digit()) {
                i += 1;
                while at(i).is_some_and(|c| c.is_ascii_digit()) {
                    i += 1;
                }
            }
        }
        at(i).is_some_and(|c| "diouxefgcrsa%".contains(c.to_ascii_lowercase()))
    })
}

fn push_lit(segments: &mut Vec<Segment>, lit: &mut String) {
    if !lit.is_empty() {
        segments.push(Segment::Lit(std::mem::take(lit)));
    }
}

fn parse_percent(fmt: &str) -> Result<Vec<Segment>, String> {
    let chars: Vec<char> = fmt.chars().collect();
    if !percent_pattern_found(&chars) {
        return Err("no %(name)s-style field".into());
    }
    let mut segments = Vec::new();
    let mut lit = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        if c != '%' {
            lit.push(c);
            continue;
        }
        match chars.get(i) {
            None => return Err("incomplete format".into()),
            Some('%') => {
                lit.push('%');
                i += 1;
                continue;
            }
            Some('(') => {}
            Some(_) => {
                return Err(format!(
                    "the conversion at index {} has no %(key); Python would format the \
                     whole record dictionary or fail",
                    i - 1
                ));
            }
        }
        i += 1;
        let key_start = i;
        let mut depth = 1;
        while depth > 0 {
            match chars.get(i) {
                None => return Err("incomplete format key".into()),
                Some('(') => depth += 1,
                Some(')') => depth -= 1,
                Some(_) => {}
            }
            i += 1;
        }
        let key: String = chars[key_start..i - 1].iter().collect();
        let mut p = Printf::default();
        loop {
            match chars.get(i) {
                Some('-') => p.left = true,
                Some('+') => p.plus = true,
                Some(' ') => p.space = true,
                Some('#') => p.alt = true,
                Some('0') => p.zero = true,
                _ => break,
            }
            i += 1;
        }
        if chars.get(i) == Some(&'*') {
            return Err("'*' width needs a positional argument, which a record has not".into());
        }
        p.width = parse_width(&chars, &mut i)?;
        if chars.get(i) == Some(&'.') {
            i += 1;
            if chars.get(i) == Some(&'*') {
                return Err("'*' precision needs a positional argument, which a record has not".into());
            }
            p.precision = Some(parse_precision(&chars, &mut i).unwrap_or(0));
        }
        // Python skips one C length modifier ("%(lineno)ld").
        if matches!(chars.get(i), Some('h' | 'l' | 'L')) {
            i += 1;
        }
        let Some(&conv) = chars.get(i) else {
            return Err("incomplete format".into());
        };
        if !"diuoxXeEfFgGcrsa".contains(conv) {
            let shown = if (' '..='~').contains(&conv) { conv } else { '?' };
            return Err(format!("unsupported format character '{shown}' (0x{:x}) at index {i}", conv as u32));
        }
        i += 1;
        p.conv = conv;
        let render = if conv == 's' && p.width == 0 && p.precision.is_none() {
            Render::Plain
        } else {
            Render::Printf(p)
        };
        push_lit(&mut segments, &mut lit);
        segments.push(Segment::Field(Field { attr: Attr::from_name(&key), render }));
    }
    push_lit(&mut segments, &mut lit);
    Ok(segments)
}

/// StrFormatStyle.field_spec: `^(\d+|\w+)(\.\w+|\[[^]]+\])*$`.
fn brace_field_name_ok(name: &[char]) -> bool {
    let mut i = 0;
    while i < name.len() && is_word(name[i]) {
        i += 1;
    }
    if i == 0 {
        return false;
    }
    while i < name.len() {
        let start = i + 1;
        match name[i] {
            '.' => {
                i = start;
                while i < name.len() && is_word(name[i]) {
                    i += 1;
                }
                if i == start {
                    return false;
                }
            }
            '[' => {
                i = start;
                while i < name.len() && name[i] != ']' {
                    i += 1;
                }
                if i == start || i == name.len() {
                    return false;
                }
                i += 1;
            }
            _ => return false,
        }
    }
    true
}

/// StrFormatStyle.fmt_spec (case-insensitive):
/// `^(.?[<>=^])?[+ -]?#?0?(\d+|{\w+})?[,_]?(\.(\d+|{\w+}))?[bcdefgnosx%]?$`.
fn brace_spec_ok(spec: &[char]) -> bool {
    let is_align = |c: char| matches!(c, '<' | '>' | '=' | '^');
    let rest_ok = |mut i: usize| {
        let at = |i: usize| spec.get(i).copied();
        // `\d+` or `{\w+}`; false if neither is there.
        let count_or_field = |i: &mut usize| {
            let start = *i;
            if at(*i) == Some('{') {
                let mut j = *i + 1;
                while at(j).is_some_and(is_word) {
                    j += 1;
                }
                if j > *i + 1 && at(j) == Some('}') {
                    *i = j + 1;
                }
            } else {
                while at(*i).is_some_and(|c| c.is_ascii_digit()) {
                    *i += 1;
                }
            }
            *i > start
        };
        if matches!(at(i), Some('+' | ' ' | '-')) {
            i += 1;
        }
        if at(i) == Some('#') {
            i += 1;
        }
        if at(i) == Some('0') {
            i += 1;
        }
        count_or_field(&mut i);
        if matches!(at(i), Some(',' | '_')) {
            i += 1;
        }
        if at(i) == Some('.') {
            i += 1;
            if !count_or_field(&mut i) {
                return false;
            }
        }
        if at(i).is_some_and(|c| "bcdefgnosx%".contains(c.to_ascii_lowercase())) {
            i += 1;
        }
        i == spec.len()
    };
    (spec.len() >= 2 && spec[0] != '\n' && is_align(spec[1]) && rest_ok(2))
        || (!spec.is_empty() && is_align(spec[0]) && rest_ok(1))
        || rest_ok(0)
}

/// Parses a format spec as `str.format` does (`type_name` is for messages).
fn parse_spec(text: &str, type_name: &str) -> Result<Spec, String> {
    let c: Vec<char> = text.chars().collect();
    let is_align = |c: char| matches!(c, '<' | '>' | '=' | '^');
    let mut s = Spec { empty: c.is_empty(), ..Spec::default() };
    let mut i = 0;
    if c.len() >= 2 && is_align(c[1]) {
        s.fill = Some(c[0]);
        s.align = Some(c[1]);
        i = 2;
    } else if !c.is_empty() && is_align(c[0]) {
        s.align = Some(c[0]);
        i = 1;
    }
    if let Some(&sign @ ('+' | '-' | ' ')) = c.get(i) {
        s.sign = Some(sign);
        i += 1;
    }
    if c.get(i) == Some(&'#') {
        s.alt = true;
        i += 1;
    }
    if s.fill.is_none() && c.get(i) == Some(&'0') {
        s.zero = true;
        i += 1;
    }
    // str.format reads at most isize::MAX, then refuses the spec.
    let too_many = |n: Option<usize>| match n {
        Some(n) if n > isize::MAX as usize => Err("Too many decimal digits in format string".to_string()),
        n => Ok(n),
    };
    let mut j = i;
    too_many(parse_digits(&c, &mut j))?;
    s.width = parse_width(&c, &mut i)?;
    if let Some(&g @ (',' | '_')) = c.get(i) {
        s.grouping = Some(g);
        i += 1;
        if matches!(c.get(i), Some(',' | '_')) {
            return Err("Cannot specify both ',' and '_'.".into());
        }
    }
    if c.get(i) == Some(&'.') {
        i += 1;
        match too_many(parse_precision(&c, &mut i))? {
            Some(p) => s.precision = Some(p),
            None => return Err("Format specifier missing precision".into()),
        }
    }
    match c.len() - i {
        0 => {}
        1 => s.ty = Some(c[i]),
        _ => {
            return Err(format!("Invalid format specifier '{text}' for object of type '{type_name}'"));
        }
    }
    Ok(s)
}

/// `python_only`: only what `StrFormatStyle.validate` checks (no segments).
fn parse_brace(fmt: &str, python_only: bool) -> Result<Vec<Segment>, String> {
    let bad = |what: String| format!("invalid format: {what}");
    let chars: Vec<char> = fmt.chars().collect();
    let mut segments = Vec::new();
    let mut lit = String::new();
    let mut any_field = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        if c != '{' && c != '}' {
            lit.push(c);
            continue;
        }
        let next = chars.get(i).copied();
        if next == Some(c) {
            lit.push(c);
            i += 1;
            continue;
        }
        if c == '}' {
            return Err(bad("Single '}' encountered in format string".into()));
        }
        if next.is_none() {
            return Err(bad("Single '{' encountered in format string".into()));
        }
        // The field runs to the matching '}', nested braces included.
        let start = i;
        let mut depth = 1;
        let mut nested = false;
        loop {
            match chars.get(i) {
                None => return Err(bad("expected '}' before end of string".into())),
                Some('{') => {
                    depth += 1;
                    nested = true;
                }
                Some('}') => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                Some(_) => {}
            }
            i += 1;
        }
        let field = &chars[start..i];
        i += 1;
        // The name ends at '!' or ':' (brackets may hide them).
        let mut n = 0;
        while n < field.len() {
            match field[n] {
                '{' => return Err(bad("unexpected '{' in field name".into())),
                '[' => {
                    while n < field.len() && field[n] != ']' {
                        n += 1;
                    }
                    continue;
                }
                ':' | '!' => break,
                _ => {}
            }
            n += 1;
        }
        let name = &field[..n.min(field.len())];
        let mut conv = None;
        let mut spec: &[char] = &[];
        if n < field.len() {
            if field[n] == '!' {
                let Some(&cv) = field.get(n + 1) else {
                    return Err(bad("end of string while looking for conversion specifier".into()));
                };
                conv = Some(cv);
                if n + 2 < field.len() {
                    if field[n + 2] != ':' {
                        return Err(bad("expected ':' after conversion specifier".into()));
                    }
                    spec = &field[n + 3..];
                }
            } else {
                spec = &field[n + 1..];
            }
        }
        let name_str: String = name.iter().collect();
        let spec_str: String = spec.iter().collect();
        if !name.is_empty() {
            if !brace_field_name_ok(name) {
                return Err(bad(format!("invalid field name/expression: {}", py_repr(&name_str))));
            }
            any_field = true;
        }
        let conv = match conv {
            None => None,
            Some('s') => Some(Conv::Str),
            Some('r') => Some(Conv::Repr),
            Some('a') => Some(Conv::Ascii),
            Some(other) => {
                return Err(bad(format!("invalid conversion: {}", py_repr(&other.to_string()))));
            }
        };
        if !spec.is_empty() && !brace_spec_ok(spec) {
            return Err(bad(format!("bad specifier: {}", py_repr(&spec_str))));
        }
        if python_only {
            continue;
        }
        // Valid for Python; now what a record can actually satisfy.
        if name.is_empty() || name.iter().all(|c| c.is_ascii_digit()) {
            return Err(format!("positional field {{{name_str}}}: a record has only named fields"));
        }
        if name.iter().any(|&c| c == '.' || c == '[') {
            return Err(format!("field {{{name_str}}}: attribute and index lookups are not supported"));
        }
        let attr = Attr::from_name(&name_str);
        let render = if nested {
            Render::Brace { conv, spec: BraceSpec::Nested(split_nested_spec(&spec_str)) }
        } else if spec.is_empty() && matches!(conv, None | Some(Conv::Str)) {
            Render::Plain
        } else {
            Render::Brace { conv, spec: BraceSpec::Fixed(parse_spec(&spec_str, "str")?) }
        };
        push_lit(&mut segments, &mut lit);
        segments.push(Segment::Field(Field { attr, render }));
    }
    push_lit(&mut segments, &mut lit);
    if !any_field {
        return Err(bad("no fields".into()));
    }
    Ok(segments)
}

/// Splits `>{width}.{prec}` into literal text and field references (the
/// validation regex guarantees each `{...}` is a plain `{name}`).
fn split_nested_spec(spec: &str) -> Vec<SpecPart> {
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut chars = spec.chars();
    while let Some(c) = chars.next() {
        if c == '{' {
            if !lit.is_empty() {
                parts.push(SpecPart::Lit(std::mem::take(&mut lit)));
            }
            let name: String = chars.by_ref().take_while(|&c| c != '}').collect();
            parts.push(SpecPart::Field(Attr::from_name(&name)));
        } else {
            lit.push(c);
        }
    }
    if !lit.is_empty() {
        parts.push(SpecPart::Lit(lit));
    }
    parts
}

/// Python's own `validate()` of a format in `style`: what a formatter that
/// only reads field names from it (python-json-logger's) requires.
pub(crate) fn python_validate(fmt: &str, style: Style) -> Result<(), String> {
    match style {
        Style::Percent if !percent_pattern_found(&fmt.chars().collect::<Vec<_>>()) => {
            Err("no %(name)s-style field".into())
        }
        Style::Percent => Ok(()),
        Style::Brace => parse_brace(fmt, true).map(drop),
        Style::Dollar => parse_dollar(fmt).map(drop),
    }
}

/// `string.Template` placeholders: `$$`, `$name`, `${name}`, where a name is
/// `[_A-Za-z][_A-Za-z0-9]*`.
fn parse_dollar(fmt: &str) -> Result<Vec<Segment>, String> {
    let chars: Vec<char> = fmt.chars().collect();
    let id_start = |c: &char| c.is_ascii_alphabetic() || *c == '_';
    let id_continue = |c: &char| c.is_ascii_alphanumeric() || *c == '_';
    let ident_end = |from: usize| {
        let mut j = from;
        if chars.get(j).is_some_and(id_start) {
            j += 1;
            while chars.get(j).is_some_and(id_continue) {
                j += 1;
            }
        }
        j
    };
    let mut segments = Vec::new();
    let mut lit = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '$' {
            lit.push(chars[i]);
            i += 1;
            continue;
        }
        let (name, next) = match chars.get(i + 1) {
            Some('$') => {
                lit.push('$');
                i += 2;
                continue;
            }
            Some('{') => {
                let end = ident_end(i + 2);
                if end == i + 2 || chars.get(end) != Some(&'}') {
                    return Err("invalid format: bare '$' not allowed".into());
                }
                (&chars[i + 2..end], end + 1)
            }
            _ => {
                let end = ident_end(i + 1);
                if end == i + 1 {
                    return Err("invalid format: bare '$' not allowed".into());
                }
                (&chars[i + 1..end], end)
            }
        };
        push_lit(&mut segments, &mut lit);
        segments.push(Segment::Field(Field {
            attr: Attr::from_name(&name.iter().collect::<String>()),
            render: Render::Plain,
        }));
        i = next;
    }
    push_lit(&mut segments, &mut lit);
    if !segments.iter().any(|s| matches!(s, Segment::Field(_))) {
        return Err("invalid format: no fields".into());
    }
    Ok(segments)
}

/// Refuses conversions that fail for every value of an attribute's fixed
/// type (`%(levelname)d`), by rendering a sample value.
fn check_fixed_types(segments: &[Segment]) -> Result<(), String> {
    let mut work = Work::default();
    let mut sink = Vec::new();
    for segment in segments {
        let Segment::Field(field) = segment else {
            continue;
        };
        let Some(sample) = field.attr.sample() else {
            continue;
        };
        let result = match &field.render {
            Render::Plain => Ok(()),
            Render::Printf(p) => printf(&mut sink, sample, p, &mut work),
            Render::Brace { conv, spec: BraceSpec::Fixed(spec) } => {
                brace(&mut sink, sample, *conv, spec, &mut work)
            }
            Render::Brace { .. } => Ok(()),
        };
        result.map_err(|e| format!("{e} (for field {})", py_repr(attr_name(&field.attr))))?;
        sink.clear();
    }
    Ok(())
}

fn attr_name(attr: &Attr) -> &str {
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

// ---------------------------------------------------------------------------
// Record values

const UNKNOWN_FILE: &str = "(unknown file)";
const UNKNOWN_FUNCTION: &str = "(unknown function)";

/// `record.created`: the float nearest the nanosecond time, as Python 3.13's
/// `time_ns() / 1e9` (3.11's `time.time()` has no better precision).
fn created(record: &RecordView<'_>) -> f64 {
    record.created_ns as f64 / 1e9
}

/// Python 3.11's `relativeCreated`: `(created - _startTime) * 1000`, in
/// float seconds (3.13 computes it from integer nanoseconds, which differs
/// in the last digits on most records).
fn relative_created(created_ns: i64, start_ns: i64) -> f64 {
    (created_ns as f64 / 1e9 - start_ns as f64 / 1e9) * 1000.0
}

/// Python 3.11's `msecs`: `int((ct - int(ct)) * 1000) + 0.0`.
fn msecs(ct: f64) -> f64 {
    // The + 0.0 turns -0.0 into 0.0, as Python's int() + 0.0 does.
    trunc((ct - trunc(ct)) * 1000.0) + 0.0
}

/// `f64::trunc` without a call into libm (the baseline x86-64 target has no
/// rounding instruction): exact for every finite value.
#[inline]
fn trunc(x: f64) -> f64 {
    // Beyond 2^52 every f64 is already an integer.
    if x.abs() < 4_503_599_627_370_496.0 { (x as i64) as f64 } else { x.trunc() }
}

/// `f64::floor`, as [`trunc`].
#[inline]
fn floor(x: f64) -> f64 {
    let t = trunc(x);
    if t > x { t - 1.0 } else { t }
}

/// `os.path.basename` (posix; Windows also splits at backslashes).
fn basename(path: &str) -> &str {
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

fn value_of_extra<'v>(value: &ValueRef<'v>) -> Val<'v> {
    match *value {
        ValueRef::Str(s) => Val::Str(s),
        ValueRef::I64(i) => Val::Int(i128::from(i)),
        ValueRef::U64(u) => Val::Int(i128::from(u)),
        ValueRef::F64(f) => Val::Float(f),
        ValueRef::Bool(b) => Val::Bool(b),
    }
}

/// The value of `attr` for this record; computed text goes into `slot`.
fn lookup<'v>(
    attr: &Attr,
    ctx: &'v RecordContext<'_>,
    clock: &mut Clock,
    slot: &'v mut String,
) -> Result<Val<'v>, FormatError> {
    let r: &'v RecordView<'_> = ctx.record;
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
            clock.asctime(created(r), slot)?;
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

fn render_field(
    field: &Field,
    ctx: &RecordContext<'_>,
    clock: &mut Clock,
    slots: &mut Slots,
    work: &mut Work,
    out: &mut Vec<u8>,
) -> Result<(), FormatError> {
    if let Some(done) = fast_path(field, ctx, clock, out) {
        return done;
    }
    let value = lookup(&field.attr, ctx, clock, &mut slots.value)?;
    match &field.render {
        Render::Plain => {
            write_plain(out, value, work);
            Ok(())
        }
        Render::Printf(p) => printf(out, value, p, work).map_err(FormatError::Conversion),
        Render::Brace { conv, spec: BraceSpec::Fixed(spec) } => {
            brace(out, value, *conv, spec, work).map_err(FormatError::Conversion)
        }
        Render::Brace { conv, spec: BraceSpec::Nested(parts) } => {
            // Python looks the field up first, then expands its spec.
            slots.spec.clear();
            for part in parts {
                match part {
                    SpecPart::Lit(text) => slots.spec.push_str(text),
                    SpecPart::Field(attr) => {
                        let v = lookup(attr, ctx, clock, &mut slots.nested)?;
                        push_str_val(&mut slots.spec, &mut work.raw, v);
                    }
                }
            }
            if conv.is_none() && matches!(value, Val::None) && !slots.spec.is_empty() {
                // object.__format__ refuses any spec before reading it.
                return Err(FormatError::Conversion(NONE_FORMAT.into()));
            }
            let type_name = if conv.is_some() { "str" } else { value.type_name() };
            let spec = parse_spec(&slots.spec, type_name).map_err(FormatError::Conversion)?;
            brace(out, value, *conv, &spec, work).map_err(FormatError::Conversion)
        }
    }
}

/// The common fields of common formats (`%(asctime)s`, `%(levelname)-8s`,
/// `%(process)d`, `{message}`, …) written straight into `out`: the same
/// bytes as the general path below, without its intermediate buffers.
/// `None` when the general path must run.
fn fast_path(
    field: &Field,
    ctx: &RecordContext<'_>,
    clock: &mut Clock,
    out: &mut Vec<u8>,
) -> Option<Result<(), FormatError>> {
    // Only plain `s`/`d` conversions with at most a width (`%(x)s`,
    // `%(x)-8s`, `%(x)d`, `{x}`, `$x`).
    let (left, width, int) = match &field.render {
        Render::Plain => (false, 0, false),
        Render::Printf(p) if !p.plus && !p.space && !p.alt && !p.zero && p.precision.is_none() => {
            match p.conv {
                's' => (p.left, p.width, false),
                'd' | 'i' | 'u' => (p.left, p.width, true),
                _ => return None,
            }
        }
        _ => return None,
    };
    let r = ctx.record;
    let text: &str = match (&field.attr, int) {
        (Attr::Asctime, false) if width == 0 => return Some(clock.asctime_ns_into(r.created_ns, out)),
        (Attr::Name, false) => r.name,
        (Attr::Msg | Attr::Message, false) => r.message,
        (Attr::Levelname, false) => match level_name(r.levelno) {
            Cow::Borrowed(name) => name,
            Cow::Owned(_) => return None,
        },
        (Attr::ProcessName, false) => r.process_name.unwrap_or(ctx.process_name),
        (Attr::Process | Attr::Thread | Attr::Lineno | Attr::Levelno, _) => {
            let n: u64 = match field.attr {
                Attr::Process => r.process.into(),
                Attr::Thread => r.thread,
                Attr::Lineno => r.lineno.into(),
                _ => r.levelno.into(),
            };
            let mut buf = [0u8; 20];
            let digits = push_u64(&mut buf, n);
            // ASCII digits: bytes are characters.
            let total = width.saturating_sub(digits.len());
            if !left {
                out.resize(out.len() + total, b' ');
            }
            append_short(out, digits);
            if left {
                out.resize(out.len() + total, b' ');
            }
            return Some(Ok(()));
        }
        _ => return None,
    };
    if int {
        return None;
    }
    if width == 0 {
        append_short(out, text.as_bytes());
    } else {
        pad_str(out, text, Pad { fill: ' ', align: if left { '<' } else { '>' }, width });
    }
    Some(Ok(()))
}

/// The decimal digits of `n`, written at the end of `buf`.
fn push_u64(buf: &mut [u8; 20], mut n: u64) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

// ---------------------------------------------------------------------------
// Rendering

fn write_plain(out: &mut Vec<u8>, value: Val<'_>, work: &mut Work) {
    match value {
        Val::Str(s) => out.extend_from_slice(s.as_bytes()),
        Val::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Val::Float(x) => {
            work.num.clear();
            push_float_str(&mut work.num, &mut work.raw, x);
            out.extend_from_slice(work.num.as_bytes());
        }
        Val::Bool(b) => out.extend_from_slice(if b { b"True" } else { b"False" }),
        Val::None => out.extend_from_slice(b"None"),
    }
}

/// `str(value)`.
fn push_str_val(dst: &mut String, raw: &mut String, value: Val<'_>) {
    match value {
        Val::Str(s) => dst.push_str(s),
        Val::Int(i) => {
            let _ = write!(dst, "{i}");
        }
        Val::Float(x) => push_float_str(dst, raw, x),
        Val::Bool(b) => dst.push_str(if b { "True" } else { "False" }),
        Val::None => dst.push_str("None"),
    }
}

/// `repr(value)`, or `ascii(value)`.
fn push_repr_val(dst: &mut String, raw: &mut String, value: Val<'_>, ascii: bool) {
    match value {
        Val::Str(s) => push_py_repr(dst, s, ascii),
        other => push_str_val(dst, raw, other),
    }
}

/// Python's `repr(str)` (or `ascii(str)`), for Unicode 14.0 as in 3.11.
fn push_py_repr(dst: &mut String, s: &str, ascii: bool) {
    let quote = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
    dst.push(quote);
    for c in s.chars() {
        let n = c as u32;
        match c {
            '\\' => dst.push_str("\\\\"),
            '\t' => dst.push_str("\\t"),
            '\n' => dst.push_str("\\n"),
            '\r' => dst.push_str("\\r"),
            _ if c == quote => {
                dst.push('\\');
                dst.push(c);
            }
            _ if n < 0x20 || n == 0x7f => {
                let _ = write!(dst, "\\x{n:02x}");
            }
            _ if n < 0x7f || (!ascii && is_printable(c)) => dst.push(c),
            _ if n <= 0xff => {
                let _ = write!(dst, "\\x{n:02x}");
            }
            _ if n <= 0xffff => {
                let _ = write!(dst, "\\u{n:04x}");
            }
            _ => {
                let _ = write!(dst, "\\U{n:08x}");
            }
        }
    }
    dst.push(quote);
}

/// `repr(s)` as a new string, for messages.
fn py_repr(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_py_repr(&mut out, s, false);
    out
}

/// Python's `str.isprintable()` for one non-ASCII character.
fn is_printable(c: char) -> bool {
    let n = c as u32;
    // NON_PRINTABLE holds sorted inclusive ranges as flat start, end pairs.
    let pairs = NON_PRINTABLE.len() / 2;
    let (mut lo, mut hi) = (0, pairs);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if NON_PRINTABLE[2 * mid] <= n {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo == 0 || n > NON_PRINTABLE[2 * (lo - 1) + 1]
}

/// Padding for a rendered value.
#[derive(Debug, Clone, Copy)]
struct Pad {
    fill: char,
    align: char,
    width: usize,
}

fn push_fill(out: &mut Vec<u8>, fill: char, count: usize) {
    if fill == ' ' {
        out.resize(out.len() + count, b' ');
        return;
    }
    let mut buf = [0u8; 4];
    let bytes = fill.encode_utf8(&mut buf).as_bytes();
    for _ in 0..count {
        out.extend_from_slice(bytes);
    }
}

fn truncate_chars(s: &str, precision: Option<usize>) -> &str {
    match precision.and_then(|p| s.char_indices().nth(p)) {
        Some((end, _)) => &s[..end],
        None => s,
    }
}

/// Pads text (width counts characters, as Python's does).
fn pad_str(out: &mut Vec<u8>, s: &str, pad: Pad) {
    let len = if pad.width == 0 { 0 } else { s.chars().count() };
    let total = pad.width.saturating_sub(len);
    let left = match pad.align {
        '>' => total,
        '^' => total / 2,
        _ => 0,
    };
    push_fill(out, pad.fill, left);
    append_short(out, s.as_bytes());
    push_fill(out, pad.fill, total - left);
}

/// A number split the way Python lays it out: sign, prefix (`0x`), the
/// integer digits (which grouping applies to), and the rest.
struct Num<'a> {
    sign: &'static str,
    prefix: &'static str,
    digits: &'a str,
    rest: &'a str,
}

fn emit_number(
    out: &mut Vec<u8>,
    n: Num<'_>,
    pad: Pad,
    grouping: Option<(u8, usize)>,
    grouped: &mut Vec<u8>,
) {
    let fixed = n.sign.len() + n.prefix.len() + n.rest.chars().count();
    let body: &[u8] = match grouping {
        Some((sep, size)) if !n.digits.is_empty() => {
            // With '0' fill and '=' alignment Python groups the padding zeros
            // too ("00,001,234").
            let min_width =
                if pad.fill == '0' && pad.align == '=' { pad.width as isize - fixed as isize } else { 0 };
            group_digits(grouped, n.digits.as_bytes(), sep, size, min_width);
            grouped
        }
        _ => n.digits.as_bytes(),
    };
    let body_chars = if body.is_ascii() { body.len() } else { String::from_utf8_lossy(body).chars().count() };
    let total = pad.width.saturating_sub(fixed + body_chars);
    let (left, middle, right) = match pad.align {
        '<' => (0, 0, total),
        '^' => (total / 2, 0, total - total / 2),
        '=' => (0, total, 0),
        _ => (total, 0, 0),
    };
    push_fill(out, pad.fill, left);
    out.extend_from_slice(n.sign.as_bytes());
    out.extend_from_slice(n.prefix.as_bytes());
    push_fill(out, pad.fill, middle);
    out.extend_from_slice(body);
    out.extend_from_slice(n.rest.as_bytes());
    push_fill(out, pad.fill, right);
}

/// Inserts thousands separators as CPython's InsertThousandsGrouping does,
/// zero-filling to `min_width` characters.
fn group_digits(dst: &mut Vec<u8>, digits: &[u8], sep: u8, size: usize, min_width: isize) {
    dst.clear();
    let size = size as isize;
    let mut remaining = digits.len() as isize;
    let mut min_width = min_width;
    let mut pos = digits.len();
    let mut first = true;
    // Built right to left, then reversed.
    loop {
        let len = size.min(remaining.max(min_width).max(1));
        let zeros = (len - remaining).max(0);
        let chars = remaining.min(len).max(0);
        if !first {
            dst.push(sep);
        }
        first = false;
        for _ in 0..chars {
            pos -= 1;
            dst.push(digits[pos]);
        }
        dst.extend(std::iter::repeat_n(b'0', zeros as usize));
        remaining -= chars;
        min_width -= len;
        if remaining <= 0 && min_width <= 0 {
            break;
        }
        min_width -= 1;
    }
    dst.reverse();
}

fn push_radix(dst: &mut String, n: u128, conv: char) {
    let _ = match conv {
        'o' => write!(dst, "{n:o}"),
        'x' => write!(dst, "{n:x}"),
        'X' => write!(dst, "{n:X}"),
        'b' => write!(dst, "{n:b}"),
        _ => write!(dst, "{n}"),
    };
}

fn sign_str(negative: bool, plus: bool, space: bool) -> &'static str {
    if negative {
        "-"
    } else if plus {
        "+"
    } else if space {
        " "
    } else {
        ""
    }
}

fn alt_prefix(conv: char) -> &'static str {
    match conv {
        'b' => "0b",
        'o' => "0o",
        'x' => "0x",
        'X' => "0X",
        _ => "",
    }
}

/// The character `%c` or `{:c}` makes of `n`. A surrogate is a valid
/// Python character that only fails when the handler encodes the line; it
/// is written as U+FFFD here and remembered in `work`, so that the record
/// fails with Python's error only if nothing else fails first.
fn code_point(n: i128, work: &mut Work, at: usize) -> Result<char, String> {
    if !(0..0x110000).contains(&n) {
        return Err("%c arg not in range(0x110000)".into());
    }
    Ok(char::from_u32(n as u32).unwrap_or_else(|| {
        work.surrogate.get_or_insert((n as u32, at));
        char::REPLACEMENT_CHARACTER
    }))
}

/// The decimal digits of `int(x)` (`x` finite), and whether it is negative.
fn push_float_int(dst: &mut String, x: f64) -> bool {
    let t = x.trunc();
    let a = t.abs();
    if a < 1e38 {
        let _ = write!(dst, "{}", a as u128);
    } else {
        // Beyond u128: mantissa * 2^shift in base 1e9 limbs (rare, so slow).
        let bits = a.to_bits();
        let shift = ((bits >> 52) & 0x7ff) as u32 - 1075;
        let mantissa = (bits & ((1 << 52) - 1)) | (1 << 52);
        const BASE: u64 = 1_000_000_000;
        let mut limbs = vec![mantissa % BASE, mantissa / BASE % BASE, mantissa / BASE / BASE];
        for _ in 0..shift {
            let mut carry = 0;
            for limb in &mut limbs {
                let v = *limb * 2 + carry;
                *limb = v % BASE;
                carry = v / BASE;
            }
            if carry > 0 {
                limbs.push(carry);
            }
        }
        while limbs.len() > 1 && limbs.last() == Some(&0) {
            limbs.pop();
        }
        let mut iter = limbs.iter().rev();
        if let Some(top) = iter.next() {
            let _ = write!(dst, "{top}");
        }
        for limb in iter {
            let _ = write!(dst, "{limb:09}");
        }
    }
    t < 0.0
}

/// One `%`-style conversion.
fn printf(out: &mut Vec<u8>, value: Val<'_>, p: &Printf, work: &mut Work) -> Result<(), String> {
    let text_pad = Pad { fill: ' ', align: if p.left { '<' } else { '>' }, width: p.width };
    let num_pad = Pad {
        fill: if p.zero && !p.left { '0' } else { ' ' },
        align: if p.left {
            '<'
        } else if p.zero {
            '='
        } else {
            '>'
        },
        width: p.width,
    };
    match p.conv {
        's' | 'r' | 'a' => {
            let text = match (p.conv, value) {
                ('s', Val::Str(s)) => s,
                _ => {
                    work.text.clear();
                    if p.conv == 's' {
                        push_str_val(&mut work.text, &mut work.raw, value);
                    } else {
                        push_repr_val(&mut work.text, &mut work.raw, value, p.conv == 'a');
                    }
                    &work.text
                }
            };
            pad_str(out, truncate_chars(text, p.precision), text_pad);
        }
        'c' => {
            let c = match value {
                Val::Str(s) => {
                    let mut chars = s.chars();
                    match (chars.next(), chars.next()) {
                        (Some(c), None) => c,
                        _ => return Err("%c requires int or char".into()),
                    }
                }
                Val::Int(i) => code_point(i, work, out.len())?,
                Val::Bool(b) => code_point(b.into(), work, out.len())?,
                _ => return Err("%c requires int or char".into()),
            };
            let mut buf = [0u8; 4];
            pad_str(out, c.encode_utf8(&mut buf), text_pad);
        }
        'd' | 'i' | 'u' | 'o' | 'x' | 'X' => {
            check_precision(p.precision)?;
            work.raw.clear();
            let decimal = matches!(p.conv, 'd' | 'i' | 'u');
            let negative = match value {
                Val::Int(i) => {
                    push_radix(&mut work.raw, i.unsigned_abs(), p.conv);
                    i < 0
                }
                Val::Bool(b) => {
                    push_radix(&mut work.raw, b.into(), p.conv);
                    false
                }
                Val::Float(x) if decimal => {
                    if x.is_nan() {
                        return Err("cannot convert float NaN to integer".into());
                    }
                    if x.is_infinite() {
                        return Err("cannot convert float infinity to integer".into());
                    }
                    push_float_int(&mut work.raw, x)
                }
                _ if decimal => {
                    return Err(format!(
                        "%{} format: a real number is required, not {}",
                        p.conv,
                        value.type_name()
                    ));
                }
                _ => {
                    return Err(format!(
                        "%{} format: an integer is required, not {}",
                        p.conv,
                        value.type_name()
                    ));
                }
            };
            // A precision is a minimum digit count.
            work.num.clear();
            for _ in work.raw.len()..p.precision.unwrap_or(0) {
                work.num.push('0');
            }
            work.num.push_str(&work.raw);
            let n = Num {
                sign: sign_str(negative, p.plus, p.space),
                prefix: if p.alt { alt_prefix(p.conv) } else { "" },
                digits: &work.num,
                rest: "",
            };
            emit_number(out, n, num_pad, None, &mut work.grouped);
        }
        _ => {
            check_precision(p.precision)?;
            let x = match value {
                Val::Float(x) => x,
                Val::Int(i) => i as f64,
                Val::Bool(b) => f64::from(u8::from(b)),
                _ => return Err(format!("must be real number, not {}", value.type_name())),
            };
            let style = FloatFmt {
                mode: p.conv.to_ascii_lowercase(),
                prec: p.precision.unwrap_or(6),
                alt: p.alt,
                add_dot_0: false,
                upper: p.conv.is_ascii_uppercase(),
            };
            emit_float(out, x, style, sign_str(is_neg(x), p.plus, p.space), num_pad, None, work);
        }
    }
    Ok(())
}

/// One `{`-style field: `format(value, spec)`, after `!r`/`!s`/`!a`.
fn brace(
    out: &mut Vec<u8>,
    value: Val<'_>,
    conv: Option<Conv>,
    spec: &Spec,
    work: &mut Work,
) -> Result<(), String> {
    if let Some(conv) = conv {
        work.text.clear();
        match conv {
            Conv::Str => push_str_val(&mut work.text, &mut work.raw, value),
            Conv::Repr => push_repr_val(&mut work.text, &mut work.raw, value, false),
            Conv::Ascii => push_repr_val(&mut work.text, &mut work.raw, value, true),
        }
        return brace_str(out, &work.text, spec);
    }
    match value {
        Val::Str(s) => brace_str(out, s, spec),
        Val::None if spec.empty => {
            out.extend_from_slice(b"None");
            Ok(())
        }
        Val::None => Err(NONE_FORMAT.into()),
        // bool.__format__ is str() for an empty spec, int.__format__ otherwise.
        Val::Bool(b) if spec.empty => {
            out.extend_from_slice(if b { b"True" } else { b"False" });
            Ok(())
        }
        Val::Bool(b) => brace_int(out, b.into(), "bool", spec, work),
        Val::Int(i) => brace_int(out, i, "int", spec, work),
        Val::Float(x) => brace_float(out, x, spec.ty, spec, work),
    }
}

/// `format(None, spec)` with a non-empty spec.
const NONE_FORMAT: &str = "unsupported format string passed to NoneType.__format__";

fn unknown_code(ty: char, type_name: &str) -> String {
    if ty > ' ' && ty < '\x7f' {
        format!("Unknown format code '{ty}' for object of type '{type_name}'")
    } else {
        format!("Unknown format code '\\x{:x}' for object of type '{type_name}'", ty as u32)
    }
}

/// Which separator and group size `grouping` means for `ty` (the type after
/// defaulting), or Python's complaint.
fn check_grouping(grouping: Option<char>, ty: char) -> Result<Option<(u8, usize)>, String> {
    let Some(sep) = grouping else { return Ok(None) };
    match ty {
        'd' | 'e' | 'f' | 'g' | 'E' | 'G' | '%' | 'F' | '\0' => Ok(Some((sep as u8, 3))),
        'b' | 'o' | 'x' | 'X' if sep == '_' => Ok(Some((b'_', 4))),
        _ => Err(format!("Cannot specify '{sep}' with '{ty}'.")),
    }
}

fn brace_str(out: &mut Vec<u8>, s: &str, spec: &Spec) -> Result<(), String> {
    let ty = spec.ty.unwrap_or('s');
    check_grouping(spec.grouping, ty)?;
    if ty != 's' {
        return Err(unknown_code(ty, "str"));
    }
    match spec.sign {
        Some(' ') => return Err("Space not allowed in string format specifier".into()),
        Some(_) => return Err("Sign not allowed in string format specifier".into()),
        None => {}
    }
    if spec.alt {
        return Err("Alternate form (#) not allowed in string format specifier".into());
    }
    let align = spec.align.unwrap_or('<');
    if align == '=' {
        return Err("'=' alignment not allowed in string format specifier".into());
    }
    let pad = Pad { fill: spec.fill.unwrap_or(if spec.zero { '0' } else { ' ' }), align, width: spec.width };
    pad_str(out, truncate_chars(s, spec.precision), pad);
    Ok(())
}

fn brace_int(
    out: &mut Vec<u8>,
    i: i128,
    type_name: &str,
    spec: &Spec,
    work: &mut Work,
) -> Result<(), String> {
    let ty = spec.ty.unwrap_or('d');
    let grouping = check_grouping(spec.grouping, ty)?;
    match ty {
        'b' | 'c' | 'd' | 'o' | 'x' | 'X' | 'n' => {}
        'e' | 'E' | 'f' | 'F' | 'g' | 'G' | '%' => {
            return brace_float(out, i as f64, Some(ty), spec, work);
        }
        _ => return Err(unknown_code(ty, type_name)),
    }
    if spec.precision.is_some() {
        return Err("Precision not allowed in integer format specifier".into());
    }
    work.num.clear();
    let (sign, prefix) = if ty == 'c' {
        if spec.sign.is_some() {
            return Err("Sign not allowed with integer format specifier 'c'".into());
        }
        if spec.alt {
            return Err("Alternate form (#) not allowed with integer format specifier 'c'".into());
        }
        // int.__format__ goes through a C long first.
        if i64::try_from(i).is_err() {
            return Err("Python int too large to convert to C long".into());
        }
        let c = code_point(i, work, out.len())?;
        work.num.push(c);
        ("", "")
    } else {
        push_radix(&mut work.num, i.unsigned_abs(), ty);
        (
            sign_str(i < 0, spec.sign == Some('+'), spec.sign == Some(' ')),
            if spec.alt { alt_prefix(ty) } else { "" },
        )
    };
    let n = Num { sign, prefix, digits: &work.num, rest: "" };
    emit_number(out, n, spec.numeric_pad(), grouping, &mut work.grouped);
    Ok(())
}

fn brace_float(
    out: &mut Vec<u8>,
    x: f64,
    ty: Option<char>,
    spec: &Spec,
    work: &mut Work,
) -> Result<(), String> {
    let grouping = check_grouping(spec.grouping, ty.unwrap_or('\0'))?;
    check_precision(spec.precision)?;
    let (mode, add_dot_0) = match ty {
        // No type: repr(), or 'g' that keeps a ".0" when given a precision.
        None if spec.precision.is_some() => ('g', true),
        None => ('r', true),
        Some('n') => ('g', false),
        Some(t @ ('e' | 'E' | 'f' | 'F' | 'g' | 'G' | '%')) => (t.to_ascii_lowercase(), false),
        Some(t) => return Err(unknown_code(t, "float")),
    };
    let style = FloatFmt {
        mode,
        prec: spec.precision.unwrap_or(6),
        alt: spec.alt,
        add_dot_0,
        upper: ty.is_some_and(|t| t.is_ascii_uppercase()),
    };
    let sign = sign_str(is_neg(x), spec.sign == Some('+'), spec.sign == Some(' '));
    emit_float(out, x, style, sign, spec.numeric_pad(), grouping, work);
    Ok(())
}

fn emit_float(
    out: &mut Vec<u8>,
    x: f64,
    style: FloatFmt,
    sign: &'static str,
    pad: Pad,
    grouping: Option<(u8, usize)>,
    work: &mut Work,
) {
    work.num.clear();
    float_body(&mut work.num, &mut work.raw, x, style);
    let int_len = work.num.bytes().take_while(u8::is_ascii_digit).count();
    let n = Num { sign, prefix: "", digits: &work.num[..int_len], rest: &work.num[int_len..] };
    emit_number(out, n, pad, grouping, &mut work.grouped);
}

// ---------------------------------------------------------------------------
// Floats, as CPython's PyOS_double_to_string

/// How to render a float: `mode` is 'e', 'f', 'g', '%' or 'r' (repr).
#[derive(Debug, Clone, Copy)]
struct FloatFmt {
    mode: char,
    prec: usize,
    alt: bool,
    /// Keep ".0" on integral fixed-point results (repr, and `{:.3}`).
    add_dot_0: bool,
    upper: bool,
}

const REPR: FloatFmt = FloatFmt { mode: 'r', prec: 0, alt: false, add_dot_0: true, upper: false };

/// Digits after the point that hold all of a double's exact decimal value
/// (at most 1074 fractional, 767 significant); beyond them `layout_digits`
/// or the fixed-point path pads zeros. Rust's formatter refuses precisions
/// above 65535, which Python formats.
const EXACT_DIGITS: usize = 1100;

/// Python never shows a sign on NaN.
fn is_neg(x: f64) -> bool {
    x.is_sign_negative() && !x.is_nan()
}

/// Python's `str(x)` of a float, for other output than format strings
/// (syslog's structured data).
pub fn python_float_str(x: f64) -> String {
    let (mut dst, mut raw) = (String::new(), String::new());
    push_float_str(&mut dst, &mut raw, x);
    dst
}

/// `str(x)` / `repr(x)`.
fn push_float_str(dst: &mut String, raw: &mut String, x: f64) {
    if is_neg(x) {
        dst.push('-');
    }
    float_body(dst, raw, x, REPR);
}

/// Writes `|x|` formatted (no sign).
fn float_body(dst: &mut String, raw: &mut String, x: f64, f: FloatFmt) {
    let a = x.abs();
    if !a.is_finite() {
        dst.push_str(match (a.is_nan(), f.upper) {
            (true, false) => "nan",
            (true, true) => "NAN",
            (false, false) => "inf",
            (false, true) => "INF",
        });
        if f.mode == '%' {
            dst.push('%');
        }
        return;
    }
    raw.clear();
    match f.mode {
        'f' | '%' => {
            // Rust's fixed-point output is exact and rounds half to even on
            // the exact binary value, as CPython's dtoa does.
            let v = if f.mode == '%' { a * 100.0 } else { a };
            let _ = write!(dst, "{:.*}", f.prec.min(EXACT_DIGITS), v);
            // Past every digit a double has, only zeros follow.
            dst.extend(std::iter::repeat_n('0', f.prec.saturating_sub(EXACT_DIGITS)));
            if f.alt && f.prec == 0 {
                dst.push('.');
            }
            if f.mode == '%' {
                dst.push('%');
            }
        }
        'e' => {
            let _ = write!(raw, "{:.*e}", f.prec.min(EXACT_DIGITS), a);
            let decpt = split_digits(raw);
            layout_digits(dst, raw, decpt, true, f.prec as i64 + 1, f);
        }
        'g' => {
            let p = f.prec.max(1);
            let _ = write!(raw, "{:.*e}", (p - 1).min(EXACT_DIGITS), a);
            let decpt = split_digits(raw);
            let limit = if f.add_dot_0 { p as i64 - 1 } else { p as i64 };
            let use_exp = decpt <= -4 || decpt > limit;
            let end = if f.alt { p as i64 } else { raw.len() as i64 };
            layout_digits(dst, raw, decpt, use_exp, end, f);
        }
        _ => {
            // Shortest round-trip digits, like repr().
            shortest_digits(raw, dst, a);
            let decpt = split_digits(raw);
            let use_exp = decpt <= -4 || decpt > 16;
            layout_digits(dst, raw, decpt, use_exp, raw.len() as i64, f);
        }
    }
}

/// The shortest digits that read back as `a`, in Rust's `d.ddde±x` form,
/// as `repr()` chooses them: among the shortest strings that round-trip,
/// the one nearest to `a`, and on a tie the even one. Rust's shortest form
/// rounds such ties up (`662936471232937.25` gives `…7.3`, Python `…7.2`);
/// the correctly rounded form of the same length (Rust's exact formatting
/// rounds half to even, as CPython's dtoa) is used instead whenever it also
/// reads back as `a`. `scratch` is borrowed and left as it was.
fn shortest_digits(raw: &mut String, scratch: &mut String, a: f64) {
    let _ = write!(raw, "{a:e}");
    let mantissa = raw.find('e').unwrap_or(raw.len());
    let digits = raw[..mantissa].bytes().filter(u8::is_ascii_digit).count();
    let mark = scratch.len();
    let _ = write!(scratch, "{:.*e}", digits.saturating_sub(1), a);
    if scratch[mark..] != raw[..] && scratch[mark..].parse::<f64>() == Ok(a) {
        raw.clear();
        raw.push_str(&scratch[mark..]);
    }
    scratch.truncate(mark);
}

/// Turns Rust's `d.ddde±x` in `raw` into bare significant digits (trailing
/// zeros dropped) and returns the decimal point position (`x + 1`).
fn split_digits(raw: &mut String) -> i64 {
    let e = raw.find('e').unwrap_or(raw.len());
    let exp: i64 = raw[e + 1..].parse().unwrap_or(0);
    raw.truncate(e);
    if raw.as_bytes().get(1) == Some(&b'.') {
        raw.remove(1);
    }
    while raw.len() > 1 && raw.ends_with('0') {
        raw.pop();
    }
    exp + 1
}

/// Lays out `digits` with the decimal point at `decpt`, zero-padded to
/// `end` digit positions, as PyOS_double_to_string's format_float_short.
fn layout_digits(dst: &mut String, digits: &str, decpt: i64, use_exp: bool, end: i64, f: FloatFmt) {
    let d = digits.as_bytes();
    let n = d.len() as i64;
    let (decpt, exp) = if use_exp { (1, decpt - 1) } else { (decpt, 0) };
    let start = if decpt <= 0 { decpt - 1 } else { 0 };
    let end = if !use_exp && f.add_dot_0 { end.max(decpt + 1) } else { end.max(decpt) };
    for k in start..end {
        if k == decpt {
            dst.push('.');
        }
        dst.push(if (0..n).contains(&k) { d[k as usize] as char } else { '0' });
    }
    if decpt == end {
        dst.push('.');
    }
    if !f.alt && dst.ends_with('.') {
        dst.pop();
    }
    if use_exp {
        dst.push(if f.upper { 'E' } else { 'e' });
        let _ = write!(dst, "{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
}

// ---------------------------------------------------------------------------
// Time

/// A validated `datefmt`.
#[derive(Debug, Clone)]
struct DateFmt {
    #[cfg(unix)]
    c: std::ffi::CString,
    #[cfg(unix)]
    chars: usize,
    #[cfg(not(unix))]
    text: String,
}

impl DateFmt {
    fn new(datefmt: &str) -> Result<DateFmt, FormatError> {
        let bad = |reason: &str| FormatError::BadDateFormat {
            datefmt: datefmt.to_owned(),
            reason: reason.to_owned(),
        };
        #[cfg(unix)]
        {
            let c = std::ffi::CString::new(datefmt).map_err(|_| bad("embedded null character"))?;
            Ok(DateFmt { c, chars: datefmt.chars().count() })
        }
        #[cfg(not(unix))]
        {
            if !portable_time::valid(datefmt) {
                return Err(bad("not a valid strftime format"));
            }
            Ok(DateFmt { text: datefmt.to_owned() })
        }
    }
}

/// Appends `,mmm` (default_msec_format's `%s,%03d` suffix) for 0–999 ms.
#[inline]
fn push_msecs(out: &mut Vec<u8>, ms: u32) {
    out.extend_from_slice(&[
        b',',
        b'0' + (ms / 100) as u8,
        b'0' + (ms / 10 % 10) as u8,
        b'0' + (ms % 10) as u8,
    ]);
}

/// `formatTime`, with the calendar part cached per second.
#[derive(Debug, Clone)]
struct Clock {
    utc: bool,
    datefmt: Option<DateFmt>,
    /// The second `text` was rendered for.
    second: Option<i64>,
    text: String,
}

impl Clock {
    /// The date text of `created`'s second, rendered once per second.
    fn second_text(&mut self, created: f64) -> Result<&str, FormatError> {
        // time.localtime(float) floors to whole seconds.
        let floor = floor(created);
        if !(-9.2e18..9.2e18).contains(&floor) {
            return Err(FormatError::TimeOutOfRange(created));
        }
        let second = floor as i64;
        if self.second != Some(second) {
            self.second = None;
            self.text.clear();
            if !self.render(second) {
                return Err(FormatError::TimeOutOfRange(created));
            }
            self.second = Some(second);
        }
        Ok(&self.text)
    }

    /// Appends asctime for `created` (float seconds) to `dst`.
    fn asctime(&mut self, created: f64, dst: &mut String) -> Result<(), FormatError> {
        dst.push_str(self.second_text(created)?);
        if self.datefmt.is_none() {
            // default_msec_format '%s,%03d'
            let _ = write!(dst, ",{:03}", msecs(created) as i64);
        }
        Ok(())
    }

    /// [`Clock::asctime_into`] for a record's `created_ns`. Most records
    /// fall in the second already rendered and well inside a millisecond:
    /// then the second and the milliseconds are whole-number divisions,
    /// which give what Python's float arithmetic gives (its rounding error
    /// stays under 3 µs for any `i64` of nanoseconds, and the margins are
    /// 10 µs), without the float path's chain of conversions. Everything
    /// else, and any time before 1970, takes the float path.
    fn asctime_ns_into(&mut self, created_ns: i64, out: &mut Vec<u8>) -> Result<(), FormatError> {
        const MARGIN: i64 = 10_000;
        let (second, ns) = (created_ns.div_euclid(1_000_000_000), created_ns.rem_euclid(1_000_000_000));
        // Before 1970 Python's milliseconds are negative (int() truncates
        // toward zero): the float path writes those.
        if self.second == Some(second)
            && created_ns >= 0
            && self.datefmt.is_none()
            && (MARGIN..1_000_000 - MARGIN).contains(&(ns % 1_000_000))
        {
            append_short(out, self.text.as_bytes());
            push_msecs(out, (ns / 1_000_000) as u32);
            return Ok(());
        }
        self.asctime_into(created_ns as f64 / 1e9, out)
    }

    /// [`Clock::asctime`] appended straight to a byte buffer.
    fn asctime_into(&mut self, created: f64, out: &mut Vec<u8>) -> Result<(), FormatError> {
        append_short(out, self.second_text(created)?.as_bytes());
        if self.datefmt.is_none() {
            let ms = msecs(created) as i64;
            if (0..1000).contains(&ms) {
                push_msecs(out, ms as u32);
            } else {
                let _ = write!(out, ",{ms:03}");
            }
        }
        Ok(())
    }

    #[cfg(unix)]
    fn render(&mut self, second: i64) -> bool {
        let (fmt, chars) = match &self.datefmt {
            Some(d) => (d.c.as_c_str(), d.chars),
            None => (c"%Y-%m-%d %H:%M:%S", DEFAULT_TIME_FORMAT.len()),
        };
        unix_time::strftime(second, self.utc, fmt, chars, &mut self.text)
    }

    #[cfg(not(unix))]
    fn render(&mut self, second: i64) -> bool {
        let fmt = self.datefmt.as_ref().map_or(DEFAULT_TIME_FORMAT, |d| &d.text);
        portable_time::strftime(second, self.utc, fmt, &mut self.text)
    }
}

/// The C library's calendar conversion and strftime: what CPython calls, so
/// TZ handling and every directive (`%f` stays literal) match exactly.
#[cfg(unix)]
pub mod unix_time {
    use std::ffi::CStr;

    /// `time.gmtime(second)` or `time.localtime(second)`.
    pub fn broken_down(second: i64, utc: bool) -> Option<libc::tm> {
        // time_t is narrower than i64 on some targets.
        #[allow(irrefutable_let_patterns)]
        let Ok(t) = libc::time_t::try_from(second) else {
            return None;
        };
        // SAFETY: `tm` is plain data; the reentrant conversions only write to it.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        let converted =
            unsafe { if utc { libc::gmtime_r(&t, &mut tm) } else { libc::localtime_r(&t, &mut tm) } };
        (!converted.is_null()).then_some(tm)
    }

    pub(crate) fn strftime(second: i64, utc: bool, fmt: &CStr, fmt_chars: usize, dst: &mut String) -> bool {
        let Some(tm) = broken_down(second, utc) else { return false };
        strftime_tm(&tm, fmt, fmt_chars, dst);
        true
    }

    /// `time.strftime(fmt, tm)`.
    pub fn strftime_tm(tm: &libc::tm, fmt: &CStr, fmt_chars: usize, dst: &mut String) {
        // Like time.strftime: grow the buffer until the result is non-empty
        // or the buffer is 256 times the format's length.
        let mut buf: Vec<u8> = Vec::new();
        let mut size = 1024;
        loop {
            buf.resize(size, 0);
            // SAFETY: `buf` has `size` writable bytes, `fmt` is NUL-terminated
            // and `tm` is a filled-in broken-down time.
            let n = unsafe { libc::strftime(buf.as_mut_ptr().cast(), size, fmt.as_ptr(), tm) };
            if n > 0 || size >= 256 * fmt_chars {
                buf.truncate(n);
                break;
            }
            size *= 2;
        }
        dst.push_str(&String::from_utf8_lossy(&buf));
    }
}

/// chrono's conversion and strftime, for targets without a C strftime
/// binding (compiled in tests everywhere to keep it honest).
#[cfg(any(not(unix), test))]
mod portable_time {
    use std::fmt::Write as _;

    use chrono::format::{Item, StrftimeItems};
    use chrono::{Local, TimeZone, Utc};

    pub(super) fn valid(datefmt: &str) -> bool {
        !StrftimeItems::new(datefmt).any(|item| matches!(item, Item::Error))
    }

    pub(super) fn strftime(second: i64, utc: bool, fmt: &str, dst: &mut String) -> bool {
        let written = if utc {
            Utc.timestamp_opt(second, 0).single().map(|t| write!(dst, "{}", t.format(fmt)))
        } else {
            Local.timestamp_opt(second, 0).single().map(|t| write!(dst, "{}", t.format(fmt)))
        };
        matches!(written, Some(Ok(())))
    }
}

/// Inclusive ranges of non-ASCII code points that Python 3.11's
/// `str.isprintable()` rejects (Unicode 14.0: categories Cc, Cf, Co, Cn, Zl,
/// Zp and Zs), as flat start, end pairs; surrogates are folded in since a
/// Rust string never holds one. Generated with python3.11 from
/// `chr(c).isprintable()`.
#[rustfmt::skip]
static NON_PRINTABLE: &[u32] = &[
    0x80, 0xA0, 0xAD, 0xAD, 0x378, 0x379, 0x380, 0x383, 0x38B, 0x38B, 0x38D, 0x38D, 0x3A2, 0x3A2,
    0x530, 0x530, 0x557, 0x558, 0x58B, 0x58C, 0x590, 0x590, 0x5C8, 0x5CF, 0x5EB, 0x5EE,
    0x5F5, 0x605, 0x61C, 0x61C, 0x6DD, 0x6DD, 0x70E, 0x70F, 0x74B, 0x74C, 0x7B2, 0x7BF,
    0x7FB, 0x7FC, 0x82E, 0x82F, 0x83F, 0x83F, 0x85C, 0x85D, 0x85F, 0x85F, 0x86B, 0x86F,
    0x88F, 0x897, 0x8E2, 0x8E2, 0x984, 0x984, 0x98D, 0x98E, 0x991, 0x992, 0x9A9, 0x9A9,
    0x9B1, 0x9B1, 0x9B3, 0x9B5, 0x9BA, 0x9BB, 0x9C5, 0x9C6, 0x9C9, 0x9CA, 0x9CF, 0x9D6,
    0x9D8, 0x9DB, 0x9DE, 0x9DE, 0x9E4, 0x9E5, 0x9FF, 0xA00, 0xA04, 0xA04, 0xA0B, 0xA0E,
    0xA11, 0xA12, 0xA29, 0xA29, 0xA31, 0xA31, 0xA34, 0xA34, 0xA37, 0xA37, 0xA3A, 0xA3B,
    0xA3D, 0xA3D, 0xA43, 0xA46, 0xA49, 0xA4A, 0xA4E, 0xA50, 0xA52, 0xA58, 0xA5D, 0xA5D,
    0xA5F, 0xA65, 0xA77, 0xA80, 0xA84, 0xA84, 0xA8E, 0xA8E, 0xA92, 0xA92, 0xAA9, 0xAA9,
    0xAB1, 0xAB1, 0xAB4, 0xAB4, 0xABA, 0xABB, 0xAC6, 0xAC6, 0xACA, 0xACA, 0xACE, 0xACF,
    0xAD1, 0xADF, 0xAE4, 0xAE5, 0xAF2, 0xAF8, 0xB00, 0xB00, 0xB04, 0xB04, 0xB0D, 0xB0E,
    0xB11, 0xB12, 0xB29, 0xB29, 0xB31, 0xB31, 0xB34, 0xB34, 0xB3A, 0xB3B, 0xB45, 0xB46,
    0xB49, 0xB4A, 0xB4E, 0xB54, 0xB58, 0xB5B, 0xB5E, 0xB5E, 0xB64, 0xB65, 0xB78, 0xB81,
    0xB84, 0xB84, 0xB8B, 0xB8D, 0xB91, 0xB91, 0xB96, 0xB98, 0xB9B, 0xB9B, 0xB9D, 0xB9D,
    0xBA0, 0xBA2, 0xBA5, 0xBA7, 0xBAB, 0xBAD, 0xBBA, 0xBBD, 0xBC3, 0xBC5, 0xBC9, 0xBC9,
    0xBCE, 0xBCF, 0xBD1, 0xBD6, 0xBD8, 0xBE5, 0xBFB, 0xBFF, 0xC0D, 0xC0D, 0xC11, 0xC11,
    0xC29, 0xC29, 0xC3A, 0xC3B, 0xC45, 0xC45, 0xC49, 0xC49, 0xC4E, 0xC54, 0xC57, 0xC57,
    0xC5B, 0xC5C, 0xC5E, 0xC5F, 0xC64, 0xC65, 0xC70, 0xC76, 0xC8D, 0xC8D, 0xC91, 0xC91,
    0xCA9, 0xCA9, 0xCB4, 0xCB4, 0xCBA, 0xCBB, 0xCC5, 0xCC5, 0xCC9, 0xCC9, 0xCCE, 0xCD4,
    0xCD7, 0xCDC, 0xCDF, 0xCDF, 0xCE4, 0xCE5, 0xCF0, 0xCF0, 0xCF3, 0xCFF, 0xD0D, 0xD0D,
    0xD11, 0xD11, 0xD45, 0xD45, 0xD49, 0xD49, 0xD50, 0xD53, 0xD64, 0xD65, 0xD80, 0xD80,
    0xD84, 0xD84, 0xD97, 0xD99, 0xDB2, 0xDB2, 0xDBC, 0xDBC, 0xDBE, 0xDBF, 0xDC7, 0xDC9,
    0xDCB, 0xDCE, 0xDD5, 0xDD5, 0xDD7, 0xDD7, 0xDE0, 0xDE5, 0xDF0, 0xDF1, 0xDF5, 0xE00,
    0xE3B, 0xE3E, 0xE5C, 0xE80, 0xE83, 0xE83, 0xE85, 0xE85, 0xE8B, 0xE8B, 0xEA4, 0xEA4,
    0xEA6, 0xEA6, 0xEBE, 0xEBF, 0xEC5, 0xEC5, 0xEC7, 0xEC7, 0xECE, 0xECF, 0xEDA, 0xEDB,
    0xEE0, 0xEFF, 0xF48, 0xF48, 0xF6D, 0xF70, 0xF98, 0xF98, 0xFBD, 0xFBD, 0xFCD, 0xFCD,
    0xFDB, 0xFFF, 0x10C6, 0x10C6, 0x10C8, 0x10CC, 0x10CE, 0x10CF, 0x1249, 0x1249, 0x124E, 0x124F,
    0x1257, 0x1257, 0x1259, 0x1259, 0x125E, 0x125F, 0x1289, 0x1289, 0x128E, 0x128F, 0x12B1, 0x12B1,
    0x12B6, 0x12B7, 0x12BF, 0x12BF, 0x12C1, 0x12C1, 0x12C6, 0x12C7, 0x12D7, 0x12D7, 0x1311, 0x1311,
    0x1316, 0x1317, 0x135B, 0x135C, 0x137D, 0x137F, 0x139A, 0x139F, 0x13F6, 0x13F7, 0x13FE, 0x13FF,
    0x1680, 0x1680, 0x169D, 0x169F, 0x16F9, 0x16FF, 0x1716, 0x171E, 0x1737, 0x173F, 0x1754, 0x175F,
    0x176D, 0x176D, 0x1771, 0x1771, 0x1774, 0x177F, 0x17DE, 0x17DF, 0x17EA, 0x17EF, 0x17FA, 0x17FF,
    0x180E, 0x180E, 0x181A, 0x181F, 0x1879, 0x187F, 0x18AB, 0x18AF, 0x18F6, 0x18FF, 0x191F, 0x191F,
    0x192C, 0x192F, 0x193C, 0x193F, 0x1941, 0x1943, 0x196E, 0x196F, 0x1975, 0x197F, 0x19AC, 0x19AF,
    0x19CA, 0x19CF, 0x19DB, 0x19DD, 0x1A1C, 0x1A1D, 0x1A5F, 0x1A5F, 0x1A7D, 0x1A7E, 0x1A8A, 0x1A8F,
    0x1A9A, 0x1A9F, 0x1AAE, 0x1AAF, 0x1ACF, 0x1AFF, 0x1B4D, 0x1B4F, 0x1B7F, 0x1B7F, 0x1BF4, 0x1BFB,
    0x1C38, 0x1C3A, 0x1C4A, 0x1C4C, 0x1C89, 0x1C8F, 0x1CBB, 0x1CBC, 0x1CC8, 0x1CCF, 0x1CFB, 0x1CFF,
    0x1F16, 0x1F17, 0x1F1E, 0x1F1F, 0x1F46, 0x1F47, 0x1F4E, 0x1F4F, 0x1F58, 0x1F58, 0x1F5A, 0x1F5A,
    0x1F5C, 0x1F5C, 0x1F5E, 0x1F5E, 0x1F7E, 0x1F7F, 0x1FB5, 0x1FB5, 0x1FC5, 0x1FC5, 0x1FD4, 0x1FD5,
    0x1FDC, 0x1FDC, 0x1FF0, 0x1FF1, 0x1FF5, 0x1FF5, 0x1FFF, 0x200F, 0x2028, 0x202F, 0x205F, 0x206F,
    0x2072, 0x2073, 0x208F, 0x208F, 0x209D, 0x209F, 0x20C1, 0x20CF, 0x20F1, 0x20FF, 0x218C, 0x218F,
    0x2427, 0x243F, 0x244B, 0x245F, 0x2B74, 0x2B75, 0x2B96, 0x2B96, 0x2CF4, 0x2CF8, 0x2D26, 0x2D26,
    0x2D28, 0x2D2C, 0x2D2E, 0x2D2F, 0x2D68, 0x2D6E, 0x2D71, 0x2D7E, 0x2D97, 0x2D9F, 0x2DA7, 0x2DA7,
    0x2DAF, 0x2DAF, 0x2DB7, 0x2DB7, 0x2DBF, 0x2DBF, 0x2DC7, 0x2DC7, 0x2DCF, 0x2DCF, 0x2DD7, 0x2DD7,
    0x2DDF, 0x2DDF, 0x2E5E, 0x2E7F, 0x2E9A, 0x2E9A, 0x2EF4, 0x2EFF, 0x2FD6, 0x2FEF, 0x2FFC, 0x3000,
    0x3040, 0x3040, 0x3097, 0x3098, 0x3100, 0x3104, 0x3130, 0x3130, 0x318F, 0x318F, 0x31E4, 0x31EF,
    0x321F, 0x321F, 0xA48D, 0xA48F, 0xA4C7, 0xA4CF, 0xA62C, 0xA63F, 0xA6F8, 0xA6FF, 0xA7CB, 0xA7CF,
    0xA7D2, 0xA7D2, 0xA7D4, 0xA7D4, 0xA7DA, 0xA7F1, 0xA82D, 0xA82F, 0xA83A, 0xA83F, 0xA878, 0xA87F,
    0xA8C6, 0xA8CD, 0xA8DA, 0xA8DF, 0xA954, 0xA95E, 0xA97D, 0xA97F, 0xA9CE, 0xA9CE, 0xA9DA, 0xA9DD,
    0xA9FF, 0xA9FF, 0xAA37, 0xAA3F, 0xAA4E, 0xAA4F, 0xAA5A, 0xAA5B, 0xAAC3, 0xAADA, 0xAAF7, 0xAB00,
    0xAB07, 0xAB08, 0xAB0F, 0xAB10, 0xAB17, 0xAB1F, 0xAB27, 0xAB27, 0xAB2F, 0xAB2F, 0xAB6C, 0xAB6F,
    0xABEE, 0xABEF, 0xABFA, 0xABFF, 0xD7A4, 0xD7AF, 0xD7C7, 0xD7CA, 0xD7FC, 0xF8FF, 0xFA6E, 0xFA6F,
    0xFADA, 0xFAFF, 0xFB07, 0xFB12, 0xFB18, 0xFB1C, 0xFB37, 0xFB37, 0xFB3D, 0xFB3D, 0xFB3F, 0xFB3F,
    0xFB42, 0xFB42, 0xFB45, 0xFB45, 0xFBC3, 0xFBD2, 0xFD90, 0xFD91, 0xFDC8, 0xFDCE, 0xFDD0, 0xFDEF,
    0xFE1A, 0xFE1F, 0xFE53, 0xFE53, 0xFE67, 0xFE67, 0xFE6C, 0xFE6F, 0xFE75, 0xFE75, 0xFEFD, 0xFF00,
    0xFFBF, 0xFFC1, 0xFFC8, 0xFFC9, 0xFFD0, 0xFFD1, 0xFFD8, 0xFFD9, 0xFFDD, 0xFFDF, 0xFFE7, 0xFFE7,
    0xFFEF, 0xFFFB, 0xFFFE, 0xFFFF, 0x1000C, 0x1000C, 0x10027, 0x10027, 0x1003B, 0x1003B,
    0x1003E, 0x1003E, 0x1004E, 0x1004F, 0x1005E, 0x1007F, 0x100FB, 0x100FF, 0x10103, 0x10106,
    0x10134, 0x10136, 0x1018F, 0x1018F, 0x1019D, 0x1019F, 0x101A1, 0x101CF, 0x101FE, 0x1027F,
    0x1029D, 0x1029F, 0x102D1, 0x102DF, 0x102FC, 0x102FF, 0x10324, 0x1032C, 0x1034B, 0x1034F,
    0x1037B, 0x1037F, 0x1039E, 0x1039E, 0x103C4, 0x103C7, 0x103D6, 0x103FF, 0x1049E, 0x1049F,
    0x104AA, 0x104AF, 0x104D4, 0x104D7, 0x104FC, 0x104FF, 0x10528, 0x1052F, 0x10564, 0x1056E,
    0x1057B, 0x1057B, 0x1058B, 0x1058B, 0x10593, 0x10593, 0x10596, 0x10596, 0x105A2, 0x105A2,
    0x105B2, 0x105B2, 0x105BA, 0x105BA, 0x105BD, 0x105FF, 0x10737, 0x1073F, 0x10756, 0x1075F,
    0x10768, 0x1077F, 0x10786, 0x10786, 0x107B1, 0x107B1, 0x107BB, 0x107FF, 0x10806, 0x10807,
    0x10809, 0x10809, 0x10836, 0x10836, 0x10839, 0x1083B, 0x1083D, 0x1083E, 0x10856, 0x10856,
    0x1089F, 0x108A6, 0x108B0, 0x108DF, 0x108F3, 0x108F3, 0x108F6, 0x108FA, 0x1091C, 0x1091E,
    0x1093A, 0x1093E, 0x10940, 0x1097F, 0x109B8, 0x109BB, 0x109D0, 0x109D1, 0x10A04, 0x10A04,
    0x10A07, 0x10A0B, 0x10A14, 0x10A14, 0x10A18, 0x10A18, 0x10A36, 0x10A37, 0x10A3B, 0x10A3E,
    0x10A49, 0x10A4F, 0x10A59, 0x10A5F, 0x10AA0, 0x10ABF, 0x10AE7, 0x10AEA, 0x10AF7, 0x10AFF,
    0x10B36, 0x10B38, 0x10B56, 0x10B57, 0x10B73, 0x10B77, 0x10B92, 0x10B98, 0x10B9D, 0x10BA8,
    0x10BB0, 0x10BFF, 0x10C49, 0x10C7F, 0x10CB3, 0x10CBF, 0x10CF3, 0x10CF9, 0x10D28, 0x10D2F,
    0x10D3A, 0x10E5F, 0x10E7F, 0x10E7F, 0x10EAA, 0x10EAA, 0x10EAE, 0x10EAF, 0x10EB2, 0x10EFF,
    0x10F28, 0x10F2F, 0x10F5A, 0x10F6F, 0x10F8A, 0x10FAF, 0x10FCC, 0x10FDF, 0x10FF7, 0x10FFF,
    0x1104E, 0x11051, 0x11076, 0x1107E, 0x110BD, 0x110BD, 0x110C3, 0x110CF, 0x110E9, 0x110EF,
    0x110FA, 0x110FF, 0x11135, 0x11135, 0x11148, 0x1114F, 0x11177, 0x1117F, 0x111E0, 0x111E0,
    0x111F5, 0x111FF, 0x11212, 0x11212, 0x1123F, 0x1127F, 0x11287, 0x11287, 0x11289, 0x11289,
    0x1128E, 0x1128E, 0x1129E, 0x1129E, 0x112AA, 0x112AF, 0x112EB, 0x112EF, 0x112FA, 0x112FF,
    0x11304, 0x11304, 0x1130D, 0x1130E, 0x11311, 0x11312, 0x11329, 0x11329, 0x11331, 0x11331,
    0x11334, 0x11334, 0x1133A, 0x1133A, 0x11345, 0x11346, 0x11349, 0x1134A, 0x1134E, 0x1134F,
    0x11351, 0x11356, 0x11358, 0x1135C, 0x11364, 0x11365, 0x1136D, 0x1136F, 0x11375, 0x113FF,
    0x1145C, 0x1145C, 0x11462, 0x1147F, 0x114C8, 0x114CF, 0x114DA, 0x1157F, 0x115B6, 0x115B7,
    0x115DE, 0x115FF, 0x11645, 0x1164F, 0x1165A, 0x1165F, 0x1166D, 0x1167F, 0x116BA, 0x116BF,
    0x116CA, 0x116FF, 0x1171B, 0x1171C, 0x1172C, 0x1172F, 0x11747, 0x117FF, 0x1183C, 0x1189F,
    0x118F3, 0x118FE, 0x11907, 0x11908, 0x1190A, 0x1190B, 0x11914, 0x11914, 0x11917, 0x11917,
    0x11936, 0x11936, 0x11939, 0x1193A, 0x11947, 0x1194F, 0x1195A, 0x1199F, 0x119A8, 0x119A9,
    0x119D8, 0x119D9, 0x119E5, 0x119FF, 0x11A48, 0x11A4F, 0x11AA3, 0x11AAF, 0x11AF9, 0x11BFF,
    0x11C09, 0x11C09, 0x11C37, 0x11C37, 0x11C46, 0x11C4F, 0x11C6D, 0x11C6F, 0x11C90, 0x11C91,
    0x11CA8, 0x11CA8, 0x11CB7, 0x11CFF, 0x11D07, 0x11D07, 0x11D0A, 0x11D0A, 0x11D37, 0x11D39,
    0x11D3B, 0x11D3B, 0x11D3E, 0x11D3E, 0x11D48, 0x11D4F, 0x11D5A, 0x11D5F, 0x11D66, 0x11D66,
    0x11D69, 0x11D69, 0x11D8F, 0x11D8F, 0x11D92, 0x11D92, 0x11D99, 0x11D9F, 0x11DAA, 0x11EDF,
    0x11EF9, 0x11FAF, 0x11FB1, 0x11FBF, 0x11FF2, 0x11FFE, 0x1239A, 0x123FF, 0x1246F, 0x1246F,
    0x12475, 0x1247F, 0x12544, 0x12F8F, 0x12FF3, 0x12FFF, 0x1342F, 0x143FF, 0x14647, 0x167FF,
    0x16A39, 0x16A3F, 0x16A5F, 0x16A5F, 0x16A6A, 0x16A6D, 0x16ABF, 0x16ABF, 0x16ACA, 0x16ACF,
    0x16AEE, 0x16AEF, 0x16AF6, 0x16AFF, 0x16B46, 0x16B4F, 0x16B5A, 0x16B5A, 0x16B62, 0x16B62,
    0x16B78, 0x16B7C, 0x16B90, 0x16E3F, 0x16E9B, 0x16EFF, 0x16F4B, 0x16F4E, 0x16F88, 0x16F8E,
    0x16FA0, 0x16FDF, 0x16FE5, 0x16FEF, 0x16FF2, 0x16FFF, 0x187F8, 0x187FF, 0x18CD6, 0x18CFF,
    0x18D09, 0x1AFEF, 0x1AFF4, 0x1AFF4, 0x1AFFC, 0x1AFFC, 0x1AFFF, 0x1AFFF, 0x1B123, 0x1B14F,
    0x1B153, 0x1B163, 0x1B168, 0x1B16F, 0x1B2FC, 0x1BBFF, 0x1BC6B, 0x1BC6F, 0x1BC7D, 0x1BC7F,
    0x1BC89, 0x1BC8F, 0x1BC9A, 0x1BC9B, 0x1BCA0, 0x1CEFF, 0x1CF2E, 0x1CF2F, 0x1CF47, 0x1CF4F,
    0x1CFC4, 0x1CFFF, 0x1D0F6, 0x1D0FF, 0x1D127, 0x1D128, 0x1D173, 0x1D17A, 0x1D1EB, 0x1D1FF,
    0x1D246, 0x1D2DF, 0x1D2F4, 0x1D2FF, 0x1D357, 0x1D35F, 0x1D379, 0x1D3FF, 0x1D455, 0x1D455,
    0x1D49D, 0x1D49D, 0x1D4A0, 0x1D4A1, 0x1D4A3, 0x1D4A4, 0x1D4A7, 0x1D4A8, 0x1D4AD, 0x1D4AD,
    0x1D4BA, 0x1D4BA, 0x1D4BC, 0x1D4BC, 0x1D4C4, 0x1D4C4, 0x1D506, 0x1D506, 0x1D50B, 0x1D50C,
    0x1D515, 0x1D515, 0x1D51D, 0x1D51D, 0x1D53A, 0x1D53A, 0x1D53F, 0x1D53F, 0x1D545, 0x1D545,
    0x1D547, 0x1D549, 0x1D551, 0x1D551, 0x1D6A6, 0x1D6A7, 0x1D7CC, 0x1D7CD, 0x1DA8C, 0x1DA9A,
    0x1DAA0, 0x1DAA0, 0x1DAB0, 0x1DEFF, 0x1DF1F, 0x1DFFF, 0x1E007, 0x1E007, 0x1E019, 0x1E01A,
    0x1E022, 0x1E022, 0x1E025, 0x1E025, 0x1E02B, 0x1E0FF, 0x1E12D, 0x1E12F, 0x1E13E, 0x1E13F,
    0x1E14A, 0x1E14D, 0x1E150, 0x1E28F, 0x1E2AF, 0x1E2BF, 0x1E2FA, 0x1E2FE, 0x1E300, 0x1E7DF,
    0x1E7E7, 0x1E7E7, 0x1E7EC, 0x1E7EC, 0x1E7EF, 0x1E7EF, 0x1E7FF, 0x1E7FF, 0x1E8C5, 0x1E8C6,
    0x1E8D7, 0x1E8FF, 0x1E94C, 0x1E94F, 0x1E95A, 0x1E95D, 0x1E960, 0x1EC70, 0x1ECB5, 0x1ED00,
    0x1ED3E, 0x1EDFF, 0x1EE04, 0x1EE04, 0x1EE20, 0x1EE20, 0x1EE23, 0x1EE23, 0x1EE25, 0x1EE26,
    0x1EE28, 0x1EE28, 0x1EE33, 0x1EE33, 0x1EE38, 0x1EE38, 0x1EE3A, 0x1EE3A, 0x1EE3C, 0x1EE41,
    0x1EE43, 0x1EE46, 0x1EE48, 0x1EE48, 0x1EE4A, 0x1EE4A, 0x1EE4C, 0x1EE4C, 0x1EE50, 0x1EE50,
    0x1EE53, 0x1EE53, 0x1EE55, 0x1EE56, 0x1EE58, 0x1EE58, 0x1EE5A, 0x1EE5A, 0x1EE5C, 0x1EE5C,
    0x1EE5E, 0x1EE5E, 0x1EE60, 0x1EE60, 0x1EE63, 0x1EE63, 0x1EE65, 0x1EE66, 0x1EE6B, 0x1EE6B,
    0x1EE73, 0x1EE73, 0x1EE78, 0x1EE78, 0x1EE7D, 0x1EE7D, 0x1EE7F, 0x1EE7F, 0x1EE8A, 0x1EE8A,
    0x1EE9C, 0x1EEA0, 0x1EEA4, 0x1EEA4, 0x1EEAA, 0x1EEAA, 0x1EEBC, 0x1EEEF, 0x1EEF2, 0x1EFFF,
    0x1F02C, 0x1F02F, 0x1F094, 0x1F09F, 0x1F0AF, 0x1F0B0, 0x1F0C0, 0x1F0C0, 0x1F0D0, 0x1F0D0,
    0x1F0F6, 0x1F0FF, 0x1F1AE, 0x1F1E5, 0x1F203, 0x1F20F, 0x1F23C, 0x1F23F, 0x1F249, 0x1F24F,
    0x1F252, 0x1F25F, 0x1F266, 0x1F2FF, 0x1F6D8, 0x1F6DC, 0x1F6ED, 0x1F6EF, 0x1F6FD, 0x1F6FF,
    0x1F774, 0x1F77F, 0x1F7D9, 0x1F7DF, 0x1F7EC, 0x1F7EF, 0x1F7F1, 0x1F7FF, 0x1F80C, 0x1F80F,
    0x1F848, 0x1F84F, 0x1F85A, 0x1F85F, 0x1F888, 0x1F88F, 0x1F8AE, 0x1F8AF, 0x1F8B2, 0x1F8FF,
    0x1FA54, 0x1FA5F, 0x1FA6E, 0x1FA6F, 0x1FA75, 0x1FA77, 0x1FA7D, 0x1FA7F, 0x1FA87, 0x1FA8F,
    0x1FAAD, 0x1FAAF, 0x1FABB, 0x1FABF, 0x1FAC6, 0x1FACF, 0x1FADA, 0x1FADF, 0x1FAE8, 0x1FAEF,
    0x1FAF7, 0x1FAFF, 0x1FB93, 0x1FB93, 0x1FBCB, 0x1FBEF, 0x1FBFA, 0x1FFFF, 0x2A6E0, 0x2A6FF,
    0x2B739, 0x2B73F, 0x2B81E, 0x2B81F, 0x2CEA2, 0x2CEAF, 0x2EBE1, 0x2F7FF, 0x2FA1E, 0x2FFFF,
    0x3134B, 0xE00FF, 0xE01F0, 0x10FFFF,
];

#[cfg(test)]
mod tests {
    /// The whole-number path of asctime gives the float path's text: for
    /// nanoseconds near second and millisecond boundaries (where it defers
    /// to the float path) and well inside them, before and after 1970, with
    /// the cache primed for that second and not, across the range of `i64`.
    #[test]
    fn asctime_from_nanoseconds_matches_the_float_path() {
        let new_clock = || super::Clock { utc: true, datefmt: None, second: None, text: String::new() };
        let seconds = [0i64, 1, -1, 1_700_000_000, -1_700_000_001, 4_102_444_800, 9_000_000_000];
        let offsets = [
            0i64,
            1,
            255,
            256,
            999,
            9_999,
            10_000,
            10_001,
            123_456,
            989_999,
            990_000,
            999_999,
            1_000_000,
            1_000_001,
            499_999_999,
            500_000_000,
            999_000_000,
            999_989_999,
            999_990_000,
            999_999_743,
            999_999_999,
        ];
        let mut checked = 0;
        for s in seconds {
            for off in offsets {
                let ns = s * 1_000_000_000 + off;
                for primed in [false, true] {
                    let (mut fast, mut float) = (new_clock(), new_clock());
                    if primed {
                        let _ = fast.asctime_ns_into(ns, &mut Vec::new());
                    }
                    let (mut a, mut b) = (Vec::new(), Vec::new());
                    let ra = fast.asctime_ns_into(ns, &mut a);
                    let rb = float.asctime_into(ns as f64 / 1e9, &mut b);
                    assert_eq!(ra.is_ok(), rb.is_ok(), "{ns}");
                    assert_eq!(String::from_utf8(a).unwrap(), String::from_utf8(b).unwrap(), "{ns}");
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 7 * 21 * 2);
    }

    #[test]
    fn inline_trunc_floor_and_put_agree_with_std() {
        let xs = [
            0.0,
            -0.0,
            0.4,
            -0.4,
            1.0,
            -1.0,
            1.5,
            -1.5,
            1_700_000_000.123_456,
            -1_700_000_000.999,
            4_503_599_627_370_495.5,
            4_503_599_627_370_496.0,
            1e300,
            -1e300,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ];
        for x in xs {
            assert_eq!(super::trunc(x).to_bits() & !(1 << 63), x.trunc().to_bits() & !(1 << 63), "trunc {x}");
            assert_eq!(super::floor(x), x.floor(), "floor {x}");
        }
        assert!(super::trunc(f64::NAN).is_nan() && super::floor(f64::NAN).is_nan());
        for cap in [0, 8, 40, 100] {
            for n in 0..=40 {
                let src: Vec<u8> = (0..n as u8).map(|b| b.wrapping_mul(37)).collect();
                let mut out = Vec::with_capacity(cap);
                out.extend_from_slice(b"ab");
                logfunnel_protocol::append_short(&mut out, &src);
                assert_eq!(&out[..2], b"ab");
                assert_eq!(&out[2..], &src[..], "n {n} cap {cap}");
            }
        }
    }

    use super::*;
    use chrono::TimeZone;
    use logfunnel_protocol::{Record, Value};
    use std::process::{Command, Stdio};

    /// 2023-11-14 22:13:20.123456789 UTC.
    const T0: i64 = 1_700_000_000_123_456_789;
    const START: i64 = 1_699_999_000_000_000_000;

    fn record() -> Record {
        let mut r = Record::new(20, "app.net", "hello");
        r.created_ns = T0;
        r.pathname = Some("/src/app/net.rs".into());
        r.lineno = 42;
        r.func_name = Some("connect".into());
        r.process = 4242;
        r.thread = 7;
        r.thread_name = Some("worker".into());
        r.extra = vec![
            ("user".into(), Value::Str("bob".into())),
            ("count".into(), Value::I64(-1234567)),
            ("ratio".into(), Value::F64(0.1)),
            ("ok".into(), Value::Bool(true)),
            ("big".into(), Value::U64(u64::MAX)),
        ];
        r
    }

    fn ctx<'a>(record: &'a RecordView<'a>) -> RecordContext<'a> {
        RecordContext {
            record,
            peer: PeerCred::UNKNOWN,
            process_name: "MainProcess",
            host_name: "box-1",
            start_ns: START,
        }
    }

    fn try_fmt(fmt: &str, style: Style, r: &Record) -> Result<String, FormatError> {
        let mut f = Formatter::new(Some(fmt), None, style)?.with_utc(true);
        let mut out = Vec::new();
        f.format(&ctx(&r.view()), &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    fn fmt(fmt: &str, style: Style, r: &Record) -> String {
        try_fmt(fmt, style, r).unwrap_or_else(|e| panic!("{fmt:?}: {e}"))
    }

    fn invalid(fmt: &str, style: Style) -> String {
        match Formatter::new(Some(fmt), None, style) {
            Err(e @ FormatError::Invalid { .. }) => e.to_string(),
            other => panic!("{fmt:?} should be invalid, got {other:?}"),
        }
    }

    #[test]
    fn style_parse_and_defaults() {
        assert_eq!(Style::parse("%"), Some(Style::Percent));
        assert_eq!(Style::parse("{"), Some(Style::Brace));
        assert_eq!(Style::parse("$"), Some(Style::Dollar));
        assert_eq!(Style::parse("%s"), None);
        let r = record();
        for style in [Style::Percent, Style::Brace, Style::Dollar] {
            for fmt in [None, Some("")] {
                let mut f = Formatter::new(fmt, None, style).unwrap();
                assert_eq!(f.fmt(), style.default_format());
                assert!(!f.uses_time());
                let mut out = Vec::new();
                f.format(&ctx(&r.view()), &mut out).unwrap();
                assert_eq!(out, b"hello");
            }
        }
    }

    #[test]
    fn percent_style_flags_widths_and_conversions() {
        let r = record();
        let p = Style::Percent;
        assert_eq!(
            fmt("%(levelname)-8s|%(lineno)05d|%(levelno)#x|%(created).3f|%(msecs)03d|%(message)r", p, &r),
            "INFO    |00042|0x14|1700000000.123|123|'hello'"
        );
        assert_eq!(fmt("%(lineno)+05d|%(lineno)-5d|%(lineno) d|%(lineno).4i", p, &r), "+0042|42   | 42|0042");
        assert_eq!(fmt("%(levelno)o %(levelno)#o %(levelno)X %(levelno)#08X", p, &r), "24 0o24 14 0X000014");
        assert_eq!(
            fmt("%(created)s|%(msecs)s|%(relativeCreated)s", p, &r),
            // 3.11: (created - start) * 1000 in float seconds.
            "1700000000.1234567|123.0|1000123.4567165375"
        );
        assert_eq!(
            fmt("%(created)d|%(created)e|%(created)g|%(created)G", p, &r),
            "1700000000|1.700000e+09|1.7e+09|1.7E+09"
        );
        assert_eq!(
            fmt("%(relativeCreated)g|%(relativeCreated).10g|%(msecs)#g", p, &r),
            "1.00012e+06|1000123.457|123.000"
        );
        assert_eq!(
            fmt("%(lineno)c|%(levelname)5.2s|%(message)-7s|%(message)7s|", p, &r),
            "*|   IN|hello  |  hello|"
        );
        assert_eq!(
            fmt("%(user)s %(count)d %(ratio)s %(ok)s %(ok)d %(big)d %(count)x", p, &r),
            "bob -1234567 0.1 True 1 18446744073709551615 -12d687"
        );
        assert_eq!(fmt("100%% %(message)s %%", p, &r), "100% hello %");
        assert_eq!(fmt("%(exc_text)s %(stack_info)s %(args)s %(exc_info)r", p, &r), "None None None None");
        // A C length modifier is skipped, though validation wants another field.
        assert_eq!(fmt("%(message)s %(created)ld", p, &r), "hello 1700000000");
        assert!(Formatter::new(Some("%(created)ld"), None, p).is_err());
        assert_eq!(
            fmt("%(ratio)010.4f|%(ratio)-+8.1f|%(ratio)+08.1e", p, &r),
            "00000.1000|+0.1    |+1.0e-01"
        );
    }

    #[test]
    fn brace_style_format_spec() {
        let r = record();
        let b = Style::Brace;
        assert_eq!(
            fmt("{levelname:^10}|{lineno:,}|{created:.2e}|{message!r:>9}", b, &r),
            "   INFO   |42|1.70e+09|  'hello'"
        );
        assert_eq!(
            fmt("{count:,}|{count:_}|{big:_x}|{lineno:#b}|{lineno:*^8}|{lineno:=+6}", b, &r),
            "-1,234,567|-1_234_567|ffff_ffff_ffff_ffff|0b101010|***42***|+   42"
        );
        assert_eq!(
            fmt("{count:012,}|{ratio:%}|{ratio:.1%}|{lineno:e}|{lineno:c}", b, &r),
            "-001,234,567|10.000000%|10.0%|4.200000e+01|*"
        );
        assert_eq!(
            fmt("{created}|{created:.3}|{created:,.2f}|{created:g}|{msecs:.0f}", b, &r),
            "1700000000.1234567|1.7e+09|1,700,000,000.12|1.7e+09|123"
        );
        assert_eq!(
            fmt("{ok}|{ok:>5}|{ok!s:>5}|{ok!r}|{message!a}|{message:.2}", b, &r),
            "True|    1| True|True|'hello'|he"
        );
        assert_eq!(fmt("{message:{lineno}}|", b, &r).len(), 43);
        assert_eq!(fmt("{message:>{levelno}.{lineno}}", b, &r), format!("{}hello", " ".repeat(15)));
        // Python's own complaint about the spec that was built.
        let err = try_fmt("{message:>{levelno}.{ok}}", b, &r).unwrap_err();
        assert_eq!(err.to_string(), "Format specifier missing precision");
        assert_eq!(fmt("{{x}} {message} }}", b, &r), "{x} hello }");
        assert_eq!(fmt("{message:05}|{message:0>7}|{lineno:05}", b, &r), "hello|00hello|00042");
        assert_eq!(fmt("{exc_text}|{stack_info}", b, &r), "None|None");
    }

    #[test]
    fn dollar_style_substitution() {
        let r = record();
        let d = Style::Dollar;
        assert_eq!(fmt("$levelname:${name}:$message $$5 ${user}x", d, &r), "INFO:app.net:hello $5 bobx");
        assert_eq!(fmt("$created $ok $ratio $lineno", d, &r), "1700000000.1234567 True 0.1 42");
        assert!(invalid("$message $", d).contains("bare '$' not allowed"));
        assert!(invalid("${message", d).contains("bare '$' not allowed"));
        assert!(invalid("$1", d).contains("bare '$' not allowed"));
        assert!(invalid("no fields $$", d).contains("no fields"));
    }

    #[test]
    fn record_attribute_fallbacks() {
        let mut r = record();
        r.pathname = None;
        r.func_name = None;
        r.thread_name = None;
        r.levelno = 25;
        assert_eq!(
            fmt(
                "%(pathname)s|%(filename)s|%(module)s|%(funcName)s|%(threadName)s|%(levelname)s",
                Style::Percent,
                &r
            ),
            "(unknown file)|(unknown file)|(unknown file)|(unknown function)|Thread-7|Level 25"
        );
        assert_eq!(
            fmt("%(processName)s %(hostname)s %(process)d", Style::Percent, &r),
            "MainProcess box-1 4242"
        );
        r.process_name = Some("Worker-1".into());
        r.extra.push(("hostname".into(), Value::Str("from-extra".into())));
        assert_eq!(fmt("%(processName)s %(hostname)s", Style::Percent, &r), "Worker-1 from-extra");
        // Python's own attributes win over extras with the same name.
        r.extra.push(("name".into(), Value::Str("shadow".into())));
        assert_eq!(fmt("%(name)s", Style::Percent, &r), "app.net");
        for (path, file, module) in [
            ("/a/b.c/file.tar.gz", "file.tar.gz", "file.tar"),
            ("rel/.hidden", ".hidden", ".hidden"),
            ("..x", "..x", "..x"),
            ("a/b/", "", ""),
            ("noext", "noext", "noext"),
        ] {
            r.pathname = Some(path.into());
            assert_eq!(
                fmt("%(filename)s|%(module)s", Style::Percent, &r),
                format!("{file}|{module}"),
                "{path}"
            );
        }
    }

    #[test]
    fn exc_text_is_appended_like_python() {
        let mut r = record();
        r.exc_text = Some("Traceback\nBoom".into());
        assert_eq!(fmt("%(message)s", Style::Percent, &r), "hello\nTraceback\nBoom");
        r.message = "line\n".into();
        assert_eq!(fmt("%(message)s", Style::Percent, &r), "line\nTraceback\nBoom");
        r.message = String::new();
        assert_eq!(fmt("%(message)s", Style::Percent, &r), "\nTraceback\nBoom");
        r.exc_text = Some(String::new());
        assert_eq!(fmt("%(message)s|", Style::Percent, &r), "|");
        // The newline test looks at this record's text only, not the buffer.
        r.exc_text = Some("tb".into());
        let mut f = Formatter::new(Some("%(message)s"), None, Style::Percent).unwrap();
        let mut out = b"previous\n".to_vec();
        f.format(&ctx(&r.view()), &mut out).unwrap();
        assert_eq!(out, b"previous\n\ntb");
    }

    #[test]
    fn missing_fields_leave_the_buffer_untouched() {
        let r = record();
        for (fmt, style) in [
            ("%(message)s %(taskName)s", Style::Percent),
            ("{message} {taskName}", Style::Brace),
            ("$message $taskName", Style::Dollar),
            ("{message:{taskName}}", Style::Brace),
        ] {
            let mut f = Formatter::new(Some(fmt), None, style).unwrap();
            let mut out = b"keep".to_vec();
            let err = f.format(&ctx(&r.view()), &mut out).unwrap_err();
            assert!(matches!(&err, FormatError::MissingField(name) if name == "taskName"), "{err:?}");
            assert_eq!(err.to_string(), "Formatting field not found in record: 'taskName'");
            assert_eq!(out, b"keep");
        }
        // A type mismatch on an extra is found per record, and also rolls back.
        let mut f = Formatter::new(Some("%(message)s %(user)d"), None, Style::Percent).unwrap();
        let mut out = b"keep".to_vec();
        let err = f.format(&ctx(&r.view()), &mut out).unwrap_err();
        assert_eq!(err.to_string(), "%d format: a real number is required, not str");
        assert_eq!(out, b"keep");
    }

    #[test]
    fn validation_errors() {
        let p = Style::Percent;
        assert_eq!(invalid("%(name", p), "Invalid format '%(name' for '%' style: no %(name)s-style field");
        assert!(invalid("plain text", p).starts_with("Invalid format 'plain text' for '%' style"));
        assert!(invalid("%(message)s %(name", p).contains("incomplete format key"));
        assert!(invalid("%(message)s %s", p).contains("no %(key)"));
        assert!(invalid("%(message)*d", p).contains("'*'"));
        assert!(
            invalid("%(message)s %(name)y", p)
                .contains("unsupported format character 'y' (0x79) at index 19")
        );
        assert!(invalid("%(message)s %(name)5%", p).contains("unsupported format character '%'"));
        assert!(invalid("%(message)s %", p).contains("incomplete format"));
        assert!(invalid("%(levelname)d", p).contains("%d format: a real number is required, not str"));
        assert!(invalid("%(created)x", p).contains("an integer is required, not float"));
        assert!(invalid("%(message)99999999s", p).contains("width too big"));
        let b = Style::Brace;
        assert!(invalid("{", b).contains("Single '{'"));
        assert!(invalid("{message}}", b).contains("Single '}'"));
        assert!(invalid("{message", b).contains("expected '}'"));
        assert!(invalid("{message!x}", b).contains("invalid conversion: 'x'"));
        assert!(invalid("{message:bad}", b).contains("bad specifier: 'bad'"));
        assert!(invalid("{created:z.2f}", b).contains("bad specifier: 'z.2f'"));
        assert!(invalid("{a b}", b).contains("invalid field name/expression: 'a b'"));
        assert!(invalid("text only", b).contains("no fields"));
        assert!(invalid("{0} {message}", b).contains("positional"));
        assert!(invalid("{} {message}", b).contains("positional"));
        assert!(invalid("{created.real}", b).contains("not supported"));
        assert!(invalid("{levelno:s}", b).contains("Unknown format code 's' for object of type 'int'"));
        assert!(invalid("{levelname:+}", b).contains("Sign not allowed in string format specifier"));
        assert!(invalid("{lineno:.2}", b).contains("Precision not allowed"));
        assert!(invalid("{stack_info:>5}", b).contains("NoneType.__format__"));
        assert!(invalid("{lineno:,x}", b).contains("Cannot specify ',' with 'x'."));
        // Types that vary per record are checked per record.
        assert!(Formatter::new(Some("{user:d}"), None, b).is_ok());
        // A NUL in datefmt fails every record that formats the time; Python
        // never reads datefmt for a format without asctime.
        assert!(matches!(
            Formatter::new(Some("%(asctime)s %(message)s"), Some("a\0b"), p),
            Err(FormatError::BadDateFormat { .. })
        ));
        assert!(Formatter::new(Some("%(message)s"), Some("a\0b"), p).is_ok());
    }

    #[test]
    fn uses_time_is_a_substring_test() {
        let cases = [
            ("%(asctime)s", Style::Percent, true),
            ("%(asctime)-20s %(message)s", Style::Percent, true),
            ("%%(asctime)s %(message)s", Style::Percent, true),
            ("%(message)s asctime", Style::Percent, false),
            ("{asctime!r}", Style::Brace, true),
            ("{message:{asctime}}", Style::Brace, true),
            ("{message} asctime", Style::Brace, false),
            ("$asctime", Style::Dollar, true),
            ("${asctime}", Style::Dollar, true),
            ("$asctimex $message", Style::Dollar, true),
            ("$message", Style::Dollar, false),
        ];
        for (fmt, style, expected) in cases {
            assert_eq!(Formatter::new(Some(fmt), None, style).unwrap().uses_time(), expected, "{fmt}");
        }
    }

    #[test]
    fn asctime_utc_default_and_datefmt() {
        let r = record();
        assert_eq!(fmt("%(asctime)s", Style::Percent, &r), "2023-11-14 22:13:20,123");
        let mut f =
            Formatter::new(Some("%(asctime)s.%(msecs)03d"), Some("%Y-%m-%dT%H:%M:%S"), Style::Percent)
                .unwrap()
                .with_utc(true);
        assert_eq!(f.datefmt(), Some("%Y-%m-%dT%H:%M:%S"));
        let mut out = Vec::new();
        f.format(&ctx(&r.view()), &mut out).unwrap();
        assert_eq!(out, b"2023-11-14T22:13:20.123");
        // %f is not a C strftime directive: it stays literal, as in Python.
        let mut f = Formatter::new(Some("{asctime}"), Some("%H:%M:%S.%f %Z %%"), Style::Brace)
            .unwrap()
            .with_utc(true);
        out.clear();
        f.format(&ctx(&r.view()), &mut out).unwrap();
        assert_eq!(out, b"22:13:20.%f GMT %");
        // An empty datefmt is falsy in Python: the default applies.
        let mut f = Formatter::new(Some("$asctime"), Some(""), Style::Dollar).unwrap().with_utc(true);
        out.clear();
        f.format(&ctx(&r.view()), &mut out).unwrap();
        assert_eq!(out, b"2023-11-14 22:13:20,123");
        // Before 1970 msecs is negative under 3.11's formula.
        let mut old = record();
        old.created_ns = -1_500_000_000;
        assert_eq!(fmt("%(asctime)s|%(msecs)s", Style::Percent, &old), "1969-12-31 23:59:58,-500|-500.0");
    }

    #[test]
    fn date_cache_follows_the_second() {
        let mut f = Formatter::new(Some("%(asctime)s"), None, Style::Percent).unwrap().with_utc(true);
        let mut r = record();
        let mut at = |ns: i64| {
            r.created_ns = ns;
            let mut out = Vec::new();
            f.format(&ctx(&r.view()), &mut out).unwrap();
            String::from_utf8(out).unwrap()
        };
        let second = 1_700_000_000_000_000_000;
        assert_eq!(at(second - 1_000_000), "2023-11-14 22:13:19,999");
        assert_eq!(at(second - 1), "2023-11-14 22:13:20,000");
        assert_eq!(at(second), "2023-11-14 22:13:20,000");
        assert_eq!(at(second + 999_000_000), "2023-11-14 22:13:20,999");
        assert_eq!(at(second + 1_000_000_000), "2023-11-14 22:13:21,000");
        assert_eq!(at(second - 1_000_000), "2023-11-14 22:13:19,999");
        assert_eq!(at(second + 86_400_000_000_000), "2023-11-15 22:13:20,000");
    }

    #[test]
    fn local_time_agrees_with_chrono() {
        let r = record();
        let mut f =
            Formatter::new(Some("%(asctime)s"), Some("%Y-%m-%d %H:%M:%S %z"), Style::Percent).unwrap();
        let mut out = Vec::new();
        f.format(&ctx(&r.view()), &mut out).unwrap();
        let local = String::from_utf8(out).unwrap();
        let offset =
            chrono::Local.timestamp_opt(1_700_000_000, 0).unwrap().format("%Y-%m-%d %H:%M:%S %z").to_string();
        assert_eq!(local, offset);
    }

    #[cfg(unix)]
    #[test]
    fn portable_clock_agrees_with_the_c_library_in_utc() {
        for fmt in [DEFAULT_TIME_FORMAT, "%a %b %d %j %p %y %A %B %I %M"] {
            assert!(portable_time::valid(fmt));
            for second in [0, 951_782_400, 1_700_000_000, 4_102_444_800] {
                let (mut ours, mut chrono) = (String::new(), String::new());
                let c = std::ffi::CString::new(fmt).unwrap();
                assert!(unix_time::strftime(second, true, &c, fmt.len(), &mut ours));
                assert!(portable_time::strftime(second, true, fmt, &mut chrono));
                assert_eq!(ours, chrono, "{fmt} at {second}");
            }
        }
        assert!(!portable_time::valid("%Q"));
    }

    #[test]
    fn repr_matches_python() {
        // (text, repr(text), ascii(text)) as printed by python3.11.
        let cases = [
            ("hello", "'hello'", "'hello'"),
            ("it's", "\"it's\"", "\"it's\""),
            ("a\"b'c", "'a\"b\\'c'", "'a\"b\\'c'"),
            ("t\tn\nr\r\\ \x00\x7f", "'t\\tn\\nr\\r\\\\ \\x00\\x7f'", "'t\\tn\\nr\\r\\\\ \\x00\\x7f'"),
            (
                "é\u{a0}\u{200b}\u{d7ff}€😀\u{e000}",
                "'é\\xa0\\u200b\\ud7ff€😀\\ue000'",
                "'\\xe9\\xa0\\u200b\\ud7ff\\u20ac\\U0001f600\\ue000'",
            ),
        ];
        for (text, repr, ascii) in cases {
            let mut out = String::new();
            push_py_repr(&mut out, text, false);
            assert_eq!(out, repr);
            out.clear();
            push_py_repr(&mut out, text, true);
            assert_eq!(out, ascii);
        }
        assert!(is_printable('é') && is_printable('€') && !is_printable('\u{10fffd}'));
        assert!(!is_printable('\u{80}') && !is_printable('\u{a0}') && is_printable('\u{a1}'));
    }

    #[test]
    fn formatter_is_send_clone_debug() {
        fn check<T: Send + Clone + std::fmt::Debug>() {}
        check::<Formatter>();
    }

    // -----------------------------------------------------------------------
    // Differential tests against python3

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    fn py_str(s: &str) -> String {
        format!("H('{}')", hex(s.as_bytes()))
    }

    fn py_opt(s: Option<&str>) -> String {
        s.map_or("None".into(), py_str)
    }

    fn py_float(x: f64) -> String {
        format!("F('{:016x}')", x.to_bits())
    }

    /// A Python dict literal for the LogRecord this hub record stands for.
    /// Values Python derives itself (filename, module, created, msecs,
    /// relativeCreated) are computed by Python from the raw inputs.
    fn py_record(r: &RecordView<'_>, c: &RecordContext<'_>) -> String {
        let path = r.pathname;
        let thread_name = r.thread_name.map_or_else(|| format!("Thread-{}", r.thread), str::to_owned);
        let mut d = vec![
            format!("'name': {}", py_str(r.name)),
            format!("'msg': {}", py_str(r.message)),
            "'args': None".into(),
            format!("'levelname': {}", py_str(&level_name(r.levelno))),
            format!("'levelno': {}", r.levelno),
            format!("'pathname': {}", py_str(path.unwrap_or(UNKNOWN_FILE))),
            match path {
                Some(p) => format!("'filename': os.path.basename({})", py_str(p)),
                None => format!("'filename': {}", py_str(UNKNOWN_FILE)),
            },
            match path {
                Some(p) => format!("'module': os.path.splitext(os.path.basename({}))[0]", py_str(p)),
                None => format!("'module': {}", py_str(UNKNOWN_FILE)),
            },
            "'exc_info': None".into(),
            format!("'exc_text': {}", py_opt(r.exc_text)),
            "'stack_info': None".into(),
            format!("'lineno': {}", r.lineno),
            format!("'funcName': {}", py_str(r.func_name.unwrap_or(UNKNOWN_FUNCTION))),
            format!("'created': {} / 1e9", r.created_ns),
            format!("'msecs': msecs({} / 1e9)", r.created_ns),
            format!("'relativeCreated': ({} / 1e9 - {} / 1e9) * 1000", r.created_ns, c.start_ns),
            format!("'thread': {}", r.thread),
            format!("'threadName': {}", py_str(&thread_name)),
            format!("'processName': {}", py_str(r.process_name.unwrap_or(c.process_name))),
            format!("'process': {}", r.process),
            format!("'hostname': {}", py_str(c.host_name)),
        ];
        for (k, v) in &r.extra {
            let v = match *v {
                ValueRef::Str(s) => py_str(s),
                ValueRef::I64(i) => i.to_string(),
                ValueRef::U64(u) => u.to_string(),
                ValueRef::F64(f) => py_float(f),
                ValueRef::Bool(b) => if b { "True" } else { "False" }.into(),
            };
            d.push(format!("{}: {v}", py_str(k)));
        }
        format!("{{{}}}", d.join(", "))
    }

    const PY_DRIVER: &str = r#"
import logging, os, struct, sys, time
def H(s): return bytes.fromhex(s).decode('utf-8')
def F(s): return struct.unpack('>d', bytes.fromhex(s))[0]
def msecs(ct): return int((ct - int(ct)) * 1000) + 0.0
exec(sys.stdin.read())
out = []
for fmt, datefmt, style in FMTS:
    try:
        f = logging.Formatter(fmt, datefmt, style)
        if UTC:
            f.converter = time.gmtime
    except Exception as e:
        out.extend(['C ' + str(e).encode().hex()] * len(RECS))
        continue
    for d in RECS:
        r = logging.makeLogRecord(d)
        try:
            out.append('O ' + f.format(r).encode().hex())
        except Exception as e:
            out.append('E ' + str(e).encode().hex())
print('\n'.join(out))
"#;

    /// Formats every record with every format in python3; one line per pair:
    /// `O <hex>` (output), `E <hex>` (format-time error), `C <hex>` (rejected
    /// at construction).
    fn run_python(
        records: &[Record],
        c: &[RecordContext<'_>],
        formats: &[(Option<&str>, Option<&str>, Style)],
        utc: bool,
    ) -> Vec<(char, String)> {
        let mut data = String::new();
        data.push_str(if utc { "UTC = True\n" } else { "UTC = False\n" });
        data.push_str("RECS = [\n");
        for c in c {
            data.push_str(&py_record(c.record, c));
            data.push_str(",\n");
        }
        data.push_str("]\nFMTS = [\n");
        for (f, d, s) in formats {
            data.push_str(&format!("({}, {}, '{}'),\n", py_opt(*f), py_opt(*d), s.as_str()));
        }
        data.push_str("]\n");
        let mut child = match Command::new("python3")
            .args(["-c", PY_DRIVER])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(child) => child,
            Err(e) => panic!("cannot run python3 ({e}): install python3 (apt-get install python3)"),
        };
        child.stdin.take().unwrap().write_all(data.as_bytes()).unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "python3 failed: {}\n--- input ---\n{data}",
            String::from_utf8_lossy(&output.stderr)
        );
        let version = Command::new("python3").arg("--version").output().unwrap();
        assert!(
            String::from_utf8_lossy(&version.stdout).starts_with("Python 3.11"),
            "the differential tests pin CPython 3.11 semantics; python3 is {}",
            String::from_utf8_lossy(&version.stdout)
        );
        let lines: Vec<(char, String)> = String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .map(|l| {
                let (kind, payload) = l.split_once(' ').unwrap();
                (kind.chars().next().unwrap(), String::from_utf8(unhex(payload)).unwrap())
            })
            .collect();
        assert_eq!(lines.len(), records.len() * formats.len());
        lines
    }

    /// Formats in Rust and compares with python3, collecting every mismatch.
    fn compare_with_python(records: &[Record], formats: &[(Option<&str>, Option<&str>, Style)], utc: bool) {
        let views: Vec<RecordView<'_>> = records.iter().map(Record::view).collect();
        let contexts: Vec<RecordContext<'_>> = views
            .iter()
            .map(|r| RecordContext {
                record: r,
                peer: PeerCred::UNKNOWN,
                process_name: "MainProcess",
                host_name: "box-1",
                start_ns: START,
            })
            .collect();
        let python = run_python(records, &contexts, formats, utc);
        let mut mismatches = Vec::new();
        let mut compared = 0;
        for (fi, &(fmt, datefmt, style)) in formats.iter().enumerate() {
            let built = Formatter::new(fmt, datefmt, style).map(|f| f.with_utc(utc));
            for (ri, c) in contexts.iter().enumerate() {
                let (kind, py) = &python[fi * records.len() + ri];
                let what = format!("fmt {fmt:?} datefmt {datefmt:?} style {style:?}, record {ri}");
                match &built {
                    // We refuse early what Python refuses or fails on every record.
                    Err(e) => {
                        if *kind == 'O' {
                            mismatches.push(format!("{what}: rust refused ({e}), python gave {py:?}"));
                        }
                    }
                    Ok(f) => {
                        let mut out = Vec::new();
                        match (f.clone().format(c, &mut out), kind) {
                            (Ok(()), 'O') => {
                                compared += 1;
                                if out != py.as_bytes() {
                                    mismatches.push(format!(
                                        "{what}:\n   rust   {:?}\n   python {py:?}",
                                        String::from_utf8_lossy(&out)
                                    ));
                                }
                            }
                            (Err(e), 'E') => {
                                // Same message where we reproduce Python's.
                                if matches!(e, FormatError::MissingField(_) | FormatError::Conversion(_))
                                    && e.to_string() != *py
                                {
                                    mismatches.push(format!("{what}: rust error {e:?}, python error {py:?}"));
                                }
                            }
                            (result, _) => mismatches.push(format!(
                                "{what}: rust {:?} {:?}, python {kind} {py:?}",
                                result,
                                String::from_utf8_lossy(&out)
                            )),
                        }
                    }
                }
            }
        }
        assert!(mismatches.is_empty(), "{} mismatches:\n{}", mismatches.len(), mismatches.join("\n"));
        eprintln!("{compared} outputs identical to python3's, {} pairs in all", python.len());
    }

    fn diff_records() -> Vec<Record> {
        let mut a = record();
        a.message = "hello wörld".into();
        a.thread = 139_916_334_091_328;
        let mut b = Record::new(25, "x", "it's \"q\" \t tab\u{200b}é");
        b.created_ns = 1_700_000_000_999_999_999;
        b.exc_text = Some("Traceback (most recent call last):\nValueError: boom".into());
        b.process = 1;
        b.extra = vec![
            ("user".into(), Value::I64(5)),
            ("count".into(), Value::F64(1e16)),
            ("ratio".into(), Value::F64(-0.0)),
            ("ok".into(), Value::Bool(false)),
            ("big".into(), Value::I64(i64::MIN)),
        ];
        let mut c = Record::new(50, "deep.er.name", "");
        c.created_ns = -1_500_000_000;
        c.pathname = Some("relative/.hidden".into());
        c.exc_text = Some("tb".into());
        c.lineno = 0;
        c.extra = vec![
            ("user".into(), Value::Str("ünï".into())),
            ("count".into(), Value::F64(f64::NAN)),
            ("ratio".into(), Value::F64(f64::NEG_INFINITY)),
            ("ok".into(), Value::Bool(true)),
            ("big".into(), Value::F64(1e300)),
        ];
        let mut d = Record::new(10, "d", "ends with newline\n");
        d.created_ns = 4_102_444_800_000_500_000;
        d.pathname = Some("C:\\x\\y.py".into());
        d.exc_text = Some("tb".into());
        d.lineno = 65;
        d.process_name = Some("Worker-3".into());
        d.thread_name = Some("main".into());
        d.extra = vec![
            ("user".into(), Value::F64(2.5e-7)),
            ("count".into(), Value::U64(1_000_000_007)),
            ("ratio".into(), Value::F64(123456.789)),
            ("ok".into(), Value::Str("yes".into())),
            ("big".into(), Value::F64(0.5)),
        ];
        vec![a, b, c, d]
    }

    const P: Style = Style::Percent;
    const B: Style = Style::Brace;
    const D: Style = Style::Dollar;

    #[rustfmt::skip]
    const DIFF_FORMATS: &[(Option<&str>, Option<&str>, Style)] = &[
        (None, None, P),
        (None, None, B),
        (None, None, D),
        (Some("%(levelname)-8s %(name)s: %(message)s"), None, P),
        (Some("%(asctime)s %(levelname)s %(message)s"), None, P),
        (Some("%(asctime)s.%(msecs)03d"), Some("%Y-%m-%dT%H:%M:%S"), P),
        (Some("%(asctime)-40s|"), Some("%a %b %d %H:%M:%S %Y %Z %z %j %f %% é %"), P),
        (Some("%(created).3f %(created)s %(created)r %(created)d %(created)e %(created)g"), None, P),
        (Some("%(created).12g|%(created).0g|%(created)#.3g|%(msecs)#g|%(created)#.0f|%(created)#.0e"), None, P),
        (Some("%(msecs)03d|%(msecs)s|%(msecs)5.1f|%(msecs)r"), None, P),
        (Some("%(msecs)x"), None, P),
        (Some("%(relativeCreated)g|%(relativeCreated)s|%(relativeCreated)12.4E|%(relativeCreated)G"), None, P),
        (Some("%(lineno)+05d|%(lineno)-6d|%(lineno) d|%(lineno).4i|%(lineno)u|%(lineno)c|%(lineno)5c"), None, P),
        (Some("%(levelno)#x|%(levelno)#X|%(levelno)#o|%(levelno)x|%(levelno)08.3x|%(levelno)-#8x|"), None, P),
        (Some("%(message)r|%(message)a|%(message).5s|%(message)20s|%(message)-20s|%(message)010s|"), None, P),
        (Some("%(name)r %(funcName)s %(pathname)s %(filename)s %(module)s"), None, P),
        (Some("%(process)d %(processName)s %(thread)d %(threadName)s %(hostname)s"), None, P),
        (Some("%(exc_text)s|%(stack_info)s|%(exc_text)r|%(stack_info)10s|%(msg)s|%(args)s"), None, P),
        (Some("%(user)s %(count)s %(big)s %(ratio)s %(ok)s"), None, P),
        (Some("%(count)d|%(count)i|%(count)+.3d|%(big)d|%(ok)d"), None, P),
        (Some("%(ratio)+08.3f|%(ratio)#g|%(ratio)-10.2e|%(ratio)r|%(ratio) F|%(ratio)05G"), None, P),
        (Some("%(count)x"), None, P),
        (Some("100%% %(message)s %%"), None, P),
        (Some("%(taskName)s %(message)s"), None, P),
        (Some("%(message)s %(name"), None, P),
        (Some("no fields"), None, P),
        (Some("%(message)s %s"), None, P),
        (Some("%(levelname)d"), None, P),
        (Some("%(levelno)5%"), None, P),
        (Some("%(created)ld %(lineno)hd %(levelno)Lx"), None, P),
        (Some("%(message)s %(created)ld %(lineno)hd %(levelno)Lx"), None, P),
        (Some("{levelname:^10}|{lineno:,}|{created:.2e}|{msecs:03.0f}|{lineno:x>6}"), None, B),
        (Some("{asctime} {levelname:<8} {name}: {message}"), None, B),
        (Some("{asctime:>30}"), Some("%d/%m/%y %I:%M %p"), B),
        (Some("{message!r:>30}|{message!a}|{message!s:.3}|{message:^7}|{message:0<9}"), None, B),
        (Some("{lineno:+05d}|{lineno:x<7}|{lineno:#b}|{lineno:_o}|{thread:,}|{thread:_x}|{lineno:%}|{lineno:e}|{lineno:c}"), None, B),
        (Some("{created}|{created:.3}|{created:g}|{created:,.2f}|{created:015,.1f}|{created:n}|{created:E}|{created:>25}"), None, B),
        (Some("{relativeCreated:.2%}|{relativeCreated:=+20,.3f}|{msecs:.0f}|{msecs:#}|{msecs:#.0}|{created:.0}"), None, B),
        (Some("{user} {count} {big} {ratio} {ok}"), None, B),
        (Some("{ok:>5}|{ok!s:>6}|{ok!r}|{ratio:.3}|{ratio:+}|{ratio: .2f}|{ratio:010}|{ratio:,}"), None, B),
        (Some("{count:,}|{count:_}|{count:>12.3f}|{count:012,}|{count:x}"), None, B),
        (Some("{big:,}|{big:_}|{big:e}"), None, B),
        (Some("{exc_text}|{stack_info}|{exc_text!r}|{args}"), None, B),
        (Some("{message:{lineno}}|{levelname:>{levelno}.{lineno}}|"), None, B),
        (Some("{levelname:>{levelno}.{ok}}"), None, B),
        (Some("{{literal}} {message} }}"), None, B),
        (Some("{taskName}"), None, B),
        (Some("{levelname:d}"), None, B),
        (Some("{message:=^20}|{name:*>12}|{levelno:*<+6}|{levelno:^+7}"), None, B),
        (Some("{hostname}/{processName}/{threadName}"), None, B),
        (Some("{0} {message}"), None, B),
        (Some("{message:z>5}|{created:z.2f}"), None, B),
        (Some("$levelname:$name:$message"), None, D),
        (Some("${asctime} $$ ${message}x"), Some("%H:%M"), D),
        (Some("$user $count $ratio $ok $big"), None, D),
        (Some("$taskName"), None, D),
        (Some("$ bare"), None, D),
        (Some("${created}/$msecs/$relativeCreated/$lineno/$exc_text"), None, D),
    ];

    #[test]
    fn matches_python_in_utc() {
        compare_with_python(&diff_records(), DIFF_FORMATS, true);
    }

    /// One record per value, each carrying it as the extra `v`.
    fn value_records(values: Vec<Value>) -> Vec<Record> {
        values
            .into_iter()
            .map(|v| {
                let mut r = record();
                r.extra = vec![("v".into(), v)];
                r
            })
            .collect()
    }

    #[rustfmt::skip]
    const FLOAT_FORMATS: &[(Option<&str>, Option<&str>, Style)] = &[
        (Some("%(v)s|%(v)r|%(v)f|%(v).0f|%(v)#.0f|%(v)e|%(v).0e|%(v)#.0e|%(v)E"), None, P),
        (Some("%(v)g|%(v).0g|%(v)#g|%(v).3g|%(v).17g|%(v)#.10G|%(v)+012.3f|%(v) G|%(v)-12.4e|%(v)012g"), None, P),
        (Some("%(v)d|%(v)i|%(v)+.3u|%(v)020d"), None, P),
        (Some("%(v)a|%(v).3s|%(v)10r|%(v).2f%%"), None, P),
        (Some("{v}|{v:.3}|{v:.0}|{v:#}|{v:#.3}|{v:#.0}|{v:g}|{v:.2%}|{v:,.3f}|{v:_}|{v:015,.2f}"), None, B),
        (Some("{v:=+15.3e}|{v:n}|{v:E}|{v:^12.1F}|{v:010}|{v:,}|{v:.20g}|{v:#g}|{v:.1e}|{v:%}|{v: .4}|{v:x<+11.2f}"), None, B),
        (Some("{v!r}|{v!s:>25}|{v!a:.4}|{v:>30,.10f}|{v:0=20.5g}|{v:#.0f}|{v:.0%}"), None, B),
        (Some("$v"), None, D),
        // Precisions past Rust's formatter (65535) and past a double's digits.
        (Some("%(v).1100f|%(v).70000f|%(v).70000e|%(v)#.65536g|%(v).70000%"), None, P),
        (Some("{v:.65536e}|{v:#.70000}"), None, B),
    ];

    #[test]
    fn matches_python_for_many_floats() {
        let values = [
            0.0,
            -0.0,
            0.1,
            0.5,
            1.5,
            2.5,
            -2.5,
            3.0,
            100.0,
            1e16,
            1e15,
            1234567890123456.0,
            1e17,
            1e22,
            1e-4,
            1e-5,
            9.999999e-5,
            0.00001234,
            123456.789,
            999999.5,
            1e300,
            -1e300,
            5e-324,
            2.2250738585072014e-308,
            1.7976931348623157e308,
            12345678901234567890.0,
            0.30000000000000004,
            1.0 / 3.0,
            -2.0 / 3.0,
            0.125,
            0.375,
            1e-7,
            4.35,
            2.675,
            1e100,
            f64::NAN,
            -f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            6.02214076e23,
        ];
        compare_with_python(
            &value_records(values.iter().map(|&v| Value::F64(v)).collect()),
            FLOAT_FORMATS,
            true,
        );
    }

    #[rustfmt::skip]
    const INT_FORMATS: &[(Option<&str>, Option<&str>, Style)] = &[
        (Some("%(v)d|%(v)x|%(v)#o|%(v)+08d|%(v).5d|%(v)s|%(v)r|%(v)e|%(v)f|%(v)g|%(v)#X|%(v)-#10x|%(v) d|%(v)#.4x"), None, P),
        (Some("%(v)c|%(v)3c"), None, P),
        (Some("{v:,}|{v:_x}|{v:#_b}|{v:+}|{v: }|{v:010,}|{v:08x}|{v:#010X}|{v:=^12}|{v:e}|{v:%}|{v:n}|{v:.2f}|{v:_}|{v:#o}"), None, B),
        (Some("{v:*>+14,}|{v:0>9}|{v:x<09}|{v:09_}|{v:#_o}|{v!r:>6}|{v!s:.3}|{v:<+8}|{v:-}"), None, B),
        (Some("{v:.3}"), None, B),
        (Some("{v:c}|{v:^5c}"), None, B),
        (Some("{v:s}"), None, B),
        (Some("$v"), None, D),
    ];

    #[test]
    fn matches_python_for_many_ints_and_bools() {
        let mut values: Vec<Value> =
            [0, -1, 1, 42, 255, 4096, 1234567, -1234567, 0x10FFFF, 0x110000, i64::MIN, i64::MAX]
                .iter()
                .map(|&i| Value::I64(i))
                .collect();
        values.extend([
            Value::U64(u64::MAX),
            Value::U64(10_000_000_000),
            Value::Bool(true),
            Value::Bool(false),
        ]);
        compare_with_python(&value_records(values), INT_FORMATS, true);
    }

    #[rustfmt::skip]
    const STR_FORMATS: &[(Option<&str>, Option<&str>, Style)] = &[
        (Some("%(v)s|%(v)r|%(v)a|%(v)5s|%(v)-5.2s|%(v).0s|%(v)08s|%(v)-8r|"), None, P),
        (Some("%(v)c"), None, P),
        (Some("{v!r:^12}|{v:*<6}|{v:.1}|{v!a}|{v:06}|{v:é^7}|{v!s}|{v!r:.2}|{v:<}"), None, B),
        (Some("{v:d}"), None, B),
        (Some("{v:+}"), None, B),
        (Some("{v:=5}"), None, B),
        (Some("{v:,}"), None, B),
        (Some("{v:#}"), None, B),
        (Some("$v|${v}"), None, D),
    ];

    #[test]
    fn matches_python_for_many_strings() {
        let values = [
            "",
            "a",
            "é",
            "😀",
            "it's",
            "say \"hi\"",
            "both ' and \"",
            "back\\slash",
            "tab\there",
            "nl\nx",
            "\u{200b}zero width",
            "\u{a0}nbsp",
            "\u{7f}\u{1}",
            "\u{e000}private",
            "\u{378}unassigned",
            "\u{2028}line sep",
            "日本語テキスト",
            "a\u{301}combining",
        ];
        compare_with_python(
            &value_records(values.iter().map(|&v| Value::Str(v.into())).collect()),
            STR_FORMATS,
            true,
        );
    }

    /// Records either side of the 2023 DST changes in the US and Europe.
    fn local_time_records() -> Vec<Record> {
        [
            1_678_604_399,
            1_678_604_400,
            1_699_163_999,
            1_699_164_000,
            1_679_792_399,
            1_679_792_400,
            1_698_541_200,
            0,
        ]
        .iter()
        .map(|&s| {
            let mut r = record();
            r.created_ns = s * 1_000_000_000 + 250_000_000;
            r
        })
        .collect()
    }

    const LOCAL_FORMATS: &[(Option<&str>, Option<&str>, Style)] = &[
        (Some("%(asctime)s %(message)s"), None, P),
        (Some("%(asctime)s"), Some("%Y-%m-%d %H:%M:%S %Z %z %c %s"), P),
        (Some("{asctime}|{created}"), Some("%x %X %p"), B),
        (Some("$asctime"), None, D),
    ];

    #[test]
    fn matches_python_in_local_time() {
        // The zone under test is the one this process inherited;
        // `matches_python_in_other_time_zones` runs this test in child
        // processes with TZ set (setting TZ here would race other threads).
        compare_with_python(&local_time_records(), LOCAL_FORMATS, false);
    }

    #[test]
    fn matches_python_in_other_time_zones() {
        let exe = std::env::current_exe().unwrap();
        // The test's name in this binary: its module path without the crate.
        let local = module_path!().split_once("::").map_or(String::new(), |(_, m)| format!("{m}::"))
            + "matches_python_in_local_time";
        for tz in ["EST5EDT,M3.2.0,M11.1.0", "CET-1CEST,M3.5.0,M10.5.0/3", "IST-5:30", "UTC0"] {
            let output = Command::new(&exe)
                .args([local.as_str(), "--exact", "--nocapture", "--test-threads=1"])
                .env("TZ", tz)
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(
                output.status.success() && stdout.contains("1 passed"),
                "TZ={tz}:\n{stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}
