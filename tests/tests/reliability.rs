//! End-to-end reliability: restarting fleetd restarts no unit; a fleetd that stays away
//! has its units fenced on its machine before the engine places them elsewhere; drain.
//! Figures (MainPIDs, overlap, drain time) are printed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fleet_tests::*;

const SLEEPER: &str =
    "[Unit]\nDescription=sleeper %i\n\n[Service]\nExecStart=/bin/sleep infinity\n";

fn instances(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("hello@{i}.service")).collect()
}

fn boot(test: &str, machines: usize, ttl_secs: u64) -> TestLab {
    let mut config = ClusterConfig::with_machines(&unique_name(test), machines);
    config.agent_ttl = format!("{ttl_secs}s");
    boot_registered(&config)
}

fn start_all(ctl: &Fleetctl, units: &[String]) {
    let mut args = vec!["start", "--no-block"];
    args.extend(units.iter().map(String::as_str));
    ctl.ok(&args);
    wait_until("every unit active", Duration::from_secs(60), || {
        let rows = ctl.active();
        units.iter().all(|u| rows.iter().any(|r| &r.unit == u))
    });
}

/// Where each unit runs according to fleetctl, with its MainPID there per systemd.
fn placement(lab: &Lab, ctl: &Fleetctl) -> BTreeMap<String, (String, String)> {
    ctl.units()
        .into_iter()
        .map(|r| {
            let node = node_of(lab, &r.machine);
            let pid = systemctl(
                lab,
                &node,
                &format!("show -p MainPID --value -- {}", r.unit),
            );
            (r.unit, (node, pid))
        })
        .collect()
}

/// How many of `units` systemd says are active on `node`.
fn active_on(lab: &Lab, node: &str, units: &[String]) -> usize {
    let (_, out, _) = sh(
        lab,
        node,
        &format!("systemctl is-active -- {} 2>/dev/null", units.join(" ")),
    );
    out.lines().filter(|l| *l == "active").count()
}

/// When systemd on `node` last logged `what` (`Started`, `Stopped`) for `unit`, in
/// seconds since the epoch: lab machines share the host's clock, so these compare
/// across machines. (A stopped unit's timestamps vanish when systemd unloads it.)
fn logged_at(lab: &Lab, node: &str, unit: &str, what: &str) -> f64 {
    let (_, out, _) = sh(
        lab,
        node,
        &format!(
            "journalctl -o short-unix --no-pager -u {unit} | grep -F -- ' {what} ' | tail -n 1"
        ),
    );
    out.split_whitespace()
        .next()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no '{what}' of {unit} on {node}: {out:?}"))
}

fn count_in_journal(lab: &Lab, node: &str, text: &str) -> usize {
    sh(
        lab,
        node,
        &format!("journalctl -u fleet -o cat | grep -c -- '{text}'"),
    )
    .1
    .parse()
    .unwrap_or(0)
}

fn fence_timers(lab: &Lab, node: &str) -> String {
    systemctl(
        lab,
        node,
        "list-units --all --no-legend --plain -- 'fleet-fence-*.timer'",
    )
}

/// `systemctl restart fleet.service` on the machine running a unit: same MainPID after,
/// nothing restarted or moved anywhere, the machine never leaves. Then fleetd stopped
/// for 2 x agent_ttl: its units are stopped on the machine (the fence) before they
/// start elsewhere, and each runs exactly once when fleetd comes back.
#[test]
fn fleetd_restart_restarts_nothing_and_a_stopped_fleetd_is_fenced() {
    const TTL: u64 = 6;
    let lab = boot("relrestart", 3, TTL);
    let dir = UnitDir::new(&[("hello@.service", SLEEPER)]);
    let ctl = Fleetctl::etcd(&lab, dir.path());
    let units = instances(6);
    start_all(&ctl, &units);
    let before = placement(&lab, &ctl);
    assert_eq!(before.len(), units.len(), "{before:?}");
    let (node, pid) = before["hello@1.service"].clone();
    assert_ne!(pid, "0");

    // 1. Restart: SIGTERM, then a new fleetd.
    let registrations = count_in_journal(&lab, &node, "registered machine");
    let restarted = Instant::now();
    let (code, _, err) = sh(&lab, &node, "systemctl restart fleet.service");
    assert_eq!(code, 0, "{err}");
    let back = wait_until("fleetd back", Duration::from_secs(20), || {
        count_in_journal(&lab, &node, "registered machine") > registrations
            && fence_timers(&lab, &node).is_empty()
    });
    // Past the point where the fence would have fired and the lease expired, had
    // either been left: the machine stays listed throughout.
    while restarted.elapsed() < Duration::from_secs(TTL + 3) {
        assert_eq!(ctl.machines().len(), 3, "a machine left during the restart");
        std::thread::sleep(Duration::from_millis(250));
    }
    let after = placement(&lab, &ctl);
    assert_eq!(after, before, "a unit moved or restarted");
    assert!(
        count_in_journal(&lab, &node, "disarmed the fence") >= 1,
        "the new fleetd disarmed the fence"
    );
    eprintln!(
        "fleetd restart: back and registered after {:.2} s; hello@1 MainPID {pid} before and {} after; 0 of {} units restarted",
        back.as_secs_f64(),
        after["hello@1.service"].1,
        units.len()
    );

    // 2. fleetd stopped for 2 x agent_ttl.
    let machine = ctl
        .units()
        .into_iter()
        .find(|r| r.unit == "hello@1.service")
        .map(|r| r.machine)
        .unwrap();
    let mine: Vec<String> = before
        .iter()
        .filter(|(_, (n, _))| *n == node)
        .map(|(u, _)| u.clone())
        .collect();
    let stopped = Instant::now();
    let (code, _, err) = sh(&lab, &node, "systemctl stop fleet.service");
    assert_eq!(code, 0, "{err}");
    assert_eq!(active_on(&lab, &node, &mine), mine.len(), "left running");
    wait_until("fenced", Duration::from_secs(TTL + 2), || {
        active_on(&lab, &node, &mine) == 0
    });
    let fenced = stopped.elapsed();
    wait_until(
        "units active elsewhere",
        Duration::from_secs(3 * TTL),
        || {
            let rows = ctl.active();
            mine.iter()
                .all(|u| rows.iter().any(|r| &r.unit == u && r.machine != machine))
        },
    );
    let moved = stopped.elapsed();
    let rows = ctl.units();
    let mut worst_overlap_ms = f64::MIN;
    for u in &mine {
        let new_node = node_of(&lab, &rows.iter().find(|r| &r.unit == u).unwrap().machine);
        let old_stop = logged_at(&lab, &node, u, "Stopped");
        let new_start = logged_at(&lab, &new_node, u, "Started");
        let overlap_ms = (old_stop - new_start) * 1000.0;
        worst_overlap_ms = worst_overlap_ms.max(overlap_ms);
        assert!(
            old_stop < new_start,
            "{u}: old copy on {node} stopped {overlap_ms:.0} ms after the new one on {new_node} started"
        );
    }
    eprintln!(
        "fleetd stopped (agent_ttl {TTL} s): {} units fenced after {:.2} s, active elsewhere after {:.2} s; overlap {worst_overlap_ms:.0} ms (negative: a gap)",
        mine.len(),
        fenced.as_secs_f64(),
        moved.as_secs_f64()
    );

    // fleetd back after 2 x agent_ttl: it unloads what moved; every unit runs once.
    while stopped.elapsed() < Duration::from_secs(2 * TTL) {
        std::thread::sleep(Duration::from_millis(250));
    }
    sh(&lab, &node, "systemctl start fleet.service");
    wait_until(
        "fleetd back, moved units unloaded",
        Duration::from_secs(20),
        || {
            ctl.machines().len() == 3
                && mine.iter().all(|u| {
                    systemctl(&lab, &node, &format!("show -p LoadState --value -- {u}"))
                        == "not-found"
                })
        },
    );
    for u in &units {
        let copies: usize = lab
            .machines()
            .iter()
            .map(|m| active_on(&lab, &m.name, std::slice::from_ref(u)))
            .sum();
        assert_eq!(copies, 1, "{u} runs {copies} times");
    }
    let end = placement(&lab, &ctl);
    for (u, (n, p)) in &before {
        if !mine.contains(u) {
            assert_eq!(&end[u], &(n.clone(), p.clone()), "{u} restarted or moved");
        }
    }
    let name = lab.down();
    assert_eq!(Lab::leftovers(&name), Vec::<String>::new());
}

/// How many times systemd on each machine started each of `units` (its journal).
fn starts(lab: &Lab, units: &[String]) -> BTreeMap<String, usize> {
    let mut count: BTreeMap<String, usize> = units.iter().map(|u| (u.clone(), 0)).collect();
    for m in lab.machines() {
        let (_, out, _) = sh(
            lab,
            &m.name,
            "journalctl -o cat --no-pager _PID=1 | grep '^Started hello@'",
        );
        for line in out.lines() {
            // "Started hello@3.service - sleeper 3."
            if let Some(unit) = line.split_whitespace().nth(1)
                && let Some(n) = count.get_mut(unit)
            {
                *n += 1;
            }
        }
    }
    count
}

/// `fleetctl drain` of a machine running 20 units: all of them active elsewhere, each
/// started once there (none twice), nothing else restarted, and no unit placed on it
/// until `undrain`. Through the etcd driver and the API driver.
#[test]
fn drain_moves_twenty_units_once_and_keeps_new_ones_away() {
    let lab = boot("reldrain", 3, 6);
    let dir = UnitDir::new(&[("hello@.service", SLEEPER)]);
    let ctl = Fleetctl::etcd(&lab, dir.path());
    let api = Fleetctl::api(&lab, "node2", dir.path());
    let node = |n: &str| {
        lab.machines()
            .iter()
            .find(|m| m.name == n)
            .map(|m| m.machine_id.clone())
            .unwrap()
    };
    let (m1, m2, m3) = (node("node1"), node("node2"), node("node3"));
    // Only node1 takes units: the 20 all land there.
    ctl.ok(&["drain", &m2]);
    api.ok(&["drain", &m3]);
    let units = instances(20);
    start_all(&ctl, &units);
    assert!(ctl.active().iter().all(|r| r.machine == m1));
    ctl.ok(&["undrain", &m2]);
    api.ok(&["undrain", &m3]);
    let before = placement(&lab, &ctl);

    let drained = Instant::now();
    // The drain waits until node1 runs none of them, saying where each went.
    let out = api.ok(&["drain", &m1[..8]]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        format!("Machine {m1} drained: its units move to other machines"),
        "{out}"
    );
    for u in &units {
        let off = format!("Unit {u} moved off {m1}");
        assert_eq!(lines.iter().filter(|l| **l == off).count(), 1, "{out}");
    }
    assert_eq!(
        active_on(&lab, "node1", &units),
        0,
        "stopped when drain returns"
    );
    wait_until("20 units active elsewhere", Duration::from_secs(60), || {
        let rows = ctl.active();
        rows.len() == 20 && rows.iter().all(|r| r.machine != m1)
    });
    let took = drained.elapsed();
    assert_eq!(active_on(&lab, "node1", &units), 0, "old copies stopped");
    let after = placement(&lab, &ctl);
    // journald writes "Started" a moment after systemd reports the unit active (a
    // loaded CI run once read the journals before one of them had it).
    wait_until(
        "each unit's second start in the journals",
        Duration::from_secs(30),
        || starts(&lab, &units).values().all(|n| *n >= 2),
    );
    let counts = starts(&lab, &units);
    for u in &units {
        assert_eq!(before[u].0, "node1");
        assert_ne!(after[u].0, "node1");
        assert_eq!(counts[u], 2, "{u}: started on node1, then once elsewhere");
    }
    let per_node = |n: &str| after.values().filter(|(x, _)| x == n).count();
    eprintln!(
        "drain: 20 units active elsewhere after {:.2} s (node2 {}, node3 {}); each started once there",
        took.as_secs_f64(),
        per_node("node2"),
        per_node("node3")
    );
    let listed = ctl.ok(&[
        "list-machines",
        "--no-legend",
        "--full",
        "--fields=machine,drained",
    ]);
    assert!(listed.contains(&format!("{m1}\tdrained")), "{listed}");
    assert!(listed.contains(&format!("{m2}\t-")), "{listed}");

    // New units stay away while drained; the drain does not end by itself.
    start_all(&ctl, &["hello@21.service".to_string()]);
    assert!(ctl.active().iter().all(|r| r.machine != m1));
    ctl.ok(&["undrain", &m1]);
    // Undrained: nothing moves back (stability), and node1 takes new units again.
    let extra: Vec<String> = (22..=27).map(|i| format!("hello@{i}.service")).collect();
    start_all(&ctl, &extra);
    assert!(
        ctl.active().iter().any(|r| r.machine == m1),
        "node1 takes units again"
    );
    let end = placement(&lab, &ctl);
    for u in &units {
        assert_eq!(end[u], after[u], "{u} moved or restarted after undrain");
    }
    let name = lab.down();
    assert_eq!(Lab::leftovers(&name), Vec::<String>::new());
}

const FENCED: &str = "[Unit]\nDescription=fenced %i\n\n[Service]\nExecStart=/bin/sleep infinity\n\n[X-Fleet]\nStopOnEtcdLoss=true\n";

/// A machine cut off from the network: its `StopOnEtcdLoss` units stop there once its
/// lease is lost (they run elsewhere by then), its other units keep running as in
/// fleet; healed, it unloads what moved and every unit runs exactly once.
#[test]
fn a_cut_machine_stops_only_its_stop_on_etcd_loss_units() {
    const TTL: u64 = 6;
    let mut lab = boot("relfence", 3, TTL);
    let dir = UnitDir::new(&[("hello@.service", SLEEPER), ("fenced@.service", FENCED)]);
    let ctl = Fleetctl::etcd(&lab, dir.path());
    let fenced: Vec<String> = (1..=6).map(|i| format!("fenced@{i}.service")).collect();
    let plain = instances(6);
    let all: Vec<String> = fenced.iter().chain(&plain).cloned().collect();
    start_all(&ctl, &all);
    let before = placement(&lab, &ctl);
    let node = before["fenced@1.service"].0.clone();
    let machine = lab
        .machines()
        .iter()
        .find(|m| m.name == node)
        .map(|m| m.machine_id.clone())
        .unwrap();
    let on_node = |units: &[String]| -> Vec<String> {
        units
            .iter()
            .filter(|u| before[*u].0 == node)
            .cloned()
            .collect()
    };
    let (my_fenced, my_plain) = (on_node(&fenced), on_node(&plain));
    assert!(
        !my_plain.is_empty(),
        "a plain unit on {node} too: {before:?}"
    );

    let cut = Instant::now();
    lab.cut(&node).unwrap();
    wait_until(
        "the fenced units stopped on the cut machine",
        Duration::from_secs(4 * TTL),
        || active_on(&lab, &node, &my_fenced) == 0,
    );
    let stopped = cut.elapsed();
    wait_until(
        "every unit active elsewhere",
        Duration::from_secs(4 * TTL),
        || {
            let rows = ctl.active();
            all.iter()
                .all(|u| rows.iter().any(|r| &r.unit == u && r.machine != machine))
        },
    );
    let moved = cut.elapsed();
    assert_eq!(
        active_on(&lab, &node, &my_plain),
        my_plain.len(),
        "units without StopOnEtcdLoss keep running there (fleet's default)"
    );
    let rows = ctl.units();
    let mut worst_overlap = f64::MIN;
    for u in &my_fenced {
        let new_node = node_of(&lab, &rows.iter().find(|r| &r.unit == u).unwrap().machine);
        let overlap =
            logged_at(&lab, &node, u, "Stopped") - logged_at(&lab, &new_node, u, "Started");
        worst_overlap = worst_overlap.max(overlap);
    }
    eprintln!(
        "cut (agent_ttl {TTL} s): {} StopOnEtcdLoss units stopped on the cut machine after {:.2} s, all units active elsewhere after {:.2} s; overlap {:.2} s (negative: a gap); {} plain units kept running there",
        my_fenced.len(),
        stopped.as_secs_f64(),
        moved.as_secs_f64(),
        worst_overlap,
        my_plain.len()
    );
    assert!(
        worst_overlap < TTL as f64 / 3.0 + 3.0,
        "overlap {worst_overlap:.2} s beyond the documented bound"
    );

    lab.heal(&node).unwrap();
    wait_until(
        "healed machine back, moved units unloaded there",
        Duration::from_secs(30),
        || {
            ctl.machines().len() == 3
                && all.iter().all(|u| {
                    systemctl(&lab, &node, &format!("show -p LoadState --value -- {u}"))
                        == "not-found"
                })
        },
    );
    for u in &all {
        let copies: usize = lab
            .machines()
            .iter()
            .map(|m| active_on(&lab, &m.name, std::slice::from_ref(u)))
            .sum();
        assert_eq!(copies, 1, "{u} runs {copies} times");
    }
    let name = lab.down();
    assert_eq!(Lab::leftovers(&name), Vec::<String>::new());
}
