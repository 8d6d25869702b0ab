//! `logfunnel stats`: the hub's counters.

use std::path::PathBuf;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Socket path [env: LOGFUNNEL_SOCKET].
    #[arg(long, env = logfunnel_protocol::SOCKET_ENV, hide_env = true)]
    socket: Option<PathBuf>,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
    /// Seconds to wait for the hub (one that is starting is waited for) and for its answer.
    #[arg(long, default_value_t = 5.0)]
    timeout: f64,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let socket = crate::resolve_socket(args.socket, None);
    let s = logfunnel_client::fetch_stats(&socket, crate::wait::seconds(args.timeout)?)?;
    if args.json {
        println!("{}", serde_json::to_string(&s)?);
        return Ok(());
    }
    println!(
        "hub on {}: up {:.1}s, {} connections ({} refused), {} records received, {} duplicates dropped, {} filtered by level, listener queue {}",
        socket.display(),
        s.uptime_ms as f64 / 1000.0,
        s.connections,
        s.refused,
        s.received,
        s.duplicates,
        s.filtered,
        s.listener_queue_depth
    );
    println!(
        "clients: {} open (this query included); refused: {} bad handshakes, {} bad frames, {} by the uid/gid allowlist, {} over max_connections; {} ended mid-frame, {} timed out{}",
        s.open_connections,
        s.bad_handshakes,
        s.bad_frames,
        s.refused_peers,
        s.over_limit,
        s.truncated_frames,
        s.timed_out,
        if s.shutdown_incomplete { "; shutdown deadline passed" } else { "" }
    );
    println!(
        "limits: {} messages and {} records' other fields cut to size; {} bytes of decoded frames in flight; {} objects in Python records shown as placeholders (never unpickled)",
        s.truncated_messages, s.truncated_fields, s.decoded_bytes, s.python_objects
    );
    println!(
        "\n{:<20} {:<16} {:>12} {:>12} {:>10} {:>10} {:>8} {:>11} {:>10} {:<8}",
        "HANDLER",
        "CLASS",
        "RECEIVED",
        "EMITTED",
        "FAILED",
        "DROPPED",
        "QUEUED",
        "UNDELIVERED",
        "DUPLICATES",
        "JOURNAL"
    );
    for h in &s.handlers {
        let journal = match (h.durable, h.journal_errors) {
            (false, _) => "none".to_owned(),
            (true, 0) => "ok".to_owned(),
            (true, n) => format!("{n} errors"),
        };
        println!(
            "{:<20} {:<16} {:>12} {:>12} {:>10} {:>10} {:>8} {:>11} {:>10} {:<8}",
            h.name,
            h.class,
            h.received,
            h.emitted,
            h.failed,
            h.dropped,
            h.queue_depth,
            h.undelivered,
            h.duplicates,
            journal
        );
        if h.held > 0 || h.retries > 0 || !h.last_error.is_empty() {
            let when = match h.last_error_unix_ms {
                0 => String::new(),
                t => format!(" ({} ago)", ago(t)),
            };
            println!(
                "  delivery: {} held for delivery, {} retries, {} unconfirmed{}",
                h.held,
                h.retries,
                h.unconfirmed,
                if h.last_error.is_empty() {
                    String::new()
                } else {
                    format!("; last error{when}: {}", h.last_error)
                }
            );
        }
        if h.panics > 0 {
            println!("  {} calls panicked (each failed its record; the handler kept serving)", h.panics);
        }
        if h.recovered_truncated_bytes > 0 {
            println!(
                "  (at start: cut {} unacknowledged bytes left by a killed hub; their clients resent them)",
                h.recovered_truncated_bytes
            );
        }
    }
    println!(
        "\n{:<6} {:<8} {:<24} {:>12} {:>10} {:<6}",
        "CONN", "PID", "PROCESS", "RECEIVED", "DUPLICATES", "STATE"
    );
    for c in &s.clients {
        let state = if c.open { "open" } else { "closed" };
        println!(
            "{:<6} {:<8} {:<24} {:>12} {:>10} {:<6}",
            c.id, c.pid, c.process_name, c.received, c.duplicates, state
        );
    }
    Ok(())
}

/// How long ago a time in ms since the epoch was, for people.
fn ago(unix_ms: u64) -> String {
    let now = logfunnel_protocol::now_ns() as u64 / 1_000_000;
    let secs = now.saturating_sub(unix_ms) as f64 / 1000.0;
    if secs < 120.0 { format!("{secs:.1}s") } else { format!("{:.0}m", secs / 60.0) }
}
