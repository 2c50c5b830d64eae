//! Machines, states, schedule and the one-revision snapshot against a real etcd.

mod common;

use common::{machine, machine_id, name, setup, unit};
use fleet_core::{SystemdState, TargetState};
use fleet_registry::{LeaderFence, RegistryError, ScheduleEntry, SchedulePlan, UnitStateRecord};

fn state(u: &str, m: &str, s: TargetState) -> UnitStateRecord {
    UnitStateRecord {
        unit: name(u),
        machine: machine_id(m),
        hash: unit(u).hash(),
        state: s,
        systemd: SystemdState {
            load: "loaded".into(),
            active: "active".into(),
            sub: "running".into(),
        },
    }
}

fn placed(m: &str, u: &str) -> ScheduleEntry {
    ScheduleEntry {
        machine: machine_id(m),
        unit: name(u),
        hash: unit(u).hash(),
        target: TargetState::Launched,
    }
}

#[tokio::test]
async fn snapshot_is_consistent_and_sorted() {
    let (_etcd, reg) = setup("/t/snap").await;
    let lease = reg
        .grant_lease(std::time::Duration::from_secs(30))
        .await
        .unwrap();
    for m in ["m2", "m1"] {
        reg.register_machine(&machine(m), &format!("{m}:4002"), lease)
            .await
            .unwrap();
    }
    for u in ["b.service", "a.service"] {
        reg.create_unit(&name(u), &unit(u)).await.unwrap();
    }
    reg.apply_schedule(
        &SchedulePlan {
            place: vec![placed("m2", "b.service"), placed("m1", "a.service")],
            ..Default::default()
        },
        None,
    )
    .await
    .unwrap();
    reg.put_states(
        &[
            state("b.service", "m2", TargetState::Launched),
            state("a.service", "m1", TargetState::Loaded),
            // stale report from a machine the unit moved away from
            state("a.service", "m2", TargetState::Launched),
        ],
        lease,
    )
    .await
    .unwrap();

    let snap = reg.snapshot().await.unwrap();
    let ids: Vec<_> = snap
        .machines
        .iter()
        .map(|m| m.machine.id.to_string())
        .collect();
    assert_eq!(ids, ["m1", "m2"]);
    assert_eq!(snap.machines[0].api_addr, "m1:4002");
    assert_eq!(snap.machines[0].machine, machine("m1"));
    let units: Vec<_> = snap.units.iter().map(|u| u.name.to_string()).collect();
    assert_eq!(units, ["a.service", "b.service"]);
    assert_eq!(
        snap.schedule,
        vec![placed("m1", "a.service"), placed("m2", "b.service")]
    );
    let states: Vec<_> = snap
        .states
        .iter()
        .map(|s| (s.unit.to_string(), s.machine.to_string()))
        .collect();
    assert_eq!(
        states,
        [
            ("a.service".into(), "m1".into()),
            ("a.service".into(), "m2".into()),
            ("b.service".into(), "m2".into())
        ]
    );
    assert_eq!(snap.current_state(&name("a.service")), TargetState::Loaded);
    assert_eq!(
        snap.current_state(&name("b.service")),
        TargetState::Launched
    );

    // the same data through the individual reads
    assert_eq!(reg.list_machines().await.unwrap().len(), 2);
    assert_eq!(reg.list_states().await.unwrap(), snap.states);
    assert_eq!(reg.unit_states(&name("a.service")).await.unwrap().len(), 2);
    assert_eq!(reg.list_schedule().await.unwrap(), snap.schedule);
    let (rev, mine) = reg.machine_schedule(&machine_id("m1")).await.unwrap();
    assert_eq!(mine, vec![placed("m1", "a.service")]);
    assert_eq!(rev, snap.revision);

    // the snapshot is at one revision: a later write moves the revision by one and a
    // watch from snapshot.revision + 1 sees exactly that write
    assert!(
        reg.delete_state(&name("a.service"), &machine_id("m2"))
            .await
            .unwrap()
    );
    let later = reg.snapshot().await.unwrap();
    assert_eq!(later.revision, snap.revision + 1);
    let mut w = reg.watch_prefix(reg.keys().prefix(), snap.revision + 1);
    let batch = w.next().await.unwrap();
    assert_eq!(batch.events.len(), 1, "{batch:?}");
}

#[tokio::test]
async fn schedule_writes_are_fenced_on_the_leader_key() {
    let (_etcd, reg) = setup("/t/fence").await;
    let mut c = reg.etcd_client();
    let leader_key = format!("{}/abc", reg.keys().leader());
    c.put(leader_key.clone(), "engine-1", None).await.unwrap();
    let rev = c.get(leader_key.clone(), None).await.unwrap().kvs()[0].create_revision();
    let fence = LeaderFence {
        key: leader_key.clone().into_bytes(),
        create_revision: rev,
    };
    // 200 placements: two fenced txns
    let plan = SchedulePlan {
        place: (0..200)
            .map(|i| placed("m1", &format!("w@{i}.service")))
            .collect(),
        ..Default::default()
    };
    assert_eq!(reg.apply_schedule(&plan, Some(&fence)).await.unwrap(), 2);
    assert_eq!(reg.list_schedule().await.unwrap().len(), 200);

    // another engine won: the old fence no longer matches
    c.delete(leader_key.clone(), None).await.unwrap();
    c.put(leader_key, "engine-2", None).await.unwrap();
    let unplace = SchedulePlan {
        unschedule: vec![(machine_id("m1"), name("w@0.service"))],
        ..Default::default()
    };
    let err = reg
        .apply_schedule(&unplace, Some(&fence))
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::NotLeader), "{err}");
    assert_eq!(reg.list_schedule().await.unwrap().len(), 200);
}
