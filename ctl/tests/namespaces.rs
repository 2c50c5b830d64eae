//! fleetctl with namespaces against a real etcd (`--driver=etcd`): the same unit names
//! in several namespaces, `--namespace`/`FLEETCTL_NAMESPACE`, `--all-namespaces`, and
//! the namespace and user commands, with their refusals.

use std::process::Output;
use std::time::Duration;

use assert_cmd::Command;
use fleet_testkit::EtcdServer;

const WEB: &str = "[Unit]\nDescription=web %i\n\n[Service]\nExecStart=/bin/sleep 1000\n\n[X-Fleet]\nConflicts=web@*\n";

struct Cluster {
    etcd: EtcdServer,
    dir: tempfile::TempDir,
}

impl Cluster {
    fn new() -> Cluster {
        let etcd = EtcdServer::start().expect("start etcd");
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("web@.service"), WEB).unwrap();
        Cluster { etcd, dir }
    }

    fn cmd(&self) -> Command {
        let mut cmd = Command::cargo_bin("fleetctl").expect("fleetctl binary");
        cmd.current_dir(self.dir.path())
            .env("FLEETCTL_DRIVER", "etcd")
            .env("FLEETCTL_ENDPOINT", self.etcd.client_url())
            .env_remove("FLEETCTL_ETCD_KEY_PREFIX")
            .env_remove("FLEETCTL_NAMESPACE")
            .timeout(Duration::from_secs(60));
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run fleetctl")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "fleetctl {args:?} failed: {}",
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// Fails with exactly one line on stderr, which is returned.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "fleetctl {args:?} should fail; stdout: {}",
            text(&out.stdout)
        );
        let err = text(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
        err
    }

    fn units(&self, ns: &str) -> Vec<String> {
        self.ok(&[
            "--namespace",
            ns,
            "list-unit-files",
            "--no-legend",
            "--fields",
            "unit",
        ])
        .lines()
        .map(|l| l.trim().to_string())
        .collect()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn the_same_names_in_several_namespaces() {
    let c = Cluster::new();
    c.ok(&["namespace", "create", "a"]);
    c.ok(&["namespace", "create", "b", "--machines", "team=b"]);
    assert_eq!(
        c.ok(&["namespace", "list"]),
        "NAMESPACE\tMACHINES\ndefault\t-\na\t-\nb\tteam=b\n"
    );
    let webs = ["web@1.service", "web@2.service", "web@3.service"];
    for ns in ["a", "b"] {
        let mut args = vec!["--namespace", ns, "submit"];
        args.extend(webs);
        c.ok(&args);
    }
    // FLEETCTL_NAMESPACE works as --namespace does; the default namespace is fleet's.
    let out = c
        .cmd()
        .env("FLEETCTL_NAMESPACE", "a")
        .args(["list-unit-files", "--no-legend", "--fields", "unit"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout),
        "web@1.service\nweb@2.service\nweb@3.service\n"
    );
    c.ok(&["submit", "web@1.service"]);
    assert_eq!(c.units("a"), webs);
    assert_eq!(c.units("b"), webs);
    assert_eq!(c.units("default"), ["web@1.service"]);

    // --all-namespaces: a NAMESPACE column, names as each namespace knows them.
    let all = c.ok(&[
        "list-unit-files",
        "--all-namespaces",
        "--fields",
        "unit,dstate",
    ]);
    let rows: Vec<Vec<&str>> = all
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["NAMESPACE", "UNIT", "DSTATE"]);
    assert_eq!(rows.len(), 8, "{all}");
    assert!(
        rows.contains(&vec!["default", "web@1.service", "inactive"]),
        "{all}"
    );
    assert!(
        rows.contains(&vec!["a", "web@3.service", "inactive"]),
        "{all}"
    );
    assert!(
        rows.contains(&vec!["b", "web@2.service", "inactive"]),
        "{all}"
    );

    // Destroying in one namespace leaves the others' units of the same name.
    c.ok(&["--namespace", "a", "destroy", "web@1.service"]);
    assert_eq!(c.units("a"), ["web@2.service", "web@3.service"]);
    assert_eq!(c.units("b"), webs);
    assert_eq!(c.units("default"), ["web@1.service"]);
    assert!(
        c.ok(&["--namespace", "b", "cat", "web@1.service"])
            .contains("Conflicts=web@*")
    );

    // Refusals: one line each, nothing changed.
    let err = c.fails(&["--namespace", "nosuch", "list-unit-files"]);
    assert!(err.contains("namespace nosuch does not exist"), "{err}");
    let err = c.fails(&["--namespace", "nosuch", "submit", "web@1.service"]);
    assert!(err.contains("namespace nosuch does not exist"), "{err}");
    let err = c.fails(&["namespace", "create", "Bad_Name"]);
    assert!(err.contains("invalid namespace \"Bad_Name\""), "{err}");
    let err = c.fails(&["namespace", "create", "c", "--machines", "team"]);
    assert!(err.contains("invalid selector"), "{err}");
    let err = c.fails(&["namespace", "create", "a"]);
    assert!(err.contains("namespace a already exists"), "{err}");
    let err = c.fails(&["namespace", "set", "nosuch", "--machines", "team=b"]);
    assert!(err.contains("namespace nosuch does not exist"), "{err}");
    let err = c.fails(&["namespace", "set", "a", "--machines", "team"]);
    assert!(err.contains("invalid selector"), "{err}");
    let err = c.fails(&["namespace", "set", "default", "--machines", "team=a"]);
    assert!(err.contains("default"), "{err}");
    // A namespace is bound to other machines, and back to every machine.
    c.ok(&["namespace", "set", "a", "--machines", "team=x"]);
    assert!(
        c.ok(&["namespace", "list"]).contains("\na\tteam=x\n"),
        "{}",
        c.ok(&["namespace", "list"])
    );
    c.ok(&["namespace", "set", "a", "--machines", ""]);
    let err = c.fails(&["namespace", "delete", "b"]);
    assert!(err.contains("namespace b has 3 unit(s)"), "{err}");
    assert_eq!(c.units("b"), webs);

    c.ok(&["namespace", "delete", "b", "--destroy-units"]);
    assert_eq!(
        c.ok(&["namespace", "list"]),
        "NAMESPACE\tMACHINES\ndefault\t-\na\t-\n"
    );
    assert_eq!(c.units("default"), ["web@1.service"]);
    assert_eq!(c.units("a"), ["web@2.service", "web@3.service"]);
}

#[test]
fn users_and_roles_per_namespace() {
    let c = Cluster::new();
    c.ok(&["namespace", "create", "a"]);
    c.ok(&["namespace", "create", "b"]);
    c.ok(&["user", "add", "root", "--superadmin"]);
    c.ok(&["user", "add", "alice"]);
    c.ok(&["user", "grant", "alice", "a", "admin"]);
    c.ok(&["user", "grant", "alice", "b", "viewer"]);
    c.ok(&["user", "grant", "alice", "default", "user"]);
    assert_eq!(
        c.ok(&["user", "list"]),
        "USER\tSUPERADMIN\tROLES\nalice\tfalse\ta=admin,b=viewer,default=user\nroot\ttrue\t-\n"
    );
    c.ok(&["user", "revoke", "alice", "b"]);
    assert!(
        c.ok(&["user", "list"])
            .contains("alice\tfalse\ta=admin,default=user\n")
    );

    let err = c.fails(&["user", "grant", "alice", "a", "owner"]);
    assert!(err.contains("invalid role \"owner\""), "{err}");
    let err = c.fails(&["user", "grant", "bob", "a", "user"]);
    assert!(err.contains("user bob does not exist"), "{err}");
    let err = c.fails(&["user", "grant", "alice", "zz", "user"]);
    assert!(err.contains("namespace zz does not exist"), "{err}");
    let err = c.fails(&["user", "add", "alice"]);
    assert!(err.contains("user alice already exists"), "{err}");
    // A person's token: no --role, their namespace roles apply.
    let token = c.ok(&["token", "create", "--user", "alice", "--ttl", "8h"]);
    assert!(token.starts_with("fleet_"), "{token}");
    let err = c.fails(&["token", "create", "--user", "carol", "--ttl", "8h"]);
    assert!(err.contains("user carol does not exist"), "{err}");
    c.ok(&["user", "remove", "alice"]);
    assert!(!c.ok(&["user", "list"]).contains("alice"));
}

/// `fleetctl --namespace NS ssh` reaches NS's machines only: those bound to it by its
/// selector and those running its units; `default` is as before.
#[test]
fn ssh_goes_to_the_namespace_machines_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let c = Cluster::new();
    c.ok(&["namespace", "create", "a", "--machines", "team=a"]);
    c.ok(&["namespace", "create", "b"]);
    let put = |key: &str, value: &str| {
        c.etcd
            .etcdctl(&[], &["put", &format!("/_coreos.com/fleet/{key}"), value]);
    };
    for (m, ip, meta) in [
        ("m1", "10.0.0.1", r#"{"team":"a"}"#),
        ("m2", "10.0.0.2", r#"{"team":"b"}"#),
        ("m3", "10.0.0.3", "{}"),
    ] {
        put(
            &format!("machine/{m}"),
            &format!(r#"{{"id":"{m}","public_ip":"{ip}","metadata":{meta}}}"#),
        );
    }
    c.ok(&["--namespace", "b", "submit", "web@1.service"]);
    put(
        "schedule/m3/b:web@1.service",
        &format!(r#"{{"hash":"{}","target":"launched"}}"#, "0".repeat(40)),
    );
    let fake = c.dir.path().join("fake-ssh");
    std::fs::write(&fake, "#!/bin/sh\necho \"ssh $*\"\n").unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let ssh = |ns: &str, target: &str| -> Output {
        c.cmd()
            .env("FLEETCTL_SSH_COMMAND", &fake)
            .args(["--namespace", ns, "ssh", target, "true"])
            .output()
            .expect("run fleetctl")
    };
    let reaches = |ns: &str, target: &str, ip: &str| {
        let out = ssh(ns, target);
        assert!(out.status.success(), "{ns} {target}: {}", text(&out.stderr));
        assert!(
            text(&out.stdout).contains(&format!("-- {ip} true")),
            "{}",
            text(&out.stdout)
        );
    };
    let refused = |ns: &str, target: &str| {
        let out = ssh(ns, target);
        assert_eq!(out.status.code(), Some(1), "{ns} {target}");
        assert_eq!(text(&out.stdout), "", "ssh ran: {ns} {target}");
        assert_eq!(
            text(&out.stderr).trim_end(),
            format!(
                "Unable to proceed: machine {target} is not a machine of namespace {ns} (it runs none of its units)"
            )
        );
    };
    reaches("a", "m1", "10.0.0.1");
    refused("a", "m2");
    refused("a", "m3");
    reaches("b", "m3", "10.0.0.3");
    reaches("b", "web@1.service", "10.0.0.3");
    refused("b", "m1");
    reaches("default", "m2", "10.0.0.2");
}
