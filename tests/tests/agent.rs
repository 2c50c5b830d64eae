//! End-to-end: fleetd's agent and engine on real systemd in lab machines, driven with
//! the real fleetctl. Timings that matter to users are printed as figures.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use fleet_tests::*;

/// Short TTL so machine loss is detected quickly.
const AGENT_TTL_SECS: u64 = 3;

fn boot_fleet(test: &str, machines: usize) -> TestLab {
    let mut config = ClusterConfig::with_machines(&unique_name(test), machines);
    config.agent_ttl = format!("{AGENT_TTL_SECS}s");
    let lab = boot_config(&config);
    wait_until("every machine registered", Duration::from_secs(20), || {
        machines_listed(&lab).len() == machines
    });
    lab
}

/// Runs the host's fleetctl against the lab's etcd; (exit code, stdout, stderr).
fn fleetctl(lab: &Lab, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(target_dir().join("fleetctl"))
        .arg("--driver=etcd")
        .arg(format!("--endpoint={}", lab.etcd_url().expect("lab etcd")))
        .arg(format!("--etcd-key-prefix={}", lab.state().etcd_key_prefix))
        .args(admin_flags(lab))
        .args(args)
        .current_dir(unit_dir())
        .output()
        .expect("run fleetctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn fleetctl_ok(lab: &Lab, args: &[&str]) -> String {
    let (code, out, err) = fleetctl(lab, args);
    assert_eq!(code, 0, "fleetctl {args:?}: {out}{err}");
    out
}

/// A directory with the unit files the tests submit.
fn unit_dir() -> std::path::PathBuf {
    static DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("fleet-e2e-units-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sleeper =
            "[Unit]\nDescription=sleeper %i\n\n[Service]\nExecStart=/bin/sleep infinity\n";
        std::fs::write(dir.join("hello@.service"), sleeper).unwrap();
        std::fs::write(
            dir.join("solo.service"),
            "[Unit]\nDescription=solo\n\n[Service]\nExecStart=/bin/sleep infinity\n",
        )
        .unwrap();
        dir
    })
    .clone()
}

/// `fleetctl list-machines`: machine id prefix → IP.
fn machines_listed(lab: &Lab) -> BTreeMap<String, String> {
    let (_, out, _) = fleetctl(lab, &["list-machines", "--no-legend", "--full"]);
    out.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?.to_string(), f.next().unwrap_or("").to_string()))
        })
        .collect()
}

/// One row of `fleetctl list-units`.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    unit: String,
    machine: String,
    active: String,
    sub: String,
}

fn list_units(lab: &Lab) -> Vec<Row> {
    let (_, out, _) = fleetctl(
        lab,
        &[
            "list-units",
            "--no-legend",
            "--full",
            "--fields=unit,machine,active,sub",
        ],
    );
    out.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 4).then(|| Row {
                unit: f[0].into(),
                machine: f[1].split('/').next().unwrap_or("").into(),
                active: f[2].into(),
                sub: f[3].into(),
            })
        })
        .collect()
}

fn main_pid(lab: &Lab, node: &str, unit: &str) -> String {
    systemctl(lab, node, &format!("show -p MainPID --value {unit}"))
}

/// Units active in systemd on `node` among `units`.
fn active_on(lab: &Lab, node: &str, units: &[String]) -> usize {
    let (_, out, _) = sh(
        lab,
        node,
        &format!("systemctl is-active {} 2>/dev/null", units.join(" ")),
    );
    out.lines().filter(|l| *l == "active").count()
}

fn instances(range: std::ops::RangeInclusive<usize>) -> Vec<String> {
    range.map(|i| format!("hello@{i}.service")).collect()
}

#[test]
fn machines_register_and_units_run_where_fleetctl_says() {
    let lab = boot_fleet("agentflow", 3);
    let listed = machines_listed(&lab);
    for m in lab.machines() {
        assert_eq!(
            listed.get(&m.machine_id),
            Some(&m.ip.to_string()),
            "{listed:?}"
        );
    }

    // start: active per fleetctl and per systemctl inside the machine it names.
    let out = fleetctl_ok(&lab, &["start", "solo.service"]);
    assert!(out.contains("Unit solo.service launched on "), "{out}");
    let rows = list_units(&lab);
    assert_eq!(rows.len(), 1, "{rows:?}");
    let node = node_of(&lab, &rows[0].machine);
    wait_until("solo active in list-units", Duration::from_secs(5), || {
        list_units(&lab)
            .first()
            .is_some_and(|r| r.active == "active" && r.sub == "running")
    });
    assert_eq!(systemctl(&lab, &node, "is-active solo.service"), "active");
    assert_eq!(
        systemctl(&lab, &node, "is-enabled solo.service"),
        "linked-runtime"
    );

    // stop: still loaded in systemd, inactive.
    fleetctl_ok(&lab, &["stop", "solo.service"]);
    wait_until("solo stopped", Duration::from_secs(5), || {
        systemctl(&lab, &node, "is-active solo.service") == "inactive"
            && list_units(&lab)
                .first()
                .is_some_and(|r| r.active == "inactive")
    });
    // unload: gone from systemd and list-units.
    fleetctl_ok(&lab, &["unload", "solo.service"]);
    wait_until("solo unloaded", Duration::from_secs(5), || {
        list_units(&lab).is_empty()
            && sh(&lab, &node, "test -e /run/systemd/system/solo.service").0 != 0
    });
    fleetctl_ok(&lab, &["destroy", "solo.service"]);

    // Ten template instances spread least-loaded: 4/3/3.
    let units = instances(1..=10);
    let mut args = vec!["start"];
    args.extend(units.iter().map(String::as_str));
    fleetctl_ok(&lab, &args);
    wait_until("10 active", Duration::from_secs(10), || {
        let rows = list_units(&lab);
        rows.len() == 10 && rows.iter().all(|r| r.active == "active")
    });
    let mut per_machine: BTreeMap<String, usize> = BTreeMap::new();
    for r in list_units(&lab) {
        *per_machine.entry(r.machine.clone()).or_default() += 1;
        let node = node_of(&lab, &r.machine);
        assert_eq!(
            systemctl(&lab, &node, &format!("is-active {}", r.unit)),
            "active",
            "systemctl on {node} agrees with list-units for {}",
            r.unit
        );
    }
    let mut counts: Vec<usize> = per_machine.values().copied().collect();
    counts.sort();
    assert_eq!(counts, vec![3, 3, 4], "{per_machine:?}");
    let name = lab.down();
    assert_eq!(Lab::leftovers(&name), Vec::<String>::new());
}

#[test]
fn restarting_fleetd_restarts_no_unit() {
    let lab = boot_fleet("agentrestart", 2);
    let units = instances(1..=4);
    let mut args = vec!["start"];
    args.extend(units.iter().map(String::as_str));
    fleetctl_ok(&lab, &args);
    wait_until("4 active", Duration::from_secs(10), || {
        let rows = list_units(&lab);
        rows.len() == 4 && rows.iter().all(|r| r.active == "active")
    });
    let before: Vec<(Row, String, String)> = list_units(&lab)
        .into_iter()
        .map(|r| {
            let node = node_of(&lab, &r.machine);
            let pid = main_pid(&lab, &node, &r.unit);
            (r, node, pid)
        })
        .collect();

    // fleetd dies hard (crash, OOM, SIGKILL) and systemd restarts it.
    let registrations = |node: &str| -> usize {
        sh(
            &lab,
            node,
            "journalctl -u fleet -o cat | grep -c 'registered machine'",
        )
        .1
        .parse()
        .unwrap_or(0)
    };
    // Killed at several points between two lease renewals (every second with this
    // TTL), each restarted fleetd must take the lease back before it expires (systemd
    // restarts it after 1 s in the lab).
    for m in lab.machines() {
        for k in 0..4u64 {
            let before = registrations(&m.name);
            std::thread::sleep(Duration::from_millis(250 * k));
            let (code, _, err) = sh(&lab, &m.name, "systemctl kill -s KILL fleet.service");
            assert_eq!(code, 0, "{err}");
            wait_until("fleetd back", Duration::from_secs(10), || {
                registrations(&m.name) > before
            });
        }
        let (_, lost, _) = sh(
            &lab,
            &m.name,
            "journalctl -u fleet -o cat | grep -c 'cannot renew the lease of the previous fleetd'",
        );
        assert_eq!(
            lost.trim(),
            "0",
            "a restarted fleetd on {} found its lease expired",
            m.name
        );
    }
    // Let the new agents reconcile, then check nothing moved or restarted.
    std::thread::sleep(Duration::from_secs(AGENT_TTL_SECS + 1));
    for (r, node, pid) in &before {
        assert_ne!(pid, "0");
        assert_eq!(&main_pid(&lab, node, &r.unit), pid, "{} restarted", r.unit);
    }
    let after = list_units(&lab);
    assert_eq!(
        after,
        before.iter().map(|b| b.0.clone()).collect::<Vec<_>>()
    );
    let name = lab.down();
    assert_eq!(Lab::leftovers(&name), Vec::<String>::new());
}

#[test]
fn killed_machine_units_fail_over_within_ttl() {
    let mut lab = boot_fleet("agentkill", 3);
    let units = instances(1..=6);
    let mut args = vec!["start"];
    args.extend(units.iter().map(String::as_str));
    fleetctl_ok(&lab, &args);
    wait_until("6 active", Duration::from_secs(10), || {
        let rows = list_units(&lab);
        rows.len() == 6 && rows.iter().all(|r| r.active == "active")
    });
    let victim_id = list_units(&lab)[0].machine.clone();
    let victim = node_of(&lab, &victim_id);
    let moved: Vec<String> = list_units(&lab)
        .into_iter()
        .filter(|r| r.machine == victim_id)
        .map(|r| r.unit)
        .collect();
    let t0 = Instant::now();
    lab.kill(&victim).unwrap();
    let survivors: Vec<String> = lab
        .machines()
        .iter()
        .filter(|m| m.name != victim)
        .map(|m| m.name.clone())
        .collect();
    let limit = Duration::from_secs(AGENT_TTL_SECS + 2);
    wait_until(
        "units active elsewhere",
        limit + Duration::from_secs(10),
        || {
            survivors
                .iter()
                .map(|n| active_on(&lab, n, &units))
                .sum::<usize>()
                == 6
        },
    );
    let failover = t0.elapsed();
    eprintln!(
        "FIGURE failover: {} units of a killed machine active elsewhere after {:.2} s (agent_ttl {AGENT_TTL_SECS} s)",
        moved.len(),
        failover.as_secs_f64()
    );
    assert!(
        failover <= limit,
        "failover took {failover:?}, limit {limit:?}"
    );
    wait_until("list-units agrees", Duration::from_secs(5), || {
        let rows = list_units(&lab);
        rows.len() == 6
            && rows
                .iter()
                .all(|r| r.machine != victim_id && r.active == "active")
    });
    let name = lab.down();
    assert_eq!(Lab::leftovers(&name), Vec::<String>::new());
}

#[test]
fn partitioned_machine_ends_with_the_unit_running_exactly_once() {
    let mut lab = boot_fleet("agentcut", 3);
    fleetctl_ok(&lab, &["start", "solo.service"]);
    let first = list_units(&lab)[0].machine.clone();
    let node = node_of(&lab, &first);
    lab.cut(&node).unwrap();
    // The cluster moves it after the TTL; the cut machine still runs its copy.
    wait_until(
        "solo moved",
        Duration::from_secs(AGENT_TTL_SECS + 10),
        || {
            list_units(&lab)
                .first()
                .is_some_and(|r| r.machine != first && r.active == "active")
        },
    );
    lab.heal(&node).unwrap();
    let unit = vec!["solo.service".to_string()];
    let t0 = Instant::now();
    wait_until("exactly one copy", Duration::from_secs(20), || {
        let total: usize = lab
            .machines()
            .iter()
            .map(|m| active_on(&lab, &m.name, &unit))
            .sum();
        total == 1 && active_on(&lab, &node, &unit) == 0
    });
    eprintln!(
        "FIGURE partition: duplicate stopped {:.2} s after heal",
        t0.elapsed().as_secs_f64()
    );
    // The healed machine is back in the cluster.
    wait_until("healed machine listed", Duration::from_secs(10), || {
        machines_listed(&lab).contains_key(&first)
    });
    eprintln!(
        "FIGURE partition: healed machine listed again {:.2} s after heal",
        t0.elapsed().as_secs_f64()
    );
    let name = lab.down();
    assert_eq!(Lab::leftovers(&name), Vec::<String>::new());
}

#[test]
fn fifty_units_start_and_destroy_quickly() {
    let lab = boot_fleet("agent50", 3);
    let units = instances(1..=50);
    let mut args = vec!["start", "--no-block"];
    args.extend(units.iter().map(String::as_str));
    let t0 = Instant::now();
    fleetctl_ok(&lab, &args);
    wait_until("50 active in list-units", Duration::from_secs(30), || {
        let rows = list_units(&lab);
        rows.len() == 50 && rows.iter().all(|r| r.active == "active")
    });
    eprintln!(
        "FIGURE start: 50 units active on 3 machines {:.2} s after fleetctl start",
        t0.elapsed().as_secs_f64()
    );

    let mut args = vec!["destroy"];
    args.extend(units.iter().map(String::as_str));
    let t0 = Instant::now();
    fleetctl_ok(&lab, &args);
    let nodes: Vec<String> = lab.machines().iter().map(|m| m.name.clone()).collect();
    wait_until("50 gone", Duration::from_secs(10), || {
        list_units(&lab).is_empty() && nodes.iter().all(|n| active_on(&lab, n, &units) == 0)
    });
    // From the start of `fleetctl destroy`, not from its return.
    let gone = t0.elapsed();
    eprintln!(
        "FIGURE destroy: 50 units gone from list-units and systemd in {:.2} s",
        gone.as_secs_f64()
    );
    // The figure above is the measurement (0.6-1.2 s on an idle 2-core host); the
    // bound only catches a regression to per-unit work (one daemon-reload or txn per
    // unit), not the noise of a shared machine.
    assert!(gone <= Duration::from_secs(10), "destroy took {gone:?}");
    for n in &nodes {
        let (_, left, _) = sh(&lab, n, "ls /run/fleet/units/ | wc -l");
        assert_eq!(left, "0", "unit files left on {n}");
    }
    let name = lab.down();
    assert_eq!(Lab::leftovers(&name), Vec::<String>::new());
}

#[test]
fn global_units_run_on_every_machine() {
    let lab = boot_fleet("agentglobal", 3);
    std::fs::write(
        unit_dir().join("everywhere.service"),
        "[Unit]\nDescription=global\n\n[Service]\nExecStart=/bin/sleep infinity\n\n[X-Fleet]\nGlobal=true\n",
    )
    .unwrap();
    fleetctl_ok(&lab, &["start", "--no-block", "everywhere.service"]);
    let unit = vec!["everywhere.service".to_string()];
    wait_until("active on all 3", Duration::from_secs(10), || {
        lab.machines()
            .iter()
            .all(|m| active_on(&lab, &m.name, &unit) == 1)
            && list_units(&lab)
                .iter()
                .filter(|r| r.active == "active")
                .count()
                == 3
    });
    fleetctl_ok(&lab, &["destroy", "everywhere.service"]);
    wait_until("gone everywhere", Duration::from_secs(5), || {
        list_units(&lab).is_empty()
            && lab
                .machines()
                .iter()
                .all(|m| active_on(&lab, &m.name, &unit) == 0)
    });
    let name = lab.down();
    assert_eq!(Lab::leftovers(&name), Vec::<String>::new());
}

#[test]
fn sighup_reloads_without_restarting_units_and_sigterm_fences_them() {
    let lab = boot_fleet("agentsignals", 2);
    let units = instances(1..=4);
    let mut args = vec!["start"];
    args.extend(units.iter().map(String::as_str));
    fleetctl_ok(&lab, &args);
    let rows = list_units(&lab);
    let node = node_of(&lab, &rows[0].machine);
    let machine = rows[0].machine.clone();
    let mine: Vec<String> = rows
        .iter()
        .filter(|r| r.machine == machine)
        .map(|r| r.unit.clone())
        .collect();
    let pids: Vec<String> = mine.iter().map(|u| main_pid(&lab, &node, u)).collect();

    // SIGHUP: configuration reloaded, units untouched.
    sh(&lab, &node, "systemctl kill -s HUP fleet.service");
    wait_until("reload logged", Duration::from_secs(5), || {
        sh(&lab, &node, "journalctl -u fleet -o cat | grep -c 'Reloading configuration from /etc/fleet/fleet.conf'").1 == "1"
    });
    wait_until("re-registered after reload", Duration::from_secs(5), || {
        sh(
            &lab,
            &node,
            "journalctl -u fleet -o cat | grep -c 'registered machine'",
        )
        .1 == "2"
    });
    for (u, pid) in mine.iter().zip(&pids) {
        assert_eq!(&main_pid(&lab, &node, u), pid, "{u} restarted by SIGHUP");
    }
    assert!(machines_listed(&lab).contains_key(&machine));

    // SIGTERM (systemctl stop fleet): the units keep running until the fence fleetd
    // armed fires, before the lease expires; then the engine places them on the other
    // machine.
    sh(&lab, &node, "systemctl stop fleet.service");
    assert_eq!(
        active_on(&lab, &node, &mine),
        mine.len(),
        "units keep running when fleetd stops"
    );
    wait_until(
        "units fenced",
        Duration::from_secs(AGENT_TTL_SECS + 2),
        || active_on(&lab, &node, &mine) == 0,
    );
    wait_until("machine left, units moved", Duration::from_secs(10), || {
        let rows = list_units(&lab);
        !machines_listed(&lab).contains_key(&machine)
            && rows.len() == 4
            && rows
                .iter()
                .all(|r| r.machine != machine && r.active == "active")
    });
    let name = lab.down();
    assert_eq!(Lab::leftovers(&name), Vec::<String>::new());
}

/// `fleetctl restart` really restarts (new main PID, same machine) and starts a unit
/// that was stopped; an unknown unit is an error.
#[test]
fn restart_restarts_running_units_and_starts_stopped_ones() {
    let lab = boot_fleet("agentrestartcmd", 2);
    let units = instances(11..=12);
    let mut args = vec!["start"];
    args.extend(units.iter().map(String::as_str));
    fleetctl_ok(&lab, &args);
    let pids = |lab: &Lab| -> BTreeMap<String, (String, String)> {
        list_units(lab)
            .into_iter()
            .filter(|r| r.active == "active")
            .map(|r| {
                let node = node_of(lab, &r.machine);
                let pid = main_pid(lab, &node, &r.unit);
                (r.unit, (node, pid))
            })
            .collect()
    };
    wait_until("2 active", Duration::from_secs(10), || {
        pids(&lab).len() == 2
    });
    let before = pids(&lab);

    let mut args = vec!["restart"];
    args.extend(units.iter().map(String::as_str));
    let out = fleetctl_ok(&lab, &args);
    for u in &units {
        assert!(out.contains(&format!("Unit {u} loaded on")), "{out}");
        assert!(out.contains(&format!("Unit {u} launched on")), "{out}");
    }
    let after = pids(&lab);
    assert_eq!(after.len(), 2, "both active again after restart: {after:?}");
    for (unit, (node, pid)) in &before {
        let (node_after, pid_after) = &after[unit];
        assert_eq!(node, node_after, "{unit} stays on its machine");
        assert_ne!(pid, pid_after, "{unit} got a new main process");
    }

    // A stopped unit is started by restart.
    fleetctl_ok(&lab, &["stop", &units[0]]);
    fleetctl_ok(&lab, &["restart", &units[0]]);
    assert_eq!(pids(&lab).len(), 2);

    let (code, _, err) = fleetctl(&lab, &["restart", "nothere.service"]);
    assert_ne!(code, 0);
    assert!(err.contains("Units not found in registry"), "{err}");
}

/// fleet's TestDetectMachineId: a fleetd started with another machine's id does not
/// take that machine over, and its API refuses calls with fleet's message until it can
/// register; with its own id back, it serves again.
#[test]
fn duplicate_machine_id_never_registers_and_the_api_says_so() {
    let lab = boot_fleet("agentdupid", 2);
    let machines = lab.machines().to_vec();
    let (first, second) = (&machines[0], &machines[1]);
    let api = Fleetctl::api(&lab, &second.name, &unit_dir());
    api.ok(&["list-machines"]);

    let (code, _, err) = sh(
        &lab,
        &second.name,
        &format!(
            "systemctl set-environment FLEET_MACHINE_ID={} && systemctl restart fleet.service",
            first.machine_id
        ),
    );
    assert_eq!(code, 0, "{err}");
    wait_until(
        "the impostor's API to refuse calls",
        Duration::from_secs(20),
        || {
            let (code, _, err) = api.run(&["list-machines", "--no-legend"]);
            code == 1 && err.contains("fleet server unable to communicate with etcd")
        },
    );
    // The real machine keeps its registration; fleetd on the impostor keeps running.
    // The impostor's old identity stopped gracefully, so its record stays until its
    // lease expires (a restarted fleetd would have taken it back).
    wait_until(
        "only the real machine listed",
        Duration::from_secs(AGENT_TTL_SECS + 10),
        || machines_listed(&lab).keys().eq([&first.machine_id]),
    );
    assert_eq!(
        systemctl(&lab, &second.name, "is-active fleet.service"),
        "active"
    );

    let (code, _, err) = sh(
        &lab,
        &second.name,
        "systemctl unset-environment FLEET_MACHINE_ID && systemctl restart fleet.service",
    );
    assert_eq!(code, 0, "{err}");
    wait_until(
        "both machines registered again",
        Duration::from_secs(20),
        || machines_listed(&lab).len() == 2,
    );
    wait_until("the API to serve again", Duration::from_secs(20), || {
        api.run(&["list-machines", "--no-legend"]).0 == 0
    });
}
