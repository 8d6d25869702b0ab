//! `logfunnel hub`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use logfunnel_hub::{Config, Hub};
use logfunnel_protocol::Backoff;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Configuration file: TOML, or a Python dictConfig as .json or .yaml; without it, the embedded default (stderr).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Socket path [env: LOGFUNNEL_SOCKET; default: the config's, else $XDG_RUNTIME_DIR/logfunnel.sock].
    #[arg(long, env = logfunnel_protocol::SOCKET_ENV, hide_env = true)]
    socket: Option<PathBuf>,
}

pub(crate) fn load_config(path: Option<&PathBuf>) -> anyhow::Result<Config> {
    match path {
        Some(p) => Ok(Config::load(p)?),
        None => Ok(Config::embedded_default()),
    }
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let config = load_config(args.config.as_ref())?;
    for w in &config.warnings {
        eprintln!("logfunnel hub: config: warning: {w}");
    }
    let socket = crate::resolve_socket(args.socket, config.hub.socket.clone());
    // Register before the socket exists, so a signal sent as soon as the
    // hub is reachable is never missed.
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP]).context("installing signal handlers")?;
    let handlers = config.handlers.len();
    let shutdown_timeout = config.hub.policy.shutdown_timeout;
    let hub = start_answering_signals(config, &socket, &mut signals)?;
    let mut metrics =
        hub.metrics_addr().map_or(String::new(), |a| format!("; metrics at http://{a}/metrics"));
    let py = hub.python_addrs();
    for (what, addr) in [("python_tcp", py.tcp), ("python_udp", py.udp)] {
        if let Some(a) = addr {
            metrics.push_str(&format!("; {what} on {a}"));
        }
    }
    eprintln!("logfunnel hub: listening on {} ({handlers} handlers){metrics}", socket.display());
    crate::notify::notify(&format!("READY=1\nSTATUS=listening on {}", socket.display()));
    for signal in signals.forever() {
        if signal == SIGHUP {
            eprintln!("logfunnel hub: SIGHUP: reopening files");
            hub.reopen();
        } else {
            break;
        }
    }
    crate::notify::notify("STOPPING=1");
    eprintln!("logfunnel hub: draining");
    let stats = hub.shutdown();
    let emitted: u64 = stats.handlers.iter().map(|h| h.emitted).sum();
    let dropped: u64 = stats.handlers.iter().map(|h| h.dropped).sum();
    let failed: u64 = stats.handlers.iter().map(|h| h.failed).sum();
    for h in stats.handlers.iter().filter(|h| h.undelivered > 0) {
        eprintln!(
            "logfunnel hub: handler {:?} ({}): {} records not delivered by the shutdown deadline ({:.1}s, shutdown_timeout); {} emitted, {} failed, {} dropped",
            h.name,
            h.class,
            h.undelivered,
            shutdown_timeout.as_secs_f64(),
            h.emitted,
            h.failed,
            h.dropped
        );
    }
    let undelivered: u64 = stats.handlers.iter().map(|h| h.undelivered).sum();
    eprintln!(
        "logfunnel hub: stopped: {} records received from {} connections, {emitted} emitted, {dropped} dropped, {failed} failed, {undelivered} undelivered, {} refused connections",
        stats.received, stats.connections, stats.refused
    );
    Ok(())
}

/// Starts the hub on a thread of its own, so that SIGINT and SIGTERM are
/// obeyed while it starts (opening a FIFO waits for its reader, a journal
/// may take a moment to recover): the process then exits at once, having
/// served nobody.
fn start_answering_signals(config: Config, socket: &Path, signals: &mut Signals) -> anyhow::Result<Hub> {
    let starter = {
        let socket = socket.to_path_buf();
        std::thread::Builder::new()
            .name("logfunnel-start".into())
            .spawn(move || Hub::start(config, socket))
            .context("starting the hub")?
    };
    let mut pause = Backoff::new(Duration::from_micros(100), Duration::from_millis(20));
    while !starter.is_finished() {
        for signal in signals.pending() {
            if signal != SIGHUP {
                let name = if signal == SIGINT { "SIGINT" } else { "SIGTERM" };
                eprintln!("logfunnel hub: {name} while starting: stopped before serving anyone");
                std::process::exit(0);
            }
        }
        std::thread::sleep(pause.next_delay());
    }
    match starter.join() {
        Ok(started) => started.context("starting the hub"),
        Err(_) => anyhow::bail!("starting the hub: the start-up thread panicked"),
    }
}
