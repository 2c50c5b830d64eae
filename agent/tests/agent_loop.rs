//! The agent in-process against a real etcd and the simulated systemd: it registers,
//! follows only its own schedule, reports states, survives restarts without restarting
//! units, survives etcd outages, and purges on graceful shutdown.

use std::sync::Arc;
use std::time::Duration;

use fleet_core::{Machine, MachineId, SystemdState, TargetState, UnitFile, UnitName};
use fleet_registry::{Registry, RegistryConfig, ScheduleEntry, SchedulePlan};
use fleet_testkit::EtcdServer;
use fleetd::agent::{Agent, AgentConfig, AgentMetrics};
use fleetd::systemd::{SimulatedSystemd, UnitManager};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(10);

async fn registry(etcd: &EtcdServer) -> Registry {
    let cfg = RegistryConfig::new(etcd.client_url())
        .with_prefix("/agent-test/")
        .with_timeout(Duration::from_secs(1));
    Registry::connect(cfg).await.expect("registry connects")
}

fn name(s: &str) -> UnitName {
    UnitName::parse(s).unwrap()
}

fn unit(cmd: &str) -> UnitFile {
    UnitFile::parse(&format!(
        "[Unit]\nDescription=test unit\n\n[Service]\nExecStart=/bin/sh -c '{cmd}'\n"
    ))
    .unwrap()
}

fn config(id: &str, lease_file: &std::path::Path) -> AgentConfig {
    let mut m = Machine::new(MachineId::new(id).unwrap());
    m.public_ip = Some("10.0.0.1".parse().unwrap());
    let mut c = AgentConfig::new(m, Duration::from_secs(2));
    c.lease_file = Some(lease_file.to_path_buf());
    c
}

/// A running agent; `stop` ends it without purging (like SIGKILL for the units).
struct Running {
    stop: CancellationToken,
    task: JoinHandle<Agent<SimulatedSystemd>>,
    metrics: AgentMetrics,
}

fn spawn(reg: &Registry, sd: &SimulatedSystemd, cfg: AgentConfig) -> Running {
    let stop = CancellationToken::new();
    let mut agent = Agent::new(reg.clone(), Arc::new(sd.clone()), cfg);
    let metrics = agent.metrics();
    let s = stop.clone();
    let task = tokio::spawn(async move {
        agent.run(s).await.expect("agent runs");
        agent
    });
    Running {
        stop,
        task,
        metrics,
    }
}

impl Running {
    async fn stop(self) -> Agent<SimulatedSystemd> {
        self.stop.cancel();
        self.task.await.unwrap()
    }
}

/// What each test starts from: a real etcd, a registry on it, a directory for lease
/// files and a simulated systemd.
struct Bed {
    etcd: EtcdServer,
    reg: Registry,
    dir: tempfile::TempDir,
    sd: SimulatedSystemd,
}

impl Bed {
    async fn new() -> Bed {
        let etcd = EtcdServer::start().unwrap();
        let reg = registry(&etcd).await;
        Bed {
            etcd,
            reg,
            dir: tempfile::tempdir().unwrap(),
            sd: SimulatedSystemd::new(),
        }
    }

    fn lease_file(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    /// Machine `id`'s agent config, its lease kept in the file `lease`.
    fn config(&self, id: &str, lease: &str) -> AgentConfig {
        config(id, &self.lease_file(lease))
    }

    fn spawn(&self, cfg: AgentConfig) -> Running {
        spawn(&self.reg, &self.sd, cfg)
    }

    /// Machine m1's agent re-checking every `every`, with `units` launched on it.
    async fn rechecking(&self, every: Duration, units: &[(&str, UnitFile)]) -> Running {
        let mut cfg = self.config("m1", "m1.lease");
        cfg.resync_interval = every;
        let agent = self.started(cfg).await;
        schedule(&self.reg, "m1", units, TargetState::Launched).await;
        let names: Vec<&str> = units.iter().map(|(n, _)| *n).collect();
        wait_for("launched", || launched_here(&self.reg, &names, "m1")).await;
        agent
    }

    /// Deletes `unit`'s state on m1 behind the agent's back and waits until a periodic
    /// check writes it back.
    async fn state_lost_and_repaired(&self, unit: &str) {
        let mut raw = etcd_client::Client::connect([self.etcd.client_url()], None)
            .await
            .unwrap();
        raw.delete(self.state_key(unit), None).await.unwrap();
        let units = [unit];
        wait_for("the deleted state written back", || {
            launched_here(&self.reg, &units, "m1")
        })
        .await;
    }

    /// The key of `unit`'s state on m1.
    fn state_key(&self, unit: &str) -> String {
        self.reg
            .keys()
            .state(&name(unit), &MachineId::new("m1").unwrap())
    }

    /// Spawns the agent and waits until its machine is listed.
    async fn started(&self, cfg: AgentConfig) -> Running {
        let id = cfg.machine.id.clone();
        let agent = self.spawn(cfg);
        wait_for("registered", || async {
            (self.reg.list_machines().await).is_ok_and(|ms| ms.iter().any(|m| m.id == id))
        })
        .await;
        agent
    }
}

/// Submits `units` and schedules each on `machine` at `target`.
async fn schedule(reg: &Registry, machine: &str, units: &[(&str, UnitFile)], target: TargetState) {
    let mut plan = SchedulePlan::default();
    for (n, f) in units {
        reg.create_unit(&name(n), f).await.unwrap();
        plan.place.push(ScheduleEntry {
            machine: MachineId::new(machine).unwrap(),
            unit: name(n),
            hash: f.hash(),
            target,
            text: None,
        });
    }
    write_schedule(reg, &plan).await;
}

async fn unschedule(reg: &Registry, machine: &str, units: &[&str]) {
    let plan = SchedulePlan {
        unschedule: units
            .iter()
            .map(|u| (MachineId::new(machine).unwrap(), name(u)))
            .collect(),
        ..Default::default()
    };
    write_schedule(reg, &plan).await;
}

/// Writes `plan` as an engine would: the only writer of the schedule is a leader.
async fn write_schedule(reg: &Registry, plan: &SchedulePlan) {
    let lease = reg.grant_lease(Duration::from_secs(10)).await.unwrap();
    let leader = reg.campaign("test-engine", lease).await.unwrap();
    leader.apply(plan).await.unwrap();
    leader.resign().await.unwrap();
    reg.revoke_lease(lease).await.unwrap();
}

/// Polls `cond` until it holds or the deadline passes.
async fn wait_for<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn sd_state(sd: &SimulatedSystemd, u: &str) -> SystemdState {
    sd.states(&[name(u)]).await.unwrap().remove(0).1
}

async fn launched_here(reg: &Registry, units: &[&str], machine: &str) -> bool {
    let states = reg.list_states().await.unwrap_or_default();
    units.iter().all(|u| {
        states.iter().any(|s| {
            s.unit.as_str() == *u
                && s.machine.as_str() == machine
                && s.state == TargetState::Launched
                && s.systemd.active == "active"
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_its_schedule_and_reports_states() {
    let bed = Bed::new().await;
    let (reg, sd) = (bed.reg.clone(), bed.sd.clone());
    let agent = bed.started(bed.config("m1", "m1.lease")).await;

    // A unit scheduled on another machine is none of this agent's business.
    schedule(
        &reg,
        "m2",
        &[("other.service", unit("other"))],
        TargetState::Launched,
    )
    .await;
    schedule(
        &reg,
        "m1",
        &[("hello.service", unit("hello"))],
        TargetState::Launched,
    )
    .await;
    wait_for("hello launched", || {
        launched_here(&reg, &["hello.service"], "m1")
    })
    .await;
    assert_eq!(sd_state(&sd, "hello.service").await.active, "active");
    assert_eq!(sd_state(&sd, "other.service").await.load, "not-found");

    // loaded: stopped but kept.
    schedule(
        &reg,
        "m1",
        &[("hello.service", unit("hello"))],
        TargetState::Loaded,
    )
    .await;
    wait_for("hello stopped", || async {
        sd_state(&sd, "hello.service").await.active == "inactive"
            && reg.unit_states(&name("hello.service")).await.unwrap()[0].state
                == TargetState::Loaded
    })
    .await;

    // Unscheduled: unloaded from systemd, its state record deleted.
    unschedule(&reg, "m1", &["hello.service"]).await;
    wait_for("hello unloaded", || async {
        sd_state(&sd, "hello.service").await.load == "not-found"
            && reg
                .unit_states(&name("hello.service"))
                .await
                .unwrap()
                .is_empty()
    })
    .await;
    let a = agent.stop().await;
    assert!(a.units().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_placements_cost_one_reload_and_one_state_write_batch() {
    let bed = Bed::new().await;
    let (reg, sd) = (bed.reg.clone(), bed.sd.clone());
    let agent = bed.started(bed.config("m1", "m1.lease")).await;

    let names: Vec<String> = (1..=50).map(|i| format!("hello@{i}.service")).collect();
    let units: Vec<(&str, UnitFile)> = names.iter().map(|n| (n.as_str(), unit(n))).collect();
    let before = sd.call_counts();
    let t0 = Instant::now();
    schedule(&reg, "m1", &units, TargetState::Launched).await;
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    wait_for("50 launched", || launched_here(&reg, &refs, "m1")).await;
    eprintln!("50 units launched and reported in {:?}", t0.elapsed());
    let after = sd.call_counts();
    assert!(
        after.reload - before.reload <= 2,
        "daemon-reloads for one burst: {}",
        after.reload - before.reload
    );
    assert_eq!(after.start_unit - before.start_unit, 50);

    // Destroying all 50: one more reload, every state record gone.
    let before = sd.call_counts();
    let t0 = Instant::now();
    unschedule(&reg, "m1", &refs).await;
    wait_for("50 gone", || async {
        reg.list_states().await.unwrap().is_empty()
    })
    .await;
    eprintln!("50 units unloaded and withdrawn in {:?}", t0.elapsed());
    assert!(sd.call_counts().reload - before.reload <= 2);
    agent.stop().await;
}

/// A placement that carries its unit's text is loaded from it: no read of `unit/`
/// (here there is nothing to read). A carried text that does not match the
/// placement's hash is not trusted: the unit is read from `unit/` instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_placement_carrying_its_text_needs_no_read_of_the_unit() {
    let bed = Bed::new().await;
    let (reg, sd) = (bed.reg.clone(), bed.sd.clone());
    let agent = bed.started(bed.config("m1", "m1.lease")).await;
    let placed = |n: &str, f: &UnitFile| ScheduleEntry {
        machine: MachineId::new("m1").unwrap(),
        unit: name(n),
        hash: f.hash(),
        target: TargetState::Launched,
        text: None,
    };
    // Places `entry` and returns the hash of the file systemd was given for it.
    let load = |entry: ScheduleEntry| {
        let (reg, sd) = (reg.clone(), sd.clone());
        async move {
            let unit = entry.unit.clone();
            let plan = SchedulePlan {
                place: vec![entry],
                ..SchedulePlan::default()
            };
            write_schedule(&reg, &plan).await;
            let names = [unit.as_str()];
            wait_for("launched", || launched_here(&reg, &names, "m1")).await;
            sd.installed_units()
                .await
                .unwrap()
                .into_iter()
                .find(|(n, _)| *n == unit)
                .map(|(_, h)| h)
        }
    };

    // Never submitted: only the placement knows the text.
    let carried = unit("carried");
    let mut entry = placed("carried.service", &carried);
    entry.carry_text_of(&carried);
    assert!(entry.text.is_some());
    assert_eq!(load(entry).await, Some(carried.hash()));

    // A carried text of another hash: the stored unit is loaded, not the carried text.
    let real = unit("real");
    reg.create_unit(&name("real.service"), &real).await.unwrap();
    let mut entry = placed("real.service", &real);
    entry.text = Some(unit("forged").canonical().into());
    assert_eq!(load(entry).await, Some(real.hash()));
    agent.stop().await;
}

/// The periodic safety net puts back a state record someone deleted, and rewrites none
/// of the records that are still right (it used to rewrite every state every minute).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_periodic_check_repairs_a_deleted_state_and_rewrites_no_other() {
    let bed = Bed::new().await;
    let units = [
        ("kept.service", unit("kept")),
        ("lost.service", unit("lost")),
    ];
    let agent = bed.rechecking(Duration::from_millis(400), &units).await;
    let raw = etcd_client::Client::connect([bed.etcd.client_url()], None)
        .await
        .unwrap();
    let kept_rev = || {
        let (mut raw, key) = (raw.clone(), bed.state_key("kept.service"));
        async move { raw.get(key, None).await.unwrap().kvs()[0].mod_revision() }
    };
    let before = kept_rev().await;
    bed.state_lost_and_repaired("lost.service").await;
    // The check that wrote it back left the other record alone.
    assert_eq!(kept_rev().await, before, "an unchanged state was rewritten");
    agent.stop().await;
}

/// The periodic check re-lists the schedule but keeps the watch that follows it: etcd
/// opens no new watch stream (a new watch is caught up from the listing's revision
/// while etcd holds the lock its writes need; 5,000 agents did that every minute), and
/// changes after the checks still reach the agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_periodic_check_keeps_the_watch() {
    let bed = Bed::new().await;
    let reg = bed.reg.clone();
    let agent = bed
        .rechecking(Duration::from_millis(300), &[("a.service", unit("a"))])
        .await;
    let streams = || {
        bed.etcd
            .metric(
                "grpc_server_started_total",
                &[
                    r#"grpc_method="Watch""#,
                    r#"grpc_service="etcdserverpb.Watch""#,
                ],
            )
            .expect("etcd serves its metrics")
    };
    let before = streams();
    // Two checks, each seen by the state it writes back.
    for _ in 0..2 {
        bed.state_lost_and_repaired("a.service").await;
    }
    assert_eq!(streams(), before, "a periodic check opened a new watch");

    schedule(
        &reg,
        "m1",
        &[("b.service", unit("b"))],
        TargetState::Launched,
    )
    .await;
    wait_for("b launched", || launched_here(&reg, &["b.service"], "m1")).await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_adopts_running_units_without_restarting_them() {
    let bed = Bed::new().await;
    let (reg, sd) = (bed.reg.clone(), bed.sd.clone());
    let lease_file = bed.lease_file("m1.lease");
    let agent = bed.spawn(bed.config("m1", "m1.lease"));
    schedule(
        &reg,
        "m1",
        &[("a.service", unit("a")), ("b.service", unit("b"))],
        TargetState::Launched,
    )
    .await;
    wait_for("launched", || {
        launched_here(&reg, &["a.service", "b.service"], "m1")
    })
    .await;
    let lease = agent.stop().await.lease().unwrap();

    // A new agent (fleetd restarted, SIGKILL or SIGHUP): same lease, no start or stop.
    let before = sd.call_counts();
    let mut watch_machines = reg.list_machines().await.unwrap();
    assert_eq!(watch_machines.len(), 1);
    let agent = bed.spawn(bed.config("m1", "m1.lease"));
    wait_for("re-registered", || async {
        std::fs::read_to_string(&lease_file).is_ok()
    })
    .await;
    // Give it a chance to (wrongly) act, then check it did not.
    schedule(
        &reg,
        "m1",
        &[("c.service", unit("c"))],
        TargetState::Launched,
    )
    .await;
    wait_for("c launched", || launched_here(&reg, &["c.service"], "m1")).await;
    let after = sd.call_counts();
    assert_eq!(
        after.start_unit - before.start_unit,
        1,
        "only c.service was started"
    );
    assert_eq!(after.stop_unit - before.stop_unit, 0, "nothing was stopped");
    watch_machines = reg.list_machines().await.unwrap();
    assert_eq!(watch_machines.len(), 1);
    let a = agent.stop().await;
    assert_eq!(a.lease(), Some(lease), "the lease was taken back");
    assert_eq!(a.units().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_machine_id_does_not_steal_the_registration() {
    let bed = Bed::new().await;
    let (first_lease_file, second_lease_file) = (
        bed.lease_file("first.lease"),
        bed.lease_file("second.lease"),
    );
    let first = bed.spawn(bed.config("m1", "first.lease"));
    wait_for("first registered", || async { first_lease_file.exists() }).await;
    // Another machine with the same id (its own systemd).
    let second = spawn(
        &bed.reg,
        &SimulatedSystemd::new(),
        bed.config("m1", "second.lease"),
    );
    // Refused twice (not merely not tried yet), and never registered.
    wait_for("second refused twice", || async {
        second.metrics.registration_failures() >= 2
    })
    .await;
    assert!(
        !second_lease_file.exists(),
        "the second fleetd must not register"
    );
    let first_lease = first.stop().await.lease();
    // Once the first one's lease expires, the second takes over.
    wait_for("second registered", || async { second_lease_file.exists() }).await;
    let second_lease = second.stop().await.lease();
    assert_ne!(first_lease, second_lease);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_leaves_units_running_for_the_next_fleetd() {
    let bed = Bed::new().await;
    let (reg, sd) = (bed.reg.clone(), bed.sd.clone());
    let lease_file = bed.lease_file("m1.lease");
    let agent = bed.spawn(bed.config("m1", "m1.lease"));
    schedule(
        &reg,
        "m1",
        &[("a.service", unit("a"))],
        TargetState::Launched,
    )
    .await;
    wait_for("launched", || launched_here(&reg, &["a.service"], "m1")).await;
    let first = agent.stop().await;
    let lease = first.lease();
    first.shutdown().await;
    assert_eq!(sd_state(&sd, "a.service").await.active, "active");
    assert_eq!(reg.list_machines().await.unwrap().len(), 1, "still present");
    assert!(lease_file.exists(), "the lease is kept for the next fleetd");
    let starts = sd.call_counts().start_unit;

    let next = bed.spawn(bed.config("m1", "m1.lease"));
    wait_for("the next fleetd registered", || async {
        next.metrics.registration_failures() == 0 && launched_here(&reg, &["a.service"], "m1").await
    })
    .await;
    let next = next.stop().await;
    assert_eq!(next.lease(), lease, "the same lease, taken back");
    assert_eq!(sd.call_counts().start_unit, starts, "nothing restarted");
    assert_eq!(sd_state(&sd, "a.service").await.active, "active");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_outage_keeps_units_running_and_converges_after() {
    let mut bed = Bed::new().await;
    let mut cfg = bed.config("m1", "m1.lease");
    let (registered, mut registered_rx) = tokio::sync::watch::channel(false);
    cfg.registered = Some(Arc::new(registered));
    let agent = bed.spawn(cfg);
    let (reg, sd) = (bed.reg.clone(), bed.sd.clone());
    schedule(
        &reg,
        "m1",
        &[("a.service", unit("a"))],
        TargetState::Launched,
    )
    .await;
    wait_for("launched", || launched_here(&reg, &["a.service"], "m1")).await;

    // etcd gone for twice the lease TTL: the unit keeps running, and the agent does
    // not call its lease lost while etcd cannot say so (etcd expires no lease while
    // it is down, and extends them all when it comes back).
    bed.etcd.kill();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(sd_state(&sd, "a.service").await.active, "active");
    assert!(*registered_rx.borrow_and_update(), "registration given up");

    // etcd back: the agent is registered under its lease, states published.
    bed.etcd.restart().unwrap();
    wait_for("re-registered", || async {
        reg.list_machines().await.is_ok_and(|m| m.len() == 1)
    })
    .await;
    wait_for("state republished", || {
        launched_here(&reg, &["a.service"], "m1")
    })
    .await;
    // And follows changes made after the outage.
    unschedule(&reg, "m1", &["a.service"]).await;
    wait_for("unloaded", || async {
        sd_state(&sd, "a.service").await.load == "not-found"
    })
    .await;
    agent.stop().await;
}

/// `StopOnEtcdLoss=true`: once the machine lost etcd for longer than its TTL and no
/// etcd member answers, the unit is stopped (the others keep running); when etcd is
/// back and the unit is still scheduled here, it runs again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_on_etcd_loss_stops_only_units_that_opted_in() {
    let mut bed = Bed::new().await;
    let agent = bed.spawn(bed.config("m1", "m1.lease"));
    let (reg, sd) = (bed.reg.clone(), bed.sd.clone());
    let fenced =
        UnitFile::parse("[Service]\nExecStart=/bin/sleep 1000\n\n[X-Fleet]\nStopOnEtcdLoss=true\n")
            .unwrap();
    schedule(
        &reg,
        "m1",
        &[("a.service", unit("a")), ("f.service", fenced)],
        TargetState::Launched,
    )
    .await;
    wait_for("launched", || {
        launched_here(&reg, &["a.service", "f.service"], "m1")
    })
    .await;

    bed.etcd.kill();
    wait_for("f stopped", || async {
        sd_state(&sd, "f.service").await.active == "inactive"
    })
    .await;
    assert_eq!(sd_state(&sd, "a.service").await.active, "active");
    assert_eq!(
        sd_state(&sd, "f.service").await.load,
        "loaded",
        "kept loaded"
    );

    bed.etcd.restart().unwrap();
    wait_for("f runs again", || async {
        sd_state(&sd, "f.service").await.active == "active"
    })
    .await;
    agent.stop().await;
}

/// An etcd outage every machine sees (quorum lost, a member still answers) stops no
/// `StopOnEtcdLoss` unit: no engine can move anything meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_on_etcd_loss_spares_units_when_etcd_itself_is_down() {
    let mut cluster = fleet_testkit::EtcdCluster::start(&Default::default(), 3).unwrap();
    let mut cfg = RegistryConfig::new(String::new())
        .with_prefix("/agent-test/")
        .with_timeout(Duration::from_secs(1));
    cfg.endpoints = cluster.members().iter().map(|m| m.client_url()).collect();
    let reg = Registry::connect(cfg).await.expect("registry connects");
    let dir = tempfile::tempdir().unwrap();
    let sd = SimulatedSystemd::new();
    let mut cfg = config("m1", &dir.path().join("m1.lease"));
    cfg.stop_on_etcd_loss = true;
    let agent = spawn(&reg, &sd, cfg);
    schedule(
        &reg,
        "m1",
        &[("a.service", unit("a"))],
        TargetState::Launched,
    )
    .await;
    wait_for("launched", || launched_here(&reg, &["a.service"], "m1")).await;

    // Two of three members gone: no quorum, but the third answers.
    for i in 0..2 {
        cluster.member_mut(i).unwrap().kill();
    }
    wait_for("the agent decided", || async {
        agent.metrics.self_fence_checks() == 1
    })
    .await;
    assert_eq!(agent.metrics.self_fenced_units(), 0);
    assert_eq!(sd_state(&sd, "a.service").await.active, "active");
    agent.stop().await;
}
