//! `logfunnel send`: one record (or one per stdin line), like logger(1).

use std::io::BufRead;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use logfunnel_protocol::{Record, parse_level};

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

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let Some(level) = parse_level(&args.level) else {
        bail!("--level {:?} is not a level (DEBUG, INFO, WARNING, ERROR, CRITICAL or a number)", args.level);
    };
    let messages: Vec<String> = if args.message.is_empty() {
        std::io::stdin().lock().lines().collect::<Result<_, _>>().context("reading stdin")?
    } else {
        vec![args.message.join(" ")]
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0);
    let records = messages
        .into_iter()
        .map(|m| Record {
            created_ns: now,
            process: std::process::id(),
            ..Record::new(level.0, &args.logger, m)
        })
        .collect();
    let socket = crate::resolve_socket(args.socket, None);
    logfunnel_client::send_records(&socket, records, crate::wait::seconds(args.timeout)?)?;
    Ok(())
}
