//! Bad input is refused with a reason and costs no other client anything.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use logfunnel_protocol::{
    ClientFrame, FrameBuf, Hello, HubFrame, PROTOCOL_VERSION, Preamble, decode_hub_frame, encode_client_frame,
};

use crate::util::*;

pub(crate) fn connect(socket: &std::path::Path) -> UnixStream {
    let s = UnixStream::connect(socket).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

pub(crate) fn read_preamble(s: &mut UnixStream) -> Preamble {
    let mut b = [0u8; 8];
    s.read_exact(&mut b).expect("preamble");
    Preamble::parse(b).expect("hub preamble")
}

pub(crate) fn read_hub_frame(s: &mut UnixStream) -> HubFrame {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).expect("frame length");
    let mut buf = vec![0u8; u32::from_le_bytes(len) as usize];
    s.read_exact(&mut buf).expect("frame");
    decode_hub_frame(&buf).expect("hub frame")
}

pub(crate) fn refusal(s: &mut UnixStream) -> String {
    match read_hub_frame(s) {
        HubFrame::Refuse { reason } => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn handshake(s: &mut UnixStream) {
    let mut out = Preamble { version: PROTOCOL_VERSION, status: 0 }.to_bytes().to_vec();
    let mut f = FrameBuf::default();
    let hello = Hello { pid: 1, process_name: "t".into(), host_name: "h".into(), session: 7, first_seq: 1 };
    encode_client_frame(&ClientFrame::Hello(hello), &mut f).unwrap();
    out.extend_from_slice(f.as_bytes());
    s.write_all(&out).unwrap();
    assert_eq!(read_preamble(s).status, Preamble::OK);
    assert_eq!(read_hub_frame(s), HubFrame::Welcome { next_seq: 1 });
}

#[test]
fn garbage_wrong_versions_and_bad_frames_are_refused_while_others_are_served() {
    let dir = Dir::new();
    let hub = HubProc::start(&dir, &dir.file_config());
    // A well-behaved pool runs throughout.
    let good: Vec<_> = (0..3).map(|i| worker(&hub.socket, i, 40_000, &[])).collect();

    let mut s = connect(&hub.socket);
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_preamble(&mut s).status, Preamble::REFUSED);
    let reason = refusal(&mut s);
    assert!(reason.contains("not a logfunnel client"), "{reason}");

    let mut s = connect(&hub.socket);
    s.write_all(&Preamble { version: 99, status: 0 }.to_bytes()).unwrap();
    assert_eq!(read_preamble(&mut s).status, Preamble::REFUSED);
    let reason = refusal(&mut s);
    assert!(reason.contains("unsupported protocol version 99"), "{reason}");

    // A length prefix of 4 GiB - 1 after a valid handshake.
    let mut s = connect(&hub.socket);
    handshake(&mut s);
    s.write_all(&u32::MAX.to_le_bytes()).unwrap();
    let reason = refusal(&mut s);
    assert!(reason.contains("exceeds the limit"), "{reason}");

    // A frame whose payload is random bytes.
    let mut s = connect(&hub.socket);
    handshake(&mut s);
    let junk: Vec<u8> = (0..200u32).map(|i| (i.wrapping_mul(2654435761) >> 7) as u8).collect();
    s.write_all(&(junk.len() as u32).to_le_bytes()).unwrap();
    s.write_all(&junk).unwrap();
    let reason = refusal(&mut s);
    assert!(reason.contains("malformed frame"), "{reason}");

    // A batch claiming 2^60 records in a 16-byte frame.
    let mut s = connect(&hub.socket);
    handshake(&mut s);
    let mut payload = vec![1u8, 1]; // variant Batch, first_seq 1
    payload.push(253); // varint: u64 follows
    payload.extend_from_slice(&(1u64 << 60).to_le_bytes());
    s.write_all(&(payload.len() as u32).to_le_bytes()).unwrap();
    s.write_all(&payload).unwrap();
    let reason = refusal(&mut s);
    assert!(reason.contains("malformed frame"), "{reason}");

    // A client that vanishes mid-frame.
    let mut s = connect(&hub.socket);
    handshake(&mut s);
    s.write_all(&1000u32.to_le_bytes()).unwrap();
    s.write_all(&[0u8; 10]).unwrap();
    drop(s);

    good.into_iter().for_each(finish_worker);
    let err = hub.stop();
    for needle in
        ["not a logfunnel client", "unsupported protocol version 99", "exceeds the limit", "ended mid-frame"]
    {
        assert!(err.contains(needle), "{needle:?} not reported by the hub:\n{err}");
    }
    assert!(err.contains("4 refused connections") || err.contains("refused connections"), "{err}");
    let (seqs, other) = sequences(&dir.path("out.log"));
    assert!(other.is_empty(), "{other:?}");
    for w in 0..3 {
        assert_complete(&seqs, w, 0, 40_000);
    }
}

pub(crate) fn hello(s: &mut UnixStream, session: u64, first_seq: u64) -> u64 {
    let mut out = Preamble { version: PROTOCOL_VERSION, status: 0 }.to_bytes().to_vec();
    let mut f = FrameBuf::default();
    let hello = Hello { pid: 1, process_name: "resender".into(), host_name: "h".into(), session, first_seq };
    encode_client_frame(&ClientFrame::Hello(hello), &mut f).unwrap();
    out.extend_from_slice(f.as_bytes());
    s.write_all(&out).unwrap();
    assert_eq!(read_preamble(s).status, Preamble::OK);
    match read_hub_frame(s) {
        HubFrame::Welcome { next_seq } => next_seq,
        other => panic!("expected Welcome, got {other:?}"),
    }
}

fn send_batch(s: &mut UnixStream, first_seq: u64, n: u64) -> u64 {
    let records = (first_seq..first_seq + n)
        .map(|seq| logfunnel_protocol::Record::new(20, "resend", format!("w7 t0 s{}", seq - 1)))
        .collect();
    let mut f = FrameBuf::default();
    let batch = logfunnel_protocol::Batch { first_seq, records };
    encode_client_frame(&ClientFrame::Batch(batch), &mut f).unwrap();
    s.write_all(f.as_bytes()).unwrap();
    match read_hub_frame(s) {
        HubFrame::Ack { next_seq } => next_seq,
        other => panic!("expected Ack, got {other:?}"),
    }
}

#[test]
fn a_session_that_reconnects_and_resends_is_deduplicated() {
    let dir = Dir::new();
    let hub = HubProc::start(&dir, &dir.file_config());
    let mut s = connect(&hub.socket);
    assert_eq!(hello(&mut s, 4242, 1), 1);
    assert_eq!(send_batch(&mut s, 1, 10), 11);
    drop(s); // the connection breaks
    // The same session comes back still holding records 1..=15.
    let mut s = connect(&hub.socket);
    assert_eq!(hello(&mut s, 4242, 1), 11, "the hub remembers where the session stopped");
    assert_eq!(send_batch(&mut s, 1, 15), 16);
    // A different session starts from its own first_seq.
    let mut other = connect(&hub.socket);
    assert_eq!(hello(&mut other, 99, 1), 1);
    drop((s, other));
    let v = stats(&hub.socket);
    assert_eq!(v["received"], 15);
    assert_eq!(v["duplicates"], 10);
    hub.stop();
    let (seqs, other) = sequences(&dir.path("out.log"));
    assert!(other.is_empty(), "{other:?}");
    assert_complete(&seqs, 7, 0, 15);
}

/// A small deterministic generator (xorshift), so failures replay.
fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn refused_frame(socket: &std::path::Path, bytes: &[u8]) -> String {
    let mut s = connect(socket);
    handshake(&mut s);
    s.write_all(bytes).unwrap();
    refusal(&mut s)
}

#[test]
fn hostile_input_is_refused_with_a_reason_and_a_counter_and_costs_no_memory() {
    let dir = Dir::new();
    let hub = HubProc::start(&dir, &dir.file_config());
    let pid = hub.child.id();
    finish_worker(worker(&hub.socket, 1, 20_000, &[]));
    let rss0 = proc_status(pid, "VmRSS");
    let (mut frames, mut handshakes, mut truncated) = (0u64, 0u64, 0u64);

    // Random bytes instead of a handshake, and random bytes after one.
    for seed in 0..100u64 {
        let bytes = noise(seed, 64 << 10);
        let mut s = connect(&hub.socket);
        let _ = s.write_all(&bytes);
        assert_eq!(read_preamble(&mut s).status, Preamble::REFUSED, "seed {seed}");
        handshakes += 1;
        let mut s = connect(&hub.socket);
        handshake(&mut s);
        let _ = s.write_all(&bytes);
        // A random length prefix is either over the limit or a frame that
        // never completes; a complete random payload is malformed.
        let len = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
        if len > logfunnel_protocol::MAX_FRAME_BYTES || len == 0 || len + 4 <= bytes.len() {
            assert!(!refusal(&mut s).is_empty());
            frames += 1;
        } else {
            drop(s);
            truncated += 1;
        }
    }
    // A length prefix of 4 GiB - 1 (nothing allocated for it).
    assert!(refused_frame(&hub.socket, &u32::MAX.to_le_bytes()).contains("exceeds the limit"));
    frames += 1;
    // A valid-length frame claiming a Vec of 2^60 records.
    let mut payload = vec![1u8, 1, 253];
    payload.extend_from_slice(&(1u64 << 60).to_le_bytes());
    let mut bomb = (payload.len() as u32).to_le_bytes().to_vec();
    bomb.extend_from_slice(&payload);
    assert!(refused_frame(&hub.socket, &bomb).contains("malformed frame"));
    frames += 1;
    // Invalid UTF-8 in a message.
    let mut f = FrameBuf::default();
    let batch = logfunnel_protocol::Batch {
        first_seq: 1,
        records: vec![logfunnel_protocol::Record::new(20, "x", "AAAA".to_owned())],
    };
    encode_client_frame(&ClientFrame::Batch(batch), &mut f).unwrap();
    let mut bytes = f.as_bytes().to_vec();
    let at = bytes.windows(4).position(|w| w == b"AAAA").unwrap();
    bytes[at..at + 4].copy_from_slice(&[0xff, 0xfe, 0xc0, 0x80]);
    let reason = refused_frame(&hub.socket, &bytes);
    assert!(reason.contains("malformed frame") && reason.to_lowercase().contains("utf8"), "{reason}");
    frames += 1;
    // Every cut of a valid frame: the hub waits for the rest, then the
    // client goes away; nothing of the cut frame is delivered.
    for cut in 1..bytes.len() {
        let mut s = connect(&hub.socket);
        handshake(&mut s);
        s.write_all(&f.as_bytes()[..cut]).unwrap();
        drop(s);
        truncated += 1;
    }
    // Wrong magic and versions 0, current + 1 and 255.
    for v in [0u16, PROTOCOL_VERSION + 1, 255] {
        let mut s = connect(&hub.socket);
        s.write_all(&Preamble { version: v, status: 0 }.to_bytes()).unwrap();
        assert_eq!(read_preamble(&mut s).status, Preamble::REFUSED);
        assert!(refusal(&mut s).contains(&format!("unsupported protocol version {v}")));
        handshakes += 1;
    }

    let v = stats_when(&hub.socket, |v| v["truncated_frames"] == truncated);
    assert_eq!(
        (v["bad_frames"].as_u64(), v["bad_handshakes"].as_u64(), v["truncated_frames"].as_u64()),
        (Some(frames), Some(handshakes), Some(truncated)),
        "{v}"
    );
    assert_eq!(v["received"], 20_000, "nothing from a hostile client was taken");
    let rss1 = proc_status(pid, "VmRSS");
    assert!(rss1 < rss0 + 10 * 1024, "hub RSS {rss0} kB → {rss1} kB");
    // The hub still serves.
    finish_worker(worker(&hub.socket, 2, 1000, &[]));
    hub.stop();
    let (seqs, other) = sequences(&dir.path("out.log"));
    assert!(other.is_empty(), "{other:?}");
    assert_complete(&seqs, 1, 0, 20_000);
    assert_complete(&seqs, 2, 0, 1000);
}
