//! `logfunnel`: the command line. Each subcommand lives in its own module;
//! the work is done by the `logfunnel-hub` and `logfunnel-client` crates.

mod bench;
mod check_config;
mod completions;
mod hub;
mod notify;
mod run;
mod send;
mod stats;
mod wait;
mod worker;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "logfunnel",
    version,
    about = "Many processes, one log: a loss-free log aggregation hub",
    after_help = "Examples:\n  logfunnel hub &                       # a hub on $LOGFUNNEL_SOCKET, every record to stderr\n  logfunnel send -l WARNING -n app.db \"disk almost full\"\n  logfunnel run -c hub.toml -- ./my-pool  # a hub for the lifetime of one command"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the hub in the foreground (SIGINT/SIGTERM drain and exit, SIGHUP reopens files).
    #[command(
        after_help = "Examples:\n  logfunnel hub --config hub.toml --socket /run/logfunnel/logfunnel.sock\n  logfunnel hub & logfunnel wait   # in a script: go on once the hub answers"
    )]
    Hub(hub::Args),
    /// Send one record to the hub, like logger(1); with no MESSAGE, one record per stdin line.
    #[command(
        after_help = "Examples:\n  logfunnel send --level WARNING --logger app.db \"disk almost full\"\n  tail -f legacy.log | logfunnel send --logger legacy"
    )]
    Send(send::Args),
    /// Measure: N client processes × T threads log M records through a hub.
    #[command(
        after_help = "Examples:\n  logfunnel bench --processes 8 --records 4000000\n  logfunnel bench --socket $LOGFUNNEL_SOCKET --processes 2 --records 20000   # against a running hub"
    )]
    Bench(bench::Args),
    /// Run COMMAND with a hub on a private socket (LOGFUNNEL_SOCKET set), drain when it exits, exit with its status.
    #[command(
        after_help = "Examples:\n  logfunnel run --config hub.toml -- python3 -m myapp.pool\n  logfunnel run -- cargo run --example process_pool"
    )]
    Run(run::Args),
    /// Validate a configuration file (exit 0, or 2 listing every problem).
    #[command(
        after_help = "Examples:\n  logfunnel check-config hub.toml\n  logfunnel check-config logging.json   # a Python dictConfig saved as JSON"
    )]
    CheckConfig(check_config::Args),
    /// Show the hub's counters: per handler and per connection.
    #[command(
        after_help = "Examples:\n  logfunnel stats\n  logfunnel stats --json | jq '.handlers[] | {name, dropped, failed}'"
    )]
    Stats(stats::Args),
    /// Wait until a hub answers on the socket (for scripts that start one in the background).
    #[command(
        after_help = "Examples:\n  logfunnel hub & logfunnel wait --timeout 30 && ./start-workers\n  systemctl start logfunnel && logfunnel wait --socket /run/logfunnel/logfunnel.sock"
    )]
    Wait(wait::Args),
    /// Print shell completions (bash, zsh, fish, elvish, powershell) to stdout.
    #[command(
        after_help = "Examples:\n  logfunnel completions bash > /etc/bash_completion.d/logfunnel\n  logfunnel completions zsh > \"${fpath[1]}/_logfunnel\""
    )]
    Completions(completions::Args),
    /// A client process of `bench` (and of the tests).
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
        Command::Completions(a) => completions::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("logfunnel: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every subcommand a user can see ends its `--help` with examples of
    /// itself (a new subcommand without them fails here).
    #[test]
    fn every_subcommand_help_ends_with_examples() {
        let mut cli = super::Cli::command();
        cli.build();
        let mut seen = 0;
        // `help` is clap's own.
        for sub in cli.get_subcommands_mut().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
            let name = sub.get_name().to_owned();
            let help = sub.render_long_help().to_string();
            let tail =
                &help[help.rfind("Examples:").unwrap_or_else(|| panic!("{name}: no Examples:\n{help}"))..];
            let lines: Vec<&str> = tail.lines().skip(1).filter(|l| !l.trim().is_empty()).collect();
            assert!((1..=2).contains(&lines.len()), "{name}: one or two examples:\n{tail}");
            assert!(lines.iter().all(|l| l.contains("logfunnel ")), "{name}: {tail}");
            assert!(
                lines.iter().any(|l| l.contains(&format!("logfunnel {name}"))),
                "{name} is not in its own examples:\n{tail}"
            );
            seen += 1;
        }
        assert!(seen >= 8, "{seen} subcommands");
    }
}
