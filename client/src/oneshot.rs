//! A synchronous one-shot sender, for `logfunnel send` and scripts: connect,
//! hand over some records, wait for the hub's acknowledgement, close.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use interprocess::local_socket::prelude::*;
use interprocess::local_socket::{ConnectOptions, GenericFilePath, Stream};
use logfunnel_protocol::{
    Batch, ClientFrame, FrameBuf, Hello, HubFrame, HubStats, PROTOCOL_VERSION, Preamble, ProtocolError,
    Record, decode_hub_frame, encode_client_frame, read_frame,
};

use crate::SendError;

/// Connects to the hub at `path`, sends `records` as one batch, and returns
/// once the hub has acknowledged them. A hub that is starting (its socket
/// not there yet, or not accepting) is waited for, up to `timeout`.
pub fn send_records(path: &Path, records: Vec<Record>, timeout: Duration) -> Result<(), SendError> {
    let mut session = Session::connect(path, timeout)?;
    session.send(records)?;
    session.close();
    Ok(())
}

/// A synchronous session with the hub: batches sent one after another,
/// each acknowledged before [`Session::send`] returns (`logfunnel send`
/// streams its stdin through one).
#[derive(Debug)]
pub struct Session {
    stream: Stream,
    path: String,
    /// The sequence number of the next record.
    next: u64,
    frame: FrameBuf,
    buf: Vec<u8>,
}

impl Session {
    /// Connects (waiting up to `timeout` for a hub that is starting) and
    /// shakes hands.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Session, SendError> {
        let p = path.display().to_string();
        let stream = connect_waiting(path, timeout)?;
        let next = handshake(&stream, 1, process_name())
            .map_err(|error| SendError::Protocol { path: p.clone(), error })?;
        if next > 1 {
            let error = ProtocolError::Unexpected("hub claims records of a new session");
            return Err(SendError::Protocol { path: p, error });
        }
        Ok(Session { stream, path: p, next: 1, frame: FrameBuf::default(), buf: Vec::new() })
    }

    /// Sends `records` as one batch and waits until the hub has them. A
    /// message over the protocol's limit is cut by its one rule, as the log
    /// call cuts it.
    pub fn send(&mut self, mut records: Vec<Record>) -> Result<(), SendError> {
        let proto = |path: &str, error| SendError::Protocol { path: path.to_owned(), error };
        if records.is_empty() {
            return Ok(());
        }
        for r in &mut records {
            if let Some(cut) = logfunnel_protocol::cut_message(&r.message) {
                r.message = cut;
            }
        }
        let first_seq = self.next;
        let end = first_seq + records.len() as u64;
        encode_client_frame(&ClientFrame::Batch(Batch { first_seq, records }), &mut self.frame)
            .map_err(|e| proto(&self.path, e))?;
        (&self.stream).write_all(self.frame.as_bytes()).map_err(|e| proto(&self.path, e.into()))?;
        loop {
            match read_hub_frame(&self.stream, &mut self.buf).map_err(|e| proto(&self.path, e))? {
                HubFrame::Ack { next_seq } if next_seq >= end => break,
                HubFrame::Ack { .. } => continue,
                HubFrame::Refuse { reason } => return Err(proto(&self.path, ProtocolError::Refused(reason))),
                HubFrame::Welcome { .. } | HubFrame::Stats(_) => {
                    let e = ProtocolError::Unexpected("a Welcome or Stats frame after the handshake");
                    return Err(proto(&self.path, e));
                }
            }
        }
        self.next = end;
        Ok(())
    }

    /// Says goodbye and closes.
    pub fn close(mut self) {
        if encode_client_frame(&ClientFrame::Bye, &mut self.frame).is_ok() {
            let _ = (&self.stream).write_all(self.frame.as_bytes());
        }
    }
}

/// Asks the hub at `path` for its counters (`logfunnel stats`), waiting up
/// to `timeout` for a hub that is starting.
pub fn fetch_stats(path: &Path, timeout: Duration) -> Result<HubStats, SendError> {
    let p = || path.display().to_string();
    let stream = connect_waiting(path, timeout)?;
    let proto = |source| SendError::Protocol { path: p(), error: source };
    let mut out = Preamble { version: PROTOCOL_VERSION, status: Preamble::OK }.to_bytes().to_vec();
    let mut frame = FrameBuf::default();
    encode_client_frame(&ClientFrame::Stats, &mut frame).map_err(proto)?;
    out.extend_from_slice(frame.as_bytes());
    (&stream).write_all(&out).map_err(|e| proto(e.into()))?;
    let mut r = &stream;
    let pre = Preamble::read_from(&mut r).map_err(proto)?;
    let mut buf = Vec::new();
    match read_hub_frame(&stream, &mut buf).map_err(proto)? {
        HubFrame::Stats(s) if pre.status == Preamble::OK => Ok(s),
        HubFrame::Refuse { reason } => Err(proto(ProtocolError::Refused(reason))),
        _ => Err(proto(ProtocolError::Unexpected("expected a Stats frame"))),
    }
}

/// Waits up to `timeout` until a hub answers on `path` (`logfunnel wait`):
/// returns its counters once it does.
pub fn wait_for_hub(path: &Path, timeout: Duration) -> Result<HubStats, SendError> {
    fetch_stats(path, timeout)
}

/// Connects, retrying while the socket does not exist or refuses (a hub
/// that is starting) until `timeout` has passed.
fn connect_waiting(path: &Path, timeout: Duration) -> Result<Stream, SendError> {
    let start = std::time::Instant::now();
    let mut pause = logfunnel_protocol::Backoff::new(Duration::from_millis(5), Duration::from_millis(100));
    loop {
        match connect(path, timeout) {
            Ok(stream) => return Ok(stream),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) && start.elapsed() < timeout =>
            {
                std::thread::sleep(pause.next_delay().min(timeout.saturating_sub(start.elapsed())));
            }
            Err(error) => {
                return Err(SendError::NoHub {
                    path: path.display().to_string(),
                    waited: start.elapsed(),
                    error,
                });
            }
        }
    }
}

pub(crate) fn connect(path: &Path, timeout: Duration) -> std::io::Result<Stream> {
    let name = path.to_fs_name::<GenericFilePath>()?;
    let stream = ConnectOptions::new().name(name).connect_sync()?;
    stream.set_send_timeout(Some(timeout))?;
    stream.set_recv_timeout(Some(timeout))?;
    Ok(stream)
}

pub(crate) fn process_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "MainProcess".to_owned())
}

pub(crate) fn host_name() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// Sends the preamble and `Hello`, reads the hub's answer; returns the
/// sequence number the hub expects next for this session.
pub(crate) fn handshake(stream: &Stream, first_seq: u64, process_name: String) -> Result<u64, ProtocolError> {
    handshake_session(stream, first_seq, process_name, crate::new_session_id())
}

pub(crate) fn handshake_session(
    stream: &Stream,
    first_seq: u64,
    process_name: String,
    session: u64,
) -> Result<u64, ProtocolError> {
    let mut out = Preamble { version: PROTOCOL_VERSION, status: Preamble::OK }.to_bytes().to_vec();
    let hello = Hello { pid: std::process::id(), process_name, host_name: host_name(), session, first_seq };
    let mut frame = FrameBuf::default();
    encode_client_frame(&ClientFrame::Hello(hello), &mut frame)?;
    out.extend_from_slice(frame.as_bytes());
    // One write: a full backlog can make connect succeed and this fail.
    let mut w = stream;
    w.write_all(&out)?;
    let mut r = stream;
    let pre = Preamble::read_from(&mut r)?;
    let mut buf = Vec::new();
    if pre.status != Preamble::OK {
        return match read_hub_frame(stream, &mut buf)? {
            HubFrame::Refuse { reason } => Err(ProtocolError::Refused(reason)),
            _ => Err(ProtocolError::Unexpected("refusal without a reason")),
        };
    }
    if pre.version != PROTOCOL_VERSION {
        return Err(ProtocolError::UnsupportedVersion { found: pre.version, supported: PROTOCOL_VERSION });
    }
    match read_hub_frame(stream, &mut buf)? {
        HubFrame::Welcome { next_seq } => Ok(next_seq),
        HubFrame::Refuse { reason } => Err(ProtocolError::Refused(reason)),
        HubFrame::Ack { .. } | HubFrame::Stats(_) => {
            Err(ProtocolError::Unexpected("Ack or Stats before Welcome"))
        }
    }
}

fn read_hub_frame(stream: &Stream, buf: &mut Vec<u8>) -> Result<HubFrame, ProtocolError> {
    let mut r = stream;
    if !read_frame(&mut r, buf)? {
        return Err(ProtocolError::Truncated { got: 0, expected: 4 });
    }
    decode_hub_frame(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_hub_keeps_what_connecting_said_as_the_source() {
        let path = Path::new("/nonexistent-logfunnel-dir/hub.sock");
        let Err(e) = wait_for_hub(path, Duration::ZERO) else { panic!("a hub answered on {path:?}") };
        assert_eq!(e.to_string(), format!("no hub answers on {} (waited 0.0s)", path.display()));
        let source = std::error::Error::source(&e).expect("the io::Error is the source");
        let io = source.downcast_ref::<std::io::Error>().expect("an io::Error");
        assert_eq!(io.kind(), std::io::ErrorKind::NotFound, "{io}");
    }
}
