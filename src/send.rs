//! `logfunnel send`: one record, or one per stdin line, like logger(1).
//!
//! Lines are sent as they arrive, in batches of at most [`BATCH_LINES`]
//! lines or [`BATCH_BYTES`] bytes, each acknowledged by the hub before the
//! next: a pipe that stays open is delivered as it goes, and a failure
//! costs only what was not yet acknowledged (the error says how much was).
//! A line that is not UTF-8 is sent with replacement characters; a line
//! over the protocol's limit is cut by its rule, and never held whole.

use std::io::BufRead;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail};
use logfunnel_protocol::{MAX_MESSAGE_BYTES, Record, cut_message_read, parse_level};

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Socket path [env: LOGFUNNEL_SOCKET].
    #[arg(long, env = logfunnel_protocol::SOCKET_ENV, hide_env = true)]
    socket: Option<PathBuf>,
    /// Level name or number.
    #[arg(long, short, default_value = "INFO")]
    level: String,
    /// Logger name.
    #[arg(long, short = 'n', default_value = "root")]
    logger: String,
    /// Seconds to wait for the hub (one that is starting is waited for) and for its answer.
    #[arg(long, default_value_t = 5.0)]
    timeout: f64,
    /// The message (words are joined with spaces); read from stdin if absent.
    message: Vec<String>,
}

/// The most lines in one batch.
const BATCH_LINES: usize = 1000;
/// The most message bytes in one batch (a line over it goes alone).
const BATCH_BYTES: usize = 256 << 10;
/// How long a batch waits for more lines once it has one.
const LINGER: Duration = Duration::from_millis(20);

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let Some(level) = parse_level(&args.level) else {
        bail!("--level {:?} is not a level (DEBUG, INFO, WARNING, ERROR, CRITICAL or a number)", args.level);
    };
    let socket = crate::resolve_socket(args.socket, None);
    let timeout = crate::wait::seconds(args.timeout)?;
    let record = |message: String| Record {
        created_ns: logfunnel_protocol::now_ns(),
        process: std::process::id(),
        ..Record::new(level.0, &args.logger, message)
    };
    if !args.message.is_empty() {
        logfunnel_client::send_records(&socket, vec![record(args.message.join(" "))], timeout)?;
        return Ok(());
    }
    // A reader thread, so that a batch goes out while stdin is quiet.
    let (tx, rx) = mpsc::sync_channel::<std::io::Result<String>>(BATCH_LINES);
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let mut stdin = std::io::stdin().lock();
            loop {
                let line = read_line(&mut stdin);
                let end = !matches!(line, Ok(Some(_)));
                let sent = match line {
                    Ok(Some(l)) => tx.send(Ok(l)),
                    Ok(None) => break,
                    Err(e) => tx.send(Err(e)),
                };
                if end || sent.is_err() {
                    break;
                }
            }
        })
        .context("starting the stdin reader")?;
    let mut session = None;
    let mut delivered = 0u64;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![record(first.context("reading stdin")?)];
        let mut bytes = batch[0].message.len();
        while batch.len() < BATCH_LINES && bytes < BATCH_BYTES {
            match rx.recv_timeout(LINGER) {
                Ok(line) => {
                    let r = record(line.context("reading stdin")?);
                    bytes += r.message.len();
                    batch.push(r);
                }
                Err(_) => break,
            }
        }
        let n = batch.len() as u64;
        let s = match &mut session {
            Some(s) => s,
            None => session.insert(logfunnel_client::Session::connect(&socket, timeout)?),
        };
        s.send(batch).with_context(|| format!("{delivered} lines were delivered before this failed"))?;
        delivered += n;
    }
    if let Some(s) = session {
        s.close();
    }
    Ok(())
}

/// The next line (without its `\n`, or `\r\n`), lossily UTF-8; a line over
/// the message limit is read to its end but only its start kept, cut by the
/// protocol's rule. `None` at the end of the input.
fn read_line(r: &mut impl BufRead) -> std::io::Result<Option<String>> {
    let mut kept: Vec<u8> = Vec::new();
    let mut len = 0usize;
    let mut any = false;
    loop {
        let chunk = match r.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            break;
        }
        any = true;
        let (part, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (&chunk[..i], true),
            None => (chunk, false),
        };
        len += part.len();
        let room = (MAX_MESSAGE_BYTES + 4).saturating_sub(kept.len());
        kept.extend_from_slice(&part[..part.len().min(room)]);
        let used = part.len() + usize::from(done);
        r.consume(used);
        if done {
            break;
        }
    }
    if !any {
        return Ok(None);
    }
    if len <= kept.len() && kept.last() == Some(&b'\r') {
        kept.pop();
        len -= 1;
    }
    let text = String::from_utf8_lossy(&kept).into_owned();
    Ok(Some(if len > MAX_MESSAGE_BYTES { cut_message_read(&text, len) } else { text }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_read_lossily_and_long_ones_are_cut_without_being_held() {
        let long = "y".repeat(3 * MAX_MESSAGE_BYTES);
        let input = format!("one\r\ntwo\n{long}\nlast");
        let mut bytes = input.into_bytes();
        bytes.extend_from_slice(b"\nbad \xff\n");
        let mut r = std::io::BufReader::with_capacity(1000, &bytes[..]);
        assert_eq!(read_line(&mut r).unwrap().unwrap(), "one");
        assert_eq!(read_line(&mut r).unwrap().unwrap(), "two");
        let cut = read_line(&mut r).unwrap().unwrap();
        assert_eq!(Some(cut.clone()), logfunnel_protocol::cut_message(&long));
        assert_eq!(read_line(&mut r).unwrap().unwrap(), "last");
        assert_eq!(read_line(&mut r).unwrap().unwrap(), "bad \u{fffd}");
        assert_eq!(read_line(&mut r).unwrap(), None);
    }
}
