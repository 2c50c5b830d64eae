//! Watches: typed events, resuming without loss, compaction.

mod common;

use std::time::Duration;

use common::{name, setup, unit};
use fleet_core::TargetState;
use fleet_registry::{Change, RegistryError, RegistryKey, RegistryWatch, WatchEvent};

/// Collects events until `n` arrived, under a deadline.
async fn collect(w: &mut RegistryWatch, n: usize) -> Vec<WatchEvent> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while out.len() < n {
        match tokio::time::timeout_at(deadline, w.next()).await {
            Err(_) => panic!(
                "only {} of {n} events before the deadline: {out:?}",
                out.len()
            ),
            Ok(Ok(b)) => out.extend(b.events),
            // unavailable while etcd restarts: keep trying (bounded by the deadline)
            Ok(Err(e)) if e.is_unavailable() => {}
            Ok(Err(e)) => panic!("watch failed: {e}"),
        }
    }
    out
}

fn target_events(events: &[WatchEvent]) -> Vec<(String, TargetState)> {
    events
        .iter()
        .filter_map(|e| match e {
            WatchEvent::Put {
                key: RegistryKey::JobTarget(n),
                change: Change::Target(t),
                ..
            } => Some((n.to_string(), *t)),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn typed_events_and_resume_from_a_revision() {
    let (_etcd, reg) = setup("/t/watch").await;
    let start = reg.snapshot().await.unwrap().revision;
    let n = name("a.service");
    reg.create_unit(&n, &unit("a")).await.unwrap();

    let mut w = reg.watch_prefix(reg.keys().jobs(), start + 1);
    let ev = collect(&mut w, 1).await;
    assert_eq!(
        target_events(&ev),
        [("a.service".into(), TargetState::Inactive)]
    );

    // drop the watch; writes made meanwhile are delivered to a watch resumed from
    // where the first one stopped
    let resume_at = w.next_revision();
    drop(w);
    reg.set_targets(&[(n.clone(), TargetState::Loaded)])
        .await
        .unwrap();
    reg.set_targets(&[(n.clone(), TargetState::Launched)])
        .await
        .unwrap();
    let mut w = reg.watch_prefix(reg.keys().jobs(), resume_at);
    let ev = collect(&mut w, 2).await;
    assert_eq!(
        target_events(&ev),
        [
            ("a.service".into(), TargetState::Loaded),
            ("a.service".into(), TargetState::Launched)
        ]
    );

    reg.destroy_unit(&n).await.unwrap();
    let ev = collect(&mut w, 1).await;
    assert!(
        matches!(&ev[0], WatchEvent::Delete { key: RegistryKey::JobTarget(d), .. } if d == &n),
        "{ev:?}"
    );
}

#[tokio::test]
async fn watch_survives_an_etcd_restart_without_losing_events() {
    let (mut etcd, reg) = setup("/t/restart").await;
    let names: Vec<_> = (0..6).map(|i| name(&format!("u{i}.service"))).collect();
    let start = reg.snapshot().await.unwrap().revision + 1;
    let mut w = reg.watch_prefix(reg.keys().units(), start);
    reg.create_unit(&names[0], &unit("0")).await.unwrap();
    assert_eq!(collect(&mut w, 1).await.len(), 1);

    etcd.restart().expect("etcd restarts");
    for n in &names[1..] {
        // the first calls after the restart may find the connection still broken
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match reg.create_unit(n, &unit(n.as_str())).await {
                Ok(_) => break,
                Err(e) if e.is_unavailable() && tokio::time::Instant::now() < deadline => {}
                Err(e) => panic!("{e}"),
            }
        }
    }
    let ev = collect(&mut w, 5).await;
    let got: Vec<_> = ev
        .iter()
        .map(|e| match e {
            WatchEvent::Put {
                key: RegistryKey::Unit(n),
                ..
            } => n.clone(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(got, names[1..]);
}

#[tokio::test]
async fn compacted_history_tells_the_caller_to_relist() {
    let (etcd, reg) = setup("/t/compact").await;
    let n = name("a.service");
    reg.create_unit(&n, &unit("a")).await.unwrap();
    for t in [
        TargetState::Loaded,
        TargetState::Launched,
        TargetState::Inactive,
    ] {
        reg.set_targets(&[(n.clone(), t)]).await.unwrap();
    }
    let rev = reg.snapshot().await.unwrap().revision;
    let mut c = common::raw(&etcd).await;
    c.compact(rev, None).await.unwrap();
    let mut w = reg.watch_prefix(reg.keys().prefix(), 2);
    let err = w.next().await.unwrap_err();
    assert!(
        matches!(err, RegistryError::Compacted { compact_revision } if compact_revision == rev),
        "{err}"
    );
    // permanent for this watch
    assert!(matches!(
        w.next().await,
        Err(RegistryError::Compacted { .. })
    ));
}

/// A watch that starts behind gets many revisions in one response: more than gRPC's
/// 4 MiB default once units are large. It must still deliver them, not fail (the
/// engine would re-read the whole cluster after each such failure).
#[tokio::test]
async fn a_watch_catching_up_on_more_than_4_mib_gets_every_event() {
    let (_etcd, reg) = setup("/t/watch-big").await;
    let start = reg.snapshot().await.unwrap().revision;
    let lines: String = (0..900)
        .map(|i| format!("Environment=V{i}={}\n", "x".repeat(990)))
        .collect();
    let big =
        fleet_core::UnitFile::parse(&format!("[Service]\nExecStart=/bin/true\n{lines}")).unwrap();
    for i in 0..6 {
        reg.create_unit(&name(&format!("big{i}.service")), &big)
            .await
            .unwrap();
    }
    let mut w = reg.watch_prefix(reg.keys().units(), start + 1);
    let events = collect(&mut w, 6).await;
    let units = events
        .iter()
        .filter(|e| {
            matches!(
                e,
                WatchEvent::Put {
                    key: RegistryKey::Unit(_),
                    ..
                }
            )
        })
        .count();
    assert_eq!(units, 6);
}
