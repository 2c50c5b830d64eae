//! CI smoke test of `fleet-bench cluster`: a small cluster (20 machines × 200 units,
//! real etcd, real engine and agents, simulated systemd) must end with every unit
//! active exactly once, every agent having heard only about its own schedule, and the
//! units of a killed machine active elsewhere. Correctness only; no time is asserted.

use std::process::Command;

#[test]
fn small_cluster_places_starts_and_fails_over() {
    let out = Command::new(env!("CARGO_BIN_EXE_fleet-bench"))
        .args([
            "cluster",
            "--machines",
            "20",
            "--units",
            "200",
            "--agent-ttl",
            "2s",
            "--kill-fraction",
            "0.1",
            "--phase-timeout",
            "60s",
        ])
        .output()
        .expect("fleet-bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "fleet-bench failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().expect("some output");
    let figures: serde_json::Value = serde_json::from_str(last).expect("last line is JSON");
    // The benchmark itself checked etcd: each unit scheduled once, on a live machine,
    // reported active there (before and after the kill).
    assert_eq!(figures["all_units_once"], true, "{last}");
    assert_eq!(figures["units"], 200);
    assert_eq!(figures["foreign_watch_events"], 0, "{last}");
    assert_eq!(figures["killed_machines"], 2, "{last}");
    assert!(figures["killed_units"].as_u64().unwrap() > 0, "{last}");
    // Each agent heard of its own ~10 placements (plus re-placements), not of 200.
    let max_events = figures["watch_events_per_agent_max"].as_u64().unwrap();
    assert!((1..200).contains(&max_events), "{last}");
    for key in [
        "all_placed_s",
        "all_active_s",
        "etcd_requests_per_unit",
        "failover_s",
    ] {
        assert!(figures[key].is_number(), "{key} missing: {last}");
    }
    // Each stage's 10, 50 and 90% marks come in order, and before its last unit.
    for (marks, all) in [
        ("placed_10_50_90_s", "all_placed_s"),
        ("active_10_50_90_s", "all_active_s"),
        ("failover_placed_10_50_90_s", "failover_placed_s"),
        ("failover_active_10_50_90_s", "failover_s"),
    ] {
        let mut at: Vec<f64> = figures[marks]
            .as_array()
            .unwrap_or_else(|| panic!("{marks} missing: {last}"))
            .iter()
            .map(|v| v.as_f64().unwrap_or(f64::NAN))
            .collect();
        at.push(figures[all].as_f64().unwrap_or(f64::NAN));
        assert!(
            at.len() == 4 && at.windows(2).all(|w| w[0] <= w[1]) && at[0] > 0.0,
            "{marks} then {all} out of order: {at:?}"
        );
    }
}
