//! Harness of the end-to-end tests: boots a lab of container machines running the
//! real fleetd, torn down when the [`TestLab`] drops (panics included).
//!
//! Tests need root (CI runs as root); without it they fail with a message saying so.

use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Once;
use std::time::Duration;

pub use fleet_lab::{ClusterConfig, Lab, LabError, LabEvent, LabName, UpOptions};

/// A lab owned by one test.
pub struct TestLab {
    lab: Lab,
    /// Boot time of each machine, in seconds, in boot order.
    pub boot_secs: Vec<(String, f64)>,
}

impl Deref for TestLab {
    type Target = Lab;
    fn deref(&self) -> &Lab {
        &self.lab
    }
}

impl DerefMut for TestLab {
    fn deref_mut(&mut self) -> &mut Lab {
        &mut self.lab
    }
}

impl TestLab {
    /// Tears the lab down now and returns its name, to check nothing is left.
    pub fn down(mut self) -> LabName {
        let name = self.lab.name().clone();
        self.lab.down().expect("lab teardown");
        name
    }
}

/// Panics with a clear message unless the tests run as root.
pub fn require_root() {
    assert!(
        fleet_lab::is_root(),
        "end-to-end tests need root: they create network namespaces, a bridge and containers (run `cargo test` as root)"
    );
}

/// A lab name unique to this test and process, so tests run in parallel.
pub fn unique_name(test: &str) -> String {
    let name = format!("t{}-{test}", std::process::id());
    name.chars()
        .take(32)
        .collect::<String>()
        .trim_end_matches('-')
        .to_string()
}

/// Boots `machines` machines in a lab named after `test`.
pub fn boot(test: &str, machines: usize) -> TestLab {
    boot_config(&ClusterConfig::with_machines(&unique_name(test), machines))
}

/// Boots the lab a cluster file describes.
pub fn boot_config(config: &ClusterConfig) -> TestLab {
    require_root();
    let mut boot_secs = Vec::new();
    let lab = Lab::up(config, &options(), &mut |event| {
        if let LabEvent::MachineRunning { name, secs } = event {
            eprintln!("lab {}: {name} running after {secs:.2} s", config.name);
            boot_secs.push((name, secs));
        }
    })
    .unwrap_or_else(|e| panic!("lab {} did not come up: {e}", config.name));
    TestLab { lab, boot_secs }
}

/// Options using this workspace's fleetd and fleetctl, built on first use if missing.
pub fn options() -> UpOptions {
    let dir = target_dir();
    ensure_binaries(&dir);
    let mut opts = UpOptions::with_binaries_in(&dir);
    opts.boot_timeout = Duration::from_secs(60);
    opts
}

/// The cargo target profile directory (test binaries live in its `deps/`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let deps = exe.parent().expect("deps dir");
    deps.parent().unwrap_or(deps).to_path_buf()
}

/// `cargo test -p fleet-tests` does not build other packages' binaries: build them once.
fn ensure_binaries(dir: &std::path::Path) {
    static BUILD: Once = Once::new();
    BUILD.call_once(|| {
        if dir.join("fleetd").exists() && dir.join("fleetctl").exists() {
            return;
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        let status = Command::new(cargo)
            .args(["build", "-p", "fleetd", "-p", "fleetctl"])
            .status()
            .expect("run cargo build for fleetd and fleetctl");
        assert!(status.success(), "cargo build -p fleetd -p fleetctl failed");
    });
}

/// Runs a shell snippet inside a machine; returns (exit code, stdout, stderr).
pub fn sh(lab: &Lab, node: &str, script: &str) -> (i32, String, String) {
    let out = lab
        .exec(node, &["/bin/bash", "-c", script])
        .unwrap_or_else(|e| panic!("exec on {node}: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

/// Probes TCP `ip:port` from inside `node`: "open", "refused" (the host answered) or
/// "timeout" (no answer within one second: unreachable).
pub fn tcp_probe(lab: &Lab, node: &str, ip: &str, port: u16) -> &'static str {
    let (code, _, err) = sh(
        lab,
        node,
        &format!("timeout 1 bash -c '</dev/tcp/{ip}/{port}'"),
    );
    match code {
        0 => "open",
        124 => "timeout",
        _ if err.contains("refused") => "refused",
        _ => panic!("tcp probe from {node} to {ip}:{port}: exit {code}: {err}"),
    }
}
