//! Leases: keys bound to an agent's lease live exactly as long as it is renewed.

mod common;

use std::time::Duration;

use common::{agent, machine_id, name, setup, unit};
use fleet_core::{SystemdState, TargetState};
use fleet_registry::{RegistryKey, RegistryWatch, UnitStateRecord, WatchEvent};

/// Waits (under a deadline) until the watch reports the deletion of `machine/<id>`.
async fn wait_machine_deleted(w: &mut RegistryWatch, id: &str) -> tokio::time::Instant {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let batch = tokio::time::timeout_at(deadline, w.next())
            .await
            .expect("machine key deleted before the deadline")
            .unwrap();
        if batch.events.iter().any(|e| {
            matches!(e, WatchEvent::Delete { key: RegistryKey::Machine(m), .. } if m.as_str() == id)
        }) {
            return tokio::time::Instant::now();
        }
    }
}

#[tokio::test]
async fn expiry_removes_machine_and_state_keys() {
    let (_etcd, reg) = setup("/t/lease").await;
    // registered, then nobody renews the lease
    let (agent, keeper) = agent(&reg, "m1", "m1:4002", Duration::from_secs(2)).await;
    drop(keeper);
    let s = UnitStateRecord {
        unit: name("a.service"),
        machine: machine_id("m1"),
        hash: unit("a").hash(),
        state: TargetState::Launched,
        systemd: SystemdState::default(),
    };
    agent.put_states(&[s]).await.unwrap();
    let snap = reg.snapshot().await.unwrap();
    assert_eq!((snap.machines.len(), snap.states.len()), (1, 1));

    let mut w = reg.watch_prefix(reg.keys().machines(), snap.revision + 1);
    wait_machine_deleted(&mut w, "m1").await;
    let snap = reg.snapshot().await.unwrap();
    assert!(
        snap.machines.is_empty() && snap.states.is_empty(),
        "{snap:?}"
    );
}

#[tokio::test]
async fn keep_alive_holds_the_lease_until_dropped() {
    let (_etcd, reg) = setup("/t/keepalive").await;
    let ttl = Duration::from_secs(2);
    let (_agent, keeper) = agent(&reg, "m1", "", ttl).await;
    let rev = reg.snapshot().await.unwrap().revision;
    let mut w = reg.watch_prefix(reg.keys().machines(), rev + 1);

    // two TTLs pass: the key must still be there and nothing may have been deleted
    let held = tokio::time::timeout(ttl * 2, w.next()).await;
    assert!(held.is_err(), "unexpected change while renewing: {held:?}");
    assert_eq!(reg.list_machines().await.unwrap().len(), 1);

    drop(keeper);
    let stopped = tokio::time::Instant::now();
    let gone = wait_machine_deleted(&mut w, "m1").await;
    assert!(gone - stopped <= ttl + Duration::from_secs(3));

    // a keeper on a revoked lease reports it lost
    let lease = reg.grant_lease(ttl).await.unwrap();
    let mut keeper = reg.keep_alive(lease, ttl).await.unwrap();
    reg.revoke_lease(lease).await.unwrap();
    let err = tokio::time::timeout(ttl * 3, keeper.lost())
        .await
        .expect("loss noticed");
    assert!(err.to_string().contains("expired or was revoked"), "{err}");
}
