//! The engine with namespaces, against a real etcd: two namespaces each run
//! `web@1..3` with `Conflicts=web@*` without seeing each other, and a namespace bound
//! to `team=a` places only on its machines, even when the others are emptier.

mod engine_common;

use std::time::Duration;

use engine_common::*;
use fleet_core::TargetState::Launched;
use fleet_core::{Namespace, Selector};
use fleet_testkit::EtcdServer;

const WAIT: Duration = Duration::from_secs(10);

fn ns(s: &str) -> Namespace {
    Namespace::parse(s).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_schedule_apart_and_on_their_machines() {
    let etcd = EtcdServer::start().unwrap();
    let reg = registry(&etcd).await;
    let ttl = Duration::from_secs(5);
    let _m1 = machine(&reg, "m1", &[("team", "a")], ttl).await;
    let _m2 = machine(&reg, "m2", &[("team", "b")], ttl).await;
    let _m3 = machine(&reg, "m3", &[], ttl).await;
    reg.create_namespace(&ns("a"), &Selector::default())
        .await
        .unwrap();
    reg.create_namespace(&ns("b"), &Selector::default())
        .await
        .unwrap();
    reg.create_namespace(&ns("pinned"), &Selector::parse("team=a").unwrap())
        .await
        .unwrap();
    let engines = vec![TestEngine::start(&etcd, "m1", false).await];
    wait_leader(&engines, WAIT).await;

    for space in ["a", "b"] {
        for i in 1..=3 {
            submit(
                &reg,
                &format!("{space}:web@{i}.service"),
                "Conflicts=web@*",
                Launched,
            )
            .await;
        }
    }
    // The default namespace's web@1 conflicts with nothing of a or b.
    submit(&reg, "web@1.service", "Conflicts=*", Launched).await;
    for i in 1..=3 {
        submit(&reg, &format!("pinned:job{i}.service"), "", Launched).await;
    }
    wait_until("everything placed", WAIT, || async {
        schedule(&reg).await.len() == 10
    })
    .await;
    let s = schedule(&reg).await;
    for space in ["a", "b"] {
        let mut hosts: Vec<&String> = (1..=3)
            .flat_map(|i| &s[&format!("{space}:web@{i}.service")])
            .collect();
        hosts.sort();
        hosts.dedup();
        assert_eq!(hosts.len(), 3, "{space}: Conflicts=web@* within it: {s:?}");
    }
    for i in 1..=3 {
        assert_eq!(s[&format!("pinned:job{i}.service")], ["m1"], "{s:?}");
    }
    assert!(reg.snapshot().await.unwrap().unplaced.is_empty());

    // A fourth conflicting web in `a` has no machine left, whatever b runs.
    submit(&reg, "a:web@4.service", "Conflicts=web@*", Launched).await;
    wait_until("a reason for a:web@4", WAIT, || async {
        reg.snapshot()
            .await
            .unwrap()
            .unplaced
            .get(&name("a:web@4.service"))
            .is_some_and(|w| w.contains("conflicts") && w.contains("a:web@") && !w.contains("b:"))
    })
    .await;
}
