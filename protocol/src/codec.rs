//! Preamble, frame encoding and decoding, all lengths checked.

use std::io::{self, Read, Write};

use bincode::config::{Configuration, LittleEndian, Varint};
use bincode::enc::write::SizeWriter;

use crate::fast_encode::{EncodedExtra, varint_len};
use crate::record::{ClientFrame, ClientFrameView, HubFrame, RecordRef, RecordView};
use crate::{MAGIC, MAX_FRAME_BYTES, ProtocolError};

// Decoding claims at most 8 bytes of memory per byte of input (a u64 varint
// claims 8 even when it is 1 byte long), so this bounds memory per frame.
const DECODE_LIMIT: usize = 8 * MAX_FRAME_BYTES;
type Config = Configuration<LittleEndian, Varint, bincode::config::Limit<DECODE_LIMIT>>;
const CONFIG: Config = bincode::config::standard().with_limit::<DECODE_LIMIT>();

/// The 8 bytes each side sends first: `LFNL`, a little-endian `u16`
/// version, and a little-endian `u16` status (0 = accepted; the hub sends 1
/// = refused and follows it with one `Refuse` frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preamble {
    /// Protocol version of the sender.
    pub version: u16,
    /// 0 accepted/hello, 1 refused.
    pub status: u16,
}

impl Preamble {
    /// Status of a hub that accepts the connection (and of every client).
    pub const OK: u16 = 0;
    /// Status of a hub that refuses; a `Refuse` frame follows.
    pub const REFUSED: u16 = 1;

    /// The preamble's bytes.
    pub fn to_bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&MAGIC);
        b[4..6].copy_from_slice(&self.version.to_le_bytes());
        b[6..8].copy_from_slice(&self.status.to_le_bytes());
        b
    }

    /// Parses a preamble; checks the magic, not the version (the caller
    /// decides what it accepts).
    pub fn parse(b: [u8; 8]) -> Result<Preamble, ProtocolError> {
        let found = [b[0], b[1], b[2], b[3]];
        if found != MAGIC {
            return Err(ProtocolError::BadMagic { found });
        }
        Ok(Preamble { version: u16::from_le_bytes([b[4], b[5]]), status: u16::from_le_bytes([b[6], b[7]]) })
    }

    /// Reads and parses a preamble.
    pub fn read_from(r: &mut impl Read) -> Result<Preamble, ProtocolError> {
        let mut b = [0u8; 8];
        read_full(r, &mut b)?;
        Preamble::parse(b)
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> Result<(), ProtocolError> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => {
                return Err(ProtocolError::Truncated { got, expected: buf.len() });
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Checks a frame's length prefix against the limit.
pub(crate) fn check_len(len: u32) -> Result<usize, ProtocolError> {
    let len = len as usize;
    if len > MAX_FRAME_BYTES {
        return Err(ProtocolError::FrameTooLarge { len: len as u64, max: MAX_FRAME_BYTES });
    }
    if len == 0 {
        return Err(ProtocolError::EmptyFrame);
    }
    Ok(len)
}

/// Reads one frame's payload into `buf` (reused; resized only after the
/// length is checked). Returns `Ok(false)` on a clean end of stream at a
/// frame boundary.
pub fn read_frame(r: &mut impl Read, buf: &mut Vec<u8>) -> Result<bool, ProtocolError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(ProtocolError::Truncated { got, expected: 4 }),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let len = check_len(u32::from_le_bytes(len))?;
    buf.clear();
    buf.resize(len, 0);
    read_full(r, buf)?;
    Ok(true)
}

/// Writes one frame (length prefix and payload) with a single `write_all`,
/// so a timeout cannot leave half a header behind a whole one.
pub fn write_frame(w: &mut impl Write, frame: &[u8]) -> io::Result<()> {
    w.write_all(frame)
}

/// A reusable buffer holding one encoded frame, length prefix included.
#[derive(Debug, Default)]
pub struct FrameBuf {
    bytes: Vec<u8>,
}

impl FrameBuf {
    /// The frame's bytes, ready to write.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

fn encode_frame<T: serde::Serialize>(frame: &T, out: &mut FrameBuf) -> Result<(), ProtocolError> {
    out.bytes.clear();
    out.bytes.extend_from_slice(&[0; 4]);
    bincode::serde::encode_into_std_write(frame, &mut out.bytes, CONFIG)?;
    let len = out.bytes.len() - 4;
    if len > MAX_FRAME_BYTES {
        return Err(ProtocolError::FrameTooLarge { len: len as u64, max: MAX_FRAME_BYTES });
    }
    out.bytes[..4].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(())
}

/// Encodes a client frame, length prefix included.
pub fn encode_client_frame(frame: &ClientFrame, out: &mut FrameBuf) -> Result<(), ProtocolError> {
    encode_frame(frame, out)
}

/// Encodes a hub frame, length prefix included.
pub fn encode_hub_frame(frame: &HubFrame, out: &mut FrameBuf) -> Result<(), ProtocolError> {
    encode_frame(frame, out)
}

fn decode_frame<'de, T: serde::Deserialize<'de>>(payload: &'de [u8]) -> Result<T, ProtocolError> {
    check_len(u32::try_from(payload.len()).unwrap_or(u32::MAX))?;
    // The borrowing decoder, so that types which borrow from `payload`
    // (zero-copy decoding) can use this path too; owned types decode alike.
    crate::record::FRAME_BYTES.with(|b| b.set(payload.len()));
    crate::record::DECODE_BUDGET.with(|b| b.set(crate::MAX_DECODED_BYTES));
    let (frame, used) = bincode::serde::borrow_decode_from_slice(payload, CONFIG)?;
    if used != payload.len() {
        return Err(ProtocolError::TrailingBytes { used, extra: payload.len() - used });
    }
    Ok(frame)
}

/// Decodes a client frame from a payload that was already read (without
/// its length prefix).
pub fn decode_client_frame(payload: &[u8]) -> Result<ClientFrame, ProtocolError> {
    decode_frame(payload)
}

/// Decodes a client frame whose records borrow their strings from `payload`.
/// Batches take a hand-written path (same result, see `fast_view.rs`);
/// everything else, and anything that path does not accept, goes through
/// bincode.
pub fn decode_client_frame_view(payload: &[u8]) -> Result<ClientFrameView<'_>, ProtocolError> {
    decode_client_frame_view_in(payload, Vec::new())
}

/// [`decode_client_frame_view`], with a batch's records decoded into
/// `spare`'s allocation (emptied first): a reader that keeps the vectors
/// of finished batches allocates none per frame.
pub fn decode_client_frame_view_in<'a>(
    payload: &'a [u8],
    spare: Vec<RecordView<'a>>,
) -> Result<ClientFrameView<'a>, ProtocolError> {
    if u32::try_from(payload.len()).is_ok_and(|n| check_len(n).is_ok())
        && let Some(frame) = crate::fast_view::decode_batch_view(payload, spare)
    {
        return Ok(frame);
    }
    decode_frame(payload)
}

/// The bincode path of [`decode_client_frame_view`], for tests.
#[cfg(test)]
pub(crate) fn decode_view_with_bincode(payload: &[u8]) -> Result<ClientFrameView<'_>, ProtocolError> {
    decode_frame(payload)
}

/// Decodes a hub frame from a payload (without its length prefix).
pub fn decode_hub_frame(payload: &[u8]) -> Result<HubFrame, ProtocolError> {
    decode_frame(payload)
}

/// Encodes one record into `dst`, returning the bytes used; fails with
/// `UnexpectedEnd` when `dst` is too small. Clients encode straight into
/// their queue with this.
pub fn encode_record_ref(rec: &RecordRef<'_>, dst: &mut [u8]) -> Result<usize, bincode::error::EncodeError> {
    // Byte for byte what `bincode::serde::encode_into_slice(rec, dst, CONFIG)`
    // writes (see fast_encode.rs), faster: this is on the log call's path
    // (docs/BENCHMARKS.md#decoding-and-encoding-frames).
    crate::fast_encode::encode(rec, None, dst).ok_or(bincode::error::EncodeError::UnexpectedEnd)
}

/// Like [`encode_record_ref`], with `more` extra fields after the record's
/// own (the log call collects its fields this way without allocating).
pub fn encode_record_with(
    rec: &RecordRef<'_>,
    more: &EncodedExtra,
    dst: &mut [u8],
) -> Result<usize, bincode::error::EncodeError> {
    crate::fast_encode::encode(rec, Some(more), dst).ok_or(bincode::error::EncodeError::UnexpectedEnd)
}

/// The number of bytes [`encode_record_with`] needs.
pub fn encoded_record_len_with(rec: &RecordRef<'_>, more: &EncodedExtra) -> usize {
    let own = rec.extra.len() as u64;
    encoded_record_len(rec) - varint_len(own) + varint_len(own + more.len() as u64) + more.bytes().len()
}

/// The number of bytes [`encode_record_ref`] needs for `rec`.
pub fn encoded_record_len(rec: &RecordRef<'_>) -> usize {
    let mut w = SizeWriter::default();
    // A SizeWriter never fails; a serde error here would be a bug in RecordRef.
    let _ = bincode::serde::encode_into_writer(rec, &mut w, CONFIG);
    w.bytes_written
}

// Room in front of the records for the largest possible frame header:
// 4 (length) + 1 (variant tag) + 9 (first_seq varint) + 9 (count varint).
const HEADER_ROOM: usize = 32;
const BATCH_VARIANT: u32 = 1;

/// Builds a `ClientFrame::Batch` frame from records that were encoded
/// one by one (by [`encode_record_ref`]), without decoding or copying them
/// twice. The result is byte-identical to encoding the `Batch` whole.
#[derive(Debug)]
pub struct BatchBuilder {
    buf: Vec<u8>,
    first_seq: u64,
    count: u64,
    start: usize,
}

impl BatchBuilder {
    /// An empty builder with room for `capacity` bytes of records.
    pub fn with_capacity(capacity: usize) -> BatchBuilder {
        let mut buf = Vec::with_capacity(HEADER_ROOM + capacity);
        buf.resize(HEADER_ROOM, 0);
        BatchBuilder { buf, first_seq: 0, count: 0, start: HEADER_ROOM }
    }

    /// Starts a new batch whose first record gets `first_seq`.
    pub fn reset(&mut self, first_seq: u64) {
        self.buf.truncate(HEADER_ROOM);
        self.first_seq = first_seq;
        self.count = 0;
        self.start = HEADER_ROOM;
    }

    /// Appends one encoded record.
    pub fn push_encoded(&mut self, record: &[u8]) {
        self.buf.extend_from_slice(record);
        self.count += 1;
    }

    /// Records in the batch.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Sequence number of the first record.
    pub fn first_seq(&self) -> u64 {
        self.first_seq
    }

    /// Bytes of records so far.
    pub fn records_len(&self) -> usize {
        self.buf.len() - HEADER_ROOM
    }

    /// Writes the header in front of the records and returns the whole frame.
    pub fn finish(&mut self) -> Result<&[u8], ProtocolError> {
        let mut head = [0u8; HEADER_ROOM];
        let n = bincode::serde::encode_into_slice(
            (BATCH_VARIANT, self.first_seq, self.count),
            &mut head,
            CONFIG,
        )?;
        let payload = n + self.records_len();
        if payload > MAX_FRAME_BYTES {
            return Err(ProtocolError::FrameTooLarge { len: payload as u64, max: MAX_FRAME_BYTES });
        }
        self.start = HEADER_ROOM - n - 4;
        self.buf[self.start..self.start + 4].copy_from_slice(&(payload as u32).to_le_bytes());
        self.buf[self.start + 4..HEADER_ROOM].copy_from_slice(&head[..n]);
        Ok(&self.buf[self.start..])
    }

    /// The frame produced by the last [`finish`](Self::finish).
    pub fn frame(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Finishes the batch and hands over its buffer without copying it: the
    /// frame is `buffer[start..]` of the returned `(buffer, start)`. The
    /// builder goes on in `spare` (a buffer handed over earlier and no longer
    /// needed) or in a new one of the same capacity; call
    /// [`reset`](Self::reset) before the next batch. On error nothing is
    /// handed over.
    pub fn take_frame(&mut self, spare: Option<Vec<u8>>) -> Result<(Vec<u8>, usize), ProtocolError> {
        self.finish()?;
        let mut next = spare.unwrap_or_else(|| Vec::with_capacity(self.buf.capacity()));
        next.clear();
        next.resize(HEADER_ROOM, 0);
        let start = std::mem::replace(&mut self.start, HEADER_ROOM);
        Ok((std::mem::replace(&mut self.buf, next), start))
    }
}
