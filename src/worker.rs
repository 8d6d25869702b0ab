//! `logfunnel worker` (hidden): one worker process of the benchmark and the
//! end-to-end tests. Each thread logs records whose message starts
//! `w<id> t<thread> s<seq>`, so the output can be checked for loss,
//! duplication and order.

use std::io::{Read, Write};
use std::time::Duration;

use anyhow::Context;
use logfunnel_client::{Builder, Overflow};

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Worker number (appears in every message).
    #[arg(long, default_value_t = 0)]
    id: u32,
    /// Records to log in total (split over the threads).
    #[arg(long, default_value_t = 1000)]
    records: u64,
    /// Logging threads.
    #[arg(long, default_value_t = 1)]
    threads: u32,
    /// Message length in bytes.
    #[arg(long, default_value_t = 100)]
    message_bytes: usize,
    /// Print "ready", then wait for one byte on stdin before logging.
    #[arg(long)]
    wait_go: bool,
    /// Sleep this many microseconds between records (to make long runs).
    #[arg(long, default_value_t = 0)]
    interval_us: u64,
    /// Drop records instead of waiting when the queue is full.
    #[arg(long)]
    drop_newest: bool,
    /// Logger name.
    #[arg(long, default_value = "bench.worker")]
    logger: String,
    /// Bytes of records kept until the hub acknowledges them (client default if unset).
    #[arg(long)]
    max_unacked: Option<usize>,
    /// Bytes of queue per logging thread (client default if unset).
    #[arg(long)]
    queue_bytes: Option<usize>,
    /// How the process ends: `finish` (Guard::finish), `drop` (the guard
    /// dropped at the end of scope), `flush-exit` (flush, then
    /// std::process::exit), `exit` (std::process::exit without flushing).
    #[arg(long, default_value = "finish")]
    exit_mode: String,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let overflow = if args.drop_newest { Overflow::DropNewest } else { Overflow::Block };
    let mut builder = Builder::new()
        .process_name(format!("worker-{}", args.id))
        .overflow(overflow)
        .flush_timeout(Duration::from_secs(60));
    if let Some(n) = args.max_unacked {
        builder = builder.max_unacked(n);
    }
    if let Some(n) = args.queue_bytes {
        builder = builder.queue_capacity(n);
    }
    let guard = builder.init().context("starting the logfunnel client")?;
    if args.wait_go {
        println!("ready");
        std::io::stdout().flush()?;
        let mut go = [0u8; 1];
        std::io::stdin().read_exact(&mut go).context("waiting for the go byte")?;
    }
    let threads = args.threads.max(1) as u64;
    let pad = "x".repeat(args.message_bytes.saturating_sub(24));
    std::thread::scope(|s| {
        for t in 0..threads {
            let n = args.records / threads + u64::from(t < args.records % threads);
            let (pad, logger, id) = (&pad, &args.logger, args.id);
            s.spawn(move || {
                for seq in 0..n {
                    log::info!(target: logger, "w{id} t{t} s{seq} {pad}");
                    if args.interval_us > 0 {
                        std::thread::sleep(Duration::from_micros(args.interval_us));
                    }
                }
            });
        }
    });
    match args.exit_mode.as_str() {
        "finish" => {}
        "drop" => {
            let s = guard.handler().stats();
            drop(guard);
            println!("{{\"sent\":{},\"dropped\":{}}}", s.sent, s.dropped);
            return Ok(());
        }
        "flush-exit" => {
            let flushed = guard.handler().flush_timeout(Duration::from_secs(60));
            std::process::exit(if flushed.is_ok() { 0 } else { 3 });
        }
        "exit" => std::process::exit(0),
        other => anyhow::bail!("unknown --exit-mode {other:?} (finish, drop, flush-exit, exit)"),
    }
    let stats = guard.finish().context("flushing to the hub")?;
    println!(
        "{{\"sent\":{},\"acked\":{},\"dropped\":{},\"connects\":{}}}",
        stats.sent, stats.acked, stats.dropped, stats.connects
    );
    Ok(())
}
