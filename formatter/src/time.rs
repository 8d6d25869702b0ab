//! Time: `formatTime` (asctime, with the calendar part cached per second),
//! `created`'s milliseconds, and the C library's calendar conversion and
//! strftime (which TimedRotatingFileHandler's suffixes use too).

use std::fmt::Write as _;
use std::io::Write as _;

use logfunnel_protocol::append_short;

use crate::error::FormatError;

/// `formatTime`'s default `default_time_format`.
pub(crate) const DEFAULT_TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// Python 3.11's `msecs`: `int((ct - int(ct)) * 1000) + 0.0`.
pub(crate) fn msecs(ct: f64) -> f64 {
    // The + 0.0 turns -0.0 into 0.0, as Python's int() + 0.0 does.
    trunc((ct - trunc(ct)) * 1000.0) + 0.0
}

/// `f64::trunc` without a call into libm (the baseline x86-64 target has no
/// rounding instruction): exact for every finite value.
#[inline]
pub(crate) fn trunc(x: f64) -> f64 {
    // Beyond 2^52 every f64 is already an integer.
    if x.abs() < 4_503_599_627_370_496.0 { (x as i64) as f64 } else { x.trunc() }
}

/// `f64::floor`, as [`trunc`].
#[inline]
pub(crate) fn floor(x: f64) -> f64 {
    let t = trunc(x);
    if t > x { t - 1.0 } else { t }
}

/// A validated `datefmt`.
#[derive(Debug, Clone)]
pub(crate) struct DateFmt {
    #[cfg(unix)]
    c: std::ffi::CString,
    #[cfg(unix)]
    chars: usize,
    #[cfg(not(unix))]
    text: String,
}

impl DateFmt {
    pub(crate) fn new(datefmt: &str) -> Result<DateFmt, FormatError> {
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
pub(crate) struct Clock {
    pub(crate) utc: bool,
    pub(crate) datefmt: Option<DateFmt>,
    /// The second `text` was rendered for.
    pub(crate) second: Option<i64>,
    pub(crate) text: String,
}

impl Clock {
    /// The date text of `created`'s second, rendered once per second.
    pub(crate) fn second_text(&mut self, created: f64) -> Result<&str, FormatError> {
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
    pub(crate) fn asctime(&mut self, created: f64, dst: &mut String) -> Result<(), FormatError> {
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
    pub(crate) fn asctime_ns_into(&mut self, created_ns: i64, out: &mut Vec<u8>) -> Result<(), FormatError> {
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
    pub(crate) fn asctime_into(&mut self, created: f64, out: &mut Vec<u8>) -> Result<(), FormatError> {
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
    pub(crate) fn render(&mut self, second: i64) -> bool {
        let (fmt, chars) = match &self.datefmt {
            Some(d) => (d.c.as_c_str(), d.chars),
            None => (c"%Y-%m-%d %H:%M:%S", DEFAULT_TIME_FORMAT.len()),
        };
        unix_time::strftime(second, self.utc, fmt, chars, &mut self.text)
    }

    #[cfg(not(unix))]
    pub(crate) fn render(&mut self, second: i64) -> bool {
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
pub(crate) mod portable_time {
    use std::fmt::Write as _;

    use chrono::format::{Item, StrftimeItems};
    use chrono::{Local, TimeZone, Utc};

    pub(crate) fn valid(datefmt: &str) -> bool {
        !StrftimeItems::new(datefmt).any(|item| matches!(item, Item::Error))
    }

    pub(crate) fn strftime(second: i64, utc: bool, fmt: &str, dst: &mut String) -> bool {
        let written = if utc {
            Utc.timestamp_opt(second, 0).single().map(|t| write!(dst, "{}", t.format(fmt)))
        } else {
            Local.timestamp_opt(second, 0).single().map(|t| write!(dst, "{}", t.format(fmt)))
        };
        matches!(written, Some(Ok(())))
    }
}
