//! Format strings of the three styles (`%`, `{`, `$`), parsed once into
//! segments: validated as `Formatter(..., validate=True)` validates them,
//! and refused where they could never format a record (see the crate docs).

use crate::render::{Conv, Printf, Scratch, Spec, brace, parse_precision, parse_spec, parse_width, printf};
use crate::unicode::py_repr;
use crate::values::{Attr, attr_name};

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

#[derive(Debug, Clone)]
pub(crate) enum Segment {
    Lit(String),
    Field(Field),
}

#[derive(Debug, Clone)]
pub(crate) struct Field {
    pub(crate) attr: Attr,
    pub(crate) render: Render,
}

#[derive(Debug, Clone)]
pub(crate) enum Render {
    /// `str(value)`: `$` fields, `%(x)s`, `{x}`.
    Plain,
    Printf(Printf),
    Brace {
        conv: Option<Conv>,
        spec: BraceSpec,
    },
}

#[derive(Debug, Clone)]
pub(crate) enum BraceSpec {
    Fixed(Spec),
    /// A spec with `{field}`s in it (`{message:>{width}}`), built per record.
    Nested(Vec<SpecPart>),
}

#[derive(Debug, Clone)]
pub(crate) enum SpecPart {
    Lit(String),
    Field(Attr),
}

fn is_word(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
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

pub(crate) fn parse_percent(fmt: &str) -> Result<Vec<Segment>, String> {
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

/// `python_only`: only what `StrFormatStyle.validate` checks (no segments).
pub(crate) fn parse_brace(fmt: &str, python_only: bool) -> Result<Vec<Segment>, String> {
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
pub(crate) fn parse_dollar(fmt: &str) -> Result<Vec<Segment>, String> {
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
pub(crate) fn check_fixed_types(segments: &[Segment]) -> Result<(), String> {
    let mut scratch = Scratch::default();
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
            Render::Printf(p) => printf(&mut sink, sample, p, &mut scratch),
            Render::Brace { conv, spec: BraceSpec::Fixed(spec) } => {
                brace(&mut sink, sample, *conv, spec, &mut scratch)
            }
            Render::Brace { .. } => Ok(()),
        };
        result.map_err(|e| format!("{e} (for field {})", py_repr(attr_name(&field.attr))))?;
        sink.clear();
    }
    Ok(())
}
