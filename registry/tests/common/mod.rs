//! Shared fixtures: a real etcd per test and valid default units and machines.
#![allow(dead_code)]

use std::time::Duration;

use fleet_core::{Machine, MachineId, UnitFile, UnitName};
use fleet_registry::{Registry, RegistryConfig};
use fleet_testkit::EtcdServer;

/// A fresh etcd and a registry on it under a prefix of the test's own.
pub async fn setup(prefix: &str) -> (EtcdServer, Registry) {
    let etcd = EtcdServer::start().expect("etcd starts");
    let reg = registry(&etcd, prefix).await;
    (etcd, reg)
}

pub async fn registry(etcd: &EtcdServer, prefix: &str) -> Registry {
    let cfg = RegistryConfig::new(etcd.client_url())
        .with_prefix(prefix)
        .with_timeout(Duration::from_secs(2));
    Registry::connect(cfg).await.expect("registry connects")
}

pub fn name(s: &str) -> UnitName {
    UnitName::parse(s).unwrap()
}

pub fn machine_id(s: &str) -> MachineId {
    MachineId::new(s).unwrap()
}

pub fn machine(id: &str) -> Machine {
    let mut m = Machine::new(machine_id(id));
    m.public_ip = Some(std::net::IpAddr::from([10, 0, 0, id.len() as u8]));
    m
}

/// A small valid unit whose content depends on `cmd`.
pub fn unit(cmd: &str) -> UnitFile {
    UnitFile::parse(&format!(
        "[Unit]\nDescription=test unit\n\n[Service]\nExecStart=/bin/sh -c '{cmd}'\n"
    ))
    .unwrap()
}

/// Engine leadership for writing schedules in tests (the only way to write them).
pub async fn lead(reg: &Registry) -> fleet_registry::Leadership {
    let lease = reg.grant_lease(Duration::from_secs(30)).await.unwrap();
    reg.campaign("test-engine", lease).await.unwrap()
}

/// A registered agent for `id`, for writing its machine key and states.
pub async fn agent(
    reg: &Registry,
    id: &str,
    api_addr: &str,
    ttl: Duration,
) -> (
    fleet_registry::AgentRegistry,
    fleet_registry::LeaseKeepAlive,
) {
    reg.register_agent(&machine(id), api_addr, ttl, &[])
        .await
        .unwrap()
}

/// A raw etcd client, for what fleet never does (corrupt values, compaction).
pub async fn raw(etcd: &EtcdServer) -> etcd_client::Client {
    etcd_client::Client::connect([etcd.client_url()], None)
        .await
        .unwrap()
}
