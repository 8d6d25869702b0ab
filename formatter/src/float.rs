//! Floats, as CPython's `PyOS_double_to_string` (`Python/pystrtod.c`)
//! writes them: `repr()`, and the `e`, `f`, `g` and `%` formats.

use std::fmt::Write as _;

/// How to render a float: `mode` is 'e', 'f', 'g', '%' or 'r' (repr).
#[derive(Debug, Clone, Copy)]
pub(crate) struct FloatFmt {
    pub(crate) mode: char,
    pub(crate) prec: usize,
    pub(crate) alt: bool,
    /// Keep ".0" on integral fixed-point results (repr, and `{:.3}`).
    pub(crate) add_dot_0: bool,
    pub(crate) upper: bool,
}

const REPR: FloatFmt = FloatFmt { mode: 'r', prec: 0, alt: false, add_dot_0: true, upper: false };

/// Digits after the point that hold all of a double's exact decimal value
/// (at most 1074 fractional, 767 significant); beyond them `layout_digits`
/// or the fixed-point path pads zeros. Rust's formatter refuses precisions
/// above 65535, which Python formats.
const EXACT_DIGITS: usize = 1100;

/// Python never shows a sign on NaN.
pub(crate) fn is_neg(x: f64) -> bool {
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
pub(crate) fn push_float_str(dst: &mut String, raw: &mut String, x: f64) {
    if is_neg(x) {
        dst.push('-');
    }
    float_body(dst, raw, x, REPR);
}

/// Writes `|x|` formatted (no sign).
pub(crate) fn float_body(dst: &mut String, raw: &mut String, x: f64, f: FloatFmt) {
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
