//! End-to-end: the multi-tier deployment of `units/` in a 3-machine lab, scheduled by
//! fleet. Every web instance answers through the load balancer; after the machine with
//! the db is killed, db and its helpers move together and the web tier reconnects.
//!
//! Pending: move to `tests/tests/stack_e2e.rs` once fleetd runs units (the agent).

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use fleet_lab::config::STACK_PACKAGES;
use fleet_tests::*;

const INSTANCES: usize = 10;
/// Generous: the first boot builds the image with the stack's packages.
const DEPLOY_DEADLINE: Duration = Duration::from_secs(240);
const RECOVERY_DEADLINE: Duration = Duration::from_secs(180);

fn units_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../units")
}

/// Runs the workspace's fleetctl against the lab's etcd, from `units/`.
fn fleetctl(lab: &TestLab, args: &[&str]) -> (bool, String) {
    let out = Command::new(target_dir().join("fleetctl"))
        .arg("--driver=etcd")
        .arg(format!("--endpoint={}", lab.etcd_url().unwrap()))
        .args(admin_flags(lab))
        .args(args)
        .current_dir(units_dir())
        .output()
        .expect("run fleetctl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// (unit, active state, machine IP) of every unit fleet reports.
fn units(lab: &TestLab) -> Vec<(String, String, String)> {
    let (ok, text) = fleetctl(
        lab,
        &[
            "list-units",
            "--no-legend",
            "--full",
            "--fields=unit,active,machine",
        ],
    );
    if !ok {
        return Vec::new();
    }
    text.lines()
        .filter_map(|line| {
            let mut cols = line.split_whitespace();
            let unit = cols.next()?.to_string();
            let active = cols.next()?.to_string();
            let ip = cols.next()?.rsplit('/').next()?.to_string();
            Some((unit, active, ip))
        })
        .collect()
}

/// The IP of the machine running `unit` actively, if any.
fn active_on(units: &[(String, String, String)], unit: &str) -> Option<String> {
    units
        .iter()
        .find(|(u, a, _)| u == unit && a == "active")
        .map(|(_, _, ip)| ip.clone())
}

/// One HTTP GET with timeouts; the body, or None.
fn http_get(ip: &str, port: u16) -> Option<String> {
    let addr: SocketAddr = format!("{ip}:{port}").parse().ok()?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .ok()?;
    write!(stream, "GET / HTTP/1.0\r\nHost: {ip}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200")
        .then(|| body.trim().to_string())
}

/// Asks the load balancer until every web instance has answered saying `db_says`
/// (or the deadline passes); returns the instances seen.
fn instances_through_lb(lab: &TestLab, db_says: &str, deadline: Instant) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    while Instant::now() < deadline && seen.len() < INSTANCES {
        let lb = active_on(&units(lab), "lb.service");
        for _ in 0..2 * INSTANCES {
            let Some(body) = lb.as_deref().and_then(|ip| http_get(ip, 80)) else {
                break;
            };
            if body.contains(db_says)
                && let Some(name) = body.split_whitespace().next()
            {
                seen.insert(name.to_string());
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    seen
}

fn all_instances() -> BTreeSet<String> {
    (1..=INSTANCES).map(|i| format!("web@{i:02}")).collect()
}

#[test]
fn stack_serves_through_the_lb_and_survives_losing_the_db_machine() {
    let mut config = ClusterConfig::with_machines(&unique_name("stack"), 3);
    config.groups[0].packages = STACK_PACKAGES.iter().map(|p| p.to_string()).collect();
    let started = Instant::now();
    let mut lab = boot_config(&config);

    let mut units_to_start: Vec<String> = vec![
        "db.service".into(),
        "dbhelper.service".into(),
        "mondb.service".into(),
    ];
    for i in 1..=INSTANCES {
        units_to_start.push(format!("web@{i:02}.service"));
        units_to_start.push(format!("monweb@{i:02}.service"));
    }
    units_to_start.push("lb.service".into());
    let args: Vec<&str> = std::iter::once("start")
        .chain(std::iter::once("--no-block"))
        .chain(units_to_start.iter().map(String::as_str))
        .collect();
    let (ok, text) = fleetctl(&lab, &args);
    assert!(ok, "fleetctl start: {text}");

    // Every web instance answers through the load balancer, reading the db.
    let seen = instances_through_lb(
        &lab,
        "says: hello from the db on",
        Instant::now() + DEPLOY_DEADLINE,
    );
    assert_eq!(
        seen,
        all_instances(),
        "{}",
        fleetctl(&lab, &["list-units"]).1
    );
    eprintln!(
        "stack deployed and answering after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let before = units(&lab);
    let db_ip = active_on(&before, "db.service").expect("db active");
    for helper in ["dbhelper.service", "mondb.service"] {
        assert_eq!(active_on(&before, helper).as_deref(), Some(db_ip.as_str()));
    }
    for i in 1..=INSTANCES {
        assert_eq!(
            active_on(&before, &format!("web@{i:02}.service")),
            active_on(&before, &format!("monweb@{i:02}.service")),
            "monweb@{i:02} runs beside its web"
        );
    }

    // Kill the db's machine: db and helpers move together, the web tier reconnects.
    let db_node = lab
        .machines()
        .iter()
        .find(|m| m.ip.to_string() == db_ip)
        .expect("db machine")
        .name
        .clone();
    let killed = Instant::now();
    lab.kill(&db_node).unwrap();
    let deadline = killed + RECOVERY_DEADLINE;
    let new_ip = loop {
        let now = units(&lab);
        if let Some(ip) = active_on(&now, "db.service").filter(|ip| *ip != db_ip)
            && active_on(&now, "dbhelper.service").as_ref() == Some(&ip)
            && active_on(&now, "mondb.service").as_ref() == Some(&ip)
        {
            break ip;
        }
        assert!(
            Instant::now() < deadline,
            "db and helpers did not move together: {now:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let new_node = lab
        .machines()
        .iter()
        .find(|m| m.ip.to_string() == new_ip)
        .unwrap()
        .name
        .clone();
    let seen = instances_through_lb(
        &lab,
        &format!("says: hello from the db on {new_node}"),
        deadline,
    );
    assert_eq!(
        seen,
        all_instances(),
        "{}",
        fleetctl(&lab, &["list-units"]).1
    );
    eprintln!(
        "stack recovered {:.1} s after losing {db_node} (db now on {new_node})",
        killed.elapsed().as_secs_f64()
    );
    let name = lab.down();
    assert_eq!(Lab::leftovers(&name), Vec::<String>::new());
}
