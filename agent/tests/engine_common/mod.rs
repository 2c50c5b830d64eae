//! Shared fixtures for the engine tests: a real etcd, engines in-process (each with
//! its own client and machine id), fake machines on short leases, bounded waits.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use fleet_core::{Machine, MachineId, TargetState, UnitFile, UnitName};
use fleet_registry::{LeaseKeepAlive, Registry, RegistryConfig};
use fleet_testkit::EtcdServer;
use fleetd::engine::{self, EngineConfig, EngineHandle, EngineStatus};
use tokio_util::sync::CancellationToken;

pub const PREFIX: &str = "/fleet-test/";

pub async fn registry(etcd: &EtcdServer) -> Registry {
    let cfg = RegistryConfig::new(etcd.client_url())
        .with_prefix(PREFIX)
        .with_timeout(Duration::from_secs(3));
    Registry::connect(cfg).await.expect("registry connects")
}

pub fn name(s: &str) -> UnitName {
    UnitName::parse(s).unwrap()
}

pub fn mid(s: &str) -> MachineId {
    MachineId::new(s).unwrap()
}

/// An engine with its own etcd client, as on its own machine.
pub struct TestEngine {
    pub id: String,
    pub handle: Option<EngineHandle>,
    pub shutdown: CancellationToken,
}

impl TestEngine {
    pub async fn start(etcd: &EtcdServer, id: &str, disable: bool) -> TestEngine {
        let mut cfg = EngineConfig::new(mid(id));
        cfg.disable_engine = disable;
        // The shortest lease, so that failover tests measure the engine, not the TTL.
        cfg.lease_ttl = Duration::from_secs(1);
        let shutdown = CancellationToken::new();
        let handle = engine::spawn(registry(etcd).await, cfg, shutdown.clone());
        TestEngine {
            id: id.to_string(),
            handle: Some(handle),
            shutdown,
        }
    }

    pub fn status(&self) -> tokio::sync::watch::Receiver<EngineStatus> {
        self.handle.as_ref().expect("engine running").status()
    }

    pub fn is_leader(&self) -> bool {
        self.handle.as_ref().is_some_and(|h| h.is_leader())
    }

    /// A hard kill: the task is aborted, nothing is revoked; the lease expires by TTL.
    pub fn kill(&mut self) {
        self.handle.take();
    }

    /// A graceful stop: resigns.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(h) = self.handle.take() {
            tokio::time::timeout(Duration::from_secs(5), h.join())
                .await
                .expect("engine stops in time")
                .expect("engine stops cleanly");
        }
    }
}

/// Waits until one of `engines` leads and has completed a pass; returns its index.
pub async fn wait_leader(engines: &[TestEngine], within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        for (i, e) in engines.iter().enumerate() {
            if let Some(h) = &e.handle {
                let s = h.status().borrow().clone();
                if s.is_leader() && s.passes > 0 {
                    return i;
                }
            }
        }
        assert!(Instant::now() < deadline, "no engine led within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A fake machine: its key under a lease of `ttl`, renewed until the returned
/// keep-alive is dropped.
pub async fn machine(
    reg: &Registry,
    id: &str,
    meta: &[(&str, &str)],
    ttl: Duration,
) -> LeaseKeepAlive {
    let mut m = Machine::new(mid(id));
    m.metadata = meta
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    reg.register_agent(&m, "", ttl, &[]).await.unwrap().1
}

/// Submits a unit with an `[X-Fleet]` section (may be empty).
pub fn unit_file(xfleet: &str) -> UnitFile {
    UnitFile::parse(&format!(
        "[Unit]\nDescription=test\n\n[Service]\nExecStart=/bin/sleep 1000\n\n[X-Fleet]\n{xfleet}\n"
    ))
    .unwrap()
}

pub async fn submit(reg: &Registry, n: &str, xfleet: &str, target: TargetState) {
    reg.create_unit(&name(n), &unit_file(xfleet)).await.unwrap();
    if target != TargetState::Inactive {
        reg.set_targets(&[(name(n), target)]).await.unwrap();
    }
}

/// The schedule as unit → machines.
pub async fn schedule(reg: &Registry) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in reg.list_schedule().await.unwrap() {
        out.entry(e.unit.to_string())
            .or_default()
            .push(e.machine.to_string());
    }
    out
}

/// Polls `cond` every 20 ms until it holds or `within` passes (then panics with
/// `what`). Returns how long it took.
pub async fn wait_until<F, Fut>(what: &str, within: Duration, mut cond: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if cond().await {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "gave up waiting for {what} after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// etcd's count of gRPC calls started for `method` (`Txn`, `Range`, `Put`, ...).
pub fn grpc_calls(etcd: &EtcdServer, method: &str) -> u64 {
    let url = etcd.metrics_url();
    let addr = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    let needle = format!("grpc_server_started_total{{grpc_method=\"{method}\",");
    body.lines()
        .find(|l| l.starts_with(&needle))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}
