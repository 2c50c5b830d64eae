//! Machines as the scheduler and fleetctl see them.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

/// A machine's identity: the contents of its `/etc/machine-id` (32 lower-case hex
/// digits on real hosts, but any non-empty string without `/` is accepted so that
/// tests and benchmarks can name machines freely).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MachineId(String);

/// Why a string cannot be a machine id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MachineIdError {
    #[error("machine ID cannot be empty")]
    Empty,
    #[error("invalid machine ID {0:?}: must not contain '/' or whitespace")]
    Invalid(String),
}

impl MachineId {
    /// Validates and wraps a machine id (trimmed, as fleet trims `/etc/machine-id`).
    pub fn new(id: &str) -> Result<Self, MachineIdError> {
        let id = id.trim();
        if id.is_empty() {
            return Err(MachineIdError::Empty);
        }
        if id.contains('/') || id.chars().any(char::is_whitespace) {
            return Err(MachineIdError::Invalid(id.to_string()));
        }
        Ok(MachineId(id.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 8 characters, which fleet accepts in `MachineID=` and prints in tables.
    pub fn short(&self) -> &str {
        let end = self
            .0
            .char_indices()
            .nth(8)
            .map_or(self.0.len(), |(i, _)| i);
        &self.0[..end]
    }
}

impl fmt::Display for MachineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for MachineId {
    type Err = MachineIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MachineId::new(s)
    }
}

/// A live machine of the cluster: what its agent published in the registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Machine {
    pub id: MachineId,
    /// Advertised IP (`public_ip`), `None` when unknown (fleet leaves it empty when
    /// detection finds none). Typed, so a record can never carry anything but an IP to
    /// the commands built from it (`fleetctl ssh`).
    pub public_ip: Option<IpAddr>,
    /// `metadata` from fleet.conf, e.g. `region=us-east-1`.
    pub metadata: BTreeMap<String, String>,
    /// fleetd version running there.
    pub version: String,
    /// Whether the machine opted out of leading the engine (`disable_engine`).
    pub disable_engine: bool,
}

impl Machine {
    /// A machine with no metadata, for tests and simple tools.
    pub fn new(id: MachineId) -> Self {
        Machine {
            id,
            public_ip: None,
            metadata: BTreeMap::new(),
            version: String::new(),
            disable_engine: false,
        }
    }

    /// fleet's "machine legend": `<id8>.../<ip>`, or the full id with `full`.
    pub fn legend(&self, full: bool) -> String {
        machine_legend(
            &self.id,
            self.public_ip.map(|ip| ip.to_string()).as_deref(),
            full,
        )
    }
}

/// fleet's machine column: `abcd1234...` (`...` always appended in short form), plus
/// `/<ip>` when the IP is known; with `full` the whole id.
pub fn machine_legend(id: &MachineId, ip: Option<&str>, full: bool) -> String {
    let mut s = if full {
        id.as_str().to_string()
    } else {
        format!("{}...", id.short())
    };
    if let Some(ip) = ip.filter(|ip| !ip.is_empty()) {
        s.push('/');
        s.push_str(ip);
    }
    s
}

/// Parses fleet.conf's `metadata` syntax: `k=v,k2=v2`; spaces around `=` and `,` are
/// trimmed, later duplicates win, items without `=` (or with an empty key) are ignored.
/// The first control character in a metadata name or value, if any. Metadata is printed
/// by `list-machines` and matched by `MachineMetadata`: an escape or newline in it would
/// reach the operator's terminal, so none is accepted where metadata is written or read.
pub fn metadata_control_char(s: &str) -> Option<char> {
    s.chars().find(|c| c.is_control())
}

pub fn parse_metadata(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for item in s.split(',') {
        if let Some((k, v)) = item.split_once('=') {
            let k = k.trim();
            if !k.is_empty() {
                out.insert(k.to_string(), v.trim().to_string());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legend_short_and_full() {
        let id = MachineId::new("113f16a7cc1b4a9b8bd1a4d5c2e1f0aa").unwrap();
        assert_eq!(
            machine_legend(&id, Some("172.17.8.103"), false),
            "113f16a7.../172.17.8.103"
        );
        assert_eq!(
            machine_legend(&id, None, true),
            "113f16a7cc1b4a9b8bd1a4d5c2e1f0aa"
        );
        // `...` is appended even to short ids, as fleet does.
        let short = MachineId::new("abc").unwrap();
        assert_eq!(machine_legend(&short, Some(""), false), "abc...");
    }

    #[test]
    fn metadata_parsing() {
        let m = parse_metadata(" region = us-east-1 , disk=ssd,bogus, region=eu ,=x");
        assert_eq!(m.get("region").map(String::as_str), Some("eu"));
        assert_eq!(m.get("disk").map(String::as_str), Some("ssd"));
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn machine_id_validation() {
        assert_eq!(MachineId::new("  "), Err(MachineIdError::Empty));
        assert!(MachineId::new("a/b").is_err());
        assert_eq!(MachineId::new(" abc\n").unwrap().as_str(), "abc");
    }
}
