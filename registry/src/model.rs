//! The typed records the registry reads and writes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use fleet_core::{Machine, MachineId, SystemdState, TargetState, UnitFile, UnitHash, UnitName};

/// A submitted unit with its desired state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitRecord {
    pub name: UnitName,
    pub file: UnitFile,
    /// The hash stored with the text (fleet's unit identity).
    pub hash: UnitHash,
    pub target: TargetState,
}

/// What `create_unit` did: fleet's create-only rule, where the same name with other
/// content is refused and the registry's copy kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreateOutcome {
    Created,
    /// Same name and same content already present: nothing written.
    Identical,
    /// Same name, other content: nothing written.
    Differs {
        existing: UnitHash,
    },
}

/// A live machine plus where its agent's API listens (for journal/status).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MachineRecord {
    pub machine: Machine,
    pub api_addr: String,
}

/// One placement decided by the engine: `unit` should be at `target` on `machine`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleEntry {
    pub machine: MachineId,
    pub unit: UnitName,
    /// Hash of the unit text the engine placed (the agent loads exactly this).
    pub hash: UnitHash,
    pub target: TargetState,
    /// The unit's canonical text, carried in the placement when it is at most
    /// [`ScheduleEntry::INLINE_TEXT_MAX`] bytes, so the agent loads it without a read of
    /// `unit/` (one etcd read per agent round saved). Only the agent's own schedule
    /// reads keep it; snapshots and the engine's view drop it.
    pub text: Option<Arc<str>>,
}

impl ScheduleEntry {
    /// The largest unit text a placement carries: most unit files fit, and a full
    /// batch of placements (128) stays far below etcd's request limit.
    pub const INLINE_TEXT_MAX: usize = 2048;

    /// This placement without its text: what snapshots and the engine's view keep, as
    /// they hold the texts in their units already.
    pub fn without_text(self) -> Self {
        ScheduleEntry { text: None, ..self }
    }

    /// Makes this placement carry `file`'s text, if it is small enough.
    pub fn carry_text_of(&mut self, file: &UnitFile) {
        let text = file.canonical();
        self.text = (text.len() <= Self::INLINE_TEXT_MAX).then(|| Arc::from(text));
    }
}

/// What one agent reports about one unit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitStateRecord {
    pub unit: UnitName,
    pub machine: MachineId,
    pub hash: UnitHash,
    /// How far the agent got: `Loaded` or `Launched` (never `Inactive`: the agent
    /// deletes the record instead).
    pub state: TargetState,
    pub systemd: SystemdState,
}

/// A stored key or value this version could not decode: left out of what was read,
/// and named so an operator can fix or delete it (`etcdctl del KEY`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub key: String,
    /// The value's mod revision: a rewrite of the same key is a new skip to report.
    pub revision: i64,
    /// The unit the key is about (`unit/`, `job/`, `schedule/`, `machine-state/`), if any.
    pub unit: Option<UnitName>,
    /// Whether the key is part of the unit's own record (`unit/` or `job/`): the unit
    /// itself is then missing from what was read.
    pub unit_record: bool,
    pub reason: String,
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "skipped corrupt registry value at {}: {}",
            crate::error::visible(&self.key),
            crate::error::visible(&self.reason)
        )
    }
}

/// Records read from one range, with what could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed<T> {
    pub items: Vec<T>,
    pub skipped: Vec<Skipped>,
}

/// The whole cluster at one etcd revision, read in one txn.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterSnapshot {
    /// Watch from `revision + 1` to continue exactly where this snapshot ends.
    pub revision: i64,
    /// Sorted by name.
    pub units: Vec<UnitRecord>,
    /// Sorted by id.
    pub machines: Vec<MachineRecord>,
    /// Sorted by machine, then unit.
    pub schedule: Vec<ScheduleEntry>,
    /// Sorted by unit, then machine.
    pub states: Vec<UnitStateRecord>,
    /// Why the engine could not place a unit.
    pub unplaced: BTreeMap<UnitName, String>,
    /// Machines an operator drained (`drain/`), live or not.
    pub drained: BTreeSet<MachineId>,
    /// Keys left out because their values could not be decoded, in key order.
    pub skipped: Vec<Skipped>,
}

impl ClusterSnapshot {
    /// Where `unit` is scheduled (the first machine, for a unit placed twice).
    pub fn scheduled_on(&self, unit: &UnitName) -> Option<&MachineId> {
        self.schedule
            .iter()
            .find(|e| &e.unit == unit)
            .map(|e| &e.machine)
    }

    /// The records agents published for `unit`.
    pub fn states_of<'a>(
        &'a self,
        unit: &'a UnitName,
    ) -> impl Iterator<Item = &'a UnitStateRecord> + 'a {
        self.states.iter().filter(move |s| &s.unit == unit)
    }

    /// `unit`'s current state ("STATE" column), see [`crate::current_state`].
    pub fn current_state(&self, unit: &UnitName) -> TargetState {
        crate::current_state(self.scheduled_on(unit), self.states_of(unit))
    }

    /// Units whose own record (`unit/` or `job/`) was skipped: missing here.
    pub fn unreadable_units(&self) -> std::collections::BTreeSet<&UnitName> {
        self.skipped
            .iter()
            .filter(|s| s.unit_record)
            .filter_map(|s| s.unit.as_ref())
            .collect()
    }
}

/// A unit's current state, derived as fleet does (behaviour §4.2, adapted):
/// `inactive` if the unit is not scheduled or the scheduled machine has not reported
/// it, else the state that machine reports (`loaded` or `launched`). Reports from other
/// machines (a unit being moved away) are ignored.
pub fn current_state<'a>(
    scheduled_on: Option<&MachineId>,
    states: impl IntoIterator<Item = &'a UnitStateRecord>,
) -> TargetState {
    let Some(machine) = scheduled_on else {
        return TargetState::Inactive;
    };
    states
        .into_iter()
        .find(|s| &s.machine == machine)
        .map_or(TargetState::Inactive, |s| s.state)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(m: &str, state: TargetState) -> UnitStateRecord {
        UnitStateRecord {
            unit: UnitName::parse("a.service").unwrap(),
            machine: MachineId::new(m).unwrap(),
            hash: UnitHash([0; 20]),
            state,
            systemd: SystemdState::default(),
        }
    }

    #[test]
    fn current_state_table() {
        let m1 = MachineId::new("m1").unwrap();
        let launched_m1 = [rec("m1", TargetState::Launched)];
        let loaded_m2 = [rec("m2", TargetState::Loaded)];
        // not scheduled: inactive even if some machine still reports it
        assert_eq!(current_state(None, &launched_m1), TargetState::Inactive);
        // scheduled, no report yet
        assert_eq!(current_state(Some(&m1), &[]), TargetState::Inactive);
        // scheduled, only another machine reports
        assert_eq!(current_state(Some(&m1), &loaded_m2), TargetState::Inactive);
        // scheduled and reported by that machine
        assert_eq!(
            current_state(Some(&m1), &launched_m1),
            TargetState::Launched
        );
    }
}

/// An etcd lease id. Shown in hex, as etcdctl does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LeaseId(pub i64);

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}
