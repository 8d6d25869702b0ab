//! The tracing Layer keeps the log call's promise that is cheap to check
//! without timing: no heap allocation per event in steady state, with
//! fields, inside nested spans. (Its own test binary: it counts allocations
//! with a global allocator.)

use std::time::Duration;

use logfunnel_client::{Builder, Overflow};
use tracing_subscriber::prelude::*;

#[path = "../client/tests/support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocations;

#[test]
fn a_tracing_event_with_fields_in_spans_does_not_allocate_in_steady_state() {
    let dir = tempfile::tempdir().unwrap();
    // No hub: records stay queued (then dropped and counted), as between
    // two batches; the event's own path is what is measured.
    let (handler, guard) = Builder::new()
        .socket(dir.path().join("absent.sock"))
        .overflow(Overflow::DropNewest)
        .flush_timeout(Duration::from_millis(10))
        .build()
        .unwrap();
    let subscriber = tracing_subscriber::registry().with(handler.tracing_layer());
    tracing::subscriber::with_default(subscriber, || {
        let outer = tracing::info_span!("request", request_id = 42u64, path = "/items");
        let _o = outer.enter();
        let inner = tracing::debug_span!("db", table = "items");
        let _i = inner.enter();
        let event = |i: u64| tracing::info!(target: "app.db", rows = i, ok = true, who = ?("ada", i), "worker {} processed item {i}", 3);
        event(0); // the thread's first call registers its queue
        let before = allocations();
        for i in 1..=2000 {
            event(i);
        }
        let during = allocations() - before;
        assert_eq!(during, 0, "{during} allocations in 2000 events");
    });
    // Every event was queued: a flush waits for all 2001 (no hub takes them).
    let err = handler.flush_timeout(Duration::from_millis(500)).unwrap_err();
    let logfunnel_client::FlushError::Timeout { unacked, .. } = err else { panic!("{err}") };
    assert_eq!((unacked, handler.stats().dropped), (2001, 0));
    drop(guard);
}
