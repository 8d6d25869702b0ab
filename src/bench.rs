//! `logfunnel bench`: N client processes × T threads log M records through
//! a hub; the result says how fast, and whether anything was lost.
//!
//! Without `--socket` the bench runs its own hub (in this process). By
//! default its one handler (`--handler file`) is the hub's FileHandler
//! writing the default format to a temporary file; after the clock stops
//! every line of that file is checked against every client thread's
//! sequence: `lost` is what never arrived, counted, not estimated. With
//! `--handler null` the records go to a handler that only checks them; with
//! `--config` the configured handlers run and a verifier on the root logger
//! checks the records. The clock runs from the moment every client process is
//! connected and told to go until the hub has drained and flushed every
//! handler.
//!
//! Latencies (one record in 8 is sampled): each client process times its log calls
//! (client p50/p99); the built-in handlers note a record's `created` time
//! and, when the buffer holding it is written (at the flush that follows),
//! the time since: the
//! end-to-end latency from the log call to the write(2) into the file (an
//! upper bound when a full buffer was written before that flush).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use logfunnel_hub::formatter::{Formatter, PeerCred, RecordContext, Style};
use logfunnel_hub::handlers::FileHandler;
use logfunnel_hub::{Config, Handler, HandlerError, HubBuilder};
use logfunnel_protocol::now_ns;
use logfunnel_protocol::sync::LockExt;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Use the hub already listening here instead of starting one [env: LOGFUNNEL_SOCKET is NOT read, so a bench never disturbs a production hub by accident].
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Configuration for the bench's own hub (default: one FileHandler in a temporary directory).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Client processes (each a hidden `logfunnel worker`).
    #[arg(long, short = 'p', default_value_t = 4)]
    processes: u32,
    /// Logging threads per process.
    #[arg(long, short = 't', default_value_t = 1)]
    threads: u32,
    /// Records in total (split over processes and threads).
    #[arg(long, short = 'r', default_value_t = 1_000_000)]
    records: u64,
    /// Message length in bytes.
    #[arg(long, default_value_t = 100)]
    message_bytes: usize,
    /// The bench hub's handler when there is no --config: `file` (the
    /// default format into a temporary file, checked line by line) or
    /// `null` (records are checked and thrown away).
    #[arg(long, default_value = "file", value_parser = ["file", "null"])]
    handler: String,
    /// Pace the client processes to this many records per second in total (0: as
    /// fast as they can). Latency is measured at a fraction of peak load this way.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Keep the output file here instead of in a temporary directory (file handler only).
    #[arg(long)]
    output: Option<PathBuf>,
    /// The floor: no hub, no client processes, no IPC. One thread builds the same
    /// records (same tags, same message, a fresh timestamp each) and the
    /// hub's FileHandler formats them straight into the output file.
    #[arg(long, conflicts_with_all = ["socket", "config"])]
    in_process: bool,
    /// Print one JSON object as the last line of stdout.
    #[arg(long)]
    json: bool,
}

/// The default format.
const BENCH_FORMAT: &str = "%(asctime)s %(levelname)-8s %(name)s [%(process)d] %(message)s";

/// The bench's own hub when there is no --config: no configured handler;
/// the built-in one is attached to the root logger.
const BENCH_CONFIG: &str = "[root]\nlevel = \"NOTSET\"\n";

/// Checks each client thread's sequence as records arrive.
#[derive(Default)]
struct Verify {
    next: HashMap<(u32, u32), u64>,
    unique: u64,
    duplicates: u64,
    out_of_order: u64,
    foreign: u64,
}

struct Verifier {
    /// Checked in the handler's own thread; published when its queue runs dry.
    local: Verify,
    last: Option<((u32, u32), u64)>,
    state: Arc<Mutex<Verify>>,
    seen: Arc<AtomicU64>,
}

fn parse_tag(message: &str) -> Option<(u32, u32, u64)> {
    let mut it = message.split(' ');
    let w = it.next()?.strip_prefix('w')?.parse().ok()?;
    let t = it.next()?.strip_prefix('t')?.parse().ok()?;
    let s = it.next()?.strip_prefix('s')?.parse().ok()?;
    Some((w, t, s))
}

impl Verify {
    fn check(&mut self, s: u64, expected: &mut u64) {
        if s == *expected {
            *expected += 1;
            self.unique += 1;
        } else if s < *expected {
            self.duplicates += 1;
        } else {
            // A gap: count what arrived; the missing ones show as lost.
            *expected = s + 1;
            self.unique += 1;
            self.out_of_order += 1;
        }
    }
}

impl Handler for Verifier {
    fn emit(&mut self, ctx: &RecordContext<'_>) -> Result<(), HandlerError> {
        match parse_tag(ctx.record.message) {
            Some((w, t, s)) => {
                // Consecutive records mostly come from the same thread.
                let mut expected = match self.last {
                    Some((k, e)) if k == (w, t) => e,
                    last => {
                        if let Some((k, e)) = last {
                            self.local.next.insert(k, e);
                        }
                        self.local.next.get(&(w, t)).copied().unwrap_or(0)
                    }
                };
                self.local.check(s, &mut expected);
                self.last = Some(((w, t), expected));
            }
            None => self.local.foreign += 1,
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), HandlerError> {
        if let Some((k, e)) = self.last {
            self.local.next.insert(k, e);
        }
        let mut shared = self.state.locked();
        shared.unique = self.local.unique;
        shared.duplicates = self.local.duplicates;
        shared.out_of_order = self.local.out_of_order;
        shared.foreign = self.local.foreign;
        self.seen.store(self.local.unique + self.local.duplicates + self.local.foreign, Ordering::Relaxed);
        Ok(())
    }
}

/// A running `logfunnel worker` child and its stdout.
struct ClientProcess {
    child: Child,
    stdout: BufReader<std::process::ChildStdout>,
}

#[derive(serde::Serialize)]
struct Report {
    records: u64,
    processes: u32,
    threads: u32,
    message_bytes: usize,
    seconds: f64,
    records_per_sec: f64,
    mb_per_sec: f64,
    lost: u64,
    duplicates: u64,
    out_of_order: u64,
    filtered: u64,
    client_dropped: u64,
    verified: bool,
    output_lines: Option<u64>,
    handler: String,
    output_bytes: Option<u64>,
    /// Log calls timed (one in 8); a quantile is given only when there are
    /// enough of them (see `MIN_SAMPLES`), else it is null.
    client_latency_samples: u64,
    client_p50_ns: Option<u64>,
    client_p99_ns: Option<u64>,
    client_p999_ns: Option<u64>,
    /// Records whose log call → write latency was noted (one in 8).
    e2e_samples: u64,
    e2e_p50_us: Option<f64>,
    e2e_p99_us: Option<f64>,
    e2e_max_us: Option<f64>,
    hub_peak_rss_mib: f64,
    client_peak_rss_mib: f64,
    /// CPU time (user + system) of the hub and every client process, per record:
    /// less sensitive than `records_per_sec` to other work on the machine.
    cpu_ns_per_record: f64,
    load_average: Option<String>,
}

/// Latency from a record's `created` time to its write, measured by the
/// built-in handlers.
struct E2e {
    /// `created_ns` of records emitted since the last write.
    pending: Vec<i64>,
    seen: u64,
    hist: Histogram<u64>,
    shared: Arc<Mutex<Histogram<u64>>>,
}

impl E2e {
    fn new(shared: Arc<Mutex<Histogram<u64>>>) -> E2e {
        E2e { pending: Vec::with_capacity(1 << 14), seen: 0, hist: new_hist(), shared }
    }
    fn written(&mut self) {
        let now = now_ns();
        for &c in &self.pending {
            self.hist.saturating_record((now - c).max(1) as u64);
        }
        self.pending.clear();
    }
    fn publish(&mut self) {
        self.written();
        self.shared.locked().add(&self.hist).expect("same bounds");
        self.hist.reset();
    }
}

fn new_hist() -> Histogram<u64> {
    Histogram::<u64>::new_with_bounds(1, 3_600_000_000_000, 3).expect("bounds")
}

/// The hub's FileHandler, noting when records reach the file.
struct TimedFile {
    inner: FileHandler,
    e2e: E2e,
}

impl E2e {
    /// Notes one record in 8 (by arrival), like the client processes' sampling.
    fn note(&mut self, created_ns: i64) {
        self.seen = self.seen.wrapping_add(1);
        if self.seen.is_multiple_of(8) {
            self.pending.push(created_ns);
        }
    }
}

impl Handler for TimedFile {
    fn emit(&mut self, ctx: &RecordContext<'_>) -> Result<(), HandlerError> {
        self.e2e.note(ctx.record.created_ns);
        self.inner.emit(ctx)
    }
    fn flush(&mut self) -> Result<(), HandlerError> {
        let r = self.inner.flush();
        self.e2e.written();
        r
    }
    fn close(&mut self) -> Result<(), HandlerError> {
        let r = self.inner.close();
        self.e2e.publish();
        r
    }
}

/// A NullHandler that checks sequences and notes latencies.
struct CheckedNull {
    verifier: Verifier,
    e2e: E2e,
}

impl Handler for CheckedNull {
    fn emit(&mut self, ctx: &RecordContext<'_>) -> Result<(), HandlerError> {
        self.e2e.note(ctx.record.created_ns);
        self.verifier.emit(ctx)
    }
    fn flush(&mut self) -> Result<(), HandlerError> {
        self.e2e.written();
        self.verifier.flush()
    }
    fn close(&mut self) -> Result<(), HandlerError> {
        self.e2e.publish();
        self.verifier.flush()
    }
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    if args.processes == 0 || args.threads == 0 {
        bail!("--processes and --threads must be at least 1");
    }
    let tmp = tempdir()?;
    if args.in_process {
        return in_process(&args, &tmp);
    }
    let own_hub = args.socket.is_none();
    let builtin = own_hub && args.config.is_none();
    let file_mode = builtin && args.handler == "file";
    let socket = args.socket.clone().unwrap_or_else(|| tmp.join("hub.sock"));
    let out_file = args.output.clone().unwrap_or_else(|| tmp.join("bench.log"));
    let state = Arc::new(Mutex::new(Verify::default()));
    let seen = Arc::new(AtomicU64::new(0));
    let e2e = Arc::new(Mutex::new(new_hist()));
    let verifier = || Verifier {
        local: Verify::default(),
        last: None,
        state: Arc::clone(&state),
        seen: Arc::clone(&seen),
    };
    let hub = if own_hub {
        let config = match &args.config {
            Some(p) => Config::load(p)?,
            None => Config::from_toml_str(BENCH_CONFIG, "bench default")?,
        };
        let builder = HubBuilder::new(config, &socket);
        let builder = if !builtin {
            builder.root_handler("bench-verifier", Box::new(verifier()))
        } else if file_mode {
            let formatter = Formatter::new(Some(BENCH_FORMAT), None, Style::Percent)?;
            let inner = FileHandler::open(&out_file, false, false, formatter)?;
            builder.root_handler("file", Box::new(TimedFile { inner, e2e: E2e::new(Arc::clone(&e2e)) }))
        } else {
            let h = CheckedNull { verifier: verifier(), e2e: E2e::new(Arc::clone(&e2e)) };
            builder.root_handler("null", Box::new(h))
        };
        Some(builder.start()?)
    } else {
        None
    };

    let exe = std::env::current_exe().context("finding the logfunnel binary")?;
    let per_proc = |i: u32| {
        args.records / args.processes as u64 + u64::from((i as u64) < args.records % args.processes as u64)
    };
    let rate_per_thread = args.rate / (args.processes as f64 * args.threads as f64);
    let mut clients = Vec::new();
    for i in 0..args.processes {
        let mut child = Command::new(&exe)
            .args(["worker", "--wait-go", "--latency", "--id", &i.to_string()])
            .args(["--records", &per_proc(i).to_string(), "--threads", &args.threads.to_string()])
            .args(["--message-bytes", &args.message_bytes.to_string()])
            .args(["--rate", &rate_per_thread.to_string()])
            .env(logfunnel_protocol::SOCKET_ENV, &socket)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting a client process")?;
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        clients.push(ClientProcess { child, stdout });
    }
    for c in &mut clients {
        let mut line = String::new();
        c.stdout.read_line(&mut line)?;
        if line.trim() != "ready" {
            bail!("a client process failed to start (said {line:?})");
        }
    }
    let bar = if args.json { ProgressBar::hidden() } else { ProgressBar::new(args.records) };
    bar.set_style(ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} records ({per_sec})",
    )?);
    // Progress: what the hub's handlers have taken so far.
    let progress = |hub: &Option<logfunnel_hub::Hub>| match hub {
        Some(h) if builtin => h.stats().handlers.first().map_or(0, |s| s.emitted),
        Some(_) => seen.load(Ordering::Relaxed),
        None => 0,
    };
    let cpu_at_start = cpu_seconds();
    let start = Instant::now();
    for c in &mut clients {
        c.child.stdin.take().expect("piped").write_all(b"g")?;
    }
    let mut client_dropped = 0;
    let mut failures = Vec::new();
    let mut client_lat = new_hist();
    let mut client_rss_kib = 0;
    for (i, c) in clients.iter_mut().enumerate() {
        let mut polls = 0u32;
        loop {
            match c.child.try_wait()? {
                Some(_) => break,
                None => {
                    if polls.is_multiple_of(100) {
                        bar.set_position(progress(&hub));
                    }
                    polls += 1;
                    // Fine-grained: the clock stops after the last client process's
                    // exit is noticed, and a short run lasts a few 100 ms.
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        let status = c.child.wait()?;
        let mut line = String::new();
        c.stdout.read_line(&mut line)?;
        match serde_json::from_str::<serde_json::Value>(line.trim()) {
            Ok(v) if status.success() => {
                client_dropped += v["dropped"].as_u64().unwrap_or(0);
                client_rss_kib = client_rss_kib.max(v["max_rss_kib"].as_u64().unwrap_or(0));
                for pair in v["latency_ns"].as_array().into_iter().flatten() {
                    if let (Some(value), Some(count)) = (pair[0].as_u64(), pair[1].as_u64()) {
                        client_lat.saturating_record_n(value, count);
                    }
                }
            }
            _ => failures.push(format!("client process {i} exited with {status}")),
        }
    }
    let stats = hub.map(|h| h.shutdown());
    let seconds = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_at_start;
    let hub_rss_kib = crate::worker::max_rss_kib();
    bar.finish_and_clear();
    for f in &failures {
        eprintln!("logfunnel bench: {f}");
    }
    if file_mode {
        // Outside the clock: every line of the file against every sequence.
        let mut v = state.locked();
        check_file(&out_file, &mut v)?;
    }
    let v = state.locked();
    // Records below a logger's level (with --config) are filtered, not lost.
    let filtered = stats.as_ref().map_or(0, |s| s.filtered);
    let lost = if own_hub { args.records.saturating_sub(v.unique + filtered) } else { client_dropped };
    let output_lines = (file_mode).then(|| v.unique + v.duplicates + v.foreign);
    let output_bytes = file_mode.then(|| std::fs::metadata(&out_file).map_or(0, |m| m.len()));
    let e2e = e2e.locked();
    let us = |ns: Option<u64>| ns.map(|n| n as f64 / 1e3);
    let report = Report {
        records: args.records,
        processes: args.processes,
        threads: args.threads,
        message_bytes: args.message_bytes,
        seconds,
        records_per_sec: args.records as f64 / seconds,
        mb_per_sec: (args.records as f64 * args.message_bytes as f64) / seconds / 1e6,
        lost,
        duplicates: v.duplicates,
        out_of_order: v.out_of_order,
        filtered,
        client_dropped,
        verified: own_hub,
        output_lines,
        handler: if builtin {
            args.handler.clone()
        } else if let Some(c) = &args.config {
            format!("config {}", c.display())
        } else {
            format!("external hub on {}", socket.display())
        },
        output_bytes,
        client_latency_samples: client_lat.len(),
        client_p50_ns: quantile(&client_lat, 0.5),
        client_p99_ns: quantile(&client_lat, 0.99),
        client_p999_ns: quantile(&client_lat, 0.999),
        e2e_samples: e2e.len(),
        e2e_p50_us: us(quantile(&e2e, 0.5)),
        e2e_p99_us: us(quantile(&e2e, 0.99)),
        e2e_max_us: us((!e2e.is_empty()).then(|| e2e.max())),
        hub_peak_rss_mib: hub_rss_kib as f64 / 1024.0,
        client_peak_rss_mib: client_rss_kib as f64 / 1024.0,
        cpu_ns_per_record: cpu * 1e9 / args.records as f64,
        load_average: load_average(),
    };
    if args.output.is_none() {
        let _ = std::fs::remove_dir_all(&tmp);
    } else {
        let _ = std::fs::remove_file(tmp.join("hub.sock"));
        let _ = std::fs::remove_dir(&tmp);
    }
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_table(&report, stats.as_ref());
    }
    if !failures.is_empty() {
        bail!("{} client process(es) failed", failures.len());
    }
    Ok(())
}

/// `--in-process`: the same records formatted into the file by one thread.
fn in_process(args: &Args, tmp: &std::path::Path) -> anyhow::Result<()> {
    let out_file = args.output.clone().unwrap_or_else(|| tmp.join("bench.log"));
    let formatter = Formatter::new(Some(BENCH_FORMAT), None, Style::Percent)?;
    let mut handler = FileHandler::open(&out_file, false, false, formatter)?;
    let pad = "x".repeat(args.message_bytes.saturating_sub(24));
    let pid = std::process::id();
    let mut message = String::with_capacity(args.message_bytes + 32);
    let cpu_at_start = cpu_seconds();
    let start = Instant::now();
    for p in 0..args.processes {
        let per_proc = args.records / args.processes as u64
            + u64::from((p as u64) < args.records % args.processes as u64);
        for t in 0..args.threads {
            let n = per_proc / args.threads as u64 + u64::from((t as u64) < per_proc % args.threads as u64);
            for seq in 0..n {
                message.clear();
                let _ = write!(message, "w{p} t{t} s{seq} {pad}");
                let record = logfunnel_protocol::RecordView {
                    created_ns: now_ns(),
                    levelno: 20,
                    name: "bench.worker",
                    message: &message,
                    pathname: Some("src/worker.rs"),
                    lineno: 1,
                    func_name: None,
                    module_path: Some("logfunnel::worker"),
                    process: pid,
                    process_name: None,
                    thread: t as u64,
                    thread_name: None,
                    exc_text: None,
                    extra: Vec::new(),
                };
                let ctx = RecordContext {
                    record: &record,
                    peer: PeerCred::UNKNOWN,
                    process_name: "floor",
                    host_name: "",
                    start_ns: 0,
                    python: false,
                };
                handler.emit(&ctx)?;
            }
        }
    }
    handler.close()?;
    let seconds = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_at_start;
    let mut v = Verify::default();
    check_file(&out_file, &mut v)?;
    let report = Report {
        records: args.records,
        processes: args.processes,
        threads: args.threads,
        message_bytes: args.message_bytes,
        seconds,
        records_per_sec: args.records as f64 / seconds,
        mb_per_sec: (args.records as f64 * args.message_bytes as f64) / seconds / 1e6,
        lost: args.records.saturating_sub(v.unique),
        duplicates: v.duplicates,
        out_of_order: v.out_of_order,
        filtered: 0,
        client_dropped: 0,
        verified: true,
        output_lines: Some(v.unique + v.duplicates + v.foreign),
        handler: "in-process".into(),
        output_bytes: Some(std::fs::metadata(&out_file).map_or(0, |m| m.len())),
        client_latency_samples: 0,
        client_p50_ns: None,
        client_p99_ns: None,
        client_p999_ns: None,
        e2e_samples: 0,
        e2e_p50_us: None,
        e2e_p99_us: None,
        e2e_max_us: None,
        hub_peak_rss_mib: crate::worker::max_rss_kib() as f64 / 1024.0,
        client_peak_rss_mib: 0.0,
        cpu_ns_per_record: cpu * 1e9 / args.records as f64,
        load_average: load_average(),
    };
    if args.output.is_none() {
        let _ = std::fs::remove_dir_all(tmp);
    } else {
        let _ = std::fs::remove_dir(tmp);
    }
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_table(&report, None);
    }
    Ok(())
}

/// User + system CPU seconds of this process and its waited-for children.
fn cpu_seconds() -> f64 {
    let get = |who| {
        // SAFETY: getrusage only writes the struct it is given.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(who, &mut ru) } != 0 {
            return 0.0;
        }
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        tv(ru.ru_utime) + tv(ru.ru_stime)
    };
    get(libc::RUSAGE_SELF) + get(libc::RUSAGE_CHILDREN)
}

fn load_average() -> Option<String> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

/// Reads the bench's output file and checks every line's tag.
fn check_file(path: &std::path::Path, v: &mut Verify) -> anyhow::Result<()> {
    let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut line = Vec::new();
    let mut next: HashMap<(u32, u32), u64> = HashMap::new();
    let mut last: Option<((u32, u32), u64)> = None;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        // The message follows the first "] " (after `[%(process)d]`).
        let tag = line
            .windows(2)
            .position(|w| w == b"] ")
            .and_then(|i| std::str::from_utf8(&line[i + 2..]).ok())
            .and_then(parse_tag);
        let Some((w, t, s)) = tag else {
            v.foreign += 1;
            continue;
        };
        let mut expected = match last {
            Some((k, e)) if k == (w, t) => e,
            prev => {
                if let Some((k, e)) = prev {
                    next.insert(k, e);
                }
                next.get(&(w, t)).copied().unwrap_or(0)
            }
        };
        v.check(s, &mut expected);
        last = Some(((w, t), expected));
    }
    Ok(())
}

/// Samples a quantile needs before it means something: ten beyond it
/// (p50: 20, p99: 1,000, p99.9: 10,000).
fn min_samples(p: f64) -> u64 {
    (10.0 / (1.0 - p)).ceil() as u64
}

/// The quantile, or None when the histogram has too few samples for it.
fn quantile(h: &Histogram<u64>, p: f64) -> Option<u64> {
    (h.len() >= min_samples(p)).then(|| h.value_at_quantile(p))
}

/// Below this many records, rates and per-record CPU are mostly start-up.
const MIN_RECORDS: u64 = 100_000;

/// Quantiles as `a / b / c unit`, with `n/a` for those with too few samples
/// and a note saying how many there were.
fn quantiles(values: &[(Option<String>, f64)], samples: u64, unit: &str, not_measured: &str) -> String {
    if samples == 0 {
        return format!("not measured ({not_measured})");
    }
    let shown: Vec<String> = values
        .iter()
        .map(|(v, _)| v.as_ref().map_or_else(|| "n/a".to_owned(), |v| format!("{v}{unit}")))
        .collect();
    let mut out = shown.join(" / ");
    if let Some((_, p)) = values.iter().find(|(v, _)| v.is_none()) {
        out += &format!(
            "  (n/a: {samples} samples; p{} needs {})",
            (p * 100.0).to_string().trim_end_matches(".0"),
            min_samples(*p)
        );
    }
    out
}

fn print_table(r: &Report, stats: Option<&logfunnel_hub::stats::HubStats>) {
    let handler = if r.handler.contains(' ') { r.handler.clone() } else { format!("handler {}", r.handler) };
    println!(
        "logfunnel bench: {} processes × {} threads, {} records of {} bytes, {handler}{}",
        r.processes,
        r.threads,
        r.records,
        r.message_bytes,
        r.load_average.as_ref().map_or(String::new(), |l| format!(" (load average {l})"))
    );
    let few = if r.records < MIN_RECORDS {
        format!("  (only {} records: start-up dominates; use --records 1000000)", r.records)
    } else {
        String::new()
    };
    println!("  {:<30} {:>14.3}", "seconds (drain incl.)", r.seconds);
    println!("  {:<30} {:>14.0}{few}", "records/s", r.records_per_sec);
    println!("  {:<30} {:>14.1}{few}", "MB/s (messages)", r.mb_per_sec);
    if let Some(b) = r.output_bytes {
        println!("  {:<30} {:>14.1}{few}", "MB/s (written to the file)", b as f64 / r.seconds / 1e6);
    }
    let verified = if r.verified { "" } else { " (client-reported drops only: external hub)" };
    println!("  {:<30} {:>14}{verified}", "lost", r.lost);
    println!("  {:<30} {:>14}", "duplicates", r.duplicates);
    println!("  {:<30} {:>14}", "dropped by clients", r.client_dropped);
    if r.filtered > 0 {
        println!("  {:<30} {:>14} (below a logger's level in the config)", "filtered", r.filtered);
    }
    if let Some(lines) = r.output_lines {
        println!("  {:<30} {:>14}", "lines in output file", lines);
    }
    let ns = |v: Option<u64>| v.map(|v| v.to_string());
    println!(
        "  {:<30} {}",
        "log call p50 / p99 / p99.9",
        quantiles(
            &[(ns(r.client_p50_ns), 0.5), (ns(r.client_p99_ns), 0.99), (ns(r.client_p999_ns), 0.999)],
            r.client_latency_samples,
            " ns",
            "the in-process floor has no client"
        )
    );
    let us = |v: Option<f64>| v.map(|v| format!("{v:.0}"));
    println!(
        "  {:<30} {}",
        "log call → written p50 / p99",
        quantiles(
            &[(us(r.e2e_p50_us), 0.5), (us(r.e2e_p99_us), 0.99)],
            r.e2e_samples,
            " µs",
            if r.handler == "in-process" {
                "the floor has no hub"
            } else {
                "only the bench's own file or null handler notes write times"
            }
        )
    );
    println!("  {:<30} {:>14.0}{few}", "CPU ns per record (all procs)", r.cpu_ns_per_record);
    println!("  {:<30} {:>14.1}", "hub peak RSS (MiB)", r.hub_peak_rss_mib);
    println!("  {:<30} {:>14.1}", "largest client peak RSS (MiB)", r.client_peak_rss_mib);
    if let Some(s) = stats {
        for h in s.handlers.iter().filter(|h| h.name != "bench-verifier") {
            println!(
                "  handler {:<22} {:>14} emitted, {} dropped, {} failed",
                h.name, h.emitted, h.dropped, h.failed
            );
        }
    }
}

fn tempdir() -> anyhow::Result<PathBuf> {
    let base = std::env::temp_dir();
    for i in 0..100u32 {
        let p = base.join(format!("logfunnel-bench-{}-{i}", std::process::id()));
        if std::fs::create_dir(&p).is_ok() {
            return Ok(p);
        }
    }
    bail!("cannot create a temporary directory in {}", base.display())
}
