//! A process pool whose workers log to one place: Python's multiprocessing
//! logging recipe (the parent runs a QueueListener, each worker a
//! QueueHandler), with logfunnel's hub and client.
//!
//! ```sh
//! cargo run --example process_pool -- --workers 4 --records 1000
//! cargo run --example process_pool -- --workers 4 --out pool.log   # to a file
//! logfunnel run -- cargo run --example process_pool                # an outside hub
//! ```
//!
//! The parent starts a hub in its own process (unless `LOGFUNNEL_SOCKET`
//! names one already running, as under `logfunnel run`), spawns the
//! workers (this program again, with `--worker N`), waits for them, drains
//! the hub and prints a summary. Each worker installs the client with
//! `init()`, logs, and ends with `guard.finish()?`, so that a record the hub
//! never acknowledged makes the worker, and then the pool, fail.

use std::path::PathBuf;
use std::process::Command;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

struct Args {
    workers: u32,
    records: u64,
    out: Option<PathBuf>,
    worker: Option<u32>,
}

fn args() -> Result<Args> {
    let mut a = Args { workers: 4, records: 1000, out: None, worker: None };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--workers" => a.workers = value()?.parse()?,
            "--records" => a.records = value()?.parse()?,
            "--out" => a.out = Some(value()?.into()),
            "--worker" => a.worker = Some(value()?.parse()?),
            other => {
                return Err(
                    format!("unknown argument {other:?} (--workers N, --records N, --out FILE)").into()
                );
            }
        }
    }
    Ok(a)
}

fn main() -> Result<()> {
    let args = args()?;
    match args.worker {
        Some(id) => worker(id, args.records),
        None => parent(&args),
    }
}

/// One worker process: the client, some records, and a checked finish.
fn worker(id: u32, records: u64) -> Result<()> {
    // Reads LOGFUNNEL_SOCKET (set by the parent) and LOGFUNNEL_LEVEL.
    let guard = logfunnel_client::Builder::new().process_name(format!("worker-{id}")).init()?;
    for item in 0..records {
        log::info!(target: "pool.worker", item = item, worker = id; "worker {id} processed item {item}");
    }
    log::warn!(target: "pool.worker", "worker {id} done");
    // An error here (the hub never took some records) fails the process.
    guard.finish()?;
    Ok(())
}

const CONFIG: &str = r#"
[formatters.pool]
format = "%(asctime)s %(processName)-9s %(levelname)-7s %(name)s: %(message)s"

[handlers.out]
class = "StreamHandler"
formatter = "pool"

[root]
level = "INFO"
handlers = ["out"]
"#;

fn parent(args: &Args) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("process-pool-{}", std::process::id()));
    // The hub: an outside one if LOGFUNNEL_SOCKET names it, else our own.
    let (socket, hub) = match std::env::var_os("LOGFUNNEL_SOCKET") {
        Some(s) => (PathBuf::from(s), None),
        None => {
            let config = match &args.out {
                // The same configuration, with a FileHandler instead of stderr.
                Some(out) => CONFIG.replace(
                    "class = \"StreamHandler\"",
                    &format!("class = \"FileHandler\"\nfilename = {:?}", std::path::absolute(out)?),
                ),
                None => CONFIG.to_owned(),
            };
            let config = logfunnel_hub::Config::from_toml_str(&config, "process_pool")?;
            let socket = dir.join("hub.sock");
            let hub = logfunnel_hub::Hub::start(config, &socket)?;
            (socket, Some(hub))
        }
    };
    let exe = std::env::current_exe()?;
    let children: Vec<_> = (0..args.workers)
        .map(|i| {
            Command::new(&exe)
                .args(["--worker", &i.to_string(), "--records", &args.records.to_string()])
                .env("LOGFUNNEL_SOCKET", &socket)
                .spawn()
        })
        .collect::<std::io::Result<_>>()?;
    let mut failed = 0;
    for mut child in children {
        if !child.wait()?.success() {
            failed += 1;
        }
    }
    if let Some(hub) = hub {
        let stats = hub.shutdown();
        let _ = std::fs::remove_dir_all(&dir);
        let emitted: u64 = stats.handlers.iter().map(|h| h.emitted).sum();
        println!(
            "pool: {} workers ({failed} failed), hub received {} records, wrote {emitted}",
            args.workers, stats.received
        );
    } else {
        println!(
            "pool: {} workers ({failed} failed), logged to the hub on {}",
            args.workers,
            socket.display()
        );
    }
    if failed > 0 {
        return Err(format!("{failed} workers failed").into());
    }
    Ok(())
}
