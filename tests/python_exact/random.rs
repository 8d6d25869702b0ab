//! A seeded generator of format strings, datefmts and records for the
//! formatter's differential test (python_exact::formatter). SplitMix64: the
//! same seed gives the same cases on every machine.

use std::sync::LazyLock;

use logfunnel_hub::formatter::Style;
use logfunnel_protocol::Value as RecordValue;
use logfunnel_protocol::python::RECORD_ATTRS;

use super::formatter::{Rec, Spec};

/// LogRecord attributes (the library's list, then those Python adds and
/// the hub's own) a field may name.
static ATTRS: LazyLock<Vec<&str>> = LazyLock::new(|| {
    RECORD_ATTRS.iter().chain(&["message", "asctime", "hostname", "taskName"]).copied().collect()
});

/// Extras a record may carry (each is missing from some records).
const EXTRAS: &[&str] = &["user", "n", "ratio", "flag", "big", "s2"];

/// Small integers, for nested widths and precisions (`{message:>{n}}`): a
/// huge one would make Python build a string of that size.
const INT_ATTRS: &[&str] = &["levelno", "n"];

const WORDS: &[&str] = &[
    "a",
    "hello",
    "GET /index.html",
    "café",
    "naïve ☕",
    "日本語",
    "😀",
    "it's",
    "say \"hi\"",
    "back\\slash",
    "tab\there",
    "line\nbreak",
    "\r",
    "\u{1}\u{7f}",
    "\u{200b}",
    "\u{a0}",
    "\u{301}",
    "\u{2028}",
    "\u{85}",
    " ",
    "",
    "0",
    "-12.5e3",
    "{x}",
    "%(x)s",
    "$x",
];

const DATE_PARTS: &[&str] = &[
    "%Y", "%m", "%d", "%H", "%M", "%S", "%j", "%a", "%A", "%b", "%B", "%p", "%Z", "%z", "%y", "%I", "%U",
    "%w", "%c", "%x", "%X", "%%", "%f", "%s", "%e", "%G", "%V", "%u", "%D", "%T", "%n", " ", "-", ":", "T",
    ".", ",", "é", "日", "at ",
];

pub(crate) struct Gen(u64);

impl Gen {
    pub(crate) fn new(seed: u64) -> Gen {
        Gen(seed)
    }

    fn next(&mut self) -> u64 {
        // SplitMix64.
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub(crate) fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }

    fn text(&mut self, max_words: u64) -> String {
        (0..self.below(max_words + 1)).map(|_| self.pick(WORDS)).collect()
    }

    fn float(&mut self) -> f64 {
        match self.below(9) {
            0 => f64::from_bits(self.next()),
            1 => self.pick(&[0.0, -0.0, 0.5, 2.5, -1.5, 1e16, 1e17, 1e-5, 1e22, 123456.789, 0.1, 1.0 / 3.0]),
            2 => {
                self.pick(&[f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 5e-324, f64::MAX, f64::MIN_POSITIVE])
            }
            // Values whose shortest digits end on a tie.
            3 => (self.below(1 << 50) as f64 + 0.25) * self.pick(&[1.0, 4.0, 16.0, -1.0]),
            4 => (self.below(1 << 40) as f64) / 1024.0,
            5 => (self.next() as i64 as f64) / 1e9,
            6 => self.below(2_000_000) as f64 / 1000.0 - 1000.0,
            7 => 10f64.powi(self.below(600) as i32 - 300) * (self.below(1000) as f64 + 1.0),
            _ => (1_600_000_000_000_000_000 + self.below(300_000_000_000_000_000) as i64) as f64 / 1e9,
        }
    }

    fn value(&mut self) -> RecordValue {
        match self.below(10) {
            0..=2 => RecordValue::Str(self.text(3)),
            3 => RecordValue::I64(self.pick(&[
                0,
                1,
                -1,
                42,
                255,
                0x10FFFF,
                0x110000,
                i64::MIN,
                i64::MAX,
                1_234_567,
            ])),
            4 => RecordValue::I64(self.below(200_000) as i64 - 100_000),
            5 => RecordValue::U64(self.pick(&[u64::MAX, 10_000_000_000, 0, 7])),
            6 => RecordValue::Bool(self.chance(0.5)),
            _ => RecordValue::F64(self.float()),
        }
    }

    fn created_ns(&mut self) -> i64 {
        let second = match self.below(6) {
            0 => -(self.below(2_000_000_000) as i64),
            1 => 0,
            2 => self.below(4_000_000_000) as i64,
            _ => 1_600_000_000 + self.below(200_000_000) as i64,
        };
        let ns = match self.below(6) {
            0 => self.pick(&[0, 1, 999_999_999, 999_500_000, 500_000, 3_906_250, 999_000_000, 123_000_000]),
            1 => self.below(1000) as i64 * 1_000_000,
            2 => self.below(1000) as i64 * 1_000_000 + self.pick(&[1, 999_999, 499_999, 500_000]),
            _ => self.below(1_000_000_000) as i64,
        };
        second * 1_000_000_000 + ns
    }

    pub(crate) fn record(&mut self) -> Rec {
        let created = self.created_ns();
        let start = match self.below(4) {
            0 => created,
            1 => created + self.below(10_000_000_000) as i64,
            _ => created - self.below(10_000_000_000_000) as i64,
        };
        let mut r = Rec::new(created, start);
        let rec = &mut r.record;
        let any_level = self.below(100) as u32;
        rec.levelno = self.pick(&[0, 5, 10, 20, 25, 30, 40, 50, 1000, any_level]);
        rec.name = self
            .pick(&["app", "app.db.pool", "", "root", "x y", "日本.モジュール", "a\nb", "deep.er.name"])
            .into();
        rec.message = self.text(4);
        rec.pathname = if self.chance(0.2) {
            None
        } else {
            Some(
                self.pick(&[
                    "/srv/app/x.py",
                    "relative/.hidden",
                    "C:\\x\\y.py",
                    "noext",
                    "/a/b.tar.gz",
                    ".bashrc",
                    "/",
                ])
                .into(),
            )
        };
        let any_line = self.below(100_000) as u32;
        rec.lineno = self.pick(&[0, 1, 42, 65, 4_000_000_000, any_line]);
        rec.func_name = if self.chance(0.2) {
            None
        } else {
            Some(self.pick(&["<module>", "handle", "émoji😀"]).into())
        };
        rec.process = self.below(u64::from(u32::MAX)) as u32;
        rec.thread = self.next() >> self.below(64);
        rec.process_name = self.chance(0.5).then(|| self.pick(&["Worker-1", "SpawnProcess-3"]).into());
        rec.thread_name = self.chance(0.5).then(|| self.pick(&["MainThread", "pool-2 ☕"]).into());
        rec.exc_text = match self.below(5) {
            0 => Some(String::new()),
            1 => Some("Traceback (most recent call last):\n  File \"x.py\"\nValueError: boom".into()),
            2 => Some("ends with a newline\n".into()),
            _ => None,
        };
        for key in EXTRAS {
            if self.chance(0.8) {
                let v = if *key == "n" { RecordValue::I64(self.below(45) as i64 - 4) } else { self.value() };
                rec.extra.push(((*key).into(), v));
            }
        }
        r
    }

    fn name(&mut self) -> &'static str {
        if self.chance(0.35) { self.pick(EXTRAS) } else { self.pick(&ATTRS) }
    }

    fn percent_field(&mut self) -> String {
        let mut f = format!("%({})", self.name());
        for flag in ["#", "0", "+", " ", "-"] {
            if self.chance(0.12) {
                f.push_str(flag);
            }
        }
        if self.chance(0.3) {
            f.push_str(&self.below(30).to_string());
        }
        if self.chance(0.3) {
            f.push('.');
            if self.chance(0.9) {
                f.push_str(&self.below(20).to_string());
            }
        }
        if self.chance(0.04) {
            f.push(self.pick(&['h', 'l', 'L']));
        }
        let conv = if self.chance(0.45) {
            's'
        } else if self.chance(0.02) {
            self.pick(&['%', 'q', 'z', 'S'])
        } else {
            self.pick(&['d', 'i', 'o', 'u', 'x', 'X', 'e', 'E', 'f', 'F', 'g', 'G', 'c', 'r', 'a'])
        };
        f.push(conv);
        f
    }

    fn count_or_field(&mut self, nested: bool) -> String {
        if nested && self.chance(0.15) {
            format!("{{{}}}", self.pick(INT_ATTRS))
        } else {
            self.below(25).to_string()
        }
    }

    fn brace_field(&mut self) -> String {
        let mut f = format!("{{{}", self.name());
        if self.chance(0.2) {
            f.push('!');
            f.push(if self.chance(0.97) { self.pick(&['r', 's', 'a']) } else { 'x' });
        }
        if self.chance(0.6) {
            f.push(':');
            if self.chance(0.25) {
                if self.chance(0.5) {
                    f.push(self.pick(&['*', 'x', '0', 'é', ' ', '{']));
                }
                f.push(self.pick(&['<', '>', '=', '^']));
            }
            if self.chance(0.2) {
                f.push(self.pick(&['+', '-', ' ']));
            }
            if self.chance(0.1) {
                f.push('#');
            }
            if self.chance(0.15) {
                f.push('0');
            }
            if self.chance(0.35) {
                let w = self.count_or_field(true);
                f.push_str(&w);
            }
            if self.chance(0.15) {
                f.push(self.pick(&[',', '_']));
            }
            if self.chance(0.3) {
                f.push('.');
                let p = self.count_or_field(true);
                f.push_str(&p);
            }
            if self.chance(0.5) {
                f.push(
                    self.pick(&['b', 'c', 'd', 'e', 'E', 'f', 'F', 'g', 'G', 'n', 'o', 's', 'x', 'X', '%']),
                );
            }
        }
        f.push('}');
        f
    }

    fn dollar_field(&mut self) -> String {
        let name = self.name();
        if self.chance(0.5) { format!("${{{name}}}") } else { format!("${name}") }
    }

    /// Literal text in `style`: its special characters escaped.
    fn literal(&mut self, style: Style) -> String {
        let t = self.text(2);
        match style {
            Style::Percent => t.replace('%', "%%"),
            Style::Brace => t.replace('{', "{{").replace('}', "}}"),
            Style::Dollar => t.replace('$', "$$"),
        }
    }

    fn datefmt(&mut self) -> Option<String> {
        match self.below(10) {
            0..=4 => None,
            5 => Some(String::new()),
            _ => Some((0..1 + self.below(6)).map(|_| self.pick(DATE_PARTS)).collect()),
        }
    }

    pub(crate) fn spec(&mut self) -> Spec {
        let style = match self.below(20) {
            0..=9 => Style::Percent,
            10..=16 => Style::Brace,
            _ => Style::Dollar,
        };
        let datefmt = self.datefmt();
        if self.chance(0.03) {
            return Spec::Text { fmt: self.chance(0.5).then(String::new), datefmt, style };
        }
        let mut fmt = String::new();
        for _ in 0..1 + self.below(5) {
            if self.chance(0.35) {
                let lit = self.literal(style);
                fmt.push_str(&lit);
            } else {
                let field = match style {
                    Style::Percent => self.percent_field(),
                    Style::Brace => self.brace_field(),
                    Style::Dollar => self.dollar_field(),
                };
                fmt.push_str(&field);
            }
        }
        if self.chance(0.04) {
            // Cut somewhere: incomplete fields, stray braces.
            let cut = self.below(fmt.chars().count() as u64 + 1) as usize;
            fmt = fmt.chars().take(cut).collect();
        }
        Spec::Text { fmt: Some(fmt), datefmt, style }
    }
}
