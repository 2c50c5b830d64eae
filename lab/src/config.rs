//! The cluster file (TOML), in the spirit of footloose.yaml.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::error::{LabError, Result};
use crate::names::LabName;

/// File name `fleet-lab` reads and writes when none is given.
pub const DEFAULT_FILE: &str = "fleet-lab.toml";

/// Most machines one lab can hold: its /24 minus the network, bridge and broadcast
/// addresses and the five kept for etcd members (`.250` up).
pub const MAX_MACHINES: usize = 248;

/// Debian packages the example multi-tier deployment in `units/` runs on (Redis, nginx,
/// python3's http.server, etcdctl, curl): a lab whose groups list these can run the
/// whole stack with nothing downloaded at run time.
pub const STACK_PACKAGES: &[&str] = &[
    "curl",
    "etcd-client",
    "nginx-light",
    "python3",
    "redis-server",
    "redis-tools",
];

/// A whole lab: its name and the machine groups to boot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Lab name: distinct labs on one host must have distinct names.
    pub name: String,
    /// Debian release the machine image is built from.
    #[serde(default = "default_suite")]
    pub suite: String,
    /// etcd key prefix written to every machine's fleet.conf.
    #[serde(default = "default_key_prefix")]
    pub etcd_key_prefix: String,
    /// `agent_ttl` in fleet.conf: short in labs so lost machines vanish quickly.
    #[serde(default = "default_agent_ttl")]
    pub agent_ttl: String,
    /// `engine_lease_ttl` in fleet.conf; by default the lab's `agent_ttl`, so that a
    /// lost machine's engine leadership moves as soon as its units do.
    #[serde(default)]
    pub engine_lease_ttl: Option<String>,
    /// etcd members (1, 3 or 5), each a host process in a network namespace of its own
    /// on the lab's bridge, so one can be killed, stopped or cut off alone. Every
    /// machine's `etcd_servers` lists them all, as on a CoreOS cluster.
    #[serde(default = "default_etcd_members")]
    pub etcd_members: usize,
    /// Where etcd runs: `"host"` (`etcd_members` members beside the machines), or
    /// `"per-machine"`, CoreOS style: a member in every machine (on its IP and link),
    /// so losing a machine loses its member too.
    #[serde(default)]
    pub etcd: EtcdPlacement,
    /// Secure by default: a lab CA, etcd with TLS (client certificates) and auth, a
    /// certificate and etcd user per machine, the API over mutual TLS, and an admin
    /// identity for the host in the `env` file. `false` (or `fleet-lab up --insecure`)
    /// runs everything in plaintext without authentication.
    #[serde(default = "default_secure")]
    pub secure: bool,
    /// Which machines are the control plane: they run the engine and their APIs
    /// accept writes, so (in a secure lab) their etcd users hold `fleet-engine` and
    /// `fleet-operator`. The others are workers: `disable_engine=true`, an etcd user
    /// with only its own machine role, an API that serves reads and points writers
    /// at a control machine. A count (the first N machines in boot order) or names;
    /// by default the first [`DEFAULT_CONTROL`] machines (all of a lab of 3 or fewer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<Control>,
    /// Groups of identical machines.
    #[serde(rename = "group")]
    pub groups: Vec<MachineGroup>,
}

/// Control-plane machines of a lab when the file does not say: enough for the engine
/// to fail over twice, and every machine of today's 1-3 machine labs.
pub const DEFAULT_CONTROL: usize = 3;

/// The `control` setting: how many of the first machines, or which ones.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Control {
    Count(usize),
    Names(Vec<String>),
}

/// Where a lab's etcd members run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EtcdPlacement {
    /// `etcd_members` members, each in a network namespace of its own on the bridge.
    #[default]
    Host,
    /// One member in every machine's network namespace.
    PerMachine,
}

/// Most machines of a lab with a member in each: more members only slow every write.
pub const MAX_PER_MACHINE_MEMBERS: usize = 9;

/// Identical machines, named from a pattern.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineGroup {
    /// Name pattern with one `%d`, replaced by 1, 2, ... (`node%d`).
    pub name: String,
    pub count: usize,
    /// fleet metadata of every machine of the group (`metadata=` in fleet.conf).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Extra Debian packages installed in the image (the image is shared by all groups).
    #[serde(default)]
    pub packages: Vec<String>,
}

/// One machine to boot, as resolved from the groups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MachineSpec {
    pub name: String,
    pub metadata: BTreeMap<String, String>,
    /// Whether it is a control-plane machine (engine, write API) or a worker.
    pub control: bool,
}

/// Three members: the smallest cluster that survives losing one, so labs (and the tests
/// on them) exercise the multi-member path by default.
fn default_etcd_members() -> usize {
    3
}

fn default_secure() -> bool {
    true
}

fn default_suite() -> String {
    "bookworm".to_string()
}

fn default_key_prefix() -> String {
    "/_coreos.com/fleet/".to_string()
}

fn default_agent_ttl() -> String {
    "10s".to_string()
}

impl ClusterConfig {
    /// The file `fleet-lab config create` writes: one group of `machines` nodes.
    pub fn with_machines(name: &str, machines: usize) -> Self {
        ClusterConfig {
            name: name.to_string(),
            suite: default_suite(),
            etcd_key_prefix: default_key_prefix(),
            agent_ttl: default_agent_ttl(),
            engine_lease_ttl: None,
            etcd_members: default_etcd_members(),
            etcd: EtcdPlacement::Host,
            secure: default_secure(),
            control: None,
            groups: vec![MachineGroup {
                name: "node%d".to_string(),
                count: machines,
                metadata: BTreeMap::from([("lab".to_string(), name.to_string())]),
                packages: Vec::new(),
            }],
        }
    }

    /// Parses and validates a cluster file's text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let config: ClusterConfig = toml::from_str(text).map_err(|e| e.message().to_string())?;
        config.validate().map_err(|e| match e {
            LabError::InvalidConfig(reason) => reason,
            other => other.to_string(),
        })?;
        Ok(config)
    }

    /// Reads and validates a cluster file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| LabError::ConfigFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Self::parse(&text).map_err(|reason| LabError::ConfigFile {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// The file's text, with a header saying what it is.
    pub fn to_toml(&self) -> String {
        let body = toml::to_string_pretty(self).unwrap_or_default();
        format!("# fleet-lab cluster file: `fleet-lab up` boots these machines.\n{body}")
    }

    /// The lab name, validated.
    pub fn lab_name(&self) -> Result<LabName> {
        LabName::new(&self.name)
    }

    /// Checks everything `up` relies on, so a bad file fails before anything is created.
    pub fn validate(&self) -> Result<()> {
        let invalid = |m: String| Err(LabError::InvalidConfig(m));
        self.lab_name()?;
        if !is_word(&self.suite) {
            return invalid(format!(
                "suite {:?} is not a Debian release name",
                self.suite
            ));
        }
        if !self.etcd_key_prefix.starts_with('/')
            || self.etcd_key_prefix.contains(char::is_whitespace)
        {
            return invalid(format!(
                "etcd_key_prefix {:?} must start with '/' and have no spaces",
                self.etcd_key_prefix
            ));
        }
        // fleetd's own parser and bound: a value fleetd would refuse (and so restart
        // forever) is refused here, before any machine is built.
        match fleet_core::parse_duration(&self.agent_ttl) {
            Err(e) => return invalid(format!("agent_ttl: {e}")),
            Ok(ttl) if ttl < fleet_core::MIN_AGENT_TTL => {
                return invalid(format!(
                    "agent_ttl {:?} is shorter than fleetd's minimum of 1s",
                    self.agent_ttl
                ));
            }
            Ok(_) => {}
        }
        if let Some(ttl) = &self.engine_lease_ttl {
            match fleet_core::parse_duration(ttl) {
                Err(e) => return invalid(format!("engine_lease_ttl: {e}")),
                Ok(d)
                    if d < std::time::Duration::from_secs(1)
                        || d > std::time::Duration::from_secs(60) =>
                {
                    return invalid(format!(
                        "engine_lease_ttl {ttl:?} is outside fleetd's bounds of 1s-60s"
                    ));
                }
                Ok(_) => {}
            }
        }
        if ![1, 3, 5].contains(&self.etcd_members) {
            return invalid(format!(
                "etcd_members = {}: a lab runs 1, 3 or 5 etcd members",
                self.etcd_members
            ));
        }
        if self.groups.is_empty() {
            return invalid("no [[group]] of machines".to_string());
        }
        for group in &self.groups {
            if group.name.matches("%d").count() != 1 {
                return invalid(format!(
                    "group name pattern {:?} must contain %d exactly once",
                    group.name
                ));
            }
            if group.count == 0 {
                return invalid(format!("group {:?} has count 0", group.name));
            }
            for (key, value) in &group.metadata {
                if !is_meta(key) || !is_meta(value) {
                    return invalid(format!(
                        "metadata {key:?}={value:?}: keys and values may not be empty or contain '=', ',', '#', ';' or spaces"
                    ));
                }
            }
            for package in &group.packages {
                let ok = package
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
                if package.is_empty() || !ok {
                    return invalid(format!("{package:?} is not a Debian package name"));
                }
            }
        }
        let machines = self.machines();
        if self.etcd == EtcdPlacement::PerMachine && machines.len() > MAX_PER_MACHINE_MEMBERS {
            return invalid(format!(
                "etcd = \"per-machine\" with {} machines: at most {MAX_PER_MACHINE_MEMBERS} etcd members",
                machines.len()
            ));
        }
        if machines.len() > MAX_MACHINES {
            return invalid(format!(
                "{} machines: a lab holds at most {MAX_MACHINES}",
                machines.len()
            ));
        }
        match &self.control {
            Some(Control::Count(0)) => {
                return invalid(
                    "control = 0: a lab needs at least one control machine to run the engine"
                        .to_string(),
                );
            }
            Some(Control::Count(n)) if *n > machines.len() => {
                return invalid(format!(
                    "control = {n}: the lab has only {} machines",
                    machines.len()
                ));
            }
            Some(Control::Names(names)) => {
                if names.is_empty() {
                    return invalid(
                        "control = []: a lab needs at least one control machine to run the engine"
                            .to_string(),
                    );
                }
                if let Some(unknown) = names
                    .iter()
                    .find(|n| !machines.iter().any(|m| &m.name == *n))
                {
                    return invalid(format!(
                        "control names {unknown:?}, which is no machine of the lab"
                    ));
                }
            }
            _ => {}
        }
        let mut seen = BTreeSet::new();
        for machine in &machines {
            let ok = machine
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if machine.name.is_empty()
                || machine.name.len() > 24
                || !ok
                || machine.name.starts_with('-')
            {
                return invalid(format!(
                    "machine name {:?} must be 1-24 characters of a-z, 0-9 and '-'",
                    machine.name
                ));
            }
            if !seen.insert(machine.name.clone()) {
                return invalid(format!("two machines are named {:?}", machine.name));
            }
        }
        Ok(())
    }

    /// Every machine in boot order, names expanded from the patterns, each marked
    /// control or worker as `control` says.
    pub fn machines(&self) -> Vec<MachineSpec> {
        let mut machines: Vec<MachineSpec> = self
            .groups
            .iter()
            .flat_map(|group| {
                (1..=group.count).map(move |i| MachineSpec {
                    name: group.name.replacen("%d", &i.to_string(), 1),
                    metadata: group.metadata.clone(),
                    control: false,
                })
            })
            .collect();
        for (i, m) in machines.iter_mut().enumerate() {
            m.control = match &self.control {
                None => i < DEFAULT_CONTROL,
                Some(Control::Count(n)) => i < *n,
                Some(Control::Names(names)) => names.contains(&m.name),
            };
        }
        machines
    }

    /// Extra packages of all groups (the image is one for the lab).
    pub fn extra_packages(&self) -> BTreeSet<String> {
        self.groups
            .iter()
            .flat_map(|g| g.packages.iter().cloned())
            .collect()
    }
}

fn is_word(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

fn is_meta(s: &str) -> bool {
    !s.is_empty()
        && !s
            .chars()
            .any(|c| c.is_whitespace() || "=,#;\"'".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_ttl_is_checked_as_fleetd_checks_it() {
        let mut config = ClusterConfig::with_machines("demo", 1);
        for (ttl, ok) in [
            ("10s", true),
            ("1m30s", true),
            ("500ms", false),
            ("soon", false),
        ] {
            config.agent_ttl = ttl.into();
            assert_eq!(config.validate().is_ok(), ok, "{ttl}");
        }
    }

    #[test]
    fn default_file_round_trips() {
        let config = ClusterConfig::with_machines("demo", 3);
        let parsed = ClusterConfig::parse(&config.to_toml()).unwrap();
        assert_eq!(parsed, config);
        let names: Vec<_> = parsed.machines().into_iter().map(|m| m.name).collect();
        assert_eq!(names, ["node1", "node2", "node3"]);
    }

    #[test]
    fn etcd_runs_on_the_host_unless_per_machine() {
        let base = "name = \"x\"\n[[group]]\nname = \"n%d\"\ncount = 5\n";
        assert_eq!(
            ClusterConfig::parse(base).unwrap().etcd,
            EtcdPlacement::Host
        );
        let each = format!("etcd = \"per-machine\"\n{base}");
        let config = ClusterConfig::parse(&each).unwrap();
        assert_eq!(config.etcd, EtcdPlacement::PerMachine);
        assert_eq!(ClusterConfig::parse(&config.to_toml()).unwrap(), config);
        let err = ClusterConfig::parse(&each.replace("count = 5", "count = 10")).unwrap_err();
        assert!(err.contains("at most 9 etcd members"), "{err}");
        let err = ClusterConfig::parse(&format!("etcd = \"everywhere\"\n{base}")).unwrap_err();
        assert!(err.contains("unknown variant"), "{err}");
    }

    /// Labs are secure unless the file says otherwise.
    #[test]
    fn secure_by_default_and_off_by_choice() {
        let base = "name = \"x\"\n[[group]]\nname = \"n%d\"\ncount = 1\n";
        assert!(ClusterConfig::parse(base).unwrap().secure);
        let off = format!("secure = false\n{base}");
        assert!(!ClusterConfig::parse(&off).unwrap().secure);
    }

    /// The first three machines are the control plane unless the file says otherwise;
    /// a count or names choose them, and a choice naming no machine is refused.
    #[test]
    fn control_machines_by_default_count_or_name() {
        let base = "name = \"x\"\n[[group]]\nname = \"n%d\"\ncount = 5\n";
        let control = |text: &str| -> Vec<String> {
            ClusterConfig::parse(text)
                .unwrap()
                .machines()
                .into_iter()
                .filter(|m| m.control)
                .map(|m| m.name)
                .collect()
        };
        assert_eq!(control(base), ["n1", "n2", "n3"]);
        assert_eq!(control(&format!("control = 1\n{base}")), ["n1"]);
        assert_eq!(
            control(&format!("control = [\"n2\", \"n5\"]\n{base}")),
            ["n2", "n5"]
        );
        let small = ClusterConfig::with_machines("x", 2);
        assert!(small.machines().iter().all(|m| m.control));
        let mut one = ClusterConfig::with_machines("x", 2);
        one.control = Some(Control::Count(1));
        assert_eq!(ClusterConfig::parse(&one.to_toml()).unwrap(), one);
        for (setting, want) in [
            ("control = 0", "at least one control machine"),
            ("control = 6", "only 5 machines"),
            ("control = []", "at least one control machine"),
            ("control = [\"n9\"]", "\"n9\", which is no machine"),
        ] {
            let err = ClusterConfig::parse(&format!("{setting}\n{base}")).unwrap_err();
            assert!(err.contains(want), "{setting}: {err}");
        }
    }

    #[test]
    fn groups_expand_with_their_metadata() {
        let text = r#"
name = "two"
[[group]]
name = "web%d"
count = 2
metadata = { role = "web" }
packages = ["curl"]
[[group]]
name = "db%d"
count = 1
"#;
        let config = ClusterConfig::parse(text).unwrap();
        let machines = config.machines();
        assert_eq!(machines.len(), 3);
        assert_eq!(machines[1].name, "web2");
        assert_eq!(machines[1].metadata["role"], "web");
        assert_eq!(machines[2].name, "db1");
        assert!(machines[2].metadata.is_empty());
        assert_eq!(
            config.extra_packages().into_iter().collect::<Vec<_>>(),
            ["curl"]
        );
    }

    #[test]
    fn bad_files_say_why() {
        let cases = [
            ("name = 3", "invalid type"),
            ("name = \"x\"\n[[group]]\nname = \"n\"\ncount = 1", "%d"),
            (
                "name = \"x\"\n[[group]]\nname = \"n%d\"\ncount = 0",
                "count 0",
            ),
            ("name = \"x\"\ngroup = []", "no [[group]]"),
            (
                "name = \"X\"\n[[group]]\nname = \"n%d\"\ncount = 1",
                "lab name",
            ),
            (
                "name = \"x\"\nbogus = 1\n[[group]]\nname = \"n%d\"\ncount = 1",
                "unknown field",
            ),
            (
                "name = \"x\"\n[[group]]\nname = \"n%d\"\ncount = 1\n[[group]]\nname = \"n%d\"\ncount = 1",
                "two machines",
            ),
            (
                "name = \"x\"\n[[group]]\nname = \"n%d\"\ncount = 1\nmetadata = { a = \"b,c\" }",
                "metadata",
            ),
            (
                "name = \"x\"\n[[group]]\nname = \"n%d\"\ncount = 300",
                "at most 248",
            ),
            (
                "name = \"x\"\netcd_members = 2\n[[group]]\nname = \"n%d\"\ncount = 1",
                "1, 3 or 5 etcd members",
            ),
        ];
        for (text, want) in cases {
            let err = ClusterConfig::parse(text).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }
}
