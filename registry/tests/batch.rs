//! Many-unit destroys and the named-units view against a real etcd.

mod common;

use common::{agent, lead, machine_id, name, setup, unit};
use fleet_core::{SystemdState, TargetState, UnitName};
use fleet_registry::{ScheduleEntry, SchedulePlan, UnitStateRecord};

fn names(n: usize) -> Vec<UnitName> {
    (0..n).map(|i| name(&format!("u{i:03}.service"))).collect()
}

/// `u` (as submitted) launched on machine `m`.
fn placed(m: &str, u: &UnitName) -> ScheduleEntry {
    ScheduleEntry {
        machine: machine_id(m),
        unit: u.clone(),
        hash: unit(u.as_str()).hash(),
        target: TargetState::Launched,
        text: None,
    }
}

async fn submit(reg: &fleet_registry::Registry, names: &[UnitName]) {
    let units: Vec<_> = names
        .iter()
        .map(|n| (n.clone(), unit(n.as_str())))
        .collect();
    reg.create_units(&units).await.unwrap();
}

#[tokio::test]
async fn destroy_many_across_txn_boundaries() {
    let (_etcd, reg) = setup("/t/destroy-many").await;
    let all = names(300);
    submit(&reg, &all).await;
    reg.set_targets(
        &all.iter()
            .map(|n| (n.clone(), TargetState::Launched))
            .collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    let existed = reg.destroy_units(&all).await.unwrap();
    assert_eq!(existed, vec![true; 300]);
    assert!(reg.list_units().await.unwrap().is_empty());
    // no orphan `job/` keys either: a new unit of the same name starts inactive
    submit(&reg, &all[..1]).await;
    let got = reg.get_unit(&all[0]).await.unwrap().unwrap();
    assert_eq!(got.target, TargetState::Inactive);
}

#[tokio::test]
async fn destroy_mixed_existing_missing_and_duplicates() {
    let (_etcd, reg) = setup("/t/destroy-mixed").await;
    let all = names(200);
    // every other unit exists
    let present: Vec<_> = all.iter().step_by(2).cloned().collect();
    submit(&reg, &present).await;
    let mut ask = all.clone();
    ask.push(all[0].clone()); // twice: destroyed once
    let existed = reg.destroy_units(&ask).await.unwrap();
    let want: Vec<bool> = (0..200).map(|i| i % 2 == 0).chain([false]).collect();
    assert_eq!(existed, want);
    assert!(reg.list_units().await.unwrap().is_empty());
    assert_eq!(reg.destroy_units(&[]).await.unwrap(), Vec::<bool>::new());
}

#[tokio::test]
async fn destroy_while_targets_are_set_leaves_no_orphan_target() {
    let (_etcd, reg) = setup("/t/destroy-race").await;
    let all = names(256);
    submit(&reg, &all).await;
    let targets: Vec<_> = all
        .iter()
        .map(|n| (n.clone(), TargetState::Launched))
        .collect();
    let (set, destroyed) = tokio::join!(reg.set_targets(&targets), reg.destroy_units(&all));
    set.unwrap();
    assert_eq!(destroyed.unwrap(), vec![true; 256]);
    assert!(reg.list_units().await.unwrap().is_empty());
    // a target written after its unit's destroy would resurrect as a stale target
    submit(&reg, &all).await;
    for u in reg.get_units(&all).await.unwrap() {
        assert_eq!(u.unwrap().target, TargetState::Inactive);
    }
}

fn state(u: &str, m: &str, s: TargetState) -> UnitStateRecord {
    UnitStateRecord {
        unit: name(u),
        machine: machine_id(m),
        hash: unit(u).hash(),
        state: s,
        systemd: SystemdState::default(),
    }
}

#[tokio::test]
async fn unit_views_read_only_the_units_named() {
    let (_etcd, reg) = setup("/t/views").await;
    let ttl = std::time::Duration::from_secs(30);
    let (m1, _k1) = agent(&reg, "m1", "m1:4002", ttl).await;
    let (m2, _k2) = agent(&reg, "m2", "m2:4002", ttl).await;
    // more units than one txn carries, so the consistent-revision path is used
    let all = names(100);
    submit(&reg, &all).await;
    let (a, b, c) = (all[0].clone(), all[50].clone(), all[99].clone());
    lead(&reg)
        .await
        .apply(&SchedulePlan {
            place: vec![placed("m1", &a), placed("m1", &b)],
            ..Default::default()
        })
        .await
        .unwrap();
    m1.put_states(&[state(a.as_str(), "m1", TargetState::Launched)])
        .await
        .unwrap();
    // b: only a machine it is not scheduled on reports it (moving away)
    m2.put_states(&[state(b.as_str(), "m2", TargetState::Launched)])
        .await
        .unwrap();
    let mut ask = all.clone();
    ask.push(name("missing.service"));
    let (rev, views) = reg.unit_views(&ask).await.unwrap();
    assert_eq!(views.len(), 101);
    assert!(views[100].is_none());
    let snap = reg.snapshot().await.unwrap();
    assert_eq!(rev, snap.revision);
    for (n, v) in all.iter().zip(&views) {
        let v = v.as_ref().unwrap();
        assert_eq!(&v.unit.name, n);
        assert_eq!(v.current_state(), snap.current_state(n), "{n}");
        let states: Vec<_> = snap.states_of(n).cloned().collect();
        assert_eq!(v.states, states, "{n}");
    }
    let va = views[0].as_ref().unwrap();
    assert_eq!(va.scheduled_on, Some(machine_id("m1")));
    assert_eq!(va.current_state(), TargetState::Launched);
    assert_eq!(
        views[50].as_ref().unwrap().current_state(),
        TargetState::Inactive
    );
    assert_eq!(views[99].as_ref().unwrap().unit.name, c);
}

/// Moving many units between machines takes several pipelined txns, and a pass can
/// fail half-way: at no revision may a unit be placed on two machines (it would run
/// twice), nor on none. Moved from m2 to m1, whose keys sort first, so a plan written
/// in key order would place before it removes.
#[tokio::test]
async fn moving_many_units_keeps_each_on_exactly_one_machine() {
    use std::collections::BTreeMap;
    let (_etcd, reg) = setup("/t/move-many").await;
    let all = names(300);
    submit(&reg, &all).await;
    let leader = lead(&reg).await;
    leader
        .apply(&SchedulePlan {
            place: all.iter().map(|u| placed("m2", u)).collect(),
            ..Default::default()
        })
        .await
        .unwrap();
    let from = reg.snapshot().await.unwrap().revision + 1;
    let txns = leader
        .apply(&SchedulePlan {
            place: all.iter().map(|u| placed("m1", u)).collect(),
            unschedule: all.iter().map(|u| (machine_id("m2"), u.clone())).collect(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(txns > 2, "the move took {txns} txns");
    let mut w = reg.watch_prefix(reg.keys().schedules(), from);
    // (revision, unit, machine, placed?)
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while events.len() < 2 * all.len() {
        let batch = tokio::time::timeout_at(deadline, w.next())
            .await
            .expect("the whole move seen before the deadline")
            .unwrap();
        for ev in batch.events {
            match ev {
                fleet_registry::WatchEvent::Put {
                    key: fleet_registry::RegistryKey::Schedule(m, u),
                    revision,
                    ..
                } => events.push((revision, u, m, true)),
                fleet_registry::WatchEvent::Delete {
                    key: fleet_registry::RegistryKey::Schedule(m, u),
                    revision,
                } => events.push((revision, u, m, false)),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    // Replay revision by revision (a txn applies at one revision) from "all on m2".
    let mut on: BTreeMap<UnitName, Vec<fleet_core::MachineId>> = all
        .iter()
        .map(|u| (u.clone(), vec![machine_id("m2")]))
        .collect();
    let mut revisions = std::collections::BTreeSet::new();
    for (i, (rev, u, m, put)) in events.iter().enumerate() {
        let machines = on.entry(u.clone()).or_default();
        if *put {
            machines.push(m.clone());
        } else {
            machines.retain(|x| x != m);
        }
        revisions.insert(*rev);
        let revision_done = events.get(i + 1).is_none_or(|next| next.0 != *rev);
        if revision_done {
            let twice: Vec<&UnitName> = on
                .iter()
                .filter(|(_, ms)| ms.len() > 1)
                .map(|(u, _)| u)
                .collect();
            assert!(
                twice.is_empty(),
                "at revision {rev}, {} units placed on two machines, e.g. {:?}",
                twice.len(),
                &twice[..twice.len().min(3)]
            );
            let nowhere = on.values().filter(|ms| ms.is_empty()).count();
            assert_eq!(nowhere, 0, "at revision {rev}, units placed nowhere");
        }
    }
    assert!(on.values().all(|ms| ms == &vec![machine_id("m1")]));
    assert!(revisions.len() > 2);
}

/// A plan's txns hold the placements of few machines each (etcd sends a machine's
/// agent one watch response per txn that touches it): 1,000 units dealt round-robin
/// over 10 machines reach each machine in at most 2 revisions, not one per txn.
#[tokio::test]
async fn a_machines_placements_come_in_few_txns() {
    let (_etcd, reg) = setup("/t/by-machine").await;
    let all: Vec<UnitName> = (0..1_000)
        .map(|i| name(&format!("u{i:04}.service")))
        .collect();
    submit(&reg, &all).await;
    let leader = lead(&reg).await;
    let from = reg.snapshot().await.unwrap().revision + 1;
    let txns = leader
        .apply(&SchedulePlan {
            place: all
                .iter()
                .enumerate()
                .map(|(i, u)| placed(&format!("m{}", i % 10), u))
                .collect(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(txns >= 8, "1,000 placements took {txns} txns");
    let m3 = machine_id("m3");
    let mut w = reg.watch_prefix(reg.keys().machine_schedule(&m3), from);
    let mut revisions = std::collections::BTreeSet::new();
    let mut seen = 0;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while seen < 100 {
        let batch = tokio::time::timeout_at(deadline, w.next())
            .await
            .expect("m3's placements seen before the deadline")
            .unwrap();
        for ev in batch.events {
            if let fleet_registry::WatchEvent::Put { revision, .. } = ev {
                revisions.insert(revision);
                seen += 1;
            }
        }
    }
    assert!(
        revisions.len() <= 2,
        "m3's 100 placements came in {} txns",
        revisions.len()
    );
}
