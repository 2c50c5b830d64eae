//! Harness of the end-to-end tests: boots a lab of container machines running the
//! real fleetd, torn down when the [`TestLab`] drops (panics included).
//!
//! Tests need root (CI runs as root); without it they fail with a message saying so.

use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Once;
use std::time::Duration;

pub use fleet_lab::{
    ClusterConfig, EtcdPlacement, Lab, LabError, LabEvent, LabName, MachineGroup, UpOptions,
};

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
    ensure_binaries();
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

/// `cargo test -p fleet-tests` does not build other packages' binaries: build them once
/// per test process, always (cargo does nothing if they are current), so a stale fleetd
/// (or fleet-lab, the link relay) left in the target directory is never tested in place
/// of the source.
fn ensure_binaries() {
    static BUILD: Once = Once::new();
    BUILD.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        let status = Command::new(cargo)
            .args(["build", "-p", "fleetd", "-p", "fleetctl", "-p", "fleet-lab"])
            .status()
            .expect("run cargo build for fleetd, fleetctl and fleet-lab");
        assert!(
            status.success(),
            "cargo build -p fleetd -p fleetctl -p fleet-lab failed"
        );
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

/// Waits until `cond` holds, polling every 50 ms; panics after `limit` naming `what`.
/// Returns how long it took.
pub fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    start.elapsed()
}

/// How the host's fleetctl reaches a lab: straight to its etcd, or through one
/// machine's fleetd API (`--endpoint http://<ip>:49153`).
#[derive(Clone, Debug)]
pub struct Fleetctl {
    /// Driver and endpoint flags put before every command.
    pub flags: Vec<String>,
    /// Working directory: where unit files named on the command line are read.
    pub dir: PathBuf,
}

impl Fleetctl {
    /// fleetctl with `--driver=etcd` against the lab's etcd.
    pub fn etcd(lab: &Lab, dir: &std::path::Path) -> Fleetctl {
        let mut flags = vec![
            "--driver=etcd".to_string(),
            format!("--endpoint={}", lab.etcd_url().expect("lab etcd")),
            format!("--etcd-key-prefix={}", lab.state().etcd_key_prefix),
        ];
        flags.extend(admin_flags(lab));
        Fleetctl {
            flags,
            dir: dir.to_path_buf(),
        }
    }

    /// fleetctl with the API driver against the fleetd of machine `node`.
    pub fn api(lab: &Lab, node: &str, dir: &std::path::Path) -> Fleetctl {
        let mut flags = vec![format!("--endpoint={}", api_endpoint(lab, node))];
        flags.extend(admin_flags(lab));
        Fleetctl {
            flags,
            dir: dir.to_path_buf(),
        }
    }

    /// The command, ready to run or spawn.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(target_dir().join("fleetctl"));
        cmd.args(&self.flags).args(args).current_dir(&self.dir);
        for var in [
            "FLEETCTL_ENDPOINT",
            "FLEETCTL_DRIVER",
            "FLEETCTL_TUNNEL",
            "FLEETCTL_CA_FILE",
            "FLEETCTL_CERT_FILE",
            "FLEETCTL_KEY_FILE",
            "FLEETCTL_ETCD_USERNAME",
            "FLEETCTL_ETCD_PASSWORD",
            "FLEETCTL_ETCD_PASSWORD_FILE",
        ] {
            cmd.env_remove(var);
        }
        cmd
    }

    /// Runs a command; (exit code, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.command(args).output().expect("run fleetctl");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs a command that must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 0, "fleetctl {:?} {args:?}: {out}{err}", self.flags);
        out
    }

    /// `list-machines`: full machine id → IP.
    pub fn machines(&self) -> std::collections::BTreeMap<String, String> {
        let (_, out, _) = self.run(&["list-machines", "--no-legend", "--full"]);
        out.lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                Some((f.next()?.to_string(), f.next().unwrap_or("").to_string()))
            })
            .collect()
    }

    /// `list-units` rows (full machine ids).
    pub fn units(&self) -> Vec<UnitRow> {
        let (_, out, _) = self.run(&[
            "list-units",
            "--no-legend",
            "--full",
            "--fields=unit,machine,active,sub",
        ]);
        out.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() >= 4).then(|| UnitRow {
                    unit: f[0].into(),
                    machine: f[1].split('/').next().unwrap_or("").into(),
                    active: f[2].into(),
                    sub: f[3].into(),
                })
            })
            .collect()
    }

    /// `list-unit-files`: unit → desired state.
    pub fn unit_files(&self) -> std::collections::BTreeMap<String, String> {
        let (_, out, _) = self.run(&[
            "list-unit-files",
            "--no-legend",
            "--full",
            "--fields=unit,dstate",
        ]);
        out.lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                Some((f.next()?.to_string(), f.next().unwrap_or("").to_string()))
            })
            .collect()
    }

    /// Rows of `list-units` whose ACTIVE is `active`.
    pub fn active(&self) -> Vec<UnitRow> {
        self.units()
            .into_iter()
            .filter(|r| r.active == "active")
            .collect()
    }
}

/// One row of `fleetctl list-units`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitRow {
    pub unit: String,
    /// Full machine id (the IP after `/` dropped).
    pub machine: String,
    pub active: String,
    pub sub: String,
}

/// The fleet API URL of machine `node` as the host reaches it (`https` on a secure lab).
pub fn api_endpoint(lab: &Lab, node: &str) -> String {
    lab.api_url(node)
        .unwrap_or_else(|e| panic!("no machine {node}: {e}"))
}

/// fleetctl's flags for the host's admin identity of a secure lab (none when insecure):
/// the CA and certificate serve both drivers, the etcd user only `--driver=etcd`.
pub fn admin_flags(lab: &Lab) -> Vec<String> {
    let Some(s) = lab.security() else {
        return Vec::new();
    };
    vec![
        format!("--ca-file={}", s.ca.display()),
        format!("--cert-file={}", s.admin_cert.display()),
        format!("--key-file={}", s.admin_key.display()),
        format!("--etcd-username={}", s.admin_user),
        format!("--etcd-password-file={}", s.admin_password_file.display()),
    ]
}

/// etcdctl's environment for the host's admin identity (a secure lab's etcd requires
/// a client certificate and a user), as `(name, value)` pairs to set on the command.
pub fn etcdctl_env(lab: &Lab) -> Vec<(String, String)> {
    let mut env = vec![
        ("ETCDCTL_API".to_string(), "3".to_string()),
        (
            "ETCDCTL_ENDPOINTS".to_string(),
            lab.etcd_url().expect("lab etcd").to_string(),
        ),
    ];
    if let Some(s) = lab.security() {
        let password = fleet_lab::secure::read_secret(&s.admin_password_file)
            .expect("read the lab's admin password");
        env.extend([
            ("ETCDCTL_CACERT".to_string(), s.ca.display().to_string()),
            (
                "ETCDCTL_CERT".to_string(),
                s.admin_cert.display().to_string(),
            ),
            ("ETCDCTL_KEY".to_string(), s.admin_key.display().to_string()),
            ("ETCDCTL_USER".to_string(), s.admin_user.clone()),
            ("ETCDCTL_PASSWORD".to_string(), password),
        ]);
    }
    env
}

/// An `etcdctl` command as the host's admin, for tests that look at etcd directly.
pub fn etcdctl(lab: &Lab) -> Command {
    let mut cmd = Command::new("etcdctl");
    cmd.envs(etcdctl_env(lab));
    cmd
}

/// The lab node whose machine id is `id`.
pub fn node_of(lab: &Lab, id: &str) -> String {
    lab.machines()
        .iter()
        .find(|m| m.machine_id == id)
        .map(|m| m.name.clone())
        .unwrap_or_else(|| panic!("no machine {id}"))
}

/// `systemctl ARGS` inside `node`: its trimmed stdout.
pub fn systemctl(lab: &Lab, node: &str, args: &str) -> String {
    sh(lab, node, &format!("systemctl {args}")).1
}

/// Boots a lab from `config` and waits until every machine's fleetd registered.
pub fn boot_registered(config: &ClusterConfig) -> TestLab {
    let lab = boot_config(config);
    let machines = config.machines().len();
    let ctl = Fleetctl::etcd(&lab, &std::env::temp_dir());
    wait_until("every machine registered", Duration::from_secs(30), || {
        ctl.machines().len() == machines
    });
    lab
}

/// A fresh directory of unit files for one test, removed on drop.
pub struct UnitDir(PathBuf);

impl UnitDir {
    /// Writes `files` (name, text) into a new directory.
    pub fn new(files: &[(&str, &str)]) -> UnitDir {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("fleet-e2e-units-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create unit dir");
        let dir = UnitDir(dir);
        for (name, text) in files {
            dir.write(name, text);
        }
        dir
    }

    /// Adds or replaces one unit file.
    pub fn write(&self, name: &str, text: &str) {
        std::fs::write(self.0.join(name), text).expect("write unit file");
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for UnitDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
