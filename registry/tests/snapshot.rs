//! Machines, states, schedule and the one-revision snapshot against a real etcd.

mod common;

use common::{agent, lead, machine, machine_id, name, setup, unit};
use fleet_core::{SystemdState, TargetState};
use fleet_registry::{RegistryError, ScheduleEntry, SchedulePlan, UnitStateRecord};

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
        text: None,
    }
}

#[tokio::test]
async fn snapshot_is_consistent_and_sorted() {
    let (_etcd, reg) = setup("/t/snap").await;
    let ttl = std::time::Duration::from_secs(30);
    let (m2, _k2) = agent(&reg, "m2", "m2:4002", ttl).await;
    let (m1, _k1) = agent(&reg, "m1", "m1:4002", ttl).await;
    for u in ["b.service", "a.service"] {
        reg.create_unit(&name(u), &unit(u)).await.unwrap();
    }
    lead(&reg)
        .await
        .apply(&SchedulePlan {
            place: vec![placed("m2", "b.service"), placed("m1", "a.service")],
            ..Default::default()
        })
        .await
        .unwrap();
    m2.put_states(&[
        state("b.service", "m2", TargetState::Launched),
        // stale report from a machine the unit moved away from
        state("a.service", "m2", TargetState::Launched),
    ])
    .await
    .unwrap();
    m1.put_states(&[state("a.service", "m1", TargetState::Loaded)])
        .await
        .unwrap();
    // an agent writes only its own states
    let err = m1
        .put_states(&[state("b.service", "m2", TargetState::Loaded)])
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::ForeignMachine { .. }), "{err}");

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
    let (rev, mine) = m1.schedule(0).await.unwrap();
    assert_eq!(mine, vec![placed("m1", "a.service")]);
    assert_eq!(rev, snap.revision);

    // the snapshot is at one revision: a later write moves the revision by one and a
    // watch from snapshot.revision + 1 sees exactly that write
    m2.delete_states(&[name("a.service")]).await.unwrap();
    let later = reg.snapshot().await.unwrap();
    assert_eq!(later.revision, snap.revision + 1);
    let mut w = reg.watch_prefix(reg.keys().prefix(), snap.revision + 1);
    let batch = w.next().await.unwrap();
    assert_eq!(batch.events.len(), 1, "{batch:?}");
}

#[tokio::test]
async fn schedule_writes_are_fenced_on_the_leader_key() {
    let (_etcd, reg) = setup("/t/fence").await;
    let ttl = std::time::Duration::from_secs(30);
    let first_lease = reg.grant_lease(ttl).await.unwrap();
    let first = reg.campaign("engine-1", first_lease).await.unwrap();
    // 200 placements: two fenced txns
    let plan = SchedulePlan {
        place: (0..200)
            .map(|i| placed("m1", &format!("w@{i}.service")))
            .collect(),
        ..Default::default()
    };
    assert_eq!(first.apply(&plan).await.unwrap(), 2);
    assert_eq!(reg.list_schedule().await.unwrap().len(), 200);

    // the first engine's lease ends and another engine wins: its fence no longer holds
    reg.revoke_lease(first_lease).await.unwrap();
    let second = reg
        .campaign("engine-2", reg.grant_lease(ttl).await.unwrap())
        .await
        .unwrap();
    let unplace = SchedulePlan {
        unschedule: vec![(machine_id("m1"), name("w@0.service"))],
        ..Default::default()
    };
    let err = first.apply(&unplace).await.unwrap_err();
    assert!(matches!(err, RegistryError::NotLeader), "{err}");
    assert_eq!(reg.list_schedule().await.unwrap().len(), 200);
    assert_eq!(second.apply(&unplace).await.unwrap(), 1);
    assert_eq!(reg.list_schedule().await.unwrap().len(), 199);
}

/// One undecodable value under each directory of the prefix: the snapshot still reads,
/// holds every good record, and names each bad key once (with the unit it concerns).
#[tokio::test]
async fn corrupt_values_are_skipped_and_named_not_fatal() {
    let p = "/t/skip/";
    let (etcd, reg) = setup(p).await;
    reg.create_unit(&name("good.service"), &unit("good"))
        .await
        .unwrap();
    let (a, _keep) = agent(&reg, "m1", "", std::time::Duration::from_secs(60)).await;
    a.put_states(&[state("good.service", "m1", TargetState::Loaded)])
        .await
        .unwrap();
    let l = lead(&reg).await;
    l.apply(&SchedulePlan {
        place: vec![placed("m1", "good.service")],
        ..SchedulePlan::default()
    })
    .await
    .unwrap();
    let mut c = common::raw(&etcd).await;
    let bad: &[(&str, &str, Option<&str>)] = &[
        ("unit/bad.service", "{not json", Some("bad.service")),
        (
            "unit/text.service",
            r#"{"text":"[Unit]\u0000","hash":"00"}"#,
            Some("text.service"),
        ),
        (
            "unit/nul.service",
            r#"{"text":"a","hash":"zz"}"#,
            Some("nul.service"),
        ),
        ("unit/tgt.service", "", Some("tgt.service")),
        ("job/tgt.service/target", "sideways", Some("tgt.service")),
        (
            "machine/evil",
            r#"{"id":"evil","public_ip":"-oProxyCommand=touch pwned"}"#,
            None,
        ),
        ("machine/liar", r#"{"id":"other"}"#, None),
        (
            "machine/esc",
            r#"{"id":"esc","public_ip":"10.0.0.9","metadata":{"region":"eu\u001b[2J"}}"#,
            None,
        ),
        ("machine/m1/metadata/rack", "r1\u{1b}]0;title\u{7}", None),
        ("machine/m1/bogus", "x", None),
        ("schedule/m1/s.service", "[]", Some("s.service")),
        (
            "machine-state/m1/st.service",
            r#"{"hash":"x","state":"loaded"}"#,
            Some("st.service"),
        ),
        ("unit/bad name", "{}", None),
    ];
    for (k, v, _) in bad {
        c.put(format!("{p}{k}"), *v, None).await.unwrap();
    }
    // Not UTF-8 (values a tool other than fleet may write).
    for k in ["job/x.service/target", "machine/m1/metadata/disk"] {
        c.put(format!("{p}{k}").into_bytes(), vec![0xff, 0xfe], None)
            .await
            .unwrap();
    }
    for snap in [reg.snapshot().await.unwrap(), l.snapshot().await.unwrap()] {
        let units: Vec<_> = snap.units.iter().map(|u| u.name.to_string()).collect();
        assert_eq!(units, ["good.service"]);
        let machines: Vec<_> = snap
            .machines
            .iter()
            .map(|m| m.machine.id.to_string())
            .collect();
        assert_eq!(machines, ["m1"]);
        assert_eq!(snap.schedule, [placed("m1", "good.service")]);
        let mut want: Vec<(String, Option<String>)> = bad
            .iter()
            .map(|(k, _, u)| (format!("{p}{k}"), u.map(str::to_string)))
            .collect();
        // The job key of a unit that does not exist is skipped too.
        want.push((format!("{p}job/x.service/target"), Some("x.service".into())));
        want.push((format!("{p}machine/m1/metadata/disk"), None));
        // The placement snapshot reads no states.
        if snap.states.is_empty() {
            want.retain(|(k, _)| !k.contains("/machine-state/"));
        } else {
            assert_eq!(snap.states.len(), 1);
        }
        want.sort();
        let got: Vec<(String, Option<String>)> = snap
            .skipped
            .iter()
            .map(|s| (s.key.clone(), s.unit.as_ref().map(|u| u.to_string())))
            .collect();
        assert_eq!(got, want);
        assert!(
            snap.skipped
                .iter()
                .all(|s| s.revision > 0 && !s.reason.is_empty())
        );
        let evil = snap
            .skipped
            .iter()
            .find(|s| s.key.ends_with("evil"))
            .unwrap();
        assert!(
            evil.reason.contains("is not an IP address"),
            "{}",
            evil.reason
        );
    }
    // The machine lists say which records they left out.
    let listed = reg.list_machines_checked().await.unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.skipped.len(), 6, "{:?}", listed.skipped);
    drop(etcd);
}
