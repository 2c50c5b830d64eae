//! The engine against a real etcd, with several engines in one process.

mod engine_common;

use std::time::{Duration, Instant};

use engine_common::*;
use fleet_core::TargetState::{Inactive, Launched, Loaded};
use fleet_registry::{RegistryError, SchedulePlan};
use fleet_testkit::EtcdServer;
use fleetd::engine::Role;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placements_respect_the_rules_and_follow_changes() {
    let etcd = EtcdServer::start().unwrap();
    let reg = registry(&etcd).await;
    let ttl = Duration::from_secs(5);
    let _m1 = machine(&reg, "m1", &[("role", "db")], ttl).await;
    let _m2 = machine(&reg, "m2", &[("role", "web")], ttl).await;
    let _m3 = machine(&reg, "m3", &[("role", "web")], ttl).await;
    let engines = vec![
        TestEngine::start(&etcd, "m1", false).await,
        TestEngine::start(&etcd, "m2", false).await,
    ];
    wait_leader(&engines, WAIT).await;

    submit(&reg, "db.service", "MachineMetadata=role=db", Launched).await;
    submit(&reg, "side.service", "MachineOf=db.service", Launched).await;
    for i in 1..=4 {
        submit(
            &reg,
            &format!("solo@{i}.service"),
            "Conflicts=solo@*",
            Launched,
        )
        .await;
    }
    submit(&reg, "everywhere.service", "Global=true", Loaded).await;
    submit(&reg, "pinned.service", "MachineID=m3", Launched).await;
    submit(&reg, "tmpl@.service", "", Launched).await;
    submit(&reg, "idle.service", "", Inactive).await;

    wait_until("all placements and reasons", WAIT, || async {
        let s = schedule(&reg).await;
        s.len() == 7
            && s.get("everywhere.service").is_some_and(|m| m.len() == 3)
            && reg.snapshot().await.unwrap().unplaced.len() == 2
    })
    .await;
    let s = schedule(&reg).await;
    assert_eq!(s["db.service"], ["m1"], "metadata respected");
    assert_eq!(s["side.service"], ["m1"], "MachineOf follows its target");
    assert_eq!(s["pinned.service"], ["m3"], "MachineID respected");
    assert_eq!(
        s["everywhere.service"],
        ["m1", "m2", "m3"],
        "global on every machine"
    );
    let mut solo_hosts: Vec<&String> = (1..=4)
        .filter_map(|i| s.get(&format!("solo@{i}.service")))
        .flatten()
        .collect();
    assert_eq!(
        solo_hosts.len(),
        3,
        "three machines take three conflicting units"
    );
    solo_hosts.sort();
    solo_hosts.dedup();
    assert_eq!(solo_hosts.len(), 3, "Conflicts respected");
    assert!(
        !s.contains_key("tmpl@.service"),
        "templates are never placed"
    );
    assert!(
        !s.contains_key("idle.service"),
        "inactive units are not placed"
    );
    let snap = reg.snapshot().await.unwrap();
    // Users learn why: the left-out conflicting unit and the started template.
    assert_eq!(snap.unplaced.len(), 2, "{:?}", snap.unplaced);
    assert!(snap.unplaced[&name("tmpl@.service")].contains("template"));
    let (left_out, why) = snap
        .unplaced
        .iter()
        .find(|(u, _)| u.as_str().starts_with("solo@"))
        .unwrap();
    assert!(why.contains("conflicts"), "{why}");
    // Schedule entries carry the unit's hash and target.
    let e = snap
        .schedule
        .iter()
        .find(|e| e.unit.as_str() == "everywhere.service")
        .unwrap();
    assert_eq!(e.target, Loaded);

    // Stop a placed solo: its machine frees up, the left-out one takes it, its note goes.
    let placed_solo = (1..=4)
        .map(|i| format!("solo@{i}.service"))
        .find(|u| s.contains_key(u))
        .unwrap();
    reg.set_targets(&[(name(&placed_solo), Inactive)])
        .await
        .unwrap();
    let left_out = left_out.to_string();
    wait_until("the left-out unit placed", WAIT, || async {
        let s = schedule(&reg).await;
        !s.contains_key(&placed_solo) && s.contains_key(&left_out)
    })
    .await;
    wait_until("its unplaced note cleared", WAIT, || async {
        reg.snapshot().await.unwrap().unplaced.len() == 1
    })
    .await;

    // Destroy removes the schedule entry; the follower of a destroyed unit is unplaced.
    reg.destroy_unit(&name("db.service")).await.unwrap();
    wait_until("db and its follower unscheduled", WAIT, || async {
        let s = schedule(&reg).await;
        !s.contains_key("db.service") && !s.contains_key("side.service")
    })
    .await;
    wait_until("a reason for the follower", WAIT, || async {
        reg.snapshot()
            .await
            .unwrap()
            .unplaced
            .contains_key(&name("side.service"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_engine_never_leads() {
    let etcd = EtcdServer::start().unwrap();
    let reg = registry(&etcd).await;
    let mut engines = vec![
        TestEngine::start(&etcd, "off", true).await,
        TestEngine::start(&etcd, "on", false).await,
    ];
    assert_eq!(wait_leader(&engines, WAIT).await, 1);
    assert_eq!(engines[0].status().borrow().role, Role::Disabled);
    engines[1].stop().await;
    // Nobody campaigns any more: the election is empty and stays so.
    let (_, leader) = reg.current_leader().await.unwrap();
    assert_eq!(leader, None);
    let _m = machine(&reg, "m1", &[], Duration::from_secs(5)).await;
    submit(&reg, "a.service", "", Launched).await;
    let (_, leader) = reg.current_leader().await.unwrap();
    assert_eq!(leader, None);
    assert_eq!(engines[0].status().borrow().role, Role::Disabled);
    assert!(reg.list_schedule().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stop_hands_over_at_once() {
    let etcd = EtcdServer::start().unwrap();
    let reg = registry(&etcd).await;
    let _m = machine(&reg, "m1", &[], Duration::from_secs(5)).await;
    let mut engines = vec![
        TestEngine::start(&etcd, "e1", false).await,
        TestEngine::start(&etcd, "e2", false).await,
    ];
    let first = wait_leader(&engines, WAIT).await;
    let other = 1 - first;
    wait_until("the follower sees the leader", WAIT, || async {
        engines[other].status().borrow().leader.as_deref() == Some(engines[first].id.as_str())
    })
    .await;
    let start = Instant::now();
    engines[first].stop().await;
    let mut st = engines[other].status();
    tokio::time::timeout(WAIT, st.wait_for(|s| s.is_leader() && s.passes > 0))
        .await
        .unwrap()
        .unwrap();
    let took = start.elapsed();
    println!("graceful handover took {took:?}");
    // Resigning hands over without waiting for the lease TTL.
    assert!(took < Duration::from_millis(900), "handover took {took:?}");
    submit(&reg, "a.service", "", Launched).await;
    wait_until("placed by the new leader", WAIT, || async {
        schedule(&reg).await.contains_key("a.service")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_leaders_write_is_refused() {
    let etcd = EtcdServer::start().unwrap();
    let reg = registry(&etcd).await;
    let _m = machine(&reg, "m1", &[], Duration::from_secs(5)).await;
    let mut engines = vec![
        TestEngine::start(&etcd, "e1", false).await,
        TestEngine::start(&etcd, "e2", false).await,
    ];
    let first = wait_leader(&engines, WAIT).await;
    let old = engines[first].status().borrow().leadership.clone().unwrap();
    engines[first].kill();
    let other = 1 - first;
    let mut st = engines[other].status();
    tokio::time::timeout(WAIT, st.wait_for(|s| s.is_leader()))
        .await
        .unwrap()
        .unwrap();
    // The old leader (say, paused in a GC or partitioned) tries to place a unit.
    let plan = SchedulePlan {
        unplaced: vec![(name("x.service"), "stale".into())],
        ..Default::default()
    };
    let err = old.apply(&plan).await.unwrap_err();
    assert!(matches!(err, RegistryError::NotLeader), "{err}");
    assert!(reg.snapshot().await.unwrap().unplaced.is_empty());
    // The new leader's own fence works.
    let new = engines[other].status().borrow().leadership.clone().unwrap();
    assert_ne!(new.revision(), old.revision());
    new.apply(&SchedulePlan::default()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_machine_s_units_are_replaced_within_a_second() {
    let etcd = EtcdServer::start().unwrap();
    let reg = registry(&etcd).await;
    let doomed = machine(&reg, "m1", &[], Duration::from_secs(1)).await;
    let _m2 = machine(&reg, "m2", &[], Duration::from_secs(10)).await;
    let _m3 = machine(&reg, "m3", &[], Duration::from_secs(10)).await;
    let engines = vec![
        TestEngine::start(&etcd, "e1", false).await,
        TestEngine::start(&etcd, "e2", false).await,
    ];
    wait_leader(&engines, WAIT).await;
    for i in 0..30 {
        submit(&reg, &format!("w{i}.service"), "", Launched).await;
    }
    wait_until("30 placements", WAIT, || async {
        schedule(&reg).await.len() == 30
    })
    .await;
    let on_m1: Vec<String> = schedule(&reg)
        .await
        .into_iter()
        .filter(|(_, m)| m == &["m1"])
        .map(|(u, _)| u)
        .collect();
    assert_eq!(on_m1.len(), 10, "least-loaded spreads evenly");

    // Watch everything from now: the machine key's deletion and the re-placements
    // arrive on one stream, so their spacing is measured on one clock.
    let rev = reg.snapshot().await.unwrap().revision;
    let mut w = reg.watch_prefix(PREFIX, rev + 1);
    drop(doomed);
    let mut expired_at = None;
    let mut moved = std::collections::BTreeSet::new();
    let deadline = Instant::now() + WAIT;
    while moved.len() < on_m1.len() {
        let batch = tokio::time::timeout_at(deadline.into(), w.next())
            .await
            .expect("re-placement in time")
            .unwrap();
        for ev in batch.events {
            match ev {
                fleet_registry::WatchEvent::Delete {
                    key: fleet_registry::RegistryKey::Machine(m),
                    ..
                } if m.as_str() == "m1" => expired_at = Some(Instant::now()),
                fleet_registry::WatchEvent::Put {
                    change: fleet_registry::Change::Schedule(e),
                    ..
                } if on_m1.contains(&e.unit.to_string()) => {
                    assert_ne!(e.machine.as_str(), "m1");
                    moved.insert(e.unit.to_string());
                }
                _ => {}
            }
        }
    }
    let took = expired_at.expect("machine expired first").elapsed();
    println!(
        "re-placed {} units {took:?} after the machine key expired",
        moved.len()
    );
    assert!(took < Duration::from_secs(1), "re-placement took {took:?}");
    let s = schedule(&reg).await;
    assert_eq!(s.len(), 30);
    assert!(s.values().all(|m| m.len() == 1 && m[0] != "m1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engines_ride_out_an_etcd_restart() {
    let mut etcd = EtcdServer::start().unwrap();
    let reg = registry(&etcd).await;
    let _m = machine(&reg, "m1", &[], Duration::from_secs(30)).await;
    let engines = vec![
        TestEngine::start(&etcd, "e1", false).await,
        TestEngine::start(&etcd, "e2", false).await,
    ];
    wait_leader(&engines, WAIT).await;
    submit(&reg, "before.service", "", Launched).await;
    wait_until("placed before the restart", WAIT, || async {
        schedule(&reg).await.contains_key("before.service")
    })
    .await;
    tokio::task::block_in_place(|| etcd.restart()).unwrap();
    // Nobody exits on a transient error: some engine leads again and acts.
    submit(&reg, "after.service", "", Launched).await;
    wait_until(
        "placed after the restart",
        Duration::from_secs(20),
        || async {
            reg.list_schedule()
                .await
                .is_ok_and(|s| s.iter().any(|e| e.unit.as_str() == "after.service"))
        },
    )
    .await;
    assert!(engines.iter().all(|e| e.handle.is_some()));
    let s = schedule(&reg).await;
    assert_eq!(s.len(), 2);
    assert!(s.values().all(|m| m.len() == 1));
}

/// The engine's warnings, as fleetd's log would show them: a subscriber for the whole
/// test process (engine tasks run on the runtime's threads), installed once.
fn captured_warnings() -> std::sync::Arc<std::sync::Mutex<Vec<u8>>> {
    static LOG: std::sync::OnceLock<std::sync::Arc<std::sync::Mutex<Vec<u8>>>> =
        std::sync::OnceLock::new();
    LOG.get_or_init(|| {
        let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = buf.clone();
        let writer = move || Sink(sink.clone());
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(writer)
            .init();
        buf
    })
    .clone()
}

struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One corrupt value under each of `unit/`, `job/`, `machine/` and `schedule/` does not
/// stop the engine: it keeps placing the other units, leaves the unreadable unit's
/// placement where it was, rewrites a placement whose value was corrupt, and logs each
/// skipped key once, by name (not once per pass).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_records_are_skipped_and_the_rest_is_placed() {
    let log = captured_warnings();
    let etcd = EtcdServer::start().unwrap();
    let reg = registry(&etcd).await;
    let ttl = Duration::from_secs(5);
    let _m1 = machine(&reg, "m1", &[], ttl).await;
    let engines = vec![TestEngine::start(&etcd, "m1", false).await];
    wait_leader(&engines, WAIT).await;
    submit(&reg, "bad.service", "", Launched).await;
    submit(&reg, "sched.service", "", Launched).await;
    wait_until("both placed", WAIT, || async {
        schedule(&reg).await.len() == 2
    })
    .await;

    let mut raw = etcd_client::Client::connect([etcd.client_url()], None)
        .await
        .unwrap();
    for (k, v) in [
        ("unit/bad.service", "{not json"),
        ("job/worse.service/target", "sideways"),
        ("unit/worse.service", "{}"),
        (
            "machine/evil",
            r#"{"id":"evil","public_ip":"-oProxyCommand=x"}"#,
        ),
        ("schedule/m1/sched.service", "garbage"),
    ] {
        raw.put(format!("{PREFIX}{k}"), v, None).await.unwrap();
    }
    submit(&reg, "new.service", "", Launched).await;
    wait_until(
        "new unit placed, corrupt placement rewritten",
        WAIT,
        || async {
            let s = schedule(&reg).await;
            s.get("new.service").is_some_and(|m| m == &["m1"])
                && s.get("sched.service").is_some_and(|m| m == &["m1"])
        },
    )
    .await;
    // The unreadable unit stays where it ran; no pass failed meanwhile.
    assert_eq!(schedule(&reg).await["bad.service"], ["m1"]);
    let snap = reg.snapshot().await.unwrap();
    let skipped: Vec<&str> = snap.skipped.iter().map(|s| s.key.as_str()).collect();
    assert_eq!(
        skipped,
        [
            format!("{PREFIX}job/worse.service/target"),
            format!("{PREFIX}machine/evil"),
            format!("{PREFIX}unit/bad.service"),
            format!("{PREFIX}unit/worse.service"),
        ]
    );
    let status = engines[0].status().borrow().clone();
    assert!(status.passes > 0);
    // Later passes log nothing new: two more units, each placed by a pass of its own.
    for more in ["more1.service", "more2.service"] {
        submit(&reg, more, "", Launched).await;
        wait_until("placed past the corrupt records", WAIT, || async {
            schedule(&reg).await.contains_key(more)
        })
        .await;
    }
    let log = String::from_utf8_lossy(&log.lock().unwrap_or_else(|p| p.into_inner())).into_owned();
    for key in skipped {
        let said = format!("skipped corrupt registry value at {key}: ");
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(&said)).collect();
        assert_eq!(lines.len(), 1, "{key}:\n{log}");
        assert!(lines[0].contains("WARN"), "{}", lines[0]);
    }
    assert!(
        log.lines()
            .any(|l| l.contains(&format!("{PREFIX}unit/bad.service: "))
                && l.contains("neither placed nor moved until it is fixed or destroyed")),
        "{log}"
    );
    assert!(!log.contains("engine pass failed"), "{log}");
    drop(engines);
}
