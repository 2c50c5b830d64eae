//! The fleetd binary's own failures, as an operator sees them on stderr.

use std::process::Command;

/// Without a system bus fleetd cannot manage units: it exits non-zero and says why in
/// exactly one line (it used to log the error and print it again).
#[test]
fn no_system_bus_is_one_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let bus = dir.path().join("no-such-bus");
    let units = dir.path().join("units");
    let conf = dir.path().join("fleet.conf");
    std::fs::write(&conf, "etcd_servers=http://127.0.0.1:1\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fleetd"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env(
            "DBUS_SYSTEM_BUS_ADDRESS",
            format!("unix:path={}", bus.display()),
        )
        .arg(format!("--config={}", conf.display()))
        .arg(format!("--units_directory={}", units.display()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "fleetd succeeded: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "want one line, got:\n{stderr}");
    assert_eq!(
        lines[0].matches("cannot connect to systemd").count(),
        1,
        "unexpected error: {stderr}"
    );
}

/// fleetd registers only an IP as its `public_ip` (what `fleetctl ssh` connects to): any
/// other value, from the command line, the environment or fleet.conf, is refused in one
/// line before anything is written.
#[test]
fn a_public_ip_that_is_not_an_ip_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("fleet.conf");
    std::fs::write(&conf, "etcd_servers=http://127.0.0.1:1\n").unwrap();
    let bad = "-oProxyCommand=touch pwned";
    let run = |flag: Option<&str>, env: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fleetd"));
        cmd.env_clear()
            .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent")
            .arg(format!("--config={}", conf.display()));
        if let Some(f) = flag {
            cmd.arg(f);
        }
        if let Some(v) = env {
            cmd.env("FLEET_PUBLIC_IP", v);
        }
        cmd.output().unwrap()
    };
    for out in [
        run(Some(&format!("--public_ip={bad}")), None),
        run(Some("--public_ip=host.example"), None),
        run(None, Some(bad)),
    ] {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("public_ip"), "{stderr}");
        assert!(stderr.contains("expected an IP address"), "{stderr}");
    }
    // Empty means "detect it", as in fleet: fleetd goes on (and stops at the bus).
    let out = run(Some("--public_ip="), None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot connect to systemd"), "{stderr}");
}
