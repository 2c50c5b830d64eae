//! Hard-killing the leader in the middle of a burst of 1,000 starts.

mod engine_common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use engine_common::*;
use fleet_core::TargetState::Launched;
use fleet_testkit::EtcdServer;
use futures_util::{StreamExt, stream};

const UNITS: usize = 1000;
const SOLO: usize = 10;
const DB: usize = 20;

fn unit_names() -> Vec<(String, &'static str)> {
    let mut v = Vec::with_capacity(UNITS);
    for i in 0..SOLO {
        v.push((format!("solo@{i}.service"), "Conflicts=solo@*"));
    }
    for i in 0..DB {
        v.push((format!("db@{i}.service"), "MachineMetadata=role=db"));
    }
    for i in v.len()..UNITS {
        v.push((format!("web@{i}.service"), ""));
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_during_a_burst_of_1000_starts() {
    let etcd = EtcdServer::start().unwrap();
    let reg = registry(&etcd).await;
    let ttl = Duration::from_secs(10);
    let mut keep = Vec::new();
    for (i, role) in ["db", "db", "web", "web", "web"].iter().enumerate() {
        keep.push(machine(&reg, &format!("m{i}"), &[("role", role)], ttl).await);
    }
    let mut engines = vec![
        TestEngine::start(&etcd, "e1", false).await,
        TestEngine::start(&etcd, "e2", false).await,
        TestEngine::start(&etcd, "e3", false).await,
    ];
    let leader = wait_leader(&engines, Duration::from_secs(10)).await;

    let units = unit_names();
    let file_of: BTreeMap<&str, &str> = units.iter().map(|(n, x)| (n.as_str(), *x)).collect();
    stream::iter(units.iter())
        .for_each_concurrent(16, |(n, x)| {
            let reg = reg.clone();
            async move {
                reg.create_unit(&name(n), &unit_file(x)).await.unwrap();
            }
        })
        .await;

    // `fleetctl start` of all of them, in batches; the leader dies half-way.
    let targets: Vec<_> = units.iter().map(|(n, _)| (name(n), Launched)).collect();
    let batches: Vec<_> = targets.chunks(125).collect();
    let mut killed_at = None;
    for (i, b) in batches.iter().enumerate() {
        if i == batches.len() / 2 {
            engines[leader].kill();
            killed_at = Some(Instant::now());
        }
        reg.set_targets(b).await.unwrap();
    }
    let killed_at = killed_at.unwrap();

    // A survivor takes over and acts (completes a pass that writes).
    let deadline = killed_at + Duration::from_secs(10);
    let (new_leader, acted_after) = loop {
        let found = engines.iter().enumerate().find(|(i, e)| {
            *i != leader && {
                let s = e.status().borrow().clone();
                s.is_leader() && s.last_pass.is_some_and(|p| p.txns > 0)
            }
        });
        if let Some((i, _)) = found {
            break (i, killed_at.elapsed());
        }
        assert!(Instant::now() < deadline, "no new leader acted");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    println!(
        "leader {} hard-killed; {} led and wrote after {acted_after:?}",
        engines[leader].id, engines[new_leader].id
    );
    assert!(
        acted_after < Duration::from_secs(2),
        "failover took {acted_after:?}"
    );

    // Every unit that can run is placed exactly once, and no rule is broken.
    let placeable = UNITS - (SOLO - keep.len());
    wait_until(
        "all placeable units placed",
        Duration::from_secs(20),
        || async { reg.list_schedule().await.unwrap().len() == placeable },
    )
    .await;
    let snap = reg.snapshot().await.unwrap();
    let mut hosts: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for e in &snap.schedule {
        hosts
            .entry(e.unit.as_str())
            .or_default()
            .push(e.machine.as_str());
    }
    assert!(hosts.values().all(|m| m.len() == 1), "a unit placed twice");
    assert_eq!(hosts.len(), placeable);
    let mut solo_machines = Vec::new();
    for (u, m) in &hosts {
        if file_of[u].starts_with("MachineMetadata") {
            assert!(
                m[0] == "m0" || m[0] == "m1",
                "{u} on non-db machine {}",
                m[0]
            );
        }
        if u.starts_with("solo@") {
            solo_machines.push(m[0]);
        }
    }
    solo_machines.sort();
    solo_machines.dedup();
    assert_eq!(
        solo_machines.len(),
        keep.len(),
        "one conflicting unit per machine"
    );
    assert_eq!(snap.unplaced.len(), SOLO - keep.len());
    assert!(
        snap.unplaced
            .keys()
            .all(|u| u.as_str().starts_with("solo@"))
    );
    // Load is spread: least-loaded placement on 5 machines.
    let mut load: BTreeMap<&str, usize> = BTreeMap::new();
    for m in hosts.values() {
        *load.entry(m[0]).or_default() += 1;
    }
    let (min, max) = (load.values().min().unwrap(), load.values().max().unwrap());
    assert!(max - min <= DB + 1, "uneven load {load:?}");
}
