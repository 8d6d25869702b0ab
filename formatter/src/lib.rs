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
//!
//! # Layout
//!
//! Along CPython's own seams: `lib.rs` is `logging.Formatter` (its
//! segments walked per record); `parse.rs` the three styles' format strings;
//! `values.rs` the record's attributes; `render.rs` `%`-conversions and the
//! format-spec mini-language (`Objects/stringlib`); `float.rs` floats as
//! `Python/pystrtod.c` writes them; `time.rs` asctime, strftime and the
//! per-second cache; `unicode.rs` `repr()` and its table of printable
//! characters; `json.rs` python-json-logger's formatter.

mod error;
mod float;
mod json;
mod parse;
mod render;
#[cfg(test)]
mod tests;
mod time;
mod unicode;
mod values;

use std::borrow::Cow;

use logfunnel_protocol::{RecordView, ValueRef, append_short, level_name};

pub use error::FormatError;
pub use float::python_float_str;
pub use json::{JsonFields, JsonOptions, JsonValue};
pub use parse::Style;
pub use render::MAX_WIDTH;
#[cfg(unix)]
pub use time::unix_time;
pub use values::{PeerCred, RecordContext, record_dict};

use parse::{
    BraceSpec, Field, Render, Segment, SpecPart, check_fixed_types, parse_brace, parse_dollar, parse_percent,
};
use render::{NONE_FORMAT, Pad, Scratch, brace, pad_str, parse_spec, printf, push_str_val, write_plain};
use time::{Clock, DateFmt};
use values::{Attr, Val, lookup};

/// The most text one record may format to (widths taken from the record,
/// as in `{message:>{lineno}}`, could otherwise add up without bound).
pub const MAX_RECORD_BYTES: usize = 16 << 20;

/// Python's `logging.Formatter` for logfunnel's records. See the crate docs.
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
    scratch: Scratch,
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
            scratch: Scratch::default(),
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
            scratch: Scratch::default(),
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
        self.scratch.surrogate = None;
        if self.time_only_checked {
            self.clock.second_text(values::created_of(ctx))?;
        }
        for segment in &self.segments {
            match segment {
                Segment::Lit(text) => append_short(out, text.as_bytes()),
                Segment::Field(field) => {
                    render_field(field, ctx, &mut self.clock, &mut self.slots, &mut self.scratch, out)?;
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
        // Only Python's records carry a stack (`stack_info=True`).
        if ctx.python
            && let Some((_, ValueRef::Str(stack))) = ctx.record.extra.iter().find(|(k, _)| *k == "stack_info")
            && !stack.is_empty()
        {
            if out[start..].last() != Some(&b'\n') {
                out.push(b'\n');
            }
            out.extend_from_slice(stack.as_bytes());
        }
        if let Some((cp, at)) = self.scratch.surrogate.take() {
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

/// Buffers that looked-up values borrow from.
#[derive(Debug, Clone, Default)]
struct Slots {
    value: String,
    nested: String,
    spec: String,
}

fn render_field(
    field: &Field,
    ctx: &RecordContext<'_>,
    clock: &mut Clock,
    slots: &mut Slots,
    scratch: &mut Scratch,
    out: &mut Vec<u8>,
) -> Result<(), FormatError> {
    if let Some(done) = fast_path(field, ctx, clock, out) {
        return done;
    }
    let value = lookup(&field.attr, ctx, clock, &mut slots.value)?;
    match &field.render {
        Render::Plain => {
            write_plain(out, value, scratch);
            Ok(())
        }
        Render::Printf(p) => printf(out, value, p, scratch).map_err(FormatError::Conversion),
        Render::Brace { conv, spec: BraceSpec::Fixed(spec) } => {
            brace(out, value, *conv, spec, scratch).map_err(FormatError::Conversion)
        }
        Render::Brace { conv, spec: BraceSpec::Nested(parts) } => {
            // Python looks the field up first, then expands its spec.
            slots.spec.clear();
            for part in parts {
                match part {
                    SpecPart::Lit(text) => slots.spec.push_str(text),
                    SpecPart::Field(attr) => {
                        let v = lookup(attr, ctx, clock, &mut slots.nested)?;
                        push_str_val(&mut slots.spec, &mut scratch.raw, v);
                    }
                }
            }
            if conv.is_none() && matches!(value, Val::None) && !slots.spec.is_empty() {
                // object.__format__ refuses any spec before reading it.
                return Err(FormatError::Conversion(NONE_FORMAT.into()));
            }
            let type_name = if conv.is_some() { "str" } else { value.type_name() };
            let spec = parse_spec(&slots.spec, type_name).map_err(FormatError::Conversion)?;
            brace(out, value, *conv, &spec, scratch).map_err(FormatError::Conversion)
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
