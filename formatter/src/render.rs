//! Rendering a value: `%`-style conversions (printf) and `str.format`'s
//! format-spec mini-language, as CPython's `Objects/stringlib` renders
//! them (padding, alignment, signs, grouping, `%c` and `repr()`).

use std::fmt::Write as _;
use std::io::Write as _;

use logfunnel_protocol::append_short;

use crate::float::{FloatFmt, float_body, is_neg, push_float_str};
use crate::unicode::push_py_repr;
use crate::values::Val;

/// The largest width or precision a format may ask for.
pub const MAX_WIDTH: usize = 1_000_000;

/// `!s`, `!r`, `!a`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Conv {
    Str,
    Repr,
    Ascii,
}

/// One `%(key)...c` conversion.
#[derive(Debug, Clone, Default)]
pub(crate) struct Printf {
    pub(crate) left: bool,
    pub(crate) plus: bool,
    pub(crate) space: bool,
    pub(crate) alt: bool,
    pub(crate) zero: bool,
    pub(crate) width: usize,
    pub(crate) precision: Option<usize>,
    pub(crate) conv: char,
}

/// A parsed `str.format` spec: `[[fill]align][sign][#][0][width][,_][.prec][type]`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Spec {
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

/// Buffers the renderers write intermediate text into.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scratch {
    pub(crate) text: String,
    pub(crate) num: String,
    pub(crate) raw: String,
    pub(crate) grouped: Vec<u8>,
    /// The first lone surrogate written (as U+FFFD) and the output offset
    /// at or after which it sits: see [`code_point`].
    pub(crate) surrogate: Option<(u32, usize)>,
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
pub(crate) fn parse_width(chars: &[char], i: &mut usize) -> Result<usize, String> {
    match parse_digits(chars, i) {
        Some(n) if n > MAX_WIDTH => Err("width too big".into()),
        n => Ok(n.unwrap_or(0)),
    }
}

/// A precision is not bounded here: on a string it only truncates, as in
/// Python, whatever its size; a number refuses one above [`MAX_WIDTH`] when
/// it is rendered ([`check_precision`]).
pub(crate) fn parse_precision(chars: &[char], i: &mut usize) -> Option<usize> {
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

/// Parses a format spec as `str.format` does (`type_name` is for messages).
pub(crate) fn parse_spec(text: &str, type_name: &str) -> Result<Spec, String> {
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

pub(crate) fn write_plain(out: &mut Vec<u8>, value: Val<'_>, scratch: &mut Scratch) {
    match value {
        Val::Str(s) => out.extend_from_slice(s.as_bytes()),
        Val::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Val::Float(x) => {
            scratch.num.clear();
            push_float_str(&mut scratch.num, &mut scratch.raw, x);
            out.extend_from_slice(scratch.num.as_bytes());
        }
        Val::Bool(b) => out.extend_from_slice(if b { b"True" } else { b"False" }),
        Val::None => out.extend_from_slice(b"None"),
    }
}

/// `str(value)`.
pub(crate) fn push_str_val(dst: &mut String, raw: &mut String, value: Val<'_>) {
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

/// Padding for a rendered value.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pad {
    pub(crate) fill: char,
    pub(crate) align: char,
    pub(crate) width: usize,
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
pub(crate) fn pad_str(out: &mut Vec<u8>, s: &str, pad: Pad) {
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
/// is written as U+FFFD here and remembered in `scratch`, so that the record
/// fails with Python's error only if nothing else fails first.
fn code_point(n: i128, scratch: &mut Scratch, at: usize) -> Result<char, String> {
    if !(0..0x110000).contains(&n) {
        return Err("%c arg not in range(0x110000)".into());
    }
    Ok(char::from_u32(n as u32).unwrap_or_else(|| {
        scratch.surrogate.get_or_insert((n as u32, at));
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
pub(crate) fn printf(
    out: &mut Vec<u8>,
    value: Val<'_>,
    p: &Printf,
    scratch: &mut Scratch,
) -> Result<(), String> {
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
                    scratch.text.clear();
                    if p.conv == 's' {
                        push_str_val(&mut scratch.text, &mut scratch.raw, value);
                    } else {
                        push_repr_val(&mut scratch.text, &mut scratch.raw, value, p.conv == 'a');
                    }
                    &scratch.text
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
                Val::Int(i) => code_point(i, scratch, out.len())?,
                Val::Bool(b) => code_point(b.into(), scratch, out.len())?,
                _ => return Err("%c requires int or char".into()),
            };
            let mut buf = [0u8; 4];
            pad_str(out, c.encode_utf8(&mut buf), text_pad);
        }
        'd' | 'i' | 'u' | 'o' | 'x' | 'X' => {
            check_precision(p.precision)?;
            scratch.raw.clear();
            let decimal = matches!(p.conv, 'd' | 'i' | 'u');
            let negative = match value {
                Val::Int(i) => {
                    push_radix(&mut scratch.raw, i.unsigned_abs(), p.conv);
                    i < 0
                }
                Val::Bool(b) => {
                    push_radix(&mut scratch.raw, b.into(), p.conv);
                    false
                }
                Val::Float(x) if decimal => {
                    if x.is_nan() {
                        return Err("cannot convert float NaN to integer".into());
                    }
                    if x.is_infinite() {
                        return Err("cannot convert float infinity to integer".into());
                    }
                    push_float_int(&mut scratch.raw, x)
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
            scratch.num.clear();
            for _ in scratch.raw.len()..p.precision.unwrap_or(0) {
                scratch.num.push('0');
            }
            scratch.num.push_str(&scratch.raw);
            let n = Num {
                sign: sign_str(negative, p.plus, p.space),
                prefix: if p.alt { alt_prefix(p.conv) } else { "" },
                digits: &scratch.num,
                rest: "",
            };
            emit_number(out, n, num_pad, None, &mut scratch.grouped);
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
            emit_float(out, x, style, sign_str(is_neg(x), p.plus, p.space), num_pad, None, scratch);
        }
    }
    Ok(())
}

/// One `{`-style field: `format(value, spec)`, after `!r`/`!s`/`!a`.
pub(crate) fn brace(
    out: &mut Vec<u8>,
    value: Val<'_>,
    conv: Option<Conv>,
    spec: &Spec,
    scratch: &mut Scratch,
) -> Result<(), String> {
    if let Some(conv) = conv {
        scratch.text.clear();
        match conv {
            Conv::Str => push_str_val(&mut scratch.text, &mut scratch.raw, value),
            Conv::Repr => push_repr_val(&mut scratch.text, &mut scratch.raw, value, false),
            Conv::Ascii => push_repr_val(&mut scratch.text, &mut scratch.raw, value, true),
        }
        return brace_str(out, &scratch.text, spec);
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
        Val::Bool(b) => brace_int(out, b.into(), "bool", spec, scratch),
        Val::Int(i) => brace_int(out, i, "int", spec, scratch),
        Val::Float(x) => brace_float(out, x, spec.ty, spec, scratch),
    }
}

/// `format(None, spec)` with a non-empty spec.
pub(crate) const NONE_FORMAT: &str = "unsupported format string passed to NoneType.__format__";

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
    scratch: &mut Scratch,
) -> Result<(), String> {
    let ty = spec.ty.unwrap_or('d');
    let grouping = check_grouping(spec.grouping, ty)?;
    match ty {
        'b' | 'c' | 'd' | 'o' | 'x' | 'X' | 'n' => {}
        'e' | 'E' | 'f' | 'F' | 'g' | 'G' | '%' => {
            return brace_float(out, i as f64, Some(ty), spec, scratch);
        }
        _ => return Err(unknown_code(ty, type_name)),
    }
    if spec.precision.is_some() {
        return Err("Precision not allowed in integer format specifier".into());
    }
    scratch.num.clear();
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
        let c = code_point(i, scratch, out.len())?;
        scratch.num.push(c);
        ("", "")
    } else {
        push_radix(&mut scratch.num, i.unsigned_abs(), ty);
        (
            sign_str(i < 0, spec.sign == Some('+'), spec.sign == Some(' ')),
            if spec.alt { alt_prefix(ty) } else { "" },
        )
    };
    let n = Num { sign, prefix, digits: &scratch.num, rest: "" };
    emit_number(out, n, spec.numeric_pad(), grouping, &mut scratch.grouped);
    Ok(())
}

fn brace_float(
    out: &mut Vec<u8>,
    x: f64,
    ty: Option<char>,
    spec: &Spec,
    scratch: &mut Scratch,
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
    emit_float(out, x, style, sign, spec.numeric_pad(), grouping, scratch);
    Ok(())
}

fn emit_float(
    out: &mut Vec<u8>,
    x: f64,
    style: FloatFmt,
    sign: &'static str,
    pad: Pad,
    grouping: Option<(u8, usize)>,
    scratch: &mut Scratch,
) {
    scratch.num.clear();
    float_body(&mut scratch.num, &mut scratch.raw, x, style);
    let int_len = scratch.num.bytes().take_while(u8::is_ascii_digit).count();
    let n = Num { sign, prefix: "", digits: &scratch.num[..int_len], rest: &scratch.num[int_len..] };
    emit_number(out, n, pad, grouping, &mut scratch.grouped);
}
