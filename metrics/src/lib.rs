//! Every metric fleetd exports, defined in one place, in one process-wide registry
//! ([`encode`] renders it in Prometheus' text format for `GET /metrics`).
//!
//! The crates that observe (registry, agent, API) call the small functions below, one
//! line at each place they observe, so the instrumented code stays readable and the
//! names, help texts, labels and buckets are all here.

use std::future::Future;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Op {
    op: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Call {
    method: String,
    code: String,
}

type Timings<L> = Family<L, Histogram, fn() -> Histogram>;

/// Latencies from 0.5 ms to ~16 s.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

struct Metrics {
    registry: Registry,
    engine_pass_seconds: Histogram,
    engine_placements: Counter,
    engine_unplaced: Gauge,
    engine_leadership_changes: Counter,
    agent_actions: Family<Kind, Counter>,
    agent_action_seconds: Timings<Kind>,
    dbus_call_seconds: Timings<Op>,
    etcd_request_seconds: Timings<Op>,
    etcd_request_errors: Family<Op, Counter>,
    etcd_overloads: Family<Op, Counter>,
    lease_renewals: Counter,
    lease_losses: Counter,
    api_calls: Family<Call, Counter>,
    journal_streams: Gauge,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut r = Registry::with_prefix("fleet");
    let m = Metrics {
        registry: Registry::default(),
        engine_pass_seconds: latency(),
        engine_placements: Counter::default(),
        engine_unplaced: Gauge::default(),
        engine_leadership_changes: Counter::default(),
        agent_actions: Family::default(),
        agent_action_seconds: Family::new_with_constructor(latency),
        dbus_call_seconds: Family::new_with_constructor(latency),
        etcd_request_seconds: Family::new_with_constructor(latency),
        etcd_request_errors: Family::default(),
        etcd_overloads: Family::default(),
        lease_renewals: Counter::default(),
        lease_losses: Counter::default(),
        api_calls: Family::default(),
        journal_streams: Gauge::default(),
    };
    r.register(
        "engine_pass_seconds",
        "Duration of the engine leader's scheduling passes",
        m.engine_pass_seconds.clone(),
    );
    r.register(
        "engine_placements",
        "Units the engine placed on a machine",
        m.engine_placements.clone(),
    );
    r.register(
        "engine_unplaced_units",
        "Units the last engine pass could not place",
        m.engine_unplaced.clone(),
    );
    r.register(
        "engine_leadership_changes",
        "Times this fleetd's engine became or stopped being the leader",
        m.engine_leadership_changes.clone(),
    );
    r.register(
        "agent_actions",
        "Actions the agent ran on systemd, by kind (load, unload, daemon-reload, start, stop)",
        m.agent_actions.clone(),
    );
    r.register(
        "agent_action_seconds",
        "Duration of the agent's action batches, by the kinds of action they held",
        m.agent_action_seconds.clone(),
    );
    r.register(
        "dbus_call_seconds",
        "Latency of D-Bus calls to systemd, by operation",
        m.dbus_call_seconds.clone(),
    );
    r.register(
        "etcd_request_seconds",
        "Latency of etcd requests, by operation",
        m.etcd_request_seconds.clone(),
    );
    r.register(
        "etcd_request_errors",
        "Failed or timed-out etcd requests, by operation",
        m.etcd_request_errors.clone(),
    );
    r.register(
        "etcd_overloads",
        "Requests etcd refused as too many (its apply behind its commits), sent again after a pause, by operation",
        m.etcd_overloads.clone(),
    );
    r.register(
        "lease_renewals",
        "Lease keep-alives etcd confirmed",
        m.lease_renewals.clone(),
    );
    r.register(
        "lease_losses",
        "Leases given up as lost (not renewed for a whole TTL, or gone in etcd)",
        m.lease_losses.clone(),
    );
    r.register(
        "api_calls",
        "API requests (gRPC, HTTP API v1, console, metrics) by method and status code",
        m.api_calls.clone(),
    );
    r.register(
        "journal_streams",
        "Journal and status streams open now",
        m.journal_streams.clone(),
    );
    Metrics { registry: r, ..m }
});

/// The registry in Prometheus' text exposition format.
pub fn encode() -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &METRICS.registry);
    out
}

/// The content type of [`encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One engine pass: how long it took, how many units it placed, how many it could not.
pub fn engine_pass(took: Duration, placed: usize, unplaceable: usize) {
    let m = &*METRICS;
    m.engine_pass_seconds.observe(took.as_secs_f64());
    m.engine_placements.inc_by(placed as u64);
    m.engine_unplaced.set(unplaceable as i64);
}

/// This engine won or lost the leadership.
pub fn leadership_change() {
    METRICS.engine_leadership_changes.inc();
}

/// Times a batch of agent actions: on drop, each action's kind is counted and the
/// batch's duration observed once per kind it held.
#[derive(Debug)]
pub struct ActionBatch {
    kinds: Vec<&'static str>,
    started: Instant,
}

impl ActionBatch {
    pub fn start(kinds: impl IntoIterator<Item = &'static str>) -> ActionBatch {
        ActionBatch {
            kinds: kinds.into_iter().collect(),
            started: Instant::now(),
        }
    }
}

impl Drop for ActionBatch {
    fn drop(&mut self) {
        let took = self.started.elapsed().as_secs_f64();
        let mut seen: Vec<&str> = Vec::new();
        for k in &self.kinds {
            let label = Kind {
                kind: (*k).to_string(),
            };
            METRICS.agent_actions.get_or_create(&label).inc();
            if !seen.contains(k) {
                seen.push(k);
                METRICS
                    .agent_action_seconds
                    .get_or_create(&label)
                    .observe(took);
            }
        }
    }
}

/// Times one D-Bus call to systemd (until it answers or is dropped by a timeout).
pub async fn dbus_call<T>(op: &str, fut: impl Future<Output = T>) -> T {
    struct Guard<'a>(&'a str, Instant);
    impl Drop for Guard<'_> {
        fn drop(&mut self) {
            let label = Op {
                op: self.0.to_string(),
            };
            METRICS
                .dbus_call_seconds
                .get_or_create(&label)
                .observe(self.1.elapsed().as_secs_f64());
        }
    }
    let _guard = Guard(op, Instant::now());
    fut.await
}

/// Times one etcd request: latency on completion, an error when it fails or is
/// dropped unfinished (a timeout).
pub async fn etcd_request<T, E>(op: &str, fut: impl Future<Output = Result<T, E>>) -> Result<T, E> {
    struct Guard<'a> {
        op: &'a str,
        started: Instant,
        ok: bool,
    }
    impl Drop for Guard<'_> {
        fn drop(&mut self) {
            let label = Op {
                op: self.op.to_string(),
            };
            METRICS
                .etcd_request_seconds
                .get_or_create(&label)
                .observe(self.started.elapsed().as_secs_f64());
            if !self.ok {
                METRICS.etcd_request_errors.get_or_create(&label).inc();
            }
        }
    }
    let mut guard = Guard {
        op,
        started: Instant::now(),
        ok: false,
    };
    let r = fut.await;
    guard.ok = r.is_ok();
    r
}

/// A request etcd refused as too many, to be sent again after a pause.
pub fn etcd_overload(op: &str) {
    METRICS
        .etcd_overloads
        .get_or_create(&Op { op: op.to_string() })
        .inc();
}

/// A lease keep-alive etcd confirmed (`true`), or a lease given up as lost.
pub fn lease_renewal(renewed: bool) {
    if renewed {
        METRICS.lease_renewals.inc();
    } else {
        METRICS.lease_losses.inc();
    }
}

/// One API request answered: its method (gRPC method, or HTTP method and route) and
/// status (gRPC code name or HTTP status).
pub fn api_call(method: &str, code: &str) {
    let label = Call {
        method: method.to_string(),
        code: code.to_string(),
    };
    METRICS.api_calls.get_or_create(&label).inc();
}

/// Counts an open journal or status stream until dropped.
#[derive(Debug)]
pub struct JournalStream(());

impl JournalStream {
    pub fn open() -> JournalStream {
        METRICS.journal_streams.inc();
        JournalStream(())
    }
}

impl Drop for JournalStream {
    fn drop(&mut self) {
        METRICS.journal_streams.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Labelled families appear once they have a sample; plain metrics always do.
    #[test]
    fn every_metric_is_exported_with_its_help() {
        engine_pass(Duration::from_millis(3), 2, 1);
        api_call("GET /metrics", "200");
        let _s = JournalStream::open();
        let text = encode();
        for name in [
            "fleet_engine_pass_seconds_bucket",
            "fleet_engine_placements_total 2",
            "fleet_engine_unplaced_units 1",
            "fleet_api_calls_total{method=\"GET /metrics\",code=\"200\"} 1",
            "fleet_journal_streams 1",
            "# HELP fleet_lease_losses",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
    }
}
