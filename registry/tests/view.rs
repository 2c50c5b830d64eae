//! The engine's view kept from watches: after any mix of changes it reads as a fresh
//! snapshot would, without reading etcd again; a compacted history says "read again".

mod common;

use std::time::Duration;

use common::{machine_id, name, setup, unit};
use fleet_core::TargetState;
use fleet_registry::{ClusterSnapshot, EngineView, RegistryError, ScheduleEntry, SchedulePlan};

/// Applies changes until the view has reached `revision`, under a deadline.
/// Applies watched changes until the view has reached `revision` and plans from what
/// `fresh` holds. Each prefix has a watch of its own and they deliver independently:
/// one watch past `revision` says nothing of the others, so the test waits for the
/// content, within a deadline.
async fn catch_up(view: &mut EngineView, revision: i64, fresh: &ClusterSnapshot) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while view.revision() < revision || planning_input(&view.snapshot()) != planning_input(fresh) {
        tokio::time::timeout_at(deadline, view.changed(Duration::ZERO))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "the view did not catch up before the deadline:\n{:?}\nfresh:\n{:?}",
                    planning_input(&view.snapshot()),
                    planning_input(fresh)
                )
            })
            .expect("watches work");
    }
}

/// The parts a plan reads (revisions differ: the view's is its newest event's).
fn planning_input(s: &ClusterSnapshot) -> impl PartialEq + std::fmt::Debug + use<> {
    (
        s.units
            .iter()
            .map(|u| (u.name.clone(), u.hash, u.target))
            .collect::<Vec<_>>(),
        s.machines.clone(),
        s.schedule.clone(),
        s.unplaced.clone(),
        s.drained.clone(),
        s.skipped
            .iter()
            .map(|k| (k.key.clone(), k.unit.clone(), k.unit_record))
            .collect::<Vec<_>>(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_view_follows_changes_like_a_fresh_snapshot() {
    let (etcd, reg) = setup("/t/view").await;
    let (a, b, c) = (name("a.service"), name("b.service"), name("c.service"));
    reg.create_unit(&a, &unit("a")).await.unwrap();
    let (_agent, _keep) = common::agent(&reg, "m1", "", Duration::from_secs(30)).await;
    let leader = common::lead(&reg).await;
    let mut view = leader.follow().await.unwrap();
    assert_eq!(
        planning_input(&view.snapshot()),
        planning_input(&reg.placement_snapshot().await.unwrap())
    );

    // Units created with their target in one write, targets changed, a unit
    // destroyed, a second machine, a drain, a corrupt target: all seen.
    reg.create_units_with_target(&[(b.clone(), unit("b"))], TargetState::Launched)
        .await
        .unwrap();
    reg.create_unit(&c, &unit("c")).await.unwrap();
    reg.set_targets(&[(a.clone(), TargetState::Loaded)])
        .await
        .unwrap();
    assert!(reg.destroy_unit(&c).await.unwrap());
    let (_agent2, _keep2) = common::agent(&reg, "m2", "", Duration::from_secs(30)).await;
    reg.drain_machine(&machine_id("m2")).await.unwrap();
    let mut raw = common::raw(&etcd).await;
    // The leader's own writes are recorded (below); anyone else's are watched.
    raw.put("/t/view/schedule/m1/zzz.service", "garbage", None)
        .await
        .unwrap();
    let last_watched = raw
        .put("/t/view/job/a.service/target", "sideways", None)
        .await
        .unwrap()
        .header()
        .map_or(0, |h| h.revision());
    // The leader's own writes are recorded, not watched.
    let plan = SchedulePlan {
        place: vec![ScheduleEntry {
            machine: machine_id("m1"),
            unit: b.clone(),
            hash: unit("b").hash(),
            target: TargetState::Launched,
            text: None,
        }],
        unplaced: vec![(a.clone(), "no machine".into())],
        ..SchedulePlan::default()
    };
    let (_, written_at) = leader.apply_at(&plan).await.unwrap();
    view.record(&plan, written_at);

    let fresh = reg.placement_snapshot().await.unwrap();
    catch_up(&mut view, last_watched, &fresh).await;
    let seen = view.snapshot();
    assert_eq!(planning_input(&seen), planning_input(&fresh));
    let units: Vec<_> = seen
        .units
        .iter()
        .map(|u| (u.name.as_str(), u.target))
        .collect();
    assert_eq!(
        units,
        [("b.service", TargetState::Launched)],
        "a is unreadable, c gone"
    );
    assert!(seen.unreadable_units().contains(&a));
    assert_eq!(seen.machines.len(), 2);
    assert!(seen.drained.contains(&machine_id("m2")));
    assert!(
        seen.skipped
            .iter()
            .any(|s| s.key == "/t/view/schedule/m1/zzz.service")
    );
    assert_eq!(seen.schedule.len(), 1, "b on m1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_history_asks_for_a_full_read() {
    let (etcd, reg) = setup("/t/view-compact").await;
    let leader = common::lead(&reg).await;
    let mut view = leader.follow().await.unwrap();
    let n = name("a.service");
    reg.create_unit(&n, &unit("a")).await.unwrap();
    reg.set_targets(&[(n.clone(), TargetState::Launched)])
        .await
        .unwrap();
    let rev = reg.placement_snapshot().await.unwrap().revision;
    common::raw(&etcd).await.compact(rev, None).await.unwrap();
    let err = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Err(e) = view.changed(Duration::ZERO).await {
                break e;
            }
        }
    })
    .await
    .expect("the compaction is reported before the deadline");
    // Events delivered before the compaction may already have been applied; the
    // watch that had not caught up reports it, and a new view reads everything.
    assert!(matches!(err, RegistryError::Compacted { .. }), "{err}");
    let again = leader.follow().await.unwrap();
    assert_eq!(again.snapshot().units.len(), 1);
    assert_eq!(again.snapshot().units[0].target, TargetState::Launched);
}
