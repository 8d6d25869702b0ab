//! A hand-written encoder for [`RecordRef`]: the log call's hot path. It
//! writes exactly the bytes bincode's standard configuration writes (varint
//! integers in their shortest form, zigzag for signed ones, `u8` option and
//! bool tags, length-prefixed strings and sequences, little-endian floats),
//! without serde's per-field indirection. A test checks it against bincode.

use crate::record::{RecordRef, ValueRef};

/// Where encoded bytes go: a slot of fixed size (the log call's ring
/// entry) or a growing buffer ([`EncodedExtra`]). `None` means no room.
trait Out {
    fn bytes(&mut self, b: &[u8]) -> Option<()>;

    #[inline(always)]
    fn varint(&mut self, v: u64) -> Option<()> {
        if v < 251 {
            self.bytes(&[v as u8])
        } else if v <= u16::MAX as u64 {
            self.bytes(&[251])?;
            self.bytes(&(v as u16).to_le_bytes())
        } else if v <= u32::MAX as u64 {
            self.bytes(&[252])?;
            self.bytes(&(v as u32).to_le_bytes())
        } else {
            self.bytes(&[253])?;
            self.bytes(&v.to_le_bytes())
        }
    }

    #[inline(always)]
    fn i64(&mut self, v: i64) -> Option<()> {
        self.varint(((v << 1) ^ (v >> 63)) as u64)
    }

    #[inline(always)]
    fn str(&mut self, s: &str) -> Option<()> {
        self.varint(s.len() as u64)?;
        self.bytes(s.as_bytes())
    }

    #[inline(always)]
    fn opt_str(&mut self, s: Option<&str>) -> Option<()> {
        match s {
            None => self.bytes(&[0]),
            Some(s) => {
                self.bytes(&[1])?;
                self.str(s)
            }
        }
    }

    fn value(&mut self, v: &ValueRef<'_>) -> Option<()> {
        match v {
            ValueRef::Str(s) => {
                self.varint(0)?;
                self.str(s)
            }
            ValueRef::I64(i) => {
                self.varint(1)?;
                self.i64(*i)
            }
            ValueRef::U64(u) => {
                self.varint(2)?;
                self.varint(*u)
            }
            ValueRef::F64(f) => {
                self.varint(3)?;
                self.bytes(&f.to_le_bytes())
            }
            ValueRef::Bool(b) => {
                self.varint(4)?;
                self.bytes(&[*b as u8])
            }
        }
    }
}

struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl Out for Writer<'_> {
    #[inline(always)]
    fn bytes(&mut self, b: &[u8]) -> Option<()> {
        let end = self.pos.checked_add(b.len())?;
        self.buf.get_mut(self.pos..end)?.copy_from_slice(b);
        self.pos = end;
        Some(())
    }
}

impl Out for Vec<u8> {
    #[inline(always)]
    fn bytes(&mut self, b: &[u8]) -> Option<()> {
        self.extend_from_slice(b);
        Some(())
    }
}

/// Extra fields encoded as they are collected (a log call's key-values, a
/// tracing event's fields): each `(key, value)` pair as the bytes bincode
/// writes for it, in a buffer the caller keeps and reuses, so that
/// collecting fields allocates nothing in steady state (a `Vec` of borrowed
/// pairs would be a new allocation per call). Encode a record with them by
/// [`crate::encode_record_with`].
#[derive(Debug, Default, Clone)]
pub struct EncodedExtra {
    bytes: Vec<u8>,
    count: u64,
    /// Scratch for values given as text to format.
    text: String,
}

impl EncodedExtra {
    /// An empty set of fields.
    pub fn new() -> EncodedExtra {
        EncodedExtra::default()
    }

    /// Forgets every field, keeping the buffers.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.count = 0;
    }

    /// Fields pushed since the last `clear`.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether no field was pushed since the last `clear`.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Appends one field.
    pub fn push(&mut self, key: &str, value: ValueRef<'_>) {
        // A Vec never runs out of room.
        let _ = self.bytes.str(key).and_then(|()| self.bytes.value(&value));
        self.count += 1;
    }

    /// Appends one text field, formatted from `args` (`format_args!("{v}")`).
    pub fn push_fmt(&mut self, key: &str, args: std::fmt::Arguments<'_>) {
        use std::fmt::Write;
        let mut text = std::mem::take(&mut self.text);
        text.clear();
        let _ = text.write_fmt(args);
        self.push(key, ValueRef::Str(&text));
        self.text = text;
    }

    /// The encoded pairs, one after another.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// Bytes of `v` as a varint.
pub(crate) fn varint_len(v: u64) -> usize {
    match v {
        0..251 => 1,
        251..=0xFFFF => 3,
        0x1_0000..=0xFFFF_FFFF => 5,
        _ => 9,
    }
}

/// Encodes `rec` into `dst`, its extra fields followed by `more`; `None`
/// when `dst` is too small.
#[inline]
pub(crate) fn encode(rec: &RecordRef<'_>, more: Option<&EncodedExtra>, dst: &mut [u8]) -> Option<usize> {
    let mut w = Writer { buf: dst, pos: 0 };
    w.i64(rec.created_ns)?;
    w.varint(rec.levelno.into())?;
    w.str(rec.name)?;
    w.str(rec.message)?;
    w.opt_str(rec.pathname)?;
    w.varint(rec.lineno.into())?;
    w.opt_str(rec.func_name)?;
    w.opt_str(rec.module_path)?;
    w.varint(rec.process.into())?;
    w.opt_str(rec.process_name)?;
    w.varint(rec.thread)?;
    w.opt_str(rec.thread_name)?;
    w.opt_str(rec.exc_text)?;
    w.varint(rec.extra.len() as u64 + more.map_or(0, |m| m.count))?;
    for (k, v) in rec.extra {
        w.str(k)?;
        w.value(v)?;
    }
    if let Some(m) = more {
        w.bytes(m.bytes())?;
    }
    Some(w.pos)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn value(kind: u8, v: u64, s: &str) -> ValueRef<'_> {
        match kind % 5 {
            0 => ValueRef::Str(s),
            1 => ValueRef::I64(v as i64),
            2 => ValueRef::U64(v),
            3 => ValueRef::F64(f64::from_bits(v)),
            _ => ValueRef::Bool(v % 2 == 1),
        }
    }

    proptest! {
        #[test]
        fn writes_the_bytes_bincode_writes(
            created in any::<i64>(), level in any::<u32>(), lineno in any::<u32>(), process in any::<u32>(),
            thread in any::<u64>(), name in ".{0,300}", message in ".{0,70000}",
            opts in proptest::collection::vec(proptest::option::of(".{0,260}"), 6),
            extra in proptest::collection::vec((".{0,8}", any::<u8>(), any::<u64>()), 0..4),
            room in 0usize..400,
        ) {
            let values: Vec<(&str, ValueRef<'_>)> =
                extra.iter().map(|(k, kind, v)| (k.as_str(), value(*kind, *v, k))).collect();
            let rec = RecordRef {
                created_ns: created, levelno: level, name: &name, message: &message,
                pathname: opts[0].as_deref(), lineno, func_name: opts[1].as_deref(),
                module_path: opts[2].as_deref(), process, process_name: opts[3].as_deref(),
                thread, thread_name: opts[4].as_deref(), exc_text: opts[5].as_deref(), extra: &values,
            };
            let want = bincode::serde::encode_to_vec(&rec, bincode::config::standard()).unwrap();
            let mut buf = vec![0u8; want.len() + 8];
            let n = encode(&rec, None, &mut buf);
            prop_assert_eq!(n, Some(want.len()));
            prop_assert_eq!(&buf[..want.len()], &want[..]);
            // Too small a slot is refused, never overrun.
            let short = want.len().saturating_sub(room % (want.len() + 1)).min(want.len().saturating_sub(1));
            if !want.is_empty() {
                let mut small = vec![0u8; short];
                prop_assert_eq!(encode(&rec, None, &mut small), None);
            }
        }
    }

    proptest! {
        /// Fields collected into an EncodedExtra, after the record's own,
        /// give the bytes of one record carrying both lists.
        #[test]
        fn encoded_extra_follows_the_records_own_fields(
            own in proptest::collection::vec((".{0,8}", any::<u8>(), any::<u64>()), 0..3),
            more in proptest::collection::vec((".{0,300}", any::<u8>(), any::<u64>()), 0..260),
            text in ".{0,40}",
        ) {
            let own: Vec<(&str, ValueRef<'_>)> =
                own.iter().map(|(k, kind, v)| (k.as_str(), value(*kind, *v, k))).collect();
            let mut extra = EncodedExtra::new();
            extra.push("stale", ValueRef::Bool(true));
            extra.clear();
            let mut all = own.clone();
            for (k, kind, v) in &more {
                if kind % 7 == 6 {
                    extra.push_fmt(k, format_args!("<{text}>"));
                } else {
                    extra.push(k, value(*kind, *v, k));
                }
            }
            let texts: Vec<String> = more.iter().map(|_| format!("<{text}>")).collect();
            for ((k, kind, v), t) in more.iter().zip(&texts) {
                all.push((k.as_str(), if kind % 7 == 6 { ValueRef::Str(t) } else { value(*kind, *v, k) }));
            }
            prop_assert_eq!(extra.len(), more.len());
            let mut rec = crate::RecordRef {
                created_ns: 1, levelno: 20, name: "n", message: "m", pathname: None, lineno: 0,
                func_name: None, module_path: None, process: 1, process_name: None, thread: 1,
                thread_name: None, exc_text: None, extra: &all,
            };
            let want = bincode::serde::encode_to_vec(&rec, bincode::config::standard()).unwrap();
            rec.extra = &own;
            let mut buf = vec![0u8; want.len() + 8];
            prop_assert_eq!(encode(&rec, Some(&extra), &mut buf), Some(want.len()));
            prop_assert_eq!(&buf[..want.len()], &want[..]);
            prop_assert_eq!(crate::encoded_record_len_with(&rec, &extra), want.len());
        }
    }
}
