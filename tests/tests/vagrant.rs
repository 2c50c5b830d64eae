//! The Vagrant cluster in `vagrant/`: `vagrant validate` accepts the Vagrantfile in both
//! provisioning modes, and the cloud-config is YAML cloud-init can read.
//!
//! Needs Debian's `vagrant` package (scripts/bootstrap.sh installs it) and no provider:
//! validation ignores provider settings (`--ignore-provider`), so it needs no VirtualBox,
//! libvirt or docker, and no VM is ever booted here (see vagrant/README.md).

use std::path::{Path, PathBuf};
use std::process::Command;

fn vagrant_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../vagrant")
}

/// Fails the test with the fix when a program the test needs is missing.
fn require(program: &str) {
    let ok = Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "`{program}` is not installed: run scripts/bootstrap.sh (apt-get install -y vagrant)"
    );
}

fn validate(provision: &str) -> (bool, String) {
    validate_in(&vagrant_dir(), provision)
}

fn validate_in(dir: &Path, provision: &str) -> (bool, String) {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new("vagrant")
        .args(["validate", "--ignore-provider"])
        .current_dir(dir)
        .env("FLEET_PROVISION", provision)
        .env("VAGRANT_HOME", home.path())
        .env("VAGRANT_CHECKPOINT_DISABLE", "1")
        .output()
        .expect("run vagrant validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn vagrantfile_validates_in_both_provisioning_modes() {
    require("vagrant");
    for mode in ["shell", "cloud-config"] {
        let (ok, text) = validate(mode);
        assert!(ok, "vagrant validate ({mode}) failed:\n{text}");
        assert!(text.contains("validated successfully"), "{text}");
    }
    let (ok, text) = validate("bogus");
    assert!(!ok, "a bad FLEET_PROVISION must be refused");
    assert!(text.contains("FLEET_PROVISION must be"), "{text}");
}

/// Ignoring the provider must not make validation pass everything: a Vagrantfile with a
/// Ruby syntax error, or with an option Vagrant does not know, is still refused.
#[test]
fn a_broken_vagrantfile_is_refused_without_a_provider() {
    require("vagrant");
    let original = std::fs::read_to_string(vagrant_dir().join("Vagrantfile")).unwrap();
    let cases = [
        ("syntax", format!("{original}\nend end\n"), "syntax error"),
        (
            "unknown option",
            original.replacen(
                "Vagrant.configure(\"2\") do |config|",
                "Vagrant.configure(\"2\") do |config|\n  config.vm.no_such_option = 1",
                1,
            ),
            "no_such_option",
        ),
    ];
    for (what, text, expect) in cases {
        assert_ne!(text, original, "{what}: the breakage was not applied");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Vagrantfile"), text).unwrap();
        for file in ["user-data", "meta-data", "provision.sh"] {
            std::fs::copy(vagrant_dir().join(file), dir.path().join(file)).unwrap();
        }
        let (ok, out) = validate_in(dir.path(), "shell");
        assert!(!ok, "{what}: a broken Vagrantfile validated:\n{out}");
        assert!(out.contains(expect), "{what}: {out}");
    }
}

#[test]
fn user_data_is_cloud_config_yaml() {
    let path = vagrant_dir().join("user-data");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.starts_with("#cloud-config\n"),
        "cloud-init needs the header"
    );
    for key in [
        "write_files:",
        "/etc/fleet/fleet.conf",
        "fleet.service",
        "$public_ipv4",
    ] {
        assert!(text.contains(key), "user-data lacks {key}");
    }
    // Ruby comes with vagrant; its YAML parser is what Vagrant users have at hand.
    require("ruby");
    let out = Command::new("ruby")
        .args([
            "-ryaml",
            "-e",
            "d = YAML.safe_load(File.read(ARGV[0])); \
             raise 'no write_files' unless d['write_files'].size == 3; \
             raise 'no runcmd' unless d['runcmd'].any?",
        ])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn provision_script_is_valid_bash_and_refuses_bad_arguments() {
    let script = vagrant_dir().join("provision.sh");
    let syntax = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(syntax.status.success(), "{:?}", syntax);
    let out = Command::new("bash")
        .arg(&script)
        .arg("only-one")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage:"));
}
