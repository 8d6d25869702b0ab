//! Differential test of the unpickler: python3's `pickle.dumps` of random
//! plain-data dicts at protocols 0–5 (tests/python/random_pickles.py) must
//! decode to exactly the values Python pickled.

use std::process::Command;

use logfunnel_protocol::pickle::{Id, Pickle, Py, loads_dict};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/random_pickles.py");

fn canon(p: &Pickle, id: Id, out: &mut String) {
    let seq = |out: &mut String, items: &[Id], open: char, close: char| {
        out.push(open);
        for (i, x) in items.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            canon(p, *x, out);
        }
        out.push(close);
    };
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    match p.get(id) {
        Py::None => out.push('N'),
        Py::Bool(b) => out.push(if *b { 'T' } else { 'F' }),
        Py::Int(i) => out.push_str(&format!("i{i}")),
        Py::BigInt(s) => out.push_str(&format!("i{s}")),
        Py::Float(f) => out.push_str(&format!("f{}", hex(&f.to_be_bytes()))),
        Py::Str(s) => out.push_str(&format!("s{}", hex(s.as_bytes()))),
        Py::Bytes(b) => out.push_str(&format!("b{}", hex(b))),
        Py::List(items) => seq(out, items, '[', ']'),
        Py::Tuple(items) => seq(out, items, '(', ')'),
        Py::Dict(items) => {
            out.push('{');
            for (i, (k, v)) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canon(p, *k, out);
                out.push(':');
                canon(p, *v, out);
            }
            out.push('}');
        }
        other => panic!("unexpected {other:?} in a plain-data pickle"),
    }
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

#[test]
fn random_dicts_pickled_by_python_at_every_protocol_decode_exactly() {
    let seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() % 100_000;
    let out =
        Command::new("python3").args([SCRIPT, &seed.to_string(), "3000"]).output().unwrap_or_else(|e| {
            panic!("python3 is needed for this test ({e}): apt-get install -y python3 (or run scripts/test)")
        });
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut per_protocol = [0; 6];
    for line in text.lines() {
        let mut parts = line.split(' ');
        let (proto, hex, want) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
        let bytes = unhex(hex);
        let p = loads_dict(&bytes).unwrap_or_else(|e| panic!("seed {seed}, protocol {proto}: {e}\n{hex}"));
        assert_eq!(p.objects, 0, "seed {seed}: {hex}");
        let mut got = String::new();
        canon(&p, p.root_id(), &mut got);
        assert_eq!(got, want, "seed {seed}, protocol {proto}: {hex}");
        per_protocol[proto.parse::<usize>().unwrap()] += 1;
    }
    assert!(per_protocol.iter().all(|&n| n == 500), "{per_protocol:?}");
}
