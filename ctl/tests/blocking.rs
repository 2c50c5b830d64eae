//! Blocking `start`/`stop` against a real etcd, with the test playing the engine and the
//! agent through the registry: fleetctl must finish as soon as the reported state
//! matches, print fleet's lines, and fail fast when systemd reports the unit failed.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fleet_core::{Machine, MachineId, SystemdState, TargetState, UnitFile, UnitName};
use fleet_registry::{Registry, RegistryConfig, ScheduleEntry, SchedulePlan, UnitStateRecord};
use fleet_testkit::EtcdServer;

const HELLO: &str = "[Unit]\nDescription=Hello\n\n[Service]\nExecStart=/bin/sleep 1000\n";
const MACHINE: &str = "0123456789abcdef0123456789abcdef";

fn fleetctl(etcd: &EtcdServer, dir: &std::path::Path, args: &[&str]) -> Child {
    Command::new(assert_cmd::cargo::cargo_bin("fleetctl"))
        .current_dir(dir)
        .env("FLEETCTL_DRIVER", "etcd")
        .env("FLEETCTL_ENDPOINT", etcd.client_url())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn fleetctl")
}

/// Waits for the child with a deadline (killing it on expiry) and returns its output.
fn finish(mut child: Child, within: Duration) -> (bool, String, String) {
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("fleetctl did not finish within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (mut out, mut err) = (String::new(), String::new());
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read stdout");
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("read stderr");
    (status.success(), out, err)
}

/// Plays engine + agent: once the unit's desired state is `want`, reports it at `state`
/// with systemd's `active` on MACHINE.
async fn report_when(
    reg: &Registry,
    unit: &str,
    want: TargetState,
    state: TargetState,
    active: &str,
) {
    let name = UnitName::parse(unit).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let record = loop {
        if let Some(u) = reg.get_unit(&name).await.unwrap()
            && u.target == want
        {
            break u;
        }
        assert!(
            Instant::now() < deadline,
            "fleetctl never set {unit} to {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut machine = Machine::new(MachineId::new(MACHINE).unwrap());
    machine.public_ip = Some("10.9.8.7".parse().unwrap());
    let ttl = Duration::from_secs(30);
    // the machine's agent (taking back its lease if an earlier call registered it)
    let (agent, _keep) = match reg.register_agent(&machine, "", ttl, &[]).await {
        Err(fleet_registry::RegistryError::MachineTaken { lease, .. }) => {
            reg.register_agent(&machine, "", ttl, &[lease]).await
        }
        r => r,
    }
    .unwrap();
    let entry = ScheduleEntry {
        machine: machine.id.clone(),
        unit: name.clone(),
        hash: record.hash,
        target: want,
        text: None,
    };
    as_engine(
        reg,
        &SchedulePlan {
            place: vec![entry],
            ..Default::default()
        },
    )
    .await;
    let systemd = SystemdState {
        load: "loaded".into(),
        active: active.into(),
        sub: "x".into(),
    };
    let rec = UnitStateRecord {
        unit: name,
        machine: machine.id.clone(),
        hash: record.hash,
        state,
        systemd,
    };
    agent.put_states(&[rec]).await.unwrap();
}

/// Writes `plan` as the engine would (only a leader writes the schedule).
async fn as_engine(reg: &Registry, plan: &SchedulePlan) {
    let lease = reg.grant_lease(Duration::from_secs(30)).await.unwrap();
    let engine = reg.campaign("test-engine", lease).await.unwrap();
    engine.apply(plan).await.unwrap();
    engine.resign().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_start_and_stop_follow_reported_states() {
    let etcd = EtcdServer::start().expect("etcd");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.service"), HELLO).unwrap();
    let reg = Registry::connect(RegistryConfig::new(etcd.client_url()))
        .await
        .unwrap();
    assert_eq!(UnitFile::parse(HELLO).unwrap().canonical(), HELLO);

    let child = fleetctl(&etcd, dir.path(), &["start", "hello.service"]);
    report_when(
        &reg,
        "hello.service",
        TargetState::Launched,
        TargetState::Launched,
        "active",
    )
    .await;
    let (ok, out, err) =
        tokio::task::spawn_blocking(move || finish(child, Duration::from_secs(20)))
            .await
            .unwrap();
    assert!(ok, "start failed: {err}");
    assert_eq!(
        out,
        "Unit hello.service inactive\nUnit hello.service launched on 01234567.../10.9.8.7\n"
    );

    // Already launched: nothing to do, nothing printed.
    let (ok, out, _) = finish(
        fleetctl(&etcd, dir.path(), &["start", "hello.service"]),
        Duration::from_secs(20),
    );
    assert!(ok);
    assert_eq!(out, "");

    let child = fleetctl(&etcd, dir.path(), &["stop", "hello.service"]);
    report_when(
        &reg,
        "hello.service",
        TargetState::Loaded,
        TargetState::Loaded,
        "inactive",
    )
    .await;
    let (ok, out, err) =
        tokio::task::spawn_blocking(move || finish(child, Duration::from_secs(20)))
            .await
            .unwrap();
    assert!(ok, "stop failed: {err}");
    assert_eq!(out, "Unit hello.service loaded on 01234567.../10.9.8.7\n");
    assert_eq!(err, "Successfully stopped units [hello.service].\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_start_fails_fast_when_systemd_reports_failed() {
    let etcd = EtcdServer::start().expect("etcd");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("broken.service"),
        HELLO.replace("/bin/sleep 1000", "/bin/false"),
    )
    .unwrap();
    let reg = Registry::connect(RegistryConfig::new(etcd.client_url()))
        .await
        .unwrap();
    let child = fleetctl(&etcd, dir.path(), &["start", "broken.service"]);
    report_when(
        &reg,
        "broken.service",
        TargetState::Launched,
        TargetState::Launched,
        "failed",
    )
    .await;
    let (ok, out, err) =
        tokio::task::spawn_blocking(move || finish(child, Duration::from_secs(20)))
            .await
            .unwrap();
    assert!(!ok);
    assert!(
        out.contains("Unit broken.service launched on 01234567.../10.9.8.7"),
        "{out}"
    );
    assert!(err.contains("unit broken.service failed to start"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_unit_files_says_why_a_unit_is_not_placed() {
    let etcd = EtcdServer::start().expect("etcd");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.service"), HELLO).unwrap();
    let reg = Registry::connect(RegistryConfig::new(etcd.client_url()))
        .await
        .unwrap();
    let (ok, _, err) = finish(
        fleetctl(&etcd, dir.path(), &["start", "--no-block", "hello.service"]),
        Duration::from_secs(20),
    );
    assert!(ok, "{err}");
    let name = UnitName::parse("hello.service").unwrap();
    let reason = "no machine has region=west".to_string();
    as_engine(
        &reg,
        &SchedulePlan {
            unplaced: vec![(name, reason)],
            ..Default::default()
        },
    )
    .await;
    let (ok, out, _) = finish(
        fleetctl(
            &etcd,
            dir.path(),
            &["list-unit-files", "--fields", "unit,dstate,target,reason"],
        ),
        Duration::from_secs(20),
    );
    assert!(ok);
    assert_eq!(
        out,
        "UNIT\t\tDSTATE\t\tTARGET\tREASON\nhello.service\tlaunched\t-\tno machine has region=west\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_start_gives_up_when_systemd_never_reports_active() {
    let etcd = EtcdServer::start().expect("etcd");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("oneshot.service"),
        HELLO.replace("/bin/sleep 1000", "/bin/true"),
    )
    .unwrap();
    let reg = Registry::connect(RegistryConfig::new(etcd.client_url()))
        .await
        .unwrap();
    let child = fleetctl(&etcd, dir.path(), &["start", "oneshot.service"]);
    report_when(
        &reg,
        "oneshot.service",
        TargetState::Launched,
        TargetState::Launched,
        "inactive",
    )
    .await;
    let started = Instant::now();
    let (ok, out, err) =
        tokio::task::spawn_blocking(move || finish(child, Duration::from_secs(30)))
            .await
            .unwrap();
    assert!(!ok);
    assert!(
        out.contains("Unit oneshot.service launched on 01234567.../10.9.8.7"),
        "{out}"
    );
    assert!(
        err.contains(
            "Failed to find an active unit oneshot.service within 10s: systemd reports inactive/x"
        ),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(25));
}

/// On a terminal, a blocking wait shows which units are still pending and for how long;
/// piped (every other test here), stdout carries fleet's lines only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_start_shows_progress_on_a_terminal() {
    let etcd = EtcdServer::start().expect("etcd");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.service"), HELLO).unwrap();
    let reg = Registry::connect(RegistryConfig::new(etcd.client_url()))
        .await
        .unwrap();
    let bin = assert_cmd::cargo::cargo_bin("fleetctl");
    // util-linux `script` gives fleetctl a pseudo-terminal as stdout.
    let mut child = Command::new("script")
        .current_dir(dir.path())
        .env("FLEETCTL_DRIVER", "etcd")
        .env("FLEETCTL_ENDPOINT", etcd.client_url())
        .args(["-q", "-f", "-e", "-c"])
        .arg(format!("{} start hello.service", bin.display()))
        .arg("/dev/null")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run script(1)");
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let want = "1 unit(s) not yet launched: hello.service";
    let deadline = Instant::now() + Duration::from_secs(20);
    while !String::from_utf8_lossy(&seen).contains(want) {
        assert!(
            Instant::now() < deadline,
            "no progress line on the terminal: {:?}",
            String::from_utf8_lossy(&seen)
        );
        if let Ok(chunk) = rx.recv_timeout(Duration::from_millis(100)) {
            seen.extend(chunk);
        }
    }
    assert!(String::from_utf8_lossy(&seen).contains("waiting "));
    report_when(
        &reg,
        "hello.service",
        TargetState::Launched,
        TargetState::Launched,
        "active",
    )
    .await;
    let status = tokio::task::spawn_blocking(move || {
        let status = child.wait().unwrap();
        while let Ok(chunk) = rx.recv_timeout(Duration::from_secs(5)) {
            seen.extend(chunk);
        }
        (status, seen)
    });
    let (status, seen) = tokio::time::timeout(Duration::from_secs(30), status)
        .await
        .expect("fleetctl finished")
        .unwrap();
    let text = String::from_utf8_lossy(&seen);
    assert!(status.success(), "{text}");
    assert!(
        text.contains("Unit hello.service launched on 01234567.../10.9.8.7"),
        "{text}"
    );
}
