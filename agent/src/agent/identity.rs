//! Who this machine is: its machine id and the IP it advertises.

use std::path::Path;
use std::time::Duration;

use fleet_core::MachineId;

/// The machine id cannot be determined: fleetd cannot run.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("unable to determine local machine ID: {0}")]
    MachineId(String),
}

/// The machine id: the configured override, else the trimmed contents of `file`
/// (`/etc/machine-id`); empty or unreadable is fatal, as in fleet.
pub fn machine_id(configured: Option<&str>, file: &Path) -> Result<MachineId, IdentityError> {
    let text = match configured {
        Some(id) => id.to_string(),
        None => std::fs::read_to_string(file)
            .map_err(|e| IdentityError::MachineId(format!("{}: {e}", file.display())))?,
    };
    MachineId::new(&text).map_err(|e| IdentityError::MachineId(e.to_string()))
}

/// The interface holding the IPv4 default route, from `/proc/net/route` text.
pub fn default_route_interface(route_table: &str) -> Option<String> {
    route_table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        // Iface Destination Gateway Flags RefCnt Use Metric Mask ...
        (f.len() >= 8 && f[1] == "00000000" && f[7] == "00000000").then(|| f[0].to_string())
    })
}

/// The first global-unicast IPv4 address in `ip -4 -o addr show dev X` output.
pub fn first_global_ipv4(ip_addr_output: &str) -> Option<String> {
    ip_addr_output.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        words.find(|w| *w == "inet")?;
        let addr: std::net::Ipv4Addr = words.next()?.split('/').next()?.parse().ok()?;
        let global = !(addr.is_loopback()
            || addr.is_link_local()
            || addr.is_unspecified()
            || addr.is_multicast()
            || addr.is_broadcast());
        global.then(|| addr.to_string())
    })
}

/// fleet's public IP detection: the first global-unicast IPv4 of the interface with
/// the default route; `None` when there is none (the machine is shown without an IP).
pub async fn detect_public_ip() -> Option<std::net::IpAddr> {
    let table = tokio::fs::read_to_string("/proc/net/route").await.ok()?;
    let iface = default_route_interface(&table)?;
    let mut cmd = tokio::process::Command::new("ip");
    cmd.args(["-4", "-o", "addr", "show", "dev", &iface])
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null());
    match tokio::time::timeout(Duration::from_secs(5), cmd.output()).await {
        Ok(Ok(out)) if out.status.success() => {
            first_global_ipv4(&String::from_utf8_lossy(&out.stdout)).and_then(|ip| ip.parse().ok())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_route_from_proc() {
        let table = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                     eth0\t0000E70A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                     eth0\t00000000\t0100E70A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n";
        assert_eq!(default_route_interface(table).as_deref(), Some("eth0"));
        assert_eq!(default_route_interface("Iface\tDestination\n"), None);
    }

    #[test]
    fn global_ipv4_skips_link_local() {
        let out = "2: eth0    inet 169.254.1.2/16 scope link eth0\n\
                   2: eth0    inet 10.231.0.11/24 brd 10.231.0.255 scope global eth0\n";
        assert_eq!(first_global_ipv4(out).as_deref(), Some("10.231.0.11"));
        assert_eq!(first_global_ipv4(""), None);
    }

    #[test]
    fn machine_id_sources() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("machine-id");
        std::fs::write(&f, "  abc123\n").unwrap();
        assert_eq!(machine_id(None, &f).unwrap().as_str(), "abc123");
        assert_eq!(machine_id(Some("zz"), &f).unwrap().as_str(), "zz");
        std::fs::write(&f, "\n").unwrap();
        let err = machine_id(None, &f).unwrap_err().to_string();
        assert!(
            err.starts_with("unable to determine local machine ID"),
            "{err}"
        );
        let err = machine_id(None, &dir.path().join("missing")).unwrap_err();
        assert!(err.to_string().contains("missing"));
    }
}
