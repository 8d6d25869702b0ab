//! The project's documents stand alone: every link, file path, heading
//! anchor and test name they mention exists in this repository, and none
//! points at notes or tickets outside it.

use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Files under `dir` (relative to the root) whose names end in one of `exts`.
fn files(dir: &str, exts: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root().join(dir)];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if p.is_dir() && !["target", "artifacts", "corpus", ".git"].contains(&name.as_str()) {
                stack.push(p);
            } else if exts.iter().any(|x| name.ends_with(x)) {
                out.push(p);
            }
        }
    }
    out
}

fn documents() -> Vec<PathBuf> {
    let mut docs = vec![root().join("README.md")];
    docs.extend(files("docs", &[".md"]));
    docs.extend(files("contrib", &[""]));
    docs
}

/// GitHub's anchor for a heading: lower case, spaces to '-', most
/// punctuation dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(text: &str) -> Vec<String> {
    text.lines().filter(|l| l.starts_with('#')).map(|l| slug(l.trim_start_matches('#'))).collect()
}

/// `[text](target)` links.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("](") {
        rest = &rest[i + 2..];
        if let Some(end) = rest.find(')') {
            out.push(rest[..end].to_owned());
        }
    }
    out
}

/// Repository paths mentioned in the text (`docs/X.md`, `hub/src/y.rs`…).
fn paths(text: &str) -> Vec<String> {
    const TOP: [&str; 13] = [
        "src/",
        "client/",
        "formatter/",
        "hub/",
        "protocol/",
        "tests/",
        "benches/",
        "docs/",
        "scripts/",
        "examples/",
        "contrib/",
        "fuzz/",
        ".ci/",
    ];
    let mut out = Vec::new();
    for (i, _) in text.char_indices() {
        let before = text[..i].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || "/._-~$".contains(c)) {
            continue;
        }
        let Some(top) = TOP.iter().find(|t| text[i..].starts_with(**t)) else { continue };
        let path: String =
            text[i..].chars().take_while(|c| c.is_alphanumeric() || "/._-<>*".contains(*c)).collect();
        let dir = path.trim_end_matches('.').ends_with('/');
        let path = path.trim_end_matches(['.', '/']);
        // A file (with an extension) or a directory (`hub/src/handlers/`);
        // not `protocol/encode_record` (a benchmark's name), placeholders
        // (`<name>`) or globs.
        let file = path.rsplit('/').next().is_some_and(|last| last.contains('.'));
        if path.len() > top.len() && (file || dir) && !path.contains(['<', '*']) {
            out.push(path.to_owned());
        }
    }
    out
}

#[test]
fn every_link_path_and_anchor_in_the_documents_resolves() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for doc in documents() {
        let text = std::fs::read_to_string(&doc).unwrap();
        let name = doc.strip_prefix(root()).unwrap().display().to_string();
        for link in links(&text) {
            if link.starts_with("http") || link.starts_with("mailto:") {
                continue;
            }
            let (file, anchor) = link.split_once('#').unwrap_or((&link, ""));
            let target = if file.is_empty() { doc.clone() } else { doc.parent().unwrap().join(file) };
            checked += 1;
            match std::fs::read_to_string(&target) {
                Err(_) if !target.is_dir() => problems.push(format!("{name}: link to {link}: no such file")),
                Ok(t) if !anchor.is_empty() && !anchors(&t).contains(&anchor.to_owned()) => {
                    problems.push(format!("{name}: link to {link}: no such heading"))
                }
                _ => {}
            }
        }
        for path in paths(&text) {
            checked += 1;
            if !root().join(&path).exists() {
                problems.push(format!("{name}: mentions {path}, which does not exist"));
            }
        }
        // `faults::some_test` names a test in tests/faults.rs.
        for (i, _) in text.match_indices("::") {
            let module: String =
                text[..i].chars().rev().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            let module: String = module.chars().rev().collect();
            let test: String =
                text[i + 2..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            let file = root().join("tests").join(format!("{module}.rs"));
            if test.contains('_') && file.exists() {
                checked += 1;
                let source = std::fs::read_to_string(&file).unwrap();
                if !source.contains(&format!("fn {test}(")) {
                    problems
                        .push(format!("{name}: names test {module}::{test}, which tests/{module}.rs lacks"));
                }
            }
        }
    }
    assert!(checked > 50, "only {checked} references found: is the reader broken?");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn nothing_points_outside_the_repository() {
    let mut sources = documents();
    for dir in ["src", "client", "hub", "protocol", "tests", "benches", "examples", "scripts", "fuzz"] {
        sources.extend(files(dir, &[".rs", ".toml", ".py", "test", "compare"]));
    }
    let me = root().join("tests/docs.rs");
    let outside = [
        "DESIGN.md",
        "performance.md",
        "python-logging.md",
        "reliability.md",
        "crates.md",
        "../shared",
        "shared/reference",
    ];
    let mut problems = Vec::new();
    for file in sources.iter().filter(|f| **f != me) {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let name = file.strip_prefix(root()).unwrap().display().to_string();
        for word in outside {
            if text.contains(word) {
                problems.push(format!("{name}: mentions {word}"));
            }
        }
        // A ticket of this project is no reference; an upstream project's
        // numbered issue ("bincode issue 764") is.
        if file.extension().is_none_or(|e| e != "md") {
            continue;
        }
        let lower = text.to_lowercase();
        for (i, _) in lower.match_indices("issue") {
            let rest = &lower[i + "issue".len()..];
            if rest.starts_with(|c: char| c.is_alphanumeric() && c != 's') {
                continue; // "issued", …
            }
            let number = rest.trim_start_matches('s').trim_start().starts_with(|c: char| c.is_ascii_digit());
            let project = lower[..i]
                .split_whitespace()
                .next_back()
                .is_some_and(|w| !["the", "this", "an", "an"].contains(&w));
            if !(number && project) {
                let line = text[..i].lines().count().max(1);
                problems.push(format!(
                    "{name}:{line}: mentions an issue: {}",
                    text.lines().nth(line - 1).unwrap_or("")
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_readers_find_what_they_should() {
    assert_eq!(slug("Summary: the performance targets"), "summary-the-performance-targets");
    assert_eq!(slug(" `[hub]`"), "hub");
    assert_eq!(
        links("see [a](docs/A.md#x) and [b](https://e.invalid)"),
        ["docs/A.md#x", "https://e.invalid"]
    );
    assert_eq!(
        paths(
            "in `hub/src/worker.rs`, docs/CONFIG.md. Not a/src/x, ~/src/y or hub/src/handlers/<name>_handler.rs"
        ),
        ["hub/src/worker.rs", "docs/CONFIG.md"]
    );
}
