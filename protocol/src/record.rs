//! The record and the frames that carry it.

use serde::{Deserialize, Serialize};

/// String decoding that borrows from the frame and copies once. Serde's
/// own `String` impl asks bincode for an owned string, which it builds by
/// zero-filling a buffer and reading into it: a calloc per field, on the
/// hub's hottest path (docs/BENCHMARKS.md#decoding-and-encoding-frames).
pub(crate) use de::{DECODE_BUDGET, FRAME_BYTES};

mod de {
    use std::fmt;

    use serde::Deserializer;
    use serde::de::{Error, Visitor};

    struct Str;

    impl<'de> Visitor<'de> for Str {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_owned())
        }
        fn visit_string<E: Error>(self, v: String) -> Result<String, E> {
            Ok(v)
        }
    }

    struct OptStr;

    impl<'de> Visitor<'de> for OptStr {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an optional string")
        }
        fn visit_none<E: Error>(self) -> Result<Option<String>, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<String>, D::Error> {
            string(d).map(Some)
        }
    }

    pub(super) fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        d.deserialize_str(Str)
    }

    pub(super) fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        d.deserialize_option(OptStr)
    }

    std::thread_local! {
        /// Bytes of the frame being decoded (set by the codec): no sequence
        /// in it can hold more elements than this divided by their smallest
        /// encoding.
        pub(crate) static FRAME_BYTES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
        /// Bytes of decoded elements the frame being decoded may still
        /// take (set by the codec to `MAX_DECODED_BYTES`): a few MiB of
        /// minimal records or fields must not decode to hundreds of MiB.
        pub(crate) static DECODE_BUDGET: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
    }

    struct BoundedVec<T, const MIN_BYTES: usize>(std::marker::PhantomData<T>);

    impl<'de, T: serde::Deserialize<'de>, const MIN_BYTES: usize> Visitor<'de> for BoundedVec<T, MIN_BYTES> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a sequence")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            // The claimed length is the peer's word (serde would still
            // pre-allocate up to 1 MiB for it: bincode issue 764). Trust it
            // only as far as the frame's bytes could hold that many elements.
            let room = FRAME_BYTES.with(|b| b.get()) / MIN_BYTES;
            let afford = DECODE_BUDGET.with(|b| b.get()) / std::mem::size_of::<T>().max(1);
            let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(room).min(afford));
            while let Some(x) = seq.next_element()? {
                let left = DECODE_BUDGET.with(|b| b.get()).checked_sub(std::mem::size_of::<T>());
                match left {
                    Some(left) => DECODE_BUDGET.with(|b| b.set(left)),
                    None => {
                        return Err(A::Error::custom(format_args!(
                            "the frame decodes to more than {} bytes of records",
                            crate::MAX_DECODED_BYTES
                        )));
                    }
                }
                v.push(x);
            }
            Ok(v)
        }
    }

    /// Records: each takes at least 14 bytes on the wire (one per field).
    pub(super) fn records<'de, D: Deserializer<'de>, T: serde::Deserialize<'de>>(
        d: D,
    ) -> Result<Vec<T>, D::Error> {
        d.deserialize_seq(BoundedVec::<T, 14>(std::marker::PhantomData))
    }

    /// Extra fields: each takes at least 3 bytes (key length, variant, value).
    pub(super) fn extra<'de, D: Deserializer<'de>, T: serde::Deserialize<'de>>(
        d: D,
    ) -> Result<Vec<T>, D::Error> {
        d.deserialize_seq(BoundedVec::<T, 3>(std::marker::PhantomData))
    }
}

/// A structured field value (log's key-values, tracing's fields), usable in
/// a format string as `%(key)s`. A closed enum because bincode cannot carry
/// self-describing values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    /// Text (anything that is not one of the others is sent as its Display).
    Str(String),
    /// A signed integer.
    I64(i64),
    /// An unsigned integer.
    U64(u64),
    /// A float.
    F64(f64),
    /// A boolean.
    Bool(bool),
}

/// The borrowed twin of [`Value`]: same bytes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum ValueRef<'a> {
    /// Text.
    Str(#[serde(borrow)] &'a str),
    /// A signed integer.
    I64(i64),
    /// An unsigned integer.
    U64(u64),
    /// A float.
    F64(f64),
    /// A boolean.
    Bool(bool),
}

/// One log record: what Python's `LogRecord` carries, so `%(...)s` format
/// strings work unchanged. The message is already formatted by the worker
/// (as `QueueHandler.prepare` does). Per-connection facts (host, process
/// name) travel once in the [`Hello`].
///
/// Field order is the wire order: [`RecordRef`] must match it exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Creation time, nanoseconds since the Unix epoch.
    pub created_ns: i64,
    /// Python level number (DEBUG 10 … CRITICAL 50; TRACE 5).
    pub levelno: u32,
    /// Logger name (Rust: the log target).
    #[serde(deserialize_with = "de::string")]
    pub name: String,
    /// The formatted message.
    #[serde(deserialize_with = "de::string")]
    pub message: String,
    /// Source file path, if known.
    #[serde(deserialize_with = "de::opt_string")]
    pub pathname: Option<String>,
    /// Source line, 0 if unknown.
    pub lineno: u32,
    /// Function name, if known (Rust does not know it).
    #[serde(deserialize_with = "de::opt_string")]
    pub func_name: Option<String>,
    /// Rust module path, if known.
    #[serde(deserialize_with = "de::opt_string")]
    pub module_path: Option<String>,
    /// Process id of the producer.
    pub process: u32,
    /// Process name, when it differs from the connection's.
    #[serde(deserialize_with = "de::opt_string")]
    pub process_name: Option<String>,
    /// Thread id of the producer (the OS thread id on Linux).
    pub thread: u64,
    /// Thread name, if the thread has one.
    #[serde(deserialize_with = "de::opt_string")]
    pub thread_name: Option<String>,
    /// Formatted exception or backtrace text, appended by formatters as Python does.
    #[serde(deserialize_with = "de::opt_string")]
    pub exc_text: Option<String>,
    /// Structured fields, in the order they were given.
    #[serde(deserialize_with = "de::extra")]
    pub extra: Vec<(String, Value)>,
}

/// The borrowed twin of [`Record`], for encoding without copying strings.
#[derive(Debug, Clone, Serialize)]
pub struct RecordRef<'a> {
    /// See [`Record::created_ns`].
    pub created_ns: i64,
    /// See [`Record::levelno`].
    pub levelno: u32,
    /// See [`Record::name`].
    pub name: &'a str,
    /// See [`Record::message`].
    pub message: &'a str,
    /// See [`Record::pathname`].
    pub pathname: Option<&'a str>,
    /// See [`Record::lineno`].
    pub lineno: u32,
    /// See [`Record::func_name`].
    pub func_name: Option<&'a str>,
    /// See [`Record::module_path`].
    pub module_path: Option<&'a str>,
    /// See [`Record::process`].
    pub process: u32,
    /// See [`Record::process_name`].
    pub process_name: Option<&'a str>,
    /// See [`Record::thread`].
    pub thread: u64,
    /// See [`Record::thread_name`].
    pub thread_name: Option<&'a str>,
    /// See [`Record::exc_text`].
    pub exc_text: Option<&'a str>,
    /// See [`Record::extra`].
    pub extra: &'a [(&'a str, ValueRef<'a>)],
}

/// A decoded record whose strings point into the frame it came from: what
/// the hub routes and formats, so that decoding allocates nothing per
/// string. Same wire layout as [`Record`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RecordView<'a> {
    /// See [`Record::created_ns`].
    pub created_ns: i64,
    /// See [`Record::levelno`].
    pub levelno: u32,
    /// See [`Record::name`].
    pub name: &'a str,
    /// See [`Record::message`].
    pub message: &'a str,
    /// See [`Record::pathname`].
    #[serde(borrow)]
    pub pathname: Option<&'a str>,
    /// See [`Record::lineno`].
    pub lineno: u32,
    /// See [`Record::func_name`].
    #[serde(borrow)]
    pub func_name: Option<&'a str>,
    /// See [`Record::module_path`].
    #[serde(borrow)]
    pub module_path: Option<&'a str>,
    /// See [`Record::process`].
    pub process: u32,
    /// See [`Record::process_name`].
    #[serde(borrow)]
    pub process_name: Option<&'a str>,
    /// See [`Record::thread`].
    pub thread: u64,
    /// See [`Record::thread_name`].
    #[serde(borrow)]
    pub thread_name: Option<&'a str>,
    /// See [`Record::exc_text`].
    #[serde(borrow)]
    pub exc_text: Option<&'a str>,
    /// See [`Record::extra`] (an empty `Vec` does not allocate).
    #[serde(borrow, deserialize_with = "de::extra")]
    pub extra: Vec<(&'a str, ValueRef<'a>)>,
}

impl Value {
    /// The borrowed form.
    pub fn as_ref(&self) -> ValueRef<'_> {
        match self {
            Value::Str(s) => ValueRef::Str(s),
            Value::I64(i) => ValueRef::I64(*i),
            Value::U64(u) => ValueRef::U64(*u),
            Value::F64(f) => ValueRef::F64(*f),
            Value::Bool(b) => ValueRef::Bool(*b),
        }
    }
}

impl ValueRef<'_> {
    /// The owned form.
    pub fn to_value(&self) -> Value {
        match *self {
            ValueRef::Str(s) => Value::Str(s.to_owned()),
            ValueRef::I64(i) => Value::I64(i),
            ValueRef::U64(u) => Value::U64(u),
            ValueRef::F64(f) => Value::F64(f),
            ValueRef::Bool(b) => Value::Bool(b),
        }
    }
}

impl RecordView<'_> {
    /// The same record for encoding again (the hub's MemoryHandler keeps
    /// copies this way).
    pub fn as_record_ref(&self) -> RecordRef<'_> {
        RecordRef {
            created_ns: self.created_ns,
            levelno: self.levelno,
            name: self.name,
            message: self.message,
            pathname: self.pathname,
            lineno: self.lineno,
            func_name: self.func_name,
            module_path: self.module_path,
            process: self.process,
            process_name: self.process_name,
            thread: self.thread,
            thread_name: self.thread_name,
            exc_text: self.exc_text,
            extra: &self.extra,
        }
    }
}

impl Record {
    /// A view of this record, as the hub sees decoded records.
    pub fn view(&self) -> RecordView<'_> {
        RecordView {
            created_ns: self.created_ns,
            levelno: self.levelno,
            name: &self.name,
            message: &self.message,
            pathname: self.pathname.as_deref(),
            lineno: self.lineno,
            func_name: self.func_name.as_deref(),
            module_path: self.module_path.as_deref(),
            process: self.process,
            process_name: self.process_name.as_deref(),
            thread: self.thread,
            thread_name: self.thread_name.as_deref(),
            exc_text: self.exc_text.as_deref(),
            extra: self.extra.iter().map(|(k, v)| (k.as_str(), v.as_ref())).collect(),
        }
    }

    /// A record with just a level, logger name and message; everything else
    /// empty. Handy for `logfunnel send` and for tests.
    pub fn new(levelno: u32, name: impl Into<String>, message: impl Into<String>) -> Record {
        Record {
            created_ns: 0,
            levelno,
            name: name.into(),
            message: message.into(),
            pathname: None,
            lineno: 0,
            func_name: None,
            module_path: None,
            process: 0,
            process_name: None,
            thread: 0,
            thread_name: None,
            exc_text: None,
            extra: Vec::new(),
        }
    }
}

/// The client's first frame: who it is and where its sequence resumes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// The client's process id.
    pub pid: u32,
    /// The client's process name (Python's `processName`).
    pub process_name: String,
    /// The client's host name.
    pub host_name: String,
    /// A random id, fixed for the client's lifetime, so a hub can drop
    /// batches it already took when a client reconnects and resends.
    pub session: u64,
    /// The sequence number of the first record the client still holds.
    pub first_seq: u64,
}

/// A run of records with consecutive sequence numbers starting at `first_seq`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// Sequence number of `records[0]`.
    pub first_seq: u64,
    /// The records.
    #[serde(deserialize_with = "de::records")]
    pub records: Vec<Record>,
}

/// [`ClientFrame`] decoded without copying strings (see [`RecordView`]).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub enum ClientFrameView<'a> {
    /// See [`ClientFrame::Hello`].
    Hello(Hello),
    /// See [`ClientFrame::Batch`]: first sequence number and records.
    Batch(u64, #[serde(borrow, deserialize_with = "de::records")] Vec<RecordView<'a>>),
    /// See [`ClientFrame::Bye`].
    Bye,
    /// See [`ClientFrame::Stats`].
    Stats,
}

/// Frames a client sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ClientFrame {
    /// Always the first frame.
    Hello(Hello),
    /// Records.
    Batch(Batch),
    /// The client is closing cleanly.
    Bye,
    /// Instead of `Hello`: ask for the hub's counters (`logfunnel stats`).
    /// The hub answers with `HubFrame::Stats` and closes.
    Stats,
}

/// Frames the hub sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum HubFrame {
    /// Answer to `Hello`: the hub already holds every record of this session
    /// below `next_seq`; the client resends from there.
    Welcome {
        /// First sequence number the hub has not taken.
        next_seq: u64,
    },
    /// Every record below `next_seq` has been taken by the hub's queues.
    Ack {
        /// First sequence number the hub has not taken.
        next_seq: u64,
    },
    /// The hub closes the connection, and says why.
    Refuse {
        /// A human-readable reason.
        reason: String,
    },
    /// Answer to `ClientFrame::Stats`.
    Stats(crate::HubStats),
}
