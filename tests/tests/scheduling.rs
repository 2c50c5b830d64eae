//! End-to-end: fleet's scheduling rules on real systemd in lab machines (ports of the
//! functional tests in fleet's `scheduling_test.go`, plus metadata AND/OR and a failing
//! unit). Every placement `fleetctl list-units` reports is checked against `systemctl`
//! inside the machine it names.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use fleet_tests::*;

/// Short TTL so a lost machine is noticed quickly.
const AGENT_TTL: &str = "3s";

fn config(test: &str, machines: usize) -> ClusterConfig {
    let mut config = ClusterConfig::with_machines(&unique_name(test), machines);
    config.agent_ttl = AGENT_TTL.to_string();
    config
}

/// A long-running service with `x_fleet` as its `[X-Fleet]` section (none if empty).
fn unit(description: &str, x_fleet: &str) -> String {
    let mut text =
        format!("[Unit]\nDescription={description}\n\n[Service]\nExecStart=/bin/sleep infinity\n");
    if !x_fleet.is_empty() {
        text.push_str(&format!("\n[X-Fleet]\n{x_fleet}\n"));
    }
    text
}

/// Checks every row of `list-units` against systemd in the machine it names.
fn assert_systemd_agrees(lab: &Lab, rows: &[UnitRow]) {
    for r in rows {
        let node = node_of(lab, &r.machine);
        assert_eq!(
            systemctl(lab, &node, &format!("is-active {}", r.unit)),
            r.active,
            "systemctl on {node} disagrees with list-units about {}",
            r.unit
        );
    }
}

/// unit → machine of the active rows.
fn placement(ctl: &Fleetctl) -> BTreeMap<String, String> {
    ctl.active()
        .into_iter()
        .map(|r| (r.unit, r.machine))
        .collect()
}

/// Asserts `cond` holds at every observation over `span` (for rules that forbid
/// something from happening, e.g. a fourth conflicting unit starting).
fn holds_for(what: &str, span: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < span {
        assert!(cond(), "{what} stopped holding after {:?}", start.elapsed());
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn wait_active(ctl: &Fleetctl, n: usize, limit: Duration) {
    wait_until(&format!("{n} active units"), limit, || {
        ctl.active().len() == n
    });
}

#[test]
fn machine_of_co_locates_and_followers_move_with_their_peer() {
    let mut files = Vec::new();
    for i in 0..3 {
        files.push((format!("ping.{i}.service"), unit(&format!("ping {i}"), "")));
        files.push((
            format!("pong.{i}.service"),
            unit(&format!("pong {i}"), &format!("MachineOf=ping.{i}.service")),
        ));
    }
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let dir = UnitDir::new(&refs);
    let mut lab = boot_registered(&config("machineof", 3));
    let ctl = Fleetctl::etcd(&lab, dir.path());
    for i in 0..3 {
        ctl.ok(&[
            "start",
            "--no-block",
            &format!("ping.{i}.service"),
            &format!("pong.{i}.service"),
        ]);
    }
    assert_eq!(ctl.unit_files().len(), 6);
    wait_active(&ctl, 6, Duration::from_secs(20));
    let before = placement(&ctl);
    for i in 0..3 {
        assert_eq!(
            before[&format!("pong.{i}.service")],
            before[&format!("ping.{i}.service")],
            "pong.{i} not with ping.{i}: {before:?}"
        );
    }
    assert_systemd_agrees(&lab, &ctl.units());

    // Hard-kill ping.1's machine: ping.1 moves and pong.1 follows it.
    let lost = before["ping.1.service"].clone();
    let lost_node = node_of(&lab, &lost);
    lab.kill(&lost_node).unwrap();
    wait_until(
        "ping.1 and pong.1 active together elsewhere",
        Duration::from_secs(20),
        || {
            let now = placement(&ctl);
            now.len() == 6
                && now.values().all(|m| m != &lost)
                && now["ping.1.service"] == now["pong.1.service"]
        },
    );
    assert_eq!(ctl.machines().len(), 2);
    let after = placement(&ctl);
    for i in 0..3 {
        assert_eq!(
            after[&format!("pong.{i}.service")],
            after[&format!("ping.{i}.service")],
            "{after:?}"
        );
    }
    assert_systemd_agrees(&lab, &ctl.units());
    let name = lab.down();
    assert_eq!(Lab::leftovers(&name), Vec::<String>::new());
}

#[test]
fn conflicts_keep_units_apart() {
    let conflict = unit("Test Unit", "Conflicts=conflict.*.service");
    let multi_line = unit(
        "multiple",
        "Conflicts=conflict.2.service conflict.1.service conflict.0.service",
    );
    let repeated = unit(
        "multiple",
        "Conflicts=conflict.2.service\nConflicts=conflict.1.service\nConflicts=conflict.0.service",
    );
    let names: Vec<String> = (0..5).map(|i| format!("conflict.{i}.service")).collect();
    let mut files: Vec<(&str, &str)> = names
        .iter()
        .map(|n| (n.as_str(), conflict.as_str()))
        .collect();
    files.push(("conflict.multiple.0.service", &multi_line));
    files.push(("conflict.multiple.1.service", &multi_line));
    files.push(("conflict.multiple.2.service", &repeated));
    let dir = UnitDir::new(&files);
    let lab = boot_registered(&config("conflicts", 3));
    let ctl = Fleetctl::etcd(&lab, dir.path());

    // Five mutually conflicting units on three machines: exactly three run, apart.
    for n in &names {
        ctl.ok(&["start", "--no-block", n]);
    }
    assert_eq!(ctl.unit_files().len(), 5);
    wait_active(&ctl, 3, Duration::from_secs(20));
    holds_for(
        "three conflicting units on three machines",
        Duration::from_secs(3),
        || {
            let rows = ctl.units();
            let machines: BTreeSet<&String> = rows.iter().map(|r| &r.machine).collect();
            rows.len() == 3 && machines.len() == 3 && rows.iter().all(|r| r.active == "active")
        },
    );
    assert_systemd_agrees(&lab, &ctl.units());
    for m in lab.machines() {
        let (_, out, _) = sh(
            &lab,
            &m.name,
            "systemctl list-units --no-legend --state=active 'conflict.*' | wc -l",
        );
        assert_eq!(out, "1", "conflict units active on {}", m.name);
    }
    let mut args = vec!["destroy"];
    args.extend(names.iter().map(String::as_str));
    ctl.ok(&args);
    wait_until("conflict units gone", Duration::from_secs(10), || {
        ctl.units().is_empty()
    });

    // Conflicts given as one space-separated value and as repeated keys both parse.
    ctl.ok(&[
        "start",
        "--no-block",
        "conflict.multiple.0.service",
        "conflict.multiple.1.service",
        "conflict.multiple.2.service",
    ]);
    assert_eq!(ctl.unit_files().len(), 3);
    wait_active(&ctl, 3, Duration::from_secs(20));
    let spread: BTreeSet<String> = placement(&ctl).into_values().collect();
    assert_eq!(spread.len(), 3, "{:?}", ctl.units());
    // Each multiple.N conflicts with conflict.0..2 (conflicts bind both ways): with one
    // of them on every machine, a conflict.0 that declares nothing itself has nowhere
    // to go unless a parser dropped a value.
    dir.write("conflict.0.service", &unit("plain", ""));
    ctl.ok(&["start", "--no-block", "conflict.0.service"]);
    holds_for("conflict.0 unplaceable", Duration::from_secs(3), || {
        ctl.units().iter().all(|r| r.unit != "conflict.0.service")
    });
    let mut all = vec!["destroy", "conflict.0.service"];
    all.extend([
        "conflict.multiple.0.service",
        "conflict.multiple.1.service",
        "conflict.multiple.2.service",
    ]);
    ctl.ok(&all);
    wait_until("all gone", Duration::from_secs(10), || {
        ctl.units().is_empty()
    });

    // Conflicting global units: the one already running keeps every machine.
    let global = unit("global", "Global=true\nConflicts=conflict-global.*.service");
    dir.write("conflict-global.0.service", &global);
    dir.write("conflict-global.1.service", &global);
    ctl.ok(&["start", "--no-block", "conflict-global.0.service"]);
    wait_active(&ctl, 3, Duration::from_secs(10));
    ctl.ok(&["start", "--no-block", "conflict-global.1.service"]);
    holds_for(
        "conflict-global.1 runs nowhere",
        Duration::from_secs(3),
        || {
            let active = ctl.active();
            active.len() == 3 && active.iter().all(|r| r.unit == "conflict-global.0.service")
        },
    );
    assert_systemd_agrees(&lab, &ctl.units());
    let name = lab.down();
    assert_eq!(Lab::leftovers(&name), Vec::<String>::new());
}

/// Only one side declares the conflict, and it binds both (fleet's
/// TestScheduleOneWayConflict, on one machine).
#[test]
fn a_one_way_conflict_binds_both_units() {
    let dir = UnitDir::new(&[
        ("hello.service", &unit("hello", "")),
        (
            "conflicts-with-hello.service",
            &unit("one-way", "Conflicts=hello.service"),
        ),
    ]);
    let lab = boot_registered(&config("oneway", 1));
    let ctl = Fleetctl::etcd(&lab, dir.path());
    ctl.ok(&["start", "conflicts-with-hello.service"]);
    wait_active(&ctl, 1, Duration::from_secs(10));
    ctl.ok(&["start", "--no-block", "hello.service"]);
    assert_eq!(ctl.unit_files().len(), 2);
    holds_for("hello kept off the machine", Duration::from_secs(3), || {
        let active = ctl.active();
        active.len() == 1 && active[0].unit == "conflicts-with-hello.service"
    });
    assert_ne!(
        systemctl(&lab, "node1", "is-active hello.service"),
        "active"
    );
    ctl.ok(&["destroy", "conflicts-with-hello.service"]);
    wait_until(
        "hello runs once the conflict is gone",
        Duration::from_secs(10),
        || {
            let active = ctl.active();
            active.len() == 1 && active[0].unit == "hello.service"
        },
    );
    assert_systemd_agrees(&lab, &ctl.units());
    let name = lab.down();
    assert_eq!(Lab::leftovers(&name), Vec::<String>::new());
}

#[test]
fn machine_metadata_and_or_and_global_units() {
    let group = |name: &str, meta: &[(&str, &str)]| MachineGroup {
        name: name.to_string(),
        count: 1,
        metadata: meta
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        packages: Vec::new(),
    };
    let mut config = config("metadata", 1);
    config.groups = vec![
        group(
            "weast%d",
            &[("role", "web"), ("region", "east"), ("host", "weast")],
        ),
        group(
            "wwest%d",
            &[("role", "web"), ("region", "west"), ("host", "wwest")],
        ),
        group(
            "db%d",
            &[("role", "db"), ("region", "east"), ("host", "db")],
        ),
    ];
    let dir = UnitDir::new(&[
        // Different keys: AND.
        (
            "and@.service",
            &unit(
                "and %i",
                "MachineMetadata=role=web\nMachineMetadata=region=west",
            ),
        ),
        // Same key: OR (on separate lines and in one quoted value); then AND region.
        (
            "or@.service",
            &unit(
                "or %i",
                "MachineMetadata=role=db\nMachineMetadata=\"role=web\" \"region=east\"",
            ),
        ),
        (
            "nowhere.service",
            &unit("nowhere", "MachineMetadata=role=cache"),
        ),
        // A specifier in the requirement (fleet's metadata@.service).
        ("meta@.service", &unit("meta %i", "MachineMetadata=host=%i")),
        (
            "gweb.service",
            &unit("global web", "Global=true\nMachineMetadata=role=web"),
        ),
        ("gall.service", &unit("global", "Global=true")),
    ]);
    let lab = boot_registered(&config);
    let ctl = Fleetctl::etcd(&lab, dir.path());
    let id = |node: &str| {
        lab.machines()
            .iter()
            .find(|m| m.name == node)
            .unwrap()
            .machine_id
            .clone()
    };
    let (weast, wwest, db) = (id("weast1"), id("wwest1"), id("db1"));

    ctl.ok(&[
        "start",
        "--no-block",
        "and@1.service",
        "and@2.service",
        "or@1.service",
        "or@2.service",
        "or@3.service",
        "or@4.service",
        "nowhere.service",
    ]);
    wait_active(&ctl, 6, Duration::from_secs(20));
    let placed = placement(&ctl);
    for i in 1..=2 {
        assert_eq!(placed[&format!("and@{i}.service")], wwest, "{placed:?}");
    }
    let or_machines: BTreeSet<&String> = (1..=4)
        .map(|i| &placed[&format!("or@{i}.service")])
        .collect();
    assert_eq!(
        or_machines,
        BTreeSet::from([&weast, &db]),
        "(role=db OR role=web) AND region=east: {placed:?}"
    );
    holds_for("nowhere.service unplaced", Duration::from_secs(2), || {
        ctl.units().iter().all(|r| r.unit != "nowhere.service")
    });
    assert_eq!(ctl.unit_files()["nowhere.service"], "launched");
    assert_systemd_agrees(&lab, &ctl.units());

    // Global units: on every machine matching their metadata, or on all of them.
    ctl.ok(&["start", "--no-block", "gweb.service", "gall.service"]);
    wait_active(&ctl, 11, Duration::from_secs(20));
    let rows = ctl.active();
    let on = |unit: &str| -> BTreeSet<String> {
        rows.iter()
            .filter(|r| r.unit == unit)
            .map(|r| r.machine.clone())
            .collect()
    };
    assert_eq!(
        on("gweb.service"),
        BTreeSet::from([weast.clone(), wwest.clone()])
    );
    assert_eq!(
        on("gall.service"),
        BTreeSet::from([weast.clone(), wwest.clone(), db.clone()])
    );
    assert_systemd_agrees(&lab, &rows);
    assert_ne!(systemctl(&lab, "db1", "is-active gweb.service"), "active");

    // MachineMetadata=host=%i: each instance on the machine its instance names.
    ctl.ok(&[
        "start",
        "--no-block",
        "meta@db.service",
        "meta@wwest.service",
        "meta@weast.service",
    ]);
    wait_active(&ctl, 14, Duration::from_secs(20));
    let placed = placement(&ctl);
    for (host, machine) in [("weast", &weast), ("wwest", &wwest), ("db", &db)] {
        assert_eq!(
            &placed[&format!("meta@{host}.service")],
            machine,
            "{placed:?}"
        );
    }
    let name = lab.down();
    assert_eq!(Lab::leftovers(&name), Vec::<String>::new());
}

#[test]
fn a_failing_unit_shows_failed_and_stays_put() {
    let dir = UnitDir::new(&[
        (
            "broken.service",
            "[Unit]\nDescription=fails at once\n\n[Service]\nExecStart=/bin/bash -c \"echo broken-ran; exit 3\"\n",
        ),
        ("fine@.service", &unit("fine %i", "")),
    ]);
    let lab = boot_registered(&config("failed", 3));
    let ctl = Fleetctl::etcd(&lab, dir.path());
    ctl.ok(&[
        "start",
        "--no-block",
        "broken.service",
        "fine@1.service",
        "fine@2.service",
    ]);
    wait_until("broken.service failed", Duration::from_secs(20), || {
        ctl.units()
            .iter()
            .any(|r| r.unit == "broken.service" && r.active == "failed")
    });
    wait_active(&ctl, 2, Duration::from_secs(10));
    let row = ctl
        .units()
        .into_iter()
        .find(|r| r.unit == "broken.service")
        .unwrap();
    assert_eq!(row.sub, "failed");
    let node = node_of(&lab, &row.machine);
    assert_eq!(systemctl(&lab, &node, "is-active broken.service"), "failed");
    let before = ctl.units();
    // No restart storm: neither fleet nor systemd runs it again, and it does not move.
    holds_for("the cluster stays as it is", Duration::from_secs(5), || {
        ctl.units() == before
    });
    let (_, runs, _) = sh(
        &lab,
        &node,
        "journalctl -u broken.service -o cat | grep -c broken-ran",
    );
    assert_eq!(runs, "1", "broken.service ran more than once");
    assert_eq!(ctl.unit_files()["broken.service"], "launched");
    // What a user does next: read its journal and status through fleet.
    let out = ctl.ok(&["journal", "--output=cat", "broken.service"]);
    assert!(out.contains("broken-ran"), "{out}");
    let (_, out, err) = ctl.run(&["status", "broken.service"]);
    assert!(out.contains("Active: failed"), "{out}{err}");
    assert_systemd_agrees(&lab, &before);
    for m in lab.machines() {
        if m.name != node {
            assert_eq!(
                sh(
                    &lab,
                    &m.name,
                    "journalctl -u broken.service -o cat | grep -c broken-ran"
                )
                .1,
                "0",
                "broken.service also ran on {}",
                m.name
            );
        }
    }
    let name = lab.down();
    assert_eq!(Lab::leftovers(&name), Vec::<String>::new());
}

#[test]
fn machine_id_pins_and_replaces_displaces() {
    let dir = UnitDir::new(&[
        ("pin@.service", &unit("pinned to %i", "MachineID=%i")),
        ("replace.0.service", &unit("replace 0", "")),
        ("replace.1.service", &unit("replace 1", "")),
        (
            "replace.2.service",
            &unit("replace 2", "MachineOf=replace.1.service"),
        ),
        (
            "replace-kick0.service",
            &unit("kick 0", "Replaces=replace.0.service"),
        ),
    ]);
    let lab = boot_registered(&config("pinreplace", 2));
    let ctl = Fleetctl::etcd(&lab, dir.path());

    // MachineID=%i: each instance on the machine its instance names (started in
    // reverse order so least-loaded placement alone would not get it right).
    let ids: Vec<String> = lab
        .machines()
        .iter()
        .map(|m| m.machine_id.clone())
        .collect();
    for id in ids.iter().rev() {
        ctl.ok(&["start", &format!("pin@{id}.service")]);
    }
    ctl.ok(&["start", "--no-block", "pin@nosuchmachine.service"]);
    wait_active(&ctl, 2, Duration::from_secs(10));
    for (unit, machine) in placement(&ctl) {
        assert_eq!(unit, format!("pin@{machine}.service"));
    }
    holds_for("pin@nosuchmachine unplaced", Duration::from_secs(2), || {
        ctl.units().len() == 2
    });
    // fleet also matched the 8-character short id.
    let short = format!("pin@{}.service", &ids[0][..8]);
    ctl.ok(&["start", &short]);
    assert_eq!(placement(&ctl)[&short], ids[0]);
    ctl.ok(&["destroy", &short]);
    // destroy does not wait: compare once the agent has unloaded it.
    wait_until("the short pin gone", Duration::from_secs(10), || {
        ctl.units().iter().all(|r| r.unit != short)
    });
    assert_systemd_agrees(&lab, &ctl.units());
    let mut args = vec!["destroy", "pin@nosuchmachine.service"];
    let pins: Vec<String> = ids.iter().map(|id| format!("pin@{id}.service")).collect();
    args.extend(pins.iter().map(String::as_str));
    ctl.ok(&args);
    wait_until("pins gone", Duration::from_secs(10), || {
        ctl.units().is_empty()
    });

    // Replaces: kick0 lands on replace.0's machine (the less loaded one) and pushes
    // replace.0 to the other machine.
    ctl.ok(&["start", "replace.0.service"]);
    ctl.ok(&["start", "replace.1.service", "replace.2.service"]);
    wait_active(&ctl, 3, Duration::from_secs(10));
    let before = placement(&ctl);
    let old = before["replace.0.service"].clone();
    assert_ne!(before["replace.1.service"], old, "{before:?}");
    assert_eq!(before["replace.2.service"], before["replace.1.service"]);
    ctl.ok(&["start", "--no-block", "replace-kick0.service"]);
    wait_until("kick0 displaced replace.0", Duration::from_secs(15), || {
        let now = placement(&ctl);
        now.len() == 4
            && now.get("replace-kick0.service") == Some(&old)
            && now.get("replace.0.service").is_some_and(|m| m != &old)
    });
    assert_eq!(ctl.unit_files().len(), 4);
    let rows = ctl.units();
    assert_systemd_agrees(&lab, &rows);
    let old_node = node_of(&lab, &old);
    assert_ne!(
        systemctl(&lab, &old_node, "is-active replace.0.service"),
        "active",
        "replace.0 still runs on its old machine"
    );
    let name = lab.down();
    assert_eq!(Lab::leftovers(&name), Vec::<String>::new());
}
