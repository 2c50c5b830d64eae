//! End-to-end: a lab of container machines boots, behaves like separate machines,
//! and leaves nothing behind.

use fleet_tests::*;

/// The port of a URL like `http://10.231.0.1:2379`.
fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn three_machines_boot_reach_each_other_and_leave_nothing() {
    let mut lab = boot("three", 3);
    assert_eq!(lab.machines().len(), 3);
    for (name, secs) in &lab.boot_secs {
        eprintln!("boot time {name}: {secs:.2} s");
    }

    // Each machine runs its own systemd, with its own machine-id, hostname and IP.
    let mut ids = std::collections::BTreeSet::new();
    for m in lab.machines().to_vec() {
        assert_eq!(
            lab.system_state_of(&m.name).unwrap(),
            "running",
            "{}",
            m.name
        );
        let (_, id, _) = sh(&lab, &m.name, "cat /etc/machine-id");
        assert_eq!(id, m.machine_id);
        ids.insert(id);
        let (_, host, _) = sh(&lab, &m.name, "hostname");
        assert_eq!(host, m.name);
        let (_, addr, _) = sh(&lab, &m.name, "ip -4 -o addr show dev eth0");
        assert!(addr.contains(&format!("{}/24", m.ip)), "{addr}");
        let (_, conf, _) = sh(&lab, &m.name, "cat /etc/fleet/fleet.conf");
        assert!(conf.contains(&format!("public_ip={}", m.ip)), "{conf}");
        assert!(conf.contains(&format!("etcd_servers={}", lab.etcd_bridge_url().unwrap())));
        let (code, _, _) = sh(
            &lab,
            &m.name,
            "test -x /opt/fleet/fleetd && test -f /etc/systemd/system/fleet.service",
        );
        assert_eq!(code, 0, "fleetd and its unit are in {}", m.name);
    }
    assert_eq!(ids.len(), 3, "machine ids are distinct");

    // The machines reach the lab's etcd members and each other on the bridge.
    let urls = lab.etcd_bridge_url().unwrap().to_string();
    assert_eq!(
        urls.split(',').count(),
        3,
        "three etcd members by default: {urls}"
    );
    let bridge_url = urls.split(',').next().unwrap().to_string();
    let etcd_host = bridge_url
        .split_once("://")
        .unwrap()
        .1
        .split(':')
        .next()
        .unwrap()
        .to_string();
    let etcd_port = port_of(&bridge_url);
    let node2_ip = lab.machines()[1].ip.to_string();
    assert_eq!(tcp_probe(&lab, "node1", &etcd_host, etcd_port), "open");
    assert_eq!(tcp_probe(&lab, "node1", &node2_ip, 9), "refused");

    // A cut machine is unreachable until healed.
    lab.cut("node2").unwrap();
    assert_eq!(tcp_probe(&lab, "node1", &node2_ip, 9), "timeout");
    assert_eq!(tcp_probe(&lab, "node2", &etcd_host, etcd_port), "timeout");
    lab.heal("node2").unwrap();
    assert_eq!(tcp_probe(&lab, "node1", &node2_ip, 9), "refused");

    // A killed machine is gone; the others keep running.
    lab.kill("node3").unwrap();
    assert!(!lab.is_running("node3").unwrap());
    assert_eq!(lab.system_state_of("node3").unwrap(), "down");
    assert!(lab.exec("node3", &["true"]).is_err());
    assert_eq!(lab.system_state_of("node1").unwrap(), "running");

    let name = lab.down();
    assert_eq!(Lab::leftovers(&name), Vec::<String>::new());
}

/// The lab's etcd members can be killed, stopped, cut off and started one at a time;
/// the others keep a leader and serve, and nothing is left after `down`.
#[test]
fn etcd_members_fail_one_at_a_time() {
    let mut lab = boot("members", 1);
    let members = lab.etcd_members();
    assert_eq!(members.len(), 3);
    assert!(
        members.iter().all(|m| m.running && m.answers && !m.cut),
        "{members:?}"
    );
    let leader = wait_for("a raft leader", || lab.etcd_leader());

    // The leader dies: another member leads, the dead one does not answer.
    lab.etcd_kill(&leader).unwrap();
    let next = wait_for("a new leader", || {
        lab.etcd_leader().filter(|l| *l != leader)
    });
    let dead = lab
        .etcd_members()
        .into_iter()
        .find(|m| m.name == leader)
        .unwrap();
    assert!(!dead.running && !dead.answers, "{dead:?}");

    // It comes back with its data, as a follower.
    lab.etcd_start(&leader).unwrap();
    wait_for("the old leader to answer", || {
        lab.etcd_members()
            .into_iter()
            .find(|m| m.name == leader && m.answers && m.running)
    });
    assert_eq!(lab.etcd_leader(), Some(next.clone()));

    // A cut member runs but answers no one; healed, it answers again.
    let follower = lab
        .etcd_members()
        .into_iter()
        .find(|m| !m.leader)
        .unwrap()
        .name;
    lab.etcd_cut(&follower, true).unwrap();
    let cut = lab
        .etcd_members()
        .into_iter()
        .find(|m| m.name == follower)
        .unwrap();
    assert!(cut.running && cut.cut && !cut.answers, "{cut:?}");
    lab.etcd_cut(&follower, false).unwrap();
    wait_for("the healed member to answer", || {
        lab.etcd_members()
            .into_iter()
            .find(|m| m.name == follower && m.answers)
    });

    // An orderly stop; an unknown member is one clear error.
    lab.etcd_stop(&follower).unwrap();
    assert!(
        !lab.etcd_members()
            .into_iter()
            .any(|m| m.name == follower && m.running)
    );
    let err = lab.etcd_kill("m9").unwrap_err().to_string();
    assert!(
        err.contains("no etcd member \"m9\"") && err.contains("m0, m1, m2"),
        "{err}"
    );

    let name = lab.down();
    assert_eq!(Lab::leftovers(&name), Vec::<String>::new());
}

/// Polls `f` until it gives a value (20 s at most).
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {what} within 20 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn restarted_machine_keeps_its_identity() {
    let mut lab = boot("restart", 1);
    let before = lab.machines()[0].clone();
    let (_, marker, _) = sh(&lab, "node1", "touch /root/marker && echo ok");
    assert_eq!(marker, "ok");
    let secs = lab
        .restart("node1", std::time::Duration::from_secs(60))
        .unwrap();
    eprintln!("restart boot time node1: {secs:.2} s");
    assert_eq!(lab.system_state_of("node1").unwrap(), "running");
    let (_, id, _) = sh(&lab, "node1", "cat /etc/machine-id");
    assert_eq!(id, before.machine_id);
    let (code, _, _) = sh(&lab, "node1", "test -e /root/marker");
    assert_ne!(
        code, 0,
        "the overlay starts fresh, like a reboot of an immutable machine"
    );
    let name = lab.down();
    assert_eq!(Lab::leftovers(&name), Vec::<String>::new());
}

#[test]
fn failed_up_leaves_nothing_and_names_clash() {
    require_root();
    // A boot deadline nobody can meet: `up` fails after creating everything.
    let config = ClusterConfig::with_machines(&unique_name("failed"), 2);
    let mut opts = options();
    opts.boot_timeout = std::time::Duration::ZERO;
    let err = Lab::up(&config, &opts, &mut |_| {})
        .err()
        .expect("up must fail");
    assert!(matches!(err, LabError::Timeout { .. }), "{err}");
    assert_eq!(
        Lab::leftovers(&config.lab_name().unwrap()),
        Vec::<String>::new()
    );

    // A second lab with a running lab's name is refused, and the first one is untouched.
    let lab = boot("clash", 1);
    let again = ClusterConfig::with_machines(lab.name().as_str(), 1);
    let err = Lab::up(&again, &options(), &mut |_| {})
        .err()
        .expect("name clash");
    assert!(matches!(err, LabError::AlreadyRunning(_)), "{err}");
    assert_eq!(lab.system_state_of("node1").unwrap(), "running");
    let name = lab.down();
    assert_eq!(Lab::leftovers(&name), Vec::<String>::new());
}

#[test]
fn dropping_the_lab_tears_it_down_even_on_panic() {
    require_root();
    let name = LabName::new(&unique_name("panic")).unwrap();
    let result = std::panic::catch_unwind(|| {
        let _lab = boot("panic", 1);
        panic!("test failure inside a lab");
    });
    assert!(result.is_err());
    assert_eq!(Lab::leftovers(&name), Vec::<String>::new());
}

#[test]
fn debootstrap_failure_is_clear_and_leaves_no_half_image_or_lab() {
    require_root();
    let cache = std::env::temp_dir().join(format!("fleet-lab-cache-{}", std::process::id()));
    let mut config = ClusterConfig::with_machines(&unique_name("nomirror"), 1);
    config.groups[0].packages = vec!["hello".to_string()];
    let mut opts = options();
    opts.cache_dir = cache.clone();
    // Nothing listens there: debootstrap fails at once, sending nothing off the host.
    opts.mirror = Some("http://127.0.0.1:9/debian".to_string());
    let err = Lab::up(&config, &opts, &mut |_| {})
        .err()
        .expect("debootstrap must fail");
    assert!(matches!(err, LabError::Rootfs(_)), "{err}");
    assert!(err.to_string().contains("debootstrap"), "{err}");
    let images: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".lock")
        .collect();
    assert!(images.is_empty(), "half-built image left: {images:?}");
    assert_eq!(
        Lab::leftovers(&config.lab_name().unwrap()),
        Vec::<String>::new()
    );
    std::fs::remove_dir_all(&cache).unwrap();
}

/// `pause` hangs fleetd (SIGSTOP) without touching the machine: its registration lapses
/// after agent_ttl; `resume` brings it back.
#[test]
fn paused_fleetd_drops_out_and_resumed_comes_back() {
    let mut config = ClusterConfig::with_machines(&unique_name("pause"), 2);
    config.agent_ttl = "3s".to_string();
    let mut lab = boot_registered(&config);
    let ctl = Fleetctl::etcd(&lab, &std::env::temp_dir());
    lab.pause("node1").unwrap();
    assert_eq!(
        lab.system_state_of("node1").unwrap(),
        "running",
        "the machine runs on"
    );
    wait_until(
        "node1 to drop out",
        std::time::Duration::from_secs(15),
        || ctl.machines().len() == 1,
    );
    lab.resume("node1").unwrap();
    wait_until(
        "node1 to come back",
        std::time::Duration::from_secs(15),
        || ctl.machines().len() == 2,
    );
    let name = lab.down();
    assert_eq!(Lab::leftovers(&name), Vec::<String>::new());
}

/// `degrade --delay` slows a machine's etcd traffic (each way), `--loss` drops its
/// packets, and `restore` ends both, without resetting or stalling a connection that
/// lives through either; nothing is left after `down`.
#[test]
fn a_degraded_link_is_slow_until_restored() {
    let mut config = ClusterConfig::with_machines(&unique_name("degrade"), 1);
    config.groups[0].packages = vec!["curl".to_string()];
    let mut lab = boot_config(&config);
    let member = lab.etcd_members()[0].ip.to_string();
    // One request to the member from inside the machine, timed there by curl (over
    // TLS with the machine's certificate on a secure lab: handshake and request).
    let tls = match lab.security() {
        Some(_) => format!(
            "--cacert {ssl}/ca.crt --cert {ssl}/machine.crt --key {ssl}/machine.key https",
            ssl = fleet_lab::SSL_DIR_IN_MACHINE
        ),
        None => "http".to_string(),
    };
    let (pre, scheme) = tls.rsplit_once(' ').unwrap_or(("", &tls));
    let probe = format!(
        "curl -sS -m 5 -o /dev/null -w '%{{time_total}}' {pre} -- {scheme}://{member}:2379/version"
    );
    let millis = |lab: &TestLab| -> u64 {
        let (_, out, err) = sh(lab, "node1", &probe);
        let secs: f64 = out
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("curl: {out} {err}"));
        (secs * 1000.0) as u64
    };
    assert!(millis(&lab) < 300, "a healthy link is fast");
    lab.degrade("node1", Some(std::time::Duration::from_millis(300)), None)
        .unwrap();
    let slow = millis(&lab);
    assert!((600..5000).contains(&slow), "300 ms each way: {slow} ms");
    lab.restore("node1").unwrap();
    assert!(millis(&lab) < 300, "restored");

    // Long-lived connections live through a slowed, lossy link and its restore, as
    // through a slow network: one made before (it keeps going direct) and one made
    // through the relay (passed on without delay once restored). Neither is reset (curl
    // would connect again or fail) nor stalled.
    let url = format!("{scheme}://{member}:2379/version");
    let (mut before, before_lines) = keep_fetching(&lab, "node1", pre, &url, 60);
    let first = before_lines
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("a first fetch");
    lab.degrade(
        "node1",
        Some(std::time::Duration::from_millis(200)),
        Some(5),
    )
    .unwrap();
    let (mut through, through_lines) = keep_fetching(&lab, "node1", pre, &url, 60);
    let slowed: Vec<Fetch> = (0..4)
        .map(|_| {
            through_lines
                .recv_timeout(std::time::Duration::from_secs(20))
                .expect("fetches through the relay")
        })
        .collect();
    lab.restore("node1").unwrap();
    let restored = std::time::Instant::now();
    for (name, child) in [("before", &mut before), ("through", &mut through)] {
        let status = child.wait().unwrap();
        assert!(status.success(), "curl {name}: {status}");
    }
    let before_all: Vec<Fetch> = std::iter::once(first).chain(before_lines).collect();
    let through_all: Vec<Fetch> = slowed.iter().cloned().chain(through_lines).collect();
    for (name, fetches) in [("before", &before_all), ("through", &through_all)] {
        assert_eq!(fetches.len(), 60, "{name}: {fetches:?}");
        assert!(fetches.iter().all(|f| f.code == 200), "{name}: {fetches:?}");
        let connects: Vec<u32> = fetches.iter().map(|f| f.connects).collect();
        assert_eq!(connects[0], 1, "{name}");
        assert!(
            connects[1..].iter().all(|&c| c == 0),
            "{name}: connected again (reset): {fetches:?}"
        );
        let worst = fetches.iter().map(|f| f.secs).fold(0.0, f64::max);
        assert!(
            worst < 3.0,
            "{name}: a fetch stalled {worst:.2} s: {fetches:?}"
        );
    }
    assert!(
        slowed.iter().all(|f| f.secs >= 0.4),
        "200 ms each way: {slowed:?}"
    );
    let after: Vec<&Fetch> = through_all
        .iter()
        .filter(|f| f.at > restored + std::time::Duration::from_secs(1))
        .collect();
    assert!(after.len() >= 10, "{through_all:?}");
    assert!(
        after.iter().all(|f| f.secs < 0.3),
        "the relayed connection is fast once restored: {after:?}"
    );
    eprintln!(
        "degrade: 2 connections x 60 fetches, 0 resets; worst fetch before/through {:.2}/{:.2} s; through the relay {:.2}-{:.2} s slowed, at most {:.3} s restored",
        before_all.iter().map(|f| f.secs).fold(0.0, f64::max),
        through_all.iter().map(|f| f.secs).fold(0.0, f64::max),
        slowed.iter().map(|f| f.secs).fold(f64::MAX, f64::min),
        slowed.iter().map(|f| f.secs).fold(0.0, f64::max),
        after.iter().map(|f| f.secs).fold(0.0, f64::max),
    );

    let err = lab.degrade("node1", None, Some(0)).unwrap_err().to_string();
    assert_eq!(err, "loss 0%: give 1 to 100");
    let name = lab.down();
    assert_eq!(Lab::leftovers(&name), Vec::<String>::new());
}

/// One fetch of [`keep_fetching`]: when its line arrived, its time, new connections.
#[derive(Clone, Debug)]
struct Fetch {
    at: std::time::Instant,
    secs: f64,
    connects: u32,
    code: u16,
}

/// curl in `node` fetching `url` `n` times, 4 a second, over one connection (`pre`:
/// its TLS options); each fetch is reported as curl prints it.
fn keep_fetching(
    lab: &Lab,
    node: &str,
    pre: &str,
    url: &str,
    n: usize,
) -> (std::process::Child, std::sync::mpsc::Receiver<Fetch>) {
    use std::io::BufRead;
    let outputs = "-o /dev/null ".repeat(n);
    let urls = format!("{url} ").repeat(n);
    let script = format!(
        "exec stdbuf -oL curl -sS --rate 4/s -w '%{{time_total}} %{{num_connects}} %{{http_code}}\\n' {pre} {outputs} -- {urls}"
    );
    let mut child = lab
        .command(node, "/bin/bash")
        .unwrap()
        .args(["-c", &script])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            let f: Vec<&str> = line.split_whitespace().collect();
            let fetch = Fetch {
                at: std::time::Instant::now(),
                secs: f[0].parse().unwrap_or(f64::MAX),
                connects: f.get(1).and_then(|c| c.parse().ok()).unwrap_or(99),
                code: f.get(2).and_then(|c| c.parse().ok()).unwrap_or(0),
            };
            if tx.send(fetch).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// A lab is secure by default: etcd and the API refuse clients without a certificate
/// from the lab's CA, the `env` file's admin identity drives fleetctl through either
/// driver, keys and fleet.conf are 0600, and no password is on any command line. A
/// worker machine's etcd identity writes only its own record and states; its API
/// serves reads and sends writers to a control machine; units still run on it.
#[test]
fn the_lab_is_secure_by_default() {
    use std::os::unix::fs::PermissionsExt as _;
    let mut config = ClusterConfig::with_machines(&unique_name("secure"), 2);
    config.control = Some(fleet_lab::Control::Count(1));
    let lab = boot_registered(&config);
    let security = lab.security().expect("secure by default").clone();

    // The env file alone points fleetctl at the lab, through etcd and through the API.
    let env = lab.env_file();
    for driver in ["", "--driver=API --endpoint=\"$FLEET_LAB_API\""] {
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!(
                ". \"$1\" && \"$2\" {driver} list-machines --no-legend"
            ))
            .arg("bash")
            .arg(&env)
            .arg(target_dir().join("fleetctl"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{driver}: {out:?}");
        assert_eq!(text.lines().count(), 2, "{driver}: {text}");
    }

    // Without a client certificate: etcd refuses, and so does the API, saying why.
    let out = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", lab.etcd_url().unwrap()))
        .arg(format!("--cacert={}", security.ca.display()))
        .args([
            "--dial-timeout=2s",
            "--command-timeout=2s",
            "get",
            "--",
            "/",
        ])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "etcd served a client without a certificate"
    );
    let api = Fleetctl {
        flags: vec![
            format!("--endpoint={}", api_endpoint(&lab, "node1")),
            format!("--ca-file={}", security.ca.display()),
        ],
        dir: std::env::temp_dir(),
    };
    let (code, _, err) = api.run(&["list-machines"]);
    assert_ne!(code, 0);
    assert!(err.contains("certificate required"), "{err}");

    // Each machine has its own etcd user; its fleet.conf holds the password, 0600.
    let mut users = std::collections::BTreeSet::new();
    let state_dir = lab.name().state_dir();
    let mut secrets = vec![
        std::fs::read_to_string(&security.root_password_file).unwrap(),
        std::fs::read_to_string(&security.admin_password_file).unwrap(),
    ];
    for m in lab.machines() {
        users.insert(m.etcd_user.clone().expect("a machine's etcd user"));
        let conf = state_dir.join("machines").join(&m.name).join("fleet.conf");
        let mode = std::fs::metadata(&conf).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", conf.display());
        let text = std::fs::read_to_string(&conf).unwrap();
        secrets.extend(
            text.lines()
                .filter_map(|l| {
                    l.strip_prefix("etcd_password=")
                        .or_else(|| l.strip_prefix("api_etcd_password="))
                })
                .map(str::to_string),
        );
        assert!(text.contains("api_tls_client_ca="), "{text}");
        assert!(!text.contains("api_allow_plaintext"), "{text}");
    }
    assert_eq!(users.len(), 2);
    for path in [
        &security.root_password_file,
        &security.admin_password_file,
        &security.admin_key,
    ] {
        let mode = std::fs::metadata(path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", path.display());
    }
    // Root's, the admin's, each machine's, and the control machine's API's.
    assert_eq!(secrets.len(), 5);

    // node1 is the control plane; node2 a worker: no engine, and an etcd user with
    // only its own machine role.
    let (m1, m2) = (&lab.machines()[0], &lab.machines()[1]);
    assert!(m1.control && !m2.control);
    let (_, conf1, _) = sh(&lab, &m1.name, "cat /etc/fleet/fleet.conf");
    let (_, conf2, _) = sh(&lab, &m2.name, "cat /etc/fleet/fleet.conf");
    assert!(!conf1.contains("disable_engine"), "{conf1}");
    assert!(conf2.contains("\ndisable_engine=true\n"), "{conf2}");
    // Only the control machine's API has an etcd identity of its own.
    let api_user = format!("api_etcd_username=fleet-api-{}\n", m1.machine_id);
    assert!(conf1.contains(&api_user), "{conf1}");
    assert!(!conf2.contains("api_etcd_username"), "{conf2}");

    // A machine's etcd identity (its certificate's name) writes its own states; etcd
    // refuses the worker another machine's record and states, the schedule, the
    // election, units and targets. The control machine's identity (its agent and
    // engine) writes the schedule but not units: those are its API's.
    let pki = state_dir.join("pki");
    let etcd_as = |m: &fleet_lab::MachineState, args: &[&str]| {
        std::process::Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", lab.etcd_url().unwrap()))
            .arg(format!("--cacert={}", security.ca.display()))
            .arg(format!(
                "--cert={}",
                pki.join(format!("{}.crt", m.name)).display()
            ))
            .arg(format!(
                "--key={}",
                pki.join(format!("{}.key", m.name)).display()
            ))
            .args(["--dial-timeout=2s", "--command-timeout=4s"])
            .args(args)
            .output()
            .unwrap()
    };
    let put_as = |m: &fleet_lab::MachineState, key: &str| etcd_as(m, &["put", "--", key, "{}"]);
    let p = "/_coreos.com/fleet";
    let (id1, id2) = (&m1.machine_id, &m2.machine_id);
    let own = put_as(m2, &format!("{p}/machine-state/{id2}/probe.service"));
    assert!(own.status.success(), "{own:?}");
    for key in [
        format!("{p}/machine/{id1}"),
        format!("{p}/machine-state/{id1}/probe.service"),
        format!("{p}/schedule/{id2}/probe.service"),
        format!("{p}/unplaced/probe.service"),
        format!("{p}/leader/probe"),
        format!("{p}/unit/probe.service"),
        format!("{p}/job/probe.service/target"),
    ] {
        let out = put_as(m2, &key);
        assert!(!out.status.success(), "the worker wrote {key}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("permission denied"),
            "{key}: {out:?}"
        );
    }
    let engine = put_as(m1, &format!("{p}/unplaced/probe-control.service"));
    assert!(engine.status.success(), "{engine:?}");
    let key = format!("{p}/unplaced/probe-control.service");
    assert!(etcd_as(m1, &["del", "--", &key]).status.success());
    let out = put_as(m1, &format!("{p}/unit/probe-control"));
    assert!(!out.status.success(), "node1's agent identity wrote a unit");
    let out = put_as(m1, &format!("{p}/machine-state/{id2}/probe.service"));
    assert!(!out.status.success(), "node1 wrote node2's states");

    // The worker's API serves reads, and refuses writes in one line saying where to
    // go, without writing anything.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("probe.service"),
        format!("[Service]\nExecStart=/bin/sleep 100000\n[X-Fleet]\nMachineID={id2}\n"),
    )
    .unwrap();
    let worker_api = Fleetctl::api(&lab, &m2.name, dir.path());
    let control_api = Fleetctl::api(&lab, &m1.name, dir.path());
    assert_eq!(worker_api.machines().len(), 2);
    let (code, out, err) = worker_api.run(&["start", "probe.service"]);
    eprintln!("the worker's API refused a start: {}", err.trim());
    assert_ne!(code, 0, "{out}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("this machine is a worker")
            && err.contains(&format!("https://{}:", m1.ip))
            && !err.contains(&format!("https://{}:", m2.ip)),
        "{err}"
    );
    assert!(control_api.unit_files().is_empty());

    // Units are still scheduled onto the worker and run there.
    control_api.ok(&["start", "probe.service"]);
    wait_until(
        "probe.service running on the worker",
        std::time::Duration::from_secs(60),
        || {
            control_api
                .active()
                .iter()
                .any(|r| r.unit == "probe.service" && &r.machine == id2 && r.sub == "running")
        },
    );
    assert_eq!(
        systemctl(&lab, &m2.name, "is-active probe.service").trim(),
        "active"
    );
    assert_eq!(worker_api.active().len(), 1);

    // Neither fleetd was ever refused by etcd: the worker never tries what its
    // identity may not do.
    for m in [m1, m2] {
        let (_, log, _) = sh(&lab, &m.name, "journalctl -u fleet.service --no-pager");
        assert!(!log.contains("etcd denied"), "{}: {log}", m.name);
        assert!(!log.contains("permission denied"), "{}: {log}", m.name);
    }
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline);
        for secret in &secrets {
            assert!(
                !cmdline.contains(secret.trim()),
                "a password is on the command line of process {:?}",
                entry.file_name()
            );
        }
    }
    let name = lab.down();
    assert_eq!(Lab::leftovers(&name), Vec::<String>::new());
}
