//! `logfunnel`: the command line. Each subcommand lives in its own module;
//! the work is done by the `logfunnel-hub` and `logfunnel-client` crates.

mod bench;
mod check_config;
mod hub;
mod run;
mod send;
mod stats;
mod wait;
mod worker;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "logfunnel", version, about = "Many processes, one log: a loss-free log aggregation hub")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the hub in the foreground (SIGINT/SIGTERM drain and exit, SIGHUP reopens files).
    Hub(hub::Args),
    /// Send one record to the hub, like logger(1); with no MESSAGE, one record per stdin line.
    Send(send::Args),
    /// Measure: N worker processes × T threads log M records through a hub.
    Bench(bench::Args),
    /// Run COMMAND with a hub on a private socket (LOGFUNNEL_SOCKET set), drain when it exits, exit with its status.
    Run(run::Args),
    /// Validate a configuration file (exit 0, or 2 listing every problem).
    CheckConfig(check_config::Args),
    /// Show the hub's counters: per handler and per connection.
    Stats(stats::Args),
    /// Wait until a hub answers on the socket (for scripts that start one in the background).
    Wait(wait::Args),
    /// A worker process of `bench` (and of the tests).
    #[command(hide = true)]
    Worker(worker::Args),
}

/// `--socket`, else `LOGFUNNEL_SOCKET` (both via clap), else the config's, else the default.
pub(crate) fn resolve_socket(flag: Option<PathBuf>, from_config: Option<PathBuf>) -> PathBuf {
    flag.or(from_config).unwrap_or_else(logfunnel_protocol::default_socket_path)
}

/// The hub's memory: its connection threads allocate frames that its
/// handler threads free. With glibc's default of up to 8 arenas per core,
/// each reader thread's arena keeps its own free frames, and the hub's
/// resident memory grows with the number of clients; two arenas keep it flat
/// (the lock is taken twice per batch of up to 128 KiB, never per record).
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before any
    // thread is started.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Hub(_) | Command::Bench(_) | Command::Run(_)) {
        tune_allocator();
    }
    let result = match cli.command {
        Command::Hub(a) => hub::run(a),
        Command::Send(a) => send::run(a),
        Command::Bench(a) => bench::run(a),
        Command::CheckConfig(a) => return check_config::run(a),
        Command::Run(a) => match run::run(a) {
            Ok(code) => return ExitCode::from(code.clamp(0, 255) as u8),
            Err(e) => Err(e),
        },
        Command::Worker(a) => worker::run(a),
        Command::Stats(a) => stats::run(a),
        Command::Wait(a) => wait::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("logfunnel: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
