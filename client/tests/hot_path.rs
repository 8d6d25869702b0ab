//! The log call's promises that are cheap to check without timing:
//! no heap allocation in steady state, and a flush that cannot hang.

use std::time::{Duration, Instant};

use log::Log;
use logfunnel_client::{Builder, FlushError, Overflow};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocations;

fn log_one(h: &dyn Log, i: u64) {
    h.log(
        &log::Record::builder()
            .level(log::Level::Info)
            .target("app.worker")
            .file(Some("src/worker.rs"))
            .line(Some(7))
            .args(format_args!("worker {} processed item {}", 3, i))
            .build(),
    );
}

/// A client whose hub never appears (records stay queued), with a guard
/// that gives up at once; `tune` adjusts the builder.
fn without_hub(
    dir: &tempfile::TempDir,
    tune: impl FnOnce(Builder) -> Builder,
) -> (logfunnel_client::QueueHandler, logfunnel_client::Guard) {
    tune(Builder::new().socket(dir.path().join("absent.sock")).flush_timeout(Duration::from_millis(10)))
        .build()
        .unwrap()
}

#[test]
fn a_log_call_does_not_allocate_in_steady_state() {
    let dir = tempfile::tempdir().unwrap();
    // No hub: records stay queued, which is the common steady state too.
    let (handler, guard) = without_hub(&dir, |b| b.overflow(Overflow::DropNewest));
    log_one(&handler, 0); // first call on this thread: registers its queue
    let before = allocations();
    for i in 1..=2000 {
        log_one(&handler, i);
    }
    let during = allocations() - before;
    assert_eq!(during, 0, "{during} allocations in 2000 log calls");
    drop(guard);
}

#[test]
fn a_log_call_with_key_values_does_not_allocate_in_steady_state() {
    let dir = tempfile::tempdir().unwrap();
    let (handler, guard) = without_hub(&dir, |b| b.overflow(Overflow::DropNewest));
    let call = |i: u64| {
        let kvs: [(&str, log::kv::Value<'_>); 4] = [
            ("user", log::kv::Value::from("ada")),
            ("rows", log::kv::Value::from(i)),
            ("ok", log::kv::Value::from(true)),
            ("path", log::kv::Value::from_display(&"/items")),
        ];
        handler.log(
            &log::Record::builder()
                .level(log::Level::Info)
                .target("app.worker")
                .args(format_args!("worker {} processed item {}", 3, i))
                .key_values(&kvs)
                .build(),
        );
    };
    call(0);
    let before = allocations();
    for i in 1..=2000 {
        call(i);
    }
    let during = allocations() - before;
    assert_eq!(during, 0, "{during} allocations in 2000 log calls with key-values");
    drop(guard);
}

#[test]
fn flush_without_a_hub_times_out_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (handler, guard) = without_hub(&dir, |b| b);
    log_one(&handler, 1);
    let start = Instant::now();
    let err = handler.flush_timeout(Duration::from_millis(300)).unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(5));
    let FlushError::Timeout { unacked, last_error, .. } = &err else { panic!("{err}") };
    assert_eq!(*unacked, 1, "{err}");
    assert!(last_error.contains("absent.sock"), "{err}");
    assert_eq!(handler.stats().dropped, 0);
    drop(guard);
}

#[test]
fn drop_newest_counts_every_record_it_drops() {
    let dir = tempfile::tempdir().unwrap();
    let (handler, guard) =
        without_hub(&dir, |b| b.queue_capacity(4096).max_unacked(64 << 10).overflow(Overflow::DropNewest));
    for i in 0..20_000 {
        log_one(&handler, i);
    }
    // Let the sender take what fits. `sent` also counts the WARNING record
    // that reports the drops (at most one a second, or one per flush).
    std::thread::sleep(Duration::from_millis(100));
    let s = handler.stats();
    assert!(s.dropped > 0, "{s:?}");
    assert!(s.dropped < 20_000, "{s:?}");
    assert!(s.sent + s.dropped <= 20_001, "{s:?}");
    drop(guard);
}

#[test]
fn messages_over_the_limit_are_truncated_and_counted_not_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (handler, guard) = without_hub(&dir, |b| b);
    let big = "é".repeat(200_000); // 400,000 bytes, over the 256 KiB limit
    handler.log(&log::Record::builder().level(log::Level::Warn).args(format_args!("{big}")).build());
    let s = handler.stats();
    assert_eq!((s.truncated, s.dropped), (1, 0), "{s:?}");
    drop(guard);
}
