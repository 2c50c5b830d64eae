//! fleetctl end to end against a real etcd (Debian's etcd-server, started per test on
//! free ports): what a user types, what they see, and what ends up in the registry.

use std::process::Output;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use fleet_testkit::EtcdServer;

const HELLO: &str = "[Unit]\nDescription=Hello World\n\n[Service]\nExecStart=/bin/bash -c \"while true; do echo \\\"Hello, world\\\"; sleep 1; done\"\n";
const HELLO_TEMPLATE: &str = "[Unit]\nDescription=Hello %i\n\n[Service]\nExecStart=/bin/bash -c \"while true; do echo Hello %i; sleep 1; done\"\n";

/// One etcd, one working directory of unit files, and fleetctl pointed at both.
struct Cluster {
    etcd: EtcdServer,
    dir: tempfile::TempDir,
}

impl Cluster {
    fn new() -> Cluster {
        let etcd = EtcdServer::start().expect("start etcd (apt-get install etcd-server)");
        Cluster {
            etcd,
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.dir.path().join(name), text).expect("write unit file");
    }

    fn cmd(&self) -> Command {
        let mut cmd = Command::cargo_bin("fleetctl").expect("fleetctl binary");
        cmd.current_dir(self.dir.path())
            .env("FLEETCTL_DRIVER", "etcd")
            .env("FLEETCTL_ENDPOINT", self.etcd.client_url())
            .env_remove("FLEETCTL_ETCD_KEY_PREFIX")
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

    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "fleetctl {args:?} should fail; stdout: {}",
            text(&out.stdout)
        );
        text(&out.stderr)
    }

    /// `list-unit-files` as rows of whitespace-separated cells, without the legend.
    fn unit_files(&self, fields: &str) -> Vec<Vec<String>> {
        rows(&self.ok(&[
            "list-unit-files",
            "--no-legend",
            "--full",
            "--fields",
            fields,
        ]))
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn rows(s: &str) -> Vec<Vec<String>> {
    s.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

#[test]
fn version_and_help_need_no_cluster() {
    let mut cmd = Command::cargo_bin("fleetctl").unwrap();
    let out = cmd.arg("version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout).trim(),
        format!("fleetctl version {}", env!("CARGO_PKG_VERSION"))
    );
    let out = Command::cargo_bin("fleetctl")
        .unwrap()
        .arg("-v")
        .output()
        .unwrap();
    assert_eq!(
        text(&out.stdout).trim(),
        format!("fleetctl version {}", env!("CARGO_PKG_VERSION"))
    );
    let out = Command::cargo_bin("fleetctl")
        .unwrap()
        .arg("help")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(text(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
    for args in [&["--help"][..], &["-h"], &[]] {
        let out = Command::cargo_bin("fleetctl")
            .unwrap()
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(!out.stdout.is_empty(), "{args:?}");
    }
    let out = Command::cargo_bin("fleetctl")
        .unwrap()
        .arg("no-such-command")
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn submit_list_and_cat() {
    let c = Cluster::new();
    c.write("hello.service", HELLO);
    assert_eq!(
        c.ok(&["submit", "hello.service"]).trim(),
        "Unit hello.service inactive"
    );
    // fleet's documented hash for this unit is e55c0ae; tabs exactly as fleet's tabwriter.
    let out = c.ok(&["list-unit-files"]);
    assert_eq!(
        out,
        "UNIT\t\tHASH\tDSTATE\t\tSTATE\t\tTARGET\nhello.service\te55c0ae\tinactive\tinactive\t-\n"
    );
    assert_eq!(c.ok(&["cat", "hello"]), HELLO);
    // Resubmitting the same content is a no-op.
    let out = c.run(&["submit", "hello.service"]);
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), "");
    // `desc` and `global` fields.
    assert_eq!(
        c.unit_files("unit,global"),
        vec![vec!["hello.service", "false"]]
    );
    let out = c.ok(&["list-unit-files", "--no-legend", "--fields", "desc"]);
    assert_eq!(out.trim(), "Hello World");
}

#[test]
fn differing_content_keeps_the_registry_copy_unless_replace() {
    let c = Cluster::new();
    c.write("hello.service", HELLO);
    c.ok(&["submit", "hello.service"]);
    let changed = HELLO.replace("sleep 1", "sleep 2");
    c.write("hello.service", &changed);
    let out = c.run(&["submit", "hello.service"]);
    assert!(out.status.success());
    assert!(
        text(&out.stderr).contains(
            "WARNING: Unit hello.service in registry differs from local unit file hello.service. Add --replace to override."
        ),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(c.ok(&["cat", "hello.service"]), HELLO);
    assert_eq!(
        c.ok(&["submit", "--replace", "hello.service"]).trim(),
        "Unit hello.service inactive"
    );
    assert_eq!(c.ok(&["cat", "hello.service"]), changed);
    // Replacing with identical content says so.
    assert!(
        c.ok(&["submit", "--replace", "hello.service"])
            .contains("Found same Unit(hello.service) in Registry, nothing to do")
    );
    // A launched unit cannot be replaced by `submit` (fleet's allowed states).
    c.ok(&["start", "--no-block", "hello.service"]);
    c.write("hello.service", HELLO);
    let out = c.run(&["submit", "--replace", "hello.service"]);
    assert!(text(&out.stderr).contains("Warning: can not replace Unit(hello.service) in state 'launched', use the appropriate command"));
    assert_eq!(c.ok(&["cat", "hello.service"]), changed);
}

#[test]
fn instances_come_from_templates() {
    let c = Cluster::new();
    c.write("hello@.service", HELLO_TEMPLATE);
    // The local template file is enough; it is not submitted itself.
    let out = c.ok(&["submit", "hello@1.service", "hello@2"]);
    assert_eq!(
        out,
        "Unit hello@1.service inactive\nUnit hello@2.service inactive\n"
    );
    assert_eq!(c.unit_files("unit").len(), 2);
    assert_eq!(c.ok(&["cat", "hello@1.service"]), HELLO_TEMPLATE);
    // A submitted template wins over the local file, and instances copy it verbatim.
    let other = c.dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    c.ok(&["submit", "hello@.service"]);
    let out = c
        .cmd()
        .current_dir(&other)
        .args(["start", "--no-block", "hello@3.service"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("Triggered unit hello@3.service start"));
    let files = c.unit_files("unit,hash,dstate");
    assert_eq!(files.len(), 4);
    let hash = |n: &str| {
        files
            .iter()
            .find(|r| r[0] == n)
            .map(|r| r[1].clone())
            .unwrap()
    };
    assert_eq!(hash("hello@3.service"), hash("hello@.service"));
    assert!(
        files
            .iter()
            .any(|r| r == &["hello@3.service", &hash("hello@.service"), "launched"])
    );
    // Templates cannot be started, and nothing is written trying.
    let err = c.fails(&["start", "--no-block", "hello@.service"]);
    assert!(
        err.contains("cannot activate template \"hello@.service\""),
        "{err}"
    );
    // An instance whose template exists nowhere.
    let err = c.fails(&["submit", "nope@1.service"]);
    assert!(
        err.contains("unable to find template Unit(nope@.service) in Registry or on filesystem"),
        "{err}"
    );
}

#[test]
fn bad_input_changes_nothing() {
    let c = Cluster::new();
    c.write("good.service", HELLO);
    c.write(
        "bad.service",
        "[Unit]\nDescription=x\n[Service] garbage\nExecStart=/bin/true\n",
    );
    c.write(
        "combo.service",
        "[Service]\nExecStart=/bin/true\n\n[X-Fleet]\nGlobal=true\nMachineOf=db.service\n",
    );
    c.write(
        "huge.service",
        &format!(
            "[Service]\nExecStart=/bin/true\n{}",
            "Environment=A=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n"
                .repeat(20_000)
        ),
    );
    let cases: &[(&[&str], &str)] = &[
        (
            &["submit", "good.service", "he%llo.service"],
            "invalid character '%' in unit name",
        ),
        (&["submit", "good.service", "bad.service"], "bad.service"),
        (
            &["submit", "good.service", "combo.service"],
            "Global cannot be used with Peers",
        ),
        (&["submit", "good.service", "huge.service"], "too large"),
        (
            &["submit", "good.service", "missing.service"],
            "unable to find Unit(missing.service) in Registry or on filesystem",
        ),
        (
            &["cat", "missing.service"],
            "Unit missing.service not found",
        ),
        (&["cat"], "One unit file must be provided"),
        (
            &["list-unit-files", "--fields", ""],
            "Must define output format",
        ),
        (
            &["list-units", "--fields", "unit,bogus"],
            "Invalid key in output format: \"bogus\"",
        ),
        (
            &["destroy", "missing.service"],
            "Units not found in registry",
        ),
    ];
    for (args, want) in cases {
        let err = c.fails(args);
        assert!(
            err.contains(want),
            "fleetctl {args:?}: expected {want:?} in stderr, got: {err}"
        );
        assert_eq!(
            err.trim().lines().count(),
            1,
            "one line of error for {args:?}: {err}"
        );
    }
    assert!(
        c.unit_files("unit").is_empty(),
        "nothing may be written by failing commands"
    );
}

#[test]
fn desired_state_lifecycle() {
    let c = Cluster::new();
    c.write("hello.service", HELLO);
    c.write(
        "goodbye.service",
        HELLO.replace("Hello", "Goodbye").as_str(),
    );
    c.ok(&["submit", "hello.service"]);
    // Stopping a unit that was never loaded is an error and changes nothing.
    let err = c.fails(&["stop", "hello.service"]);
    assert!(
        err.contains("Unable to stop unit hello.service in state inactive"),
        "{err}"
    );
    let out = c.ok(&["load", "--no-block", "hello.service", "goodbye.service"]);
    assert!(out.contains("Unit goodbye.service inactive"));
    assert!(
        out.contains("Triggered unit hello.service load")
            && out.contains("Triggered unit goodbye.service load")
    );
    assert_eq!(
        c.unit_files("unit,dstate,state"),
        vec![
            vec!["goodbye.service", "loaded", "inactive"],
            vec!["hello.service", "loaded", "inactive"]
        ]
    );
    // Old single-dash flags still work.
    c.ok(&["start", "-no-block=true", "hello.service"]);
    assert_eq!(
        c.unit_files("unit,dstate")[1],
        vec!["hello.service", "launched"]
    );
    // Asked to run but on no machine yet (no engine here): as in fleet, stop refuses
    // by current state, exits 1, and changes nothing.
    let out = c.run(&["stop", "--no-block", "hello.service"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "Unable to stop unit hello.service in state inactive\n"
    );
    assert_eq!(text(&out.stdout), "");
    assert_eq!(
        c.unit_files("unit,dstate")[1],
        vec!["hello.service", "launched"]
    );
    c.ok(&["unload", "--no-block", "hello.service", "goodbye.service"]);
    assert_eq!(
        c.unit_files("dstate"),
        vec![vec!["inactive"], vec!["inactive"]]
    );
    assert_eq!(
        c.ok(&["destroy", "hello.service", "goodbye"]),
        "Destroyed hello.service\nDestroyed goodbye.service\n"
    );
    assert!(c.unit_files("unit").is_empty());
}

#[test]
fn blocking_start_gives_up_after_its_attempts_without_an_engine() {
    let c = Cluster::new();
    c.write("hello.service", HELLO);
    let started = Instant::now();
    let err = c.fails(&["start", "--block-attempts=1", "hello.service"]);
    assert!(
        err.contains("timed out waiting for unit hello.service to report state launched"),
        "{err}"
    );
    // The final line names the unit and the state waited for, not just "timed out".
    assert_eq!(
        err.lines().last(),
        Some(
            "Error waiting for unit states, exit status: timed out after 2s waiting for [hello.service] to be launched"
        ),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    // The desired state was recorded even though nothing ran it.
    assert_eq!(
        c.unit_files("unit,dstate"),
        vec![vec!["hello.service", "launched"]]
    );
}

#[test]
fn unreachable_etcd_is_one_clear_line() {
    let mut c = Cluster::new();
    c.etcd.kill();
    let started = Instant::now();
    for args in [
        &["list-units"][..],
        &["list-machines"],
        &["submit", "x.service"],
    ] {
        let out = c
            .cmd()
            .args(["--request-timeout", "1"])
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        // One readable line: what failed, where, and what to try; no transport dumps.
        let err = text(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(&c.etcd.client_url()), "{err}");
        assert!(err.contains("FLEETCTL_ENDPOINT"), "{err}");
        for noise in ["grpc", "tonic", "os error", "Os {"] {
            assert!(!err.contains(noise), "{args:?}: {err}");
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn key_prefix_isolates_clusters() {
    let c = Cluster::new();
    c.write("hello.service", HELLO);
    c.ok(&["--etcd-key-prefix", "/other/", "submit", "hello.service"]);
    assert!(c.unit_files("unit").is_empty());
    let out = c.ok(&[
        "--etcd-key-prefix",
        "/other/",
        "list-unit-files",
        "--no-legend",
        "--fields",
        "unit",
    ]);
    assert_eq!(out.trim(), "hello.service");
}

/// fleetctl with no cluster settings at all (help and completion scripts need none).
fn bare() -> Command {
    let mut cmd = Command::cargo_bin("fleetctl").unwrap();
    cmd.env_remove("FLEETCTL_ENDPOINT")
        .env_remove("FLEETCTL_DRIVER")
        .timeout(Duration::from_secs(30));
    cmd
}

fn bare_ok(args: &[&str]) -> String {
    let out = bare().args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn help_describes_each_command_apart_from_global_flags() {
    let commands = [
        "submit",
        "load",
        "start",
        "stop",
        "unload",
        "destroy",
        "cat",
        "list-unit-files",
        "list-units",
        "list-machines",
        "status",
        "restart",
        "journal",
        "ssh",
        "completion",
    ];
    for command in commands {
        let long = bare_ok(&[command, "--help"]);
        // `help COMMAND` is `COMMAND --help`.
        assert_eq!(bare_ok(&["help", command]), long, "{command}");
        assert!(
            long.starts_with(&format!("NAME:\n\tfleetctl {command} - ")),
            "{long}"
        );
        assert!(long.contains("DESCRIPTION:\n"), "{command}: {long}");
        assert!(long.contains("EXAMPLES:\n"), "{command}: {long}");
        // The command's own flags come before the global ones, under their own heading.
        let global = long.find("\nGlobal options:\n").expect("global heading");
        let endpoint = long.find("--endpoint <ENDPOINT>").expect("--endpoint");
        assert!(global < endpoint, "{command}");
        assert!(long[..global].contains("-h, --help"), "{command}");
    }
    let submit = bare_ok(&["submit", "--help"]);
    let global = submit.find("\nGlobal options:\n").unwrap();
    assert!(submit.find("--replace").unwrap() < global);
    assert!(submit.contains("Idempotent"));
    // `[UNIT]...` is described.
    assert!(
        submit.contains("[UNIT]...  Unit files to submit"),
        "{submit}"
    );
    assert!(bare_ok(&["stop", "--help"]).contains("[UNIT]...  Names of units in the cluster"));
    // Valid fields with their defaults, including `reason`.
    let files = bare_ok(&["list-unit-files", "--help"]);
    assert!(files.contains(
        "Valid fields: unit,hash,dstate,state,target,desc,global,tmachine,reason. Default: unit,hash,dstate,state,target"
    ), "{files}");
    assert!(files.contains("  reason    why a unit that should run is not placed"));
    assert!(bare_ok(&["list-units", "--help"]).contains(
        "Valid fields: unit,machine,active,sub,load,hash. Default: unit,machine,active,sub"
    ));
    assert!(
        bare_ok(&["list-machines", "--help"])
            .contains("Valid fields: machine,ip,metadata,drained. Default: machine,ip,metadata")
    );
    // ssh/tunnel tips.
    for command in ["ssh", "status", "journal"] {
        let help = bare_ok(&[command, "--help"]);
        assert!(
            help.contains("alias fleetctl='fleetctl --tunnel 10.10.10.10'"),
            "{command}"
        );
    }
    // `help --help` is help about `help`.
    assert!(bare_ok(&["help", "--help"]).contains("Usage: fleetctl help"));
}

#[test]
fn repeated_global_flags_take_the_last() {
    let c = Cluster::new();
    c.write("hello.service", HELLO);
    let dead = "http://127.0.0.1:1";
    let live = c.etcd.client_url();
    c.ok(&[
        "--endpoint",
        dead,
        "--endpoint",
        &live,
        "submit",
        "hello.service",
    ]);
    c.ok(&["--driver", "API", "--driver", "etcd", "list-units"]);
    c.fails(&["--endpoint", &live, "--endpoint", dead, "list-units"]);
    // Command flags too.
    assert_eq!(
        c.ok(&[
            "list-unit-files",
            "--fields",
            "hash",
            "--fields",
            "unit",
            "--no-legend"
        ]),
        "hello.service\n"
    );
}

#[test]
fn completion_offers_units_from_the_cluster() {
    let c = Cluster::new();
    c.write("hello.service", HELLO);
    c.write("goodbye.service", HELLO);
    c.ok(&["submit", "hello.service", "goodbye.service"]);
    let script = c.ok(&["completion", "bash"]);
    std::fs::write(c.dir.path().join("complete.bash"), &script).unwrap();
    // What bash offers for `fleetctl stop he<Tab>` and `fleetctl list-u<Tab>`.
    let complete = |words: &str| {
        let out = std::process::Command::new("bash")
            .current_dir(c.dir.path())
            .env("FLEETCTL_DRIVER", "etcd")
            .env("FLEETCTL_ENDPOINT", c.etcd.client_url())
            .arg("-c")
            .arg(format!(
                "source ./complete.bash; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}}-1)); \
                 _clap_complete_fleetctl fleetctl \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; \
                 printf '%s\\n' \"${{COMPREPLY[@]}}\""
            ))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
            .lines()
            .map(|l| l.trim().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(complete("fleetctl stop he"), ["hello.service"]);
    assert_eq!(complete("fleetctl destroy go"), ["goodbye.service"]);
    assert_eq!(
        complete("fleetctl list-u"),
        ["list-unit-files", "list-units"]
    );
    for shell in ["zsh", "fish"] {
        let script = c.ok(&["completion", shell]);
        assert!(
            script.contains(&format!("COMPLETE=\"{shell}\""))
                || script.contains(&format!("COMPLETE={shell}")),
            "{script}"
        );
    }
    assert!(
        c.fails(&["completion", "tcsh"])
            .contains("invalid value 'tcsh'")
    );
}

#[test]
fn json_output_is_one_object_per_row() {
    let c = Cluster::new();
    c.write("hello.service", HELLO);
    c.ok(&["submit", "hello.service"]);
    let out = c.ok(&["list-unit-files", "-o", "json"]);
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(rows.len(), 1);
    let hash = rows[0]["hash"].as_str().unwrap().to_string();
    assert_eq!(hash.len(), 40);
    assert_eq!(
        rows[0],
        serde_json::json!({
            "unit": "hello.service",
            "hash": hash,
            "desired_state": "inactive",
            "current_state": "inactive",
            "target_machine_id": null,
            "target_machine_ip": null,
            "global": false,
            "description": "Hello World",
            "reason": null,
        })
    );
    // Nothing loaded, no machines: no rows (no legend either).
    assert_eq!(c.ok(&["list-units", "--output", "json"]), "");
    assert_eq!(c.ok(&["list-machines", "--output=json"]), "");
    assert!(
        c.fails(&["list-units", "-o", "yaml"])
            .contains("invalid value 'yaml'")
    );
}

/// `--debug` with the etcd driver shows fleetctl's own requests as with the API driver:
/// operation, endpoint, result and duration, and no colour into a pipe.
#[test]
fn debug_shows_etcd_driver_requests() {
    let c = Cluster::new();
    c.write("hello.service", HELLO);
    let out = c.run(&["--debug", "submit", "hello.service"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    let endpoint = c.etcd.client_url();
    for op in ["GetUnits", "CreateUnits"] {
        assert!(
            err.contains(&format!("etcd {op} {endpoint} ok in ")),
            "{op}: {err}"
        );
    }
    assert!(!err.contains('\x1b'), "{err}");
    // Without --debug, nothing of it.
    let out = c.run(&["list-units"]);
    assert!(!text(&out.stderr).contains("etcd Snapshot"));
}

/// `start` of a unit not yet submitted writes it with its `launched` target in one
/// request (no second target write); a unit already submitted gets its target written.
#[test]
fn start_of_a_new_unit_writes_its_target_once() {
    let c = Cluster::new();
    c.write("hello.service", HELLO);
    c.write(
        "goodbye.service",
        HELLO.replace("Hello", "Goodbye").as_str(),
    );
    let out = c.run(&["--debug", "start", "--no-block", "hello.service"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "Unit hello.service inactive\nTriggered unit hello.service start\n"
    );
    let err = text(&out.stderr);
    assert!(err.contains("etcd CreateUnits "), "{err}");
    assert!(!err.contains("etcd SetTargets "), "{err}");
    assert_eq!(
        c.unit_files("unit,dstate"),
        vec![vec!["hello.service", "launched"]]
    );

    c.ok(&["submit", "goodbye.service"]);
    let out = c.run(&["--debug", "start", "--no-block", "goodbye.service"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "Triggered unit goodbye.service start\n");
    assert!(text(&out.stderr).contains("etcd SetTargets "));
    assert_eq!(
        c.unit_files("unit,dstate"),
        vec![
            vec!["goodbye.service", "launched"],
            vec!["hello.service", "launched"]
        ]
    );
}
