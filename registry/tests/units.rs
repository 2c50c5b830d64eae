//! Units and targets against a real etcd.

mod common;

use common::{name, setup, unit};
use fleet_core::TargetState;
use fleet_registry::CreateOutcome;

#[tokio::test]
async fn create_only_semantics() {
    let (_etcd, reg) = setup("/t/create").await;
    let n = name("web.service");
    let a = unit("sleep 1");
    let b = unit("sleep 2");

    assert_eq!(
        reg.create_unit(&n, &a).await.unwrap(),
        CreateOutcome::Created
    );
    // the same content again: nothing to do
    assert_eq!(
        reg.create_unit(&n, &a).await.unwrap(),
        CreateOutcome::Identical
    );
    // other content: refused, the registry's copy is kept
    assert_eq!(
        reg.create_unit(&n, &b).await.unwrap(),
        CreateOutcome::Differs { existing: a.hash() }
    );
    let got = reg.get_unit(&n).await.unwrap().expect("unit exists");
    assert_eq!(got.file, a);
    assert_eq!(got.hash, a.hash());
    assert_eq!(got.target, TargetState::Inactive);
    assert!(
        reg.get_unit(&name("other.service"))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn replace_overwrites_and_resets_target() {
    let (_etcd, reg) = setup("/t/replace").await;
    let n = name("web.service");
    reg.create_unit(&n, &unit("a")).await.unwrap();
    reg.set_targets(&[(n.clone(), TargetState::Launched)])
        .await
        .unwrap();
    reg.replace_unit(&n, &unit("b")).await.unwrap();
    let got = reg.get_unit(&n).await.unwrap().unwrap();
    assert_eq!(got.file, unit("b"));
    assert_eq!(got.hash, unit("b").hash());
    assert_eq!(got.target, TargetState::Inactive);
}

#[tokio::test]
async fn set_targets_batches_and_reports_missing() {
    let (_etcd, reg) = setup("/t/targets").await;
    let names: Vec<_> = (0..300)
        .map(|i| name(&format!("w@{i:03}.service")))
        .collect();
    for n in &names {
        reg.create_unit(n, &unit("x")).await.unwrap();
    }
    let mut req: Vec<_> = names
        .iter()
        .map(|n| (n.clone(), TargetState::Launched))
        .collect();
    req.push((name("ghost.service"), TargetState::Launched));

    let before = reg.snapshot().await.unwrap().revision;
    let out = reg.set_targets(&req).await.unwrap();
    let after = reg.snapshot().await.unwrap().revision;
    // 301 guarded ops in ⌈301/127⌉ = 3 txns; each txn is one etcd revision.
    assert_eq!(out.txns, Some(3));
    assert_eq!(after - before, 3);
    assert_eq!(out.missing, vec![name("ghost.service")]);

    let units = reg.list_units().await.unwrap();
    assert_eq!(units.len(), 300);
    assert!(units.iter().all(|u| u.target == TargetState::Launched));
    // no orphan target for the unit that does not exist
    assert!(
        reg.get_unit(&name("ghost.service"))
            .await
            .unwrap()
            .is_none()
    );
    let snap = reg.snapshot().await.unwrap();
    assert_eq!(snap.units.len(), 300);
}

#[tokio::test]
async fn destroy_removes_unit_and_target_and_leaves_unplaced_to_the_engine() {
    let (_etcd, reg) = setup("/t/destroy").await;
    let n = name("web.service");
    reg.create_unit(&n, &unit("a")).await.unwrap();
    common::lead(&reg)
        .await
        .apply(&fleet_registry::SchedulePlan {
            unplaced: vec![(n.clone(), "no machine has region=mars".into())],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(reg.snapshot().await.unwrap().unplaced.len(), 1);

    assert!(reg.destroy_unit(&n).await.unwrap());
    assert!(!reg.destroy_unit(&n).await.unwrap());
    assert!(reg.get_unit(&n).await.unwrap().is_none());
    let snap = reg.snapshot().await.unwrap();
    // only the engine (fenced) removes the unplaced note, on its next pass
    assert!(snap.units.is_empty() && snap.unplaced.len() == 1);
    // and a new unit of that name can be created with other content
    assert_eq!(
        reg.create_unit(&n, &unit("b")).await.unwrap(),
        CreateOutcome::Created
    );
}

#[tokio::test]
async fn list_units_sorted_and_prefixes_isolated() {
    let (etcd, reg) = setup("/t/list").await;
    for n in ["c.service", "a.service", "b@1.service", "b@.service"] {
        reg.create_unit(&name(n), &unit(n)).await.unwrap();
    }
    let listed: Vec<String> = reg
        .list_units()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.name.to_string())
        .collect();
    assert_eq!(
        listed,
        ["a.service", "b@.service", "b@1.service", "c.service"]
    );
    // another prefix on the same etcd sees nothing
    let other = common::registry(&etcd, "/t/list-other/").await;
    assert!(other.list_units().await.unwrap().is_empty());
}

#[tokio::test]
async fn corrupt_value_is_skipped_in_lists_and_an_error_naming_the_key_when_asked_for() {
    let (etcd, reg) = setup("/t/corrupt").await;
    reg.create_unit(&name("good.service"), &unit("good"))
        .await
        .unwrap();
    let mut c = common::raw(&etcd).await;
    c.put("/t/corrupt/unit/bad.service", "{not json", None)
        .await
        .unwrap();
    let listed: Vec<String> = reg
        .list_units()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.name.to_string())
        .collect();
    assert_eq!(listed, ["good.service"]);
    let err = reg
        .get_unit(&name("bad.service"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("/t/corrupt/unit/bad.service"), "{err}");
    assert!(reg.get_unit(&name("good.service")).await.unwrap().is_some());
    drop(etcd);
}

#[tokio::test]
async fn batched_get_and_create_take_few_txns() {
    let etcd = fleet_testkit::EtcdServer::start().expect("etcd");
    let reg =
        fleet_registry::Registry::connect(fleet_registry::RegistryConfig::new(etcd.client_url()))
            .await
            .expect("connect");
    let file = |i: usize| {
        fleet_core::UnitFile::parse(&format!("[Service]\nExecStart=/bin/sleep {i}\n")).unwrap()
    };
    let name = |i: usize| fleet_core::UnitName::parse(&format!("u{i:03}.service")).unwrap();
    // One unit exists already with other content, one with the same content.
    reg.create_unit(&name(0), &file(999)).await.unwrap();
    reg.create_unit(&name(1), &file(1)).await.unwrap();
    let before = reg.snapshot().await.unwrap().revision;
    let mut units: Vec<_> = (0..150).map(|i| (name(i), file(i))).collect();
    units.push((name(5), file(5))); // a duplicate is created once
    let outcomes = reg.create_units(&units).await.unwrap();
    let after = reg.snapshot().await.unwrap().revision;
    use fleet_registry::CreateOutcome;
    assert!(matches!(outcomes[0], CreateOutcome::Differs { .. }));
    assert_eq!(outcomes[1], CreateOutcome::Identical);
    assert!(
        outcomes[2..150]
            .iter()
            .all(|o| *o == CreateOutcome::Created)
    );
    assert_eq!(outcomes[150], CreateOutcome::Created);
    // 148 new units in ⌈149 / 63⌉ = 3 write txns.
    assert_eq!(
        after - before,
        3,
        "create_units used {} txns",
        after - before
    );
    let names: Vec<_> = (0..200).map(name).collect();
    let got = reg.get_units(&names).await.unwrap();
    assert_eq!(got.len(), 200);
    assert!(got[..150].iter().all(Option::is_some) && got[150..].iter().all(Option::is_none));
    assert_eq!(got[0].as_ref().unwrap().hash, file(999).hash());
    assert_eq!(
        got[7].as_ref().unwrap().target,
        fleet_core::TargetState::Inactive
    );
}

/// The 1 MiB limit is on the stored value: a text under 1 MiB whose JSON escaping takes
/// it over is refused by name before anything is written, alone or in a batch.
#[tokio::test]
async fn a_unit_too_large_once_encoded_is_refused_before_writing() {
    let (etcd, reg) = setup("/t/toolarge").await;
    // 700 KiB of `"` and `\`: under the text limit, ~1.4 MiB once escaped.
    let mut text = String::from("[Service]\nExecStart=/bin/true\n");
    for i in 0..360 {
        text.push_str(&format!("Environment=V{i}={}x\n", "\"\\".repeat(995)));
    }
    assert!(text.len() < fleet_core::unit::file::MAX_UNIT_SIZE);
    let big = fleet_core::UnitFile::parse(&text).unwrap();
    let err = reg
        .create_units(&[
            (name("small.service"), unit("small")),
            (name("big.service"), big.clone()),
        ])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, fleet_registry::RegistryError::UnitTooLarge { unit, size, max }
            if unit.as_str() == "big.service" && *size > *max && *max == 1024 * 1024),
        "{err}"
    );
    assert_eq!(err.to_string().lines().count(), 1, "one line: {err}");
    assert!(
        reg.list_units().await.unwrap().is_empty(),
        "nothing written"
    );
    let err = reg
        .replace_unit(&name("big.service"), &big)
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        fleet_registry::RegistryError::UnitTooLarge { .. }
    ));
    assert!(
        reg.list_units().await.unwrap().is_empty(),
        "nothing written"
    );
    drop(etcd);
}

/// The agent reads the units placed on it in one batch: a corrupt one is `None` (not
/// loaded, named in a warning), the others are read; fleetctl's batch read names it.
#[tokio::test]
async fn a_corrupt_unit_does_not_hold_up_the_agents_batch() {
    let (etcd, reg) = setup("/t/agentbatch").await;
    reg.create_unit(&name("good.service"), &unit("good"))
        .await
        .unwrap();
    let mut c = common::raw(&etcd).await;
    c.put("/t/agentbatch/unit/bad.service", "{not json", None)
        .await
        .unwrap();
    let (agent, _keep) = common::agent(&reg, "m1", "", std::time::Duration::from_secs(60)).await;
    let names = [
        name("good.service"),
        name("bad.service"),
        name("gone.service"),
    ];
    let got = agent.units(&names).await.unwrap();
    assert_eq!(
        got.iter().map(Option::is_some).collect::<Vec<_>>(),
        [true, false, false]
    );
    let err = reg.get_units(&names).await.unwrap_err().to_string();
    assert!(err.contains("/t/agentbatch/unit/bad.service"), "{err}");
    drop(etcd);
}

/// A whole-prefix read larger than one page (5,000 keys) returns every key once, in
/// order, with its target: the pages continue from the last key at one revision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_units_reads_past_one_page() {
    let (_etcd, reg) = setup("/t/pages").await;
    let units: Vec<_> = (0..11_001)
        .map(|i| {
            (
                name(&format!("u{i:05}.service")),
                unit(&format!("sleep {i}")),
            )
        })
        .collect();
    let (launched, loaded) = units.split_at(6_000);
    reg.create_units_with_target(launched, TargetState::Launched)
        .await
        .unwrap();
    reg.create_units(loaded).await.unwrap();

    let got = reg.list_units().await.unwrap();
    assert_eq!(got.len(), units.len());
    for (i, (g, (n, f))) in got.iter().zip(&units).enumerate() {
        assert_eq!(&g.name, n);
        assert_eq!(&g.file, f);
        let want = if i < 6_000 {
            TargetState::Launched
        } else {
            TargetState::Inactive
        };
        assert_eq!(g.target, want, "{n}");
    }
    let snap = reg.snapshot().await.unwrap();
    assert_eq!(snap.units.len(), units.len());
}
