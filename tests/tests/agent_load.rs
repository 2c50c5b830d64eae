//! The agent under load (issue 5's benchmark, not a timed test): 500 units on one
//! machine. Asserted: every unit runs and is reported, systemd agrees, destroy clears
//! them. Printed: time to all active, fleetd's CPU time for the burst and while idle
//! with 500 units loaded, and its peak RSS.

use std::time::{Duration, Instant};

use fleet_tests::*;

const UNITS: usize = 500;
const IDLE_WINDOW: Duration = Duration::from_secs(10);

/// fleetd's (CPU seconds, peak RSS in KiB) inside `node`.
fn fleetd_usage(lab: &Lab, node: &str) -> (f64, u64) {
    let (code, out, err) = sh(
        lab,
        node,
        "pid=$(systemctl show -p MainPID --value fleet.service); \
         echo $(getconf CLK_TCK) $(cut -d' ' -f14,15 /proc/$pid/stat) \
         $(awk '/VmHWM/ {print $2}' /proc/$pid/status)",
    );
    assert_eq!(code, 0, "{err}");
    let f: Vec<f64> = out
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    assert_eq!(f.len(), 4, "unexpected /proc output: {out}");
    ((f[1] + f[2]) / f[0], f[3] as u64)
}

#[test]
fn five_hundred_units_on_one_machine() {
    let mut config = ClusterConfig::with_machines(&unique_name("agentload"), 1);
    config.agent_ttl = "10s".into();
    let lab = boot_registered(&config);
    let dir = UnitDir::new(&[(
        "load@.service",
        "[Unit]\nDescription=load %i\n\n[Service]\nExecStart=/bin/sleep infinity\n",
    )]);
    let ctl = Fleetctl::etcd(&lab, dir.path());
    let node = lab.machines()[0].name.clone();
    let names: Vec<String> = (1..=UNITS).map(|i| format!("load@{i}.service")).collect();
    let mut args = vec!["start", "--no-block"];
    args.extend(names.iter().map(String::as_str));

    let (cpu0, _) = fleetd_usage(&lab, &node);
    let started = Instant::now();
    ctl.ok(&args);
    wait_until("500 units active", Duration::from_secs(120), || {
        ctl.active().len() == UNITS
    });
    let to_active = started.elapsed();
    let (cpu1, _) = fleetd_usage(&lab, &node);
    let running = systemctl(
        &lab,
        &node,
        "list-units --no-legend --state=active 'load@*'",
    );
    assert_eq!(running.lines().count(), UNITS, "systemd runs every unit");

    // With 500 units loaded and nothing changing, fleetd should be (nearly) idle:
    // states come from D-Bus signals, not polling.
    std::thread::sleep(IDLE_WINDOW);
    let (cpu2, rss) = fleetd_usage(&lab, &node);
    assert_eq!(ctl.active().len(), UNITS, "still all active");

    let mut args = vec!["destroy"];
    args.extend(names.iter().map(String::as_str));
    let destroyed = Instant::now();
    ctl.ok(&args);
    wait_until("500 units gone", Duration::from_secs(120), || {
        ctl.units().is_empty()
    });
    let to_gone = destroyed.elapsed();
    println!(
        "{UNITS} units on one machine: all active {:.2} s after start --no-block; fleetd CPU {:.2} s \
         for the burst, {:.3} s over {}s idle with {UNITS} loaded; peak RSS {} KiB; destroy of all: {:.2} s",
        to_active.as_secs_f64(),
        cpu1 - cpu0,
        cpu2 - cpu1,
        IDLE_WINDOW.as_secs(),
        rss,
        to_gone.as_secs_f64()
    );
}
