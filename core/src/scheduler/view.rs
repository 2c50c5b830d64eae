//! The scheduler's input and output values.

use std::collections::BTreeSet;
use std::fmt;

use crate::{Machine, MachineId, Requirements, TargetState, UnitName};

/// Everything one scheduling pass looks at, read from the registry at one revision.
///
/// The scheduler trusts nothing about it: duplicate machines or units (the first wins),
/// placements of unknown units or on absent machines, inactive units still placed and
/// non-global units placed twice are all tolerated and turned into `unplace` decisions.
#[derive(Clone, Debug, Default)]
pub struct ClusterView {
    /// Live machines (those whose registry key has not expired).
    pub machines: Vec<Machine>,
    /// Every unit fleet knows, with requirements already specifier-expanded for that
    /// unit (`Requirements::for_unit`), so the scheduler only sees concrete names and globs.
    pub units: Vec<UnitSpec>,
    /// The current schedule: `(unit, machine)`, one entry per machine for global units.
    pub placements: Vec<(UnitName, MachineId)>,
    /// Machines an operator drained (`fleetctl drain`): no unit may stay or be placed
    /// there. Ids of absent machines are ignored.
    pub drained: BTreeSet<MachineId>,
}

/// One unit as the scheduler needs it: its name, what the user asked for, its rules.
#[derive(Clone, Debug)]
pub struct UnitSpec {
    pub name: UnitName,
    /// Only `loaded`/`launched` units are placed; placed `inactive` units are unplaced.
    pub target: TargetState,
    pub requirements: Requirements,
}

/// The decisions of one pass, each list sorted by (unit, machine) so equal inputs give
/// byte-equal plans. Applying it and planning again yields a plan without changes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// New placements to write.
    pub place: Vec<(UnitName, MachineId)>,
    /// Placements to delete, with why (shown to users and logged by the engine).
    pub unplace: Vec<(UnitName, MachineId, UnplaceReason)>,
    /// Placements that stay as they are (stability: nothing moves without a reason).
    pub keep: Vec<(UnitName, MachineId)>,
    /// Units that want to run but have no machine, each with one sentence saying why
    /// (fleet never said; `list-unit-files` shows it).
    pub unplaceable: Vec<(UnitName, String)>,
    /// Rules the scheduler had to ignore, per unit, in words (e.g. a `Replaces=` cycle),
    /// so users learn why a rule had no effect.
    pub notes: Vec<(UnitName, String)>,
}

impl Plan {
    /// Whether the plan changes nothing in the registry.
    pub fn is_noop(&self) -> bool {
        self.place.is_empty() && self.unplace.is_empty()
    }

    /// The schedule after this plan is written: `current` minus `unplace` plus `place`,
    /// sorted. The engine's write path and the tests use it to check idempotence.
    pub fn apply_to(&self, current: &[(UnitName, MachineId)]) -> Vec<(UnitName, MachineId)> {
        let gone: BTreeSet<(&UnitName, &MachineId)> =
            self.unplace.iter().map(|(u, m, _)| (u, m)).collect();
        let mut out: BTreeSet<(UnitName, MachineId)> = current
            .iter()
            .filter(|(u, m)| !gone.contains(&(u, m)))
            .cloned()
            .collect();
        out.extend(self.place.iter().cloned());
        out.into_iter().collect()
    }
}

/// Why a placement is removed: a closed list of plain sentences, as fleet's task reasons.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnplaceReason {
    /// The user set the target state to `inactive`.
    TargetInactive,
    /// The unit was destroyed but its placement remained.
    UnitRemoved,
    /// Templates only describe instances; they never run themselves.
    Template,
    /// The machine's registry key expired or was removed.
    MachineGone,
    /// A non-global unit was placed on several machines; it keeps the first.
    Duplicate,
    /// The machine no longer satisfies a rule; the text says which.
    Ineligible(String),
    /// A unit whose `Replaces=` matches this one landed on the machine.
    ReplacedBy(UnitName),
    /// The `MachineOf=` target moved away, and this unit follows it.
    PeerMoved(UnitName),
    /// An operator drained the machine (`fleetctl drain`).
    Drained,
}

impl fmt::Display for UnplaceReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnplaceReason::TargetInactive => f.write_str("target state inactive"),
            UnplaceReason::UnitRemoved => f.write_str("unit no longer exists"),
            UnplaceReason::Template => f.write_str("templates are never placed"),
            UnplaceReason::MachineGone => f.write_str("machine went away"),
            UnplaceReason::Duplicate => f.write_str("unit is already placed on another machine"),
            UnplaceReason::Ineligible(why) => write!(f, "no longer eligible: {why}"),
            UnplaceReason::ReplacedBy(by) => write!(f, "replaced by {by}"),
            UnplaceReason::PeerMoved(peer) => write!(f, "MachineOf target {peer} moved"),
            UnplaceReason::Drained => f.write_str("machine drained"),
        }
    }
}
