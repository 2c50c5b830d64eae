//! End-to-end: fleetd's API in lab machines with real systemd and journald, driven by
//! the real fleetctl from the host (`--endpoint http://<ip>:49153` of any machine, or
//! the etcd driver) and from inside a machine (the default unix socket).

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fleet_tests::*;

const AGENT_TTL: &str = "3s";

/// Logs 20 numbered lines (after the "Started" line), then one line per line written
/// to its FIFO, so tests control exactly when it writes.
const HELLO: &str = "[Unit]
Description=hello

[Service]
ExecStartPre=/bin/rm -f /run/hello.fifo
ExecStartPre=/usr/bin/mkfifo /run/hello.fifo
ExecStart=/bin/bash -c 'sleep 1; for i in {1..20}; do echo \"hello line $$i\"; done; while true; do read -r l < /run/hello.fifo; echo \"got $$l at $$(date +%%s%%N)\"; done'
";

fn config(test: &str, machines: usize) -> ClusterConfig {
    let mut config = ClusterConfig::with_machines(&unique_name(test), machines);
    config.agent_ttl = AGENT_TTL.to_string();
    config
}

/// Asserts a failed command: non-zero exit, nothing on stdout, one line on stderr
/// containing `want`.
fn assert_one_line_error(what: &str, (code, out, err): (i32, String, String), want: &str) {
    assert_ne!(code, 0, "{what} succeeded: {out}");
    assert_eq!(out.trim(), "", "{what} printed on stdout");
    assert_eq!(
        err.trim().lines().count(),
        1,
        "{what}: not one line: {err:?}"
    );
    assert!(err.contains(want), "{what}: {err:?} lacks {want:?}");
}

/// A running `fleetctl journal -f` and its stdout lines as they arrive.
struct Follow {
    child: Child,
    lines: mpsc::Receiver<(SystemTime, String)>,
}

impl Follow {
    fn start(ctl: &Fleetctl, unit: &str) -> Follow {
        Follow::spawn(ctl.command(&["journal", "-f", "--output=cat", unit]))
    }

    fn spawn(mut cmd: std::process::Command) -> Follow {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn a journal follower");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send((SystemTime::now(), line)).is_err() {
                    break;
                }
            }
        });
        Follow { child, lines }
    }

    /// Waits for a line starting with `want`; the line and when it arrived.
    fn wait_line(&self, want: &str, limit: Duration) -> (String, SystemTime) {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((at, line)) if line.starts_with(want) => return (line, at),
                Ok(_) => {}
                Err(e) => panic!("no line {want:?} from journal -f within {limit:?}: {e}"),
            }
        }
    }

    /// Ctrl-C, as a user would; the exit status.
    fn interrupt(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let status = std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap();
        assert!(status.success());
        let t0 = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "fleetctl journal -f ignored Ctrl-C"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Follow {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Makes hello.service write a line carrying `marker` and waits for `follow` to show
/// it; how long after the unit wrote it (the unit stamps the line, and machines share
/// the host's clock).
fn write_and_see(lab: &Lab, node: &str, follow: &Follow, marker: &str) -> Duration {
    let (code, _, err) = sh(lab, node, &format!("echo {marker} > /run/hello.fifo"));
    assert_eq!(code, 0, "{err}");
    let (line, at) = follow.wait_line(&format!("got {marker} at "), Duration::from_secs(5));
    let written: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    at.duration_since(UNIX_EPOCH)
        .unwrap()
        .saturating_sub(Duration::from_nanos(written))
}

/// `journalctl` processes following `unit` in `node`.
fn followers(lab: &Lab, node: &str, unit: &str) -> usize {
    sh(lab, node, &format!("pgrep -fc 'journalctl.*{unit}'"))
        .1
        .parse()
        .unwrap_or(0)
}

#[test]
fn journal_and_status_from_any_machine() {
    let dir = UnitDir::new(&[
        ("hello.service", HELLO),
        (
            "everywhere.service",
            "[Unit]\nDescription=global\n\n[Service]\nExecStart=/bin/sleep infinity\n\n[X-Fleet]\nGlobal=true\n",
        ),
    ]);
    let mut lab = boot_registered(&config("apijournal", 3));
    let etcd = Fleetctl::etcd(&lab, dir.path());
    etcd.ok(&["start", "hello.service"]);
    wait_until("hello active", Duration::from_secs(10), || {
        etcd.active().len() == 1
    });
    let home = etcd.units()[0].machine.clone();
    let node = node_of(&lab, &home);
    let others: Vec<String> = lab
        .machines()
        .iter()
        .filter(|m| m.name != node)
        .map(|m| m.name.clone())
        .collect();
    wait_until("hello wrote its lines", Duration::from_secs(10), || {
        sh(
            &lab,
            &node,
            "journalctl -u hello.service -o cat | grep -c 'hello line'",
        )
        .1 == "20"
    });

    // The same answers from the machine running it, from one that forwards, and through
    // the etcd driver (which asks the unit's machine directly).
    let drivers = [
        ("api local", Fleetctl::api(&lab, &node, dir.path())),
        ("api forwarded", Fleetctl::api(&lab, &others[0], dir.path())),
        ("etcd driver", etcd.clone()),
    ];
    let last5: Vec<String> = (16..=20).map(|i| format!("hello line {i}")).collect();
    for (how, ctl) in &drivers {
        let out = ctl.ok(&[
            "journal",
            "--lines",
            "5",
            "--output",
            "cat",
            "hello.service",
        ]);
        assert_eq!(out.lines().collect::<Vec<_>>(), last5, "{how}");
        // Default format: exactly what journalctl prints in the machine.
        let want = sh(&lab, &node, "journalctl --no-pager -n 5 -u hello.service").1;
        let out = ctl.ok(&["journal", "--lines=5", "hello.service"]);
        assert_eq!(out.trim_end(), want, "{how}");
        let status = ctl.ok(&["status", "hello.service"]);
        assert!(status.contains("Active: active"), "{how}: {status}");
        assert!(status.contains("hello.service - hello"), "{how}: {status}");
    }
    // --lines 0: nothing old (with -f, only new entries), as journalctl -n 0.
    let out = drivers[1].1.ok(&[
        "journal",
        "--lines",
        "0",
        "--output",
        "cat",
        "hello.service",
    ]);
    assert_eq!(out, "");
    // Inside another machine, through the default unix socket.
    let (code, status, err) = sh(&lab, &others[1], "fleetctl status hello.service");
    assert_eq!(code, 0, "{err}");
    assert!(status.contains("Active: active"), "{status}");
    let (code, out, err) = sh(
        &lab,
        &others[1],
        "fleetctl journal --lines 5 --output cat hello.service",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().collect::<Vec<_>>(), last5);

    // Baseline: `journalctl -f` run in the machine itself (journald wakes followers
    // in batches, so this is the floor for fleetctl).
    let mut local = lab.command(&node, "timeout").unwrap();
    local.args(["5", "journalctl", "-f", "-o", "cat", "-u", "hello.service"]);
    let follow = Follow::spawn(local);
    follow.wait_line("hello line 20", Duration::from_secs(5));
    let latency = write_and_see(&lab, &node, &follow, "baseline");
    eprintln!(
        "FIGURE journalctl -f inside the machine: line shown {:.0} ms after the unit wrote it",
        latency.as_secs_f64() * 1000.0
    );
    wait_until("baseline journalctl gone", Duration::from_secs(10), || {
        followers(&lab, &node, "hello.service") == 0
    });
    drop(follow);

    // journal -f: a line the unit writes after the command started shows within 1 s;
    // Ctrl-C ends fleetctl cleanly and stops journalctl in the machine.
    for (round, (how, ctl)) in drivers.iter().enumerate() {
        let follow = Follow::start(ctl, "hello.service");
        follow.wait_line("hello line 20", Duration::from_secs(5));
        wait_until("journalctl following", Duration::from_secs(5), || {
            followers(&lab, &node, "hello.service") == 1
        });
        let latency = write_and_see(&lab, &node, &follow, &format!("m{round}"));
        eprintln!(
            "FIGURE journal -f ({how}): line shown {:.0} ms after the unit wrote it",
            latency.as_secs_f64() * 1000.0
        );
        assert!(latency <= Duration::from_secs(1), "{how}: {latency:?}");
        let status = follow.interrupt();
        assert!(
            status.success(),
            "{how}: fleetctl journal -f exited {status}"
        );
        wait_until(
            "journalctl stopped in the machine",
            Duration::from_secs(5),
            || followers(&lab, &node, "hello.service") == 0,
        );
    }

    // Global units: status per machine; journal refused in one line.
    let api = &drivers[1].1;
    api.ok(&["submit", "everywhere.service"]);
    assert_one_line_error(
        "status of a global unit loaded nowhere",
        api.run(&["status", "everywhere.service"]),
        "Unit everywhere.service does not appear to be loaded.",
    );
    etcd.ok(&["start", "everywhere.service"]);
    wait_until("global unit active on 3", Duration::from_secs(10), || {
        etcd.active().len() == 4
    });
    let status = api.ok(&["status", "everywhere.service"]);
    assert_eq!(status.matches("Active: active").count(), 3, "{status}");
    assert_one_line_error(
        "journal of a global unit",
        api.run(&["journal", "everywhere.service"]),
        "global unit",
    );

    // The machine running the unit dies mid-stream: fleetctl says so and exits.
    let follower = Fleetctl::api(&lab, &others[0], dir.path());
    let mut follow = Follow::start(&follower, "hello.service");
    follow.wait_line("hello line 20", Duration::from_secs(5));
    let t0 = Instant::now();
    lab.kill(&node).unwrap();
    let status = loop {
        if let Some(status) = follow.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "journal -f hangs after its machine died"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(follow.child.stderr.as_mut().unwrap(), &mut err).unwrap();
    eprintln!(
        "FIGURE journal -f: machine loss reported after {:.2} s: {}",
        t0.elapsed().as_secs_f64(),
        err.trim()
    );
    assert!(!status.success());
    assert_eq!(err.trim().lines().count(), 1, "{err:?}");
    drop(follow);
    let name = lab.down();
    assert_eq!(Lab::leftovers(&name), Vec::<String>::new());
}

#[test]
fn the_api_driver_runs_the_unit_lifecycle_and_fails_in_one_line() {
    let dir = UnitDir::new(&[
        (
            "solo.service",
            "[Unit]\nDescription=solo\n\n[Service]\nExecStart=/bin/sleep infinity\n",
        ),
        (
            "idle.service",
            "[Unit]\nDescription=idle\n\n[Service]\nExecStart=/bin/sleep infinity\n",
        ),
    ]);
    let mut lab = boot_registered(&config("apilife", 2));
    let etcd = Fleetctl::etcd(&lab, dir.path());
    let api = Fleetctl::api(&lab, "node1", dir.path());
    assert_eq!(api.machines(), etcd.machines());
    // FLEETCTL_ENDPOINT instead of --endpoint (fleet's TestFleetctlWithEnv).
    let by_env = Fleetctl {
        flags: admin_flags(&lab),
        dir: dir.path().to_path_buf(),
    }
    .command(&["list-machines", "--no-legend"])
    .env("FLEETCTL_ENDPOINT", api_endpoint(&lab, "node2"))
    .output()
    .unwrap();
    assert!(by_env.status.success(), "{by_env:?}");
    assert_eq!(String::from_utf8_lossy(&by_env.stdout).lines().count(), 2);
    let (_, full, _) = api.run(&["list-machines", "-l", "--no-legend"]);
    for m in lab.machines() {
        assert!(full.contains(&m.machine_id), "{full}");
    }

    let out = api.ok(&["start", "solo.service"]);
    assert!(out.contains("Unit solo.service launched on "), "{out}");
    wait_until("solo active", Duration::from_secs(10), || {
        api.active().len() == 1
    });
    assert_eq!(api.units(), etcd.units());
    let row = api.units()[0].clone();
    let node = node_of(&lab, &row.machine);
    assert_eq!(systemctl(&lab, &node, "is-active solo.service"), "active");
    assert_eq!(api.unit_files()["solo.service"], "launched");
    assert_eq!(
        api.ok(&["cat", "solo.service"]).trim(),
        std::fs::read_to_string(dir.path().join("solo.service"))
            .unwrap()
            .trim()
    );

    api.ok(&["stop", "solo.service"]);
    wait_until("solo stopped", Duration::from_secs(10), || {
        systemctl(&lab, &node, "is-active solo.service") == "inactive"
            && api.units().first().is_some_and(|r| r.active == "inactive")
    });
    assert_eq!(api.unit_files()["solo.service"], "loaded");
    api.ok(&["unload", "solo.service"]);
    wait_until("solo unloaded", Duration::from_secs(10), || {
        api.units().is_empty() && sh(&lab, &node, "test -e /run/systemd/system/solo.service").0 != 0
    });
    api.ok(&["destroy", "solo.service"]);
    wait_until("solo destroyed", Duration::from_secs(10), || {
        api.unit_files().is_empty() && etcd.unit_files().is_empty()
    });

    // Errors: one line, non-zero, through both drivers.
    api.ok(&["submit", "idle.service"]);
    for ctl in [&api, &etcd] {
        assert_one_line_error(
            "status of a missing unit",
            ctl.run(&["status", "nosuch.service"]),
            "Unit nosuch.service does not exist.",
        );
        assert_one_line_error(
            "journal of a missing unit",
            ctl.run(&["journal", "nosuch.service"]),
            "Unit nosuch.service does not exist.",
        );
        assert_one_line_error(
            "journal of a unit not running",
            ctl.run(&["journal", "idle.service"]),
            "Unit idle.service does not appear to be running.",
        );
        assert_one_line_error(
            "status of a unit not running",
            ctl.run(&["status", "idle.service"]),
            "Unit idle.service does not appear to be loaded.",
        );
    }
    // Nothing listening: refused at once.
    let ip = lab.machines()[0].ip;
    let closed = Fleetctl {
        flags: vec![format!("--endpoint=http://{ip}:1")],
        dir: dir.path().to_path_buf(),
    };
    assert_one_line_error("closed port", closed.run(&["list-units"]), &ip.to_string());
    // The machine running a unit stops answering: asking another fleetd about it fails
    // in one line within bounded time.
    let node2_id = lab.machines()[1].machine_id.clone();
    dir.write(
        "far.service",
        &format!(
            "[Unit]\nDescription=far\n\n[Service]\nExecStart=/bin/sleep infinity\n\n[X-Fleet]\nMachineID={node2_id}\n"
        ),
    );
    api.ok(&["start", "far.service"]);
    lab.cut("node2").unwrap();
    let t0 = Instant::now();
    let result = api.run(&["status", "far.service"]);
    let took = t0.elapsed();
    eprintln!(
        "FIGURE status of a unit on a cut machine: failed after {:.2} s: {}",
        took.as_secs_f64(),
        result.2.trim()
    );
    assert_ne!(result.0, 0);
    assert_eq!(result.2.trim().lines().count(), 1, "{result:?}");
    assert!(
        result
            .2
            .contains(&format!("fleetd on machine {node2_id} is unreachable")),
        "{result:?}"
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
    // A machine that stopped answering: bounded by --request-timeout.
    let mut cut = Fleetctl::api(&lab, "node2", dir.path());
    cut.flags.push("--request-timeout=1".to_string());
    let t0 = Instant::now();
    let result = cut.run(&["list-units"]);
    let took = t0.elapsed();
    eprintln!(
        "FIGURE unreachable fleetd: fleetctl gave up after {:.2} s",
        took.as_secs_f64()
    );
    assert_one_line_error(
        "unreachable fleetd",
        result,
        &lab.machines()[1].ip.to_string(),
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    lab.heal("node2").unwrap();
    let name = lab.down();
    assert_eq!(Lab::leftovers(&name), Vec::<String>::new());
}

/// `fleetctl ssh` and `--tunnel` against sshd in lab machines (the CoreOS Vagrant
/// workflow: every command reaches fleetd's unix socket through ssh and
/// `fleetctl fd-forward` on the tunnel host).
#[test]
fn ssh_and_tunnel_reach_the_cluster() {
    let mut config = config("apissh", 2);
    config.groups[0].packages = vec!["openssh-server".to_string()];
    let dir = UnitDir::new(&[("hello.service", HELLO)]);
    // A key of our own, used through a wrapper (ssh reads the user's home from passwd,
    // so HOME cannot redirect it).
    let key = dir.path().join("id_ed25519");
    let keygen = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .expect("run ssh-keygen");
    assert!(keygen.success());
    let wrapper = dir.path().join("ssh-wrapper");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec ssh -i {} -o IdentitiesOnly=yes -o BatchMode=yes -o LogLevel=ERROR \"$@\"\n",
            key.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();

    let lab = boot_registered(&config);
    for m in lab.machines() {
        let (code, _, err) = sh(
            &lab,
            &m.name,
            &format!(
                "mkdir -p -m 700 /root/.ssh && echo '{}' > /root/.ssh/authorized_keys && \
                 ln -sf /opt/fleet/fleetctl /usr/local/bin/fleetctl && systemctl start ssh",
                public.trim()
            ),
        );
        assert_eq!(code, 0, "{err}");
    }
    let ssh_flags = |ctl: &mut Fleetctl| {
        ctl.flags
            .extend(["--ssh-username=root", "--strict-host-key-checking=false"].map(String::from));
    };
    let mut etcd = Fleetctl::etcd(&lab, dir.path());
    ssh_flags(&mut etcd);
    let run = |ctl: &Fleetctl, args: &[&str]| {
        let out = ctl
            .command(args)
            .env("FLEETCTL_SSH_COMMAND", &wrapper)
            .output()
            .expect("run fleetctl");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    // ssh MACHINE CMD and ssh UNIT CMD.
    let node2 = lab.machines()[1].clone();
    let (code, out, err) = run(&etcd, &["ssh", &node2.machine_id[..12], "hostname"]);
    assert_eq!((code, out.trim()), (0, node2.name.as_str()), "{err}");

    // --tunnel to node1 with the default endpoint: fleetd's unix socket there.
    let mut tunnel = Fleetctl {
        flags: vec![format!("--tunnel={}", lab.machines()[0].ip)],
        dir: dir.path().to_path_buf(),
    };
    ssh_flags(&mut tunnel);
    let (code, out, err) = run(&tunnel, &["list-machines", "--no-legend", "--full"]);
    assert_eq!(code, 0, "{err}");
    for m in lab.machines() {
        assert!(out.contains(&m.machine_id), "{out}");
    }
    let (code, out, err) = run(&tunnel, &["start", "hello.service"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!err.contains("Error"), "{err}");
    wait_until("hello active", Duration::from_secs(10), || {
        etcd.active().len() == 1
    });
    let home = node_of(&lab, &etcd.units()[0].machine);
    wait_until("hello wrote its lines", Duration::from_secs(10), || {
        sh(
            &lab,
            &home,
            "journalctl -u hello.service -o cat | grep -c 'hello line'",
        )
        .1 == "20"
    });
    let (code, out, err) = run(
        &tunnel,
        &["journal", "--lines=2", "--output=cat", "hello.service"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["hello line 19", "hello line 20"]
    );
    let (code, out, err) = run(&tunnel, &["status", "hello.service"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Active: active"), "{out}");
    let (code, out, err) = run(&etcd, &["ssh", "hello.service", "echo", "foo"]);
    assert_eq!((code, out.trim()), (0, "foo"), "{err}");
    // fleetctl's flags may follow the target, as with fleet.
    let id = &node2.machine_id[..12];
    let (code, out, err) = run(&etcd, &["ssh", id, "--ssh-port", "22", "-A", "hostname"]);
    assert_eq!((code, out.trim()), (0, node2.name.as_str()), "{err}");
    // After `--`, an option belongs to the remote command, never to ssh itself (ssh
    // would turn verbose): the remote shell gets it (`bash -c -v`) and refuses it.
    let (code, _, err) = run(&etcd, &["ssh", id, "--", "-v"]);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("-c: option requires an argument"), "{err}");
    assert!(!err.contains("debug1:"), "{err}");
    let (code, out, err) = run(&etcd, &["ssh", "hello.service", "--", "echo", "-n", "foo"]);
    assert_eq!((code, out.as_str()), (0, "foo"), "{err}");
    // A tunnel host that does not answer: one line, non-zero, bounded by --ssh-timeout.
    let mut dead = Fleetctl {
        flags: vec![
            "--tunnel=127.0.0.1:1".to_string(),
            "--ssh-timeout=2".to_string(),
        ],
        dir: dir.path().to_path_buf(),
    };
    ssh_flags(&mut dead);
    let t0 = Instant::now();
    let (code, out, err) = run(&dead, &["list-units"]);
    assert_ne!(code, 0, "{out}");
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    // ssh's own reason, once, in fleetctl's line.
    assert_eq!(err.trim().lines().count(), 1, "{err:?}");
    assert!(
        err.contains("tunnel failed: ssh: connect to host 127.0.0.1 port 1"),
        "{err}"
    );
    let name = lab.down();
    assert_eq!(Lab::leftovers(&name), Vec::<String>::new());
}
