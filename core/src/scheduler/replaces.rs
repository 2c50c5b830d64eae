//! `Replaces=` (fleet §5.3.4): the replacer is placed like any unit (not steered towards
//! its victim); a unit it replaces that shares its machine is moved elsewhere, and may
//! not go to a machine holding a unit that replaces it. Global units are never
//! displaced. Replacement inside a cycle (`a` replaces `b` replaces `a`, or longer) is
//! ignored, as fleet ignores mutual replacement, so displacements follow an acyclic
//! graph and cannot loop; the cycle is reported as a note. A unit never displaces its
//! own `MachineOf=` targets (fleet rejects that at submit time; moving the target would
//! move the replacer with it, forever).

use super::Reject;
use super::patterns::intersects;
use super::proposed::Proposed;
use super::snapshot::{Peer, Snapshot};

/// Whether `r` displaces `x` when they share a machine.
pub(super) fn displaces(snap: &Snapshot<'_>, r: u32, x: u32) -> bool {
    let (ir, ix) = (&snap.info[r as usize], &snap.info[x as usize]);
    r != x
        && !ix.global
        && intersects(&ir.replaces, &ix.matched)
        && (ir.replace_cycle.is_none() || ir.replace_cycle != ix.replace_cycle)
        && !follows(snap, r, x)
}

/// Whether `unit` is on `target`'s `MachineOf=` chain (directly or through others).
fn follows(snap: &Snapshot<'_>, unit: u32, target: u32) -> bool {
    let mut seen = vec![unit];
    let mut todo = vec![unit];
    while let Some(u) = todo.pop() {
        for peer in &snap.info[u as usize].peers {
            if let Peer::Unit(p) = *peer {
                if p == target {
                    return true;
                }
                if !seen.contains(&p) {
                    seen.push(p);
                    todo.push(p);
                }
            }
        }
    }
    false
}

/// Scans the units on the machine only when a `Replaces=` is declared there (rare).
pub(super) fn check(
    snap: &Snapshot<'_>,
    prop: &Proposed,
    unit: u32,
    machine: u32,
) -> Result<(), Reject> {
    if prop.replacers[machine as usize] > 0
        && let Some(&by) = prop.on[machine as usize]
            .iter()
            .find(|&&v| displaces(snap, v, unit))
    {
        return Err(Reject::ReplacedBy(by));
    }
    Ok(())
}

/// The units on `machine` that `unit` displaces, sorted.
pub(super) fn victims(snap: &Snapshot<'_>, prop: &Proposed, unit: u32, machine: u32) -> Vec<u32> {
    if snap.info[unit as usize].replaces.is_empty() {
        return Vec::new();
    }
    let mut v: Vec<u32> = prop.on[machine as usize]
        .iter()
        .copied()
        .filter(|&x| displaces(snap, unit, x))
        .collect();
    v.sort_unstable();
    v
}
