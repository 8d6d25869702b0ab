//! `logging.handlers.TimedRotatingFileHandler`: a new file every interval,
//! the old one renamed with the start of its interval as a suffix.

use std::ffi::CStr;
use std::path::{Path, PathBuf};

use toml::Value;

use super::file_handler::{FileOptions, LogFile};
use crate::config::keys::Section;
use crate::formatter::unix_time::{broken_down, strftime_tm};
use crate::formatter::{Formatter, RecordContext};
use crate::handler::{BuildContext, Handler, HandlerError, HandlerOptions};

const DAY: i64 = 24 * 60 * 60;

/// TimedRotatingFileHandler's options.
#[derive(Debug, Clone, PartialEq)]
pub struct TimedRotatingFileOptions {
    /// FileHandler's options (always mode `a`).
    pub file: FileOptions,
    /// When to roll over.
    pub schedule: Schedule,
}

/// When a TimedRotatingFileHandler rolls over and what it keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// `when`: the unit (or `MIDNIGHT`, or a weekday).
    pub when: When,
    /// `interval`: how many units per file (Python 3.11 ignores it for MIDNIGHT and Wn).
    pub interval: u32,
    /// `utc`: compute times in UTC instead of local time.
    pub utc: bool,
    /// `at_time` (`atTime`): seconds after midnight for MIDNIGHT and Wn.
    pub at_time: Option<u32>,
    /// `backup_count` (`backupCount`): backups kept (0 keeps all).
    pub backup_count: u32,
}

/// TimedRotatingFileHandler's `when`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// `S`: seconds.
    Seconds,
    /// `M`: minutes.
    Minutes,
    /// `H`: hours.
    Hours,
    /// `D`: days (counted from the start, not aligned to midnight).
    Days,
    /// `MIDNIGHT`: at midnight (or `at_time`).
    Midnight,
    /// `W0`–`W6`: weekly on that day (0 is Monday).
    Weekday(u8),
}

impl HandlerOptions for TimedRotatingFileOptions {
    fn parse(s: &mut Section<'_>) -> Option<TimedRotatingFileOptions> {
        let file = FileOptions::read(s, false);
        let when = match s.string(&["when"]) {
            None => Some(When::Hours),
            Some(w) => When::parse(&w).map_err(|e| s.issue("when", e)).ok(),
        };
        let interval = match s.value(&["interval"]) {
            None => Some(1),
            Some((_, Value::Integer(i))) if (1..=i64::from(u32::MAX)).contains(i) => Some(*i as u32),
            Some((key, v)) => {
                s.issue(key, format!("expected a positive number of units, found {v}"));
                None
            }
        };
        let utc = s.boolean(&["utc"]).unwrap_or(false);
        let at_time = match s.value(&["at_time", "atTime"]) {
            None => None,
            Some((key, v)) => {
                let parsed = match v {
                    Value::String(t) => parse_time_of_day(t),
                    Value::Datetime(d) if d.date.is_none() && d.offset.is_none() => d.time.map(|t| {
                        u32::from(t.hour) * 3600 + u32::from(t.minute) * 60 + u32::from(t.second.unwrap_or(0))
                    }),
                    _ => None,
                };
                if parsed.is_none() {
                    s.issue(key, format!("{v} is not a time of day (write \"HH:MM\" or \"HH:MM:SS\")"));
                }
                parsed
            }
        };
        let backup_count = s.count(&["backup_count", "backupCount"]).unwrap_or(0);
        let schedule = Schedule { when: when?, interval: interval?, utc, at_time, backup_count };
        Some(TimedRotatingFileOptions { file: file?, schedule })
    }

    fn build(&self, cx: &BuildContext<'_>) -> Result<Box<dyn Handler>, HandlerError> {
        let now = logfunnel_protocol::now_ns() / 1_000_000_000;
        let h = TimedRotatingFileHandler::open(&self.file, &self.schedule, cx.formatter(), now);
        Ok(Box::new(h.map_err(|e| cx.named(e))?))
    }

    fn output_file(&self) -> Option<&Path> {
        Some(&self.file.filename)
    }
}

/// `"HH:MM"` or `"HH:MM:SS"` → seconds after midnight.
fn parse_time_of_day(s: &str) -> Option<u32> {
    let parts: Vec<&str> = s.split(':').collect();
    if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.len() != 2) {
        return None;
    }
    let n: Vec<u32> = parts.iter().map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let (h, m, sec) = (n[0], n[1], n.get(2).copied().unwrap_or(0));
    (h < 24 && m < 60 && sec < 60).then_some(h * 3600 + m * 60 + sec)
}

/// Python 3.11's TimedRotatingFileHandler, with one difference: "now" is
/// the record's `created` time, not the hub's clock when it writes the
/// record, so a record logged at 23:59:59.9 lands in that day's file
/// however long it took to reach the hub (and tests can pin time).
#[derive(Debug)]
pub struct TimedRotatingFileHandler {
    file: LogFile,
    formatter: Formatter,
    schedule: Schedule,
    /// The period in seconds (`interval` times the unit).
    period: i64,
    rollover_at: i64,
    delay: bool,
}

impl TimedRotatingFileHandler {
    /// Opens (or, with `delay`, prepares to open) the file. The first
    /// rollover is computed, as Python does, from the file's mtime if it
    /// exists and from `now` otherwise.
    pub fn open(
        options: &FileOptions,
        schedule: &Schedule,
        formatter: Formatter,
        now: i64,
    ) -> Result<TimedRotatingFileHandler, HandlerError> {
        let start = match std::fs::metadata(&options.filename) {
            Ok(meta) => mtime(&meta),
            Err(_) => now,
        };
        let mut file = LogFile::new(&options.filename, true);
        if !options.delay {
            file.open_at_start()?;
        }
        let mut h = TimedRotatingFileHandler {
            file,
            formatter,
            schedule: schedule.clone(),
            period: schedule.when.unit_seconds() * i64::from(schedule.interval),
            rollover_at: 0,
            delay: options.delay,
        };
        h.rollover_at = h.compute_rollover(start);
        Ok(h)
    }

    fn local(&self, t: i64) -> Option<libc::tm> {
        broken_down(t, self.schedule.utc)
    }

    /// `computeRollover`, Python 3.11: S/M/H/D add the period;
    /// MIDNIGHT and Wn go to the next `at_time` (default midnight), and
    /// weekly to the right day, keeping wall-clock time across DST.
    fn compute_rollover(&self, now: i64) -> i64 {
        let mut result = now + self.period;
        let weekday = match self.schedule.when {
            When::Midnight => None,
            When::Weekday(d) => Some(i32::from(d)),
            _ => return result,
        };
        let Some(tm) = self.local(now) else { return result };
        let rotate_ts = self.schedule.at_time.map_or(DAY, i64::from);
        let mut r =
            rotate_ts - (i64::from(tm.tm_hour) * 3600 + i64::from(tm.tm_min) * 60 + i64::from(tm.tm_sec));
        // Python's weekday: Monday is 0.
        let mut day = (tm.tm_wday + 6) % 7;
        if r < 0 {
            r += DAY;
            day = (day + 1) % 7;
        }
        result = now + r;
        if let Some(target) = weekday
            && day != target
        {
            let wait = if day < target { target - day } else { 6 - day + target + 1 };
            let mut next = result + i64::from(wait) * DAY;
            if !self.schedule.utc {
                next += self.dst_shift(tm.tm_isdst, next);
            }
            result = next;
        }
        result
    }

    /// Python's DST adjustment: an hour less when DST starts before `at`,
    /// an hour more when it ends, so rollovers keep their wall-clock time.
    fn dst_shift(&self, dst_now: i32, at: i64) -> i64 {
        match self.local(at) {
            Some(later) if later.tm_isdst != dst_now => {
                if dst_now == 0 {
                    -3600
                } else {
                    3600
                }
            }
            _ => 0,
        }
    }

    /// `doRollover`, Python 3.11, at time `now`.
    fn roll_over(&mut self, now: i64) -> Result<(), HandlerError> {
        self.file.close()?;
        let dst_now = self.local(now).map_or(0, |tm| tm.tm_isdst);
        let start = self.rollover_at - self.period;
        let mut then = self.local(start);
        if !self.schedule.utc
            && let Some(tm) = then
            && tm.tm_isdst != dst_now
        {
            then = self.local(start + if dst_now != 0 { 3600 } else { -3600 });
        }
        let mut suffix = String::new();
        if let Some(tm) = then {
            let fmt = self.schedule.when.suffix();
            strftime_tm(&tm, fmt, fmt.to_bytes().len(), &mut suffix);
        }
        let renamed = rotate(self.file.path(), &suffix, self.schedule.backup_count, self.schedule.when);
        if !self.delay {
            self.file.open()?;
        }
        let mut next = self.compute_rollover(now);
        while next <= now {
            next += self.period;
        }
        if matches!(self.schedule.when, When::Midnight | When::Weekday(_)) && !self.schedule.utc {
            next += self.dst_shift(dst_now, next);
        }
        self.rollover_at = next;
        renamed
    }
}

/// How far past the hub's clock a record's time is believed.
const FUTURE_SLACK_SECS: i64 = 1;

fn wall_clock() -> i64 {
    logfunnel_protocol::now_ns() / 1_000_000_000
}

fn mtime(meta: &std::fs::Metadata) -> i64 {
    use std::os::unix::fs::MetadataExt;
    meta.mtime()
}

/// Renames `base` to `base.SUFFIX` and deletes the backups beyond
/// `backup_count`. Where Python 3.11 deletes an existing `base.SUFFIX`
/// first (and 3.13 stops rotating), the older file is kept and the new
/// backup takes the first free `base.SUFFIX.N`: a rollover never destroys a
/// log that is not due for deletion.
fn rotate(base: &Path, suffix: &str, backup_count: u32, when: When) -> Result<(), HandlerError> {
    let with_suffix = |s: &str| -> PathBuf {
        let mut name = base.as_os_str().to_owned();
        name.push(".");
        name.push(s);
        PathBuf::from(name)
    };
    let mut target = with_suffix(suffix);
    let mut n = 1;
    while target.exists() {
        target = with_suffix(&format!("{suffix}.{n}"));
        n += 1;
    }
    let rotate_err = |context: String, error| HandlerError::Rotate { context, error };
    if base.exists() {
        std::fs::rename(base, &target)
            .map_err(|e| rotate_err(format!("renaming {} to {}", base.display(), target.display()), e))?;
    }
    if backup_count > 0 {
        for old in files_to_delete(base, backup_count, when) {
            std::fs::remove_file(&old)
                .map_err(|e| rotate_err(format!("deleting old backup {}", old.display()), e))?;
        }
    }
    Ok(())
}

/// `getFilesToDelete`, Python 3.11 (no namer): the files beside `base`
/// whose name starts with it and, after the base name's stem and a dot,
/// has a dot-separated part that is a timestamp of this schedule's shape;
/// sorted, all but the newest `backup_count`.
fn files_to_delete(base: &Path, backup_count: u32, when: When) -> Vec<PathBuf> {
    let Some(dir) = base.parent() else { return Vec::new() };
    let Some(base_name) = base.file_name().and_then(|n| n.to_str()) else { return Vec::new() };
    let stem = match base_name.rfind('.') {
        // splitext: a leading dot does not start an extension.
        Some(i) if base_name[..i].chars().any(|c| c != '.') => &base_name[..i],
        _ => base_name,
    };
    let prefix = format!("{stem}.");
    let shape = when.timestamp_shape();
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| {
            name.starts_with(base_name)
                && name
                    .strip_prefix(&prefix)
                    .is_some_and(|rest| rest.split('.').any(|part| matches_shape(part, shape)))
        })
        .map(|name| dir.join(name))
        .collect();
    if found.len() < backup_count as usize {
        return Vec::new();
    }
    found.sort();
    found.truncate(found.len() - backup_count as usize);
    found
}

/// `shape` uses `9` for an ASCII digit; every other byte must match itself.
fn matches_shape(part: &str, shape: &str) -> bool {
    part.len() == shape.len()
        && part.bytes().zip(shape.bytes()).all(|(p, s)| if s == b'9' { p.is_ascii_digit() } else { p == s })
}

impl When {
    /// Python's parsing of `when` (case-insensitive), with its messages.
    pub fn parse(s: &str) -> Result<When, String> {
        let upper = s.to_ascii_uppercase();
        Ok(match upper.as_str() {
            "S" => When::Seconds,
            "M" => When::Minutes,
            "H" => When::Hours,
            "D" => When::Days,
            "MIDNIGHT" => When::Midnight,
            w if w.starts_with('W') => {
                if w.len() != 2 {
                    return Err(format!(
                        "You must specify a day for weekly rollover from 0 to 6 (0 is Monday): {upper}"
                    ));
                }
                match w.as_bytes()[1] {
                    d @ b'0'..=b'6' => When::Weekday(d - b'0'),
                    _ => return Err(format!("Invalid day specified for weekly rollover: {upper}")),
                }
            }
            _ => return Err(format!("Invalid rollover interval specified: {upper}")),
        })
    }

    fn unit_seconds(self) -> i64 {
        match self {
            When::Seconds => 1,
            When::Minutes => 60,
            When::Hours => 3600,
            When::Days | When::Midnight => DAY,
            When::Weekday(_) => 7 * DAY,
        }
    }

    fn suffix(self) -> &'static CStr {
        match self {
            When::Seconds => c"%Y-%m-%d_%H-%M-%S",
            When::Minutes => c"%Y-%m-%d_%H-%M",
            When::Hours => c"%Y-%m-%d_%H",
            When::Days | When::Midnight | When::Weekday(_) => c"%Y-%m-%d",
        }
    }

    fn timestamp_shape(self) -> &'static str {
        match self {
            When::Seconds => "9999-99-99_99-99-99",
            When::Minutes => "9999-99-99_99-99",
            When::Hours => "9999-99-99_99",
            When::Days | When::Midnight | When::Weekday(_) => "9999-99-99",
        }
    }
}

impl Handler for TimedRotatingFileHandler {
    fn emit(&mut self, ctx: &RecordContext<'_>) -> Result<(), HandlerError> {
        let mut now = ctx.record.created_ns.div_euclid(1_000_000_000);
        if now >= self.rollover_at {
            // A record dated past the hub's own clock (a client's clock that
            // jumped ahead) counts as now: it must not move the schedule
            // years ahead and stop rotation for everyone after it.
            now = now.min(wall_clock() + FUTURE_SLACK_SECS);
        }
        if now >= self.rollover_at {
            let special = std::fs::metadata(self.file.path()).is_ok_and(|m| !m.is_file());
            if special {
                // Python never rotates /dev/null or a FIFO.
                self.rollover_at = self.compute_rollover(now);
            } else {
                match self.roll_over(now) {
                    Ok(()) => {}
                    // Written anyway; the failed rename or delete is reported.
                    Err(e @ HandlerError::Rotate { .. }) => {
                        self.file.format(&mut self.formatter, ctx)?;
                        self.file.accept_and_write_if_full()?;
                        return Err(e);
                    }
                    Err(e) => return Err(e.with_current_record()),
                }
            }
        }
        self.file.format(&mut self.formatter, ctx)?;
        self.file.accept_and_write_if_full()
    }

    fn flush(&mut self) -> Result<(), HandlerError> {
        self.file.write_out()
    }

    fn reopen(&mut self) -> Result<(), HandlerError> {
        self.file.reopen()
    }

    fn close(&mut self) -> Result<(), HandlerError> {
        self.file.close()
    }

    fn journal_target(&self) -> Option<&Path> {
        Some(self.file.path())
    }

    fn attach_journal(&mut self, journal: &crate::journal::Shared) {
        self.file.attach_journal(journal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_shapes_match_pythons_patterns() {
        assert!(matches_shape("2023-11-14_22-13-20", When::Seconds.timestamp_shape()));
        assert!(!matches_shape("2023-11-14_22-13", When::Seconds.timestamp_shape()));
        assert!(matches_shape("2023-11-14", When::Midnight.timestamp_shape()));
        assert!(!matches_shape("2023-11-1x", When::Days.timestamp_shape()));
        assert!(!matches_shape("٢023-11-14", When::Days.timestamp_shape()));
    }

    #[test]
    fn old_backups_are_chosen_as_python_does() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("app.log");
        for name in [
            "app.log",
            "app.log.2023-11-14_22-13-20",
            "app.log.2023-11-14_22-13-21",
            "app.log.2023-11-14_22-13-22",
            "app.log.2023-11-14_22-13-23",
            "app.log.notadate",
            "other.log.2023-11-14_22-13-19",
        ] {
            std::fs::write(dir.path().join(name), "x").unwrap();
        }
        let doomed = files_to_delete(&base, 2, When::Seconds);
        let names: Vec<_> = doomed.iter().map(|p| p.file_name().unwrap().to_str().unwrap()).collect();
        assert_eq!(names, ["app.log.2023-11-14_22-13-20", "app.log.2023-11-14_22-13-21"]);
        assert!(files_to_delete(&base, 5, When::Seconds).is_empty());
    }
}
