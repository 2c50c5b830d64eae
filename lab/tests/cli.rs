//! The `fleet-lab` binary: bad input fails cleanly, and `down` after a killed `up`
//! leaves nothing behind. Needs root, like the lab itself.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fleet_lab::{Lab, LabName, LabState};

const BIN: &str = env!("CARGO_BIN_EXE_fleet-lab");

fn fleet_lab(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("FLEET_LAB_NAME")
        .env_remove("FLEET_LAB_CONFIG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn require_root() {
    assert!(
        fleet_lab::is_root(),
        "fleet-lab tests need root (run cargo test as root)"
    );
}

#[test]
fn malformed_cluster_file_is_a_one_line_error_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("fleet-lab.toml"),
        "name = \"cli-bad\"\n[[group]]\nname = \"n\"\ncount = 2\n",
    )
    .unwrap();
    let (code, out, err) = fleet_lab(dir.path(), &["up"]);
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("fleet-lab.toml") && err.contains("%d"),
        "{err}"
    );
    assert!(!LabName::new("cli-bad").unwrap().state_dir().exists());
}

#[test]
fn config_create_writes_a_default_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = fleet_lab(
        dir.path(),
        &["--name", "demo", "config", "create", "--machines", "5"],
    );
    assert_eq!(code, 0, "{err}");
    let config = fleet_lab::ClusterConfig::load(&dir.path().join("fleet-lab.toml")).unwrap();
    assert_eq!(config.name, "demo");
    assert_eq!(config.machines().len(), 5);
    let (code, _, err) = fleet_lab(dir.path(), &["config", "create"]);
    assert_eq!(code, 1);
    assert!(err.contains("exists"), "{err}");
}

#[test]
fn without_root_up_says_so() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("fleet-lab.toml"),
        fleet_lab::ClusterConfig::with_machines("cli-noroot", 1).to_toml(),
    )
    .unwrap();
    let dir_path = dir.path().to_str().unwrap();
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            BIN,
            "-c",
        ])
        .arg(format!("{dir_path}/fleet-lab.toml"))
        .arg("up")
        .current_dir("/")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("Permission denied") && err.contains("fleet-lab.toml") {
        return; // the temp dir is not readable by nobody on this host: nothing to check
    }
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("root privileges"), "{err}");
    assert!(!LabName::new("cli-noroot").unwrap().state_dir().exists());
}

#[test]
fn down_after_a_killed_up_leaves_nothing() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let name = format!("cli-killed-{}", std::process::id());
    std::fs::write(
        dir.path().join("fleet-lab.toml"),
        fleet_lab::ClusterConfig::with_machines(&name, 3).to_toml(),
    )
    .unwrap();
    let lab_name = LabName::new(&name).unwrap();
    let mut up = Command::new(BIN)
        .arg("up")
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once it has started machines, in the middle of booting them. On a fresh
    // host `up` first builds the image (minutes of debootstrap), hence the long bound.
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let started = LabState::load(&lab_name)
            .ok()
            .flatten()
            .is_some_and(|s| s.machines.iter().any(|m| m.pid.is_some()));
        if started || up.try_wait().unwrap().is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "fleet-lab up never started a machine"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = up.kill();
    up.wait().unwrap();
    assert!(
        !Lab::leftovers(&lab_name).is_empty(),
        "the killed up left a lab to tear down"
    );

    let (code, _, err) = fleet_lab(dir.path(), &["down"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(Lab::leftovers(&lab_name), Vec::<String>::new());
    // down is idempotent
    let (code, _, err) = fleet_lab(dir.path(), &["down"]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn cli_up_status_kill_down() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let name = format!("cli-cycle-{}", std::process::id());
    let (code, _, err) = fleet_lab(
        dir.path(),
        &["--name", &name, "config", "create", "--machines", "2"],
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = fleet_lab(dir.path(), &["up"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("source /run/fleet-lab/"), "{out}");
    assert!(
        err.contains("node2") && err.contains("running after"),
        "{err}"
    );
    // The CLI exited; the lab lives on.
    let (code, out, _) = fleet_lab(dir.path(), &["status"]);
    assert_eq!(code, 0);
    assert_eq!(out.matches("running").count(), 2, "{out}");
    // A lab of two is all control plane.
    assert_eq!(out.matches(" control\n").count(), 2, "{out}");
    let (code, out, _) = fleet_lab(dir.path(), &["exec", "node1", "--", "hostname"]);
    assert_eq!((code, out.trim()), (0, "node1"));
    let (code, _, _) = fleet_lab(dir.path(), &["kill", "node2"]);
    assert_eq!(code, 0);
    let (_, out, _) = fleet_lab(dir.path(), &["status"]);
    assert!(out.contains("down"), "{out}");
    let (code, _, err) = fleet_lab(dir.path(), &["exec", "node9", "--", "true"]);
    assert_eq!(code, 1);
    assert!(err.contains("no machine \"node9\""), "{err}");
    let (code, _, err) = fleet_lab(dir.path(), &["down"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        Lab::leftovers(&LabName::new(&name).unwrap()),
        Vec::<String>::new()
    );
}
