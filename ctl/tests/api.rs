//! fleetctl's scenarios through BOTH drivers: straight to etcd, and through an
//! in-process fleetd API server (unix socket) over the same etcd. Also journal/status
//! (with stand-in journalctl/systemctl scripts) and `--tunnel` (with a stand-in ssh).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use assert_cmd::Command;
use fleet_api::{ApiContext, ListenConfig, Listeners, LocalCommands, serve_on};
use fleet_core::{Machine, MachineId, SystemdState, TargetState, UnitFile, UnitName};
use fleet_registry::{Registry, RegistryConfig, ScheduleEntry, SchedulePlan, UnitStateRecord};
use fleet_testkit::EtcdServer;
use tokio_util::sync::CancellationToken;

const HELLO: &str = "[Unit]\nDescription=Hello World\n\n[Service]\nExecStart=/bin/sleep 1000\n";

#[derive(Clone, Copy, Debug)]
enum Driver {
    Etcd,
    Api,
}

/// etcd, one fleetd API (machine `m1`) on a unix socket, and a unit-file directory.
struct Cluster {
    etcd: EtcdServer,
    dir: tempfile::TempDir,
    socket: PathBuf,
    stop: CancellationToken,
    server: Option<std::thread::JoinHandle<()>>,
    rt: tokio::runtime::Runtime,
    /// m1 as registered by the API's fleetd: its record, API address and lease.
    m1: (Machine, String, fleet_registry::LeaseId),
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.server.take() {
            let _ = t.join();
        }
    }
}

fn script(dir: &Path, file: &str, body: &str) -> PathBuf {
    let path = dir.join(file);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

impl Cluster {
    fn new() -> Cluster {
        let etcd = EtcdServer::start().expect("start etcd");
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("fleet.sock");
        let stop = CancellationToken::new();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let url = etcd.client_url();
        let commands = LocalCommands {
            journalctl: script(dir.path(), "journalctl", "echo \"journal $*\""),
            systemctl: script(dir.path(), "systemctl", "echo \"status $*\"\nexit 3"),
            user: false,
        };
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (sock, stop2) = (socket.clone(), stop.clone());
        let server = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async move {
                let reg = Registry::connect(RegistryConfig::new(url)).await.unwrap();
                let listeners = Listeners::open(&ListenConfig {
                    unix: Some(sock),
                    tcp: vec!["127.0.0.1:0".parse().unwrap()],
                    tls: None,
                    socket_activation: false,
                })
                .unwrap();
                let mut m = Machine::new(MachineId::new("m1").unwrap());
                m.public_ip = "10.9.8.7".into();
                let addr = listeners.api_addr(None);
                let (agent, _keep) = reg
                    .register_agent(&m, &addr, Duration::from_secs(60), &[])
                    .await
                    .unwrap();
                let mut ctx = ApiContext::new(reg, MachineId::new("m1").unwrap());
                ctx.commands = commands;
                ready_tx.send((m, addr, agent.lease())).unwrap();
                let _ = serve_on(listeners, ctx, stop2).await;
            });
        });
        let m1 = ready_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("API server ready");
        Cluster {
            etcd,
            dir,
            socket,
            stop,
            server: Some(server),
            rt,
            m1,
        }
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.dir.path().join(name), text).unwrap();
    }

    fn cmd(&self, driver: Driver) -> Command {
        let mut cmd = Command::cargo_bin("fleetctl").unwrap();
        cmd.current_dir(self.dir.path())
            .env_remove("FLEETCTL_ETCD_KEY_PREFIX")
            .env_remove("FLEETCTL_TUNNEL")
            .timeout(Duration::from_secs(60));
        match driver {
            Driver::Etcd => cmd
                .env("FLEETCTL_DRIVER", "etcd")
                .env("FLEETCTL_ENDPOINT", self.etcd.client_url()),
            Driver::Api => cmd.env("FLEETCTL_DRIVER", "API").env(
                "FLEETCTL_ENDPOINT",
                format!("unix://{}", self.socket.display()),
            ),
        };
        cmd
    }

    fn run(&self, d: Driver, args: &[&str]) -> Output {
        self.cmd(d).args(args).output().unwrap()
    }

    fn ok(&self, d: Driver, args: &[&str]) -> String {
        let out = self.run(d, args);
        assert!(
            out.status.success(),
            "{d:?}: fleetctl {args:?} failed: {}",
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    fn fails(&self, d: Driver, args: &[&str]) -> String {
        let out = self.run(d, args);
        assert!(
            !out.status.success(),
            "{d:?}: fleetctl {args:?} should fail"
        );
        text(&out.stderr)
    }

    /// Places `unit` on m1 and reports it launched, as engine and agent would.
    fn run_on_m1(&self, unit: &str) {
        let url = self.etcd.client_url();
        let unit = UnitName::parse(unit).unwrap();
        let (machine, addr, lease) = self.m1.clone();
        self.rt.block_on(async move {
            let reg = Registry::connect(RegistryConfig::new(url)).await.unwrap();
            let hash = reg.get_unit(&unit).await.unwrap().unwrap().hash;
            let m1 = MachineId::new("m1").unwrap();
            let place = ScheduleEntry {
                machine: m1.clone(),
                unit: unit.clone(),
                hash,
                target: TargetState::Launched,
            };
            let plan = SchedulePlan {
                place: vec![place],
                ..Default::default()
            };
            let engine_lease = reg.grant_lease(Duration::from_secs(60)).await.unwrap();
            let engine = reg.campaign("test-engine", engine_lease).await.unwrap();
            engine.apply(&plan).await.unwrap();
            engine.resign().await.unwrap();
            // m1's agent, taking its lease back from the API's fleetd
            let ttl = Duration::from_secs(60);
            let (agent, _keep) = reg
                .register_agent(&machine, &addr, ttl, &[lease])
                .await
                .unwrap();
            let state = UnitStateRecord {
                unit,
                machine: m1,
                hash,
                state: TargetState::Launched,
                systemd: SystemdState {
                    load: "loaded".into(),
                    active: "active".into(),
                    sub: "running".into(),
                },
            };
            agent.put_states(&[state]).await.unwrap();
        });
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const BOTH: [Driver; 2] = [Driver::Etcd, Driver::Api];

#[test]
fn unit_lifecycle_is_the_same_through_both_drivers() {
    let c = Cluster::new();
    c.write("hello.service", HELLO);
    let _ = UnitFile::parse(HELLO).unwrap();
    for (i, d) in BOTH.into_iter().enumerate() {
        let unit = format!("u{i}.service");
        c.write(&unit, HELLO);
        assert_eq!(
            c.ok(d, &["submit", &unit]),
            format!("Unit {unit} inactive\n")
        );
        assert_eq!(c.ok(d, &["submit", &unit]), "");
        assert_eq!(
            c.ok(d, &["cat", &unit]),
            UnitFile::parse(HELLO).unwrap().canonical()
        );
        let files = c.ok(
            d,
            &["list-unit-files", "--no-legend", "--fields", "unit,dstate"],
        );
        assert!(files.contains(&format!("{unit}\tinactive")), "{files}");
        assert_eq!(
            c.ok(d, &["load", "--no-block", &unit]),
            format!("Triggered unit {unit} load\n")
        );
        assert_eq!(
            c.ok(d, &["start", "--no-block", &unit]),
            format!("Triggered unit {unit} start\n")
        );
        let files = c.ok(
            d,
            &["list-unit-files", "--no-legend", "--fields", "unit,dstate"],
        );
        assert!(files.contains(&format!("{unit}\tlaunched")), "{files}");
        // Blocking start with nobody to run it gives up after its attempts.
        let waiting = format!("w{i}.service");
        c.write(&waiting, HELLO);
        let err = c.fails(d, &["start", "--block-attempts=1", &waiting]);
        assert!(err.contains("timed out"), "{d:?}: {err}");
        assert_eq!(c.ok(d, &["destroy", &unit]), format!("Destroyed {unit}\n"));
        assert_eq!(
            c.fails(d, &["cat", &unit]),
            format!("Unit {unit} not found\n")
        );
        let machines = c.ok(d, &["list-machines", "-l", "--no-legend"]);
        assert_eq!(machines, "m1\t10.9.8.7\t-\n", "{d:?}");
        let err = c.fails(d, &["submit", "bad%.service"]);
        assert!(err.starts_with("Error creating units: "), "{d:?}: {err}");
    }
}

#[test]
fn status_and_journal_through_both_drivers() {
    let c = Cluster::new();
    c.write("hello.service", HELLO);
    c.write("idle.service", HELLO);
    c.ok(Driver::Etcd, &["submit", "hello.service", "idle.service"]);
    c.run_on_m1("hello.service");
    for d in BOTH {
        assert_eq!(
            c.ok(
                d,
                &[
                    "journal",
                    "--lines",
                    "5",
                    "--output",
                    "cat",
                    "hello.service"
                ]
            ),
            "journal --no-pager -o cat -n 5 -u hello.service\n",
            "{d:?}"
        );
        let out = c.run(d, &["status", "hello.service"]);
        assert_eq!(out.status.code(), Some(3), "{d:?}: {}", text(&out.stderr));
        assert_eq!(
            text(&out.stdout),
            "status status -l --no-pager hello.service\n"
        );
        assert_eq!(
            c.fails(d, &["journal", "a.service", "b.service"]),
            "One unit file must be provided.\n"
        );
        assert_eq!(
            c.fails(d, &["journal", "nope.service"]),
            "Unit nope.service does not exist.\n"
        );
        assert_eq!(
            c.fails(d, &["journal", "idle.service"]),
            "Unit idle.service does not appear to be running.\n"
        );
        assert_eq!(
            c.fails(d, &["status", "idle.service"]),
            "Unit idle.service does not appear to be loaded.\n"
        );
    }
}

#[test]
fn ssh_runs_the_system_ssh_to_the_machine_ip() {
    let c = Cluster::new();
    c.write("hello.service", HELLO);
    c.ok(Driver::Etcd, &["submit", "hello.service"]);
    c.run_on_m1("hello.service");
    let fake = script(c.dir.path(), "fake-ssh", "echo \"ssh $*\"\nexit 7");
    for d in BOTH {
        for target in ["m1", "hello.service"] {
            let out = c
                .cmd(d)
                .env("FLEETCTL_SSH_COMMAND", &fake)
                .args([
                    "ssh",
                    "--strict-host-key-checking=false",
                    target,
                    "uptime",
                    "-p",
                ])
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(7), "{d:?}");
            assert_eq!(
                text(&out.stdout),
                "ssh -l core -p 22 -o ConnectTimeout=10 -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null 10.9.8.7 uptime -p\n"
            );
        }
        assert_eq!(
            c.fails(d, &["ssh", "zz"]),
            "Unable to proceed: could not find matching unit or machine\n"
        );
    }
}

#[test]
fn tunnel_reaches_the_socket_through_fd_forward() {
    let c = Cluster::new();
    c.write("hello.service", HELLO);
    // A stand-in ssh: skips the options and the host, runs the remote command here.
    let bin = env!("CARGO_BIN_EXE_fleetctl");
    let fake = script(
        c.dir.path(),
        "fake-ssh",
        &format!(
            "while [ $# -gt 0 ]; do case \"$1\" in -l|-p|-o) shift 2;; *) break;; esac; done\nshift\n[ \"$1\" = fleetctl ] && shift\nexec {bin} \"$@\""
        ),
    );
    let out = c
        .cmd(Driver::Api)
        .env("FLEETCTL_SSH_COMMAND", &fake)
        .env("FLEETCTL_TUNNEL", "127.0.0.1:2222")
        .args(["submit", "hello.service"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "Unit hello.service inactive\n");
    assert_eq!(
        c.fails(Driver::Api, &["fd-forward"]),
        "Provide a single argument\n"
    );
}

#[test]
fn unreachable_api_is_one_clear_line() {
    let c = Cluster::new();
    let out = c
        .cmd(Driver::Api)
        .env("FLEETCTL_ENDPOINT", "unix:///nonexistent/fleet.sock")
        .args(["list-machines"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.starts_with("Unable to initialize client: "), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let out = c
        .cmd(Driver::Api)
        .env("FLEETCTL_ENDPOINT", "unix://var/run/fleet.sock")
        .args(["list-machines"])
        .output()
        .unwrap();
    assert_eq!(
        text(&out.stderr),
        "Unable to initialize client: unable to connect to host \"var\" with scheme \"unix\"\n"
    );
}
