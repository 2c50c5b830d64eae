//! fleetd under systemd socket activation, as CoreOS deployed it: `fleet.socket` on
//! `/var/run/fleet.sock` and a TCP socket unit with `Service=fleet.service`. fleetd must
//! serve on the sockets systemd passes (LISTEN_FDS) instead of binding its own.

use std::time::Duration;

use fleet_tests::*;

/// The shipped socket units, with the TCP one moved to fleet's functional-test port so
/// the test can tell the activated listener from fleetd's own `api_listen` (49153).
fn socket_units() -> (String, String) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../agent/units");
    let unix =
        std::fs::read_to_string(root.join("fleet.socket")).expect("agent/units/fleet.socket");
    let tcp = std::fs::read_to_string(root.join("fleet-tcp.socket"))
        .expect("agent/units/fleet-tcp.socket");
    (
        unix,
        tcp.replace("ListenStream=49153", "ListenStream=54728"),
    )
}

#[test]
fn fleetd_serves_on_the_sockets_systemd_passes() {
    let config = ClusterConfig::with_machines(&unique_name("sockact"), 1);
    let lab = boot_registered(&config);
    let node = lab.machines()[0].name.clone();
    let ip = lab.machines()[0].ip.to_string();
    let (unix, tcp) = socket_units();
    let script = format!(
        "cat > /etc/systemd/system/fleet.socket <<'UNIT'\n{unix}UNIT\n\
         cat > /etc/systemd/system/fleet-tcp.socket <<'UNIT'\n{tcp}UNIT\n\
         systemctl daemon-reload && systemctl stop fleet.service && \
         systemctl start fleet.socket fleet-tcp.socket && systemctl start fleet.service"
    );
    let (code, _, err) = sh(&lab, &node, &script);
    assert_eq!(code, 0, "{err}");

    // The API answers on the activated TCP socket, and fleetd did not bind its own.
    let dir = UnitDir::new(&[]);
    let api = Fleetctl {
        flags: std::iter::once(format!(
            "--endpoint={}",
            api_endpoint(&lab, &node).replace(&format!(":{}", fleet_lab::API_PORT), ":54728")
        ))
        .chain(admin_flags(&lab))
        .collect(),
        dir: dir.path().to_path_buf(),
    };
    wait_until(
        "the API on the activated socket",
        Duration::from_secs(20),
        || api.run(&["list-machines", "--no-legend"]).0 == 0,
    );
    assert_eq!(api.machines().len(), 1);
    assert_eq!(
        tcp_probe(&lab, &node, &ip, fleet_lab::API_PORT),
        "refused",
        "fleetd bound api_listen despite activation"
    );
    // The activated unix socket is what fleetctl inside the machine uses by default.
    let (code, out, err) = sh(&lab, &node, "/opt/fleet/fleetctl list-machines --no-legend");
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert_eq!(
        systemctl(&lab, &node, "show -p Triggers --value fleet.socket"),
        "fleet.service"
    );
}
