//! Unit names and unit text that systemd would refuse or misread never reach etcd:
//! fleetctl refuses them with one line, exits non-zero and writes nothing, and a valid
//! unit beside them in the same command is not written either.

use std::time::Duration;

use assert_cmd::Command;
use fleet_testkit::EtcdServer;

fn fleetctl(etcd: &EtcdServer, dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::cargo_bin("fleetctl")
        .expect("fleetctl binary")
        .current_dir(dir)
        .env("FLEETCTL_DRIVER", "etcd")
        .env("FLEETCTL_ENDPOINT", etcd.client_url())
        .env_remove("FLEETCTL_ETCD_KEY_PREFIX")
        .timeout(Duration::from_secs(60))
        .args(args)
        .output()
        .expect("run fleetctl")
}

#[test]
fn names_and_text_systemd_would_refuse_are_refused_before_writing() {
    let etcd = EtcdServer::start().expect("start etcd (apt-get install etcd-server)");
    let dir = tempfile::tempdir().unwrap();
    let good = "[Service]\nExecStart=/bin/true\n";
    std::fs::write(dir.path().join("ok.service"), good).unwrap();
    std::fs::write(dir.path().join(".service"), good).unwrap();
    // Too long for a file, so an instance of a local template: systemd's limit is 255.
    std::fs::write(dir.path().join("web@.service"), good).unwrap();
    let long = format!("web@{}.service", "a".repeat(256 - "web@.service".len()));
    std::fs::write(
        dir.path().join("nul.service"),
        "[Service]\nExecStart=/bin/echo a\0b\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("ansi.service"),
        "[Unit]\nDescription=\x1b[2J\x1b[31mred\n",
    )
    .unwrap();
    for (bad, expect) in [
        (".service", "unit name cannot start in \".\""),
        (long.as_str(), "unit name exceeds maximum length (255)"),
        ("nul.service", "line 2: control character U+0000"),
        ("ansi.service", "line 2: control character U+001B"),
    ] {
        let out = fleetctl(&etcd, dir.path(), &["submit", "ok.service", bad]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bad}: accepted");
        assert!(err.contains(expect), "{bad}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{bad}: one line: {err}");
        assert!(
            !err.contains('\x1b'),
            "{bad}: the escape reached the terminal"
        );
    }
    // A name with an escape in it is refused with the escape shown, not obeyed.
    let out = fleetctl(&etcd, dir.path(), &["start", "x\x1b[2J.service"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(
        err,
        "Error creating units: invalid character '\\u{1b}' in unit name\n"
    );
    let out = fleetctl(&etcd, dir.path(), &["list-unit-files", "--no-legend"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "",
        "a refused command wrote units"
    );
    // The longest name systemd takes is accepted.
    let longest = format!("web@{}.service", "b".repeat(255 - "web@.service".len()));
    let out = fleetctl(&etcd, dir.path(), &["submit", &longest]);
    assert!(out.status.success(), "{out:?}");
}

/// Machine metadata holding an escape (written to etcd by someone other than fleetd,
/// which refuses it) is a corrupt record: list-machines names it on stderr, shows the
/// other machines, exits 5, and prints no escape.
#[test]
fn machine_metadata_with_an_escape_is_skipped_and_named() {
    let etcd = EtcdServer::start().expect("start etcd (apt-get install etcd-server)");
    let dir = tempfile::tempdir().unwrap();
    let url = etcd.client_url();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async move {
            let mut raw = etcd_client::Client::connect([url], None).await.unwrap();
            for (id, region) in [("m1", "eu"), ("m2", "eu\x1b[2Jx")] {
                let v = format!(
                    r#"{{"id":"{id}","public_ip":"10.0.0.1","metadata":{{"region":"{}"}}}}"#,
                    region.replace('\x1b', "\\u001b")
                );
                raw.put(format!("/_coreos.com/fleet/machine/{id}"), v, None)
                    .await
                    .unwrap();
            }
        });
    let out = fleetctl(
        &etcd,
        dir.path(),
        &["list-machines", "--no-legend", "--full"],
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert_eq!(stdout, "m1\t10.0.0.1\tregion=eu\n");
    assert_eq!(
        stderr,
        "WARNING: skipped corrupt registry value at /_coreos.com/fleet/machine/m2: metadata \"region\" holds control character U+001B\n"
    );
}
