//! `fleet-bench scheduler`: a synthetic cluster with a realistic mix of constraints
//! (template instances with Conflicts, metadata, MachineOf chains, pinned units, a few
//! globals), planned from scratch, planned again (must be a no-op), then after 1% of
//! machines die. Deterministic for a given seed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use anyhow::{Result, ensure};
use fleet_core::scheduler::{ClusterView, Plan, UnitSpec, plan};
use fleet_core::unit::UnitGlob;
use fleet_core::{Machine, MachineId, Requirements, TargetState, UnitName};

#[derive(clap::Args)]
pub struct Args {
    /// Units to create (globals and sidekicks included).
    #[arg(long, default_value_t = 100_000)]
    units: usize,
    /// Machines in the cluster.
    #[arg(long, default_value_t = 5_000)]
    machines: usize,
    /// Seed of the cluster generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// splitmix64: tiny, seeded, good enough to shape a synthetic cluster.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const REGIONS: &[&str] = &["us-east-1", "us-west-1", "eu-west-1"];
const DISKS: &[&str] = &["ssd", "hdd"];

fn name(s: &str) -> Result<UnitName> {
    Ok(UnitName::parse(s)?)
}

fn launched(n: UnitName, requirements: Requirements) -> UnitSpec {
    UnitSpec {
        name: n,
        target: TargetState::Launched,
        requirements,
    }
}

fn one(key: &str, value: &str) -> BTreeMap<String, BTreeSet<String>> {
    BTreeMap::from([(key.to_string(), BTreeSet::from([value.to_string()]))])
}

fn cluster(args: &Args) -> Result<ClusterView> {
    let mut rng = Rng(args.seed);
    let mut machines = Vec::with_capacity(args.machines);
    for _ in 0..args.machines {
        let id = format!("{:016x}{:016x}", rng.next(), rng.next());
        let mut m = Machine::new(MachineId::new(&id)?);
        m.metadata.insert(
            "region".into(),
            REGIONS[rng.below(REGIONS.len())].to_string(),
        );
        m.metadata
            .insert("disk".into(), DISKS[rng.below(DISKS.len())].to_string());
        if rng.chance(5) {
            m.metadata.insert("gpu".into(), "true".into());
        }
        machines.push(m);
    }
    let mut units = Vec::with_capacity(args.units);
    // A few globals: monitoring everywhere, a log shipper on SSD machines only, and a
    // legacy agent that conflicts with the shipper: the alphabetically first global wins
    // a machine, so the shipper is reported unplaceable (a realistic misconfiguration).
    let globals = [
        ("monitor.service", None, None),
        ("log-shipper.service", Some(("disk", "ssd")), None),
        ("legacy-agent.service", None, Some("log-shipper.service")),
    ];
    for (n, meta, conflict) in globals {
        let mut r = Requirements {
            global: true,
            ..Requirements::default()
        };
        if let Some((k, v)) = meta {
            r.metadata = one(k, v);
        }
        r.conflicts.extend(conflict.map(UnitGlob::new));
        units.push(launched(name(n)?, r));
    }
    let mut t = 0;
    while units.len() < args.units {
        t += 1;
        let app = format!("app{t}");
        let instances = 10 + rng.below(190);
        let conflicts = rng.chance(50);
        let meta = match rng.below(10) {
            0..=2 => one("region", REGIONS[rng.below(REGIONS.len())]),
            3 | 4 => one("disk", DISKS[rng.below(DISKS.len())]),
            5 => {
                let mut m = one("region", REGIONS[0]);
                m.entry("region".into())
                    .or_default()
                    .insert(REGIONS[1].into());
                m.extend(one("disk", "ssd"));
                m
            }
            _ => BTreeMap::new(),
        };
        let sidekicks = rng.chance(30);
        for i in 0..instances {
            if units.len() >= args.units {
                break;
            }
            let main = format!("{app}@{i}.service");
            let mut r = Requirements {
                metadata: meta.clone(),
                ..Requirements::default()
            };
            if conflicts {
                r.conflicts.push(UnitGlob::new(&format!("{app}@*.service")));
            }
            units.push(launched(name(&main)?, r));
            if sidekicks && units.len() < args.units {
                // A MachineOf chain: app → sidekick → (sometimes) log forwarder.
                let side = format!("{app}-side@{i}.service");
                let r = Requirements {
                    machine_of: vec![main.clone()],
                    ..Requirements::default()
                };
                units.push(launched(name(&side)?, r));
                if rng.chance(30) && units.len() < args.units {
                    let r = Requirements {
                        machine_of: vec![side],
                        ..Requirements::default()
                    };
                    units.push(launched(name(&format!("{app}-fwd@{i}.service"))?, r));
                }
            }
        }
        // Now and then a unit pinned to a machine by its short id.
        if rng.chance(20) && units.len() < args.units && !machines.is_empty() {
            let m = &machines[rng.below(machines.len())];
            let r = Requirements {
                machine_id: Some(m.id.short().to_string()),
                ..Requirements::default()
            };
            units.push(launched(name(&format!("pinned{t}.service"))?, r));
        }
    }
    Ok(ClusterView {
        machines,
        units,
        placements: Vec::new(),
        drained: Default::default(),
    })
}

fn timed(view: &ClusterView) -> (Plan, f64) {
    let start = Instant::now();
    let p = plan(view);
    (p, start.elapsed().as_secs_f64())
}

pub fn run(args: &Args) -> Result<()> {
    ensure!(args.machines > 0, "--machines must be at least 1");
    let view = cluster(args)?;
    let globals = view.units.iter().filter(|u| u.requirements.global).count();
    println!(
        "cluster: {} units ({} global), {} machines, seed {}",
        view.units.len(),
        globals,
        view.machines.len(),
        args.seed
    );

    let (first, secs) = timed(&view);
    let placements = first.place.len();
    let rate = placements as f64 / secs;
    println!(
        "initial pass: {placements} placements, {} unplaceable in {:.1} ms ({rate:.0} placements/s)",
        first.unplaceable.len(),
        secs * 1e3
    );
    for (u, why) in first.unplaceable.iter().take(3) {
        println!("  unplaceable: {u}: {why}");
    }

    let settled = ClusterView {
        placements: first.apply_to(&view.placements),
        ..view.clone()
    };
    let (again, replan_secs) = timed(&settled);
    ensure!(again.is_noop(), "planning again changed the schedule");
    println!(
        "replan (no change): {} kept in {:.1} ms",
        again.keep.len(),
        replan_secs * 1e3
    );

    let mut degraded = settled.clone();
    let lost = (degraded.machines.len() / 100).max(1);
    degraded.machines.truncate(degraded.machines.len() - lost);
    let (failover, failover_secs) = timed(&degraded);
    println!(
        "failover ({lost} machines lost): {} unplaced, {} placed in {:.1} ms",
        failover.unplace.len(),
        failover.place.len(),
        failover_secs * 1e3
    );

    let loads = load_spread(&settled.placements);
    println!("load per machine: min {} max {}", loads.0, loads.1);

    let json = serde_json::json!({
        "units": view.units.len(),
        "machines": view.machines.len(),
        "seed": args.seed,
        "placements": placements,
        "unplaceable": first.unplaceable.len(),
        "elapsed_ms": secs * 1e3,
        "placements_per_s": rate.round(),
        "replan_ms": replan_secs * 1e3,
        "failover_ms": failover_secs * 1e3,
        "failover_moved": failover.place.len(),
    });
    println!("{json}");
    Ok(())
}

fn load_spread(placements: &[(UnitName, MachineId)]) -> (usize, usize) {
    let mut per: BTreeMap<&MachineId, usize> = BTreeMap::new();
    for (_, m) in placements {
        *per.entry(m).or_default() += 1;
    }
    (
        per.values().min().copied().unwrap_or(0),
        per.values().max().copied().unwrap_or(0),
    )
}
