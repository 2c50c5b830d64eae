//! End-to-end: fleet's JSON HTTP API v1 of real fleetds in lab machines, driven with
//! curl as users' scripts do — over the unix socket inside a machine and over TCP
//! from the host — and dynamic metadata placing a waiting unit at once.

use std::time::{Duration, Instant};

use fleet_tests::*;
use serde_json::{Value, json};

const AGENT_TTL: &str = "3s";

/// How curl reaches a fleetd.
#[derive(Clone, Debug)]
enum Via {
    /// `curl --unix-socket /var/run/fleet.sock` inside this machine.
    Unix(String),
    /// `curl http://<ip>:49153` from the host.
    Tcp(String),
    /// `curl http://<ip>:<port>` from the host.
    TcpPort(String, u16),
}

/// One curl call: (HTTP status, body). The body is passed on stdin.
fn curl(lab: &Lab, via: &Via, method: &str, path: &str, body: Option<&Value>) -> (u16, String) {
    let mut args = vec![
        "-sS".to_string(),
        "-X".into(),
        method.into(),
        "-w".into(),
        "\n%{http_code}".into(),
    ];
    if body.is_some() {
        args.extend(["-H".into(), "Content-Type: application/json".into()]);
        args.extend(["--data-binary".into(), "@-".into()]);
    }
    let input = body.map(Value::to_string).unwrap_or_default();
    let (code, out, err) = match via {
        Via::Unix(node) => {
            args.extend(["--unix-socket".into(), "/var/run/fleet.sock".into()]);
            args.extend(["--".into(), format!("http://localhost{path}")]);
            let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
            let script = format!("curl {} <<'BODY'\n{input}\nBODY", quoted.join(" "));
            sh(lab, node, &script)
        }
        Via::Tcp(_) | Via::TcpPort(..) => {
            // A secure lab's API wants the host's admin certificate (mutual TLS).
            let scheme = match lab.security() {
                Some(s) => {
                    args.extend([
                        "--cacert".into(),
                        s.ca.display().to_string(),
                        "--cert".into(),
                        s.admin_cert.display().to_string(),
                        "--key".into(),
                        s.admin_key.display().to_string(),
                    ]);
                    "https"
                }
                None => "http",
            };
            let url = match via {
                Via::TcpPort(ip, port) => format!("{scheme}://{ip}:{port}{path}"),
                _ => format!("{scheme}://{}:{}{path}", via_ip(via), fleet_lab::API_PORT),
            };
            args.extend(["--".into(), url]);
            let mut child = std::process::Command::new("curl")
                .args(&args)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("run curl");
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("curl stdin")
                .write_all(input.as_bytes())
                .expect("write curl stdin");
            let out = child.wait_with_output().expect("curl output");
            (
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).trim().to_string(),
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            )
        }
    };
    assert_eq!(code, 0, "curl {method} {path} via {via:?}: {err}");
    let (body, status) = out.rsplit_once('\n').unwrap_or(("", out.as_str()));
    let status = status
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("curl printed no status: {out:?}"));
    (status, body.to_string())
}

fn via_ip(via: &Via) -> &str {
    match via {
        Via::Tcp(ip) | Via::TcpPort(ip, _) => ip,
        Via::Unix(node) => node,
    }
}

fn json_of(body: &str) -> Value {
    if body.is_empty() {
        return json!({});
    }
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"))
}

/// The API's options for a unit file (what every fleet client sends).
fn options(lines: &[(&str, &str, &str)]) -> Value {
    lines
        .iter()
        .map(|(section, name, value)| json!({"section": section, "name": name, "value": value}))
        .collect()
}

fn sleeper(x_fleet: &[(&str, &str, &str)]) -> Value {
    let mut lines = vec![
        ("Unit", "Description", "sleeps"),
        ("Service", "ExecStart", "/bin/sleep infinity"),
    ];
    lines.extend_from_slice(x_fleet);
    options(&lines)
}

/// The `/fleet/v1/state` rows of `unit`.
fn states(lab: &Lab, via: &Via, unit: &str) -> Vec<Value> {
    let (status, body) = curl(
        lab,
        via,
        "GET",
        &format!("/fleet/v1/state?unitName={unit}"),
        None,
    );
    assert_eq!(status, 200, "{body}");
    json_of(&body)["states"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn config(test: &str, machines: usize) -> ClusterConfig {
    let mut config = ClusterConfig::with_machines(&unique_name(test), machines);
    config.agent_ttl = AGENT_TTL.to_string();
    config.groups[0].packages = vec!["curl".to_string()];
    config
}

/// curl over the unix socket and over TCP: create a unit launched (201), see it
/// active in `/fleet/v1/state`, change it to inactive (204), delete it (204, then 404).
#[test]
fn curl_drives_a_unit_over_the_unix_socket_and_tcp() {
    let lab = boot_registered(&config("httpcurl", 2));
    let node1 = lab.machines()[0].name.clone();
    let ip2 = lab.machines()[1].ip.to_string();
    for (via, unit) in [
        (Via::Unix(node1.clone()), "curl-unix.service"),
        (Via::Tcp(ip2.clone()), "curl-tcp.service"),
    ] {
        let path = format!("/fleet/v1/units/{unit}");
        let (status, body) = curl(
            &lab,
            &via,
            "PUT",
            &path,
            Some(&json!({"desiredState": "launched"})),
        );
        assert_eq!(status, 409, "no options on create: {body}");
        assert_eq!(json_of(&body)["error"]["code"], 409);
        let create = json!({"name": unit, "desiredState": "launched", "options": sleeper(&[])});
        let (status, body) = curl(&lab, &via, "PUT", &path, Some(&create));
        assert_eq!((status, body.as_str()), (201, ""), "create");
        let waited = wait_until(&format!("{unit} active"), Duration::from_secs(30), || {
            states(&lab, &via, unit)
                .first()
                .is_some_and(|s| s["systemdActiveState"] == "active")
        });
        eprintln!("{unit} active in /fleet/v1/state after {waited:?}");
        let row = &states(&lab, &via, unit)[0];
        let node = node_of(&lab, row["machineID"].as_str().unwrap());
        assert_eq!(
            systemctl(&lab, &node, &format!("is-active {unit}")),
            "active"
        );
        let (status, body) = curl(&lab, &via, "GET", &path, None);
        assert_eq!(status, 200, "{body}");
        let u = json_of(&body);
        assert_eq!(
            (&u["desiredState"], &u["currentState"]),
            (&json!("launched"), &json!("launched"))
        );
        assert_eq!(u["machineID"], row["machineID"]);

        let (status, body) = curl(
            &lab,
            &via,
            "PUT",
            &path,
            Some(&json!({"desiredState": "inactive"})),
        );
        assert_eq!((status, body.as_str()), (204, ""), "desired state change");
        wait_until(&format!("{unit} unloaded"), Duration::from_secs(30), || {
            states(&lab, &via, unit).is_empty()
        });
        assert_ne!(
            systemctl(&lab, &node, &format!("is-active {unit}")),
            "active"
        );
        let (_, body) = curl(&lab, &via, "GET", &path, None);
        assert_eq!(json_of(&body)["currentState"], "inactive");

        let (status, _) = curl(&lab, &via, "DELETE", &path, None);
        assert_eq!(status, 204, "delete");
        let (status, body) = curl(&lab, &via, "DELETE", &path, None);
        assert_eq!(
            (status, json_of(&body)["error"]["message"].as_str()),
            (404, Some("unit does not exist"))
        );
        let (status, _) = curl(&lab, &via, "GET", &path, None);
        assert_eq!(status, 404);
    }
    // Both machines as the API lists them: id, primaryIP, the lab's metadata.
    let (status, body) = curl(&lab, &Via::Unix(node1), "GET", "/fleet/v1/machines", None);
    assert_eq!(status, 200);
    let machines = json_of(&body)["machines"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(machines.len(), 2, "{body}");
    assert!(
        machines.iter().any(|m| m["primaryIP"] == ip2.as_str()),
        "{body}"
    );
}

/// A unit waiting for `MachineMetadata=disk=ssd` is placed within a second of a PATCH
/// giving a machine that metadata; the metadata survives that machine's fleetd
/// restart (the unit comes back there); removing it moves the unit off again.
#[test]
fn metadata_patch_places_a_waiting_unit_at_once_and_survives_restart() {
    let lab = boot_registered(&config("httpmeta", 2));
    let target = lab.machines()[1].clone();
    let via = Via::Tcp(lab.machines()[0].ip.to_string());
    let unit = "ssd.service";
    let path = format!("/fleet/v1/units/{unit}");
    let create = json!({
        "desiredState": "launched",
        "options": sleeper(&[("X-Fleet", "MachineMetadata", "disk=ssd")]),
    });
    assert_eq!(curl(&lab, &via, "PUT", &path, Some(&create)).0, 201);
    // The engine has looked at it and found no machine: it waits.
    let unplaced = format!("{}unplaced/{unit}", lab.state().etcd_key_prefix);
    wait_until(
        "the engine to note the unit unplaceable",
        Duration::from_secs(20),
        || {
            let out = etcdctl(&lab)
                .args(["get", "--print-value-only", "--", &unplaced])
                .output()
                .expect("run etcdctl");
            !String::from_utf8_lossy(&out.stdout).trim().is_empty()
        },
    );
    let (_, body) = curl(&lab, &via, "GET", &path, None);
    assert!(json_of(&body).get("machineID").is_none(), "{body}");

    let patch = json!([{"op": "add", "path": format!("/{}/metadata/disk", target.machine_id), "value": {"value": "ssd"}}]);
    let patched = Instant::now();
    let (status, body) = curl(&lab, &via, "PATCH", "/fleet/v1/machines", Some(&patch));
    assert_eq!((status, body.as_str()), (204, ""), "patch");
    let placed_on = || {
        let (_, body) = curl(&lab, &via, "GET", &path, None);
        json_of(&body)["machineID"].as_str().map(str::to_string)
    };
    wait_until(
        "the unit placed on the patched machine",
        Duration::from_secs(5),
        || placed_on().as_deref() == Some(target.machine_id.as_str()),
    );
    let took = patched.elapsed();
    eprintln!("placed {took:?} after the PATCH");
    assert!(took < Duration::from_secs(1), "placed only after {took:?}");
    wait_until("the unit active", Duration::from_secs(30), || {
        systemctl(&lab, &target.name, &format!("is-active {unit}")) == "active"
    });

    // fleetd on that machine restarts (graceful: its units stop, the machine leaves
    // and rejoins); the metadata is still there and the unit runs there again.
    let (code, _, err) = sh(&lab, &target.name, "systemctl restart fleet.service");
    assert_eq!(code, 0, "{err}");
    wait_until(
        "the unit active again after the restart",
        Duration::from_secs(60),
        || systemctl(&lab, &target.name, &format!("is-active {unit}")) == "active",
    );
    let (_, body) = curl(&lab, &via, "GET", "/fleet/v1/machines", None);
    let machines = json_of(&body)["machines"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let m = machines
        .iter()
        .find(|m| m["id"] == target.machine_id.as_str())
        .unwrap_or_else(|| panic!("{} not listed: {body}", target.machine_id));
    assert_eq!(m["metadata"]["disk"], "ssd", "{body}");
    assert_eq!(placed_on().as_deref(), Some(target.machine_id.as_str()));

    // Removing the metadata takes the unit off the machine again.
    let remove = json!([{"op": "remove", "path": format!("/{}/metadata/disk", target.machine_id)}]);
    assert_eq!(
        curl(&lab, &via, "PATCH", "/fleet/v1/machines", Some(&remove)).0,
        204
    );
    wait_until("the unit unscheduled", Duration::from_secs(10), || {
        placed_on().is_none()
    });
    wait_until("the unit stopped", Duration::from_secs(30), || {
        systemctl(&lab, &target.name, &format!("is-active {unit}")) != "active"
    });
}

/// Under socket activation (fleet's shipped `fleet.socket` and a TCP socket unit) the
/// HTTP API answers on the sockets systemd passes, beside gRPC.
#[test]
fn http_api_on_socket_activated_listeners() {
    let lab = boot_registered(&config("httpsock", 1));
    let node = lab.machines()[0].name.clone();
    let ip = lab.machines()[0].ip.to_string();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../agent/units");
    let unix = std::fs::read_to_string(root.join("fleet.socket")).expect("fleet.socket");
    let tcp = std::fs::read_to_string(root.join("fleet-tcp.socket"))
        .expect("fleet-tcp.socket")
        .replace("ListenStream=49153", "ListenStream=54728");
    let script = format!(
        "cat > /etc/systemd/system/fleet.socket <<'UNIT'\n{unix}UNIT\n\
         cat > /etc/systemd/system/fleet-tcp.socket <<'UNIT'\n{tcp}UNIT\n\
         systemctl daemon-reload && systemctl stop fleet.service && \
         systemctl start fleet.socket fleet-tcp.socket && systemctl start fleet.service"
    );
    let (code, _, err) = sh(&lab, &node, &script);
    assert_eq!(code, 0, "{err}");
    let activated = Via::TcpPort(ip.clone(), 54728);
    wait_until(
        "the HTTP API on the activated TCP socket",
        Duration::from_secs(20),
        || curl(&lab, &activated, "GET", "/fleet/v1/machines", None).0 == 200,
    );
    let create = json!({"desiredState": "launched", "options": sleeper(&[])});
    let path = "/fleet/v1/units/act.service";
    assert_eq!(curl(&lab, &activated, "PUT", path, Some(&create)).0, 201);
    let local = Via::Unix(node.clone());
    wait_until("act.service active", Duration::from_secs(30), || {
        states(&lab, &local, "act.service")
            .first()
            .is_some_and(|s| s["systemdActiveState"] == "active")
    });
    assert_eq!(curl(&lab, &local, "DELETE", path, None).0, 204);
    assert_eq!(
        tcp_probe(&lab, &node, &ip, fleet_lab::API_PORT),
        "refused",
        "fleetd bound api_listen despite activation"
    );
}
