//! fleet's etcd key layout. The only module that builds or parses key strings.
//!
//! | key | value |
//! |---|---|
//! | `unit/<name>` | unit text + hash |
//! | `job/<name>/target` | desired state |
//! | `machine/<id>` | machine record, on the agent's lease |
//! | `machine/<id>/metadata/<name>` | dynamic metadata (API), no lease |
//! | `schedule/<machine-id>/<name>` | hash + target, written by the engine |
//! | `machine-state/<machine-id>/<name>` | systemd state, on the agent's lease |
//! | `unplaced/<name>` | why the engine could not place the unit |
//! | `leader` | the engine's election name |
//! | `drain/<machine-id>` | present while an operator drained the machine (empty value) |
//! | `token/<hash>` | an API bearer token (see `tokens`) |
//! | `namespace/<ns>` | a namespace other than `default` and its machine selector (JSON) |
//! | `user/<name>` | a person: superadmin or not, role per namespace (JSON) |
//!
//! Everything one agent writes is keyed by its machine: its record `machine/<id>` and
//! its states under `machine-state/<id>/`, two ranges no other machine's etcd role
//! covers (see `roles`). They cannot be one range: machine listings and the engine's
//! machine watch read `machine/` and must not carry every state report, and a range
//! holding each machine's record with its states would interleave the two. States of
//! earlier versions lived at `state/<name>/<machine-id>`
//! ([`Keys::legacy_states`]); `fleetctl etcd-roles` moves them.
//!
//! Units of a namespace other than `default` are stored under their qualified name
//! (`fleet_core::namespace`), so each namespace owns the sub-prefixes `unit/<ns>:`,
//! `job/<ns>:` and `unplaced/<ns>:`, and its states are `machine-state/<id>/<ns>:...`.

use fleet_core::{MachineId, Namespace, UnitName};

use crate::error::RegistryError;

/// Key builders and parsers under one normalised prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

/// A parsed key: what a watch event or range result is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegistryKey {
    Unit(UnitName),
    JobTarget(UnitName),
    Machine(MachineId),
    /// Dynamic metadata of a machine (`machine/<id>/metadata/<name>`), see `metadata`.
    MachineMetadata(MachineId, String),
    Schedule(MachineId, UnitName),
    State(UnitName, MachineId),
    Unplaced(UnitName),
    /// The election's keys (`leader/<lease>`), whoever campaigns.
    Leader,
    /// A drained machine (`drain/<id>`), see `drain`.
    Drain(MachineId),
}

impl Keys {
    /// Normalises `prefix` to exactly one trailing `/`; an empty prefix is an error
    /// because fleet's keys would then mix with everything else in etcd.
    pub fn new(prefix: &str) -> Result<Keys, RegistryError> {
        let trimmed = prefix.trim();
        if trimmed.is_empty() {
            return Err(RegistryError::Config(
                "the etcd key prefix cannot be empty".into(),
            ));
        }
        Ok(Keys {
            prefix: format!("{}/", trimmed.trim_end_matches('/')),
        })
    }

    /// The normalised prefix, ending in `/`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn unit(&self, n: &UnitName) -> String {
        format!("{}unit/{n}", self.prefix)
    }
    pub fn units(&self) -> String {
        format!("{}unit/", self.prefix)
    }
    pub fn job_target(&self, n: &UnitName) -> String {
        format!("{}job/{n}/target", self.prefix)
    }
    /// Everything about one job (`job/<name>/`), deleted with the unit.
    pub fn job_dir(&self, n: &UnitName) -> String {
        format!("{}job/{n}/", self.prefix)
    }
    pub fn jobs(&self) -> String {
        format!("{}job/", self.prefix)
    }
    pub fn machine(&self, id: &MachineId) -> String {
        format!("{}machine/{id}", self.prefix)
    }
    /// Dynamic metadata: under `machine/` so machine reads and watches include it.
    pub fn machine_metadata(&self, m: &MachineId, name: &str) -> String {
        format!("{}machine/{m}/metadata/{name}", self.prefix)
    }
    pub fn machines(&self) -> String {
        format!("{}machine/", self.prefix)
    }
    pub fn schedule(&self, m: &MachineId, n: &UnitName) -> String {
        format!("{}schedule/{m}/{n}", self.prefix)
    }
    /// One machine's schedule: the only prefix its agent watches.
    pub fn machine_schedule(&self, m: &MachineId) -> String {
        format!("{}schedule/{m}/", self.prefix)
    }
    pub fn schedules(&self) -> String {
        format!("{}schedule/", self.prefix)
    }
    /// One machine's report on one unit, under the machine's own state prefix.
    pub fn state(&self, n: &UnitName, m: &MachineId) -> String {
        format!("{}machine-state/{m}/{n}", self.prefix)
    }
    /// Everything one machine reports: the range its etcd role may write.
    pub fn machine_states(&self, m: &MachineId) -> String {
        format!("{}machine-state/{m}/", self.prefix)
    }
    pub fn states(&self) -> String {
        format!("{}machine-state/", self.prefix)
    }
    /// Where earlier versions kept states (`state/<name>/<machine-id>`): read only to
    /// move them (see `roles::migrate_states`).
    pub fn legacy_states(&self) -> String {
        format!("{}state/", self.prefix)
    }
    /// Parses a key under [`Keys::legacy_states`].
    pub fn parse_legacy_state(&self, key: &[u8]) -> Option<(UnitName, MachineId)> {
        let rest = key.strip_prefix(self.legacy_states().as_bytes())?;
        let (n, m) = std::str::from_utf8(rest).ok()?.split_once('/')?;
        Some((UnitName::parse(n).ok()?, MachineId::new(m).ok()?))
    }
    /// API bearer tokens (`token/<hash>`).
    pub fn tokens(&self) -> String {
        format!("{}token/", self.prefix)
    }
    pub fn unplaced(&self, n: &UnitName) -> String {
        format!("{}unplaced/{n}", self.prefix)
    }
    pub fn unplaced_all(&self) -> String {
        format!("{}unplaced/", self.prefix)
    }
    /// Present while the machine is drained (`fleetctl drain`): no lease, so a drain
    /// outlives the machine's registration.
    pub fn drain(&self, m: &MachineId) -> String {
        format!("{}drain/{m}", self.prefix)
    }
    pub fn drains(&self) -> String {
        format!("{}drain/", self.prefix)
    }
    /// The election name the engine campaigns on.
    pub fn leader(&self) -> String {
        format!("{}leader", self.prefix)
    }

    /// Parses a full key. `None` for keys outside the layout (other tools' keys, or a
    /// newer fleet's); an invalid name inside a known directory is corrupt data.
    pub fn parse(&self, key: &[u8]) -> Result<Option<RegistryKey>, RegistryError> {
        let Some(rest) = key.strip_prefix(self.prefix.as_bytes()) else {
            return Ok(None);
        };
        let Ok(rest) = std::str::from_utf8(rest) else {
            return Err(RegistryError::corrupt(key, "key is not UTF-8"));
        };
        let unit = |s: &str| UnitName::parse(s).map_err(|e| RegistryError::corrupt(key, e));
        let machine = |s: &str| MachineId::new(s).map_err(|e| RegistryError::corrupt(key, e));
        let (dir, tail) = rest.split_once('/').unwrap_or((rest, ""));
        Ok(Some(match dir {
            "unit" => RegistryKey::Unit(unit(tail)?),
            "job" => match tail.rsplit_once('/') {
                Some((n, "target")) => RegistryKey::JobTarget(unit(n)?),
                _ => return Ok(None),
            },
            "machine" => match tail.split_once('/') {
                None => RegistryKey::Machine(machine(tail)?),
                Some((m, rest)) => match rest.split_once('/') {
                    Some(("metadata", n)) if crate::metadata::valid_name(n) => {
                        RegistryKey::MachineMetadata(machine(m)?, n.to_string())
                    }
                    _ => return Err(RegistryError::corrupt(key, "unknown key under a machine")),
                },
            },
            "schedule" => match tail.split_once('/') {
                Some((m, n)) => RegistryKey::Schedule(machine(m)?, unit(n)?),
                None => return Err(RegistryError::corrupt(key, "schedule key without unit")),
            },
            "machine-state" => match tail.split_once('/') {
                Some((m, n)) => RegistryKey::State(unit(n)?, machine(m)?),
                None => return Err(RegistryError::corrupt(key, "state key without unit")),
            },
            "unplaced" => RegistryKey::Unplaced(unit(tail)?),
            "leader" => RegistryKey::Leader,
            "drain" => RegistryKey::Drain(machine(tail)?),
            _ => return Ok(None),
        }))
    }
}

/// Namespaces, people and their grants (`namespaces.rs`); kept apart from the layout
/// above so the two change independently.
impl Keys {
    pub fn namespace(&self, ns: &Namespace) -> String {
        format!("{}namespace/{ns}", self.prefix)
    }
    pub fn namespaces(&self) -> String {
        format!("{}namespace/", self.prefix)
    }
    /// The units of a namespace other than `default` (all units for `default`).
    pub fn ns_units(&self, ns: &Namespace) -> String {
        format!("{}{}", self.units(), ns.name_prefix())
    }
    /// The key prefixes only a namespace's units live under (for etcd roles): their
    /// files, targets and unplaced notes. States and placements are keyed by machine
    /// first (`machine-state/<id>/<ns>:...`), so no one prefix holds a namespace's.
    pub fn ns_prefixes(&self, ns: &Namespace) -> [String; 3] {
        let p = ns.name_prefix();
        [
            format!("{}{p}", self.units()),
            format!("{}{p}", self.jobs()),
            format!("{}{p}", self.unplaced_all()),
        ]
    }
    pub fn user(&self, name: &str) -> String {
        format!("{}user/{name}", self.prefix)
    }
    pub fn users(&self) -> String {
        format!("{}user/", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_normalisation() {
        assert_eq!(Keys::new("/fleet").unwrap().prefix(), "/fleet/");
        assert_eq!(Keys::new("/fleet///").unwrap().prefix(), "/fleet/");
        assert_eq!(Keys::new("/").unwrap().prefix(), "/");
        assert!(Keys::new(" ").is_err());
        assert!(Keys::new("").is_err());
    }

    #[test]
    fn build_and_parse_round_trip() {
        let k = Keys::new("/_coreos.com/fleet/").unwrap();
        let n = UnitName::parse("web@1.service").unwrap();
        let m = MachineId::new("abc").unwrap();
        let cases = [
            (k.unit(&n), RegistryKey::Unit(n.clone())),
            (k.job_target(&n), RegistryKey::JobTarget(n.clone())),
            (k.machine(&m), RegistryKey::Machine(m.clone())),
            (
                k.schedule(&m, &n),
                RegistryKey::Schedule(m.clone(), n.clone()),
            ),
            (k.state(&n, &m), RegistryKey::State(n.clone(), m.clone())),
            (k.unplaced(&n), RegistryKey::Unplaced(n.clone())),
            (format!("{}/abcd", k.leader()), RegistryKey::Leader),
            (k.drain(&m), RegistryKey::Drain(m.clone())),
        ];
        for (key, want) in cases {
            assert_eq!(k.parse(key.as_bytes()).unwrap(), Some(want), "{key}");
        }
        assert_eq!(k.unit(&n), "/_coreos.com/fleet/unit/web@1.service");
        assert_eq!(
            k.state(&n, &m),
            "/_coreos.com/fleet/machine-state/abc/web@1.service"
        );
        assert!(k.state(&n, &m).starts_with(&k.machine_states(&m)));
        assert!(!k.state(&n, &m).starts_with(&k.machines()));
        // The old layout is not read as states, but can be parsed to move it.
        let old = b"/_coreos.com/fleet/state/web@1.service/abc";
        assert_eq!(k.parse(old).unwrap(), None);
        assert_eq!(k.parse_legacy_state(old), Some((n.clone(), m.clone())));
        assert_eq!(k.parse(b"/other/unit/x.service").unwrap(), None);
        assert_eq!(k.parse(b"/_coreos.com/fleet/future/x").unwrap(), None);
        assert!(k.parse(b"/_coreos.com/fleet/unit/bad name").is_err());
    }

    #[test]
    fn namespace_keys() {
        let k = Keys::new("/fleet").unwrap();
        let a = Namespace::parse("a").unwrap();
        let q = a
            .qualify(&UnitName::parse("web@1.service").unwrap())
            .unwrap();
        assert_eq!(k.ns_units(&a), "/fleet/unit/a:");
        assert!(k.unit(&q).starts_with(&k.ns_units(&a)));
        assert!(k.job_target(&q).starts_with(&k.ns_prefixes(&a)[1]));
        assert_eq!(k.namespace(&a), "/fleet/namespace/a");
        // Records of namespaces and users are outside the unit layout.
        assert_eq!(k.parse(k.namespace(&a).as_bytes()).unwrap(), None);
        assert_eq!(k.parse(k.user("alice").as_bytes()).unwrap(), None);
        assert_eq!(
            k.parse(k.unit(&q).as_bytes()).unwrap(),
            Some(RegistryKey::Unit(q.clone()))
        );
    }
}
