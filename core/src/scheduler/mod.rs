//! The pure scheduler: from a cluster snapshot to placement decisions, with a reason
//! for every unit it cannot place. No I/O, no clock, no randomness: the same
//! [`ClusterView`] always yields the same [`Plan`].
//!
//! Pipeline (Nomad's shape, fleet's rules, see `pass.rs`): build an indexed snapshot
//! once (`snapshot.rs`), keep a proposed state updated as decisions are made
//! (`proposed.rs`), and for each unit rank candidate machines least-loaded first
//! (`rank.rs`) through a chain of checks, one file per constraint, each returning
//! `Result<(), Reject>`. Rejections are counted into one sentence (`explain.rs`).

mod conflicts;
mod cycles;
mod explain;
mod global;
mod machine_id;
mod machine_of;
mod metadata;
mod pass;
mod patterns;
mod proposed;
mod rank;
mod replaces;
mod snapshot;
mod view;

pub use view::{ClusterView, Plan, UnitSpec, UnplaceReason};

use crate::Namespaces;
use proposed::Proposed;
use snapshot::Snapshot;

/// Computes the decisions of one engine pass (only the `default` namespace exists).
pub fn plan(view: &ClusterView) -> Plan {
    pass::run(view, &Namespaces::default())
}

/// Computes the decisions of one engine pass over units of several namespaces.
///
/// A unit's namespace is read from its stored name (`Namespaces::split`); its rules
/// (`Conflicts=`, `Replaces=` globs, `MachineOf=` names, already expanded for its name
/// within the namespace) see only units of that namespace, and it is placed only on the
/// machines its namespace's selector admits. With no namespaces this is [`plan`].
pub fn plan_in(view: &ClusterView, namespaces: &Namespaces) -> Plan {
    pass::run(view, namespaces)
}

/// Why one machine cannot take one unit; names the constraint and the other party.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reject {
    MachineId,
    Metadata,
    /// This `MachineOf=` target is elsewhere (or nowhere).
    PeerElsewhere(u32),
    /// A `MachineOf=` target names no known unit.
    PeerUnknown,
    /// Named lazily (`conflicts::culprit`): finding the other unit costs a scan.
    Conflict,
    ReplacedBy(u32),
    /// An operator drained the machine.
    Drained,
    /// The unit's namespace is bound to machines this one is not among.
    Namespace,
}

/// Every check, cheapest first; the first failure is the machine's reason.
fn feasible(snap: &Snapshot<'_>, prop: &Proposed, unit: u32, machine: u32) -> Result<(), Reject> {
    // One array lookup: a drained machine takes nothing and keeps nothing.
    if snap.drained[machine as usize] {
        return Err(Reject::Drained);
    }
    // One array lookup: the verdict is memoised per metadata class.
    namespace_fits(snap, unit, machine)?;
    // One string comparison, and only with `MachineID=`.
    machine_id::check(snap, unit, machine)?;
    // One array lookup: the verdict is memoised per metadata class.
    metadata_fits(snap, unit, machine)?;
    // One lookup per target; reads the proposed state.
    machine_of::check(snap, prop, unit, machine)?;
    // Counter lookups per glob, no glob matching; reads the proposed state.
    conflicts::check(snap, prop, unit, machine)?;
    // Scans the units on the machine, but only when `Replaces=` is involved there.
    replaces::check(snap, prop, unit, machine)
}

/// The machine's class must be admitted by the unit's requirement (memoised verdict).
fn metadata_fits(snap: &Snapshot<'_>, unit: u32, machine: u32) -> Result<(), Reject> {
    let e = snap.eligible_of(unit);
    if e.all || e.mask[snap.class_of[machine as usize] as usize] {
        Ok(())
    } else {
        Err(Reject::Metadata)
    }
}

/// The machine must be one of the unit's namespace's machines (memoised per class).
fn namespace_fits(snap: &Snapshot<'_>, unit: u32, machine: u32) -> Result<(), Reject> {
    match &snap.ns_admits[snap.ns_of[unit as usize] as usize] {
        Some(admits) if !admits[snap.class_of[machine as usize] as usize] => Err(Reject::Namespace),
        _ => Ok(()),
    }
}
