//! A `tracing` Layer (cargo feature `tracing`): a program built on
//! tracing-subscriber ships its events to the hub the way `log` users do.
//!
//! ```no_run
//! use tracing_subscriber::prelude::*;
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let (layer, guard) = logfunnel_client::Builder::new().build_tracing()?;
//!     tracing_subscriber::registry().with(layer).init();
//!     let span = tracing::info_span!("request", request_id = 42);
//!     let _entered = span.enter();
//!     tracing::info!(target: "app.web", user = "ada", "served {} bytes", 512);
//!     drop(_entered);
//!     guard.finish()?; // an error if the hub did not take every record
//!     Ok(())
//! }
//! ```
//!
//! An event becomes a record: its target is the logger name, its `message`
//! the message, its other fields extra fields (numbers and booleans keep
//! their type), its file, line and module path the record's. Inside spans
//! the record also carries `span` (the current span's name; `""` outside
//! any span) and the fields of the current span and of its parents,
//! outermost first; a field of an inner span, or of the event, hides an
//! outer one of the same name. So a format string can say
//! `%(span)s %(request_id)s`.
//!
//! The event keeps the log call's properties: its fields are encoded into
//! the thread's reusable scratch and the record straight into the thread's
//! ring, with no lock, system call or allocation in steady state, and the
//! sender is never woken. To get there the layer keeps its own per-thread
//! stack of entered spans, each with its fields already copied (once, when
//! the span is created), instead of reading the registry's span data, which
//! sits behind a read lock. Two consequences: a field recorded later with
//! `Span::record` is seen by events on the thread that recorded it and by
//! spans created afterwards, not by child spans created before; and an event
//! with an explicit `parent:` reads its spans through the registry (with
//! that lock).
//!
//! Levels: `LOGFUNNEL_LEVEL` (or [`crate::Builder::filter`]) decides which
//! events are sent, per target, as a per-layer filter: other layers of the
//! same subscriber still see what they enable. Spans are always tracked, so
//! that a WARN event inside an INFO span keeps its span's fields.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use logfunnel_protocol::{EncodedExtra, Value, ValueRef};
use tracing_core::field::{Field, Visit};
use tracing_core::span::{Attributes, Id, Record};
use tracing_core::subscriber::Interest;
use tracing_core::{Event, Metadata, Subscriber};
use tracing_subscriber::filter::Filtered;
use tracing_subscriber::layer::{Context, Filter, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::{CallSite, Directives, MessageWriter, QueueHandler, Scratch};

/// The layer to add to a tracing-subscriber registry: [`EventLayer`] behind
/// the client's level directives ([`EventFilter`]).
pub type TracingLayer<S> = Filtered<EventLayer, EventFilter, S>;

/// Turns tracing events into records on a [`QueueHandler`]'s queue.
#[derive(Debug, Clone)]
pub struct EventLayer {
    handler: QueueHandler,
    /// Tells this layer's spans apart from another subscriber's in the
    /// per-thread stack (span ids are per registry).
    id: u64,
}

/// Passes every span, and the events `LOGFUNNEL_LEVEL` enables.
#[derive(Debug, Clone)]
pub struct EventFilter {
    directives: Directives,
}

static NEXT_LAYER: AtomicU64 = AtomicU64::new(1);

impl QueueHandler {
    /// A tracing layer that ships events through this handler's client,
    /// filtered by its level directives.
    pub fn tracing_layer<S>(&self) -> TracingLayer<S>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let directives = self.shared().filter.clone();
        let layer = EventLayer { handler: self.clone(), id: NEXT_LAYER.fetch_add(1, Ordering::Relaxed) };
        layer.with_filter(EventFilter { directives })
    }
}

impl crate::Builder {
    /// Starts a client and returns a tracing layer for it (not installed:
    /// add it to a registry) and its guard. The client serves the whole
    /// process, as `init`'s does: dropping the guard flushes, the process
    /// flushes again at exit; `guard.finish()?` at the end of `main` flushes,
    /// stops it and reports a loss as an error.
    pub fn build_tracing<S>(self) -> Result<(TracingLayer<S>, crate::Guard), crate::InitError>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let (handler, mut guard) = self.build()?;
        guard.serve_process();
        Ok((handler.tracing_layer(), guard))
    }
}

fn log_level(level: &tracing_core::Level) -> log::Level {
    match *level {
        tracing_core::Level::ERROR => log::Level::Error,
        tracing_core::Level::WARN => log::Level::Warn,
        tracing_core::Level::INFO => log::Level::Info,
        tracing_core::Level::DEBUG => log::Level::Debug,
        _ => log::Level::Trace,
    }
}

impl EventFilter {
    fn passes(&self, meta: &Metadata<'_>) -> bool {
        meta.is_span() || self.directives.enabled(meta.target(), log_level(meta.level()))
    }
}

impl<S> Filter<S> for EventFilter {
    fn enabled(&self, meta: &Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        self.passes(meta)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        // Decided once per call site: a disabled event costs its macro one load.
        if self.passes(meta) { Interest::always() } else { Interest::never() }
    }
}

/// A span's name and fields, copied when it is created; `parent` links to
/// the enclosing span's, so an event walks its scope without the registry.
#[derive(Debug)]
struct SpanNode {
    name: &'static str,
    fields: Vec<(&'static str, Value)>,
    parent: Option<Arc<SpanNode>>,
}

impl SpanNode {
    fn has(&self, key: &str) -> bool {
        self.fields.iter().any(|(k, _)| *k == key)
    }
}

/// Stored in the registry's extensions of each span.
struct SpanData(Arc<SpanNode>);

/// Copies field values into a span's list.
struct SpanVisitor<'a>(&'a mut Vec<(&'static str, Value)>);

impl SpanVisitor<'_> {
    fn set(&mut self, field: &Field, value: Value) {
        match self.0.iter_mut().find(|(k, _)| *k == field.name()) {
            Some(slot) => slot.1 = value,
            None => self.0.push((field.name(), value)),
        }
    }
}

impl Visit for SpanVisitor<'_> {
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field, Value::I64(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.set(field, Value::U64(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.set(field, Value::F64(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field, Value::Bool(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field, Value::Str(value.to_owned()));
    }
    fn record_i128(&mut self, field: &Field, value: i128) {
        self.set(field, i64::try_from(value).map_or_else(|_| Value::Str(value.to_string()), Value::I64));
    }
    fn record_u128(&mut self, field: &Field, value: u128) {
        self.set(field, u64::try_from(value).map_or_else(|_| Value::Str(value.to_string()), Value::U64));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.set(field, Value::Str(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.set(field, Value::Str(format!("{value:?}")));
    }
}

/// Writes an event's fields: `message` into the message, the others into
/// the extra fields, noting their names.
struct EventVisitor<'a>(&'a mut Scratch);

impl EventVisitor<'_> {
    fn push(&mut self, field: &Field, value: ValueRef<'_>) {
        self.0.keys.push(field.name());
        self.0.extra.push(field.name(), value);
    }
}

impl Visit for EventVisitor<'_> {
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, ValueRef::I64(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, ValueRef::U64(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field, ValueRef::F64(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, ValueRef::Bool(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.message.push_str(value);
        } else {
            self.push(field, ValueRef::Str(value));
        }
    }
    fn record_i128(&mut self, field: &Field, value: i128) {
        match i64::try_from(value) {
            Ok(v) => self.record_i64(field, v),
            Err(_) => self.record_debug(field, &value),
        }
    }
    fn record_u128(&mut self, field: &Field, value: u128) {
        match u64::try_from(value) {
            Ok(v) => self.record_u64(field, v),
            Err(_) => self.record_debug(field, &value),
        }
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.keys.push(field.name());
        self.0.extra.push_fmt(field.name(), format_args!("{value}"));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            // `format_args!` messages: Debug of fmt::Arguments is Display.
            let _ = write!(MessageWriter(&mut self.0.message), "{value:?}");
        } else {
            self.0.keys.push(field.name());
            self.0.extra.push_fmt(field.name(), format_args!("{value:?}"));
        }
    }
}

/// One entered span on this thread.
struct Entered {
    layer: u64,
    id: Id,
    node: Arc<SpanNode>,
}

thread_local! {
    /// The spans this thread is inside, innermost last (see the module docs).
    static STACK: RefCell<Vec<Entered>> = const { RefCell::new(Vec::new()) };
}

/// Adds `node`'s fields and its parents', outermost first, skipping a
/// field that a span inside it (`inner`) or the event itself has.
fn push_scope(node: &SpanNode, inner: Option<&Chain<'_>>, event_keys: &[&str], extra: &mut EncodedExtra) {
    let here = Chain { node, next: inner };
    if let Some(parent) = &node.parent {
        push_scope(parent, Some(&here), event_keys, extra);
    }
    for (k, v) in &node.fields {
        let hidden = event_keys.contains(k) || inner.is_some_and(|c| c.any(|n| n.has(k)));
        if !hidden {
            extra.push(k, v.as_ref());
        }
    }
}

/// The spans inside the one being written, innermost last.
struct Chain<'a> {
    node: &'a SpanNode,
    next: Option<&'a Chain<'a>>,
}

impl Chain<'_> {
    fn any(&self, f: impl Fn(&SpanNode) -> bool) -> bool {
        let mut c = Some(self);
        while let Some(link) = c {
            if f(link.node) {
                return true;
            }
            c = link.next;
        }
        false
    }
}

fn add_scope(scratch: &mut Scratch, node: Option<&SpanNode>) {
    let Scratch { extra, keys, .. } = scratch;
    if !keys.contains(&"span") {
        extra.push("span", ValueRef::Str(node.map_or("", |n| n.name)));
    }
    if let Some(node) = node {
        push_scope(node, None, keys, extra);
    }
}

impl EventLayer {
    fn node<S>(id: &Id, ctx: &Context<'_, S>) -> Option<Arc<SpanNode>>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let span = ctx.span(id)?;
        let ext = span.extensions();
        ext.get::<SpanData>().map(|d| Arc::clone(&d.0))
    }
}

impl<S> Layer<S> for EventLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Vec::new();
        attrs.record(&mut SpanVisitor(&mut fields));
        let parent = if let Some(p) = attrs.parent() {
            Self::node(p, &ctx)
        } else if attrs.is_contextual() {
            ctx.lookup_current().and_then(|s| s.extensions().get::<SpanData>().map(|d| Arc::clone(&d.0)))
        } else {
            None
        };
        let node = Arc::new(SpanNode { name: attrs.metadata().name(), fields, parent });
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanData(node));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut ext = span.extensions_mut();
        let Some(data) = ext.get_mut::<SpanData>() else { return };
        let mut fields = data.0.fields.clone();
        values.record(&mut SpanVisitor(&mut fields));
        let node = Arc::new(SpanNode { name: data.0.name, fields, parent: data.0.parent.clone() });
        data.0 = Arc::clone(&node);
        // This thread's entries of the span see the new values at once.
        let _ = STACK.try_with(|stack| {
            if let Ok(mut stack) = stack.try_borrow_mut() {
                for e in stack.iter_mut().filter(|e| e.layer == self.id && e.id == *id) {
                    e.node = Arc::clone(&node);
                }
            }
        });
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        let Some(node) = Self::node(id, &ctx) else { return };
        let _ = STACK.try_with(|stack| {
            if let Ok(mut stack) = stack.try_borrow_mut() {
                stack.push(Entered { layer: self.id, id: id.clone(), node });
            }
        });
    }

    fn on_exit(&self, id: &Id, _ctx: Context<'_, S>) {
        let _ = STACK.try_with(|stack| {
            if let Ok(mut stack) = stack.try_borrow_mut()
                && let Some(i) = stack.iter().rposition(|e| e.layer == self.id && e.id == *id)
            {
                stack.remove(i);
            }
        });
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let shared = self.handler.shared();
        let meta = event.metadata();
        let site = CallSite {
            level: log_level(meta.level()),
            target: meta.target(),
            file: meta.file(),
            line: meta.line().unwrap_or(0),
            module_path: meta.module_path(),
        };
        // An explicit parent is looked up in the registry; a contextual
        // event uses this thread's stack.
        let explicit = match event.parent() {
            Some(p) => Self::node(p, &ctx),
            None => None,
        };
        QueueHandler::enqueue(shared, &site, |scratch| {
            event.record(&mut EventVisitor(scratch));
            if explicit.is_some() || !event.is_contextual() {
                add_scope(scratch, explicit.as_deref());
            } else {
                let done = STACK.try_with(|stack| match stack.try_borrow() {
                    Ok(stack) => {
                        let top = stack.iter().rev().find(|e| e.layer == self.id).map(|e| &*e.node);
                        add_scope(scratch, top);
                        true
                    }
                    Err(_) => false,
                });
                if done != Ok(true) {
                    add_scope(scratch, None);
                }
            }
            None
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(
        name: &'static str,
        fields: &[(&'static str, i64)],
        parent: Option<Arc<SpanNode>>,
    ) -> Arc<SpanNode> {
        Arc::new(SpanNode {
            name,
            fields: fields.iter().map(|(k, v)| (*k, Value::I64(*v))).collect(),
            parent,
        })
    }

    fn keys(extra_of: impl FnOnce(&mut Scratch)) -> Vec<(String, Value)> {
        let mut scratch = Scratch { message: String::new(), extra: EncodedExtra::new(), keys: Vec::new() };
        extra_of(&mut scratch);
        // Decode through a whole record: the extra bytes are bincode pairs.
        let empty = logfunnel_protocol::Record::new(20, "", "");
        let view = empty.view();
        let rec = view.as_record_ref();
        let mut builder = logfunnel_protocol::BatchBuilder::with_capacity(1024);
        builder.reset(1);
        let mut slot = vec![0u8; 4096];
        let n = logfunnel_protocol::encode_record_with(&rec, &scratch.extra, &mut slot).unwrap();
        builder.push_encoded(&slot[..n]);
        let frame = builder.finish().unwrap().to_vec();
        match logfunnel_protocol::decode_client_frame(&frame[4..]).unwrap() {
            logfunnel_protocol::ClientFrame::Batch(b) => b.records[0].extra.clone(),
            _ => unreachable!(),
        }
    }

    #[test]
    fn scope_fields_come_outermost_first_and_inner_ones_hide_outer_ones() {
        let outer = node("outer", &[("a", 1), ("b", 1), ("c", 1)], None);
        let mid = node("mid", &[("b", 2), ("d", 2)], Some(outer));
        let inner = node("inner", &[("c", 3)], Some(mid));
        let got = keys(|s| {
            s.keys.push("d");
            s.extra.push("d", ValueRef::I64(0));
            add_scope(s, Some(&inner));
        });
        let want: Vec<(String, Value)> = [("d", 0), ("a", 1), ("b", 2), ("c", 3)]
            .iter()
            .map(|(k, v)| (k.to_string(), Value::I64(*v)))
            .chain(std::iter::once(("span".to_string(), Value::Str("inner".into()))))
            .collect();
        let mut got_sorted = got.clone();
        let mut want_sorted = want;
        got_sorted.sort_by(|a, b| a.0.cmp(&b.0));
        want_sorted.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(got_sorted, want_sorted, "{got:?}");
        let order: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(order, ["d", "span", "a", "b", "c"]);
        // Outside any span: `span` is empty, so `%(span)s` always formats.
        assert_eq!(keys(|s| add_scope(s, None)), [("span".to_string(), Value::Str(String::new()))]);
    }
}
