//! End-to-end: namespaces on real systemd in lab machines. Two namespaces each run
//! `web@1..3` with `Conflicts=web@*` at once, side by side with the default namespace's
//! `web@1`, and a namespace bound to `team=a` places only there, even when the other
//! machines are emptier.

use std::time::Duration;

use fleet_tests::*;

const WEB: &str = "[Unit]\nDescription=web %i\n\n[Service]\nExecStart=/bin/sleep infinity\n\n[X-Fleet]\nConflicts=web@*\n";
const JOB: &str = "[Unit]\nDescription=job\n\n[Service]\nExecStart=/bin/sleep infinity\n";

fn in_ns(ctl: &Fleetctl, ns: &str) -> Fleetctl {
    let mut flags = ctl.flags.clone();
    flags.push(format!("--namespace={ns}"));
    Fleetctl {
        flags,
        dir: ctl.dir.clone(),
    }
}

#[test]
fn namespaces_run_the_same_names_apart_and_on_their_machines() {
    let group = |name: &str, count: usize, meta: &[(&str, &str)]| MachineGroup {
        name: name.to_string(),
        count,
        metadata: meta
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        packages: Vec::new(),
    };
    let mut config = ClusterConfig::with_machines(&unique_name("namespaces"), 1);
    config.groups = vec![
        group("teama%d", 1, &[("team", "a")]),
        group("other%d", 2, &[]),
    ];
    let dir = UnitDir::new(&[
        ("web@.service", WEB),
        ("job1.service", JOB),
        ("job2.service", JOB),
    ]);
    let lab = boot_registered(&config);
    let ctl = Fleetctl::etcd(&lab, dir.path());
    ctl.ok(&["namespace", "create", "blue"]);
    ctl.ok(&["namespace", "create", "green"]);
    ctl.ok(&["namespace", "create", "pinned", "--machines", "team=a"]);
    let webs = ["web@1.service", "web@2.service", "web@3.service"];
    for ns in ["blue", "green"] {
        let mut args = vec!["start", "--no-block"];
        args.extend(webs);
        in_ns(&ctl, ns).ok(&args);
    }
    ctl.ok(&["start", "--no-block", "web@1.service"]);
    in_ns(&ctl, "pinned").ok(&["start", "--no-block", "job1.service", "job2.service"]);

    wait_until("every unit active", Duration::from_secs(60), || {
        ctl.active().len() == 1
            && in_ns(&ctl, "blue").active().len() == 3
            && in_ns(&ctl, "green").active().len() == 3
            && in_ns(&ctl, "pinned").active().len() == 2
    });
    for ns in ["blue", "green"] {
        let rows = in_ns(&ctl, ns).active();
        let mut machines: Vec<&String> = rows.iter().map(|r| &r.machine).collect();
        machines.sort();
        machines.dedup();
        assert_eq!(
            machines.len(),
            3,
            "{ns}: Conflicts=web@* within it: {rows:?}"
        );
        // systemd on the machine runs it under its qualified name.
        for r in &rows {
            let node = node_of(&lab, &r.machine);
            assert_eq!(
                systemctl(&lab, &node, &format!("is-active {ns}:{}", r.unit)),
                "active",
                "{ns}:{} on {node}",
                r.unit
            );
        }
    }
    let team_a = lab
        .machines()
        .iter()
        .find(|m| m.name.starts_with("teama"))
        .map(|m| m.machine_id.clone())
        .unwrap();
    for r in in_ns(&ctl, "pinned").active() {
        assert_eq!(r.machine, team_a, "{r:?} left the team=a machine");
    }
    // Rebinding a namespace moves its units: to no machine (the reason says why),
    // then to every machine.
    ctl.ok(&["namespace", "set", "pinned", "--machines", "team=nosuch"]);
    wait_until("pinned's units stopped", Duration::from_secs(60), || {
        in_ns(&ctl, "pinned").active().is_empty()
    });
    let reasons =
        in_ns(&ctl, "pinned").ok(&["list-unit-files", "--no-legend", "--fields=unit,reason"]);
    assert!(
        reasons.contains("namespace pinned is bound to machines with team=nosuch"),
        "{reasons}"
    );
    ctl.ok(&["namespace", "set", "pinned", "--machines", ""]);
    wait_until(
        "pinned's units running again",
        Duration::from_secs(60),
        || in_ns(&ctl, "pinned").active().len() == 2,
    );
    // --all-namespaces lists all of them, each under its namespace.
    let all = ctl.ok(&[
        "list-units",
        "--all-namespaces",
        "--no-legend",
        "--fields=unit",
    ]);
    assert_eq!(all.lines().count(), 9, "{all}");
    // Deleting a namespace with units is refused; with --destroy-units they stop.
    let (code, _, err) = ctl.run(&["namespace", "delete", "green"]);
    assert_ne!(code, 0);
    assert!(err.contains("namespace green has 3 unit(s)"), "{err}");
    ctl.ok(&["namespace", "delete", "green", "--destroy-units"]);
    wait_until("green's units gone", Duration::from_secs(30), || {
        ctl.ok(&[
            "list-units",
            "--all-namespaces",
            "--no-legend",
            "--fields=unit",
        ])
        .lines()
        .count()
            == 6
    });
    assert_eq!(in_ns(&ctl, "blue").active().len(), 3);
    let name = lab.down();
    assert_eq!(Lab::leftovers(&name), Vec::<String>::new());
}
