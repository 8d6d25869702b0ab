//! The client's hot path, side by side with tracing-appender in one run:
//! one `log::info!` (logfunnel's QueueHandler), one `tracing::info!` through
//! logfunnel's tracing Layer, and one `tracing::info!` through
//! tracing-subscriber's fmt layer writing through tracing-appender's
//! `non_blocking`; same target, same short formatted message, from 1 thread
//! and from 8 threads at once. The pipelines run for real in this process:
//! logfunnel's records go to an in-process hub that writes them to a file,
//! tracing-appender's lines to another file. Each tracing pipeline is its
//! threads' default dispatcher (`tracing::dispatcher::set_default`), so both
//! pay the same thread-local lookup of the dispatcher.
//!
//! Each call is timed on its own (rdtsc on x86-64, calibrated; the timer's
//! own cost, about 10 ns, is included) into an HDR histogram, so the output
//! has p50/p99/p99.9/max (from a run of 100,000 calls per thread after
//! criterion's own, short, measurement) as well as criterion's mean. Calls come in bursts
//! of 20 separated by a 200 µs sleep (an application that logs, not a
//! flood: the goal is the cost to the caller, not the drain rate). The
//! threads also count heap allocations made during the timed calls.
//!
//! Run: `cargo bench --bench client` (about a minute).

use std::hint::black_box;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use hdrhistogram::Histogram;

// ---- allocation counting (per thread) ----

#[path = "../client/tests/support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocations as allocs;

// ---- timer ----

#[derive(Clone, Copy)]
struct Timer {
    /// Nanoseconds per tick.
    ns_per_tick: f64,
}

impl Timer {
    fn calibrate() -> Timer {
        let (t0, c0) = (Instant::now(), ticks());
        std::thread::sleep(Duration::from_millis(200));
        let (t1, c1) = (Instant::now(), ticks());
        Timer { ns_per_tick: (t1 - t0).as_nanos() as f64 / (c1 - c0).max(1) as f64 }
    }
    fn ns(&self, ticks: u64) -> u64 {
        (ticks as f64 * self.ns_per_tick) as u64
    }
}

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

// ---- the three pipelines ----

#[derive(Clone, Copy, PartialEq, Debug)]
enum Lib {
    Logfunnel,
    LogfunnelLayer,
    Tracing,
}

impl Lib {
    fn name(self) -> &'static str {
        match self {
            Lib::Logfunnel => "logfunnel log::info!",
            Lib::LogfunnelLayer => "logfunnel tracing Layer",
            Lib::Tracing => "tracing-appender non_blocking",
        }
    }
    fn id(self) -> &'static str {
        match self {
            Lib::Logfunnel => "logfunnel",
            Lib::LogfunnelLayer => "logfunnel_layer",
            Lib::Tracing => "tracing",
        }
    }
}

#[inline(always)]
fn call(lib: Lib, t: u64, i: u64) {
    match lib {
        Lib::Logfunnel => log::info!(target: "app.worker.ingest", "worker {t} processed item {i}"),
        Lib::LogfunnelLayer | Lib::Tracing => {
            tracing::info!(target: "app.worker.ingest", "worker {t} processed item {i}")
        }
    }
}

const BURST: u64 = 20;
const PAUSE: Duration = Duration::from_micros(200);
/// Calls per thread in the histogram run.
const CALLS_PER_THREAD: u64 = 100_000;

struct Outcome {
    hist: Histogram<u64>,
    sum_ns: u64,
    allocs: u64,
}

/// `calls` paced calls on the current thread.
fn run_calls(lib: Lib, timer: Timer, t: u64, calls: u64, seq: &mut u64) -> Outcome {
    let mut hist = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).expect("bounds");
    let mut sum = 0;
    let mut allocated = 0;
    let mut done = 0;
    while done < calls {
        let n = BURST.min(calls - done);
        let a0 = allocs();
        for _ in 0..n {
            let i = *seq;
            *seq += 1;
            let c0 = ticks();
            call(lib, black_box(t), black_box(i));
            let c1 = ticks();
            let ns = timer.ns(c1.wrapping_sub(c0)).max(1);
            sum += ns;
            hist.saturating_record(ns);
        }
        allocated += allocs() - a0;
        done += n;
        std::thread::sleep(PAUSE);
    }
    Outcome { hist, sum_ns: sum, allocs: allocated }
}

/// Threads that live as long as one bench function, so that ring set-up and
/// first-touch page faults stay out of the measurement.
struct Pool {
    jobs: Vec<mpsc::Sender<u64>>,
    results: mpsc::Receiver<Outcome>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Pool {
    fn new(lib: Lib, timer: Timer, n: usize, dispatch: Option<tracing::Dispatch>) -> Pool {
        let (res_tx, results) = mpsc::channel();
        let mut jobs = Vec::new();
        let mut threads = Vec::new();
        for t in 0..n as u64 {
            let (tx, rx) = mpsc::channel::<u64>();
            let res_tx = res_tx.clone();
            let dispatch = dispatch.clone();
            threads.push(std::thread::spawn(move || {
                // This thread's tracing pipeline, for its lifetime.
                let _dispatch = dispatch.map(|d| tracing::dispatcher::set_default(&d));
                let mut seq = 0;
                // Warm up: more than a ring's worth of records, paced.
                let _ = run_calls(lib, timer, t, 20_000, &mut seq);
                res_tx.send(Outcome { hist: Histogram::new(3).expect("sigfig"), sum_ns: 0, allocs: 0 }).ok();
                for calls in rx {
                    let out = run_calls(lib, timer, t, calls, &mut seq);
                    if res_tx.send(out).is_err() {
                        return;
                    }
                }
            }));
            jobs.push(tx);
        }
        for _ in 0..n {
            results.recv().expect("warm-up");
        }
        Pool { jobs, results, threads }
    }

    /// Every thread makes `calls / threads` calls at once.
    fn run(&self, calls: u64) -> Outcome {
        let per = (calls / self.jobs.len() as u64).max(1);
        for j in &self.jobs {
            j.send(per).expect("pool thread");
        }
        let mut total = Outcome { hist: Histogram::new(3).expect("sigfig"), sum_ns: 0, allocs: 0 };
        for _ in 0..self.jobs.len() {
            let o = self.results.recv().expect("pool thread");
            total.hist.add(&o.hist).expect("same bounds");
            total.sum_ns += o.sum_ns;
            total.allocs += o.allocs;
        }
        total
    }

    fn stop(self) {
        drop(self.jobs);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

struct Summary {
    lib: Lib,
    threads: usize,
    hist: Histogram<u64>,
    allocs: u64,
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    // logfunnel: an in-process hub writing the default format to a file.
    let out = dir.path().join("logfunnel.log");
    let config = format!(
        "[formatters.f]\nformat = \"%(asctime)s %(levelname)-8s %(name)s [%(process)d] %(message)s\"\n\
         [handlers.file]\nclass = \"FileHandler\"\nfilename = {:?}\nformatter = \"f\"\n\
         [root]\nlevel = \"INFO\"\nhandlers = [\"file\"]\n",
        out.to_string_lossy()
    );
    let config = logfunnel_hub::Config::from_toml_str(&config, "bench").expect("config");
    let socket = dir.path().join("hub.sock");
    let hub = logfunnel_hub::Hub::start(config, &socket).expect("hub");
    let guard = logfunnel_client::Builder::new().socket(&socket).init().expect("client");
    log::set_max_level(log::LevelFilter::Info);
    // tracing: fmt layer → non_blocking (defaults: lossy, 128 Ki lines) → file.
    let file = std::fs::File::create(dir.path().join("tracing.log")).expect("file");
    let (writer, tracing_guard) = tracing_appender::non_blocking(file);
    let appender =
        tracing::Dispatch::new(tracing_subscriber::fmt().with_writer(writer).with_ansi(false).finish());
    // logfunnel's tracing Layer on the same client as `log`.
    let layer = {
        use tracing_subscriber::layer::SubscriberExt;
        tracing::Dispatch::new(tracing_subscriber::registry().with(guard.handler().tracing_layer()))
    };

    let timer = Timer::calibrate();
    let mut summaries = Vec::new();
    let mut g = c.benchmark_group("client_log_call");
    for threads in [1usize, 8] {
        for lib in [Lib::Logfunnel, Lib::LogfunnelLayer, Lib::Tracing] {
            let dispatch = match lib {
                Lib::Logfunnel => None,
                Lib::LogfunnelLayer => Some(layer.clone()),
                Lib::Tracing => Some(appender.clone()),
            };
            let pool = Pool::new(lib, timer, threads, dispatch);
            let id = format!("{}/{threads}_threads", lib.id());
            // Criterion's time is the sum of the timed calls (the pauses are
            // left out), divided over the threads that made them in parallel.
            g.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    let o = pool.run(iters * threads as u64);
                    Duration::from_nanos(o.sum_ns / threads as u64)
                })
            });
            // The tails need many calls: a fixed run for the histogram.
            let o = pool.run(CALLS_PER_THREAD * threads as u64);
            pool.stop();
            summaries.push(Summary { lib, threads, hist: o.hist, allocs: o.allocs });
        }
    }
    g.finish();

    println!(
        "\nper-call latency of one info! with a short formatted message (bursts of {BURST}, {PAUSE:?} apart)"
    );
    println!(
        "{:<32} {:>7} {:>10} {:>8} {:>8} {:>8} {:>9} {:>9} {:>12}",
        "", "threads", "calls", "p50 ns", "p90 ns", "p99 ns", "p99.9 ns", "max ns", "allocs/call"
    );
    for s in &summaries {
        let q = |p: f64| s.hist.value_at_quantile(p);
        println!(
            "{:<32} {:>7} {:>10} {:>8} {:>8} {:>8} {:>9} {:>9} {:>12.3}",
            s.lib.name(),
            s.threads,
            s.hist.len(),
            q(0.5),
            q(0.9),
            q(0.99),
            q(0.999),
            s.hist.max(),
            s.allocs as f64 / s.hist.len().max(1) as f64
        );
    }
    for threads in [1, 8] {
        let get = |lib| summaries.iter().find(|s| s.lib == lib && s.threads == threads).expect("ran");
        let b = get(Lib::Tracing);
        for lib in [Lib::Logfunnel, Lib::LogfunnelLayer] {
            let a = get(lib);
            let r = |p: f64| b.hist.value_at_quantile(p) as f64 / a.hist.value_at_quantile(p).max(1) as f64;
            println!(
                "tracing-appender ÷ {}, {threads} thread(s): p50 {:.1}×, p99 {:.1}×, p99.9 {:.1}×",
                lib.name(),
                r(0.5),
                r(0.99),
                r(0.999)
            );
        }
    }
    drop(tracing_guard);
    if let Err(e) = guard.finish() {
        eprintln!("logfunnel client: {e}");
    }
    let stats = hub.shutdown();
    for h in &stats.handlers {
        println!("hub handler {}: {} records written, {} dropped", h.name, h.emitted, h.dropped);
    }
}

criterion_group! {
    name = benches;
    // The calls are paced, so criterion's default budget of seconds of
    // *timed* calls would take minutes of wall time: keep it small.
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(5))
        .measurement_time(Duration::from_millis(20));
    targets = bench
}
criterion_main!(benches);
