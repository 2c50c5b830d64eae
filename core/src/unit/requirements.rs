//! `[X-Fleet]` requirements as typed values, with fleet's validation and specifiers.
//! (Interface fixed; implementation in progress.)

use std::collections::{BTreeMap, BTreeSet};

use super::{UnitFile, UnitGlob, UnitName};

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
    pub fn parse(_file: &UnitFile) -> Result<Requirements, InvalidRequirements> {
        todo!("requirements parsing")
    }

    /// The requirements of `name` with `%n %N %p %i` expanded in every value.
    pub fn for_unit(_file: &UnitFile, _name: &UnitName) -> Requirements {
        todo!("specifier expansion")
    }
}
