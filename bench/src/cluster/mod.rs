//! `fleet-bench cluster`: a real etcd, the real engine and thousands of real agents
//! (each a full `Agent` with registration, lease, its own schedule watch and state
//! reports) in one process; only systemd is simulated. Units are submitted and started
//! through the registry calls fleetctl makes (`get_units`, `create_units`,
//! `set_targets`), then a fraction of the machines is killed at once.
//!
//! Runtimes are split so /proc's per-thread CPU splits engine from agents: the engine
//! runs on `fleet-engine` threads, the agents on `fleet-agents` threads, the driver
//! (the fleetctl side) on the main thread.

mod etcd_metrics;
mod procstat;
mod workload;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use fleet_core::{MachineId, TargetState, UnitName};
use fleet_registry::{Registry, RegistryConfig};
use fleet_testkit::{EtcdCluster, EtcdConfig, EtcdServer};
use fleetd::agent::{Agent, AgentConfig, AgentMetrics};
use fleetd::engine::{self, EngineConfig, EngineHandle};
use fleetd::systemd::SimulatedSystemd;
use serde_json::json;
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use etcd_metrics::EtcdCounters;
use procstat::CpuTimes;

/// Request timeout of the submitting (fleetctl-like) client.
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Simulated machines (one full agent each).
    #[arg(long, default_value_t = 1_000)]
    machines: usize,
    /// Units to submit and start.
    #[arg(long, default_value_t = 10_000)]
    units: usize,
    /// Percent of units that are template instances conflicting with their siblings.
    #[arg(long, default_value_t = 20)]
    templates: u32,
    /// Percent of units that require machine metadata (a region).
    #[arg(long, default_value_t = 10)]
    constraints: u32,
    /// The agents' lease TTL (fleet's agent_ttl).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    agent_ttl: Duration,
    /// Use this etcd (client URL) instead of starting one; its metrics must be served
    /// on the client port then.
    #[arg(long)]
    etcd: Option<String>,
    /// Members of the etcd the benchmark starts (on loopback): 3 shows what raft
    /// replication costs. etcd CPU is then summed over the members, requests and
    /// bytes over the members' clients, key writes counted once.
    #[arg(long, default_value_t = 1)]
    etcd_members: usize,
    /// Key prefix in etcd (a fresh one per run when sharing an etcd).
    #[arg(long, default_value = "/_bench/")]
    prefix: String,
    /// Fraction of machines killed at once (0 skips the failover phase).
    #[arg(long, default_value_t = 0.1)]
    kill_fraction: f64,
    /// Engines campaigning (one leads).
    #[arg(long, default_value_t = 1)]
    engines: usize,
    /// etcd connections (gRPC channels) the agents share.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Units per fleetctl-like submission (one `start` of that many arguments).
    #[arg(long, default_value_t = 1_000)]
    batch: usize,
    /// Submissions running at once (several fleetctl invocations).
    #[arg(long, default_value_t = 4)]
    submitters: usize,
    /// Threads of the agents' runtime.
    #[arg(long, default_value_t = 2)]
    agent_threads: usize,
    /// How often the etcd the benchmark starts commits its backend (`100ms` is etcd's
    /// own default, for comparison with runs before the recommendation).
    #[arg(long, default_value_t = fleet_testkit::BACKEND_BATCH_INTERVAL.into())]
    etcd_batch_interval: humantime::Duration,
    /// etcd's `GOGC` when the benchmark starts it (`100` is Go's default, for
    /// comparison with runs before the recommendation).
    #[arg(long, default_value_t = fleet_testkit::ETCD_GOGC)]
    etcd_gogc: u32,
    /// etcd's backend quota in bytes when the benchmark starts it.
    #[arg(long, default_value_t = 8 * 1024 * 1024 * 1024)]
    quota_backend_bytes: u64,
    /// Give up a phase after this long.
    #[arg(long, default_value = "300s", value_parser = humantime::parse_duration)]
    phase_timeout: Duration,
}

/// One simulated machine while it runs.
struct SimMachine {
    id: MachineId,
    metrics: AgentMetrics,
    task: Option<JoinHandle<()>>,
}

pub fn run(args: &Args) -> Result<()> {
    ensure!(args.machines > 0, "--machines must be at least 1");
    ensure!(
        (0.0..1.0).contains(&args.kill_fraction),
        "--kill-fraction must be in [0, 1)"
    );
    ensure!(
        args.templates + args.constraints <= 100,
        "--templates plus --constraints must not exceed 100 (percent)"
    );
    ensure!(
        (1..=7).contains(&args.etcd_members),
        "--etcd-members must be between 1 and 7"
    );
    let etcd_config = EtcdConfig {
        extra_args: vec![
            format!("--quota-backend-bytes={}", args.quota_backend_bytes),
            "--snapshot-count=1000000".into(),
            fleet_testkit::backend_batch_interval_flag(args.etcd_batch_interval.into()),
        ],
        gogc: Some(args.etcd_gogc),
        ..EtcdConfig::default()
    };
    // Kept until the end: dropping them stops etcd.
    let (etcd_server, etcd_cluster) = match (&args.etcd, args.etcd_members) {
        (Some(_), _) => (None, None),
        (None, 1) => (
            Some(EtcdServer::start_with(&etcd_config).context("starting etcd")?),
            None,
        ),
        (None, n) => (
            None,
            Some(EtcdCluster::start(&etcd_config, n).context("starting the etcd cluster")?),
        ),
    };
    let members: Vec<&EtcdServer> = match (&etcd_server, &etcd_cluster) {
        (Some(s), _) => vec![s],
        (_, Some(c)) => c.members().iter().collect(),
        _ => Vec::new(),
    };
    let (client_urls, metrics_urls, etcd_pids): (Vec<String>, Vec<String>, Vec<u32>) =
        match &args.etcd {
            Some(url) => (vec![url.clone()], vec![url.clone()], Vec::new()),
            None => (
                members.iter().map(|m| m.client_url()).collect(),
                members.iter().map(|m| m.metrics_url()).collect(),
                members.iter().filter_map(|m| m.pid()).collect(),
            ),
        };
    let (client_url, metrics_url) = (client_urls.join(","), metrics_urls.join(","));
    let etcd_pid = etcd_pids.first().copied();
    let etcd_cpu = || {
        etcd_pids
            .iter()
            .map(|p| procstat::pid_cpu(Some(*p)))
            .sum::<f64>()
    };
    println!(
        "etcd {client_url} (metrics {metrics_url}); {} machines, {} units ({}% instances, {}% constrained), agent_ttl {:?}",
        args.machines, args.units, args.templates, args.constraints, args.agent_ttl
    );

    let engine_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("fleet-engine")
        .enable_all()
        .build()?;
    let agent_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.agent_threads.max(1))
        .thread_name("fleet-agents")
        .enable_all()
        .build()?;
    let driver = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut cfg = RegistryConfig::new(client_urls[0].clone()).with_prefix(args.prefix.clone());
    cfg.endpoints = client_urls.clone();

    // Agents first: every machine registered before any unit is submitted.
    let started = Instant::now();
    let mut machines = start_agents(&agent_rt, &cfg, args)?;
    let stop_engines = CancellationToken::new();
    let engines = start_engines(&engine_rt, &cfg, args.engines, &stop_engines)?;
    // fleetctl's --request-timeout, raised: one submission is a long batch.
    let registry = driver.block_on(Registry::connect(cfg.clone().with_timeout(SUBMIT_TIMEOUT)))?;
    driver.block_on(async {
        // The agents' own flags, not etcd reads: polling a 5,000-machine listing
        // every few ms would load the etcd the agents are registering with.
        wait_until(args.phase_timeout, "all agents listening", || async {
            Ok(machines.iter().all(|m| m.metrics.listening()))
        })
        .await?;
        let listed = registry.list_machines().await?.len();
        ensure!(
            listed >= args.machines,
            "{listed} of {} machines listed in etcd",
            args.machines
        );
        wait_until(args.phase_timeout, "an engine leads", || async {
            Ok(engines.iter().any(EngineHandle::is_leader))
        })
        .await
    })?;
    let registered_after = started.elapsed();
    println!(
        "{} agents registered in {:.2}s",
        args.machines,
        registered_after.as_secs_f64()
    );

    let units = workload::units(args.units, args.templates, args.constraints)?;
    let etcd_before = etcd_metrics::fetch_all(&metrics_urls)?;
    let cpu_before = procstat::own_cpu();
    let etcd_cpu_before = etcd_cpu();
    let t0 = Instant::now();
    // Counted from the first submission on, on a thread of its own: placement starts
    // while later batches are still being submitted.
    let (submitted, progress) = std::thread::scope(|scope| {
        let progress = scope
            .spawn(|| wait_all_active(&machines, args.units as u64, 0, t0, args.phase_timeout));
        let submitted = driver.block_on(submit(&registry, &units, args));
        let progress = progress
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the progress thread panicked")));
        (submitted, progress)
    });
    let (submitted_after, progress) = (submitted?, progress?);
    let (placed_after, active_after) = (progress.all_placed(), progress.all_active());
    let cpu_after = procstat::own_cpu();
    let etcd_cpu_after = etcd_cpu();
    let etcd_used = etcd_metrics::fetch_all(&metrics_urls)?.since(&etcd_before);
    println!(
        "submitted in {:.2}s, all placed after {:.2}s, all active after {:.2}s",
        submitted_after.as_secs_f64(),
        placed_after.as_secs_f64(),
        active_after.as_secs_f64()
    );

    let check = driver.block_on(check_cluster(
        &registry,
        &machines,
        args.units,
        args.phase_timeout,
    ))?;
    // Counted before the kill phase (killing agents must cost no lease of the others),
    // and after the check, which may have waited for an agent to register again.
    let losses = Losses::now();
    println!(
        "before the kill phase: {} leadership losses, {} leases lost (engine and agents)",
        losses.leadership, losses.leases
    );
    let listing = driver.block_on(time_listing(&registry))?;

    let failover = if args.kill_fraction > 0.0 {
        let t0 = Instant::now();
        let gone = Arc::new(Mutex::new(Vec::new()));
        // On a thread and connection of its own: `driver` runs tasks (its connections'
        // too) only inside `block_on`.
        let stop = CancellationToken::new();
        let watcher = {
            let (cfg, gone, stop) = (cfg.clone(), gone.clone(), stop.clone());
            std::thread::spawn(move || -> Result<()> {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(async {
                    let registry = Registry::connect(cfg).await?;
                    tokio::select! {
                        _ = machines_gone(registry, t0, gone) => {}
                        _ = stop.cancelled() => {}
                    }
                    Ok(())
                })
            })
        };
        let failover = kill_and_wait(&mut machines, args, t0, &gone);
        stop.cancel();
        let _ = watcher.join();
        Some(failover?)
    } else {
        None
    };
    if let Some(f) = &failover {
        // The survivors still hold every unit exactly once.
        driver.block_on(check_cluster(
            &registry,
            &machines,
            args.units,
            args.phase_timeout,
        ))?;
        println!(
            "killed {} machines ({} units): their machines gone {:.2}-{:.2}s after, all placed elsewhere after {:.2}s, all active after {:.2}s ({:.2}s past agent_ttl)",
            f.killed,
            f.units,
            f.gone.0,
            f.gone.1,
            f.placed,
            f.seconds,
            f.seconds - args.agent_ttl.as_secs_f64()
        );
    }

    let figures = figures(
        args,
        &Phase {
            registered_after,
            submitted_after,
            progress,
            etcd: etcd_used,
            cpu_before,
            cpu_after,
            etcd_cpu: etcd_cpu_after - etcd_cpu_before,
            etcd_pid,
            losses,
        },
        &machines,
        &check,
        listing,
        failover.as_ref(),
    );
    print_table(&figures);

    stop_engines.cancel();
    for m in &mut machines {
        if let Some(t) = m.task.take() {
            t.abort();
        }
    }
    drop(engines);
    agent_rt.shutdown_timeout(Duration::from_secs(5));
    engine_rt.shutdown_timeout(Duration::from_secs(5));
    drop(members);
    drop(etcd_server);
    drop(etcd_cluster);
    println!("{}", serde_json::to_string(&figures)?);
    Ok(())
}

fn start_agents(rt: &Runtime, cfg: &RegistryConfig, args: &Args) -> Result<Vec<SimMachine>> {
    let registries: Vec<Registry> = (0..args.clients.max(1))
        .map(|_| rt.block_on(Registry::connect(cfg.clone())))
        .collect::<Result<_, _>>()?;
    let mut out = Vec::with_capacity(args.machines);
    for (i, machine) in workload::machines(args.machines)?.into_iter().enumerate() {
        let id = machine.id.clone();
        let config = AgentConfig::new(machine, args.agent_ttl);
        let agent = Agent::new(
            registries[i % registries.len()].clone(),
            Arc::new(SimulatedSystemd::new()),
            config,
        );
        let metrics = agent.metrics();
        let task = rt.spawn(run_agent(agent));
        out.push(SimMachine {
            id,
            metrics,
            task: Some(task),
        });
    }
    Ok(out)
}

async fn run_agent(mut agent: Agent<SimulatedSystemd>) {
    // Never cancelled: the benchmark aborts the task (a hard kill).
    if let Err(e) = agent.run(CancellationToken::new()).await {
        tracing::error!(machine = %agent.machine().id, error = %e, "agent stopped");
    }
}

fn start_engines(
    rt: &Runtime,
    cfg: &RegistryConfig,
    count: usize,
    stop: &CancellationToken,
) -> Result<Vec<EngineHandle>> {
    (0..count.max(1))
        .map(|i| {
            let registry = rt.block_on(Registry::connect(cfg.clone()))?;
            let config = EngineConfig::new(MachineId::new(&format!("engine-{i}"))?);
            let _guard = rt.enter();
            Ok(engine::spawn(registry, config, stop.clone()))
        })
        .collect()
}

/// fleetctl's `start` path for many invocations of `batch` units each, `submitters`
/// at a time: one batched read, batched guarded creates, batched target writes.
async fn submit(
    registry: &Registry,
    units: &[(UnitName, fleet_core::UnitFile)],
    args: &Args,
) -> Result<Duration> {
    let t0 = Instant::now();
    let batches: Vec<&[(UnitName, fleet_core::UnitFile)]> =
        units.chunks(args.batch.max(1)).collect();
    use futures_util::StreamExt;
    let results: Vec<Result<()>> = futures_util::stream::iter(batches)
        .map(|batch| async move {
            let names: Vec<UnitName> = batch.iter().map(|(n, _)| n.clone()).collect();
            let existing = registry.get_units(&names).await?;
            let create: Vec<_> = batch
                .iter()
                .zip(&existing)
                .filter(|(_, e)| e.is_none())
                .map(|(u, _)| u.clone())
                .collect();
            // New units are written with their `launched` target in one op; only the
            // others get a target write.
            let created = registry
                .create_units_with_target(&create, TargetState::Launched)
                .await?;
            let fresh: std::collections::HashSet<&UnitName> = create
                .iter()
                .zip(&created)
                .filter(|(_, o)| matches!(o, fleet_registry::CreateOutcome::Created))
                .map(|((n, _), _)| n)
                .collect();
            let targets: Vec<(UnitName, TargetState)> = names
                .iter()
                .filter(|n| !fresh.contains(n))
                .map(|n| (n.clone(), TargetState::Launched))
                .collect();
            if !targets.is_empty() {
                let out = registry.set_targets(&targets).await?;
                ensure!(out.missing.is_empty(), "units vanished: {:?}", out.missing);
            }
            Ok(())
        })
        .buffer_unordered(args.submitters.max(1))
        .collect()
        .await;
    for r in results {
        r?;
    }
    Ok(t0.elapsed())
}

/// Fractions of the units at which `Progress` notes the time.
const MILESTONES: [f64; 4] = [0.1, 0.5, 0.9, 1.0];

/// When `MILESTONES` of the units were first scheduled and first reported active:
/// shows which stage holds the time (placement, or the agents' start and report).
struct Progress {
    placed: [Option<Duration>; 4],
    active: [Option<Duration>; 4],
}

impl Progress {
    fn all_placed(&self) -> Duration {
        self.placed[3].unwrap_or_default()
    }

    fn all_active(&self) -> Duration {
        self.active[3].unwrap_or_default()
    }
}

/// Polls the agents' own counters (no etcd reads) until every unit is scheduled on
/// some machine and every one is reported active. Milestones count the units above
/// `settled` (the survivors' own units in the kill phase).
fn wait_all_active(
    machines: &[SimMachine],
    units: u64,
    settled: u64,
    t0: Instant,
    limit: Duration,
) -> Result<Progress> {
    let mut progress = Progress {
        placed: [None; 4],
        active: [None; 4],
    };
    let moving = units.saturating_sub(settled) as f64;
    let note = |marks: &mut [Option<Duration>; 4], count: u64| {
        let count = count.saturating_sub(settled) as f64;
        for (mark, fraction) in marks.iter_mut().zip(MILESTONES) {
            if mark.is_none() && count >= fraction * moving {
                *mark = Some(t0.elapsed());
            }
        }
    };
    loop {
        let live = machines.iter().filter(|m| m.task.is_some());
        let (scheduled, active) = live.fold((0, 0), |(s, a), m| {
            (s + m.metrics.scheduled(), a + m.metrics.reported_active())
        });
        note(&mut progress.placed, scheduled);
        note(&mut progress.active, active);
        if progress.placed[3].is_some() && progress.active[3].is_some() {
            return Ok(progress);
        }
        if t0.elapsed() > limit {
            bail!("after {limit:?}: {scheduled} of {units} units scheduled, {active} active");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// What the end state looks like in etcd.
struct Check {
    foreign_events: u64,
    max_events_per_agent: u64,
}

/// Every unit scheduled exactly once, on a live machine, reported active there; no
/// agent heard about another machine's schedule. A gap that heals by itself (an agent
/// whose lease etcd let expire under load registers again and writes its states back)
/// is read again every second until `limit`; a unit scheduled twice, or an event about
/// another machine, fails at once.
async fn check_cluster(
    registry: &Registry,
    machines: &[SimMachine],
    units: usize,
    limit: Duration,
) -> Result<Check> {
    let t0 = Instant::now();
    let mut first_gap = None;
    loop {
        let gap = match check_once(registry, machines, units).await? {
            Ok(check) => {
                if let Some(gap) = first_gap {
                    println!(
                        "the cluster settled {:.2}s after the first check, which found: {gap}",
                        t0.elapsed().as_secs_f64()
                    );
                }
                return Ok(check);
            }
            Err(gap) => gap,
        };
        if t0.elapsed() > limit {
            bail!("{gap} (still after {limit:?})");
        }
        first_gap.get_or_insert(gap);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// One reading of [`check_cluster`]: `Ok(Err(gap))` for what may heal by itself.
async fn check_once(
    registry: &Registry,
    machines: &[SimMachine],
    units: usize,
) -> Result<Result<Check, String>> {
    let snap = registry.snapshot().await?;
    let live: std::collections::HashSet<&MachineId> = machines
        .iter()
        .filter(|m| m.task.is_some())
        .map(|m| &m.id)
        .collect();
    let mut seen = std::collections::HashSet::new();
    for e in &snap.schedule {
        ensure!(seen.insert(&e.unit), "unit {} scheduled twice", e.unit);
    }
    let foreign_events = machines.iter().map(|m| m.metrics.foreign_events()).sum();
    ensure!(
        foreign_events == 0,
        "agents received {foreign_events} events about other machines"
    );
    if let Some(e) = snap.schedule.iter().find(|e| !live.contains(&e.machine)) {
        return Ok(Err(format!(
            "unit {} scheduled on dead machine {}",
            e.unit, e.machine
        )));
    }
    if seen.len() != units {
        return Ok(Err(format!("{} of {units} units scheduled", seen.len())));
    }
    let states: std::collections::HashMap<(&UnitName, &MachineId), &str> = snap
        .states
        .iter()
        .map(|s| ((&s.unit, &s.machine), s.systemd.active.as_str()))
        .collect();
    for e in &snap.schedule {
        let active = states.get(&(&e.unit, &e.machine)).copied();
        if active != Some("active") {
            return Ok(Err(format!(
                "unit {} on {} reports {:?}",
                e.unit, e.machine, active
            )));
        }
    }
    Ok(Ok(Check {
        foreign_events,
        max_events_per_agent: machines
            .iter()
            .map(|m| m.metrics.watch_events())
            .max()
            .unwrap_or(0),
    }))
}

/// What `fleetctl list-units --driver=etcd` does: machines and states read in one txn,
/// rendered as its table, in-process (the fleetctl binary adds only its start-up).
async fn time_listing(registry: &Registry) -> Result<f64> {
    let t0 = Instant::now();
    let snap = registry.states_snapshot().await?;
    let ips: std::collections::HashMap<&fleet_core::MachineId, String> = snap
        .machines
        .iter()
        .filter_map(|m| Some((&m.machine.id, m.machine.public_ip?.to_string())))
        .collect();
    let mut out = String::with_capacity(snap.states.len() * 64);
    for s in &snap.states {
        let machine = fleet_core::machine::machine_legend(
            &s.machine,
            ips.get(&s.machine).map(String::as_str),
            false,
        );
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\n",
            s.unit, machine, s.systemd.active, s.systemd.sub
        ));
    }
    std::hint::black_box(out);
    Ok(t0.elapsed().as_secs_f64())
}

struct Failover {
    killed: usize,
    units: u64,
    /// When etcd deleted the first and the last killed machine (their leases ended),
    /// seconds after the kill.
    gone: (f64, f64),
    /// When every unit was placed on a survivor, seconds after the kill.
    placed: f64,
    seconds: f64,
    progress: Progress,
}

/// Records when each machine key is deleted (a lease ended), in seconds after `t0`.
async fn machines_gone(registry: Registry, t0: Instant, gone: Arc<Mutex<Vec<f64>>>) {
    let mut watch = registry.watch_prefix(registry.keys().machines(), 0);
    loop {
        let Ok(batch) = watch.next().await else {
            // It retries by itself; this only keeps a broken etcd from spinning us.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let deleted = batch.events.iter().filter(|e| {
            matches!(
                e,
                fleet_registry::WatchEvent::Delete {
                    key: fleet_registry::RegistryKey::Machine(_),
                    ..
                }
            )
        });
        let at = t0.elapsed().as_secs_f64();
        let mut gone = gone.lock().unwrap_or_else(|e| e.into_inner());
        gone.extend(deleted.map(|_| at));
    }
}

/// Aborts `kill_fraction` of the agents at once at `t0` (leases not revoked, units
/// keep "running" nowhere) and waits until every unit is active on a survivor.
fn kill_and_wait(
    machines: &mut [SimMachine],
    args: &Args,
    t0: Instant,
    gone: &Mutex<Vec<f64>>,
) -> Result<Failover> {
    let count = ((machines.len() as f64) * args.kill_fraction).round() as usize;
    let count = count.clamp(1, machines.len().saturating_sub(1).max(1));
    let units: u64 = machines[..count]
        .iter()
        .map(|m| m.metrics.scheduled())
        .sum();
    for m in &mut machines[..count] {
        if let Some(t) = m.task.take() {
            t.abort();
        }
    }
    let settled = (args.units as u64).saturating_sub(units);
    let progress = wait_all_active(machines, args.units as u64, settled, t0, args.phase_timeout)?;
    let gone = gone.lock().unwrap_or_else(|e| e.into_inner());
    let first = gone.first().copied().unwrap_or(f64::NAN);
    let last = gone.last().copied().unwrap_or(f64::NAN);
    Ok(Failover {
        killed: count,
        units,
        gone: (first, last),
        placed: progress.all_placed().as_secs_f64(),
        seconds: progress.all_active().as_secs_f64(),
        progress,
    })
}

/// Where the time and resources of the start phase went.
struct Phase {
    registered_after: Duration,
    submitted_after: Duration,
    progress: Progress,
    etcd: EtcdCounters,
    cpu_before: CpuTimes,
    cpu_after: CpuTimes,
    etcd_cpu: f64,
    etcd_pid: Option<u32>,
    losses: Losses,
}

/// Leases and leaderships lost in this process so far (fleetd's own counters).
struct Losses {
    /// The engine stopped leading (each change is a gain or a loss; one engine).
    leadership: u64,
    /// Leases given up as lost, the engine's and the agents'.
    leases: u64,
}

impl Losses {
    fn now() -> Losses {
        let text = fleet_metrics::encode();
        let counter = |name: &str| -> u64 {
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| l.split_once(' '))
                .filter(|(k, _)| k.ends_with(name))
                .filter_map(|(_, v)| v.trim().parse::<f64>().ok())
                .sum::<f64>() as u64
        };
        Losses {
            leadership: counter("engine_leadership_changes_total") / 2,
            leases: counter("lease_losses_total"),
        }
    }
}

fn figures(
    args: &Args,
    p: &Phase,
    machines: &[SimMachine],
    check: &Check,
    listing: f64,
    failover: Option<&Failover>,
) -> serde_json::Value {
    let u = args.units.max(1) as f64;
    let events: Vec<u64> = machines.iter().map(|m| m.metrics.watch_events()).collect();
    let mean_events = events.iter().sum::<u64>() as f64 / events.len().max(1) as f64;
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    json!({
        "machines": args.machines,
        "units": args.units,
        "templates_pct": args.templates,
        "constraints_pct": args.constraints,
        "agent_ttl_s": args.agent_ttl.as_secs_f64(),
        "engines": args.engines,
        "etcd_members": args.etcd_members,
        // Not ours to set on an etcd given with --etcd.
        "etcd_batch_interval_ms": args.etcd.is_none().then(|| std::time::Duration::from(args.etcd_batch_interval).as_millis()),
        "etcd_gogc": args.etcd.is_none().then_some(args.etcd_gogc),
        "etcd_clients": args.clients,
        "registered_s": round(p.registered_after.as_secs_f64()),
        "submitted_s": round(p.submitted_after.as_secs_f64()),
        "all_placed_s": round(p.progress.all_placed().as_secs_f64()),
        "all_active_s": round(p.progress.all_active().as_secs_f64()),
        "placed_10_50_90_s": milestones(&p.progress.placed),
        "active_10_50_90_s": milestones(&p.progress.active),
        "placements_per_s": round(u / p.progress.all_placed().as_secs_f64().max(1e-9)),
        "active_per_s": round(u / p.progress.all_active().as_secs_f64().max(1e-9)),
        "etcd_requests": p.etcd.requests,
        "etcd_requests_per_unit": round(p.etcd.total_requests() / u),
        "etcd_mvcc_txns_per_unit": round(p.etcd.write_txns / u),
        "etcd_key_writes_per_unit": round((p.etcd.puts + p.etcd.deletes) / u),
        "etcd_received_bytes_per_unit": round(p.etcd.received_bytes / u),
        "etcd_sent_bytes_per_unit": round(p.etcd.sent_bytes / u),
        "watch_events_per_agent_mean": round(mean_events),
        "watch_events_per_agent_max": events.iter().max().copied().unwrap_or(0),
        "watch_events_per_agent_max_at_start": check.max_events_per_agent,
        "foreign_watch_events": check.foreign_events,
        "engine_cpu_s": round(p.cpu_after.since(&p.cpu_before, "engine")),
        "agents_cpu_s": round(p.cpu_after.since(&p.cpu_before, "agents")),
        "other_cpu_s": round(p.cpu_after.since(&p.cpu_before, "other")),
        "process_cpu_s": round(p.cpu_after.process - p.cpu_before.process),
        "etcd_cpu_s": round(p.etcd_cpu),
        "peak_rss_mib": round(procstat::peak_rss_mib("self")),
        "etcd_peak_rss_mib": p.etcd_pid.map(|pid| round(procstat::peak_rss_mib(&pid.to_string()))),
        "list_units_s": round(listing),
        "leadership_losses_before_kill": p.losses.leadership,
        "lease_losses_before_kill": p.losses.leases,
        "killed_machines": failover.map(|f| f.killed),
        "killed_units": failover.map(|f| f.units),
        "failover_s": failover.map(|f| round(f.seconds)),
        "failover_machines_gone_s": failover.map(|f| [round(f.gone.0), round(f.gone.1)]),
        "failover_placed_s": failover.map(|f| round(f.placed)),
        "failover_placed_10_50_90_s": failover.map(|f| milestones(&f.progress.placed)),
        "failover_active_10_50_90_s": failover.map(|f| milestones(&f.progress.active)),
        "failover_minus_ttl_s": failover.map(|f| round(f.seconds - args.agent_ttl.as_secs_f64())),
        "all_units_once": true,
    })
}

/// The 10, 50 and 90% marks of a `Progress` row, in seconds.
fn milestones(marks: &[Option<Duration>; 4]) -> [f64; 3] {
    let s = |m: Option<Duration>| (m.unwrap_or_default().as_secs_f64() * 1000.0).round() / 1000.0;
    [s(marks[0]), s(marks[1]), s(marks[2])]
}

fn print_table(figures: &serde_json::Value) {
    if let Some(map) = figures.as_object() {
        for (k, v) in map {
            println!("  {k:<32} {v}");
        }
    }
}

/// Polls `cond` every 20 ms until true, failing after `limit`.
async fn wait_until<F, Fut>(limit: Duration, what: &str, mut cond: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if cond().await.unwrap_or(false) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
