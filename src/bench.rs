//! `logfunnel bench`: N worker processes × T threads log M records through
//! a hub; the result says how fast, and whether anything was lost.
//!
//! Without `--socket` the bench runs its own hub (in this process) with the
//! given config, or by default a FileHandler writing the DESIGN.md format to
//! a temporary file, and attaches a verifier to the root logger that checks
//! every worker thread's sequence: `lost` is what never arrived, counted,
//! not estimated. The clock runs from the moment every worker is connected
//! and told to go until the hub has drained and flushed every handler.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use logfunnel_hub::formatter::RecordContext;
use logfunnel_hub::{Config, Handler, HandlerError, HubBuilder};

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Use the hub already listening here instead of starting one [env: LOGFUNNEL_SOCKET is NOT read, so a bench never disturbs a production hub by accident].
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Configuration for the bench's own hub (default: one FileHandler in a temporary directory).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Worker processes.
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
    /// Print one JSON object as the last line of stdout.
    #[arg(long)]
    json: bool,
}

const BENCH_CONFIG: &str = r#"
[formatters.design]
format = "%(asctime)s %(levelname)-8s %(name)s [%(process)d] %(message)s"

[handlers.file]
class = "FileHandler"
filename = "@FILE@"
formatter = "design"

[root]
level = "NOTSET"
handlers = ["file"]
"#;

/// Checks each worker thread's sequence as records arrive.
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
        let mut shared = self.state.lock().unwrap_or_else(|e| e.into_inner());
        shared.unique = self.local.unique;
        shared.duplicates = self.local.duplicates;
        shared.out_of_order = self.local.out_of_order;
        shared.foreign = self.local.foreign;
        self.seen.store(self.local.unique + self.local.duplicates + self.local.foreign, Ordering::Relaxed);
        Ok(())
    }
}

struct Worker {
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
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    if args.processes == 0 || args.threads == 0 {
        bail!("--processes and --threads must be at least 1");
    }
    let tmp = tempdir()?;
    let own_hub = args.socket.is_none();
    let socket = args.socket.clone().unwrap_or_else(|| tmp.join("hub.sock"));
    let out_file = tmp.join("bench.log");
    let state = Arc::new(Mutex::new(Verify::default()));
    let seen = Arc::new(AtomicU64::new(0));
    let hub = if own_hub {
        let config = match &args.config {
            Some(p) => Config::load(p)?,
            None => {
                let text = BENCH_CONFIG.replace("@FILE@", &out_file.to_string_lossy());
                Config::from_toml_str(&text, "bench default")?
            }
        };
        let verifier = Verifier {
            local: Verify::default(),
            last: None,
            state: Arc::clone(&state),
            seen: Arc::clone(&seen),
        };
        Some(HubBuilder::new(config, &socket).root_handler("bench-verifier", Box::new(verifier)).start()?)
    } else {
        None
    };

    let exe = std::env::current_exe().context("finding the logfunnel binary")?;
    let per_proc = |i: u32| {
        args.records / args.processes as u64 + u64::from((i as u64) < args.records % args.processes as u64)
    };
    let mut workers = Vec::new();
    for i in 0..args.processes {
        let mut child = Command::new(&exe)
            .args(["worker", "--wait-go", "--id", &i.to_string()])
            .args(["--records", &per_proc(i).to_string(), "--threads", &args.threads.to_string()])
            .args(["--message-bytes", &args.message_bytes.to_string()])
            .env(logfunnel_protocol::SOCKET_ENV, &socket)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting a worker process")?;
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        workers.push(Worker { child, stdout });
    }
    for w in &mut workers {
        let mut line = String::new();
        w.stdout.read_line(&mut line)?;
        if line.trim() != "ready" {
            bail!("a worker failed to start (said {line:?})");
        }
    }
    let bar = ProgressBar::new(args.records);
    bar.set_style(ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} records ({per_sec})",
    )?);
    let start = Instant::now();
    for w in &mut workers {
        w.child.stdin.take().expect("piped").write_all(b"g")?;
    }
    let mut client_dropped = 0;
    let mut failures = Vec::new();
    for (i, w) in workers.iter_mut().enumerate() {
        loop {
            match w.child.try_wait()? {
                Some(_) => break,
                None => {
                    bar.set_position(seen.load(Ordering::Relaxed));
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
        let status = w.child.wait()?;
        let mut line = String::new();
        w.stdout.read_line(&mut line)?;
        match serde_json::from_str::<serde_json::Value>(line.trim()) {
            Ok(v) if status.success() => client_dropped += v["dropped"].as_u64().unwrap_or(0),
            _ => failures.push(format!("worker {i} exited with {status}")),
        }
    }
    let stats = hub.map(|h| h.shutdown());
    let seconds = start.elapsed().as_secs_f64();
    bar.set_position(seen.load(Ordering::Relaxed));
    bar.finish_and_clear();
    for f in &failures {
        eprintln!("logfunnel bench: {f}");
    }
    let v = state.lock().unwrap_or_else(|e| e.into_inner());
    // Records below a logger's level (with --config) are filtered, not lost.
    let filtered = stats.as_ref().map_or(0, |s| s.filtered);
    let lost = if own_hub { args.records.saturating_sub(v.unique + filtered) } else { client_dropped };
    let output_lines = (own_hub && args.config.is_none()).then(|| count_lines(&out_file)).transpose()?;
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
    };
    let _ = std::fs::remove_dir_all(&tmp);
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_table(&report, stats.as_ref());
    }
    if !failures.is_empty() {
        bail!("{} worker(s) failed", failures.len());
    }
    Ok(())
}

fn print_table(r: &Report, stats: Option<&logfunnel_hub::stats::HubStats>) {
    println!(
        "logfunnel bench: {} processes × {} threads, {} records of {} bytes",
        r.processes, r.threads, r.records, r.message_bytes
    );
    println!("  {:<22} {:>14.3}", "seconds (drain incl.)", r.seconds);
    println!("  {:<22} {:>14.0}", "records/s", r.records_per_sec);
    println!("  {:<22} {:>14.1}", "MB/s (messages)", r.mb_per_sec);
    let verified = if r.verified { "" } else { " (client-reported drops only: external hub)" };
    println!("  {:<22} {:>14}{verified}", "lost", r.lost);
    println!("  {:<22} {:>14}", "duplicates", r.duplicates);
    println!("  {:<22} {:>14}", "dropped by clients", r.client_dropped);
    if r.filtered > 0 {
        println!("  {:<22} {:>14} (below a logger's level in the config)", "filtered", r.filtered);
    }
    if let Some(lines) = r.output_lines {
        println!("  {:<22} {:>14}", "lines in output file", lines);
    }
    if let Some(s) = stats {
        for h in s.handlers.iter().filter(|h| h.name != "bench-verifier") {
            println!(
                "  handler {:<14} {:>14} emitted, {} dropped, {} failed",
                h.name, h.emitted, h.dropped, h.failed
            );
        }
    }
}

fn count_lines(path: &std::path::Path) -> anyhow::Result<u64> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut lines = 0u64;
    loop {
        let n = file.read(&mut buf).with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            return Ok(lines);
        }
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
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
