//! `Conflicts=`: globs of units that must not share a machine, in both directions (a
//! unit without `Conflicts=` is still kept away from units whose globs match it).
//!
//! Never cached across decisions (it reads the proposed state), but cheap: per-machine
//! counters of which globs are present (`proposed.rs`), no glob matching at check time.

use super::Reject;
use super::patterns::intersects;
use super::proposed::Proposed;
use super::snapshot::Snapshot;

pub(super) fn check(
    snap: &Snapshot<'_>,
    prop: &Proposed,
    unit: u32,
    machine: u32,
) -> Result<(), Reject> {
    let info = &snap.info[unit as usize];
    let forward = info.conflicts.iter().any(|&p| prop.has_hit(machine, p));
    if forward || info.matched.iter().any(|&p| prop.has_declared(machine, p)) {
        Err(Reject::Conflict)
    } else {
        Ok(())
    }
}

/// Whether `a` and `b` conflict (either side's globs match the other's name).
pub(super) fn between(snap: &Snapshot<'_>, a: u32, b: u32) -> bool {
    let (ia, ib) = (&snap.info[a as usize], &snap.info[b as usize]);
    intersects(&ia.conflicts, &ib.matched) || intersects(&ib.conflicts, &ia.matched)
}

/// The first unit on `machine` that `unit` conflicts with, to name it in explanations.
pub(super) fn culprit(
    snap: &Snapshot<'_>,
    prop: &Proposed,
    unit: u32,
    machine: u32,
) -> Option<u32> {
    let mut on = prop.on[machine as usize].clone();
    on.sort_unstable();
    on.into_iter()
        .find(|&v| v != unit && between(snap, unit, v))
}

/// Whether every machine of `class` holds a unit matching one of the unit's globs, or a
/// unit whose globs match it: then the ranker skips the whole class without a scan.
/// (Exact for one glob; several globs each covering part of a class fall back to the scan.)
pub(super) fn blocks_class(snap: &Snapshot<'_>, prop: &Proposed, unit: u32, class: u32) -> bool {
    let info = &snap.info[unit as usize];
    let size = snap.class_members[class as usize].len() as u32;
    info.conflicts
        .iter()
        .any(|&p| prop.class_hits(p, class) == size)
        || info
            .matched
            .iter()
            .any(|&p| prop.class_declares(p, class) == size)
}
