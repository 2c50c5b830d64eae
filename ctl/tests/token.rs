//! `fleetctl token`: create prints the token once, list shows ids (never tokens),
//! revoke removes it; bad input is one line, a non-zero exit, and nothing written.

use std::time::Duration;

use assert_cmd::Command;
use fleet_testkit::EtcdServer;

fn fleetctl(etcd: &EtcdServer, args: &[&str]) -> (bool, String, String) {
    let out = Command::cargo_bin("fleetctl")
        .expect("fleetctl binary")
        .env("FLEETCTL_DRIVER", "etcd")
        .env("FLEETCTL_ENDPOINT", etcd.client_url())
        .env_remove("FLEETCTL_ETCD_KEY_PREFIX")
        .timeout(Duration::from_secs(60))
        .args(args)
        .output()
        .expect("run fleetctl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn tokens_are_created_listed_and_revoked() {
    let etcd = EtcdServer::start().expect("start etcd (apt-get install etcd-server)");
    for (args, expect) in [
        (vec!["--role", "root"], "invalid --role \"root\""),
        (
            vec!["--role", "viewer", "--ttl", "soon"],
            "invalid --ttl \"soon\"",
        ),
        (vec!["--role", "viewer", "--ttl", "0s"], "invalid --ttl"),
    ] {
        let mut full = vec!["token", "create"];
        full.extend(args);
        let (ok, out, err) = fleetctl(&etcd, &full);
        assert!(!ok, "{full:?} accepted");
        assert_eq!(out, "", "{full:?}");
        assert_eq!(err.trim().lines().count(), 1, "{full:?}: {err}");
        assert!(err.contains(expect), "{full:?}: {err}");
    }
    // Tokens live in etcd: a fleet API endpoint is refused, not misused as etcd.
    let (ok, _, err) = fleetctl(
        &etcd,
        &[
            "--driver=api",
            "--endpoint=http://127.0.0.1:49153",
            "token",
            "list",
        ],
    );
    assert!(!ok && err.contains("fleetctl token talks to etcd"), "{err}");
    let (ok, out, _) = fleetctl(&etcd, &["token", "list"]);
    assert!(ok);
    assert_eq!(
        out.lines().count(),
        1,
        "nothing written by refused creates: {out}"
    );

    let (ok, token, err) = fleetctl(
        &etcd,
        &[
            "token", "create", "--role", "operator", "--ttl", "8h", "--user", "alice",
        ],
    );
    assert!(ok, "{err}");
    let token = token.trim();
    assert!(token.starts_with("fleet_") && token.len() > 40, "{token}");
    let (_, list, _) = fleetctl(&etcd, &["token", "list"]);
    let row = list.lines().nth(1).expect("one token listed");
    assert!(row.contains("alice") && row.contains("operator"), "{row}");
    assert!(!list.contains(token), "a listing shows the token itself");
    let id = row.split('\t').next().unwrap();

    let (ok, _, err) = fleetctl(&etcd, &["token", "revoke", "0123456789ab"]);
    assert!(!ok && err.contains("no token 0123456789ab"), "{err}");
    let (ok, _, err) = fleetctl(&etcd, &["token", "revoke", id]);
    assert!(ok, "{err}");
    let (_, list, _) = fleetctl(&etcd, &["token", "list"]);
    assert_eq!(
        list.lines().count(),
        1,
        "revoked token still listed: {list}"
    );
}
