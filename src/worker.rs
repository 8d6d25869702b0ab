//! `logfunnel worker` (hidden): one client process of the benchmark and
//! the end-to-end tests (the module is named after its subcommand; its
//! file and module path are in every record it sends, so renaming it would
//! change the records the benchmarks measure). Each thread logs records whose message starts
//! `w<id> t<thread> s<seq>`, so the output can be checked for loss,
//! duplication and order.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use logfunnel_client::{Builder, Overflow};

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Client process number (appears in every message).
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
    /// Log at most this many records per second per thread (0: as fast as possible).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Time one log call in 8 and add their latency histogram (ns: [[value, count], ...])
    /// and the process's peak RSS to the JSON line.
    #[arg(long)]
    latency: bool,
    /// Bytes of records kept until the hub acknowledges them (client default if unset).
    #[arg(long)]
    max_unacked: Option<usize>,
    /// Bytes of queue per logging thread (client default if unset).
    #[arg(long)]
    queue_bytes: Option<usize>,
    /// How the process ends: `finish` (Guard::finish), `drop` (the guard
    /// dropped at the end of scope), `flush-exit` (flush, then
    /// std::process::exit), `exit` (std::process::exit without flushing);
    /// or how it begins: `early-drop` (the guard dropped before logging, as
    /// `let _ = init()?` does), `early-finish` (Guard::finish before logging).
    #[arg(long, default_value = "finish")]
    exit_mode: String,
    /// How long the guard waits for the hub to acknowledge everything.
    #[arg(long, default_value_t = 60_000)]
    flush_timeout_ms: u64,
    /// While the threads log, fork this many children one after another;
    /// child k logs `--child-records` records as client process `id * 10000 + k + 1`,
    /// flushes and exits (the fork-safety test).
    #[arg(long, default_value_t = 0)]
    fork_children: u32,
    /// Records each forked child logs.
    #[arg(long, default_value_t = 100)]
    child_records: u64,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let overflow = if args.drop_newest { Overflow::DropNewest } else { Overflow::Block };
    let mut builder = Builder::new()
        .process_name(format!("worker-{}", args.id))
        .overflow(overflow)
        .flush_timeout(Duration::from_millis(args.flush_timeout_ms));
    if let Some(n) = args.max_unacked {
        builder = builder.max_unacked(n);
    }
    if let Some(n) = args.queue_bytes {
        builder = builder.queue_capacity(n);
    }
    let guard = builder.init().context("starting the logfunnel client")?;
    if args.exit_mode.starts_with("early-") {
        return log_without_guard(&args, guard);
    }
    if args.wait_go {
        println!("ready");
        std::io::stdout().flush()?;
        let mut go = [0u8; 1];
        std::io::stdin().read_exact(&mut go).context("waiting for the go byte")?;
    }
    let threads = args.threads.max(1) as u64;
    let pad = "x".repeat(args.message_bytes.saturating_sub(24));
    let (t0, c0) = (Instant::now(), ticks());
    let mut children_failed = 0;
    let hists: Vec<Histogram<u64>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let n = args.records / threads + u64::from(t < args.records % threads);
                let (pad, args) = (&pad, &args);
                s.spawn(move || log_records(args, t, n, pad))
            })
            .collect();
        children_failed = fork_children(&args, &guard);
        handles.into_iter().map(|h| h.join().expect("logging thread")).collect()
    });
    let ns_per_tick = t0.elapsed().as_nanos() as f64 / ticks().wrapping_sub(c0).max(1) as f64;
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
    let mut extra = String::new();
    if args.latency {
        // Merge the threads' histograms (in ticks), converting to ns.
        let mut merged: Vec<(u64, u64)> = Vec::new();
        for h in &hists {
            for v in h.iter_recorded() {
                let ns = ((v.value_iterated_to() as f64) * ns_per_tick).round() as u64;
                merged.push((ns.max(1), v.count_at_value()));
            }
        }
        merged.sort_unstable();
        let list: Vec<String> = merged.iter().map(|(v, c)| format!("[{v},{c}]")).collect();
        extra = format!(",\"latency_ns\":[{}],\"max_rss_kib\":{}", list.join(","), max_rss_kib());
    }
    if args.fork_children > 0 {
        extra += &format!(",\"children_failed\":{children_failed}");
    }
    println!(
        "{{\"sent\":{},\"acked\":{},\"dropped\":{},\"connects\":{}{extra}}}",
        stats.sent, stats.acked, stats.dropped, stats.connects
    );
    Ok(())
}

/// `--exit-mode early-*`: the guard is gone before the first record; main
/// returns normally (the client's exit handler does the rest).
fn log_without_guard(args: &Args, guard: logfunnel_client::Guard) -> anyhow::Result<()> {
    let handler = guard.handler().clone();
    match args.exit_mode.as_str() {
        "early-drop" => drop(guard),
        "early-finish" => {
            guard.finish().context("flushing to the hub")?;
        }
        other => anyhow::bail!("unknown --exit-mode {other:?}"),
    }
    let pad = "x".repeat(args.message_bytes.saturating_sub(24));
    log_records(args, 0, args.records, &pad);
    let s = handler.stats();
    println!("{{\"sent\":{},\"dropped\":{},\"after_stop\":{}}}", s.sent, s.dropped, s.after_stop);
    Ok(())
}

/// Forks `--fork-children` children one after another (the parent's
/// threads keep logging meanwhile); returns how many did not exit cleanly.
fn fork_children(args: &Args, guard: &logfunnel_client::Guard) -> u32 {
    let mut failed = 0;
    for k in 0..args.fork_children {
        // SAFETY: the child only logs through the client (which rebuilds
        // itself after a fork), flushes and leaves with _exit, never
        // returning into the parent's stack frames or destructors.
        match unsafe { libc::fork() } {
            -1 => failed += 1,
            0 => {
                let id = args.id * 10_000 + k + 1;
                for seq in 0..args.child_records {
                    log::info!(target: &args.logger, "w{id} t0 s{seq} child");
                }
                let flushed = guard.handler().flush_timeout(Duration::from_secs(20));
                let ok = flushed.is_ok() && guard.handler().stats().dropped == 0;
                // SAFETY: ends the child without running the parent's exit handlers.
                unsafe { libc::_exit(if ok { 0 } else { 3 }) }
            }
            pid => {
                let mut status = 0;
                // SAFETY: waits for our own child.
                let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
                if waited != pid || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
                    failed += 1;
                }
            }
        }
    }
    failed
}

/// One logging thread: `n` records, paced by `--rate`, timed with `--latency`.
fn log_records(args: &Args, t: u64, n: u64, pad: &str) -> Histogram<u64> {
    // Explicit bounds (1 tick .. about a minute): an auto-resizing
    // histogram reported a thread's first call, which registers its queue
    // and takes a page fault or two, as 1 tick.
    let mut hist = Histogram::<u64>::new_with_bounds(1, 1 << 38, 3).expect("bounds");
    let (logger, id) = (&args.logger, args.id);
    let start = Instant::now();
    for seq in 0..n {
        if args.rate > 0.0 {
            let due = start + Duration::from_secs_f64(seq as f64 / args.rate);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        // One call in 8 is timed: enough samples for p99.9, and the timer
        // (two rdtsc and a histogram update) stays out of the throughput.
        if args.latency && seq.is_multiple_of(8) {
            let c0 = ticks();
            log::info!(target: logger, "w{id} t{t} s{seq} {pad}");
            hist.saturating_record(ticks().wrapping_sub(c0).max(1));
        } else {
            log::info!(target: logger, "w{id} t{t} s{seq} {pad}");
        }
        if args.interval_us > 0 {
            std::thread::sleep(Duration::from_micros(args.interval_us));
        }
    }
    hist
}

/// A cheap timestamp: the TSC on x86-64 (converted with the run's own
/// calibration), elsewhere nanoseconds from a monotonic clock.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn ticks() -> u64 {
    // SAFETY: rdtsc has no preconditions on x86-64.
    unsafe { core::arch::x86_64::_rdtsc() }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn ticks() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// This process's peak resident set size.
pub(crate) fn max_rss_kib() -> u64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } == 0 { ru.ru_maxrss as u64 } else { 0 }
}
