//! The lab network: a host bridge, and per machine a netns with a veth to the bridge.
//!
//! Subnets come from 10.231.0.0/16, one /24 per lab, skipping any prefix the host
//! already routes (other labs' bridges included).

use std::net::Ipv4Addr;

use crate::error::{LabError, Result};
use crate::sys::{output, run};

/// A lab's /24: `10.231.<n>.0`. The bridge is `.1`, machine `i` (from 0) is `.(i+2)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Subnet(pub u8);

impl Subnet {
    pub fn bridge_ip(self) -> Ipv4Addr {
        Ipv4Addr::new(10, 231, self.0, 1)
    }

    pub fn machine_ip(self, index: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 231, self.0, (index + 2) as u8)
    }

    /// etcd member `index` (from 0, at most 5): `.250` up, above every machine.
    pub fn member_ip(self, index: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 231, self.0, 250 + index.min(5) as u8)
    }

    fn cidr(self) -> String {
        format!("10.231.{}.0/24", self.0)
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.cidr())
    }
}

/// The first /24 of 10.231.0.0/16 that no host route and no entry of `taken` uses.
/// Call it under the lab allocation lock and create the bridge before releasing it.
pub fn pick_subnet(taken: &[Subnet]) -> Result<Subnet> {
    let routes = run("ip", &["-4", "route", "show", "table", "all"])?;
    (0..=255u8)
        .map(Subnet)
        .find(|s| !taken.contains(s) && !routes.contains(&format!("10.231.{}.", s.0)))
        .ok_or(LabError::NoSubnet)
}

/// Creates the bridge with the lab's gateway address, up.
pub fn create_bridge(name: &str, subnet: Subnet) -> Result<()> {
    run("ip", &["link", "add", name, "type", "bridge"])?;
    run(
        "ip",
        &[
            "addr",
            "add",
            &format!("{}/24", subnet.bridge_ip()),
            "dev",
            name,
        ],
    )?;
    run("ip", &["link", "set", name, "up"])?;
    Ok(())
}

/// Creates a machine's netns, with `eth0` (its end of a veth from `host_veth`, plugged
/// into the bridge) addressed `ip/24`, and loopback up.
pub fn create_machine_net(
    netns: &str,
    host_veth: &str,
    bridge: &str,
    subnet: Subnet,
    ip: Ipv4Addr,
) -> Result<()> {
    run("ip", &["netns", "add", netns])?;
    run(
        "ip",
        &[
            "link", "add", host_veth, "type", "veth", "peer", "name", "eth0", "netns", netns,
        ],
    )?;
    run("ip", &["link", "set", host_veth, "master", bridge, "up"])?;
    let in_ns = |args: &[&str]| {
        let mut full = vec!["-n", netns];
        full.extend_from_slice(args);
        run("ip", &full)
    };
    in_ns(&["link", "set", "lo", "up"])?;
    in_ns(&["addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
    in_ns(&["link", "set", "eth0", "up"])?;
    in_ns(&[
        "route",
        "add",
        "default",
        "via",
        &subnet.bridge_ip().to_string(),
    ])?;
    Ok(())
}

/// True when the link exists and is administratively down (a cut).
pub fn link_is_down(name: &str) -> bool {
    output("ip", &["-o", "link", "show", "dev", name]).is_ok_and(|out| {
        let text = String::from_utf8_lossy(&out.stdout);
        let flags = text
            .split('<')
            .nth(1)
            .and_then(|f| f.split('>').next())
            .unwrap_or("");
        out.status.success() && !flags.split(',').any(|f| f == "UP")
    })
}

/// Sets the host end of a machine's veth up or down: a network partition of that machine.
pub fn set_link(name: &str, up: bool) -> Result<()> {
    run("ip", &["link", "set", name, if up { "up" } else { "down" }]).map(drop)
}

/// Deletes a link if it exists (idempotent teardown).
pub fn delete_link(name: &str) {
    let _ = output("ip", &["link", "del", name]);
}

/// Deletes a netns if it exists (idempotent teardown; its veth goes with it).
pub fn delete_netns(name: &str) {
    let _ = output("ip", &["netns", "del", name]);
}

/// Host links whose name starts with `prefix` (to find leftovers of a crashed lab).
pub fn links_with_prefix(prefix: &str) -> Vec<String> {
    let Ok(out) = run("ip", &["-o", "link", "show"]) else {
        return Vec::new();
    };
    out.lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name).to_string())
        .filter(|name| name.starts_with(prefix))
        .collect()
}

/// Network namespaces whose name starts with `prefix`.
pub fn netns_with_prefix(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}
