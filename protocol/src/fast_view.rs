//! A hand-written decoder for batch frames into [`RecordView`]s: the hub's
//! hot path. It reads exactly bincode's standard (varint, little-endian)
//! layout, but only the canonical forms bincode's encoder writes; anything
//! else (another frame kind, a non-canonical integer, a bad tag, invalid
//! UTF-8, a truncated or overlong payload) makes it give up with `None`, and
//! the caller decodes with bincode, which then accepts or refuses exactly as
//! before. So a frame decodes to the same views either way, and errors are
//! bincode's own.

use crate::record::{ClientFrameView, RecordView, ValueRef};

/// The smallest encoded record: every field at its shortest.
const MIN_RECORD_BYTES: usize = 14;

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Bytes of decoded records (and their extra fields) this frame may
    /// still take (see [`crate::MAX_DECODED_BYTES`]).
    budget: usize,
}

impl<'a> Reader<'a> {
    #[inline(always)]
    fn byte(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    #[inline(always)]
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    /// A canonical varint u64 (bincode writes the shortest form).
    #[inline(always)]
    fn varint(&mut self) -> Option<u64> {
        let b = self.byte()?;
        match b {
            0..=250 => Some(b as u64),
            251 => {
                let v = u16::from_le_bytes(self.bytes(2)?.try_into().ok()?) as u64;
                (v >= 251).then_some(v)
            }
            252 => {
                let v = u32::from_le_bytes(self.bytes(4)?.try_into().ok()?) as u64;
                (v > u16::MAX as u64).then_some(v)
            }
            253 => {
                let v = u64::from_le_bytes(self.bytes(8)?.try_into().ok()?);
                (v > u32::MAX as u64).then_some(v)
            }
            _ => None,
        }
    }

    #[inline(always)]
    fn u32(&mut self) -> Option<u32> {
        u32::try_from(self.varint()?).ok()
    }

    #[inline(always)]
    fn i64(&mut self) -> Option<i64> {
        let z = self.varint()?;
        Some(((z >> 1) as i64) ^ -((z & 1) as i64))
    }

    #[inline(always)]
    fn str(&mut self) -> Option<&'a str> {
        let len = usize::try_from(self.varint()?).ok()?;
        let bytes = self.bytes(len)?;
        if short_ascii(bytes).unwrap_or_else(|| is_ascii(bytes)) {
            // SAFETY: ASCII is valid UTF-8.
            Some(unsafe { std::str::from_utf8_unchecked(bytes) })
        } else {
            std::str::from_utf8(bytes).ok()
        }
    }

    #[inline(always)]
    fn opt_str(&mut self) -> Option<Option<&'a str>> {
        match self.byte()? {
            0 => Some(None),
            1 => Some(Some(self.str()?)),
            _ => None,
        }
    }

    fn value(&mut self) -> Option<ValueRef<'a>> {
        Some(match self.u32()? {
            0 => ValueRef::Str(self.str()?),
            1 => ValueRef::I64(self.i64()?),
            2 => ValueRef::U64(self.varint()?),
            3 => ValueRef::F64(f64::from_le_bytes(self.bytes(8)?.try_into().ok()?)),
            4 => ValueRef::Bool(match self.byte()? {
                0 => false,
                1 => true,
                _ => return None,
            }),
            _ => return None,
        })
    }

    fn record(&mut self, prev_name: Option<&'a str>) -> Option<RecordView<'a>> {
        let created_ns = self.i64()?;
        let levelno = self.u32()?;
        let mut name = self.str()?;
        // Consecutive records mostly share their logger name: point at the
        // first copy, so that the router (on another core) can tell they
        // are equal from the pointer instead of reading the bytes again.
        if let Some(prev) = prev_name
            && short_eq(prev.as_bytes(), name.as_bytes()).unwrap_or_else(|| prev == name)
        {
            name = prev;
        }
        let message = self.str()?;
        let pathname = self.opt_str()?;
        let lineno = self.u32()?;
        let func_name = self.opt_str()?;
        let module_path = self.opt_str()?;
        let process = self.u32()?;
        let process_name = self.opt_str()?;
        let thread = self.varint()?;
        let thread_name = self.opt_str()?;
        let exc_text = self.opt_str()?;
        let n = usize::try_from(self.varint()?).ok()?;
        // Each pair takes at least 3 bytes: never allocate beyond the input.
        if n > (self.buf.len() - self.pos) / 3 {
            return None;
        }
        self.budget = self.budget.checked_sub(n * std::mem::size_of::<(&str, ValueRef<'_>)>())?;
        let mut extra = Vec::with_capacity(n);
        for _ in 0..n {
            let key = self.str()?;
            extra.push((key, self.value()?));
        }
        Some(RecordView {
            created_ns,
            levelno,
            name,
            message,
            pathname,
            lineno,
            func_name,
            module_path,
            process,
            process_name,
            thread,
            thread_name,
            exc_text,
            extra,
        })
    }
}

/// The first and last 8 bytes of a string of 8 to 16 bytes (they overlap
/// when it is shorter than 16): enough to look at every byte.
#[inline(always)]
fn ends(b: &[u8]) -> (u64, u64) {
    let head = u64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
    let tail = u64::from_le_bytes(b[b.len() - 8..].try_into().expect("8 bytes"));
    (head, tail)
}

/// Whether `b` is ASCII, inline for 8 to 16 bytes (logger names, paths);
/// `None` for other lengths. `is_ascii` is a call per string otherwise.
#[inline(always)]
fn short_ascii(b: &[u8]) -> Option<bool> {
    if !(8..=16).contains(&b.len()) {
        return None;
    }
    let (head, tail) = ends(b);
    Some((head | tail) & 0x8080_8080_8080_8080 == 0)
}

/// Whether `b` is ASCII: the high bits of 16-byte blocks are OR-ed
/// together, which the compiler turns into vector code; `<[u8]>::is_ascii`
/// compiles into a byte-at-a-time loop here
/// (docs/BENCHMARKS.md#decoding-and-encoding-frames).
#[inline(always)]
fn is_ascii(b: &[u8]) -> bool {
    let mut blocks = b.chunks_exact(16);
    let mut high = 0u128;
    for block in &mut blocks {
        high |= u128::from_le_bytes(block.try_into().expect("16 bytes"));
    }
    let rest = blocks.remainder().iter().fold(0u8, |acc, &x| acc | x);
    high & 0x8080_8080_8080_8080_8080_8080_8080_8080 == 0 && rest < 0x80
}

/// `a == b` inline for 8 to 16 bytes; `None` for other lengths.
#[inline(always)]
fn short_eq(a: &[u8], b: &[u8]) -> Option<bool> {
    if a.len() != b.len() {
        return Some(false);
    }
    if !(8..=16).contains(&a.len()) {
        return None;
    }
    Some(ends(a) == ends(b))
}

/// Decodes `payload` if it is a batch frame in canonical form; `None`
/// means "ask bincode" (see the module docs).
pub(crate) fn decode_batch_view<'a>(
    payload: &'a [u8],
    mut records: Vec<RecordView<'a>>,
) -> Option<ClientFrameView<'a>> {
    let mut r = Reader { buf: payload, pos: 0, budget: crate::MAX_DECODED_BYTES };
    // ClientFrame::Batch is variant 1.
    if r.u32()? != 1 {
        return None;
    }
    let first_seq = r.varint()?;
    let n = usize::try_from(r.varint()?).ok()?;
    if n > payload.len() / MIN_RECORD_BYTES + 1 {
        return None;
    }
    // Over the limit: bincode refuses it with a reason.
    r.budget = r.budget.checked_sub(n.checked_mul(std::mem::size_of::<RecordView<'_>>())?)?;
    records.clear();
    records.reserve(n);
    for _ in 0..n {
        let prev = records.last().map(|r: &RecordView<'_>| r.name);
        records.push(r.record(prev)?);
    }
    (r.pos == payload.len()).then_some(ClientFrameView::Batch(first_seq, records))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::{BatchBuilder, RecordRef, encode_record_ref};

    fn borrowed_bincode(payload: &[u8]) -> Option<ClientFrameView<'_>> {
        crate::codec::decode_view_with_bincode(payload).ok()
    }

    /// created, level, name, message, path, thread, extra (key, kind, value).
    type Spec = (i64, u32, String, String, Option<String>, u64, Vec<(String, u8, u64)>);

    fn frame(records: &[Spec]) -> Vec<u8> {
        let mut b = BatchBuilder::with_capacity(1 << 16);
        b.reset(77);
        let mut slot = vec![0u8; 1 << 16];
        for (created, level, name, message, path, thread, extra) in records {
            let values: Vec<(&str, ValueRef<'_>)> = extra
                .iter()
                .map(|(k, kind, v)| {
                    let value = match kind % 5 {
                        0 => ValueRef::Str(k),
                        1 => ValueRef::I64(*v as i64),
                        2 => ValueRef::U64(*v),
                        3 => ValueRef::F64(*v as f64 / 3.0),
                        _ => ValueRef::Bool(v % 2 == 0),
                    };
                    (k.as_str(), value)
                })
                .collect();
            let rec = RecordRef {
                created_ns: *created,
                levelno: *level,
                name,
                message,
                pathname: path.as_deref(),
                lineno: *level / 3,
                func_name: None,
                module_path: path.as_deref(),
                process: *level ^ 0xffff,
                process_name: Some(name),
                thread: *thread,
                thread_name: None,
                exc_text: path.as_deref(),
                extra: &values,
            };
            let n = encode_record_ref(&rec, &mut slot).unwrap();
            b.push_encoded(&slot[..n]);
        }
        b.finish().unwrap()[4..].to_vec()
    }

    #[test]
    fn short_helpers_agree_with_std() {
        let samples: [&[u8]; 8] = [
            b"",
            b"abc",
            b"app.work",
            b"app.worker.inge",
            b"app.worker.ingest",
            b"caf\xc3\xa9 ok!",
            b"ok\x80okokok",
            b"0123456789abcdef",
        ];
        for a in samples {
            if let Some(v) = short_ascii(a) {
                assert_eq!(v, a.is_ascii(), "{a:?}");
            }
            assert_eq!(is_ascii(a), a.is_ascii(), "{a:?}");
            for b in samples {
                if let Some(v) = short_eq(a, b) {
                    assert_eq!(v, a == b, "{a:?} {b:?}");
                }
            }
        }
        // A high byte in any 16-byte block or in the remainder.
        for len in [16, 17, 40, 100] {
            for at in 0..len {
                let mut b = vec![b'a'; len];
                assert!(is_ascii(&b));
                b[at] = 0x80 | (at as u8);
                assert!(!is_ascii(&b), "len {len}, high byte at {at}");
            }
        }
        // Strings that differ only in the middle byte.
        assert_eq!(short_eq(b"abcdefghijk", b"abcdefXhijk"), Some(false));
        assert_eq!(short_ascii(b"abcdefgh\xffijklmn"), Some(false));
    }

    proptest! {
        #[test]
        fn decodes_what_bincode_decodes(
            records in proptest::collection::vec(
                (any::<i64>(), any::<u32>(), ".{0,20}", ".{0,300}", proptest::option::of(".{0,10}"), any::<u64>(),
                 proptest::collection::vec((".{0,5}", any::<u8>(), any::<u64>()), 0..3)),
                0..20)
        ) {
            let payload = frame(&records);
            let fast = decode_batch_view(&payload, Vec::new());
            prop_assert!(fast.is_some());
            prop_assert_eq!(fast, borrowed_bincode(&payload));
        }

        #[test]
        fn accepts_nothing_bincode_refuses(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Some(fast) = decode_batch_view(&bytes, Vec::new()) {
                prop_assert_eq!(Some(fast), borrowed_bincode(&bytes));
            }
        }

        #[test]
        fn mutated_frames_agree_with_bincode(
            records in proptest::collection::vec(
                (any::<i64>(), any::<u32>(), ".{0,8}", ".{0,40}", proptest::option::of(".{0,4}"), any::<u64>(),
                 proptest::collection::vec((".{0,3}", any::<u8>(), any::<u64>()), 0..2)),
                1..4),
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let mut payload = frame(&records);
            let i = at.index(payload.len());
            payload[i] = byte;
            if let Some(fast) = decode_batch_view(&payload, Vec::new()) {
                prop_assert_eq!(Some(fast), borrowed_bincode(&payload));
            }
        }
    }
}
