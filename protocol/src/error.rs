use thiserror::Error;

/// Everything that can be wrong with bytes on the wire. Each is a value the
/// hub reports and counts; none is a panic.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The connection did not start with `LFNL`.
    #[error("not a logfunnel client: connection starts with {found:02x?}, expected the magic \"LFNL\"")]
    BadMagic {
        /// The first four bytes received.
        found: [u8; 4],
    },
    /// The peer speaks another protocol version.
    #[error("unsupported protocol version {found} (this side speaks version {supported})")]
    UnsupportedVersion {
        /// The version the peer sent.
        found: u16,
        /// The version this build speaks.
        supported: u16,
    },
    /// A length prefix larger than the limit; nothing was allocated for it.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// The claimed payload length.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// A zero-length frame (never valid: every frame has a tag).
    #[error("empty frame")]
    EmptyFrame,
    /// The stream ended in the middle of a frame or preamble.
    #[error("stream ended mid-frame: got {got} of {expected} bytes")]
    Truncated {
        /// Bytes received.
        got: usize,
        /// Bytes the length prefix announced.
        expected: usize,
    },
    /// The payload is not a valid frame.
    #[error("malformed frame: {0}")]
    Malformed(#[from] bincode::error::DecodeError),
    /// The payload decoded, but bytes were left over.
    #[error("malformed frame: {extra} trailing bytes after a {used}-byte frame")]
    TrailingBytes {
        /// Bytes consumed by the frame.
        used: usize,
        /// Bytes left over.
        extra: usize,
    },
    /// A frame that is valid but not allowed at this point of the conversation.
    #[error("unexpected frame: {0}")]
    Unexpected(&'static str),
    /// The hub refused the connection.
    #[error("the hub refused the connection: {0}")]
    Refused(String),
    /// Encoding failed (a value too large for a frame).
    #[error("cannot encode frame: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    /// The underlying stream failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}
