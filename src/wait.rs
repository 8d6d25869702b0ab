//! `logfunnel wait`: blocks until a hub answers on the socket, for scripts
//! that start a hub in the background and must not log before it is up.

use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Socket path [env: LOGFUNNEL_SOCKET].
    #[arg(long, env = logfunnel_protocol::SOCKET_ENV, hide_env = true)]
    socket: Option<PathBuf>,
    /// Seconds to wait for the hub before failing.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let socket = crate::resolve_socket(args.socket, None);
    let stats = logfunnel_client::wait_for_hub(&socket, seconds(args.timeout)?)?;
    eprintln!("logfunnel: hub on {} is up ({} handlers)", socket.display(), stats.handlers.len());
    Ok(())
}

/// The `--timeout` of `send`, `stats` and `wait`: seconds, as a Duration.
pub(crate) fn seconds(value: f64) -> anyhow::Result<Duration> {
    if !value.is_finite() || value < 0.0 {
        anyhow::bail!("--timeout {value} is not a number of seconds");
    }
    Ok(Duration::from_secs_f64(value.max(0.001)))
}
