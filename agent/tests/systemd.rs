//! fleetd's systemd driver against a REAL systemd: a private `systemd --user` (with its
//! own socket-activated session bus) in a private mount and PID namespace, so these tests
//! need root and `unshare`, but no systemd as PID 1. fleet's TestSystemdUnitFlow, plus
//! batching, `[Install]` handling, failed units and signal back-pressure.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use fleet_core::{SystemdState, UnitFile, UnitName};
use fleetd::systemd::{StateChanged, SystemdManager, SystemdOptions, UnitManager};
use tokio::sync::mpsc;

/// How long a private systemd may take to come up on its bus.
const STARTUP: Duration = Duration::from_secs(20);
/// How long a unit may take to reach an expected state.
const SETTLE: Duration = Duration::from_secs(20);

/// A private `systemd --user` for one test. Drop (also on panic) kills the namespace's
/// init with SIGKILL (via `unshare --kill-child`), which takes every process in the PID
/// namespace with it; if the test process itself dies, the init sees EOF on its stdin and
/// exits, with the same effect.
struct PrivateSystemd {
    unshare: Child,
    stdin: Option<ChildStdin>,
    dir: tempfile::TempDir,
    bus_address: String,
}

impl PrivateSystemd {
    fn start() -> PrivateSystemd {
        let systemd = ["/lib/systemd/systemd", "/usr/lib/systemd/systemd"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("systemd binary not found (apt-get install systemd)");
        let dir = tempfile::tempdir().unwrap();
        let xdg = dir.path().join("xdg");
        let home = dir.path().join("home");
        std::fs::create_dir(&xdg).unwrap();
        std::fs::create_dir(&home).unwrap();
        let bus = xdg.join("bus");
        let bus_address = format!("unix:path={}", bus.display());
        // /run/systemd/system must exist for systemd to consider itself booted; a tmpfs in
        // the private mount namespace provides it without touching the host's /run.
        let script = format!(
            "set -e\n\
             mkdir -p /run/systemd\n\
             mount -t tmpfs tmpfs /run/systemd\n\
             mkdir -p /run/systemd/system\n\
             {systemd} --user &\n\
             read _ || true\n"
        );
        let log = std::fs::File::create(dir.path().join("systemd.log")).unwrap();
        let mut unshare = Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "--pid",
                "--fork",
                "--kill-child",
                "--mount-proc",
                "sh",
                "-c",
                &script,
            ])
            .env("XDG_RUNTIME_DIR", &xdg)
            .env("DBUS_SESSION_BUS_ADDRESS", &bus_address)
            .env("HOME", &home)
            .stdin(Stdio::piped())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("cannot run unshare (tests need root and util-linux)");
        let stdin = unshare.stdin.take();
        let mut this = PrivateSystemd {
            unshare,
            stdin,
            dir,
            bus_address,
        };
        let deadline = Instant::now() + STARTUP;
        while !bus.exists() {
            if let Ok(Some(status)) = this.unshare.try_wait() {
                panic!("private systemd exited ({status}): {}", this.log());
            }
            assert!(
                Instant::now() < deadline,
                "no session bus socket after {STARTUP:?}: {}",
                this.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        this
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("systemd.log")).unwrap_or_default()
    }

    fn units_directory(&self) -> PathBuf {
        self.dir.path().join("units")
    }

    /// systemd's runtime unit directory for this user manager.
    fn runtime_directory(&self) -> PathBuf {
        self.dir.path().join("xdg/systemd/user")
    }

    /// Connects a manager, retrying until systemd has joined its bus (the first call
    /// socket-activates dbus-daemon; systemd connects once dbus.service runs).
    async fn connect(&self) -> SystemdManager {
        let mut options = SystemdOptions::new(true, self.units_directory());
        options.bus_address = Some(self.bus_address.clone());
        let deadline = Instant::now() + STARTUP;
        loop {
            match SystemdManager::connect(options.clone()).await {
                Ok(m) => return m,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("systemd not ready after {STARTUP:?}: {e}\n{}", self.log()),
            }
        }
    }
}

impl Drop for PrivateSystemd {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"\n");
        }
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
    }
}

fn unique_unit(prefix: &str) -> UnitName {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    UnitName::parse(&format!("{prefix}-{}-{n}.service", std::process::id())).unwrap()
}

fn sleeper() -> String {
    "[Unit]\nDescription=fleet test unit\n\n[Service]\nExecStart=/bin/sleep 3000\n".to_owned()
}

fn st(load: &str, active: &str, sub: &str) -> SystemdState {
    SystemdState {
        load: load.into(),
        active: active.into(),
        sub: sub.into(),
    }
}

async fn state_of(m: &SystemdManager, unit: &UnitName) -> SystemdState {
    let states = m.states(std::slice::from_ref(unit)).await.unwrap();
    assert_eq!(states.len(), 1);
    assert_eq!(&states[0].0, unit);
    states[0].1.clone()
}

/// Waits until every unit is in `want`, re-checking (one ListUnitsByNames) on each hint;
/// a quiet second re-checks too, so a missing hint cannot hang the test (the deadline
/// bounds it; `start_is_hinted` checks the hints themselves).
async fn wait_for(
    m: &SystemdManager,
    hints: &mut mpsc::Receiver<StateChanged>,
    units: &[UnitName],
    want: &SystemdState,
) {
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let states = m.states(units).await.unwrap();
        if states.iter().all(|(_, s)| s == want) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "units not {want:?} after {SETTLE:?}: {states:?}"
        );
        let _ = tokio::time::timeout(Duration::from_secs(1), hints.recv()).await;
    }
}

/// fleet's TestSystemdUnitFlow: load, start, stop, unload one unit; plus the hash a
/// restarted agent adopts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unit_flow() {
    let systemd = PrivateSystemd::start();
    let m = systemd.connect().await;
    let mut hints = m.subscribe().await.unwrap();
    assert!(m.installed_units().await.unwrap().is_empty());

    let unit = unique_unit("fleet-unit");
    let text = sleeper();
    m.write_units(&[(unit.clone(), text.clone())])
        .await
        .unwrap();
    m.reload().await.unwrap();
    let file = systemd.units_directory().join(unit.as_str());
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o644
    );
    let link = systemd.runtime_directory().join(unit.as_str());
    assert_eq!(std::fs::read_link(&link).unwrap(), file);
    assert_eq!(state_of(&m, &unit).await, st("loaded", "inactive", "dead"));
    let hash = UnitFile::parse(&text).unwrap().hash();
    assert_eq!(
        m.installed_units().await.unwrap(),
        vec![(unit.clone(), hash)]
    );

    m.start(&unit).await.unwrap();
    let running = st("loaded", "active", "running");
    wait_for(&m, &mut hints, std::slice::from_ref(&unit), &running).await;

    // A restarted agent sees the same unit and hash in the directory.
    let again = systemd.connect().await;
    assert_eq!(
        again.installed_units().await.unwrap(),
        vec![(unit.clone(), hash)]
    );
    drop(again);

    m.stop(&unit).await.unwrap();
    let dead = st("loaded", "inactive", "dead");
    wait_for(&m, &mut hints, std::slice::from_ref(&unit), &dead).await;

    m.remove_units(std::slice::from_ref(&unit)).await.unwrap();
    m.reload().await.unwrap();
    assert!(m.installed_units().await.unwrap().is_empty());
    assert!(!file.exists());
    assert!(
        std::fs::symlink_metadata(&link).is_err(),
        "runtime link left behind"
    );
    assert_eq!(
        state_of(&m, &unit).await,
        st("not-found", "inactive", "dead")
    );

    // Hints only ever name fleet's units.
    let mut seen = Vec::new();
    while let Ok(h) = hints.try_recv() {
        seen.push(h.0);
    }
    assert!(seen.iter().all(|u| u == &unit), "foreign hints: {seen:?}");
}

/// The hints alone (no polling) announce a start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_is_hinted() {
    let systemd = PrivateSystemd::start();
    let m = systemd.connect().await;
    let unit = unique_unit("hinted");
    m.write_units(&[(unit.clone(), sleeper())]).await.unwrap();
    m.reload().await.unwrap();
    let mut hints = m.subscribe().await.unwrap();
    m.start(&unit).await.unwrap();
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let hint = tokio::time::timeout_at(deadline, hints.recv())
            .await
            .expect("no hint for a started unit")
            .expect("hint channel closed");
        assert_eq!(hint.0, unit);
        if state_of(&m, &unit).await == st("loaded", "active", "running") {
            break;
        }
    }
}

/// fleet runtime-enables units with `[Install]` and disables them on unload (§3.6).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_section_is_enabled_and_disabled() {
    let systemd = PrivateSystemd::start();
    let m = systemd.connect().await;
    let unit = unique_unit("installed");
    let plain = unique_unit("plain");
    let text = format!("{}\n[Install]\nWantedBy=default.target\n", sleeper());
    m.write_units(&[(unit.clone(), text), (plain.clone(), sleeper())])
        .await
        .unwrap();
    m.reload().await.unwrap();
    let wants = systemd.runtime_directory().join("default.target.wants");
    assert!(
        std::fs::symlink_metadata(wants.join(unit.as_str())).is_ok(),
        "not enabled"
    );
    assert!(std::fs::symlink_metadata(wants.join(plain.as_str())).is_err());
    let counts = m.call_counts();
    assert_eq!((counts.link_unit_files, counts.enable_unit_files), (1, 1));

    m.remove_units(&[unit.clone(), plain.clone()])
        .await
        .unwrap();
    m.reload().await.unwrap();
    assert!(
        std::fs::symlink_metadata(wants.join(unit.as_str())).is_err(),
        "still enabled"
    );
    assert_eq!(m.call_counts().disable_unit_files, 1);
    assert!(m.installed_units().await.unwrap().is_empty());
}

/// A unit whose process fails reaches `failed`; removal resets it (ResetFailedUnit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_unit_reaches_failed_and_is_reset() {
    let systemd = PrivateSystemd::start();
    let m = systemd.connect().await;
    let mut hints = m.subscribe().await.unwrap();
    let unit = unique_unit("failing");
    let text = "[Service]\nExecStart=/bin/false\n".to_owned();
    m.write_units(&[(unit.clone(), text)]).await.unwrap();
    m.reload().await.unwrap();
    m.start(&unit).await.unwrap();
    let failed = st("loaded", "failed", "failed");
    wait_for(&m, &mut hints, std::slice::from_ref(&unit), &failed).await;
    m.remove_units(std::slice::from_ref(&unit)).await.unwrap();
    m.reload().await.unwrap();
    assert_eq!(
        state_of(&m, &unit).await,
        st("not-found", "inactive", "dead")
    );
    // Removing again (a retried unload) is harmless, also batched with a live unit.
    m.remove_units(std::slice::from_ref(&unit)).await.unwrap();
    let other = unique_unit("other");
    m.write_units(&[(other.clone(), sleeper())]).await.unwrap();
    m.remove_units(&[unit.clone(), other.clone()])
        .await
        .unwrap();
    let link = systemd.runtime_directory().join(other.as_str());
    assert!(std::fs::symlink_metadata(link).is_err(), "link left behind");
    assert!(m.installed_units().await.unwrap().is_empty());
}

/// Errors name the operation and the unit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_name_operation_and_unit() {
    let systemd = PrivateSystemd::start();
    let m = systemd.connect().await;
    let unit = unique_unit("missing");
    let err = m.start(&unit).await.unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("StartUnit {}: ", unit.as_str())),
        "{err}"
    );
}

/// A batch of 50 units costs one LinkUnitFiles, one Reload and one ListUnitsByNames; and
/// a flood of signals nobody reads does not stall later calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_of_fifty_and_unread_signals() {
    let systemd = PrivateSystemd::start();
    let m = systemd.connect().await;
    // Subscribers that nobody reads while the units churn.
    let _ignored = m.subscribe().await.unwrap();
    let mut hints = m.subscribe().await.unwrap();
    let units: Vec<UnitName> = (0..50).map(|_| unique_unit("batch")).collect();
    let batch: Vec<(UnitName, String)> = units.iter().map(|u| (u.clone(), sleeper())).collect();
    let started = Instant::now();
    m.write_units(&batch).await.unwrap();
    m.reload().await.unwrap();
    let loaded = m.states(&units).await.unwrap();
    eprintln!("write+reload+states of 50 units: {:?}", started.elapsed());
    let dead = st("loaded", "inactive", "dead");
    assert!(loaded.iter().all(|(_, s)| s == &dead), "{loaded:?}");
    let counts = m.call_counts();
    assert_eq!(
        (
            counts.link_unit_files,
            counts.reload,
            counts.list_units_by_names
        ),
        (1, 1, 1)
    );
    assert_eq!(m.installed_units().await.unwrap().len(), 50);

    for round in 0..3 {
        for u in &units {
            if round % 2 == 0 {
                m.start(u).await.unwrap();
            } else {
                m.stop(u).await.unwrap();
            }
        }
    }
    // Nobody has read a hint; systemd has sent hundreds of signals. Calls must still work.
    let started = Instant::now();
    m.reload().await.unwrap();
    eprintln!("reload after 150 unread jobs: {:?}", started.elapsed());
    let running = st("loaded", "active", "running");
    wait_for(&m, &mut hints, &units, &running).await;

    m.remove_units(&units).await.unwrap();
    m.reload().await.unwrap();
    let counts = m.call_counts();
    assert_eq!((counts.disable_unit_files, counts.reload), (1, 3));
    assert!(m.installed_units().await.unwrap().is_empty());
}

/// One unit the filesystem refuses (its file's place is taken by a directory) fails
/// alone: the rest of the batch is written, reloaded and started, and a batch of
/// removals with it still removes the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_refused_unit_fails_alone_and_the_batch_proceeds() {
    use fleetd::agent::execute::{ActionError, execute};
    use fleetd::agent::reconcile::{Action, Reason};

    let systemd = PrivateSystemd::start();
    let m = systemd.connect().await;
    let mut hints = m.subscribe().await.unwrap();
    let good: Vec<UnitName> = (0..3).map(|_| unique_unit("batch-good")).collect();
    let bad = unique_unit("batch-bad");
    let blocker = systemd.units_directory().join(bad.as_str());
    std::fs::create_dir_all(blocker.join("in-the-way")).unwrap();

    let hash = UnitFile::parse(&sleeper()).unwrap().hash();
    let mut all = good.clone();
    all.insert(1, bad.clone());
    let texts = all.iter().map(|u| (u.clone(), sleeper())).collect();
    let r = Reason::ScheduledButUnloaded;
    let mut actions: Vec<Action> = all
        .iter()
        .map(|u| Action::Load {
            unit: u.clone(),
            hash,
            reason: r,
        })
        .collect();
    actions.push(Action::DaemonReload {
        reason: Reason::UnitFilesChanged,
    });
    actions.extend(all.iter().map(|u| Action::Start {
        unit: u.clone(),
        reason: Reason::LoadedDesiredStateLaunched,
    }));
    let outcomes = execute(&m, &actions, &texts).await;
    for o in &outcomes {
        let unit = o.action.unit();
        if unit == Some(&bad) {
            match (&o.action, &o.result) {
                (Action::Load { .. }, Err(ActionError::Systemd(e))) => {
                    assert!(e.to_string().contains(bad.as_str()), "{e}");
                }
                (Action::Start { .. }, Err(ActionError::Skipped(_))) => {}
                other => panic!("unexpected outcome for the refused unit: {other:?}"),
            }
        } else {
            assert!(o.result.is_ok(), "{o:?}");
        }
    }
    assert_eq!(outcomes.len(), actions.len());
    wait_for(&m, &mut hints, &good, &st("loaded", "active", "running")).await;

    // Unloading the good ones alongside one whose removal the filesystem refuses
    // (its file is a directory) removes the good ones.
    let unloads: Vec<Action> = good
        .iter()
        .chain([&bad])
        .map(|u| Action::Unload {
            unit: u.clone(),
            reason: Reason::LoadedButNotScheduled,
        })
        .collect();
    let outcomes = execute(&m, &unloads, &std::collections::HashMap::new()).await;
    for o in &outcomes {
        assert_eq!(o.result.is_ok(), o.action.unit() != Some(&bad), "{o:?}");
    }
    for u in &good {
        assert!(!systemd.units_directory().join(u.as_str()).exists());
    }
}

/// The fence a stopping fleetd arms: systemd itself stops the units when it fires; a
/// disarmed fence stops nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fence_stops_units_unless_disarmed() {
    let systemd = PrivateSystemd::start();
    let m = systemd.connect().await;
    let mut hints = m.subscribe().await.unwrap();
    let fenced = unique_unit("fenced");
    let spared = unique_unit("spared");
    m.write_units(&[(fenced.clone(), sleeper()), (spared.clone(), sleeper())])
        .await
        .unwrap();
    m.reload().await.unwrap();
    m.start(&fenced).await.unwrap();
    m.start(&spared).await.unwrap();
    let running = st("loaded", "active", "running");
    let both = [fenced.clone(), spared.clone()];
    wait_for(&m, &mut hints, &both, &running).await;

    // Armed to fire after 1 s, disarmed at once: the next fleetd came back.
    m.arm_fence(
        "fleet-fence-m1",
        std::slice::from_ref(&spared),
        Duration::from_secs(1),
    )
    .await
    .unwrap();
    assert_eq!(m.disarm_fences("fleet-fence-m1").await.unwrap(), 1);
    assert_eq!(m.disarm_fences("fleet-fence-m1").await.unwrap(), 0);

    let armed = Instant::now();
    m.arm_fence(
        "fleet-fence-m2",
        std::slice::from_ref(&fenced),
        Duration::from_secs(2),
    )
    .await
    .unwrap();
    let dead = st("loaded", "inactive", "dead");
    wait_for(&m, &mut hints, std::slice::from_ref(&fenced), &dead).await;
    let fired = armed.elapsed();
    assert!(fired >= Duration::from_secs(2), "fired early: {fired:?}");
    assert!(fired < Duration::from_secs(4), "fired late: {fired:?}");
    // The disarmed fence would have fired a second before this one.
    assert_eq!(state_of(&m, &spared).await, running);
}

/// The agent with an etcd user of its own (`fleet-machine-<id>`, as `fleetctl
/// etcd-roles` makes it) against an etcd with authentication on: it registers, runs
/// the unit scheduled to it in a real systemd and reports its state; its credentials
/// may not campaign for the engine (one line naming the keys and the role).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_with_its_own_etcd_user_runs_its_units() {
    use fleet_core::{Machine, MachineId, TargetState, UnitFile};
    use fleet_registry::roles;
    use fleet_registry::{Registry, RegistryConfig, ScheduleEntry, SchedulePlan, Secret};
    use fleetd::agent::{Agent, AgentConfig};

    async fn registry(etcd: &fleet_testkit::EtcdServer, user: &str, pw: &str) -> Registry {
        let mut cfg = RegistryConfig::new(etcd.client_url()).with_timeout(Duration::from_secs(3));
        cfg.username = Some(user.into());
        cfg.password = Some(Secret::from(pw));
        Registry::connect(cfg).await.expect("registry connects")
    }

    let systemd = PrivateSystemd::start();
    let manager = systemd.connect().await;
    let etcd = fleet_testkit::EtcdServer::start().expect("etcd starts");
    etcd.enable_auth("root-pw-51", &[]);
    let root = registry(&etcd, "root", "root-pw-51").await;
    let id = MachineId::new("0f1e2d3c4b5a69788796a5b4c3d2e1f0").unwrap();
    let keys = root.keys().clone();
    for spec in roles::cluster_roles(&keys)
        .into_iter()
        .chain([roles::machine_role(&keys, &id)])
    {
        root.apply_role(&spec).await.unwrap();
    }
    let user = roles::machine_user(&id);
    root.add_etcd_user(&user, &Secret::from("machine-pw-51"))
        .await
        .unwrap();
    root.apply_user_roles(&user, &roles::machine_user_roles(&id, false, false))
        .await
        .unwrap();

    let unit = unique_unit("fleet-own-user");
    let file = UnitFile::parse(&sleeper()).unwrap();
    root.create_unit(&unit, &file).await.unwrap();
    let lease = root.grant_lease(Duration::from_secs(30)).await.unwrap();
    let leader = root.campaign("test-engine", lease).await.unwrap();
    let plan = SchedulePlan {
        place: vec![ScheduleEntry {
            machine: id.clone(),
            unit: unit.clone(),
            hash: file.hash(),
            target: TargetState::Launched,
            text: None,
        }],
        ..Default::default()
    };
    leader.apply(&plan).await.unwrap();

    let reg = registry(&etcd, &user, "machine-pw-51").await;
    let mut machine = Machine::new(id.clone());
    machine.public_ip = Some(std::net::Ipv4Addr::LOCALHOST.into());
    let mut agent = Agent::new(
        reg.clone(),
        std::sync::Arc::new(manager),
        AgentConfig::new(machine, Duration::from_secs(5)),
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let s = stop.clone();
    let task = tokio::spawn(async move { agent.run(s).await });

    let deadline = Instant::now() + SETTLE;
    loop {
        let states = root.unit_states(&unit).await.unwrap();
        if states.iter().any(|s| {
            s.machine == id && s.state == TargetState::Launched && s.systemd.active == "active"
        }) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no launched state after {SETTLE:?}: {states:?}\n{}",
            systemd.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(root.list_machines().await.unwrap()[0].id, id);

    let lease = reg.grant_lease(Duration::from_secs(10)).await.unwrap();
    let e = reg.campaign("not-an-engine", lease).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "etcd denied writing the engine election (leader/): this etcd user lacks the role fleet-engine"
    );
    stop.cancel();
    task.await.unwrap().expect("agent stops cleanly");
}

/// Units of namespaces run under their qualified names (`a:web@1.service`): systemd
/// takes them (specifiers included), and two namespaces' `web@1` run side by side with
/// the default namespace's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaced_names_run_side_by_side() {
    let systemd = PrivateSystemd::start();
    let m = systemd.connect().await;
    let mut hints = m.subscribe().await.unwrap();
    let text = "[Unit]\nDescription=%p %i\n\n[Service]\nExecStart=/bin/sleep 3000\n";
    let units: Vec<UnitName> = ["a:web@1.service", "b:web@1.service", "web@1.service"]
        .iter()
        .map(|n| UnitName::parse(n).unwrap())
        .collect();
    let files: Vec<(UnitName, String)> = units
        .iter()
        .map(|u| (u.clone(), text.to_string()))
        .collect();
    m.write_units(&files).await.unwrap();
    m.reload().await.unwrap();
    for u in &units {
        m.start(u).await.unwrap();
    }
    wait_for(&m, &mut hints, &units, &st("loaded", "active", "running")).await;
    let mut installed: Vec<String> = m
        .installed_units()
        .await
        .unwrap()
        .into_iter()
        .map(|(u, _)| u.to_string())
        .collect();
    installed.sort();
    assert_eq!(
        installed,
        ["a:web@1.service", "b:web@1.service", "web@1.service"]
    );
    m.stop(&units[0]).await.unwrap();
    wait_for(
        &m,
        &mut hints,
        &units[..1],
        &st("loaded", "inactive", "dead"),
    )
    .await;
    // The other namespace's web@1 and the default one keep running.
    wait_for(
        &m,
        &mut hints,
        &units[1..],
        &st("loaded", "active", "running"),
    )
    .await;
    m.remove_units(&units).await.unwrap();
    m.reload().await.unwrap();
    assert!(m.installed_units().await.unwrap().is_empty());
}
