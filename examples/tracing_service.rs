//! A service built on `tracing`, shipping its events to a logfunnel hub
//! through the client's tracing Layer: span fields (`request_id`, `user`)
//! reach the hub as extra fields a format string can use.
//!
//! ```sh
//! cargo run --example tracing_service                       # its own hub, to stderr
//! LOGFUNNEL_LEVEL=info,service.db=debug cargo run --example tracing_service
//! ```
//!
//! With `LOGFUNNEL_SOCKET` set it logs to that hub instead of starting one
//! (the test runs it so, against a real `logfunnel hub`, also with `--exit`:
//! the guard dropped at once and the process ended by `std::process::exit`).

use std::time::Duration;

use tracing::{debug, info, info_span, instrument, warn};
use tracing_subscriber::prelude::*;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The hub's configuration when the example starts its own: request logs
/// show their span and request id; everything else a plain line.
const CONFIG: &str = r#"
[formatters.request]
format = "%(levelname)-5s %(name)s [%(span)s request_id=%(request_id)s user=%(user)s] %(message)s"
[formatters.plain]
format = "%(levelname)-5s %(name)s %(message)s"

[handlers.requests]
class = "StreamHandler"
formatter = "request"
[handlers.other]
class = "StreamHandler"
formatter = "plain"

[root]
level = "DEBUG"
handlers = ["other"]

[loggers.service]
handlers = ["requests"]
propagate = false
"#;

#[instrument(target = "service.db", level = "debug", skip_all, fields(table = "items"))]
fn load(id: u64) -> Option<String> {
    debug!(target: "service.db", rows = u64::from(!id.is_multiple_of(7)), "SELECT name FROM items WHERE id = {id}");
    (!id.is_multiple_of(7)).then(|| format!("item-{id}"))
}

fn handle(request_id: u64, user: &str, id: u64) -> u16 {
    let span = info_span!("request", request_id, user);
    let _entered = span.enter();
    match load(id) {
        Some(name) => {
            info!(target: "service.http", status = 200, "GET /items/{id} -> {name}");
            200
        }
        None => {
            warn!(target: "service.http", status = 404, "GET /items/{id}: no such item");
            404
        }
    }
}

fn main() -> Result<()> {
    let own_hub = std::env::var_os("LOGFUNNEL_SOCKET").is_none();
    let dir = std::env::temp_dir().join(format!("tracing-service-{}", std::process::id()));
    let hub = if own_hub {
        let config = logfunnel_hub::Config::from_toml_str(CONFIG, "tracing_service")?;
        Some(logfunnel_hub::Hub::start(config, dir.join("hub.sock"))?)
    } else {
        None
    };
    let mut builder = logfunnel_client::Builder::new().process_name("tracing-service");
    if let Some(hub) = &hub {
        builder = builder.socket(hub.socket());
    }
    // The layer, and the guard that flushes it: `finish()?` at the end.
    let (layer, guard) = builder.build_tracing()?;
    tracing_subscriber::registry().with(layer).init();
    // `--exit`: the guard thrown away and the process ended by
    // std::process::exit, as careless programs do; the client still
    // delivers everything (it flushes at exit).
    let careless = std::env::args().any(|a| a == "--exit");
    let guard = if careless {
        drop(guard);
        None
    } else {
        Some(guard)
    };

    info!(target: "startup", version = env!("CARGO_PKG_VERSION"), "service up");
    for (n, user) in ["ada", "grace", "linus"].iter().cycle().take(6).enumerate() {
        let status = handle(1000 + n as u64, user, n as u64 * 7 / 2);
        debug!(target: "main", status, "request {n} done");
        std::thread::sleep(Duration::from_millis(1));
    }
    info!(target: "startup", "service down");

    if careless {
        std::process::exit(0);
    }
    if let Some(guard) = guard {
        guard.finish()?;
    }
    if let Some(hub) = hub {
        hub.shutdown();
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}
