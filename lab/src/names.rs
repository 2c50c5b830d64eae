//! Names of everything a lab creates, all derived from the lab name.
//!
//! Deriving (rather than only recording) them lets `down` clean up after an `up` that
//! crashed before it wrote its state file.

use sha1::{Digest, Sha1};
use std::path::PathBuf;

use crate::error::{LabError, Result};

/// Where running labs keep their state (tmpfs: gone at reboot, like the labs).
pub const RUN_DIR: &str = "/run/fleet-lab";

/// Longest lab name: it goes into container machine names (max 64 chars with the node).
const MAX_LAB_NAME: usize = 32;

/// A validated lab name: lower-case letters, digits and '-', so it is safe in paths,
/// machine names and process command lines.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LabName(String);

impl LabName {
    /// Checks the name so every derived resource name is valid.
    pub fn new(name: &str) -> Result<Self> {
        let ok_chars = name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if name.is_empty()
            || name.len() > MAX_LAB_NAME
            || !ok_chars
            || name.starts_with('-')
            || name.ends_with('-')
        {
            return Err(LabError::InvalidConfig(format!(
                "lab name {name:?} must be 1-{MAX_LAB_NAME} characters of a-z, 0-9 and '-' (not at either end)"
            )));
        }
        Ok(LabName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Short hash of the name, for interface names (Linux allows 15 characters).
    pub fn tag(&self) -> String {
        let digest = Sha1::digest(self.0.as_bytes());
        hex::encode(digest)[..6].to_string()
    }

    /// The lab's state directory.
    pub fn state_dir(&self) -> PathBuf {
        PathBuf::from(RUN_DIR).join(&self.0)
    }

    /// The host bridge all machines of the lab are plugged into.
    pub fn bridge(&self) -> String {
        format!("flb{}", self.tag())
    }

    /// Prefix of the host ends of the machines' veth pairs.
    pub fn veth_prefix(&self) -> String {
        format!("flv{}-", self.tag())
    }

    /// Host end of machine `index`'s veth pair (at most 14 characters).
    pub fn host_veth(&self, index: usize) -> String {
        format!("{}{index}", self.veth_prefix())
    }

    /// Prefix of the lab's network namespaces (in /run/netns).
    pub fn netns_prefix(&self) -> String {
        format!("fl{}-", self.tag())
    }

    /// Network namespace of one machine.
    pub fn netns(&self, node: &str) -> String {
        format!("{}{node}", self.netns_prefix())
    }

    /// Container machine name given to nspawn: unique on the host, since nspawn keeps
    /// per-machine directories under /run/systemd/nspawn.
    pub fn machine(&self, node: &str) -> String {
        format!("{}-{node}", self.0)
    }

    /// Cgroup directory of the lab below a hierarchy root.
    pub fn cgroup_rel(&self) -> PathBuf {
        PathBuf::from("fleet-lab").join(&self.0)
    }
}

impl std::fmt::Display for LabName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_names_fit_linux_limits() {
        let name = LabName::new(&"a".repeat(MAX_LAB_NAME)).unwrap();
        assert!(name.bridge().len() <= 15);
        assert!(name.host_veth(253).len() <= 15);
        assert!(name.machine("node-with-long-name1").len() <= 64);
    }

    #[test]
    fn distinct_labs_get_distinct_tags() {
        let a = LabName::new("a").unwrap();
        let b = LabName::new("b").unwrap();
        assert_ne!(a.bridge(), b.bridge());
        assert_ne!(a.netns("node1"), b.netns("node1"));
    }

    #[test]
    fn rejects_unsafe_names() {
        for bad in ["", "A", "a b", "a/b", "-a", "a-", &"a".repeat(33)] {
            assert!(LabName::new(bad).is_err(), "{bad:?}");
        }
    }
}
