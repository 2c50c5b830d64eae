//! Blocking waits on a unit's state, driven by watches.

mod common;

use std::time::Duration;

use common::{machine_id, name, setup, unit};
use fleet_core::{SystemdState, TargetState};
use fleet_registry::{RegistryError, ScheduleEntry, SchedulePlan, UnitStateRecord};

#[tokio::test]
async fn wait_until_launched_then_timeout() {
    let (_etcd, reg) = setup("/t/wait").await;
    let n = name("a.service");
    let file = unit("a");
    reg.create_unit(&n, &file).await.unwrap();

    // an "engine" and an "agent" acting after the wait has begun
    let actor = reg.clone();
    let (n2, hash) = (n.clone(), file.hash());
    let act = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let plan = SchedulePlan {
            place: vec![ScheduleEntry {
                machine: machine_id("m1"),
                unit: n2.clone(),
                hash,
                target: TargetState::Launched,
            }],
            ..Default::default()
        };
        actor.apply_schedule(&plan, None).await.unwrap();
        let lease = actor.grant_lease(Duration::from_secs(30)).await.unwrap();
        for state in [TargetState::Loaded, TargetState::Launched] {
            let rec = UnitStateRecord {
                unit: n2.clone(),
                machine: machine_id("m1"),
                hash,
                state,
                systemd: SystemdState::default(),
            };
            actor.put_states(&[rec], lease).await.unwrap();
        }
    });
    let view = reg
        .wait_for_unit(&n, Duration::from_secs(10), |v| {
            v.current_state() == TargetState::Launched
        })
        .await
        .unwrap();
    act.await.unwrap();
    assert_eq!(view.scheduled_on, Some(machine_id("m1")));
    assert!(view.exists());

    // a condition that never holds gives up at the deadline
    let t = std::time::Instant::now();
    let err = reg
        .wait_for_unit(&n, Duration::from_millis(500), |v| !v.exists())
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::WaitTimeout { .. }), "{err}");
    assert!(t.elapsed() < Duration::from_secs(2));
}
