//! fleetctl --driver=etcd against a real etcd serving TLS with authentication on:
//! `--ca-file` and the credentials (flag, environment or file) work, and a missing or
//! wrong credential is one clear line that never shows the password.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use assert_cmd::Command;
use fleet_testkit::{EtcdConfig, EtcdServer};

const PASSWORD: &str = "pw-4a9f1c-do-not-print";
const HELLO: &str = "[Unit]\nDescription=Hello\n\n[Service]\nExecStart=/bin/sleep 1000\n";

/// An etcd on TLS (the test CA's server certificate) with user `root` / [`PASSWORD`].
fn secure_etcd(dir: &Path) -> EtcdServer {
    fleet_testkit::make_test_certs(dir);
    let etcd = EtcdConfig {
        client_tls: Some((dir.join("server.crt"), dir.join("server.key"))),
        ..EtcdConfig::default()
    }
    .start()
    .expect("start etcd");
    etcd.enable_auth(
        PASSWORD,
        &[format!("--cacert={}", dir.join("ca.crt").display())],
    );
    etcd
}

fn fleetctl(etcd: &EtcdServer, dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::cargo_bin("fleetctl").expect("fleetctl binary");
    cmd.current_dir(dir)
        .env("FLEETCTL_DRIVER", "etcd")
        .env("FLEETCTL_ENDPOINT", etcd.client_url())
        .env_remove("FLEETCTL_ETCD_USERNAME")
        .env_remove("FLEETCTL_ETCD_PASSWORD")
        .env_remove("FLEETCTL_ETCD_PASSWORD_FILE")
        .args(args)
        .timeout(Duration::from_secs(60));
    cmd
}

fn run(mut cmd: Command) -> Output {
    cmd.output().expect("run fleetctl")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn tls_and_password_work_by_file_and_by_environment() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let etcd = secure_etcd(d);
    std::fs::write(d.join("hello.service"), HELLO).unwrap();
    std::fs::write(d.join("password"), format!("{PASSWORD}\n")).unwrap();
    let ca = format!("--ca-file={}", d.join("ca.crt").display());
    let by_file = [
        ca.as_str(),
        "--etcd-username=root",
        "--etcd-password-file=password",
        "--debug",
    ];
    let mut args = by_file.to_vec();
    args.extend(["submit", "hello.service"]);
    let out = run(fleetctl(&etcd, d, &args));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains(PASSWORD),
        "--debug showed the password"
    );

    let mut cmd = fleetctl(&etcd, d, &[&ca, "list-unit-files", "--no-legend"]);
    cmd.env("FLEETCTL_ETCD_USERNAME", "root")
        .env("FLEETCTL_ETCD_PASSWORD", PASSWORD);
    let out = run(cmd);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("hello.service"));
}

#[test]
fn missing_or_wrong_credentials_are_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let etcd = secure_etcd(d);
    let ca = format!("--ca-file={}", d.join("ca.crt").display());
    let one_line = |args: &[&str], expect: &str| {
        let out = run(fleetctl(&etcd, d, args));
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(expect), "{args:?}: {err}");
        // One error line (besides --debug's own request log, where asked for).
        let lines = err.lines().filter(|l| !l.starts_with("DEBUG ")).count();
        assert_eq!(lines, 1, "{args:?}: {err}");
        assert!(!err.contains("user name is empty"), "{err}");
        assert!(
            !err.contains(PASSWORD) && !err.contains("wrong-pw"),
            "{err}"
        );
        err
    };
    let err = one_line(&[&ca, "list-units"], "etcd requires authentication");
    eprintln!("no credentials: {err}");
    let err = one_line(
        &[
            &ca,
            "--etcd-username=root",
            "--etcd-password=wrong-pw",
            "--debug",
            "list-machines",
        ],
        "etcd refused the user name or password",
    );
    eprintln!("wrong password: {err}");
    one_line(
        &[&ca, "--etcd-username=root", "list-units"],
        "--etcd-username needs a password",
    );
    let out = run(fleetctl(
        &etcd,
        d,
        &["--etcd-username=root", "--etcd-password=x", "list-units"],
    ));
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("UnknownIssuer") && err.contains("--ca-file"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    eprintln!("no CA: {err}");
    let out = run(fleetctl(
        &etcd,
        d,
        &[
            "--etcd-username=root",
            "--etcd-password-file=/nonexistent",
            "list-units",
        ],
    ));
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("/nonexistent"),
        "{}",
        text(&out.stderr)
    );
}

/// etcd with `--client-cert-auth` takes the user from the certificate's CN: fleetctl's
/// `--cert-file/--key-file` reach it, with no password.
#[test]
fn client_certificates_authenticate_to_etcd() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fleet_testkit::make_test_certs(d);
    let ca = d.join("ca.crt");
    let etcd = EtcdConfig {
        client_tls: Some((d.join("server.crt"), d.join("server.key"))),
        extra_args: vec![
            "--client-cert-auth".into(),
            format!("--trusted-ca-file={}", ca.display()),
        ],
        ..EtcdConfig::default()
    }
    .start()
    .expect("start etcd");
    let tls = [
        format!("--cacert={}", ca.display()),
        format!("--cert={}", d.join("admin.crt").display()),
        format!("--key={}", d.join("admin.key").display()),
    ];
    etcd.enable_auth(PASSWORD, &tls);
    // The user named by client.crt's CN, with fleet's keys only.
    let root = [tls.to_vec(), vec![format!("--user=root:{PASSWORD}")]].concat();
    etcd.etcdctl(&root, &["role", "add", "fleet"]);
    etcd.etcdctl(
        &root,
        &[
            "role",
            "grant-permission",
            "fleet",
            "--prefix=true",
            "readwrite",
            "/_coreos.com/fleet/",
        ],
    );
    etcd.etcdctl(&root, &["user", "add", "client:unused-pw"]);
    etcd.etcdctl(&root, &["user", "grant-role", "client", "fleet"]);
    std::fs::write(d.join("hello.service"), HELLO).unwrap();
    let flags = [
        format!("--ca-file={}", ca.display()),
        format!("--cert-file={}", d.join("client.crt").display()),
        format!("--key-file={}", d.join("client.key").display()),
    ];
    let mut args: Vec<&str> = flags.iter().map(String::as_str).collect();
    args.extend(["submit", "hello.service"]);
    let out = run(fleetctl(&etcd, d, &args));
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The role bounds it: outside fleet's prefix, etcd says no, and fleetctl says so.
    let out = run(fleetctl(
        &etcd,
        d,
        &[
            &flags[0],
            &flags[1],
            &flags[2],
            "--etcd-key-prefix=/other/",
            "list-units",
        ],
    ));
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("etcd denied this user permission"), "{err}");
    eprintln!("outside the role: {err}");
}
