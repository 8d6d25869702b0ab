//! `logfunnel stats`: the hub's counters.

use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Socket path [env: LOGFUNNEL_SOCKET].
    #[arg(long, env = logfunnel_protocol::SOCKET_ENV, hide_env = true)]
    socket: Option<PathBuf>,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let socket = crate::resolve_socket(args.socket, None);
    let s = logfunnel_client::fetch_stats(&socket, Duration::from_secs(5))?;
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
        "\n{:<20} {:<16} {:>12} {:>12} {:>10} {:>10} {:>8}",
        "HANDLER", "CLASS", "RECEIVED", "EMITTED", "FAILED", "DROPPED", "QUEUED"
    );
    for h in &s.handlers {
        println!(
            "{:<20} {:<16} {:>12} {:>12} {:>10} {:>10} {:>8}",
            h.name, h.class, h.received, h.emitted, h.failed, h.dropped, h.queue_depth
        );
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
