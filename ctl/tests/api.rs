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

/// What the stand-in journalctl/systemctl print first for `esc.service`: a terminal
/// title write, colours, a C1 CSI, a stray byte, tab and CR.
const ESCAPES: &str = "case \"$*\" in *esc.service*) printf '\\033]0;pwned\\007\\033[31mred\\tx\\r\\302\\233\\377\\n'; printf 'err\\033[2J\\n' >&2;; esac\ncase \"$*\" in *-f*) echo following; exec sleep 60;; esac\n";

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
            journalctl: script(
                dir.path(),
                "journalctl",
                &format!("{ESCAPES}echo \"journal $*\""),
            ),
            systemctl: script(
                dir.path(),
                "systemctl",
                &format!("{ESCAPES}echo \"status $*\"\nexit 3"),
            ),
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
                    auth: Default::default(),
                })
                .unwrap();
                let mut m = Machine::new(MachineId::new("m1").unwrap());
                m.public_ip = Some("10.9.8.7".parse().unwrap());
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
                text: None,
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
            "journal --no-pager --output=cat -n 5 --unit=hello.service\n",
            "{d:?}"
        );
        let out = c.run(d, &["status", "hello.service"]);
        assert_eq!(out.status.code(), Some(3), "{d:?}: {}", text(&out.stderr));
        assert_eq!(
            text(&out.stdout),
            "status status -l --no-pager -- hello.service\n"
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
fn remote_output_shows_control_characters_visibly() {
    let c = Cluster::new();
    c.write("esc.service", HELLO);
    c.ok(Driver::Etcd, &["submit", "esc.service"]);
    c.run_on_m1("esc.service");
    let shown = "^[]0;pwned^G^[[31mred\tx^M\\u{9b}\\xff\n";
    for d in BOTH {
        let out = c.run(d, &["journal", "--output", "cat", "esc.service"]);
        assert_eq!(
            text(&out.stdout),
            format!("{shown}journal --no-pager --output=cat -n 10 --unit=esc.service\n"),
            "{d:?}"
        );
        assert_eq!(text(&out.stderr), "err^[[2J\n", "{d:?}");
        let out = c.run(d, &["status", "esc.service"]);
        assert_eq!(
            text(&out.stdout),
            format!("{shown}status status -l --no-pager -- esc.service\n"),
            "{d:?}"
        );
        assert_eq!(out.status.code(), Some(3));
    }
}

#[test]
fn too_many_streams_is_one_line() {
    let c = Cluster::new();
    c.write("hello.service", HELLO);
    c.ok(Driver::Etcd, &["submit", "hello.service"]);
    c.run_on_m1("hello.service");
    // The test holds every stream one client may have (fleetctl runs as the same uid).
    let endpoint = format!("unix://{}", c.socket.display());
    let _open = c.rt.block_on(async {
        let api = fleet_api::ApiClient::connect(&fleet_api::ClientConfig::new(endpoint))
            .await
            .unwrap();
        let unit = UnitName::parse("hello.service").unwrap();
        let mut open = Vec::new();
        for _ in 0..fleet_api::MAX_STREAMS_PER_CLIENT {
            let mut s = api.journal(&unit, 1, true, "cat").await.unwrap();
            s.next().await.unwrap();
            open.push(s);
        }
        (api, open)
    });
    // Through the unix socket: the same client (the etcd driver reaches fleetd over TCP,
    // another client).
    for d in [Driver::Api] {
        for args in [
            &["journal", "-f", "hello.service"][..],
            &["status", "hello.service"],
        ] {
            let out = c.run(d, args);
            assert_eq!(out.status.code(), Some(1), "{d:?} {args:?}");
            assert_eq!(
                text(&out.stderr),
                "too many journal/status streams (limit 16 per client); close some\n",
                "{d:?} {args:?}"
            );
        }
    }
}

#[test]
fn big_units_list_and_cat_through_both_drivers() {
    let c = Cluster::new();
    let mut text = String::from("[Service]\nExecStart=/bin/sleep 1000\n");
    for i in 0..880 {
        text.push_str(&format!("Environment=V{i}={}\n", "x".repeat(1000)));
    }
    let file = UnitFile::parse(&text).unwrap();
    let names: Vec<String> = (0..5).map(|i| format!("big{i}.service")).collect();
    for n in &names {
        c.write(n, &text);
        // One at a time: five of these exceed etcd's request limit in one transaction.
        c.ok(Driver::Etcd, &["submit", n]);
    }
    let mut all = vec!["submit"];
    all.extend(names.iter().map(String::as_str));
    for d in BOTH {
        let files = c.ok(d, &["list-unit-files", "--no-legend", "--fields", "unit"]);
        assert_eq!(files, format!("{}\n", names.join("\n")), "{d:?}");
        assert_eq!(c.ok(d, &["cat", "big3.service"]), file.canonical(), "{d:?}");
        // Already there: submit looks them all up and has nothing to do.
        assert_eq!(c.ok(d, &all), "", "{d:?}");
        assert!(c.ok(d, &["list-units", "--no-legend"]).is_empty(), "{d:?}");
    }
}

#[test]
fn several_big_units_submit_in_one_command() {
    let c = Cluster::new();
    let mut text = String::from("[Service]\nExecStart=/bin/sleep 1000\n");
    for i in 0..900 {
        text.push_str(&format!("Environment=V{i}={}\n", "y".repeat(1000)));
    }
    for (k, d) in BOTH.into_iter().enumerate() {
        let names: Vec<String> = (0..5).map(|i| format!("s{k}x{i}.service")).collect();
        let mut args = vec!["submit"];
        for n in &names {
            c.write(n, &text);
            args.push(n);
        }
        let expected: String = names
            .iter()
            .map(|n| format!("Unit {n} inactive\n"))
            .collect();
        assert_eq!(c.ok(d, &args), expected, "{d:?}");
        for n in &names {
            assert_eq!(
                c.ok(d, &["cat", n]),
                UnitFile::parse(&text).unwrap().canonical(),
                "{d:?}"
            );
        }
        assert_eq!(c.ok(d, &args), "", "{d:?}");
    }
}

/// A unit whose stored value would pass 1 MiB (escaping makes it larger than its text)
/// is refused in one line through both drivers, and nothing of the command is written.
#[test]
fn a_unit_too_large_once_stored_is_one_line_and_nothing_is_written() {
    let c = Cluster::new();
    c.write("small.service", HELLO);
    let mut quotes = String::from("[Service]\nExecStart=/bin/true\n");
    for i in 0..360 {
        quotes.push_str(&format!("Environment=V{i}={}x\n", "\"\\".repeat(995)));
    }
    c.write("quotes.service", &quotes);
    for d in BOTH {
        let err = c.fails(d, &["submit", "small.service", "quotes.service"]);
        assert_eq!(err.lines().count(), 1, "{d:?}: {err}");
        assert!(
            err.contains("unit quotes.service is too large to store") && err.contains("1048576"),
            "{d:?}: {err}"
        );
        assert_eq!(c.ok(d, &["list-unit-files", "--no-legend"]), "", "{d:?}");
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
                "ssh -l core -p 22 -o ConnectTimeout=10 -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -- 10.9.8.7 uptime -p\n"
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
            "while [ $# -gt 0 ]; do case \"$1\" in -l|-p|-o) shift 2;; --) shift; break;; *) break;; esac; done\nshift\ncmd=\"$*\"\nexec sh -c \"{bin} ${{cmd#fleetctl }}\""
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
    // The remote shell gets the socket path as one word: spaces, quotes and `$(...)` in
    // it are neither split nor run (the stand-in runs it through `sh -c` as sshd does).
    let odd = c.dir.path().join("a b;'$(touch pwned)");
    std::fs::create_dir(&odd).unwrap();
    std::os::unix::fs::symlink(&c.socket, odd.join("fleet.sock")).unwrap();
    let out = c
        .cmd(Driver::Api)
        .env("FLEETCTL_SSH_COMMAND", &fake)
        .env("FLEETCTL_TUNNEL", "127.0.0.1:2222")
        .env(
            "FLEETCTL_ENDPOINT",
            format!("unix://{}", odd.join("fleet.sock").display()),
        )
        .args(["list-unit-files", "--no-legend", "--fields", "unit"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello.service\n");
    assert!(!c.dir.path().join("pwned").exists(), "the socket path ran");
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

/// Runs `fleetctl ssh ARGS` with a stand-in ssh that prints its argv.
fn ssh_argv(c: &Cluster, d: Driver, args: &[&str]) -> Output {
    let fake = script(c.dir.path(), "print-ssh", "echo \"ssh $*\"");
    c.cmd(d)
        .env("FLEETCTL_SSH_COMMAND", &fake)
        .arg("ssh")
        .arg("--strict-host-key-checking=false")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn ssh_parses_flags_after_the_target_and_says_what_is_missing() {
    let c = Cluster::new();
    c.write("hello.service", HELLO);
    c.write("idle.service", HELLO);
    c.ok(Driver::Etcd, &["submit", "hello.service", "idle.service"]);
    c.run_on_m1("hello.service");
    let opts =
        "-l core -o ConnectTimeout=10 -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null";
    let line = |port: u16, extra: &str, rest: &str| {
        let opts = opts.replace("-l core", &format!("-l core -p {port}"));
        format!("ssh {opts}{extra} -- 10.9.8.7{rest}\n")
    };
    for d in BOTH {
        let cases: [(&[&str], String); 6] = [
            (&["m1", "--ssh-port", "2222"], line(2222, "", "")),
            (
                &["m1", "--ssh-port=2222", "uptime"],
                line(2222, "", " uptime"),
            ),
            (&["hello.service", "-A"], line(22, " -A", "")),
            (
                &["hello", "--forward-agent", "--", "ls", "-la"],
                line(22, " -A", " ls -la"),
            ),
            // After `--`, options belong to the remote command, never to ssh.
            (&["m1", "--", "-v"], line(22, "", " -v")),
            (
                &["--unit", "hello.service", "--", "-oProxyCommand=x"],
                line(22, "", " -oProxyCommand=x"),
            ),
        ];
        for (args, want) in cases {
            let out = ssh_argv(&c, d, args);
            assert!(
                out.status.success(),
                "{d:?} {args:?}: {}",
                text(&out.stderr)
            );
            assert_eq!(text(&out.stdout), want, "{d:?} {args:?}");
        }
        for (args, want) in [
            (
                &[][..],
                "Unable to proceed: one machine or unit must be provided\n",
            ),
            (
                &["--machine", "abc"],
                "Unable to proceed: machine does not exist\n",
            ),
            (
                &["--unit", "nope.service"],
                "Unable to proceed: unit does not exist\n",
            ),
            (
                &["--unit", "idle.service"],
                "Could not determine address of machine.\n",
            ),
            (
                &["zz"],
                "Unable to proceed: could not find matching unit or machine\n",
            ),
            (
                &["--machine", "m1", "--unit", "hello.service"],
                "Both machine and unit flags provided, please specify only one.\n",
            ),
        ] {
            let out = ssh_argv(&c, d, args);
            assert_eq!(out.status.code(), Some(1), "{d:?} {args:?}");
            assert_eq!(text(&out.stderr), want, "{d:?} {args:?}");
            assert_eq!(text(&out.stdout), "", "ssh must not run: {d:?} {args:?}");
        }
    }
}

/// Writes `key` (under fleet's default prefix) = `value` as no fleet component would.
fn put_raw(c: &Cluster, key: &str, value: &str) {
    let url = c.etcd.client_url();
    let (key, value) = (format!("/_coreos.com/fleet/{key}"), value.to_string());
    c.rt.block_on(async move {
        let mut raw = etcd_client::Client::connect([url], None).await.unwrap();
        raw.put(key, value, None).await.unwrap();
    });
}

#[test]
fn ssh_refuses_a_machine_address_that_is_not_an_ip() {
    let c = Cluster::new();
    // A record fleetd cannot write (public_ip is typed) but someone with etcd access can.
    put_raw(
        &c,
        "machine/evil",
        r#"{"id":"evil","public_ip":"-oProxyCommand=touch pwned"}"#,
    );
    for d in BOTH {
        let out = ssh_argv(&c, d, &["evil"]);
        assert_eq!(out.status.code(), Some(1), "{d:?}");
        assert_eq!(text(&out.stdout), "", "{d:?}: ssh ran");
        let err = text(&out.stderr);
        assert!(
            err.starts_with(
                "WARNING: skipped corrupt registry value at /_coreos.com/fleet/machine/evil: public_ip \"-oProxyCommand=touch pwned\" is not an IP address\n"
            ),
            "{d:?}: {err}"
        );
    }
    assert!(!c.dir.path().join("pwned").exists());
}

/// One corrupt value under each directory: every command shows the rest, names each
/// bad key once on stderr, and exits with 5 instead of 0 (through both drivers).
#[test]
fn corrupt_records_are_skipped_and_named_through_both_drivers() {
    let c = Cluster::new();
    c.write("hello.service", HELLO);
    c.write("idle.service", HELLO);
    c.ok(Driver::Etcd, &["submit", "hello.service", "idle.service"]);
    c.run_on_m1("hello.service");
    put_raw(&c, "unit/bad.service", "{not json");
    put_raw(
        &c,
        "machine/evil",
        r#"{"id":"evil","public_ip":"host.example"}"#,
    );
    put_raw(&c, "machine-state/m9/idle.service", "[]");
    let p = "/_coreos.com/fleet";
    let warn = |key: &str| format!("WARNING: skipped corrupt registry value at {p}/{key}: ");
    for d in BOTH {
        let run = |args: &[&str]| {
            let out = c.run(d, args);
            (out.status.code(), text(&out.stdout), text(&out.stderr))
        };
        // list-units reads machines and states only: unit/bad.service is not its.
        let (code, stdout, stderr) = run(&["list-units", "--no-legend"]);
        assert_eq!(code, Some(5), "{d:?}: {stderr}");
        assert!(stdout.starts_with("hello.service"), "{d:?}: {stdout}");
        for key in ["machine/evil", "machine-state/m9/idle.service"] {
            assert_eq!(stderr.matches(&warn(key)).count(), 1, "{d:?}: {stderr}");
        }
        assert_eq!(stderr.lines().count(), 2, "{d:?}: {stderr}");

        let (code, stdout, stderr) = run(&[
            "list-unit-files",
            "--no-legend",
            "--fields",
            "unit,dstate,reason",
        ]);
        assert_eq!(code, Some(5), "{d:?}: {stderr}");
        let rows: Vec<Vec<&str>> = stdout
            .lines()
            .map(|l| {
                l.split('\t')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .collect()
            })
            .collect();
        let row = |u: &str| rows.iter().find(|r| r[0] == u).cloned().unwrap_or_default();
        assert_eq!(row("hello.service")[2], "-", "{d:?}: {stdout}");
        assert_eq!(row("bad.service")[1], "-", "{d:?}: {stdout}");
        assert!(
            row("bad.service")[2].starts_with(&format!(
                "skipped corrupt registry value at {p}/unit/bad.service: "
            )),
            "{d:?}: {stdout}"
        );
        assert!(
            row("idle.service")[2].contains("machine-state/m9/idle.service"),
            "{d:?}: {stdout}"
        );

        let (code, stdout, stderr) = run(&["list-machines", "--no-legend"]);
        assert_eq!(code, Some(5), "{d:?}: {stderr}");
        assert!(stdout.starts_with("m1"), "{d:?}: {stdout}");
        assert_eq!(
            stderr,
            format!(
                "{}public_ip \"host.example\" is not an IP address\n",
                warn("machine/evil")
            ),
            "{d:?}"
        );

        // journal, status and stop read only the units named (and, to reach a machine,
        // the machine list): unit/bad.service is never read, so never reported.
        let (code, stdout, stderr) = run(&["journal", "--lines", "1", "hello.service"]);
        assert!(stdout.starts_with("journal "), "{d:?}: {stdout}");
        assert_eq!((code, stderr.as_str()), (Some(0), ""), "{d:?}");

        // status keeps systemctl's exit status (3 from the stand-in).
        let (code, stdout, stderr) = run(&["status", "hello.service"]);
        assert_eq!(code, Some(3), "{d:?}: {stderr}");
        assert!(stdout.starts_with("status "), "{d:?}: {stdout}");
        assert!(!stderr.contains("skipped corrupt"), "{d:?}: {stderr}");

        let (code, _, stderr) = run(&["stop", "--no-block", "hello.service"]);
        assert_eq!(code, Some(0), "{d:?}: {stderr}");
        assert!(
            !stderr.contains(&warn("unit/bad.service")),
            "{d:?}: {stderr}"
        );
        assert!(
            stderr.contains("Successfully stopped units [hello.service]"),
            "{d:?}: {stderr}"
        );
        c.ok(Driver::Etcd, &["start", "--no-block", "hello.service"]);

        // Asking for the corrupt unit itself is an error naming its key.
        let (code, _, stderr) = run(&["cat", "bad.service"]);
        assert_eq!(code, Some(1), "{d:?}: {stderr}");
        assert!(
            stderr.contains(&format!("{p}/unit/bad.service")),
            "{d:?}: {stderr}"
        );
    }
    // The corrupt unit can be destroyed (by name, without reading it): that clears it.
    let out = c.run(Driver::Api, &["destroy", "bad.service", "nope.service"]);
    assert_eq!(text(&out.stdout), "Destroyed bad.service\n");
    assert_eq!(
        text(&out.stderr),
        "Unit nope.service not found in registry\n"
    );
    assert_eq!(out.status.code(), Some(1));
    let out = c.run(
        Driver::Etcd,
        &["list-unit-files", "--no-legend", "--fields", "unit"],
    );
    let files = text(&out.stdout);
    assert!(
        !files.contains("bad.service") && files.contains("hello.service"),
        "{files}"
    );
}

#[test]
fn journal_refuses_a_machine_api_address_that_is_not_ip_and_port() {
    let c = Cluster::new();
    c.write("hello.service", HELLO);
    c.ok(Driver::Etcd, &["submit", "hello.service"]);
    c.run_on_m1("hello.service");
    let other = c.dir.path().join("other.sock");
    for bad in [
        format!("unix://{}", other.display()),
        "localhost:1".to_string(),
        "http://127.0.0.1:1/x".to_string(),
    ] {
        let url = c.etcd.client_url();
        let addr = bad.clone();
        let (machine, _, lease) = c.m1.clone();
        c.rt.block_on(async move {
            // m1's own record, republished under its lease by whoever holds its
            // credentials.
            let reg = Registry::connect(RegistryConfig::new(url)).await.unwrap();
            reg.register_agent(&machine, &addr, Duration::from_secs(60), &[lease])
                .await
                .unwrap();
        });
        // The etcd driver reads the record itself; through the API, fleetd serves it
        // locally (m1 is itself), so only the etcd driver meets the address.
        let err = c.fails(Driver::Etcd, &["journal", "hello.service"]);
        assert_eq!(
            err,
            format!(
                "Unable to reach machine m1: machine m1 publishes an invalid API address {bad:?} (want IP:PORT)\n"
            )
        );
    }
}

#[test]
fn status_of_a_unit_named_like_an_option_reaches_systemctl_as_a_name() {
    let c = Cluster::new();
    c.write("-pFoo.service", HELLO);
    c.ok(Driver::Etcd, &["submit", "--", "-pFoo.service"]);
    c.run_on_m1("-pFoo.service");
    for d in BOTH {
        let out = c.run(d, &["status", "--", "-pFoo.service"]);
        assert_eq!(out.status.code(), Some(3), "{d:?}: {}", text(&out.stderr));
        assert_eq!(
            text(&out.stdout),
            "status status -l --no-pager -- -pFoo.service\n",
            "{d:?}"
        );
        assert_eq!(
            c.ok(d, &["journal", "--", "-pFoo.service"]),
            "journal --no-pager --output=short -n 10 --unit=-pFoo.service\n"
        );
    }
}

#[test]
fn json_output_through_both_drivers() {
    let c = Cluster::new();
    c.write("hello.service", HELLO);
    c.ok(Driver::Etcd, &["submit", "hello.service"]);
    c.run_on_m1("hello.service");
    let lines = |out: String| -> Vec<serde_json::Value> {
        out.lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
            .collect()
    };
    for d in BOTH {
        let units = lines(c.ok(d, &["list-units", "-o", "json"]));
        let hash = units[0]["hash"].as_str().unwrap().to_string();
        assert_eq!(
            units,
            [serde_json::json!({
                "unit": "hello.service",
                "machine_id": "m1",
                "machine_ip": "10.9.8.7",
                "load": "loaded",
                "active": "active",
                "sub": "running",
                "hash": hash,
            })],
            "{d:?}"
        );
        assert_eq!(
            lines(c.ok(d, &["list-machines", "-o", "json"])),
            [
                serde_json::json!({"machine_id": "m1", "ip": "10.9.8.7", "metadata": {}, "drained": false})
            ],
            "{d:?}"
        );
        let files = lines(c.ok(d, &["list-unit-files", "-o", "json"]));
        assert_eq!(files[0]["target_machine_id"], "m1", "{d:?}");
        assert_eq!(files[0]["target_machine_ip"], "10.9.8.7", "{d:?}");
        assert_eq!(files[0]["current_state"], "launched", "{d:?}");
        assert_eq!(files[0]["desired_state"], "inactive", "{d:?}");
        assert_eq!(
            lines(c.ok(d, &["status", "-o", "json", "hello.service"])),
            [serde_json::json!({
                "unit": "hello.service",
                "desired_state": "inactive",
                "current_state": "launched",
                "global": false,
                "machine_id": "m1",
                "machine_ip": "10.9.8.7",
                "load": "loaded",
                "active": "active",
                "sub": "running",
                "hash": hash,
            })],
            "{d:?}"
        );
        assert_eq!(
            c.fails(d, &["status", "-o", "json", "nope.service"]),
            "Unit nope.service does not exist.\n"
        );
    }
}

#[test]
fn drain_and_undrain_through_both_drivers() {
    let c = Cluster::new();
    let drained = |d: Driver| {
        c.ok(
            d,
            &[
                "list-machines",
                "--no-legend",
                "--full",
                "--fields=machine,drained",
            ],
        )
    };
    for d in BOTH {
        assert_eq!(drained(d), "m1\t-\n", "{d:?}");
        assert_eq!(
            c.ok(d, &["drain", "m"]),
            "Machine m1 drained: its units move to other machines\n"
        );
        assert_eq!(c.ok(d, &["drain", "m1"]), "Machine m1 is already drained\n");
        assert_eq!(drained(d), "m1\tdrained\n", "{d:?}");
        assert_eq!(
            c.ok(d, &["list-machines", "--no-legend", "--full"]),
            "m1\t10.9.8.7\t-\n",
            "fleet's default columns are unchanged"
        );
        assert_eq!(c.fails(d, &["drain", "m2"]), "Machine m2 does not exist\n");
        assert_eq!(
            c.ok(d, &["undrain", "m1"]),
            "Machine m1 undrained: it takes units again\n"
        );
        assert_eq!(c.ok(d, &["undrain", "m1"]), "Machine m1 is not drained\n");
        assert_eq!(drained(d), "m1\t-\n", "{d:?}");
    }
}

#[test]
fn debug_shows_fleetctls_requests_only() {
    let c = Cluster::new();
    let out = c.run(Driver::Api, &["--debug", "list-units"]);
    assert!(out.status.success());
    let err = text(&out.stderr);
    let endpoint = format!("unix://{}", c.socket.display());
    assert!(
        err.contains(&format!("API connect {endpoint} ok in ")),
        "{err}"
    );
    assert!(
        err.contains(&format!("API ListStates {endpoint} ok in ")),
        "{err}"
    );
    // No colour into a file or pipe, no transport frames.
    assert!(!err.contains('\x1b'), "{err}");
    for noise in ["h2", "hyper", "tonic", "frame"] {
        assert!(!err.contains(noise), "{noise}: {err}");
    }
    // FLEETCTL_DEBUG does the same.
    let out = c
        .cmd(Driver::Api)
        .env("FLEETCTL_DEBUG", "true")
        .arg("list-machines")
        .output()
        .unwrap();
    assert!(text(&out.stderr).contains("API ListMachines"));
}

#[test]
fn unreachable_api_says_where_and_what_to_try() {
    let c = Cluster::new();
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for (endpoint, why) in [
        (
            "unix:///nonexistent/fleet.sock".to_string(),
            "no such socket",
        ),
        (format!("http://127.0.0.1:{port}"), "connection refused"),
    ] {
        let out = c
            .cmd(Driver::Api)
            .env("FLEETCTL_ENDPOINT", &endpoint)
            .arg("list-units")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(
            text(&out.stderr),
            format!(
                "Unable to initialize client: cannot reach fleet API at {endpoint}: {why}; is fleetd running there? (set the address with --endpoint or FLEETCTL_ENDPOINT, or reach it with --tunnel)\n"
            )
        );
    }
}

#[test]
fn a_fleetd_that_refuses_the_connection_is_one_line() {
    let c = Cluster::new();
    let url = c.etcd.client_url();
    let addr = c.rt.block_on(async move {
        let reg = Registry::connect(RegistryConfig::new(url)).await.unwrap();
        reg.list_machine_records().await.unwrap()[0]
            .api_addr
            .clone()
    });
    let host = addr.split_once("://").map_or(addr.as_str(), |(_, h)| h);
    // TLS to a plain-text listener: the handshake fails.
    let endpoint = format!("https://{host}");
    let out = c
        .cmd(Driver::Api)
        .env("FLEETCTL_ENDPOINT", &endpoint)
        .args(["--request-timeout=2", "list-units"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!(
            "Unable to initialize client: cannot reach fleet API at {endpoint}: "
        )),
        "{err}"
    );
    assert!(
        err.contains("TLS handshake failed: the server does not speak TLS"),
        "{err}"
    );
    assert!(err.contains("FLEETCTL_ENDPOINT"), "{err}");
}

impl Cluster {
    /// Places `units` on m1 and reports them at `state`, as engine and agent would,
    /// in a few batched writes.
    fn report_on_m1(&self, units: &[String], state: TargetState) {
        let url = self.etcd.client_url();
        let (machine, addr, lease) = self.m1.clone();
        self.rt.block_on(async move {
            let reg = Registry::connect(RegistryConfig::new(url)).await.unwrap();
            let names: Vec<UnitName> = units.iter().map(|u| UnitName::parse(u).unwrap()).collect();
            let m1 = MachineId::new("m1").unwrap();
            let records = reg.get_units(&names).await.unwrap();
            let place = records
                .iter()
                .map(|u| ScheduleEntry {
                    machine: m1.clone(),
                    unit: u.as_ref().unwrap().name.clone(),
                    hash: u.as_ref().unwrap().hash,
                    target: TargetState::Launched,
                    text: None,
                })
                .collect::<Vec<_>>();
            let engine_lease = reg.grant_lease(Duration::from_secs(60)).await.unwrap();
            let engine = reg.campaign("test-engine", engine_lease).await.unwrap();
            let plan = SchedulePlan {
                place: place.clone(),
                ..Default::default()
            };
            engine.apply(&plan).await.unwrap();
            engine.resign().await.unwrap();
            let ttl = Duration::from_secs(60);
            let (agent, _keep) = reg
                .register_agent(&machine, &addr, ttl, &[lease])
                .await
                .unwrap();
            let states: Vec<_> = place
                .into_iter()
                .map(|p| UnitStateRecord {
                    unit: p.unit,
                    machine: m1.clone(),
                    hash: p.hash,
                    state,
                    systemd: SystemdState::default(),
                })
                .collect();
            agent.put_states(&states).await.unwrap();
        });
    }
}

/// Stop (blocking, released by the agent's reports), unload and destroy of 150 units
/// (more than one etcd txn holds) through each driver, and a missing unit among them.
#[test]
fn many_units_stop_unload_destroy_through_both_drivers() {
    let c = Cluster::new();
    for (i, d) in BOTH.into_iter().enumerate() {
        let units: Vec<String> = (0..150)
            .map(|j| format!("many{i}-{j:03}.service"))
            .collect();
        for u in &units {
            c.write(u, HELLO);
        }
        let args = |verb: &'static str, extra: &[&'static str]| -> Vec<String> {
            let mut a: Vec<String> = vec![verb.into()];
            a.extend(extra.iter().map(|s| s.to_string()));
            a.extend(units.iter().cloned());
            a
        };
        let refs = |a: &[String]| a.iter().map(String::as_str).collect::<Vec<_>>().join(" ");
        let submit = args("start", &["--no-block"]);
        c.ok(d, &submit.iter().map(String::as_str).collect::<Vec<_>>());
        c.report_on_m1(&units, TargetState::Launched);

        // A blocking stop waits for the agent to report the units stopped.
        let stop = args("stop", &["--block-attempts=15"]);
        let mut cmd = c.cmd(d);
        cmd.args(&stop);
        let stopper = std::thread::spawn(move || cmd.ok());
        // once fleetctl has asked for `loaded`, the agent stops the units
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while c
            .ok(
                d,
                &["list-unit-files", "--no-legend", "--fields", "unit,dstate"],
            )
            .matches("\tloaded")
            .count()
            < 150
        {
            assert!(
                std::time::Instant::now() < deadline,
                "{d:?}: stop set no targets"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        c.report_on_m1(&units, TargetState::Loaded);
        let out = stopper
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("{d:?}: stop failed: {e}"));
        let lines = text(&out.stdout);
        assert_eq!(lines.lines().count(), 150, "{d:?}: {lines}");
        assert!(
            lines
                .lines()
                .all(|l| l.ends_with(" loaded on m1.../10.9.8.7")),
            "{d:?}: {lines}"
        );
        let files = c.ok(
            d,
            &["list-unit-files", "--no-legend", "--fields", "unit,dstate"],
        );
        assert_eq!(files.matches("\tloaded").count(), 150, "{d:?}: {files}");

        let unload = args("unload", &["--no-block"]);
        let out = c.ok(d, &unload.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(out.lines().count(), 150, "{d:?}: {out}");
        let files = c.ok(
            d,
            &["list-unit-files", "--no-legend", "--fields", "unit,dstate"],
        );
        assert_eq!(files.matches("\tinactive").count(), 150, "{d:?}: {files}");

        let mut destroy = args("destroy", &[]);
        destroy.push("missing.service".into());
        let out = c.run(d, &destroy.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(
            !out.status.success(),
            "{d:?}: a missing unit fails the command"
        );
        let want: String = units.iter().map(|u| format!("Destroyed {u}\n")).collect();
        assert_eq!(text(&out.stdout), want, "{d:?}");
        assert_eq!(
            text(&out.stderr),
            "Unit missing.service not found in registry\n",
            "{d:?}"
        );
        assert_eq!(
            c.ok(d, &["list-unit-files", "--no-legend"]),
            "",
            "{d:?}: {}",
            refs(&destroy)
        );
    }
}

/// `start` of a unit not yet submitted writes it with its `launched` target in one
/// request through either driver (no second target write); a template is refused
/// before anything is written.
#[test]
fn start_of_a_new_unit_is_one_write_through_both_drivers() {
    let c = Cluster::new();
    for (i, d) in BOTH.into_iter().enumerate() {
        let unit = format!("n{i}.service");
        c.write(&unit, HELLO);
        let out = c.run(d, &["--debug", "start", "--no-block", &unit]);
        assert!(out.status.success(), "{d:?}: {}", text(&out.stderr));
        assert_eq!(
            text(&out.stdout),
            format!("Unit {unit} inactive\nTriggered unit {unit} start\n"),
            "{d:?}"
        );
        let err = text(&out.stderr);
        assert!(err.contains(" CreateUnits "), "{d:?}: {err}");
        assert!(!err.contains(" SetTargets "), "{d:?}: {err}");
        let files = c.ok(
            d,
            &["list-unit-files", "--no-legend", "--fields", "unit,dstate"],
        );
        assert!(
            files.contains(&format!("{unit}\tlaunched")),
            "{d:?}: {files}"
        );
    }
    c.write("tmpl@.service", HELLO);
    for d in BOTH {
        let err = c.fails(d, &["start", "--no-block", "tmpl@.service"]);
        assert!(err.lines().count() == 1, "{d:?}: {err}");
        let files = c.ok(d, &["list-unit-files", "--no-legend", "--fields", "unit"]);
        assert!(!files.contains("tmpl@"), "{d:?}: {files}");
    }
}
