//! docs/PROTOCOL.md against the code: bincode writes fields in declaration
//! order with no names, so the documented field list *is* the layout. The
//! structs are read from their source files (every `pub struct` of
//! `stats.rs`, and `Record`), so a field or a struct added later is caught
//! here until the document describes it.

use std::path::Path;

/// `(field, type)` of each `pub` field of `pub struct name { … }` in `src`.
fn struct_fields(src: &str, name: &str) -> Vec<(String, String)> {
    let start = src.find(&format!("pub struct {name} {{")).unwrap_or_else(|| panic!("no struct {name}"));
    let body = &src[start..];
    let body = &body[..body.find("\n}").expect("end of struct")];
    body.lines()
        .filter_map(|l| {
            let l = l.trim().strip_prefix("pub ")?;
            let (field, ty) = l.split_once(": ")?;
            Some((field.to_owned(), ty.trim_end_matches(',').to_owned()))
        })
        .collect()
}

/// The names of every `pub struct` in `src`.
fn struct_names(src: &str) -> Vec<String> {
    src.lines()
        .filter_map(|l| l.strip_prefix("pub struct ")?.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// `(field, type)` rows of the table under heading `### name` or `#### name`.
fn doc_fields(doc: &str, name: &str) -> Vec<(String, String)> {
    let heading = doc
        .lines()
        .position(|l| l.trim_start_matches('#').trim() == name && l.starts_with("###"))
        .unwrap_or_else(|| panic!("docs/PROTOCOL.md has no section \"### {name}\" or \"#### {name}\""));
    let tick = |cell: &str| cell.trim().trim_matches('`').to_owned();
    doc.lines()
        .skip(heading + 1)
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2) // header and separator
        .map(|row| {
            let cells: Vec<&str> = row.split('|').collect();
            (tick(cells[1]), tick(cells[2]))
        })
        .collect()
}

fn read(path: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn protocol_md_lists_every_wire_field_in_order_with_its_type() {
    let doc = read("docs/PROTOCOL.md");
    let stats = read("protocol/src/stats.rs");
    let record = read("protocol/src/record.rs");
    let names = struct_names(&stats);
    assert!(names.len() >= 3, "{names:?}");
    let mut checked = Vec::new();
    for (src, name) in names.iter().map(|n| (&stats, n.as_str())).chain([(&record, "Record")]) {
        let code = struct_fields(src, name);
        assert!(!code.is_empty(), "{name} has no fields?");
        let documented = doc_fields(&doc, name);
        assert_eq!(
            documented, code,
            "docs/PROTOCOL.md's {name} table (left) differs from the struct (right): fields are encoded in declaration order, so document each one, in order, with its type"
        );
        checked.push(name);
    }
    assert_eq!(checked, ["HandlerStats", "ConnectionStats", "HubStats", "Record"]);
}

#[test]
fn the_readers_find_what_they_should() {
    let src = "pub struct A {\n    /// x\n    pub x: u64,\n    pub(crate) hidden: u8,\n    pub v: Vec<(String, u8)>,\n}\n";
    assert_eq!(
        struct_fields(src, "A"),
        [("x".into(), "u64".into()), ("v".into(), "Vec<(String, u8)>".into())]
    );
    let doc = "## A\nno\n### A\n\ntext\n\n| field | type | meaning |\n|---|---|---|\n| `x` | `u64` | a \\| b |\n| `v` | `Vec<(String, u8)>` | |\n\nafter\n";
    assert_eq!(doc_fields(doc, "A"), struct_fields(src, "A"));
}
