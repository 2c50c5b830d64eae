//! A seeded chaos run: while a workload starts, stops and destroys units, faults are
//! injected one at a time (fleetd kills, restarts and stops, machine kills, partitions,
//! hung fleetds, slow links, etcd member and leader kills, quorum loss). After each
//! fault an invariant checker waits (bounded) until every launched unit runs exactly
//! once, where `list-units` says, and nothing else runs; MainPIDs are compared between
//! settles to count restarts that neither the workload nor a machine loss explains.
//!
//! `FLEET_CHAOS_SEED` (default: from the clock, printed) reproduces a run;
//! `FLEET_CHAOS_FAULTS` sets its length (default 10, the short run CI does).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use fleet_tests::*;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

const TTL: u64 = 3;
const SLEEPER: &str = "[Unit]\nDescription=chaos %i\n\n[Service]\nExecStart=/bin/sleep infinity\n";
/// How long the cluster may take to converge after a fault ends.
const SETTLE: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    FleetdKill,
    FleetdRestart,
    FleetdStop,
    MachineKill,
    Cut,
    Pause,
    Degrade,
    EtcdMemberKill,
    EtcdLeaderKill,
    QuorumLoss,
}

const FAULTS: [Fault; 10] = [
    Fault::FleetdKill,
    Fault::FleetdRestart,
    Fault::FleetdStop,
    Fault::MachineKill,
    Fault::Cut,
    Fault::Pause,
    Fault::Degrade,
    Fault::EtcdMemberKill,
    Fault::EtcdLeaderKill,
    Fault::QuorumLoss,
];

/// What the workload asked for.
#[derive(Default)]
struct Workload {
    next: usize,
    launched: BTreeSet<String>,
    /// Stopped (loaded) or destroyed: must run nowhere.
    idle: BTreeSet<String>,
}

/// Per fault kind: injected, converge times, unexplained restarts.
#[derive(Default)]
struct Figures {
    injected: usize,
    converge: Vec<f64>,
    restarts: usize,
    /// Moves explained by a lease the fault cost (a degraded link only).
    leases_lost: usize,
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// Every machine's view: unit → (node, MainPID) for the units systemd says are active.
fn running(lab: &Lab, units: &BTreeSet<String>) -> BTreeMap<String, Vec<(String, String)>> {
    let mut out: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    if units.is_empty() {
        return out;
    }
    let list: Vec<&str> = units.iter().map(String::as_str).collect();
    for m in lab.machines() {
        if !lab.is_running(&m.name).unwrap_or(false) {
            continue;
        }
        let (_, text, _) = sh(
            lab,
            &m.name,
            &format!(
                "for u in {}; do echo \"$u $(systemctl is-active -- $u) $(systemctl show -p MainPID --value -- $u)\"; done",
                list.join(" ")
            ),
        );
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() == 3 && f[1] == "active" {
                out.entry(f[0].to_string())
                    .or_default()
                    .push((m.name.clone(), f[2].to_string()));
            }
        }
    }
    out
}

/// What is wrong now; empty when the invariant holds.
fn violations(lab: &Lab, ctl: &Fleetctl, w: &Workload) -> Vec<String> {
    let all: BTreeSet<String> = w.launched.union(&w.idle).cloned().collect();
    let sd = running(lab, &all);
    let listed: BTreeMap<String, String> = ctl
        .active()
        .into_iter()
        .map(|r| (r.unit, node_of(lab, &r.machine)))
        .collect();
    let mut wrong = Vec::new();
    for u in &w.launched {
        match sd.get(u).map(Vec::as_slice) {
            Some([(node, _)]) if listed.get(u) == Some(node) => {}
            Some([(node, _)]) => wrong.push(format!(
                "{u} runs on {node}, list-units says {:?}",
                listed.get(u)
            )),
            Some(copies) => wrong.push(format!("{u} runs {} times: {copies:?}", copies.len())),
            None => wrong.push(format!("{u} runs nowhere")),
        }
    }
    for u in &w.idle {
        if let Some(copies) = sd.get(u) {
            wrong.push(format!("{u} should not run but runs on {copies:?}"));
        }
    }
    wrong
}

fn workload_step(rng: &mut StdRng, ctl: &Fleetctl, w: &mut Workload) -> BTreeSet<String> {
    let mut touched = BTreeSet::new();
    // Only units placed before this step can be stopped (fleetctl refuses to stop a
    // unit that is on no machine yet).
    let mut settled = w.launched.clone();
    for _ in 0..rng.random_range(1..=3usize) {
        let op = rng.random_range(0..10u32);
        let pick = |rng: &mut StdRng, set: &BTreeSet<String>| -> Option<String> {
            (!set.is_empty()).then(|| set.iter().nth(rng.random_range(0..set.len())).cloned())?
        };
        if op < 6 || settled.len() < 4 {
            w.next += 1;
            let u = format!("chaos@{}.service", w.next);
            ctl.ok(&["start", "--no-block", &u]);
            w.launched.insert(u.clone());
            touched.insert(u);
        } else if op < 8 {
            if let Some(u) = pick(rng, &settled) {
                settled.remove(&u);
                ctl.ok(&["stop", "--no-block", &u]);
                w.launched.remove(&u);
                w.idle.insert(u.clone());
                touched.insert(u);
            }
        } else if let Some(u) = pick(rng, &settled) {
            settled.remove(&u);
            ctl.ok(&["destroy", &u]);
            w.launched.remove(&u);
            w.idle.insert(u.clone());
            touched.insert(u);
        }
    }
    touched
}

/// Whether `node`'s fleetd found its lease gone within the last `since` (and a few
/// seconds before).
fn lease_lost_since(lab: &Lab, node: &str, since: Duration) -> bool {
    let secs = since.as_secs() + 5;
    let (_, out, _) = sh(
        lab,
        node,
        &format!(
            "journalctl -u fleet.service --no-pager --since -{secs}s | grep -c -- \"the agent's lease is gone\" || true"
        ),
    );
    out.trim().parse::<u32>().unwrap_or(0) > 0
}

/// Prints every running machine's fleetd log of the last `since` (and a few seconds
/// before), so a failed run says what fleetd did about it.
fn journals_since(lab: &Lab, since: Duration) {
    let secs = since.as_secs() + 5;
    for m in lab.machines() {
        if !lab.is_running(&m.name).unwrap_or(false) {
            continue;
        }
        let (_, out, _) = sh(
            lab,
            &m.name,
            &format!(
                "journalctl -u fleet.service -o short-precise --no-pager --since -{secs}s | tail -n 120"
            ),
        );
        eprintln!("---- {} fleetd, last {secs} s ----\n{out}", m.name);
    }
}

/// Injects one fault and ends it; returns the nodes whose units may legitimately move
/// (they lost their lease or the machine died).
fn inject(rng: &mut StdRng, lab: &mut TestLab, fault: Fault) -> BTreeSet<String> {
    let nodes: Vec<String> = lab.machines().iter().map(|m| m.name.clone()).collect();
    let node = nodes[rng.random_range(0..nodes.len())].clone();
    eprintln!("chaos: {fault:?} on {node}");
    let members: Vec<String> = lab.etcd_members().iter().map(|m| m.name.clone()).collect();
    let away = Duration::from_secs(2 * TTL);
    let mut lost = BTreeSet::new();
    match fault {
        Fault::FleetdKill => {
            sh(lab, &node, "systemctl kill -s KILL fleet.service");
        }
        Fault::FleetdRestart => {
            sh(lab, &node, "systemctl restart fleet.service");
        }
        Fault::FleetdStop => {
            sh(lab, &node, "systemctl stop fleet.service");
            std::thread::sleep(away);
            sh(lab, &node, "systemctl start fleet.service");
            lost.insert(node);
        }
        Fault::MachineKill => {
            lab.kill(&node).unwrap();
            std::thread::sleep(away);
            lab.restart(&node, Duration::from_secs(60)).unwrap();
            lost.insert(node);
        }
        Fault::Cut => {
            lab.cut(&node).unwrap();
            std::thread::sleep(away);
            lab.heal(&node).unwrap();
            lost.insert(node);
        }
        Fault::Pause => {
            lab.pause(&node).unwrap();
            std::thread::sleep(away);
            lab.resume(&node).unwrap();
            lost.insert(node);
        }
        Fault::Degrade => {
            lab.degrade(&node, Some(Duration::from_millis(200)), Some(5))
                .unwrap();
            std::thread::sleep(away);
            lab.restore(&node).unwrap();
        }
        Fault::EtcdMemberKill | Fault::EtcdLeaderKill => {
            let member = match fault {
                Fault::EtcdLeaderKill => lab.etcd_leader().unwrap_or_else(|| members[0].clone()),
                _ => members[rng.random_range(0..members.len())].clone(),
            };
            lab.etcd_kill(&member).unwrap();
            std::thread::sleep(away);
            lab.etcd_start(&member).unwrap();
        }
        Fault::QuorumLoss => {
            let down = &members[..members.len() / 2 + 1];
            for m in down {
                lab.etcd_kill(m).unwrap();
            }
            std::thread::sleep(away);
            for m in down {
                lab.etcd_start(m).unwrap();
            }
        }
    }
    lost
}

#[test]
fn seeded_chaos_run_keeps_every_unit_running_exactly_once() {
    let seed = env_u64("FLEET_CHAOS_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs())
    });
    let faults = env_u64("FLEET_CHAOS_FAULTS").unwrap_or(10) as usize;
    eprintln!("chaos: seed {seed} (FLEET_CHAOS_SEED={seed} reproduces this run), {faults} faults");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut config = ClusterConfig::with_machines(&unique_name("chaos"), 3);
    config.agent_ttl = format!("{TTL}s");
    config.etcd_members = 3;
    let mut lab = boot_registered(&config);
    let dir = UnitDir::new(&[("chaos@.service", SLEEPER)]);
    let ctl = Fleetctl::etcd(&lab, dir.path());
    let mut w = Workload::default();
    let started = Instant::now();
    let mut figures: BTreeMap<Fault, Figures> = BTreeMap::new();
    let mut failures: Vec<String> = Vec::new();
    let mut last: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();

    let mut previous: Option<Fault> = None;
    let mut previous_injected = Instant::now();
    for i in 0..faults {
        let touched = workload_step(&mut rng, &ctl, &mut w);
        let fault = FAULTS[rng.random_range(0..FAULTS.len())];
        let injected = Instant::now();
        let (prev, prev_injected) = (previous.replace(fault), previous_injected);
        previous_injected = injected;
        let lost = inject(&mut rng, &mut lab, fault);
        let ended = Instant::now();
        // The invariant must hold again within SETTLE of the fault's end.
        // Time to converge: until the start of the check that passed (a check itself
        // takes a second or two).
        let mut checked = Instant::now();
        let mut wrong = violations(&lab, &ctl, &w);
        while !wrong.is_empty() && ended.elapsed() < SETTLE {
            std::thread::sleep(Duration::from_millis(200));
            checked = Instant::now();
            wrong = violations(&lab, &ctl, &w);
        }
        let converge = (checked - ended).as_secs_f64();
        let f = figures.entry(fault).or_default();
        f.injected += 1;
        if !wrong.is_empty() {
            failures.push(format!("fault {i} {fault:?} (seed {seed}): {wrong:?}"));
            continue;
        }
        f.converge.push(converge);
        // Restarts: a unit (already running before this fault, untouched by the
        // workload) on another node or with another MainPID, whose node did not lose
        // its lease or die.
        let now = running(&lab, &w.launched);
        for (u, copies) in &now {
            let Some(before) = last.get(u) else { continue };
            if touched.contains(u) || before == copies {
                continue;
            }
            if before.iter().any(|(n, _)| lost.contains(n)) {
                continue;
            }
            // A degraded link (200 ms each way, 5 % loss) can cost a 3 s lease: then
            // the engine moved the units of a machine that was gone for a TTL, as
            // designed. Counted and printed, not hidden; other faults get no such pass.
            // The move may land after the degraded fault's own check: the previous
            // fault counts too.
            if (fault == Fault::Degrade || prev == Some(Fault::Degrade))
                && let Some((n, _)) = before
                    .iter()
                    .find(|(n, _)| lease_lost_since(&lab, n, prev_injected.elapsed()))
            {
                f.leases_lost += 1;
                eprintln!(
                    "chaos: fault {i} {fault:?}: {n} lost its lease on the degraded link; {u} moved: {before:?} -> {copies:?}"
                );
                continue;
            }
            f.restarts += 1;
            eprintln!("chaos: fault {i} {fault:?}: {u} restarted: {before:?} -> {copies:?}");
            journals_since(&lab, injected.elapsed());
        }
        last = now;
        eprintln!(
            "chaos: fault {i} {fault:?} injected for {:.1} s, converged {converge:.1} s after",
            (ended - injected).as_secs_f64()
        );
    }

    eprintln!(
        "chaos: seed {seed}, {faults} faults in {:.0} s, {} units launched at the end",
        started.elapsed().as_secs_f64(),
        w.launched.len()
    );
    eprintln!(
        "{:<16} {:>8} {:>11} {:>11} {:>9} {:>12}",
        "FAULT", "INJECTED", "CONVERGE.MAX", "CONVERGE.AVG", "RESTARTS", "LEASES.LOST"
    );
    let mut unexplained = 0;
    for (fault, f) in &figures {
        let max = f.converge.iter().cloned().fold(0.0, f64::max);
        let avg = f.converge.iter().sum::<f64>() / f.converge.len().max(1) as f64;
        unexplained += f.restarts;
        eprintln!(
            "{:<16} {:>8} {:>10.1}s {:>10.1}s {:>9} {:>12}",
            format!("{fault:?}"),
            f.injected,
            max,
            avg,
            f.restarts,
            f.leases_lost
        );
    }
    eprintln!(
        "chaos: {} violations, {unexplained} unexplained restarts",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "invariant violations:\n{}",
        failures.join("\n")
    );
    assert_eq!(
        unexplained, 0,
        "restarts no fault or workload explains (seed {seed})"
    );
    let name = lab.down();
    assert_eq!(Lab::leftovers(&name), Vec::<String>::new());
}
