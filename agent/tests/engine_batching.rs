//! The engine's cost in etcd requests, counted by etcd itself (`/metrics`), and the
//! quiet it leaves on the schedule prefixes of machines a change does not concern.

mod engine_common;

use std::time::Duration;

use engine_common::*;
use fleet_core::TargetState::Launched;
use fleet_registry::{Change, RegistryKey, WatchEvent};
use fleet_testkit::EtcdServer;
use futures_util::{StreamExt, stream};

const UNITS: usize = 1000;

/// KV requests of every kind (the engine's writes are txns).
fn kv_calls(etcd: &EtcdServer) -> u64 {
    ["Txn", "Range", "Put", "DeleteRange"]
        .iter()
        .map(|m| grpc_calls(etcd, m))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placements_are_batched_and_other_machines_hear_nothing() {
    let etcd = EtcdServer::start().unwrap();
    let reg = registry(&etcd).await;
    let ttl = Duration::from_secs(10);
    let _m1 = machine(&reg, "m1", &[("role", "web")], ttl).await;
    let _m2 = machine(&reg, "m2", &[("role", "web")], ttl).await;
    let _m3 = machine(&reg, "m3", &[("role", "batch")], ttl).await;
    let engines = vec![TestEngine::start(&etcd, "m1", false).await];
    wait_leader(&engines, Duration::from_secs(10)).await;
    let mut status = engines[0].status();

    let names: Vec<String> = (0..UNITS).map(|i| format!("web@{i}.service")).collect();
    stream::iter(names.iter())
        .for_each_concurrent(16, |n| {
            let reg = reg.clone();
            async move {
                reg.create_unit(&name(n), &unit_file("MachineMetadata=role=web"))
                    .await
                    .unwrap();
            }
        })
        .await;
    // Let the engine settle on the inactive units (passes without writes).
    let settled = reg.snapshot().await.unwrap().revision;
    tokio::time::timeout(
        Duration::from_secs(10),
        status.wait_for(|s| s.last_pass.as_ref().is_some_and(|p| p.revision >= settled)),
    )
    .await
    .unwrap()
    .unwrap();

    // m3's agent watches its own prefix from here on.
    let mut m3_watch = reg.watch_prefix(reg.keys().machine_schedule(&mid("m3")), settled + 1);

    let passes_before = status.borrow().passes;
    let calls_before = kv_calls(&etcd);
    let targets: Vec<_> = names.iter().map(|n| (name(n), Launched)).collect();
    let set = reg.set_targets(&targets).await.unwrap();
    let after_targets = reg.snapshot().await.unwrap().revision;
    tokio::time::timeout(
        Duration::from_secs(10),
        status.wait_for(|s| {
            s.last_pass
                .as_ref()
                .is_some_and(|p| p.revision >= after_targets)
        }),
    )
    .await
    .unwrap()
    .unwrap();
    // Counted before any other read of ours: the snapshot above is 1 txn.
    let calls = kv_calls(&etcd)
        - calls_before
        - set.txns.expect("the etcd driver counts its txns") as u64
        - 1;
    let passes = status.borrow().passes - passes_before;
    let snap = reg.snapshot().await.unwrap();
    assert_eq!(snap.schedule.len(), UNITS);
    // Every revision since `settled` is one txn: ours (set_targets) or the engine's,
    // which may start writing before set_targets has finished.
    let write_txns = (snap.revision - settled) as u64
        - set.txns.expect("the etcd driver counts its txns") as u64;
    println!(
        "{UNITS} placements: {passes} passes, {calls} etcd requests by the engine, \
         {write_txns} write txns (set_targets took {} txns)",
        set.txns.expect("the etcd driver counts its txns")
    );
    // ⌈ops/128⌉ writes (a pass split by the debounce costs at most one partial txn
    // more), and no reads: passes plan from the view the engine keeps from watches.
    let min_writes = UNITS.div_ceil(fleet_registry::MAX_TXN_OPS) as u64;
    assert!(write_txns >= min_writes && write_txns <= min_writes + passes);
    assert_eq!(calls, write_txns, "only batched writes, no snapshot reads");
    assert!(
        passes <= 4,
        "the burst was debounced into few passes: {passes}"
    );

    // m3 was not concerned: the first event on its prefix is the unit pinned to it.
    reg.create_unit(&name("pinned.service"), &unit_file("MachineID=m3"))
        .await
        .unwrap();
    reg.set_targets(&[(name("pinned.service"), Launched)])
        .await
        .unwrap();
    let batch = tokio::time::timeout(Duration::from_secs(10), m3_watch.next())
        .await
        .unwrap()
        .unwrap();
    match &batch.events[..] {
        [
            WatchEvent::Put {
                key: RegistryKey::Schedule(m, u),
                change: Change::Schedule(_),
                ..
            },
        ] => {
            assert_eq!((m.as_str(), u.as_str()), ("m3", "pinned.service"));
        }
        other => panic!("m3 heard about something else: {other:?}"),
    }
}
