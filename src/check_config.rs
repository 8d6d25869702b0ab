//! `logfunnel check-config`.

use std::path::PathBuf;
use std::process::ExitCode;

use logfunnel_hub::Config;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// The configuration file to check.
    file: PathBuf,
}

pub(crate) fn run(args: Args) -> ExitCode {
    match Config::load(&args.file) {
        Ok(c) => {
            for w in &c.warnings {
                eprintln!("{}: warning: {w}", args.file.display());
            }
            println!(
                "{}: OK ({} handlers, {} formatters, {} filters, {} loggers)",
                args.file.display(),
                c.handlers.len(),
                c.formatters.len(),
                c.filters.len(),
                c.loggers.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}
