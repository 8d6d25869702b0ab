//! RELP, rsyslog's Reliable Event Logging Protocol, on a stream (TCP or
//! TLS): each record is a numbered frame the server answers with a
//! response, so a record counts as delivered only once the server says it
//! took it. Frames not answered when a connection breaks are sent again on
//! the next one, so a restart of the server loses nothing (RELP's own
//! caveat: a frame the server took just before the break, whose answer was
//! lost with it, arrives twice).
//!
//! Frames: `TXNR SP COMMAND SP DATALEN [SP DATA] LF`. A session opens with
//! `open` (offering `relp_version=0` and the `syslog` command), sends
//! `syslog` frames, and ends with `close`; the server may announce
//! `serverclose`. Transaction numbers run 1…999,999,999 and wrap to 1.

use std::collections::VecDeque;
use std::time::Instant;

use super::link::Link;
use super::{Attempt, OutBatch, Transport};

const MAX_TXNR: u32 = 999_999_999;
/// The longest response frame accepted (the server's `open` answer is the largest).
const MAX_RESPONSE: usize = 64 << 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Session {
    /// No connection, or one on which `open` is not sent yet.
    Closed,
    /// `open` sent (with this txnr), waiting for its answer.
    Opening(u32),
    Open,
}

/// One frame sent and not answered yet.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    txnr: u32,
    /// The record's index in the front batch.
    index: usize,
    /// The server's answer: accepted (200) or refused.
    answer: Option<bool>,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct RelpTransport {
    link: Link,
    session: Session,
    next_txnr: u32,
    /// Frames awaiting their answers, in sending order.
    in_flight: VecDeque<InFlight>,
    /// Index of the next record of the front batch to frame.
    next_send: usize,
    /// Which batch `next_send` and `in_flight` belong to.
    batch_id: Option<u64>,
    /// Encoded frames not yet written.
    out: Vec<u8>,
    out_pos: usize,
    /// Bytes read and not yet parsed.
    inbuf: Vec<u8>,
    /// At most this many frames unanswered.
    window: usize,
    what: String,
    /// The last refusal's text (a `500` answer).
    refused: Option<String>,
    /// When the server last answered, or frames started waiting for it.
    last_answer: Instant,
}

impl RelpTransport {
    pub(crate) fn new(link: Link, window: usize) -> RelpTransport {
        let what = format!("relp {}{}", if link.is_tls() { "tls " } else { "" }, link.endpoint());
        RelpTransport {
            link,
            session: Session::Closed,
            next_txnr: 1,
            in_flight: VecDeque::new(),
            next_send: 0,
            batch_id: None,
            out: Vec::new(),
            out_pos: 0,
            inbuf: Vec::new(),
            window: window.max(1),
            what,
            refused: None,
            last_answer: Instant::now(),
        }
    }

    fn txnr(&mut self) -> u32 {
        let t = self.next_txnr;
        self.next_txnr = if t >= MAX_TXNR { 1 } else { t + 1 };
        t
    }

    fn frame(&mut self, command: &str, data: &[u8]) -> u32 {
        let txnr = self.txnr();
        use std::io::Write as _;
        let _ = write!(self.out, "{txnr} {command} {}", data.len());
        if !data.is_empty() {
            self.out.push(b' ');
            self.out.extend_from_slice(data);
        }
        self.out.push(b'\n');
        txnr
    }

    /// The connection is gone: unanswered frames will be sent again.
    fn broken(&mut self, batch: &OutBatch) {
        self.link.reset();
        self.session = Session::Closed;
        self.in_flight.clear();
        self.next_send = batch.done();
        self.out.clear();
        self.out_pos = 0;
        self.inbuf.clear();
        self.next_txnr = 1;
    }

    /// Writes pending frames; false when the socket is full.
    fn write_out(&mut self) -> std::io::Result<bool> {
        while self.out_pos < self.out.len() {
            match self.link.write(&self.out[self.out_pos..])? {
                0 => return Ok(false),
                n => self.out_pos += n,
            }
        }
        self.out.clear();
        self.out_pos = 0;
        Ok(true)
    }

    /// Reads and handles the server's frames: every answer that arrived is
    /// recorded, even when the connection then turns out closed (those
    /// answers must not be lost, or their frames would be sent twice).
    fn read_in(&mut self) -> Result<(), String> {
        let mut buf = [0u8; 16 << 10];
        let mut ended = None;
        loop {
            match self.link.read(&mut buf) {
                Ok(None) => break,
                Ok(Some(0)) => {
                    ended = Some("the server closed the connection".to_owned());
                    break;
                }
                Ok(Some(n)) => self.inbuf.extend_from_slice(&buf[..n]),
                Err(e) => {
                    ended = Some(e.to_string());
                    break;
                }
            }
        }
        let mut inbuf = std::mem::take(&mut self.inbuf);
        let mut at = 0;
        let result = loop {
            match parse_frame(&inbuf[at..]) {
                Ok(Some((frame, used))) => {
                    at += used;
                    if let Err(e) = self.answer(frame) {
                        break Err(e);
                    }
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        inbuf.drain(..at);
        self.inbuf = inbuf;
        result?;
        if let Some(why) = ended {
            return Err(why);
        }
        if self.inbuf.len() > MAX_RESPONSE {
            return Err("the server sent an oversized frame".into());
        }
        Ok(())
    }

    /// Settles the front of the batch, in order, as far as it is answered.
    fn settle(&mut self, batch: &mut OutBatch) {
        while let Some(f) = self.in_flight.front().copied() {
            match f.answer {
                Some(true) => batch.advance(1),
                Some(false) => batch.reject_next(),
                None => break,
            }
            debug_assert_eq!(f.index + 1, batch.done());
            self.in_flight.pop_front();
        }
    }

    fn answer(&mut self, frame: Frame<'_>) -> Result<(), String> {
        match frame.command {
            "serverclose" => Err("the server is closing the session (serverclose)".into()),
            "rsp" => {
                let ok = frame.data.starts_with(b"200");
                if let Session::Opening(t) = self.session
                    && t == frame.txnr
                {
                    if !ok {
                        return Err(format!("the server refused the session: {}", text(frame.data)));
                    }
                    self.session = Session::Open;
                    self.last_answer = Instant::now();
                    return Ok(());
                }
                let Some(f) = self.in_flight.iter_mut().find(|f| f.txnr == frame.txnr) else {
                    return Err(format!("an answer to unknown transaction {}", frame.txnr));
                };
                f.answer = Some(ok);
                self.last_answer = Instant::now();
                if !ok {
                    self.refused = Some(text(frame.data));
                }
                Ok(())
            }
            other => Err(format!("unexpected command {other:?} from the server")),
        }
    }
}

/// A parsed frame from the server.
#[derive(Debug)]
struct Frame<'a> {
    txnr: u32,
    command: &'a str,
    data: &'a [u8],
}

/// One frame from the front of `buf`, and its length; `Ok(None)` when it is
/// not complete yet.
fn parse_frame(buf: &[u8]) -> Result<Option<(Frame<'_>, usize)>, String> {
    let bad = |what: &str| Err(format!("a malformed frame from the server ({what})"));
    // The end of a header field: a space within `max` bytes of `from`.
    let field_end = |from: usize, max: usize| -> Result<Option<usize>, ()> {
        match buf.get(from..).unwrap_or(&[]).iter().take(max + 1).position(|&b| b == b' ') {
            Some(i) => Ok(Some(from + i)),
            None if buf.len() > from + max => Err(()),
            None => Ok(None),
        }
    };
    let Ok(sp1) = field_end(0, 9) else { return bad("txnr") };
    let Some(sp1) = sp1 else { return Ok(None) };
    let Ok(sp2) = field_end(sp1 + 1, 32) else { return bad("command") };
    let Some(sp2) = sp2 else { return Ok(None) };
    let Ok(txnr) = std::str::from_utf8(&buf[..sp1]).unwrap_or("").parse::<u32>() else {
        return bad("txnr");
    };
    let Ok(command) = std::str::from_utf8(&buf[sp1 + 1..sp2]) else { return bad("command") };
    let digits = buf[sp2 + 1..].iter().take_while(|b| b.is_ascii_digit()).count();
    if digits > 9 {
        return bad("length");
    }
    let after = sp2 + 1 + digits;
    if after >= buf.len() {
        return Ok(None);
    }
    let Ok(len) = std::str::from_utf8(&buf[sp2 + 1..after]).unwrap_or("").parse::<usize>() else {
        return bad("length");
    };
    if len > MAX_RESPONSE {
        return bad("length");
    }
    let (data, end) = match (len, buf[after]) {
        (0, b'\n') => (&buf[after..after], after + 1),
        (_, b' ') => {
            let end = after + 1 + len + 1;
            if buf.len() < end {
                return Ok(None);
            }
            if buf[end - 1] != b'\n' {
                return bad("trailer");
            }
            (&buf[after + 1..end - 1], end)
        }
        _ => return bad("length"),
    };
    Ok(Some((Frame { txnr, command, data }, end)))
}

fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).trim().to_owned()
}

impl Transport for RelpTransport {
    fn attempt(&mut self, batch: &mut OutBatch) -> Attempt {
        if self.batch_id != Some(batch.id()) {
            // A new batch: nothing of it is in flight yet.
            self.batch_id = Some(batch.id());
            self.next_send = batch.done();
            self.in_flight.clear();
        }
        match self.link.ready() {
            Ok(true) => {}
            Ok(false) => return Attempt::Wait,
            Err(e) => {
                self.broken(batch);
                return Attempt::Retry(e.to_string());
            }
        }
        if self.session == Session::Closed {
            self.last_answer = Instant::now();
            let offer = format!(
                "relp_version=0\nrelp_software=logfunnel,{}\ncommands=syslog",
                env!("CARGO_PKG_VERSION")
            );
            let t = self.frame("open", offer.as_bytes());
            self.session = Session::Opening(t);
        }
        let result = (|| -> Result<Attempt, String> {
            let read = self.read_in();
            self.settle(batch);
            read?;
            let waiting = !self.in_flight.is_empty() || matches!(self.session, Session::Opening(_));
            if !waiting {
                self.last_answer = Instant::now();
            } else if self.last_answer.elapsed() > self.link.stall_limit() {
                return Err(format!("the server answered nothing for {:?}", self.last_answer.elapsed()));
            }
            if self.session == Session::Open {
                while self.in_flight.len() < self.window && self.next_send < batch.len() {
                    let index = self.next_send;
                    let record = batch.record(index).to_vec();
                    let txnr = self.frame("syslog", &record);
                    self.in_flight.push_back(InFlight { txnr, index, answer: None });
                    self.next_send += 1;
                }
            }
            self.write_out().map_err(|e| e.to_string())?;
            Ok(if batch.is_settled() { Attempt::Done } else { Attempt::Wait })
        })();
        match result {
            Ok(a) => a,
            Err(why) => {
                // Answers that came before the break still count.
                let _ = self.read_in();
                self.settle(batch);
                self.broken(batch);
                Attempt::Retry(why)
            }
        }
    }

    fn close(&mut self) {
        if self.session == Session::Open && self.in_flight.is_empty() {
            self.frame("close", b"");
            let _ = self.write_out();
        }
        self.link.close();
        self.session = Session::Closed;
    }

    fn describe(&self) -> String {
        match &self.refused {
            Some(r) => format!("{} (last refusal: {r})", self.what),
            None => self.what.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_parse_whole_or_wait_for_more() {
        let (f, n) = parse_frame(b"12 rsp 6 200 OK\nrest").unwrap().unwrap();
        assert_eq!((f.txnr, f.command, f.data, n), (12, "rsp", &b"200 OK"[..], 16));
        let (f, n) = parse_frame(b"0 serverclose 0\n").unwrap().unwrap();
        assert_eq!((f.txnr, f.command, f.data.len(), n), (0, "serverclose", 0, 16));
        for cut in 0..15 {
            assert!(parse_frame(&b"12 rsp 6 200 OK\n"[..cut]).unwrap().is_none(), "cut at {cut}");
        }
        assert!(parse_frame(b"12 rsp 6 200 OKX").is_err());
        assert!(parse_frame(b"x rsp 6 200 OK\n").is_err());
        assert!(parse_frame(b"1 rsp 99999999999 ").is_err());
        assert!(parse_frame(&[b'1'; 40]).is_err());
    }
}
