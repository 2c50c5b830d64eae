//! Namespaces through the etcd driver with etcd authentication on: a person's etcd
//! user made by `fleetctl etcd-roles --namespace-user NAME=NS:ROLE` reaches its
//! namespace's units with `--namespace` and nothing of another namespace's, and is
//! told so in one line (real etcd, `fleet_registry::ns_roles`).

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use assert_cmd::Command;
use fleet_testkit::EtcdServer;

const HELLO: &str = "[Unit]\nDescription=Hello\n\n[Service]\nExecStart=/bin/sleep 1000\n";

/// fleetctl on the etcd driver as `user` (password from `<dir>/pw/<user>`).
fn fleetctl(etcd: &EtcdServer, dir: &Path, user: &str, args: &[&str]) -> Output {
    let mut cmd = Command::cargo_bin("fleetctl").expect("fleetctl binary");
    cmd.current_dir(dir)
        .env("FLEETCTL_DRIVER", "etcd")
        .env("FLEETCTL_ENDPOINT", etcd.client_url())
        .env_remove("FLEETCTL_ETCD_USERNAME")
        .env_remove("FLEETCTL_ETCD_PASSWORD")
        .env_remove("FLEETCTL_ETCD_PASSWORD_FILE")
        .env_remove("FLEETCTL_NAMESPACE")
        .timeout(Duration::from_secs(60));
    cmd.arg(format!("--etcd-username={user}")).arg(format!(
        "--etcd-password-file={}",
        dir.join("pw").join(user).display()
    ));
    cmd.args(args).output().expect("run fleetctl")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[track_caller]
fn ok(o: &Output) -> String {
    assert!(o.status.success(), "{}", text(&o.stderr));
    text(&o.stdout)
}

/// Refused with exit 1 and one line saying there is no access to `ns`.
#[track_caller]
fn no_access(o: &Output, ns: &str) {
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!("no access to namespace {ns}")),
        "{err}"
    );
}

#[test]
fn a_namespace_user_reaches_its_namespace_only() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let etcd = EtcdServer::start().expect("etcd starts");
    std::fs::write(d.join("hello.service"), HELLO).unwrap();

    let mut cmd = Command::cargo_bin("fleetctl").unwrap();
    let setup = cmd
        .current_dir(d)
        .env("FLEETCTL_DRIVER", "etcd")
        .env("FLEETCTL_ENDPOINT", etcd.client_url())
        .args([
            "etcd-roles",
            "--password-dir=pw",
            "--enable-auth",
            "--namespace-user=alice=a:admin",
            "--namespace-user=carol=a:user",
            "--namespace-user=carol=b:viewer",
        ])
        .output()
        .unwrap();
    let out = ok(&setup);
    assert!(
        out.contains("user alice: granted role fleet-ns-a-admin"),
        "{out}"
    );
    // A second run changes nothing.
    let again = fleetctl(
        &etcd,
        d,
        "root",
        &[
            "etcd-roles",
            "--password-dir=pw",
            "--namespace-user=alice=a:admin",
            "--namespace-user=carol=a:user",
            "--namespace-user=carol=b:viewer",
        ],
    );
    assert_eq!(ok(&again), "etcd roles and users are up to date\n");

    for ns in ["a", "b"] {
        ok(&fleetctl(&etcd, d, "root", &["namespace", "create", ns]));
    }
    ok(&fleetctl(
        &etcd,
        d,
        "root",
        &["--namespace=b", "submit", "hello.service"],
    ));
    ok(&fleetctl(&etcd, d, "root", &["submit", "hello.service"]));

    // The admin of a creates, lists, starts and destroys in a.
    ok(&fleetctl(
        &etcd,
        d,
        "alice",
        &["--namespace=a", "submit", "hello.service"],
    ));
    let list = ok(&fleetctl(
        &etcd,
        d,
        "alice",
        &["--namespace=a", "list-unit-files", "--no-legend"],
    ));
    assert_eq!(list.lines().count(), 1, "{list}");
    assert!(list.starts_with("hello.service"), "{list}");
    ok(&fleetctl(
        &etcd,
        d,
        "alice",
        &["--namespace=a", "list-units", "--no-legend"],
    ));

    // ... and cannot read or write b, nor default.
    for args in [
        &["--namespace=b", "list-unit-files"][..],
        &["--namespace=b", "list-units"],
        &["--namespace=b", "cat", "hello.service"],
        &["--namespace=b", "destroy", "hello.service"],
        &["--namespace=b", "start", "--no-block", "hello.service"],
        &["--namespace=b", "submit", "hello.service"],
    ] {
        no_access(&fleetctl(&etcd, d, "alice", args), "b");
    }
    let default = fleetctl(&etcd, d, "alice", &["list-unit-files"]);
    assert_eq!(default.status.code(), Some(1));
    assert!(
        text(&default.stderr).contains("denied"),
        "{}",
        text(&default.stderr)
    );

    // A user of a starts and stops, but does not create or destroy; a viewer of b
    // reads b and changes nothing there.
    ok(&fleetctl(
        &etcd,
        d,
        "carol",
        &["--namespace=a", "start", "--no-block", "hello.service"],
    ));
    let files = ok(&fleetctl(
        &etcd,
        d,
        "carol",
        &["--namespace=a", "list-unit-files", "--no-legend"],
    ));
    assert!(files.contains("launched"), "{files}");
    no_access(
        &fleetctl(
            &etcd,
            d,
            "carol",
            &["--namespace=a", "destroy", "hello.service"],
        ),
        "a",
    );
    let b = ok(&fleetctl(
        &etcd,
        d,
        "carol",
        &["--namespace=b", "list-unit-files", "--no-legend"],
    ));
    assert!(b.starts_with("hello.service"), "{b}");
    // Targets are written in nested txns, which etcd before 3.4.44 lets any user write
    // (GHSA-rfx7-8w68-q57q, warned by etcd-roles): refused where etcd confines users.
    let version = etcd.etcdctl(&[], &["version"]);
    let version = version
        .lines()
        .next()
        .unwrap_or("")
        .trim_start_matches("etcdctl version: ");
    if fleet_registry::roles::version_confines_users(version) == Some(true) {
        no_access(
            &fleetctl(
                &etcd,
                d,
                "carol",
                &["--namespace=b", "start", "--no-block", "hello.service"],
            ),
            "b",
        );
        // Nothing of b changed: root still sees it inactive.
        let b = ok(&fleetctl(
            &etcd,
            d,
            "root",
            &["--namespace=b", "list-unit-files", "--no-legend"],
        ));
        assert!(b.contains("inactive"), "{b}");
    }
}
