//! Namespaces and people through the API (mTLS, a real etcd): the certificate's CN is
//! the person, `--namespace` the namespace each call acts in, and each person's role
//! there decides; refusals are one "no access" / "may not" line, nothing changed.

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
fn rights_differ_per_namespace_for_the_same_person() {
    let etcd = EtcdServer::start().expect("start etcd");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fleet_testkit::make_test_certs(d);
    std::fs::write(d.join("hello.service"), HELLO).unwrap();
    std::fs::write(d.join("other.service"), HELLO).unwrap();
    let stop = CancellationToken::new();
    let port = serve(&etcd, d, stop.clone());
    // The superadmin's set-up, straight to etcd.
    let etcd_ok = |args: &[&str]| {
        let out = Command::cargo_bin("fleetctl")
            .unwrap()
            .env("FLEETCTL_DRIVER", "etcd")
            .env("FLEETCTL_ENDPOINT", etcd.client_url())
            .env_remove("FLEETCTL_NAMESPACE")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    etcd_ok(&["namespace", "create", "a"]);
    etcd_ok(&["namespace", "create", "b"]);
    // CN=client: admin of a, viewer of b. CN=viewer: user of a. CN=admin: superadmin.
    etcd_ok(&["user", "add", "client"]);
    etcd_ok(&["user", "grant", "client", "a", "admin"]);
    etcd_ok(&["user", "grant", "client", "b", "viewer"]);
    etcd_ok(&["user", "add", "viewer"]);
    etcd_ok(&["user", "grant", "viewer", "a", "user"]);
    etcd_ok(&["user", "add", "admin", "--superadmin"]);

    let run = |who: &str, ns: &str, args: &[&str]| -> Output {
        Command::cargo_bin("fleetctl")
            .unwrap()
            .current_dir(d)
            .env_remove("FLEETCTL_DRIVER")
            .env("FLEETCTL_ENDPOINT", format!("https://127.0.0.1:{port}"))
            .env("FLEETCTL_CA_FILE", d.join("ca.crt"))
            .env("FLEETCTL_CERT_FILE", d.join(format!("{who}.crt")))
            .env("FLEETCTL_KEY_FILE", d.join(format!("{who}.key")))
            .env("FLEETCTL_NAMESPACE", ns)
            .timeout(Duration::from_secs(60))
            .args(args)
            .output()
            .unwrap()
    };
    let ok = |who: &str, ns: &str, args: &[&str]| {
        let out = run(who, ns, args);
        assert!(
            out.status.success(),
            "{who}@{ns} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let refused = |who: &str, ns: &str, args: &[&str], expect: &str| {
        let out = run(who, ns, args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{who}@{ns} {args:?} succeeded");
        assert!(err.contains(expect), "{who}@{ns} {args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        eprintln!("{who}@{ns} {args:?}: {}", err.trim_end());
    };
    let units = |who: &str, ns: &str| -> String {
        ok(
            who,
            ns,
            &["list-unit-files", "--no-legend", "--fields", "unit"],
        )
    };

    // An admin creates in its namespace; the same person only views b.
    ok("client", "a", &["submit", "hello.service"]);
    refused(
        "client",
        "b",
        &["submit", "hello.service"],
        "user client (viewer in namespace b) may not submit units (this needs admin)",
    );
    // The superadmin does everything everywhere.
    ok("admin", "b", &["submit", "hello.service"]);
    assert_eq!(units("client", "b"), "hello.service\n");
    refused(
        "client",
        "b",
        &["start", "--no-block", "hello.service"],
        "may not start, stop, load or unload units (this needs user or admin)",
    );
    refused(
        "client",
        "b",
        &["destroy", "hello.service"],
        "may not destroy units (this needs admin)",
    );
    // No role in a namespace: no access at all, not even listing.
    refused(
        "client",
        "default",
        &["list-unit-files"],
        "no access: user client has no role in namespace default",
    );
    refused(
        "viewer",
        "b",
        &["cat", "hello.service"],
        "no access: user viewer has no role in namespace b",
    );
    refused(
        "viewer",
        "nosuch",
        &["list-units"],
        "no access: namespace nosuch does not exist",
    );
    // A namespace user starts and unloads, but neither creates nor destroys.
    ok("viewer", "a", &["start", "--no-block", "hello.service"]);
    ok("viewer", "a", &["unload", "--no-block", "hello.service"]);
    refused(
        "viewer",
        "a",
        &["destroy", "hello.service"],
        "user viewer (user in namespace a) may not destroy units (this needs admin)",
    );
    refused(
        "viewer",
        "a",
        &["submit", "other.service"],
        "may not submit units (this needs admin)",
    );
    // Destroying in a leaves b's unit of the same name.
    ok("client", "a", &["destroy", "hello.service"]);
    assert_eq!(units("client", "a"), "");
    assert_eq!(units("admin", "b"), "hello.service\n");
    // Callers who are not registered people keep their certificate's role (issue 15),
    // in the default namespace only: an operator's qualified name does not bypass the
    // rights of namespace a.
    assert!(ok("operator", "default", &["list-unit-files"]).contains("UNIT"));
    refused(
        "operator",
        "a",
        &["submit", "other.service"],
        "no access: unit a:other.service is in namespace a, and role operator changes units of namespace default only",
    );
    assert_eq!(units("client", "a"), "");
    ok("operator", "default", &["submit", "other.service"]);

    // HTTP API v1 (namespace default): a namespace user's PUT of an existing unit's
    // desiredState is an update, a PUT creating a unit or a DELETE takes an admin.
    etcd_ok(&["user", "grant", "viewer", "default", "user"]);
    let v1 = |method: &str, unit: &str, body: &str| -> (String, String) {
        let out = std::process::Command::new("curl")
            .args(["-sS", "-o", "-", "-w", "\n%{http_code}", "-X", method])
            .arg("--cacert")
            .arg(d.join("ca.crt"))
            .arg("--cert")
            .arg(d.join("viewer.crt"))
            .arg("--key")
            .arg(d.join("viewer.key"))
            .args(["-H", "Content-Type: application/json", "--data", body])
            .arg(format!("https://127.0.0.1:{port}/fleet/v1/units/{unit}"))
            .output()
            .expect("run curl");
        let out = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = out.rsplit_once('\n').unwrap_or(("", &out));
        (code.to_string(), body.to_string())
    };
    let (code, body) = v1("PUT", "other.service", r#"{"desiredState":"loaded"}"#);
    assert_eq!(code, "204", "{body}");
    assert!(
        ok("admin", "default", &["list-unit-files", "--no-legend"]).contains("loaded"),
        "the update took effect"
    );
    let create = r#"{"desiredState":"loaded","options":[{"section":"Service","name":"ExecStart","value":"/bin/true"}]}"#;
    let (code, body) = v1("PUT", "new.service", create);
    assert_eq!(code, "403", "{body}");
    assert!(
        body.contains(
            "user viewer (user in namespace default) may not submit units (this needs admin)"
        ),
        "{body}"
    );
    let (code, body) = v1("DELETE", "other.service", "");
    assert_eq!(code, "403", "{body}");
    let files = ok(
        "admin",
        "default",
        &["list-unit-files", "--no-legend", "--fields", "unit"],
    );
    assert_eq!(files, "other.service\n");

    // ssh: to a machine running b's unit, an admin of b goes, a viewer of b does not.
    let put = |key: &str, value: &str| {
        etcd.etcdctl(&[], &["put", &format!("/_coreos.com/fleet/{key}"), value]);
    };
    put("machine/m1", r#"{"id":"m1","public_ip":"10.0.0.1"}"#);
    put(
        "schedule/m1/b:hello.service",
        &format!(r#"{{"hash":"{}","target":"launched"}}"#, "0".repeat(40)),
    );
    let fake = d.join("fake-ssh");
    std::fs::write(&fake, "#!/bin/sh\necho \"ssh $*\"\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let ssh = |who: &str| {
        let mut cmd = Command::cargo_bin("fleetctl").unwrap();
        cmd.current_dir(d)
            .env_remove("FLEETCTL_DRIVER")
            .env("FLEETCTL_ENDPOINT", format!("https://127.0.0.1:{port}"))
            .env("FLEETCTL_CA_FILE", d.join("ca.crt"))
            .env("FLEETCTL_CERT_FILE", d.join(format!("{who}.crt")))
            .env("FLEETCTL_KEY_FILE", d.join(format!("{who}.key")))
            .env("FLEETCTL_NAMESPACE", "b")
            .env("FLEETCTL_SSH_COMMAND", &fake)
            .timeout(Duration::from_secs(60))
            .args(["ssh", "m1", "true"])
            .output()
            .unwrap()
    };
    let out = ssh("admin");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("-- 10.0.0.1 true"));
    let out = ssh("client");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(out.stdout, b"", "ssh ran");
    assert!(
        err.starts_with("Unable to proceed: ssh to the machines of namespace b takes the role user or admin there"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    stop.cancel();
}
