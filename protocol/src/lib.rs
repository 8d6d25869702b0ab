//! logfunnel's wire format, in one place.
//!
//! A connection is a byte stream (a Unix domain socket, or a named pipe on
//! Windows). It opens with a fixed 8-byte [`Preamble`] in each direction, so a
//! hub can refuse a stranger or an incompatible client with a clear reason
//! before decoding anything else. After that, both sides exchange
//! length-prefixed frames: a little-endian `u32` payload length, then a
//! bincode 2 payload (standard configuration: little-endian, varints).
//!
//! The client sends [`ClientFrame`]s (a `Hello`, then `Batch`es of records
//! with sequence numbers), the hub answers with [`HubFrame`]s (`Welcome`,
//! `Ack`, `Refuse`). docs/PROTOCOL.md describes the bytes.
//!
//! Every length read from the wire is checked against a limit before anything
//! is allocated, and every decode runs over a bounded slice that has already
//! been read, so hostile input costs at most one frame's worth of memory.

mod append;
mod backoff;
mod codec;
mod error;
mod fast_encode;
mod fast_view;
mod level;
mod limits;
pub mod pickle;
pub mod python;
mod record;
mod stats;
pub mod sync;
mod time;

pub use append::append_short;
pub use backoff::Backoff;
pub use codec::{
    BatchBuilder, FrameBuf, Preamble, decode_client_frame, decode_client_frame_view,
    decode_client_frame_view_in, decode_hub_frame, encode_client_frame, encode_hub_frame, encode_record_ref,
    encode_record_with, encoded_record_len, encoded_record_len_with, read_frame, write_frame,
};
pub use error::ProtocolError;
pub use fast_encode::EncodedExtra;
pub use level::{Level, level_name, parse_level};
pub use limits::{MAX_NAME_BYTES, cut_message, cut_message_read, cut_str, is_cut_message};
pub use record::{
    Batch, ClientFrame, ClientFrameView, Hello, HubFrame, Record, RecordRef, RecordView, Value, ValueRef,
};
pub use stats::{ConnectionStats, HandlerStats, HubStats};
pub use time::now_ns;

/// The four bytes every logfunnel connection starts with, in both directions.
pub const MAGIC: [u8; 4] = *b"LFNL";

/// The protocol version this build speaks. A hub refuses any other.
pub const PROTOCOL_VERSION: u16 = 1;

/// The largest frame payload either side accepts (8 MiB). A client batches
/// records into frames of tens of KiB, so this only bounds hostile input and
/// single huge records.
pub const MAX_FRAME_BYTES: usize = 8 << 20;

/// The largest message a record may carry; longer ones are cut by one rule
/// ([`cut_message`]: a prefix and a marker saying how much was cut), as
/// rsyslog truncates at `maxMessageSize`. The client cuts before sending,
/// the hub cuts whatever arrives longer and counts both. Exception text and
/// the text of extra fields are bounded by this too.
pub const MAX_MESSAGE_BYTES: usize = 256 << 10;

/// The most memory the records of one frame may decode to (their views and
/// extra fields, beyond the frame's own bytes). An honest client's batch
/// (at most 1 MiB of records, plus one large record) takes a few MiB; a
/// frame of millions of minimal records or fields is refused instead of
/// decoding to hundreds of MiB.
pub const MAX_DECODED_BYTES: usize = 16 << 20;

/// Name of the environment variable that points clients and every
/// subcommand at the hub's socket.
pub const SOCKET_ENV: &str = "LOGFUNNEL_SOCKET";

/// Set by `logfunnel run` for its command: the Unix socket path that
/// Python's `SocketHandler(path, None)` sends to.
pub const PYTHON_SOCKET_ENV: &str = "LOGFUNNEL_PYTHON_SOCKET";

/// Set by `logfunnel run` when the configuration has `[hub] python_tcp`:
/// the `HOST:PORT` it is bound to.
pub const PYTHON_TCP_ENV: &str = "LOGFUNNEL_PYTHON_TCP";

/// The socket path used when neither `--socket`, `LOGFUNNEL_SOCKET` nor the
/// configuration names one: `$XDG_RUNTIME_DIR/logfunnel.sock`, or
/// `/tmp/logfunnel-<uid>/logfunnel.sock` (a private directory the hub creates
/// with mode 0700).
pub fn default_socket_path() -> std::path::PathBuf {
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return std::path::Path::new(&dir).join("logfunnel.sock");
    }
    let uid = current_uid();
    std::path::PathBuf::from(format!("/tmp/logfunnel-{uid}/logfunnel.sock"))
}

#[cfg(unix)]
fn current_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    // /proc/self is owned by the process's uid; avoids a libc dependency here.
    std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(0)
}

#[cfg(not(unix))]
fn current_uid() -> u32 {
    0
}
