//! End-to-end: fleetd on a 3-member etcd (the lab's default) through etcd faults, with
//! `fleetctl list-units` polled through every machine's API every 0.5 s:
//!
//! - the raft leader member killed, then a follower (the member listed first, which
//!   every fleetd prefers), then that member cut off: 0 failed calls, 0 unit restarts, 0 engine leadership or
//!   agent lease losses;
//! - quorum lost (two members killed): 0 restarts or moves, converged within 3 s after
//!   quorum returns; every member stopped for twice as long: 0 restarts or moves;
//! - 300 ms added each way to one machine's etcd link: 0 failed calls through that
//!   machine, and a start through it works.
//!
//! The window is 60 s per member fault; CI uses `FLEET_ETCD_FAULT_SECS` (20 s
//! by default) and 30 s of quorum loss (`FLEET_ETCD_QUORUM_SECS`). Figures are printed
//! as `FIGURE` lines, and a table of every fault (`ROW` lines) at the end.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fleet_tests::*;

const UNITS: usize = 4;
const POLL: Duration = Duration::from_millis(500);

fn secs_from_env(var: &str, default: u64) -> Duration {
    Duration::from_secs(
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

fn unit_text() -> &'static str {
    "[Unit]\nDescription=long runner\n\n[Service]\nExecStart=/bin/sleep infinity\n"
}

/// What polling saw on one machine.
#[derive(Debug, Default)]
struct PollStats {
    ok: usize,
    failed: Vec<String>,
    slowest: Duration,
}

/// `fleetctl list-units` through each machine's API every 0.5 s, in threads.
struct Poller {
    stop: Arc<AtomicBool>,
    threads: Vec<(String, JoinHandle<PollStats>)>,
}

impl Poller {
    fn start(lab: &Lab, nodes: &[String], dir: &std::path::Path) -> Poller {
        Self::start_with(
            nodes
                .iter()
                .map(|node| (node.clone(), Fleetctl::api(lab, node, dir)))
                .collect(),
        )
    }

    /// Polls with each named fleetctl (any driver).
    fn start_with(ctls: Vec<(String, Fleetctl)>) -> Poller {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = ctls
            .into_iter()
            .map(|(node, ctl)| {
                let stop = stop.clone();
                let t = std::thread::spawn(move || {
                    let mut s = PollStats::default();
                    while !stop.load(Ordering::Relaxed) {
                        let t = Instant::now();
                        let (code, out, err) = ctl.run(&["list-units", "--no-legend", "--full"]);
                        s.slowest = s.slowest.max(t.elapsed());
                        if code == 0 && out.lines().count() >= UNITS {
                            s.ok += 1;
                        } else {
                            s.failed
                                .push(format!("exit {code}: {}{}", out.trim(), err.trim()));
                        }
                        std::thread::sleep(POLL.saturating_sub(t.elapsed()));
                    }
                    s
                });
                (node, t)
            })
            .collect();
        Poller { stop, threads }
    }

    fn finish(self) -> Vec<(String, PollStats)> {
        self.stop.store(true, Ordering::Relaxed);
        self.threads
            .into_iter()
            .map(|(n, t)| (n, t.join().expect("poller thread")))
            .collect()
    }
}

/// Lines of fleetd's journal on `node` containing `needle`.
fn journal_count(lab: &Lab, node: &str, needle: &str) -> usize {
    let (_, out, _) = sh(
        lab,
        node,
        &format!("journalctl -u fleet.service -o cat --no-pager | grep -cF -- '{needle}'"),
    );
    out.trim().parse().unwrap_or(0)
}

/// Engine leadership gains and losses, and agent lease losses, over all machines.
fn leadership_events(lab: &Lab, nodes: &[String]) -> (usize, usize, usize) {
    let sum = |needle: &str| {
        nodes
            .iter()
            .map(|n| journal_count(lab, n, needle))
            .sum::<usize>()
    };
    (
        sum("Engine leadership acquired"),
        sum("Engine leadership lost"),
        sum("lease is gone"),
    )
}

/// unit → (machine id, MainPID) as systemd reports it on the unit's machine.
fn placements(lab: &Lab, ctl: &Fleetctl) -> Vec<(String, String, String)> {
    let mut rows: Vec<_> = ctl
        .active()
        .into_iter()
        .map(|r| {
            let node = node_of(lab, &r.machine);
            let pid = systemctl(lab, &node, &format!("show -p MainPID --value {}", r.unit));
            (r.unit, r.machine, pid)
        })
        .collect();
    rows.sort();
    rows
}

/// Waits until every member answers and they agree on a leader.
fn wait_etcd_healthy(lab: &Lab) -> Duration {
    wait_until("etcd healthy", Duration::from_secs(30), || {
        let m = lab.etcd_members();
        m.iter().all(|m| m.answers) && m.iter().any(|m| m.leader)
    })
}

fn report(fault: &str, window: Duration, polls: &[(String, PollStats)]) -> usize {
    let mut failed = 0;
    for (node, s) in polls {
        eprintln!(
            "FIGURE {fault} ({window:?}): {node}: {} list-units ok, {} failed, slowest {:.2} s",
            s.ok,
            s.failed.len(),
            s.slowest.as_secs_f64()
        );
        for f in s.failed.iter().take(3) {
            eprintln!("  {node}: {f}");
        }
        failed += s.failed.len();
    }
    failed
}

/// One line of the figures table.
struct Row {
    fault: String,
    failed: Option<usize>,
    restarts: usize,
    acquired: usize,
    lost: usize,
    leases_lost: usize,
    converged: Option<Duration>,
}

impl Row {
    fn print(&self) {
        let cell = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        eprintln!(
            "ROW {:<34} {:>12} {:>8} {:>14} {:>11} {:>9}",
            self.fault,
            cell(self.failed.map(|f| f.to_string())),
            self.restarts,
            format!("+{} -{}", self.acquired, self.lost),
            self.leases_lost,
            cell(self.converged.map(|c| format!("{:.2} s", c.as_secs_f64())))
        );
    }
}

fn print_table(rows: &[Row]) {
    eprintln!(
        "ROW {:<34} {:>12} {:>8} {:>14} {:>11} {:>9}",
        "FAULT", "FAILED CALLS", "RESTARTS", "ENGINE LEADERS", "LEASES LOST", "CONVERGED"
    );
    for r in rows {
        r.print();
    }
}

/// Units now on another machine or with another MainPID than in `baseline`.
fn restarts(baseline: &[(String, String, String)], now: &[(String, String, String)]) -> usize {
    baseline.iter().filter(|b| !now.contains(b)).count()
}

/// Waits until every machine's API lists the units where `baseline` has them; how long
/// that took.
fn converge(ctls: &[Fleetctl], baseline: &[(String, String, String)], what: &str) -> Duration {
    let rows: Vec<(String, String)> = baseline
        .iter()
        .map(|(u, m, _)| (u.clone(), m.clone()))
        .collect();
    wait_until(what, Duration::from_secs(30), || {
        ctls.iter().all(|c| {
            let mut now: Vec<(String, String)> = c
                .active()
                .into_iter()
                .map(|r| (r.unit, r.machine))
                .collect();
            now.sort();
            now == rows
        })
    })
}

#[test]
fn fleet_rides_out_etcd_member_faults() {
    let window = secs_from_env("FLEET_ETCD_FAULT_SECS", 20);
    let quorum_window = secs_from_env("FLEET_ETCD_QUORUM_SECS", 30);
    let mut config = ClusterConfig::with_machines(&unique_name("etcdfaults"), 3);
    config.etcd_members = 3;
    config.agent_ttl = "10s".into();
    config.engine_lease_ttl = Some("5s".into());
    let mut lab = boot_registered(&config);
    let nodes: Vec<String> = lab.machines().iter().map(|m| m.name.clone()).collect();
    let names: Vec<String> = (1..=UNITS).map(|i| format!("long{i}.service")).collect();
    let files: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), unit_text())).collect();
    let dir = UnitDir::new(&files);
    let ctl = Fleetctl::api(&lab, &nodes[0], dir.path());
    let mut args = vec!["start"];
    args.extend(names.iter().map(String::as_str));
    ctl.ok(&args);
    wait_until("units active", Duration::from_secs(20), || {
        ctl.active().len() == UNITS
    });
    let baseline = placements(&lab, &ctl);
    assert_eq!(baseline.len(), UNITS, "{baseline:?}");
    let ctls: Vec<Fleetctl> = nodes
        .iter()
        .map(|n| Fleetctl::api(&lab, n, dir.path()))
        .collect();
    let mut rows: Vec<Row> = Vec::new();

    // 1 and 2: the leader member, then a follower (the first listed), down for a
    // while; 3: that follower cut off (its link down: requests to it hang).
    for fault in ["leader", "follower", "cut"] {
        let members = lab.etcd_members();
        let leader = lab.etcd_leader().expect("an etcd leader");
        let victim = match fault {
            "leader" => leader,
            _ => members
                .iter()
                .find(|m| m.name != leader)
                .expect("a follower")
                .name
                .clone(),
        };
        let events = leadership_events(&lab, &nodes);
        let polls = Poller::start(&lab, &nodes, dir.path());
        if fault == "cut" {
            lab.etcd_cut(&victim, true).unwrap();
            std::thread::sleep(window);
            lab.etcd_cut(&victim, false).unwrap();
        } else {
            lab.etcd_kill(&victim).unwrap();
            std::thread::sleep(window);
            lab.etcd_start(&victim).unwrap();
        }
        let back = Instant::now();
        wait_etcd_healthy(&lab);
        let converged = back.elapsed() + converge(&ctls, &baseline, "converged after the fault");
        std::thread::sleep(Duration::from_secs(2));
        let polls = polls.finish();
        let failed = report(&format!("etcd {fault} {victim} out"), window, &polls);
        let after = leadership_events(&lab, &nodes);
        let now = placements(&lab, &ctl);
        eprintln!(
            "FIGURE etcd {fault} {victim} out: engine leadership acquired {} lost {}, agent leases lost {}, units unchanged: {}",
            after.0 - events.0,
            after.1 - events.1,
            after.2 - events.2,
            now == baseline
        );
        let row = Row {
            fault: format!("etcd {fault} ({victim}) out {window:?}"),
            failed: Some(failed),
            restarts: restarts(&baseline, &now),
            acquired: after.0 - events.0,
            lost: after.1 - events.1,
            leases_lost: after.2 - events.2,
            converged: Some(converged),
        };
        row.print();
        rows.push(row);
        assert_eq!(failed, 0, "failed list-units calls with the {fault} down");
        assert_eq!(now, baseline, "units restarted or moved");
        assert_eq!(
            (after.1 - events.1, after.2 - events.2),
            (0, 0),
            "engine leadership or agent leases lost"
        );
    }

    // 4: quorum lost (two members killed), then back.
    let members: Vec<String> = lab.etcd_members().into_iter().map(|m| m.name).collect();
    let events = leadership_events(&lab, &nodes);
    for m in &members[1..] {
        lab.etcd_kill(m).unwrap();
    }
    std::thread::sleep(quorum_window);
    for m in &members[1..] {
        lab.etcd_start(m).unwrap();
    }
    wait_etcd_healthy(&lab);
    // Converged: every machine's API answers and shows the units where they were.
    let converged = converge(&ctls, &baseline, "converged after quorum");
    let now = placements(&lab, &ctl);
    let after = leadership_events(&lab, &nodes);
    eprintln!(
        "FIGURE quorum lost {quorum_window:?}: converged {:.2} s after quorum returned; engine leadership acquired {} lost {}, agent leases lost {}, units unchanged: {}",
        converged.as_secs_f64(),
        after.0 - events.0,
        after.1 - events.1,
        after.2 - events.2,
        now == baseline
    );
    let row = Row {
        fault: format!("quorum lost {quorum_window:?}"),
        failed: None,
        restarts: restarts(&baseline, &now),
        acquired: after.0 - events.0,
        lost: after.1 - events.1,
        leases_lost: after.2 - events.2,
        converged: Some(converged),
    };
    row.print();
    rows.push(row);
    assert_eq!(now, baseline, "units restarted or moved");
    assert!(
        converged <= Duration::from_secs(3),
        "converged after {converged:?}"
    );

    // 5: every member stopped (SIGTERM) for twice the quorum window: 0 restarts or
    // moves.
    let all_window = quorum_window * 2;
    let events = leadership_events(&lab, &nodes);
    for m in &members {
        lab.etcd_stop(m).unwrap();
    }
    std::thread::sleep(all_window);
    lab.etcd_start_all().unwrap();
    wait_etcd_healthy(&lab);
    let converged = converge(&ctls, &baseline, "converged after a full stop");
    let now = placements(&lab, &ctl);
    let after = leadership_events(&lab, &nodes);
    eprintln!(
        "FIGURE all members stopped {all_window:?}: converged {:.2} s after etcd returned; engine leadership acquired {} lost {}, agent leases lost {}, units unchanged: {}",
        converged.as_secs_f64(),
        after.0 - events.0,
        after.1 - events.1,
        after.2 - events.2,
        now == baseline
    );
    let row = Row {
        fault: format!("all members stopped {all_window:?}"),
        failed: None,
        restarts: restarts(&baseline, &now),
        acquired: after.0 - events.0,
        lost: after.1 - events.1,
        leases_lost: after.2 - events.2,
        converged: Some(converged),
    };
    row.print();
    rows.push(row);
    assert_eq!(now, baseline, "units restarted or moved");

    // 6: 300 ms each way on one machine's etcd link.
    let slow = nodes[2].clone();
    let events = leadership_events(&lab, &nodes);
    lab.degrade(&slow, Some(Duration::from_millis(300)), None)
        .unwrap();
    let polls = Poller::start(&lab, std::slice::from_ref(&slow), dir.path());
    std::thread::sleep(window);
    let extra = "extra.service";
    dir.write(extra, unit_text());
    let slow_ctl = Fleetctl::api(&lab, &slow, dir.path());
    let t = Instant::now();
    slow_ctl.ok(&["start", extra]);
    wait_until("the extra unit active", Duration::from_secs(20), || {
        slow_ctl.active().iter().any(|r| r.unit == extra)
    });
    let started = t.elapsed();
    let polls = polls.finish();
    lab.restore(&slow).unwrap();
    let failed = report(&format!("300 ms on {slow}'s link"), window, &polls);
    eprintln!(
        "FIGURE 300 ms on {slow}'s link: a start through it active after {:.2} s",
        started.as_secs_f64()
    );
    let mut now = placements(&lab, &ctl);
    now.retain(|(u, _, _)| u != extra);
    let after = leadership_events(&lab, &nodes);
    rows.push(Row {
        fault: format!("300 ms on {slow}'s link {window:?}"),
        failed: Some(failed),
        restarts: restarts(&baseline, &now),
        acquired: after.0 - events.0,
        lost: after.1 - events.1,
        leases_lost: after.2 - events.2,
        converged: None,
    });
    print_table(&rows);
    assert_eq!(failed, 0, "failed calls through the slow machine");
    assert_eq!(now, baseline, "units restarted or moved");
    assert_eq!(
        (after.1 - events.1, after.2 - events.2),
        (0, 0),
        "engine leadership or agent leases lost on a slow link"
    );
    let name = lab.down();
    assert_eq!(Lab::leftovers(&name), Vec::<String>::new());
}

/// CoreOS style: an etcd member in each of five machines (`etcd = "per-machine"`),
/// every fleetd listing all five. The raft leader's member is killed, then a
/// follower's, each for the fault window, while `fleetctl list-units` is polled through
/// every machine's API and through etcd: no call fails, and the units keep running
/// where they were (same MainPID).
#[test]
fn per_machine_members_ride_out_a_member_kill() {
    let window = secs_from_env("FLEET_ETCD_FAULT_SECS", 20);
    let mut config = ClusterConfig::with_machines(&unique_name("pmetcd"), 5);
    config.etcd = EtcdPlacement::PerMachine;
    config.agent_ttl = "10s".into();
    config.engine_lease_ttl = Some("5s".into());
    let mut lab = boot_registered(&config);
    let nodes: Vec<String> = lab.machines().iter().map(|m| m.name.clone()).collect();
    let members = lab.etcd_members();
    assert_eq!(members.len(), 5, "{members:?}");
    for m in lab.machines() {
        assert!(
            members.iter().any(|e| e.ip == m.ip),
            "no member in {}",
            m.name
        );
        let (_, conf, _) = sh(&lab, &m.name, "cat /etc/fleet/fleet.conf");
        let servers = conf
            .lines()
            .find_map(|l| l.strip_prefix("etcd_servers="))
            .unwrap_or_default();
        assert_eq!(servers.split(',').count(), 5, "{conf}");
    }
    let names: Vec<String> = (1..=UNITS).map(|i| format!("pm{i}.service")).collect();
    let files: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), unit_text())).collect();
    let dir = UnitDir::new(&files);
    let ctl = Fleetctl::api(&lab, &nodes[0], dir.path());
    let mut args = vec!["start"];
    args.extend(names.iter().map(String::as_str));
    ctl.ok(&args);
    wait_until("units active", Duration::from_secs(30), || {
        ctl.active().len() == UNITS
    });
    let baseline = placements(&lab, &ctl);
    assert_eq!(baseline.len(), UNITS, "{baseline:?}");

    for fault in ["leader", "follower"] {
        wait_etcd_healthy(&lab);
        let leader = wait_until_some("an etcd leader", || lab.etcd_leader());
        let victim = match fault {
            "leader" => leader,
            _ => {
                lab.etcd_members()
                    .into_iter()
                    .find(|m| m.name != leader)
                    .expect("a follower")
                    .name
            }
        };
        let mut pollers: Vec<(String, Fleetctl)> = nodes
            .iter()
            .map(|n| (n.clone(), Fleetctl::api(&lab, n, dir.path())))
            .collect();
        pollers.push(("etcd driver".into(), Fleetctl::etcd(&lab, dir.path())));
        let polls = Poller::start_with(pollers);
        lab.etcd_kill(&victim).unwrap();
        std::thread::sleep(window);
        lab.etcd_start(&victim).unwrap();
        wait_etcd_healthy(&lab);
        let polls = polls.finish();
        let failed = report(
            &format!("per-machine etcd {fault} {victim} out"),
            window,
            &polls,
        );
        let now = placements(&lab, &ctl);
        assert_eq!(
            failed, 0,
            "failed list-units calls with the {fault} member down"
        );
        assert_eq!(now, baseline, "units restarted or moved");
    }
    let name = lab.down();
    assert_eq!(Lab::leftovers(&name), Vec::<String>::new());
}

/// Polls `f` every 50 ms until it gives a value; panics after 30 s naming `what`.
fn wait_until_some<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let mut value = None;
    wait_until(what, Duration::from_secs(30), || {
        value = f();
        value.is_some()
    });
    value.expect("wait_until returned")
}
