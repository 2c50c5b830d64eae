//! fleet's etcd roles against a real etcd with authentication on: a machine's user
//! writes its own record and states and nothing of another machine, the schedule, or
//! units; only an engine machine campaigns and writes the schedule, and a refusal is
//! one line naming the keys and the role; applying the roles twice changes nothing;
//! states in the old layout move once.

mod common;

use std::time::Duration;

use common::{machine, machine_id, name, unit};
use etcd_client::{Client, ConnectOptions, PutOptions};
use fleet_core::{SystemdState, TargetState};
use fleet_registry::roles::{self, ROOT};
use fleet_registry::{Registry, RegistryConfig, RegistryError, Secret, UnitStateRecord};
use fleet_testkit::EtcdServer;

const PREFIX: &str = "/_coreos.com/fleet/";
const ROOT_PW: &str = "root-pw-3c1d";

async fn registry_as(etcd: &EtcdServer, user: &str, pw: &str) -> Registry {
    let mut cfg = RegistryConfig::new(etcd.client_url())
        .with_prefix(PREFIX)
        .with_timeout(Duration::from_secs(3));
    cfg.username = Some(user.into());
    cfg.password = Some(Secret::from(pw));
    Registry::connect(cfg).await.expect("registry connects")
}

async fn raw_as(etcd: &EtcdServer, user: &str, pw: &str) -> Client {
    Client::connect(
        [etcd.client_url()],
        Some(ConnectOptions::new().with_user(user, pw)),
    )
    .await
    .expect("etcd client connects")
}

/// Applies fleet's roles and the users of machines `a` (agent only) and `b` (engine);
/// returns what changed.
async fn apply(root: &Registry) -> Vec<String> {
    let k = root.keys().clone();
    let mut changes = Vec::new();
    let mut specs = roles::cluster_roles(&k);
    specs.push(roles::machine_role(&k, &machine_id("a")));
    specs.push(roles::machine_role(&k, &machine_id("b")));
    for s in &specs {
        changes.extend(root.apply_role(s).await.unwrap());
    }
    let users = root.etcd_users().await.unwrap();
    for (m, engine) in [("a", false), ("b", true)] {
        let id = machine_id(m);
        let user = roles::machine_user(&id);
        if !users.contains(&user) {
            root.add_etcd_user(&user, &Secret::from(format!("pw-{m}")))
                .await
                .unwrap();
            changes.push(format!("user {user}: created"));
        }
        let want = roles::machine_user_roles(&id, engine, false);
        changes.extend(root.apply_user_roles(&user, &want).await.unwrap());
    }
    changes
}

fn denied(e: etcd_client::Error) -> bool {
    e.to_string().contains("permission denied")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machine_users_write_only_their_own_keys_and_only_engines_schedule() {
    let etcd = EtcdServer::start().expect("etcd starts");
    etcd.enable_auth(ROOT_PW, &[]);
    let root = registry_as(&etcd, ROOT, ROOT_PW).await;
    let first = apply(&root).await;
    assert!(
        first
            .iter()
            .any(|c| c.contains("role fleet-engine: created")),
        "{first:?}"
    );
    assert_eq!(
        apply(&root).await,
        Vec::<String>::new(),
        "second run changed something"
    );
    root.create_unit(&name("web.service"), &unit("sleep 1000"))
        .await
        .unwrap();

    // Raw writes with machine a's credentials: its own keys only.
    let mut a = raw_as(&etcd, "fleet-machine-a", "pw-a").await;
    let p = PREFIX;
    a.put(format!("{p}machine/a"), "{}", None).await.unwrap();
    a.put(format!("{p}machine-state/a/web.service"), "{}", None)
        .await
        .unwrap();
    for key in [
        "machine/b",
        "machine/a/metadata/disk",
        "machine-state/b/web.service",
        "schedule/a/web.service",
        "schedule/b/web.service",
        "unplaced/web.service",
        "unit/web.service",
        "job/web.service/target",
        "drain/a",
        "leader/1234",
    ] {
        let e = a.put(format!("{p}{key}"), "{}", None).await.unwrap_err();
        assert!(denied(e), "machine a may not write {key}");
    }
    a.delete(format!("{p}machine/a"), None).await.unwrap();
    a.delete(format!("{p}machine-state/a/web.service"), None)
        .await
        .unwrap();
    // Reading the cluster is allowed.
    let got = a.get(format!("{p}unit/web.service"), None).await.unwrap();
    assert_eq!(got.kvs().len(), 1);

    // Through fleet's registry: machine a registers and publishes its states...
    let ra = registry_as(&etcd, "fleet-machine-a", "pw-a").await;
    let (agent, _keeper) = ra
        .register_agent(&machine("a"), "", Duration::from_secs(10), &[])
        .await
        .expect("machine a registers with its own user");
    let hash = unit("sleep 1000").hash();
    let st = UnitStateRecord {
        unit: name("web.service"),
        machine: machine_id("a"),
        hash,
        state: TargetState::Launched,
        systemd: SystemdState {
            load: "loaded".into(),
            active: "active".into(),
            sub: "running".into(),
        },
    };
    agent.put_states(std::slice::from_ref(&st)).await.unwrap();
    assert_eq!(root.unit_states(&name("web.service")).await.unwrap(), [st]);
    // ... but cannot campaign: one line naming the keys and the role it lacks.
    let lease = ra.grant_lease(Duration::from_secs(10)).await.unwrap();
    let e = ra.campaign("engine-a", lease).await.unwrap_err();
    assert!(matches!(e, RegistryError::PermissionDenied { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "etcd denied writing the engine election (leader/): this etcd user lacks the role fleet-engine"
    );
    // It knows it may not write units (a worker's API says so without trying), and
    // asking wrote nothing.
    assert!(!ra.may_write_units().await.unwrap());
    assert!(root.may_write_units().await.unwrap());
    let mut raw_root = raw_as(&etcd, ROOT, ROOT_PW).await;
    for key in ["unit/.write-probe", "job/.write-probe"] {
        let got = raw_root.get(format!("{p}{key}"), None).await.unwrap();
        assert!(got.kvs().is_empty(), "the check wrote {key}");
    }
    // Nor destroy units.
    let e = ra.destroy_unit(&name("web.service")).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "etcd denied writing units and targets (unit/, job/): this etcd user lacks the role fleet-operator"
    );

    // Machine b may lead and write the schedule, but not a's states.
    let rb = registry_as(&etcd, "fleet-machine-b", "pw-b").await;
    let lease = rb.grant_lease(Duration::from_secs(10)).await.unwrap();
    let leader = rb
        .campaign("engine-b", lease)
        .await
        .expect("engine b campaigns");
    let plan = fleet_registry::SchedulePlan {
        place: vec![fleet_registry::ScheduleEntry {
            machine: machine_id("a"),
            unit: name("web.service"),
            hash,
            target: TargetState::Launched,
            text: None,
        }],
        ..Default::default()
    };
    leader
        .apply(&plan)
        .await
        .expect("engine b writes the schedule");
    let mut b = raw_as(&etcd, "fleet-machine-b", "pw-b").await;
    let e = b
        .put(
            format!("{p}machine-state/a/web.service"),
            "{}",
            Some(PutOptions::new()),
        )
        .await
        .unwrap_err();
    assert!(denied(e));
    let (_, schedule) = agent.schedule(0).await.unwrap();
    assert_eq!(schedule.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_layout_states_move_once_keeping_their_lease() {
    let etcd = EtcdServer::start().expect("etcd starts");
    let reg = common::registry(&etcd, PREFIX).await;
    let mut c = common::raw(&etcd).await;
    let lease = c.lease_grant(60, None).await.unwrap().id();
    let value = r#"{"hash":"0000000000000000000000000000000000000000","state":"launched","loadState":"loaded","activeState":"active","subState":"running"}"#;
    for m in ["a", "b"] {
        c.put(
            format!("{PREFIX}state/web.service/{m}"),
            value,
            Some(PutOptions::new().with_lease(lease)),
        )
        .await
        .unwrap();
    }
    // Machine b already reports in the new layout: its old state is dropped.
    c.put(format!("{PREFIX}machine-state/b/web.service"), "new", None)
        .await
        .unwrap();
    assert_eq!(reg.migrate_legacy_states().await.unwrap(), 2);
    assert_eq!(reg.migrate_legacy_states().await.unwrap(), 0);
    let old = c
        .get(
            format!("{PREFIX}state/"),
            Some(etcd_client::GetOptions::new().with_prefix()),
        )
        .await
        .unwrap();
    assert!(old.kvs().is_empty());
    let moved = c
        .get(format!("{PREFIX}machine-state/a/web.service"), None)
        .await
        .unwrap();
    assert_eq!(moved.kvs()[0].lease(), lease);
    assert_eq!(moved.kvs()[0].value(), value.as_bytes());
    let kept = c
        .get(format!("{PREFIX}machine-state/b/web.service"), None)
        .await
        .unwrap();
    assert_eq!(kept.kvs()[0].value(), b"new");
}

/// fleet's table of etcd versions that check permissions inside nested txns
/// (`roles::version_confines_users`) agrees with the etcd under test: a machine's
/// nested-txn write of `unit/` is refused exactly when the table says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_txn_writes_are_refused_exactly_on_fixed_etcd_versions() {
    let etcd = EtcdServer::start().expect("etcd starts");
    etcd.enable_auth(ROOT_PW, &[]);
    let root = registry_as(&etcd, ROOT, ROOT_PW).await;
    apply(&root).await;
    let version = root.etcd_version().await.unwrap();
    let confines = roles::version_confines_users(&version).expect("a version");
    let mut a = raw_as(&etcd, "fleet-machine-a", "pw-a").await;
    use etcd_client::{Txn, TxnOp};
    let nested = Txn::new().and_then([TxnOp::txn(Txn::new().and_then([TxnOp::put(
        format!("{PREFIX}unit/evil.service"),
        "{}",
        None,
    )]))]);
    let refused = a.txn(nested).await.is_err_and(denied);
    assert_eq!(refused, confines, "etcd {version}");
}
