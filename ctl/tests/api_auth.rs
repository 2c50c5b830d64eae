//! fleetctl against a fleetd API that requires client certificates: a client without
//! one is told "certificate required", a viewer reads but may not start, stop or
//! destroy, an operator may; each refusal is one line.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use assert_cmd::Command;
use fleet_api::{ApiContext, ListenConfig, Listeners, ServerTls, serve_on};
use fleet_core::MachineId;
use fleet_registry::{Registry, RegistryConfig};
use fleet_testkit::EtcdServer;
use tokio_util::sync::CancellationToken;

const HELLO: &str = "[Unit]\nDescription=Hello\n\n[Service]\nExecStart=/bin/sleep 1000\n";

/// Serves the API on 127.0.0.1 with mTLS (the test CA) in a thread; returns its port.
fn serve(etcd: &EtcdServer, d: &Path, stop: CancellationToken) -> u16 {
    let (url, d) = (etcd.client_url(), d.to_path_buf());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let reg = Registry::connect(RegistryConfig::new(url)).await.unwrap();
            let listeners = Listeners::open(&ListenConfig {
                unix: None,
                tcp: vec!["127.0.0.1:0".parse().unwrap()],
                tls: Some(ServerTls {
                    cert: d.join("server.crt"),
                    key: d.join("server.key"),
                    client_ca: Some(d.join("ca.crt")),
                }),
                socket_activation: false,
                auth: Default::default(),
            })
            .unwrap();
            tx.send(listeners.tcp_addrs()[0].port()).unwrap();
            let ctx = ApiContext::new(reg, MachineId::new("m1").unwrap());
            let _ = serve_on(listeners, ctx, stop).await;
        });
    });
    rx.recv_timeout(Duration::from_secs(30)).expect("API ready")
}

#[test]
fn roles_and_missing_certificates_are_told_in_one_line() {
    let etcd = EtcdServer::start().expect("start etcd");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fleet_testkit::make_test_certs(d);
    std::fs::write(d.join("hello.service"), HELLO).unwrap();
    let stop = CancellationToken::new();
    let port = serve(&etcd, d, stop.clone());
    let run = |who: Option<&str>, args: &[&str]| -> Output {
        let mut cmd = Command::cargo_bin("fleetctl").unwrap();
        cmd.current_dir(d)
            .env_remove("FLEETCTL_DRIVER")
            .env_remove("FLEETCTL_CERT_FILE")
            .env_remove("FLEETCTL_KEY_FILE")
            .env("FLEETCTL_ENDPOINT", format!("https://127.0.0.1:{port}"))
            .env("FLEETCTL_CA_FILE", d.join("ca.crt"))
            .timeout(Duration::from_secs(60));
        if let Some(who) = who {
            cmd.env("FLEETCTL_CERT_FILE", d.join(format!("{who}.crt")))
                .env("FLEETCTL_KEY_FILE", d.join(format!("{who}.key")));
        }
        cmd.args(args).output().unwrap()
    };
    let refused = |who: Option<&str>, args: &[&str], expect: &str| {
        let out = run(who, args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{who:?} {args:?} succeeded");
        assert!(err.contains(expect), "{who:?} {args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        eprintln!("{who:?} {args:?}: {}", err.trim_end());
    };
    let ok = |who: &str, args: &[&str]| {
        let out = run(Some(who), args);
        assert!(
            out.status.success(),
            "{who} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    refused(None, &["list-machines"], "certificate required");
    refused(
        Some("rogue"),
        &["list-machines"],
        "client certificate refused",
    );
    refused(
        Some("viewer"),
        &["submit", "hello.service"],
        "role viewer may not submit units",
    );
    ok("operator", &["submit", "hello.service"]);
    assert!(ok("viewer", &["list-unit-files"]).contains("hello.service"));
    assert!(ok("viewer", &["cat", "hello.service"]).contains("Description=Hello"));
    refused(
        Some("viewer"),
        &["start", "--no-block", "hello.service"],
        "role viewer may not start, stop, load or unload units",
    );
    refused(
        Some("viewer"),
        &["destroy", "hello.service"],
        "role viewer may not destroy units",
    );
    ok("operator", &["start", "--no-block", "hello.service"]);
    ok("operator", &["unload", "--no-block", "hello.service"]);
    ok("operator", &["destroy", "hello.service"]);
    stop.cancel();
}

/// The unix socket maps the peer's uid: root is admin, a member of the operator group
/// an operator, anyone else a viewer (tests run as root: clients run as `nobody`).
#[test]
fn unix_socket_roles_follow_the_peer_uid_and_group() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let uid = std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m));
    if uid.ok() != Some(0) {
        eprintln!("skipped: needs root to run clients as another user");
        return;
    }
    const OPERATORS: u32 = 4242;
    let etcd = EtcdServer::start().expect("start etcd");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(d.join("hello.service"), HELLO).unwrap();
    std::fs::set_permissions(
        d.join("hello.service"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let socket = d.join("fleet.sock");
    let stop = CancellationToken::new();
    let (url, sock, stop2) = (etcd.client_url(), socket.clone(), stop.clone());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let reg = Registry::connect(RegistryConfig::new(url)).await.unwrap();
            let listeners = Listeners::open(&ListenConfig {
                unix: Some(sock.clone()),
                tcp: vec![],
                tls: None,
                socket_activation: false,
                auth: fleet_api::AuthConfig {
                    operator_gid: Some(OPERATORS),
                    allow_plaintext: false,
                },
            })
            .unwrap();
            // Open to everyone here, so that `nobody` reaches it at all.
            std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
            tx.send(()).unwrap();
            let ctx = ApiContext::new(reg, MachineId::new("m1").unwrap());
            let _ = serve_on(listeners, ctx, stop2).await;
        });
    });
    rx.recv_timeout(Duration::from_secs(30)).expect("API ready");
    let run = |gid: Option<u32>, args: &[&str]| -> Output {
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("fleetctl"));
        cmd.current_dir(&d)
            .env_remove("FLEETCTL_DRIVER")
            .env("HOME", "/")
            .env("FLEETCTL_ENDPOINT", format!("unix://{}", socket.display()))
            .args(args);
        if let Some(gid) = gid {
            cmd.uid(65534).gid(gid);
        }
        cmd.output().unwrap()
    };
    let text = |o: &Output| String::from_utf8_lossy(&o.stderr).into_owned();
    let out = run(None, &["submit", "hello.service"]);
    assert!(out.status.success(), "root: {}", text(&out));
    let out = run(Some(65534), &["list-unit-files"]);
    assert!(out.status.success(), "viewer: {}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("hello.service"));
    let out = run(Some(65534), &["start", "--no-block", "hello.service"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("role viewer may not start"),
        "{}",
        text(&out)
    );
    let out = run(Some(OPERATORS), &["start", "--no-block", "hello.service"]);
    assert!(out.status.success(), "operator: {}", text(&out));
    let out = run(Some(OPERATORS), &["destroy", "hello.service"]);
    assert!(out.status.success(), "operator: {}", text(&out));
    stop.cancel();
}
