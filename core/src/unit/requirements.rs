//! `[X-Fleet]` requirements as typed values, with fleet's validation and specifiers.
//!
//! Two readings of the same section exist because fleet has two: the API validates the
//! raw text once at submit time ([`Requirements::parse`]), while the scheduler reads
//! each unit with `%n %N %p %i` expanded for its own name ([`Requirements::for_unit`]).

use std::collections::{BTreeMap, BTreeSet};

use super::{UnitFile, UnitGlob, UnitName};
use crate::machine::MachineId;

/// The section fleet reads its scheduling requirements from.
pub const X_FLEET: &str = "X-Fleet";

/// `MachineID` and its deprecated aliases, in the order fleet consults them.
const MACHINE_ID_KEYS: [&str; 3] = [
    "MachineID",
    "X-ConditionMachineID",
    "X-ConditionMachineBootID",
];
/// Deprecated alias first: fleet appends the alias's values before the modern key's.
const MACHINE_OF_KEYS: [&str; 2] = ["X-ConditionMachineOf", "MachineOf"];
const METADATA_KEYS: [&str; 2] = ["X-ConditionMachineMetadata", "MachineMetadata"];
const CONFLICTS_KEYS: [&str; 2] = ["X-Conflicts", "Conflicts"];
const REPLACES_KEY: &str = "Replaces";
const GLOBAL_KEY: &str = "Global";
/// Not fleet's: opts the unit in to self-fencing (see [`Requirements::stop_on_etcd_loss`]).
pub const STOP_ON_ETCD_LOSS_KEY: &str = "StopOnEtcdLoss";

/// Every key fleet recognises in `[X-Fleet]` (and ours, `StopOnEtcdLoss`); others only
/// earn a fleetctl warning.
pub const KNOWN_KEYS: [&str; 12] = [
    MACHINE_ID_KEYS[0],
    MACHINE_ID_KEYS[1],
    MACHINE_ID_KEYS[2],
    MACHINE_OF_KEYS[0],
    MACHINE_OF_KEYS[1],
    METADATA_KEYS[0],
    METADATA_KEYS[1],
    CONFLICTS_KEYS[0],
    CONFLICTS_KEYS[1],
    REPLACES_KEY,
    GLOBAL_KEY,
    STOP_ON_ETCD_LOSS_KEY,
];

/// What a unit requires of its machine, from its `[X-Fleet]` section.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Requirements {
    /// `MachineID=`: full id or its 8-character short form. First value wins.
    pub machine_id: Option<String>,
    /// `MachineOf=`: units that must be on the same machine (all of them).
    pub machine_of: Vec<String>,
    /// `MachineMetadata=`: key → allowed values (OR within a key, AND across keys).
    pub metadata: BTreeMap<String, BTreeSet<String>>,
    /// `Conflicts=`: globs of units that must not share the machine.
    pub conflicts: Vec<UnitGlob>,
    /// `Replaces=`: globs of units this one displaces from its machine.
    pub replaces: Vec<UnitGlob>,
    /// `Global=`: run on every eligible machine.
    pub global: bool,
    /// `StopOnEtcdLoss=` (not fleet's; last value wins): stop the unit on a machine that
    /// cannot reach etcd for longer than `agent_ttl` (the cluster may run it elsewhere
    /// by then). Not a placement rule: the scheduler ignores it.
    pub stop_on_etcd_loss: bool,
    /// Keys in `[X-Fleet]` that fleet does not know (fleetctl warns about them).
    pub unrecognized: Vec<String>,
}

/// A forbidden combination of requirements; messages are fleet's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRequirements {
    #[error("unresolvable requirements: peer {peer:?} matches conflict {conflict:?}")]
    PeerMatchesConflict { peer: String, conflict: String },
    #[error("unresolvable requirements: peer {peer:?} matches replace {replace:?}")]
    PeerMatchesReplace { peer: String, replace: String },
    #[error("MachineID cannot be used with Peers")]
    MachineIdWithPeers,
    #[error("MachineID cannot be used with Conflicts")]
    MachineIdWithConflicts,
    #[error("MachineID cannot be used with Global")]
    MachineIdWithGlobal,
    #[error("MachineID cannot be used with Replaces")]
    MachineIdWithReplaces,
    #[error("Global cannot be used with Peers")]
    GlobalWithPeers,
    #[error("Global cannot be used with Replaces")]
    GlobalWithReplaces,
    #[error("Conflicts cannot be used with Replaces")]
    ConflictsWithReplaces,
}

impl Requirements {
    /// Reads and validates the raw (unexpanded) `[X-Fleet]` options of a unit file.
    pub fn parse(file: &UnitFile) -> Result<Requirements, InvalidRequirements> {
        let reqs = Requirements::read(file, None);
        reqs.validate()?;
        Ok(reqs)
    }

    /// The requirements of `name` with `%n %N %p %i` expanded in every value.
    ///
    /// Never fails: validation belongs to submission ([`Requirements::parse`]), and a
    /// combination that only becomes invalid after expansion (say `MachineOf=%p.service`
    /// against `Conflicts=foo*`) is returned as read, as fleet's scheduler does.
    pub fn for_unit(file: &UnitFile, name: &UnitName) -> Requirements {
        Requirements::read(file, Some(name))
    }

    /// fleet's submit-time checks, in fleet's order; the first problem is reported.
    /// Peers are matched against the globs in file order (fleet iterates a hash set,
    /// so when several pairs clash it names an arbitrary one).
    pub fn validate(&self) -> Result<(), InvalidRequirements> {
        for peer in &self.machine_of {
            if let Some(c) = self.conflicts.iter().find(|c| c.matches(peer)) {
                return Err(InvalidRequirements::PeerMatchesConflict {
                    peer: peer.clone(),
                    conflict: c.pattern().to_string(),
                });
            }
        }
        for peer in &self.machine_of {
            if let Some(r) = self.replaces.iter().find(|r| r.matches(peer)) {
                return Err(InvalidRequirements::PeerMatchesReplace {
                    peer: peer.clone(),
                    replace: r.pattern().to_string(),
                });
            }
        }
        let target = self.machine_id.is_some();
        let peers = !self.machine_of.is_empty();
        let conflicts = !self.conflicts.is_empty();
        let replaces = !self.replaces.is_empty();
        let global = self.global;
        let forbidden = [
            (target && peers, InvalidRequirements::MachineIdWithPeers),
            (
                target && conflicts,
                InvalidRequirements::MachineIdWithConflicts,
            ),
            (target && global, InvalidRequirements::MachineIdWithGlobal),
            (
                target && replaces,
                InvalidRequirements::MachineIdWithReplaces,
            ),
            (global && peers, InvalidRequirements::GlobalWithPeers),
            (global && replaces, InvalidRequirements::GlobalWithReplaces),
            (
                conflicts && replaces,
                InvalidRequirements::ConflictsWithReplaces,
            ),
        ];
        match forbidden.into_iter().find(|(hit, _)| *hit) {
            Some((_, err)) => Err(err),
            None => Ok(()),
        }
    }

    /// No placement constraint at all: any machine will do (the scheduler's fast path).
    pub fn is_trivial(&self) -> bool {
        self.machine_id.is_none()
            && self.machine_of.is_empty()
            && self.metadata.is_empty()
            && self.conflicts.is_empty()
            && self.replaces.is_empty()
            && !self.global
    }

    /// Whether `MachineID=` allows this machine: no requirement, the full id, or its
    /// 8-character short form (fleet's `MatchID`).
    pub fn allows_machine_id(&self, id: &MachineId) -> bool {
        self.machine_id
            .as_deref()
            .is_none_or(|want| want == id.as_str() || want == id.short())
    }

    /// Whether a machine's metadata satisfies `MachineMetadata=`: every required key
    /// present with one of its allowed values.
    pub fn allows_metadata(&self, metadata: &BTreeMap<String, String>) -> bool {
        self.metadata
            .iter()
            .all(|(key, allowed)| metadata.get(key).is_some_and(|v| allowed.contains(v)))
    }

    /// Whether one of this unit's `Conflicts=` globs matches `name`. Conflicts are
    /// symmetric in fleet: callers check both directions.
    pub fn conflicts_with(&self, name: &str) -> bool {
        self.conflicts.iter().any(|g| g.matches(name))
    }

    /// Whether one of this unit's `Replaces=` globs matches `name`.
    pub fn replaces_unit(&self, name: &str) -> bool {
        self.replaces.iter().any(|g| g.matches(name))
    }

    /// Reads `[X-Fleet]`, expanding specifiers for `name` if given.
    fn read(file: &UnitFile, name: Option<&UnitName>) -> Requirements {
        let mut values: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        let mut unrecognized: Vec<String> = Vec::new();
        for opt in file.options().iter().filter(|o| o.section == X_FLEET) {
            let key = opt.name.as_str();
            if !KNOWN_KEYS.contains(&key) && !unrecognized.iter().any(|k| k == key) {
                unrecognized.push(key.to_string());
            }
            let list = values.entry(key).or_default();
            for v in split_multivalue(&opt.value) {
                list.push(match name {
                    Some(n) => expand_specifiers(&v, n),
                    None => v,
                });
            }
        }
        let get = |key: &str| values.get(key).map_or(&[][..], Vec::as_slice);

        let machine_id = MACHINE_ID_KEYS.iter().find_map(|k| get(k).first()).cloned();
        let machine_of = MACHINE_OF_KEYS
            .iter()
            .flat_map(|k| get(k))
            .cloned()
            .collect();
        let mut metadata: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for item in METADATA_KEYS.iter().flat_map(|k| get(k)) {
            let mut parts = item.split('=');
            if let (Some(k), Some(v), None) = (parts.next(), parts.next(), parts.next())
                && !k.is_empty()
                && !v.is_empty()
            {
                metadata
                    .entry(k.to_string())
                    .or_default()
                    .insert(v.to_string());
            }
        }
        let conflicts = CONFLICTS_KEYS
            .iter()
            .flat_map(|k| get(k))
            .flat_map(|v| v.split_whitespace())
            .map(UnitGlob::new)
            .collect();
        let replaces = get(REPLACES_KEY).iter().map(|v| UnitGlob::new(v)).collect();
        let global = get(GLOBAL_KEY).last().is_some_and(|v| is_truthy(v));
        let stop_on_etcd_loss = get(STOP_ON_ETCD_LOSS_KEY)
            .last()
            .is_some_and(|v| is_truthy(v));
        Requirements {
            stop_on_etcd_loss,
            machine_id,
            machine_of,
            metadata,
            conflicts,
            replaces,
            global,
            unrecognized,
        }
    }
}

/// Validates a submitted unit's requirements (raw, as fleet's API does) and returns
/// them as the scheduler will see them for `name` (specifiers expanded).
pub fn validate_unit(
    name: &UnitName,
    file: &UnitFile,
) -> Result<Requirements, InvalidRequirements> {
    Requirements::parse(file)?;
    Ok(Requirements::for_unit(file, name))
}

/// fleet's multi-value syntax: a value that starts and ends with `"` is split at
/// spaces outside quotes, and all quotes are dropped (`"a=1" "b=2"` → `a=1`, `b=2`).
/// Any other value is one item. Byte-for-byte what fleet does, including empty items
/// from doubled spaces.
pub fn split_multivalue(value: &str) -> Vec<String> {
    if !value.starts_with('"') || !value.ends_with('"') {
        return vec![value.to_string()];
    }
    let mut items = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in value.chars() {
        match c {
            '"' => quoted = !quoted,
            ' ' if !quoted => items.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    items.push(current);
    items
}

/// fleet's `unitPrintf`: plain replacement of `%n %N %p %i`, in that order, with no
/// `%%` escape (unit names cannot contain `%`, so the order cannot matter).
pub fn expand_specifiers(value: &str, name: &UnitName) -> String {
    if !value.contains('%') {
        return value.to_string();
    }
    value
        .replace("%n", name.as_str())
        .replace("%N", name.stem())
        .replace("%p", name.prefix())
        .replace("%i", name.instance())
}

/// fleet's `isTruthyValue`.
fn is_truthy(value: &str) -> bool {
    matches!(
        value.to_lowercase().as_str(),
        "true" | "yes" | "1" | "on" | "t"
    )
}

#[cfg(test)]
mod tests;
