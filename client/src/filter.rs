//! Per-target levels on the worker side: `LOGFUNNEL_LEVEL` in the syntax of
//! `RUST_LOG` (`info,app.db=debug,hyper=warn`), so that records the hub
//! would filter away are never formatted or sent.
//!
//! A directive is `LEVEL` (the default for every target), `TARGET=LEVEL`, or
//! `TARGET` alone (every level of that target). A target covers itself and
//! its children: `app.db` covers `app.db`, `app.db.pool` and `app.db::pool`,
//! not `app.dbx` (Python's logger tree; `RUST_LOG` would also match
//! `app.dbx`). The longest matching target decides; a later directive for
//! the same target replaces an earlier one, as in `env_logger`.

use std::fmt;
use std::str::FromStr;

use log::{Level, LevelFilter};

/// Parsed level directives; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directives {
    default: LevelFilter,
    /// Longest target first, so the first match is the most specific.
    targets: Vec<(String, LevelFilter)>,
}

/// A directive that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("directive {index} ({directive:?}): {reason}")]
pub struct DirectiveError {
    /// 1-based position among the comma-separated directives.
    pub index: usize,
    /// The directive as written.
    pub directive: String,
    /// What is wrong with it.
    pub reason: String,
}

const LEVELS_HINT: &str = "use off, error, warn, info, debug or trace";

fn parse_level(text: &str) -> Option<LevelFilter> {
    Some(match text.to_ascii_lowercase().as_str() {
        "off" => LevelFilter::Off,
        "error" => LevelFilter::Error,
        "warn" | "warning" => LevelFilter::Warn,
        "info" => LevelFilter::Info,
        "debug" => LevelFilter::Debug,
        "trace" => LevelFilter::Trace,
        _ => return None,
    })
}

impl Directives {
    /// One level for every target.
    pub fn all(level: LevelFilter) -> Directives {
        Directives { default: level, targets: Vec::new() }
    }

    /// The most verbose level any target may log at (what `log`'s global
    /// maximum is set to, so that other calls stop in the macro).
    pub fn max_level(&self) -> LevelFilter {
        self.targets.iter().map(|(_, l)| *l).fold(self.default, Ord::max)
    }

    /// The level that applies to `target`.
    #[inline]
    pub fn level_for(&self, target: &str) -> LevelFilter {
        if self.targets.is_empty() {
            return self.default;
        }
        self.targets.iter().find(|(t, _)| covers(t, target)).map_or(self.default, |(_, l)| *l)
    }

    /// Whether a record of `target` at `level` is sent.
    #[inline]
    pub fn enabled(&self, target: &str, level: Level) -> bool {
        level <= self.level_for(target)
    }
}

/// Whether directive target `t` covers record target `target`.
fn covers(t: &str, target: &str) -> bool {
    match target.strip_prefix(t) {
        Some(rest) => rest.is_empty() || rest.starts_with('.') || rest.starts_with("::"),
        None => false,
    }
}

impl FromStr for Directives {
    type Err = DirectiveError;

    fn from_str(text: &str) -> Result<Directives, DirectiveError> {
        let mut out = Directives::all(LevelFilter::Trace);
        let mut targets: Vec<(String, LevelFilter)> = Vec::new();
        for (i, raw) in text.split(',').enumerate() {
            let d = raw.trim();
            if d.is_empty() {
                continue;
            }
            let fail = |reason: String| DirectiveError { index: i + 1, directive: d.to_owned(), reason };
            if d.starts_with('/') || d.contains('/') {
                return Err(fail("filters by regular expression (\"/…\") are not supported".into()));
            }
            let (target, level) = match d.split_once('=') {
                None => match parse_level(d) {
                    Some(level) => {
                        out.default = level;
                        continue;
                    }
                    // A bare name is a target at every level, as in RUST_LOG.
                    None => (d, LevelFilter::Trace),
                },
                Some((t, l)) => {
                    let l = l.trim();
                    let level = parse_level(l)
                        .ok_or_else(|| fail(format!("{l:?} is not a level ({LEVELS_HINT})")))?;
                    (t.trim(), level)
                }
            };
            if target.is_empty() {
                return Err(fail(format!(
                    "no target before '=' (write TARGET=LEVEL, or a level alone: {LEVELS_HINT})"
                )));
            }
            if let Some(bad) = target.chars().find(|c| c.is_whitespace() || *c == '=') {
                return Err(fail(format!("{bad:?} in a target name (write TARGET=LEVEL)")));
            }
            targets.retain(|(t, _)| t != target);
            targets.push((target.to_owned(), level));
        }
        // Stable: equal lengths keep their order (they are distinct targets).
        targets.sort_by_key(|(t, _)| std::cmp::Reverse(t.len()));
        out.targets = targets;
        Ok(out)
    }
}

impl fmt::Display for Directives {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = |l: LevelFilter| l.as_str().to_ascii_lowercase();
        write!(f, "{}", name(self.default))?;
        for (t, l) in self.targets.iter().rev() {
            write!(f, ",{t}={}", name(*l))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> Directives {
        text.parse().unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    #[test]
    fn the_most_specific_target_decides_and_children_inherit() {
        let f = d("info,app.db=debug,hyper=warn,app=error");
        assert_eq!(f.level_for("other"), LevelFilter::Info);
        assert_eq!(f.level_for("app"), LevelFilter::Error);
        assert_eq!(f.level_for("app.web"), LevelFilter::Error);
        assert_eq!(f.level_for("app.db"), LevelFilter::Debug);
        assert_eq!(f.level_for("app.db.pool"), LevelFilter::Debug);
        assert_eq!(f.level_for("app.db::pool"), LevelFilter::Debug);
        assert_eq!(f.level_for("app.dbx"), LevelFilter::Error, "a prefix is not a child");
        assert_eq!(f.level_for("hyper::client::conn"), LevelFilter::Warn);
        assert_eq!(f.level_for("hyperx"), LevelFilter::Info);
        assert_eq!(f.max_level(), LevelFilter::Debug);
        assert!(f.enabled("app.db", Level::Debug));
        assert!(!f.enabled("app.db", Level::Trace));
        assert!(!f.enabled("hyper", Level::Info));
    }

    #[test]
    fn rust_log_forms_are_accepted() {
        assert_eq!(d("").level_for("x"), LevelFilter::Trace);
        assert_eq!(d("WARN").level_for("x"), LevelFilter::Warn);
        assert_eq!(d("warning").level_for("x"), LevelFilter::Warn, "Python's spelling");
        assert_eq!(d("off").max_level(), LevelFilter::Off);
        // A bare target: every level of it; the default stays.
        let f = d("error, app ,");
        assert_eq!((f.level_for("app.x"), f.level_for("y")), (LevelFilter::Trace, LevelFilter::Error));
        // Later directives win, for the default and for a target.
        let f = d("info,a=debug,warn,a=error");
        assert_eq!((f.level_for("a"), f.level_for("b")), (LevelFilter::Error, LevelFilter::Warn));
        assert_eq!(f.to_string(), "warn,a=error");
        assert_eq!(d(&f.to_string()), f);
    }

    #[test]
    fn bad_directives_name_the_directive_and_the_problem() {
        let cases = [
            ("info,app.db=loud", 2, "\"loud\" is not a level"),
            ("=info", 1, "no target before '='"),
            ("app=", 1, "\"\" is not a level"),
            ("info,a b=info", 2, "' ' in a target name"),
            ("a=b=c", 1, "\"b=c\" is not a level"),
            ("info,app/foo", 2, "regular expression"),
        ];
        for (text, index, reason) in cases {
            let e = text.parse::<Directives>().expect_err(text);
            assert_eq!(e.index, index, "{text}: {e}");
            assert!(e.reason.contains(reason), "{text}: {e}");
            assert!(e.to_string().starts_with(&format!("directive {index} (")), "{e}");
        }
    }

    /// Random directive sets against a plain restatement of the rule: the
    /// longest covering target's level, else the default.
    #[test]
    fn matches_a_naive_model_on_random_targets() {
        let names = ["a", "a.b", "a.b.c", "a::b", "ab", "b", "a.bc", "b.a"];
        let levels = [LevelFilter::Off, LevelFilter::Error, LevelFilter::Info, LevelFilter::Trace];
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for _ in 0..2000 {
            let default = levels[next(levels.len())];
            let mut text = default.as_str().to_owned();
            let mut model: Vec<(&str, LevelFilter)> = Vec::new();
            for _ in 0..next(4) {
                let (t, l) = (names[next(names.len())], levels[next(levels.len())]);
                text += &format!(",{t}={l}");
                model.retain(|(x, _)| *x != t);
                model.push((t, l));
            }
            let f = d(&text);
            for target in names.iter().chain(&["a.b.c.d", "c", "a.b::x"]) {
                let want = model
                    .iter()
                    .filter(|(t, _)| {
                        *target == *t
                            || target.starts_with(&format!("{t}."))
                            || target.starts_with(&format!("{t}::"))
                    })
                    .max_by_key(|(t, _)| t.len())
                    .map_or(default, |(_, l)| *l);
                assert_eq!(f.level_for(target), want, "{text:?} for {target:?}");
            }
        }
    }
}
