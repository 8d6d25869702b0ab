//! Round trips (property tests) and every bad-frame case: each bad input is
//! an error value naming the problem, never a panic.

use logfunnel_protocol::*;
use proptest::prelude::*;

fn arb_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        ".{0,20}".prop_map(Value::Str),
        any::<i64>().prop_map(Value::I64),
        any::<u64>().prop_map(Value::U64),
        any::<f64>().prop_filter("NaN != NaN", |f| !f.is_nan()).prop_map(Value::F64),
        any::<bool>().prop_map(Value::Bool),
    ]
}

prop_compose! {
    fn arb_record()(
        created_ns in any::<i64>(),
        levelno in any::<u32>(),
        name in "[a-z.]{0,30}",
        message in ".{0,200}",
        pathname in proptest::option::of(".{0,40}"),
        lineno in any::<u32>(),
        func_name in proptest::option::of("[a-z_]{1,10}"),
        module_path in proptest::option::of("[a-z:]{1,20}"),
        process in any::<u32>(),
        process_name in proptest::option::of(".{0,10}"),
        thread in any::<u64>(),
        thread_name in proptest::option::of(".{0,10}"),
        exc_text in proptest::option::of(".{0,100}"),
        extra in proptest::collection::vec(("[a-z]{1,8}", arb_value()), 0..4),
    ) -> Record {
        Record { created_ns, levelno, name, message, pathname, lineno, func_name, module_path,
                 process, process_name, thread, thread_name, exc_text, extra }
    }
}

fn as_ref(r: &Record) -> (RecordRef<'_>, Vec<(&str, ValueRef<'_>)>) {
    let extra = r
        .extra
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Value::Str(s) => ValueRef::Str(s),
                Value::I64(i) => ValueRef::I64(*i),
                Value::U64(u) => ValueRef::U64(*u),
                Value::F64(f) => ValueRef::F64(*f),
                Value::Bool(b) => ValueRef::Bool(*b),
            };
            (k.as_str(), v)
        })
        .collect();
    let rec = RecordRef {
        created_ns: r.created_ns,
        levelno: r.levelno,
        name: &r.name,
        message: &r.message,
        pathname: r.pathname.as_deref(),
        lineno: r.lineno,
        func_name: r.func_name.as_deref(),
        module_path: r.module_path.as_deref(),
        process: r.process,
        process_name: r.process_name.as_deref(),
        thread: r.thread,
        thread_name: r.thread_name.as_deref(),
        exc_text: r.exc_text.as_deref(),
        extra: &[],
    };
    (rec, extra)
}

fn payload(frame: &FrameBuf) -> &[u8] {
    &frame.as_bytes()[4..]
}

proptest! {
    #[test]
    fn batches_round_trip(first_seq in any::<u64>(), records in proptest::collection::vec(arb_record(), 0..20)) {
        let frame = ClientFrame::Batch(Batch { first_seq, records });
        let mut buf = FrameBuf::default();
        encode_client_frame(&frame, &mut buf).unwrap();
        let len = u32::from_le_bytes(buf.as_bytes()[..4].try_into().unwrap()) as usize;
        prop_assert_eq!(len, buf.as_bytes().len() - 4);
        prop_assert_eq!(decode_client_frame(payload(&buf)).unwrap(), frame);
    }

    /// What the client builds record by record is byte-identical to the
    /// whole batch encoded at once.
    #[test]
    fn batch_builder_matches_whole_batch_encoding(first_seq in any::<u64>(), records in proptest::collection::vec(arb_record(), 0..300)) {
        let mut builder = BatchBuilder::with_capacity(1024);
        builder.reset(first_seq);
        let mut slot = vec![0u8; 1 << 16];
        for r in &records {
            let (mut rec, extra) = as_ref(r);
            rec.extra = &extra;
            let n = encode_record_ref(&rec, &mut slot).unwrap();
            prop_assert_eq!(n, encoded_record_len(&rec));
            builder.push_encoded(&slot[..n]);
        }
        let built = builder.finish().unwrap().to_vec();
        let mut whole = FrameBuf::default();
        encode_client_frame(&ClientFrame::Batch(Batch { first_seq, records }), &mut whole).unwrap();
        prop_assert_eq!(built, whole.as_bytes().to_vec());
    }

    #[test]
    fn hub_frames_round_trip(next_seq in any::<u64>(), reason in ".{0,100}") {
        for frame in [HubFrame::Welcome { next_seq }, HubFrame::Ack { next_seq }, HubFrame::Refuse { reason: reason.clone() }] {
            let mut buf = FrameBuf::default();
            encode_hub_frame(&frame, &mut buf).unwrap();
            prop_assert_eq!(decode_hub_frame(payload(&buf)).unwrap(), frame);
        }
    }

    /// Arbitrary bytes never panic the decoder.
    #[test]
    fn random_bytes_are_errors_not_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_client_frame(&bytes);
        let _ = decode_hub_frame(&bytes);
        let _ = read_frame(&mut &bytes[..], &mut Vec::new());
    }

    /// Every truncation of a valid frame is an error.
    #[test]
    fn truncated_payloads_are_errors(records in proptest::collection::vec(arb_record(), 1..5), cut in any::<prop::sample::Index>()) {
        let mut buf = FrameBuf::default();
        encode_client_frame(&ClientFrame::Batch(Batch { first_seq: 1, records }), &mut buf).unwrap();
        let p = payload(&buf);
        let cut = cut.index(p.len());
        prop_assert!(decode_client_frame(&p[..cut]).is_err());
        // Through the reader: the length prefix promises more than arrives.
        let whole = buf.as_bytes();
        let err = read_frame(&mut &whole[..4 + cut], &mut Vec::new());
        prop_assert!(cut == 0 || matches!(err, Err(ProtocolError::Truncated { .. })), "{:?}", err);
    }
}

#[test]
fn preamble_checks_magic_and_carries_version() {
    let p = Preamble { version: PROTOCOL_VERSION, status: Preamble::OK };
    assert_eq!(Preamble::parse(p.to_bytes()).unwrap(), p);
    let err = Preamble::parse(*b"GET / HT").unwrap_err();
    assert!(matches!(err, ProtocolError::BadMagic { found } if &found == b"GET "));
    assert!(err.to_string().contains("not a logfunnel client"));
    let err = Preamble::read_from(&mut &b"LFN"[..]).unwrap_err();
    assert!(matches!(err, ProtocolError::Truncated { got: 3, expected: 8 }));
}

#[test]
fn oversized_length_prefix_is_refused_before_allocating() {
    let mut input = &u32::MAX.to_le_bytes()[..];
    let mut buf = Vec::new();
    let err = read_frame(&mut input, &mut buf).unwrap_err();
    assert!(matches!(err, ProtocolError::FrameTooLarge { len: 4294967295, .. }), "{err}");
    assert_eq!(buf.capacity(), 0, "nothing allocated for a refused frame");
    let err = read_frame(&mut &0u32.to_le_bytes()[..], &mut buf).unwrap_err();
    assert!(matches!(err, ProtocolError::EmptyFrame));
}

#[test]
fn clean_end_of_stream_is_not_an_error() {
    assert!(!read_frame(&mut &b""[..], &mut Vec::new()).unwrap());
    let err = read_frame(&mut &[5u8, 0][..], &mut Vec::new()).unwrap_err();
    assert!(matches!(err, ProtocolError::Truncated { got: 2, expected: 4 }));
}

#[test]
fn a_vec_length_of_2_pow_60_is_refused_without_allocating() {
    // Batch variant, first_seq 1, then a count of 2^60 records (varint tag 253 + u64).
    let mut p = vec![1u8, 1, 253];
    p.extend_from_slice(&(1u64 << 60).to_le_bytes());
    let err = decode_client_frame(&p).unwrap_err();
    assert!(matches!(err, ProtocolError::Malformed(_)), "{err}");
    // A string claiming 2^60 bytes inside a record.
    let mut p = vec![1u8, 1, 1, 0, 20, 253];
    p.extend_from_slice(&(1u64 << 60).to_le_bytes());
    assert!(matches!(decode_client_frame(&p).unwrap_err(), ProtocolError::Malformed(_)));
}

#[test]
fn invalid_utf8_unknown_variants_and_trailing_bytes_are_refused() {
    let rec = Record::new(20, "a", "hi");
    let mut buf = FrameBuf::default();
    encode_client_frame(&ClientFrame::Batch(Batch { first_seq: 1, records: vec![rec] }), &mut buf).unwrap();
    let mut p = payload(&buf).to_vec();
    // The message "hi" sits near the end: make it invalid UTF-8.
    let at = p.windows(2).position(|w| w == b"hi").unwrap();
    p[at] = 0xFF;
    let err = decode_client_frame(&p).unwrap_err();
    assert!(err.to_string().contains("malformed frame"), "{err}");
    let err = decode_client_frame(&[9u8]).unwrap_err();
    assert!(matches!(err, ProtocolError::Malformed(_)), "{err}");
    let mut p = payload(&buf).to_vec();
    p.push(0);
    let err = decode_client_frame(&p).unwrap_err();
    assert!(matches!(err, ProtocolError::TrailingBytes { extra: 1, .. }), "{err}");
}

#[test]
fn wire_bytes_of_a_hello_are_stable() {
    // Pins the documented layout (docs/PROTOCOL.md): a change here is a
    // protocol change and needs a version bump.
    let hello = Hello { pid: 300, process_name: "w".into(), host_name: "h".into(), session: 1, first_seq: 1 };
    let mut buf = FrameBuf::default();
    encode_client_frame(&ClientFrame::Hello(hello), &mut buf).unwrap();
    assert_eq!(buf.as_bytes(), &[10, 0, 0, 0, 0, 251, 44, 1, 1, b'w', 1, b'h', 1, 1]);
}

proptest! {
    /// The hub's zero-copy decoding sees exactly what the owned decoding sees.
    #[test]
    fn views_decode_like_owned_records(first_seq in any::<u64>(), records in proptest::collection::vec(arb_record(), 0..20)) {
        let mut buf = FrameBuf::default();
        encode_client_frame(&ClientFrame::Batch(Batch { first_seq, records: records.clone() }), &mut buf).unwrap();
        match decode_client_frame_view(payload(&buf)).unwrap() {
            ClientFrameView::Batch(seq, views) => {
                prop_assert_eq!(seq, first_seq);
                let expected: Vec<RecordView<'_>> = records.iter().map(Record::view).collect();
                prop_assert_eq!(views, expected);
            }
            other => prop_assert!(false, "{:?}", other),
        }
    }

    #[test]
    fn random_bytes_are_errors_not_panics_for_views_too(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_client_frame_view(&bytes);
    }
}

#[test]
fn views_refuse_what_owned_decoding_refuses() {
    let mut p = vec![1u8, 1, 253];
    p.extend_from_slice(&(1u64 << 60).to_le_bytes());
    assert!(matches!(decode_client_frame_view(&p).unwrap_err(), ProtocolError::Malformed(_)));
    let rec = Record::new(20, "a", "hi");
    let mut buf = FrameBuf::default();
    encode_client_frame(&ClientFrame::Batch(Batch { first_seq: 1, records: vec![rec] }), &mut buf).unwrap();
    let mut bad = payload(&buf).to_vec();
    let at = bad.windows(2).position(|w| w == b"hi").unwrap();
    bad[at] = 0xFF;
    assert!(decode_client_frame_view(&bad).unwrap_err().to_string().contains("malformed frame"));
}
