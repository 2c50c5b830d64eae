//! Drained machines: kept under `drain/` without a lease (a drain outlives the
//! machine's registration), in the engine's snapshot, and seen by a `drain/` watch.

mod common;

use std::collections::BTreeSet;

use common::{machine_id, setup};
use fleet_registry::{Change, RegistryKey, WatchEvent};

#[tokio::test]
async fn drain_and_undrain_are_in_snapshots_and_watched() {
    let (_etcd, reg) = setup("/t/drain").await;
    let snap = reg.placement_snapshot().await.unwrap();
    assert!(snap.drained.is_empty());
    let mut watch = reg.watch_prefix(reg.keys().drains(), snap.revision + 1);

    assert!(reg.drain_machine(&machine_id("m1")).await.unwrap());
    assert!(
        !reg.drain_machine(&machine_id("m1")).await.unwrap(),
        "already"
    );
    assert!(reg.drain_machine(&machine_id("m2")).await.unwrap());
    let both: BTreeSet<_> = [machine_id("m1"), machine_id("m2")].into();
    assert_eq!(reg.drained_machines().await.unwrap(), both);
    assert_eq!(reg.placement_snapshot().await.unwrap().drained, both);
    assert_eq!(reg.snapshot().await.unwrap().drained, both);

    let batch = watch.next().await.unwrap();
    assert!(
        matches!(
            &batch.events[0],
            WatchEvent::Put { key: RegistryKey::Drain(m), change: Change::Drained, .. } if m == &machine_id("m1")
        ),
        "{batch:?}"
    );

    assert!(reg.undrain_machine(&machine_id("m1")).await.unwrap());
    assert!(
        !reg.undrain_machine(&machine_id("m1")).await.unwrap(),
        "not drained"
    );
    assert_eq!(
        reg.drained_machines().await.unwrap(),
        [machine_id("m2")].into()
    );
}
