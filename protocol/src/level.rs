//! Python's numeric levels, plus Rust's TRACE.

use std::borrow::Cow;

/// Python's level numbers (`logging.DEBUG` is 10 …), with Rust's TRACE at 5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Level(pub u32);

impl Level {
    /// Python's NOTSET: a logger with it defers to its parent.
    pub const NOTSET: Level = Level(0);
    /// Rust's `log::Level::Trace`; Python has no name for 5.
    pub const TRACE: Level = Level(5);
    /// `logging.DEBUG`.
    pub const DEBUG: Level = Level(10);
    /// `logging.INFO`.
    pub const INFO: Level = Level(20);
    /// `logging.WARNING`.
    pub const WARNING: Level = Level(30);
    /// `logging.ERROR`.
    pub const ERROR: Level = Level(40);
    /// `logging.CRITICAL`.
    pub const CRITICAL: Level = Level(50);

    /// The level for a `log` crate level.
    pub fn from_log(level: u8) -> Level {
        // log::Level as usize: Error=1, Warn=2, Info=3, Debug=4, Trace=5.
        match level {
            1 => Level::ERROR,
            2 => Level::WARNING,
            3 => Level::INFO,
            4 => Level::DEBUG,
            _ => Level::TRACE,
        }
    }
}

/// Python's `getLevelName(n)`: the registered name, or `"Level n"`.
pub fn level_name(levelno: u32) -> Cow<'static, str> {
    match levelno {
        0 => "NOTSET".into(),
        5 => "TRACE".into(),
        10 => "DEBUG".into(),
        20 => "INFO".into(),
        30 => "WARNING".into(),
        40 => "ERROR".into(),
        50 => "CRITICAL".into(),
        n => format!("Level {n}").into(),
    }
}

/// Parses a level as Python's `_checkLevel` does (a registered name or a
/// number), also accepting lower case and Rust's `WARN`/`TRACE`.
pub fn parse_level(text: &str) -> Option<Level> {
    let t = text.trim();
    if let Ok(n) = t.parse::<u32>() {
        return Some(Level(n));
    }
    Some(match t.to_ascii_uppercase().as_str() {
        "NOTSET" => Level::NOTSET,
        "TRACE" => Level::TRACE,
        "DEBUG" => Level::DEBUG,
        "INFO" => Level::INFO,
        "WARNING" | "WARN" => Level::WARNING,
        "ERROR" => Level::ERROR,
        "CRITICAL" | "FATAL" => Level::CRITICAL,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_levels_are_named_like_python() {
        for l in [0, 5, 10, 20, 30, 40, 50] {
            assert_eq!(parse_level(&level_name(l)), Some(Level(l)));
        }
        assert_eq!(level_name(25), "Level 25");
        assert_eq!(parse_level("warn"), Some(Level::WARNING));
        assert_eq!(parse_level("15"), Some(Level(15)));
        assert_eq!(parse_level("LOUD"), None);
    }
}
