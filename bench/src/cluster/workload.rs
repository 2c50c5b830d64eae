//! The units the cluster benchmark submits and the machines it simulates: a mix of
//! plain services, template instances that conflict with their siblings, and units
//! that require machine metadata. Deterministic for a given seed.

use anyhow::Result;
use fleet_core::{Machine, MachineId, UnitFile, UnitName};

/// Instances per template family (`svcK@1..N.service`, `Conflicts=svcK@*.service`).
const FAMILY: usize = 10;
const REGIONS: &[&str] = &["us-east-1", "us-west-1", "eu-west-1"];

/// The simulated machines: ids `sim-<i>` with a region each, round-robin.
pub fn machines(count: usize) -> Result<Vec<Machine>> {
    (0..count)
        .map(|i| {
            let mut m = Machine::new(MachineId::new(&format!("sim-{i:05}"))?);
            m.public_ip = Some(std::net::IpAddr::from([
                10,
                (i >> 16) as u8,
                (i >> 8) as u8,
                i as u8,
            ]));
            m.metadata
                .insert("region".into(), REGIONS[i % REGIONS.len()].to_string());
            Ok(m)
        })
        .collect()
}

/// `count` units: `templates`% template instances, `constraints`% with a region
/// requirement, the rest plain; every name distinct.
pub fn units(
    count: usize,
    templates_pct: u32,
    constraints_pct: u32,
) -> Result<Vec<(UnitName, UnitFile)>> {
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        // Spread kinds evenly: bucket i % 100 decides.
        let bucket = (i % 100) as u32;
        let (name, xfleet) = if bucket < templates_pct {
            let family = i / (100 * FAMILY);
            let instance = i / 100 % FAMILY + 1;
            let slot = i % 100;
            (
                format!("svc{family}-{slot}@{instance}.service"),
                format!("Conflicts=svc{family}-{slot}@*.service\n"),
            )
        } else if bucket < templates_pct + constraints_pct {
            (
                format!("pinned-{i}.service"),
                format!("MachineMetadata=region={}\n", REGIONS[i % REGIONS.len()]),
            )
        } else {
            (format!("plain-{i}.service"), String::new())
        };
        let text = format!(
            "[Unit]\nDescription=simulated unit {i}\n\n[Service]\nExecStart=/usr/bin/sleep infinity\n\n[X-Fleet]\n{xfleet}"
        );
        out.push((UnitName::parse(&name)?, UnitFile::parse(&text)?));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn names_are_distinct_and_the_mix_holds() {
        let u = units(5_000, 20, 10).unwrap();
        let names: BTreeSet<_> = u.iter().map(|(n, _)| n.clone()).collect();
        assert_eq!(names.len(), 5_000);
        let instances = u.iter().filter(|(n, _)| n.as_str().contains('@')).count();
        assert_eq!(instances, 1_000);
    }
}
