//! Python's pickle format (protocols 0–5), read without running anything.
//!
//! Python's `SocketHandler` and `DatagramHandler` send each record as a
//! pickled dict (`makePickle`). Unpickling with Python's own `pickle.loads`
//! imports modules and calls whatever the stream names; this reader decodes
//! only plain data: dict, list, tuple, set, frozenset, str, bytes, int of any
//! size, float, bool, None, the memo and frames. What would import,
//! construct or call (GLOBAL, STACK_GLOBAL, REDUCE, BUILD, INST, OBJ, NEWOBJ,
//! NEWOBJ_EX, EXT1/2/4, PERSID, BINPERSID) is never executed: it becomes an
//! [`Py::Object`] placeholder naming the class or function, which a caller
//! shows as text and counts. Out-of-band buffers (protocol 5's NEXT_BUFFER,
//! READONLY_BUFFER) are refused.
//!
//! Memory is bounded by the input: every length is checked against the
//! bytes left before anything is allocated, each opcode creates at most one
//! value, and the memo shares values instead of copying them (a memo bomb
//! costs nothing). Shared and even cyclic structures are possible as in
//! Python; [`Pickle::repr`] bounds its depth and its output.

use std::borrow::Cow;
use std::collections::HashMap;

use thiserror::Error;

/// Why a pickle was refused.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum PickleError {
    /// The stream ended before STOP.
    #[error("pickle truncated at byte {0}")]
    Truncated(usize),
    /// An opcode this reader does not know (or a protocol-5 buffer).
    #[error("pickle opcode {opcode:#04x} at byte {at} is not allowed")]
    Opcode {
        /// The opcode byte.
        opcode: u8,
        /// Its offset.
        at: usize,
    },
    /// An opcode found the stack in a state Python would also refuse.
    #[error("malformed pickle at byte {at}: {what}")]
    Malformed {
        /// Offset of the opcode.
        at: usize,
        /// What was wrong.
        what: &'static str,
    },
    /// A length larger than the bytes left.
    #[error("pickle length {len} at byte {at} exceeds the {left} bytes left")]
    Length {
        /// The claimed length.
        len: u64,
        /// Offset of the opcode.
        at: usize,
        /// Bytes left in the stream.
        left: usize,
    },
    /// A memo index never stored.
    #[error("pickle memo key {key} at byte {at} was never stored")]
    Memo {
        /// The key.
        key: u64,
        /// Offset of the opcode.
        at: usize,
    },
    /// Bytes after STOP.
    #[error("{0} bytes after the end of the pickle")]
    Trailing(usize),
    /// The pickle holds something other than a dict (a LogRecord's `__dict__`).
    #[error("the pickle holds {0}, not a dict")]
    NotADict(String),
    /// Nested deeper than the limit (MARKs or containers open at once).
    #[error("pickle nested deeper than {0}")]
    TooDeep(usize),
}

/// A decoded value's id in [`Pickle`]'s arena.
pub type Id = u32;

/// A value as the pickle describes it.
#[derive(Debug, Clone, PartialEq)]
pub enum Py<'a> {
    /// `None`.
    None,
    /// `True` / `False`.
    Bool(bool),
    /// An int that fits in i64.
    Int(i64),
    /// A larger int, in decimal (or a placeholder if too long to render).
    BigInt(String),
    /// A float.
    Float(f64),
    /// A str (borrowed from the pickle when it was UTF-8 there).
    Str(Cow<'a, str>),
    /// bytes or bytearray.
    Bytes(Cow<'a, [u8]>),
    /// A list.
    List(Vec<Id>),
    /// A tuple.
    Tuple(Vec<Id>),
    /// A dict, in insertion order (a repeated key keeps its first place).
    Dict(Vec<(Id, Id)>),
    /// A set (`frozen`: a frozenset).
    Set(Vec<Id>, bool),
    /// What Python would have imported, constructed or called: never done.
    /// Holds the dotted name of the class or function (or what the stream
    /// said instead of one).
    Object(String),
}

/// Most MARKs open at once, and the deepest nesting of containers
/// (Python records nest a few deep).
pub const MAX_DEPTH: usize = 256;
/// Ints longer than this many bytes are not converted to decimal (CPython
/// itself refuses to render ints beyond 4300 digits).
const MAX_INT_BYTES: usize = 512;

/// A decoded pickle: an arena of values and the root's id.
#[derive(Debug, Clone)]
pub struct Pickle<'a> {
    values: Vec<Py<'a>>,
    root: Id,
    /// How many [`Py::Object`] placeholders the stream created.
    pub objects: u32,
}

impl<'a> Pickle<'a> {
    /// The root value.
    pub fn root(&self) -> &Py<'a> {
        &self.values[self.root as usize]
    }

    /// The value with this id.
    pub fn get(&self, id: Id) -> &Py<'a> {
        &self.values[id as usize]
    }

    /// The root's id.
    pub fn root_id(&self) -> Id {
        self.root
    }

    /// Python's `repr()` of a value, cut at `max` bytes (a shared or cyclic
    /// structure can expand without end); containers deeper than 32 print
    /// as `...`, as Python prints a cycle.
    pub fn repr(&self, id: Id, max: usize) -> String {
        let mut out = String::new();
        self.repr_into(id, &mut out, max, 0);
        if out.len() > max {
            let cut = crate::cut_str(&out, max).len();
            out.truncate(cut);
        }
        out
    }

    /// Python's `str()`: a str as it is, anything else its repr.
    pub fn str(&self, id: Id, max: usize) -> String {
        match self.get(id) {
            Py::Str(s) => s.to_string(),
            _ => self.repr(id, max),
        }
    }

    fn repr_into(&self, id: Id, out: &mut String, max: usize, depth: usize) {
        use std::fmt::Write;
        if out.len() > max {
            return;
        }
        let seq = |out: &mut String, items: &[Id], open: &str, close: &str, trailing_comma: bool| {
            out.push_str(open);
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                self.repr_into(*x, out, max, depth + 1);
                if out.len() > max {
                    return;
                }
            }
            if trailing_comma && items.len() == 1 {
                out.push(',');
            }
            out.push_str(close);
        };
        if depth > 32 {
            out.push_str("...");
            return;
        }
        match self.get(id) {
            Py::None => out.push_str("None"),
            Py::Bool(b) => out.push_str(if *b { "True" } else { "False" }),
            Py::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Py::BigInt(s) => out.push_str(s),
            Py::Float(f) => float_repr(*f, out),
            Py::Str(s) => str_repr(s, out),
            Py::Bytes(b) => bytes_repr(b, out),
            Py::List(items) => seq(out, items, "[", "]", false),
            Py::Tuple(items) => seq(out, items, "(", ")", true),
            Py::Set(items, frozen) => {
                if items.is_empty() {
                    out.push_str(if *frozen { "frozenset()" } else { "set()" });
                } else if *frozen {
                    seq(out, items, "frozenset({", "})", false);
                } else {
                    seq(out, items, "{", "}", false);
                }
            }
            Py::Dict(items) => {
                out.push('{');
                for (i, (k, v)) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    self.repr_into(*k, out, max, depth + 1);
                    out.push_str(": ");
                    self.repr_into(*v, out, max, depth + 1);
                    if out.len() > max {
                        return;
                    }
                }
                out.push('}');
            }
            Py::Object(name) => object_placeholder(name, out),
        }
    }
}

/// The text an object that was not unpickled shows as.
pub fn object_placeholder(name: &str, out: &mut String) {
    out.push('<');
    out.push_str(name);
    out.push_str(" object, not unpickled>");
}

/// Python's `repr(float)`: the shortest digits that round-trip, fixed
/// notation for exponents -4..16, else `1e+16` style.
pub fn float_repr(f: f64, out: &mut String) {
    use std::fmt::Write;
    if f.is_nan() {
        out.push_str("nan");
        return;
    }
    if f.is_infinite() {
        out.push_str(if f > 0.0 { "inf" } else { "-inf" });
        return;
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "1.2345e-7".
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = mantissa.strip_prefix('-').map_or(("", mantissa), |m| ("-", m));
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    out.push_str(sign);
    if (-4..16).contains(&exp) {
        if exp < 0 {
            out.push_str("0.");
            for _ in 0..(-exp - 1) {
                out.push('0');
            }
            out.push_str(&digits);
        } else {
            let point = exp as usize + 1;
            if digits.len() <= point {
                out.push_str(&digits);
                for _ in digits.len()..point {
                    out.push('0');
                }
                out.push_str(".0");
            } else {
                out.push_str(&digits[..point]);
                out.push('.');
                out.push_str(&digits[point..]);
            }
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
}

/// Python's `repr(str)`, with ASCII and Latin-1 control characters escaped
/// (Python also escapes other non-printable code points; those are kept).
pub fn str_repr(s: &str, out: &mut String) {
    use std::fmt::Write;
    let quote = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || (0x7f..=0xa0).contains(&(c as u32)) || c == '\u{ad}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

/// Python's `repr(bytes)`.
pub fn bytes_repr(b: &[u8], out: &mut String) {
    use std::fmt::Write;
    let quote = if b.contains(&b'\'') && !b.contains(&b'"') { '"' } else { '\'' };
    out.push('b');
    out.push(quote);
    for &c in b {
        match c {
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            c if c as char == quote => {
                out.push('\\');
                out.push(c as char);
            }
            0x20..0x7f => out.push(c as char),
            c => {
                let _ = write!(out, "\\x{c:02x}");
            }
        }
    }
    out.push(quote);
}

/// A plain value to write (see [`dumps_dict`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    /// A str.
    Str(String),
    /// An int.
    Int(i128),
    /// A float.
    Float(f64),
    /// A bool.
    Bool(bool),
    /// None.
    None,
}

/// Appends `pickle.dumps(dict(items), 1)`'s equivalent: protocol 1, as
/// Python's `SocketHandler.makePickle` writes (without its memo entries,
/// which a reader does not need). Python's `pickle.loads` reads it back to
/// the same dict.
pub fn dumps_dict(items: &[(String, Scalar)], out: &mut Vec<u8>) {
    out.extend_from_slice(b"}(");
    for (k, v) in items {
        write_str(k, out);
        match v {
            Scalar::Str(s) => write_str(s, out),
            Scalar::None => out.push(b'N'),
            Scalar::Bool(b) => out.extend_from_slice(if *b { b"I01\n" } else { b"I00\n" }),
            Scalar::Int(i) => match i32::try_from(*i) {
                Ok(i) if (0..256).contains(&i) => out.extend_from_slice(&[b'K', i as u8]),
                Ok(i) if (0..65536).contains(&i) => {
                    out.push(b'M');
                    out.extend_from_slice(&(i as u16).to_le_bytes());
                }
                Ok(i) => {
                    out.push(b'J');
                    out.extend_from_slice(&i.to_le_bytes());
                }
                Err(_) => out.extend_from_slice(format!("L{i}L\n").as_bytes()),
            },
            Scalar::Float(f) => {
                out.push(b'G');
                out.extend_from_slice(&f.to_be_bytes());
            }
        }
    }
    out.extend_from_slice(b"u.");
}

fn write_str(s: &str, out: &mut Vec<u8>) {
    out.push(b'X');
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Decodes a whole pickle whose value must be a dict (what `makePickle`
/// sends). Trailing bytes after STOP are refused.
pub fn loads_dict(data: &[u8]) -> Result<Pickle<'_>, PickleError> {
    let p = loads(data)?;
    match p.root() {
        Py::Dict(_) => Ok(p),
        other => Err(PickleError::NotADict(kind(other))),
    }
}

fn kind(v: &Py<'_>) -> String {
    match v {
        Py::None => "None".into(),
        Py::Bool(_) => "a bool".into(),
        Py::Int(_) | Py::BigInt(_) => "an int".into(),
        Py::Float(_) => "a float".into(),
        Py::Str(_) => "a str".into(),
        Py::Bytes(_) => "bytes".into(),
        Py::List(_) => "a list".into(),
        Py::Tuple(_) => "a tuple".into(),
        Py::Dict(_) => "a dict".into(),
        Py::Set(..) => "a set".into(),
        Py::Object(name) => format!("an object ({name}) that is never unpickled"),
    }
}

/// Decodes a whole pickle (any plain value).
pub fn loads(data: &[u8]) -> Result<Pickle<'_>, PickleError> {
    Reader {
        data,
        pos: 0,
        // About one value per 8 bytes in a LogRecord's pickle: sized once.
        values: Vec::with_capacity(data.len() / 8),
        stack: Vec::with_capacity(64),
        marks: Vec::new(),
        memo: Memo::default(),
        depth: Vec::with_capacity(data.len() / 8),
        too_deep: false,
        any_objects: false,
    }
    .run()
}

/// The memo: a vector for the small keys picklers write (0, 1, 2…), a map
/// for others, so that a huge key allocates nothing (each PUT takes at
/// least two bytes: keys below the pickle's length bound the vector).
#[derive(Default)]
struct Memo {
    small: Vec<Option<Id>>,
    big: HashMap<u64, Id>,
    count: usize,
}

impl Memo {
    fn insert(&mut self, key: u64, id: Id, limit: usize) {
        let fresh = if key < limit as u64 {
            let k = key as usize;
            if k >= self.small.len() {
                self.small.resize(k + 1, None);
            }
            self.small[k].replace(id).is_none()
        } else {
            self.big.insert(key, id).is_none()
        };
        self.count += usize::from(fresh);
    }

    fn get(&self, key: u64) -> Option<Id> {
        match usize::try_from(key).ok().and_then(|k| self.small.get(k)) {
            Some(slot) => *slot,
            None => self.big.get(&key).copied(),
        }
    }
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    values: Vec<Py<'a>>,
    stack: Vec<Id>,
    marks: Vec<usize>,
    memo: Memo,
    /// Nesting depth of each value (0 for scalars).
    depth: Vec<u32>,
    too_deep: bool,
    /// Whether any placeholder was made (else nothing needs counting).
    any_objects: bool,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: u64, at: usize) -> Result<&'a [u8], PickleError> {
        let left = self.data.len() - self.pos;
        if n > left as u64 {
            return Err(if n <= 8 {
                PickleError::Truncated(self.data.len())
            } else {
                PickleError::Length { len: n, at, left }
            });
        }
        let s = &self.data[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn uint(&mut self, n: usize, at: usize) -> Result<u64, PickleError> {
        let b = self.take(n as u64, at)?;
        Ok(b.iter().rev().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
    }

    fn line(&mut self, at: usize) -> Result<&'a [u8], PickleError> {
        let rest = &self.data[self.pos..];
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            return Err(PickleError::Truncated(self.data.len()));
        };
        self.pos += end + 1;
        let _ = at;
        Ok(&rest[..end])
    }

    fn push(&mut self, v: Py<'a>) {
        let depth = match &v {
            Py::List(x) | Py::Tuple(x) | Py::Set(x, _) => 1 + self.deepest(x.iter().copied()),
            Py::Dict(x) => 1 + self.deepest(x.iter().flat_map(|(k, v)| [*k, *v])),
            Py::Object(_) => {
                self.any_objects = true;
                0
            }
            _ => 0,
        };
        self.values.push(v);
        self.depth.push(depth);
        self.too_deep |= depth as usize > MAX_DEPTH;
        self.stack.push(self.values.len() as Id - 1);
    }

    fn deepest(&self, ids: impl Iterator<Item = Id>) -> u32 {
        ids.map(|i| self.depth[i as usize]).max().unwrap_or(0)
    }

    /// Records that `container` now holds `items` (a bomb of nested
    /// containers is refused; a value shared through the memo may make this
    /// an underestimate, which costs nothing: nothing here recurses
    /// without a bound).
    fn nest(&mut self, container: Id, items: &[Id]) {
        let d = (1 + self.deepest(items.iter().copied())).max(self.depth[container as usize]);
        self.depth[container as usize] = d;
        self.too_deep |= d as usize > MAX_DEPTH;
    }

    fn pop(&mut self, at: usize) -> Result<Id, PickleError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(PickleError::Malformed { at, what: "stack underflow" });
        }
        Ok(self.stack.pop().expect("checked"))
    }

    fn top(&self, at: usize) -> Result<Id, PickleError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(PickleError::Malformed { at, what: "stack underflow" });
        }
        Ok(*self.stack.last().expect("checked"))
    }

    fn pop_mark(&mut self, at: usize) -> Result<Vec<Id>, PickleError> {
        let Some(mark) = self.marks.pop() else {
            return Err(PickleError::Malformed { at, what: "no MARK" });
        };
        Ok(self.stack.split_off(mark))
    }

    fn object(&mut self, name: String) -> Py<'a> {
        Py::Object(name)
    }

    /// Placeholders reachable from the root (each counted once).
    fn count_objects(&self, root: Id) -> u32 {
        let mut seen = vec![false; self.values.len()];
        let mut todo = vec![root];
        let mut n = 0u32;
        while let Some(id) = todo.pop() {
            if std::mem::replace(&mut seen[id as usize], true) {
                continue;
            }
            match &self.values[id as usize] {
                Py::Object(_) => n = n.saturating_add(1),
                Py::List(x) | Py::Tuple(x) | Py::Set(x, _) => todo.extend(x),
                Py::Dict(x) => todo.extend(x.iter().flat_map(|(k, v)| [*k, *v])),
                _ => {}
            }
        }
        n
    }

    fn name_of(&self, id: Id) -> String {
        match &self.values[id as usize] {
            Py::Object(n) => n.clone(),
            Py::Str(s) => s.to_string(),
            _ => "?".into(),
        }
    }

    fn str_of(&self, id: Id) -> Option<&str> {
        match &self.values[id as usize] {
            Py::Str(s) => Some(s),
            _ => None,
        }
    }

    fn run(mut self) -> Result<Pickle<'a>, PickleError> {
        loop {
            if self.too_deep {
                return Err(PickleError::TooDeep(MAX_DEPTH));
            }
            let at = self.pos;
            let Some(&op) = self.data.get(self.pos) else {
                return Err(PickleError::Truncated(self.data.len()));
            };
            self.pos += 1;
            match op {
                b'.' => {
                    let root = self.pop(at)?;
                    if self.pos != self.data.len() {
                        return Err(PickleError::Trailing(self.data.len() - self.pos));
                    }
                    let objects = if self.any_objects { self.count_objects(root) } else { 0 };
                    return Ok(Pickle { values: self.values, root, objects });
                }
                0x80 => {
                    let proto = self.uint(1, at)?;
                    if proto > 5 {
                        return Err(PickleError::Malformed { at, what: "protocol above 5" });
                    }
                }
                0x95 => {
                    // FRAME: the whole pickle is in memory; only its length is checked.
                    let n = self.uint(8, at)?;
                    let left = self.data.len() - self.pos;
                    if n > left as u64 {
                        return Err(PickleError::Length { len: n, at, left });
                    }
                }
                b'(' => {
                    if self.marks.len() >= MAX_DEPTH {
                        return Err(PickleError::TooDeep(MAX_DEPTH));
                    }
                    self.marks.push(self.stack.len());
                }
                b'0' => {
                    if self.marks.last() == Some(&self.stack.len()) {
                        self.marks.pop();
                    } else {
                        self.pop(at)?;
                    }
                }
                b'1' => {
                    self.pop_mark(at)?;
                }
                b'2' => {
                    let t = self.top(at)?;
                    self.stack.push(t);
                }
                b'N' => self.push(Py::None),
                0x88 => self.push(Py::Bool(true)),
                0x89 => self.push(Py::Bool(false)),
                b'K' => {
                    let v = self.uint(1, at)?;
                    self.push(Py::Int(v as i64));
                }
                b'M' => {
                    let v = self.uint(2, at)?;
                    self.push(Py::Int(v as i64));
                }
                b'J' => {
                    let v = self.uint(4, at)? as u32 as i32;
                    self.push(Py::Int(v.into()));
                }
                b'I' => {
                    let line = self.line(at)?;
                    let v = match line {
                        b"01" => Py::Bool(true),
                        b"00" => Py::Bool(false),
                        _ => decimal(line).ok_or(PickleError::Malformed { at, what: "bad INT" })?,
                    };
                    self.push(v);
                }
                b'L' => {
                    let line = self.line(at)?;
                    let line = line.strip_suffix(b"L").unwrap_or(line);
                    let v = decimal(line).ok_or(PickleError::Malformed { at, what: "bad LONG" })?;
                    self.push(v);
                }
                0x8a | 0x8b => {
                    let n = self.uint(if op == 0x8a { 1 } else { 4 }, at)?;
                    let bytes = self.take(n, at)?;
                    self.push(long_le(bytes));
                }
                b'F' => {
                    let line = self.line(at)?;
                    let v = std::str::from_utf8(line)
                        .ok()
                        .and_then(|s| s.trim().parse::<f64>().ok())
                        .ok_or(PickleError::Malformed { at, what: "bad FLOAT" })?;
                    self.push(Py::Float(v));
                }
                b'G' => {
                    let b = self.take(8, at)?;
                    self.push(Py::Float(f64::from_be_bytes(b.try_into().expect("8 bytes"))));
                }
                b'X' | 0x8c | 0x8d => {
                    let n = self.uint(
                        match op {
                            b'X' => 4,
                            0x8c => 1,
                            _ => 8,
                        },
                        at,
                    )?;
                    let b = self.take(n, at)?;
                    self.push(Py::Str(String::from_utf8_lossy(b)));
                }
                b'V' => {
                    let line = self.line(at)?;
                    self.push(Py::Str(raw_unicode_escape(line).into()));
                }
                b'S' => {
                    let line = self.line(at)?;
                    let s = py2_string(line).ok_or(PickleError::Malformed { at, what: "bad STRING" })?;
                    self.push(Py::Str(s.into()));
                }
                b'T' | b'U' => {
                    let n = self.uint(if op == b'T' { 4 } else { 1 }, at)?;
                    let b = self.take(n, at)?;
                    // Python 2 str: decoded as Python 3 does by default (ASCII),
                    // leniently (Latin-1).
                    self.push(Py::Str(b.iter().map(|&c| c as char).collect::<String>().into()));
                }
                b'B' | b'C' | 0x8e | 0x96 => {
                    let n = self.uint(
                        match op {
                            b'B' => 4,
                            b'C' => 1,
                            _ => 8,
                        },
                        at,
                    )?;
                    let b = self.take(n, at)?;
                    self.push(Py::Bytes(b.into()));
                }
                b']' => self.push(Py::List(Vec::new())),
                b')' => self.push(Py::Tuple(Vec::new())),
                b'}' => self.push(Py::Dict(Vec::new())),
                0x8f => self.push(Py::Set(Vec::new(), false)),
                b'l' => {
                    let items = self.pop_mark(at)?;
                    self.push(Py::List(items));
                }
                b't' => {
                    let items = self.pop_mark(at)?;
                    self.push(Py::Tuple(items));
                }
                0x91 => {
                    let items = self.pop_mark(at)?;
                    self.push(Py::Set(items, true));
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    let floor = self.marks.last().copied().unwrap_or(0);
                    if self.stack.len() < floor + n {
                        return Err(PickleError::Malformed { at, what: "stack underflow" });
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.push(Py::Tuple(items));
                }
                b'd' => {
                    let items = self.pop_mark(at)?;
                    if items.len() % 2 != 0 {
                        return Err(PickleError::Malformed { at, what: "odd number of items for DICT" });
                    }
                    let mut d = Vec::new();
                    for kv in items.chunks(2) {
                        self.dict_set(&mut d, kv[0], kv[1]);
                    }
                    self.push(Py::Dict(d));
                }
                b'a' => {
                    let v = self.pop(at)?;
                    let list = self.top(at)?;
                    match &mut self.values[list as usize] {
                        Py::List(items) => {
                            items.push(v);
                            self.nest(list, &[v]);
                        }
                        _ => return Err(PickleError::Malformed { at, what: "APPEND to a non-list" }),
                    }
                }
                b'e' => {
                    let items = self.pop_mark(at)?;
                    let list = self.top(at)?;
                    match &mut self.values[list as usize] {
                        Py::List(l) => {
                            l.extend(&items);
                            self.nest(list, &items);
                        }
                        _ => return Err(PickleError::Malformed { at, what: "APPENDS to a non-list" }),
                    }
                }
                0x90 => {
                    let items = self.pop_mark(at)?;
                    let set = self.top(at)?;
                    match &mut self.values[set as usize] {
                        Py::Set(s, false) => {
                            s.extend(&items);
                            self.nest(set, &items);
                        }
                        _ => return Err(PickleError::Malformed { at, what: "ADDITEMS to a non-set" }),
                    }
                }
                b's' => {
                    let v = self.pop(at)?;
                    let k = self.pop(at)?;
                    let d = self.top(at)?;
                    self.set_items(d, &[k, v], at)?;
                }
                b'u' => {
                    let items = self.pop_mark(at)?;
                    if items.len() % 2 != 0 {
                        return Err(PickleError::Malformed { at, what: "odd number of items for SETITEMS" });
                    }
                    let d = self.top(at)?;
                    self.set_items(d, &items, at)?;
                }
                b'p' => {
                    let line = self.line(at)?;
                    let key = ascii_u64(line).ok_or(PickleError::Malformed { at, what: "bad PUT" })?;
                    let t = self.top(at)?;
                    self.memo.insert(key, t, self.data.len());
                }
                b'q' | b'r' => {
                    let key = self.uint(if op == b'q' { 1 } else { 4 }, at)?;
                    let t = self.top(at)?;
                    self.memo.insert(key, t, self.data.len());
                }
                0x94 => {
                    let key = self.memo.count as u64;
                    let t = self.top(at)?;
                    self.memo.insert(key, t, self.data.len());
                }
                b'g' | b'h' | b'j' => {
                    let key = if op == b'g' {
                        let line = self.line(at)?;
                        ascii_u64(line).ok_or(PickleError::Malformed { at, what: "bad GET" })?
                    } else {
                        self.uint(if op == b'h' { 1 } else { 4 }, at)?
                    };
                    let Some(id) = self.memo.get(key) else { return Err(PickleError::Memo { key, at }) };
                    // Shared, as in Python: the memo costs no copy.
                    self.stack.push(id);
                }
                // What would import, construct or call: placeholders only.
                b'c' => {
                    let module = self.line(at)?;
                    let name = self.line(at)?;
                    let name =
                        format!("{}.{}", String::from_utf8_lossy(module), String::from_utf8_lossy(name));
                    let v = self.object(name);
                    self.push(v);
                }
                0x93 => {
                    let name = self.pop(at)?;
                    let module = self.pop(at)?;
                    let name = format!(
                        "{}.{}",
                        self.str_of(module).unwrap_or("?"),
                        self.str_of(name).unwrap_or("?")
                    );
                    let v = self.object(name);
                    self.push(v);
                }
                b'R' => {
                    let args = self.pop(at)?;
                    let func = self.pop(at)?;
                    let v = self.reduce(func, args);
                    self.push(v);
                }
                b'b' => {
                    // BUILD sets an object's state: the placeholder stays as it is.
                    self.pop(at)?;
                    self.top(at)?;
                }
                0x81 => {
                    self.pop(at)?;
                    let cls = self.pop(at)?;
                    let v = self.object(self.name_of(cls));
                    self.push(v);
                }
                0x92 => {
                    self.pop(at)?;
                    self.pop(at)?;
                    let cls = self.pop(at)?;
                    let v = self.object(self.name_of(cls));
                    self.push(v);
                }
                b'i' => {
                    let module = self.line(at)?;
                    let name = self.line(at)?;
                    let name =
                        format!("{}.{}", String::from_utf8_lossy(module), String::from_utf8_lossy(name));
                    self.pop_mark(at)?;
                    let v = self.object(name);
                    self.push(v);
                }
                b'o' => {
                    let items = self.pop_mark(at)?;
                    let Some(&cls) = items.first() else {
                        return Err(PickleError::Malformed { at, what: "OBJ without a class" });
                    };
                    let v = self.object(self.name_of(cls));
                    self.push(v);
                }
                0x82..=0x84 => {
                    let code = self.uint(1 << (op - 0x82).min(2), at)?;
                    let v = self.object(format!("copyreg extension {code}"));
                    self.push(v);
                }
                b'P' => {
                    self.line(at)?;
                    let v = self.object("persistent id".into());
                    self.push(v);
                }
                b'Q' => {
                    self.pop(at)?;
                    let v = self.object("persistent id".into());
                    self.push(v);
                }
                _ => return Err(PickleError::Opcode { opcode: op, at }),
            }
        }
    }

    /// REDUCE: never calls. `_codecs.encode(text, "latin1")` is how
    /// protocols 0–2 write bytes, so that one is read as the bytes it means.
    fn reduce(&mut self, func: Id, args: Id) -> Py<'a> {
        if let (Py::Object(f), Py::Tuple(a)) = (&self.values[func as usize], &self.values[args as usize])
            && f == "_codecs.encode"
            && a.len() == 2
            && let (Some(text), Some(enc)) = (self.str_of(a[0]), self.str_of(a[1]))
            && matches!(enc, "latin1" | "latin-1")
            && text.chars().all(|c| (c as u32) < 256)
        {
            return Py::Bytes(text.chars().map(|c| c as u8).collect::<Vec<u8>>().into());
        }
        // ... and `bytes()` how they write empty bytes.
        if let (Py::Object(f), Py::Tuple(a)) = (&self.values[func as usize], &self.values[args as usize])
            && matches!(f.as_str(), "__builtin__.bytes" | "builtins.bytes")
            && a.is_empty()
        {
            return Py::Bytes(Cow::Borrowed(&[]));
        }
        // copyreg._reconstructor(cls, base, state): name the class, not the helper.
        if let (Py::Object(f), Py::Tuple(a)) = (&self.values[func as usize], &self.values[args as usize])
            && matches!(f.as_str(), "copy_reg._reconstructor" | "copyreg._reconstructor")
            && let Some(Py::Object(cls)) = a.first().map(|c| &self.values[*c as usize])
        {
            return Py::Object(cls.clone());
        }
        Py::Object(self.name_of(func))
    }

    fn set_items(&mut self, d: Id, items: &[Id], at: usize) -> Result<(), PickleError> {
        let mut dict = match &mut self.values[d as usize] {
            Py::Dict(items) => std::mem::take(items),
            _ => return Err(PickleError::Malformed { at, what: "SETITEM on a non-dict" }),
        };
        for kv in items.chunks(2) {
            self.dict_set(&mut dict, kv[0], kv[1]);
        }
        self.values[d as usize] = Py::Dict(dict);
        self.nest(d, items);
        Ok(())
    }

    /// A dict's `d[k] = v`: a str key given again replaces the value in place
    /// (a LogRecord's keys are strs; others are kept as they come).
    fn dict_set(&self, dict: &mut Vec<(Id, Id)>, k: Id, v: Id) {
        if let Some(key) = self.str_of(k)
            && let Some(slot) = dict.iter_mut().find(|(x, _)| self.str_of(*x) == Some(key))
        {
            slot.1 = v;
            return;
        }
        dict.push((k, v));
    }
}

fn ascii_u64(line: &[u8]) -> Option<u64> {
    std::str::from_utf8(line).ok()?.trim().parse().ok()
}

/// A decimal int from a text opcode.
fn decimal(line: &[u8]) -> Option<Py<'static>> {
    let s = std::str::from_utf8(line).ok()?.trim();
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(match s.parse::<i64>() {
        Ok(i) => Py::Int(i),
        Err(_) => {
            let neg = s.starts_with('-');
            let digits = digits.trim_start_matches('0');
            if digits.len() > MAX_INT_BYTES * 3 {
                Py::BigInt("<int too large to show>".into())
            } else {
                Py::BigInt(format!("{}{digits}", if neg { "-" } else { "" }))
            }
        }
    })
}

/// LONG1/LONG4: little-endian two's complement.
fn long_le(bytes: &[u8]) -> Py<'static> {
    if bytes.is_empty() {
        return Py::Int(0);
    }
    let neg = bytes[bytes.len() - 1] & 0x80 != 0;
    if bytes.len() <= 8 {
        let mut buf = [if neg { 0xff } else { 0 }; 8];
        buf[..bytes.len()].copy_from_slice(bytes);
        return Py::Int(i64::from_le_bytes(buf));
    }
    if bytes.len() > MAX_INT_BYTES {
        return Py::BigInt("<int too large to show>".into());
    }
    // Magnitude in little-endian u32 limbs (two's complement negated if needed).
    let mut mag: Vec<u8> = bytes.to_vec();
    if neg {
        let mut carry = 1u16;
        for b in &mut mag {
            let x = u16::from(!*b) + carry;
            *b = x as u8;
            carry = x >> 8;
        }
    }
    let mut limbs: Vec<u32> =
        mag.chunks(4).map(|c| c.iter().rev().fold(0u32, |a, &x| (a << 8) | u32::from(x))).collect();
    let mut parts: Vec<u32> = Vec::new();
    while limbs.iter().any(|&l| l != 0) {
        let mut rem = 0u64;
        for l in limbs.iter_mut().rev() {
            let cur = (rem << 32) | u64::from(*l);
            *l = (cur / 1_000_000_000) as u32;
            rem = cur % 1_000_000_000;
        }
        parts.push(rem as u32);
        while limbs.last() == Some(&0) {
            limbs.pop();
        }
    }
    let mut s = String::from(if neg { "-" } else { "" });
    for (i, p) in parts.iter().rev().enumerate() {
        if i == 0 {
            s.push_str(&p.to_string());
        } else {
            s.push_str(&format!("{p:09}"));
        }
    }
    if parts.is_empty() {
        s.push('0');
    }
    match s.parse::<i64>() {
        Ok(i) => Py::Int(i),
        Err(_) => Py::BigInt(s),
    }
}

/// Python's `raw-unicode-escape` decoding (protocol 0's UNICODE).
fn raw_unicode_escape(line: &[u8]) -> String {
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while i < line.len() {
        let b = line[i];
        if b == b'\\' && i + 1 < line.len() && matches!(line[i + 1], b'u' | b'U') {
            let n = if line[i + 1] == b'u' { 4 } else { 8 };
            if let Some(hex) = line.get(i + 2..i + 2 + n)
                && let Some(c) = std::str::from_utf8(hex).ok().and_then(|h| u32::from_str_radix(h, 16).ok())
            {
                out.push(char::from_u32(c).unwrap_or('\u{fffd}'));
                i += 2 + n;
                continue;
            }
        }
        out.push(b as char);
        i += 1;
    }
    out
}

/// Protocol 0's STRING: a quoted Python 2 literal with backslash escapes.
fn py2_string(line: &[u8]) -> Option<String> {
    let q = *line.first()?;
    if !matches!(q, b'\'' | b'"') || line.len() < 2 || *line.last()? != q {
        return None;
    }
    let body = &line[1..line.len() - 1];
    let mut out = String::new();
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        i += 1;
        if b != b'\\' {
            out.push(b as char);
            continue;
        }
        let e = *body.get(i)?;
        i += 1;
        match e {
            b'n' => out.push('\n'),
            b'r' => out.push('\r'),
            b't' => out.push('\t'),
            b'\\' => out.push('\\'),
            b'\'' => out.push('\''),
            b'"' => out.push('"'),
            b'a' => out.push('\x07'),
            b'b' => out.push('\x08'),
            b'f' => out.push('\x0c'),
            b'v' => out.push('\x0b'),
            b'x' => {
                let h = body.get(i..i + 2)?;
                out.push(u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()? as char);
                i += 2;
            }
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                for _ in 0..2 {
                    match body.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(char::from_u32(v & 0xff)?);
            }
            other => {
                out.push('\\');
                out.push(other as char);
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_header_from_python_decodes() {
        // pickle.dumps({'name': 'a.b', 'n': 139916334091328, 'f': 0.5, 'ok': True, 'l': [1, None]}, 1)
        let p = b"}q\x00(X\x04\x00\x00\x00nameq\x01X\x03\x00\x00\x00a.bq\x02X\x01\x00\x00\x00nq\x03L139916334091328L\nX\x01\x00\x00\x00fq\x04G?\xe0\x00\x00\x00\x00\x00\x00X\x02\x00\x00\x00okq\x05I01\nX\x01\x00\x00\x00lq\x06]q\x07(K\x01Neu.";
        let d = loads_dict(p).unwrap();
        assert_eq!(
            d.repr(d.root_id(), 1000),
            "{'name': 'a.b', 'n': 139916334091328, 'f': 0.5, 'ok': True, 'l': [1, None]}"
        );
        assert_eq!(d.objects, 0);
    }

    #[test]
    fn objects_become_placeholders_and_non_dicts_are_refused() {
        // {'x': datetime.date(2020, 1, 1)} at protocol 1, hand-written.
        let p = b"}(X\x01\x00\x00\x00xcdatetime\ndate\n(K\x01tRu.";
        let d = loads_dict(p).unwrap();
        assert_eq!(d.objects, 1);
        assert_eq!(d.repr(d.root_id(), 100), "{'x': <datetime.date object, not unpickled>}");
        let e = loads_dict(b"cos\nsystem\n(X\x02\x00\x00\x00idtR.").unwrap_err();
        assert!(matches!(e, PickleError::NotADict(ref w) if w.contains("os.system")), "{e}");
        assert!(matches!(loads_dict(b"\x80\x05\x97."), Err(PickleError::Opcode { opcode: 0x97, .. })));
        assert!(matches!(loads_dict(b"}X\xff\xff\xff\x7f"), Err(PickleError::Length { .. })));
        assert!(matches!(loads_dict(b"}(X"), Err(PickleError::Truncated(_))));
        assert!(loads_dict(b"}.").is_ok());
        assert!(matches!(loads_dict(b"}.x"), Err(PickleError::Trailing(1))));
        assert!(matches!(loads_dict(b"h\x00."), Err(PickleError::Memo { .. })));
        assert!(matches!(loads_dict(&[b'('; 1000]), Err(PickleError::TooDeep(_))));
        let mut bomb = b"}(X\x01\x00\x00\x00a".to_vec();
        bomb.extend([b']'; 10_000]);
        bomb.extend([b'a'; 9_999]);
        bomb.extend(b"u.");
        assert!(matches!(loads_dict(&bomb), Err(PickleError::TooDeep(_))));
        assert!(
            loads_dict(&[b"}(X\x01\x00\x00\x00a".as_slice(), &[b']'; 200], &[b'a'; 199], b"u."].concat())
                .is_ok()
        );
    }

    #[test]
    fn memo_bomb_and_cycles_cost_nothing() {
        // A list holding itself twice, and a chain of lists each holding the
        // previous one twice: 2^60 elements if copied.
        let mut p = b"}(X\x01\x00\x00\x00a]q\x00".to_vec();
        for i in 1..60u8 {
            p.extend_from_slice(&[b'0', b'(', b'h', i - 1, b'h', i - 1, b'l', b'q', i]);
        }
        p.extend_from_slice(b"u.");
        let d = loads_dict(&p).unwrap();
        assert!(d.repr(d.root_id(), 4096).len() <= 4096);
        let cyc = loads(b"]q\x00h\x00a.").unwrap();
        assert_eq!(cyc.repr(cyc.root_id(), 1000).matches("...").count(), 1);
    }

    #[test]
    fn what_dumps_dict_writes_reads_back() {
        let items = vec![
            ("s".to_owned(), Scalar::Str("é\n".into())),
            ("n".to_owned(), Scalar::None),
            ("t".to_owned(), Scalar::Bool(true)),
            ("a".to_owned(), Scalar::Int(7)),
            ("b".to_owned(), Scalar::Int(300)),
            ("c".to_owned(), Scalar::Int(-5)),
            ("d".to_owned(), Scalar::Int(139_916_334_091_328)),
            ("f".to_owned(), Scalar::Float(-0.5)),
        ];
        let mut out = Vec::new();
        dumps_dict(&items, &mut out);
        let p = loads_dict(&out).unwrap();
        assert_eq!(
            p.repr(p.root_id(), 1000),
            "{'s': 'é\\n', 'n': None, 't': True, 'a': 7, 'b': 300, 'c': -5, 'd': 139916334091328, 'f': -0.5}"
        );
    }

    #[test]
    fn floats_and_big_ints_print_as_python() {
        let f = |x: f64| {
            let mut s = String::new();
            float_repr(x, &mut s);
            s
        };
        assert_eq!(f(1e16), "1e+16");
        assert_eq!(f(1e-5), "1e-05");
        assert_eq!(f(0.0001), "0.0001");
        assert_eq!(f(123.0), "123.0");
        assert_eq!(f(-1.5e300), "-1.5e+300");
        assert_eq!(f(1234567890123456.7), "1234567890123456.8");
        assert_eq!(long_le(&[0, 0, 0, 0, 0, 0, 0, 0, 1]), Py::BigInt("18446744073709551616".into()));
        assert_eq!(long_le(&[0xff; 9]), Py::Int(-1));
        assert_eq!(long_le(&[0, 0, 0, 0, 0, 0, 0, 0, 0xff]), Py::BigInt("-18446744073709551616".into()));
    }
}
