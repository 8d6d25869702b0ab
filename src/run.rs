//! `logfunnel run -- COMMAND`: a hub on a private socket for the lifetime of
//! one command (the process pool), drained when the command exits.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, bail};
use logfunnel_hub::Hub;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Configuration file (TOML); without it, the embedded default (stderr).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// The command to run, with LOGFUNNEL_SOCKET pointing at the hub (and
    /// LOGFUNNEL_PYTHON_SOCKET at its socket for Python's SocketHandler).
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

pub(crate) fn run(args: Args) -> anyhow::Result<i32> {
    let mut config = crate::hub::load_config(args.config.as_ref())?;
    let dir = private_dir()?;
    let socket = dir.join("hub.sock");
    // Python's SocketHandler(path, None) reaches the hub too, on a socket
    // in the same private directory unless the configuration names one.
    let python_socket = config.hub.python.unix.get_or_insert_with(|| dir.join("python.sock")).clone();
    let hub = Hub::start(config, &socket).context("starting the hub")?;
    // Signals go to the command (which shares our terminal's process group
    // anyway); we stay alive to drain the hub after it exits.
    let last_signal = Arc::new(AtomicUsize::new(0));
    for sig in [SIGINT, SIGTERM, SIGHUP] {
        signal_hook::flag::register_usize(sig, Arc::clone(&last_signal), sig as usize)
            .context("installing signal handlers")?;
    }
    let (program, rest) = args.command.split_first().expect("clap requires a command");
    let mut command = Command::new(program);
    command.args(rest).env(logfunnel_protocol::SOCKET_ENV, &socket);
    command.env(logfunnel_protocol::PYTHON_SOCKET_ENV, &python_socket);
    if let Some(tcp) = hub.python_addrs().tcp {
        command.env(logfunnel_protocol::PYTHON_TCP_ENV, tcp.to_string());
    }
    let mut child = command.spawn().with_context(|| format!("starting {program:?}"))?;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        let sig = last_signal.swap(0, Ordering::Relaxed);
        if sig != 0 {
            // SAFETY: forwarding a signal to our own child.
            unsafe { libc::kill(child.id() as i32, sig as i32) };
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let stats = hub.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    let dropped: u64 = stats.handlers.iter().map(|h| h.dropped).sum();
    if dropped > 0 {
        eprintln!("logfunnel run: handlers dropped {dropped} records (see their overflow policy)");
    }
    for h in stats.handlers.iter().filter(|h| h.undelivered > 0) {
        eprintln!(
            "logfunnel run: handler {:?} ({}): {} records not delivered by the shutdown deadline (shutdown_timeout)",
            h.name, h.class, h.undelivered
        );
    }
    use std::os::unix::process::ExitStatusExt;
    Ok(status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

fn private_dir() -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let base = std::env::temp_dir();
    for i in 0..100u32 {
        let p = base.join(format!("logfunnel-run-{}-{i}", std::process::id()));
        if std::fs::DirBuilder::new().mode(0o700).create(&p).is_ok() {
            return Ok(p);
        }
    }
    bail!("cannot create a private directory in {}", base.display())
}
