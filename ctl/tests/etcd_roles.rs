//! `fleetctl etcd-roles` against a real etcd: it creates the roles and users, turns
//! authentication on, keeps passwords in mode-0600 files and never prints them; a
//! second run changes nothing; each user can do what its role allows and no more.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use assert_cmd::Command;
use fleet_testkit::EtcdServer;

const HELLO: &str = "[Unit]\nDescription=Hello\n\n[Service]\nExecStart=/bin/sleep 1000\n";

/// fleetctl on the etcd driver as `user` (password from `<dir>/pw/<user>`), or
/// without credentials.
fn fleetctl(etcd: &EtcdServer, dir: &Path, user: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::cargo_bin("fleetctl").expect("fleetctl binary");
    cmd.current_dir(dir)
        .env("FLEETCTL_DRIVER", "etcd")
        .env("FLEETCTL_ENDPOINT", etcd.client_url())
        .env_remove("FLEETCTL_ETCD_USERNAME")
        .env_remove("FLEETCTL_ETCD_PASSWORD")
        .env_remove("FLEETCTL_ETCD_PASSWORD_FILE")
        .timeout(Duration::from_secs(60));
    if let Some(u) = user {
        cmd.arg(format!("--etcd-username={u}")).arg(format!(
            "--etcd-password-file={}",
            dir.join("pw").join(u).display()
        ));
    }
    cmd.args(args).output().expect("run fleetctl")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const SETUP: &[&str] = &[
    "etcd-roles",
    "--password-dir=pw",
    "--enable-auth",
    "--machine=m1",
    "--engine-machine=m2",
    "--api-machine=m2",
    "--operator=alice",
    "--viewer=bob",
];

#[test]
fn setup_is_idempotent_and_each_user_gets_its_role_only() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let etcd = EtcdServer::start().expect("etcd starts");
    std::fs::write(d.join("hello.service"), HELLO).unwrap();

    // Bad input is one line and changes nothing.
    let bad = fleetctl(
        &etcd,
        d,
        None,
        &["etcd-roles", "--password-dir=pw", "--machine=a/b"],
    );
    assert_eq!(bad.status.code(), Some(1));
    assert_eq!(
        text(&bad.stderr).lines().count(),
        1,
        "{}",
        text(&bad.stderr)
    );
    assert!(!d.join("pw").exists());

    let first = fleetctl(&etcd, d, None, SETUP);
    let out = text(&first.stdout);
    assert!(first.status.success(), "{}", text(&first.stderr));
    // The test etcd's version decides whether the nested-txn warning must show.
    let version = etcd.etcdctl(&[], &["version"]);
    let version = version
        .lines()
        .next()
        .unwrap_or("")
        .trim_start_matches("etcdctl version: ");
    let confines = fleet_registry::roles::version_confines_users(version).unwrap();
    assert_eq!(
        text(&first.stderr).contains("GHSA-rfx7-8w68-q57q"),
        !confines,
        "{version}: {}",
        text(&first.stderr)
    );
    assert!(
        out.contains("user fleet-machine-m2: granted role fleet-engine"),
        "{out}"
    );
    assert!(out.contains("etcd authentication enabled"), "{out}");
    for user in [
        "root",
        "fleet-machine-m1",
        "fleet-machine-m2",
        "alice",
        "bob",
    ] {
        let file = d.join("pw").join(user);
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{user}");
        let pw = std::fs::read_to_string(&file).unwrap();
        assert!(!out.contains(pw.trim()) && !text(&first.stderr).contains(pw.trim()));
    }

    // Now etcd wants a user: the same command line connects as root with the password
    // it wrote, and changes nothing; so does naming root explicitly.
    for user in [None, Some("root")] {
        let again = fleetctl(&etcd, d, user, SETUP);
        assert!(again.status.success(), "{}", text(&again.stderr));
        assert_eq!(text(&again.stdout), "etcd roles and users are up to date\n");
    }

    // An operator submits; a viewer lists but may not destroy; nor may a machine.
    let ok = fleetctl(&etcd, d, Some("alice"), &["submit", "hello.service"]);
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    let list = fleetctl(&etcd, d, Some("bob"), &["list-unit-files", "--no-legend"]);
    assert!(text(&list.stdout).contains("hello.service"));
    let no = fleetctl(&etcd, d, Some("bob"), &["destroy", "hello.service"]);
    assert_eq!(no.status.code(), Some(1));
    assert!(
        text(&no.stderr).contains("this etcd user lacks the role fleet-operator"),
        "{}",
        text(&no.stderr)
    );
    // (fleet's own unit submissions use nested txns, which etcd before 3.4.44 does not
    // check: a destroy is refused on every version.)
    let no = fleetctl(
        &etcd,
        d,
        Some("fleet-machine-m1"),
        &["destroy", "hello.service"],
    );
    assert_eq!(no.status.code(), Some(1));
    assert_eq!(
        text(&no.stderr).trim(),
        "Error destroying units: etcd denied writing units and targets (unit/, job/): this etcd user lacks the role fleet-operator"
    );

    // A machine no longer allowed to run the engine loses the role, and only that.
    let third = fleetctl(
        &etcd,
        d,
        Some("root"),
        &["etcd-roles", "--password-dir=pw", "--machine=m2"],
    );
    assert!(third.status.success(), "{}", text(&third.stderr));
    assert_eq!(
        text(&third.stdout),
        "user fleet-machine-m2: revoked role fleet-engine\nuser fleet-machine-m2: revoked role fleet-operator\n"
    );

    // A control machine whose API has its own identity: the machine's user gets the
    // engine role only, the API's user the operator role; again, nothing changes.
    let control = [
        "etcd-roles",
        "--password-dir=pw",
        "--engine-machine=m2",
        "--api-machine=m2",
        "--api-identity",
    ];
    let fourth = fleetctl(&etcd, d, Some("root"), &control);
    assert!(fourth.status.success(), "{}", text(&fourth.stderr));
    let out = text(&fourth.stdout);
    assert!(out.contains("user fleet-api-m2: created"), "{out}");
    assert!(
        out.contains("user fleet-api-m2: granted role fleet-operator"),
        "{out}"
    );
    assert!(
        out.contains("user fleet-machine-m2: granted role fleet-engine"),
        "{out}"
    );
    assert!(
        !out.contains("fleet-machine-m2: granted role fleet-operator"),
        "{out}"
    );
    let again = fleetctl(&etcd, d, Some("root"), &control);
    assert_eq!(text(&again.stdout), "etcd roles and users are up to date\n");
    let no = fleetctl(
        &etcd,
        d,
        Some("fleet-machine-m2"),
        &["destroy", "hello.service"],
    );
    assert_eq!(
        no.status.code(),
        Some(1),
        "the engine's identity destroyed a unit"
    );
    let ok = fleetctl(
        &etcd,
        d,
        Some("fleet-api-m2"),
        &["destroy", "hello.service"],
    );
    assert!(ok.status.success(), "{}", text(&ok.stderr));
}
