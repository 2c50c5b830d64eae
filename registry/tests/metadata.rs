//! Dynamic machine metadata: merged over the configured metadata in every machine
//! read (lists and the engine's snapshot), outliving the machine's lease, and seen
//! by a `machine/` watch (what wakes the engine).

mod common;

use std::time::Duration;

use common::{machine, machine_id, setup};
use fleet_registry::{Change, MetadataChange, RegistryKey, WatchEvent};

fn set(id: &str, name: &str, value: Option<&str>) -> MetadataChange {
    MetadataChange {
        machine: machine_id(id),
        name: name.into(),
        value: value.map(Into::into),
    }
}

#[tokio::test]
async fn merged_in_reads_kept_across_leases_and_watched() {
    let (_etcd, reg) = setup("/t/metadata").await;
    let mut m1 = machine("m1");
    m1.metadata.insert("region".into(), "eu".into());
    m1.metadata.insert("rack".into(), "r1".into());
    let (agent, _keep) = reg
        .register_agent(&m1, "", Duration::from_secs(30), &[])
        .await
        .unwrap();
    let snap = reg.placement_snapshot().await.unwrap();
    let mut watch = reg.watch_prefix(reg.keys().machines(), snap.revision + 1);
    // For a machine that is not there (yet) too; later duplicates win.
    reg.set_machine_metadata(&[
        set("m1", "disk", Some("hdd")),
        set("m1", "disk", Some("ssd")),
        set("m1", "rack", None),
        set("m2", "disk", Some("nvme")),
    ])
    .await
    .unwrap();
    let batch = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .expect("the watch reports the change")
        .unwrap();
    assert!(batch.events.iter().any(|e| matches!(e,
        WatchEvent::Put { key: RegistryKey::MachineMetadata(m, n), change: Change::MachineMetadata(v), .. }
            if m.as_str() == "m1" && n == "disk" && v == "ssd")));
    let want = [("disk", "ssd"), ("region", "eu")]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into_iter()
        .collect();
    let listed = reg.list_machines().await.unwrap();
    assert_eq!(listed.len(), 1, "metadata alone is not a machine");
    assert_eq!(listed[0].metadata, want);
    let snap = reg.placement_snapshot().await.unwrap();
    assert_eq!(snap.machines[0].machine.metadata, want);
    // The machine leaves and comes back: its dynamic metadata is still applied.
    agent.revoke().await.unwrap();
    assert!(reg.list_machines().await.unwrap().is_empty());
    let _m1 = reg
        .register_agent(&m1, "", Duration::from_secs(30), &[])
        .await
        .unwrap();
    let _m2 = reg
        .register_agent(&machine("m2"), "", Duration::from_secs(30), &[])
        .await
        .unwrap();
    let listed = reg.list_machines().await.unwrap();
    assert_eq!(listed[0].metadata, want);
    assert_eq!(listed[1].metadata["disk"], "nvme");
}
