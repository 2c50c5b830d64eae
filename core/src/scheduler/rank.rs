//! Choosing a machine: candidates in (units on machine, machine id) order, the first
//! that passes every check wins (fleet's least-loaded rule, §5.3.5).
//!
//! Cost: `MachineID=`/`MachineOf=` go straight to their one machine. Otherwise only
//! metadata classes admitted by the unit are walked, through per-class load indices
//! (a k-way merge when few classes qualify, the global load index filtered by class when
//! many do), and classes where every machine conflicts are skipped whole. A placement is
//! O(log M) plus the machines rejected before the first fit, which least-loaded order
//! keeps short for homogeneous groups (their members raise the load of the machines
//! they take).

use std::borrow::Cow;

use super::explain::{Tally, describe};
use super::proposed::{Proposed, key_machine, load_key};
use super::snapshot::Snapshot;
use super::{Reject, conflicts, feasible, machine_id, machine_of};

/// Up to this many admitted classes, merge their load indices; beyond, filter the global
/// one (most machines then qualify, so few are skipped).
const MERGE_LIMIT: usize = 16;

/// The machine for `unit`, or one sentence saying why there is none.
pub(super) fn choose(snap: &Snapshot<'_>, prop: &Proposed, unit: u32) -> Result<u32, String> {
    let mut tally = Tally::default();
    let accept = |m: u32| feasible(snap, prop, unit, m);
    if !snap.info[unit as usize].peers.is_empty() {
        let cands = machine_of::candidates(snap, prop, unit)?;
        return first_fit(prop, &cands, &mut tally, accept).ok_or_else(|| {
            let target = machine_of::first_target(snap, unit);
            match tally.single() {
                Some((r, m)) => format!(
                    "MachineOf target {target} is on {}, where {}",
                    snap.machine_short(m),
                    describe(snap, prop, unit, r, m)
                ),
                None => format!(
                    "no machine holding MachineOf target {target} accepts it: {}",
                    tally.sentence(snap, prop, unit)
                ),
            }
        });
    }
    if let Some(want) = &snap.units[unit as usize].requirements.machine_id {
        let cands = machine_id::candidates(snap, want);
        if cands.is_empty() {
            return Err(format!("no machine has MachineID {want}"));
        }
        return first_fit(prop, &cands, &mut tally, accept).ok_or_else(|| match tally.single() {
            Some((r, m)) => format!(
                "MachineID {want} is {}, where {}",
                snap.machine_short(m),
                describe(snap, prop, unit, r, m)
            ),
            None => format!(
                "no machine with MachineID {want} accepts it: {}",
                tally.sentence(snap, prop, unit)
            ),
        });
    }
    let e = snap.eligible_of(unit);
    if e.classes.is_empty() {
        return Err(match e.missing.as_deref() {
            Some(clause) if !clause.is_empty() => format!("no machine has {clause}"),
            _ => "no machines in the cluster".to_string(),
        });
    }
    least_loaded(snap, prop, unit, &mut tally, accept)
        .ok_or_else(|| tally.sentence(snap, prop, unit))
}

/// The first of a few candidate machines, least loaded first, that passes.
fn first_fit(
    prop: &Proposed,
    cands: &[u32],
    tally: &mut Tally,
    mut accept: impl FnMut(u32) -> Result<(), Reject>,
) -> Option<u32> {
    let mut keys: Vec<u64> = cands.iter().map(|&m| load_key(prop.load(m), m)).collect();
    keys.sort_unstable();
    keys.into_iter()
        .map(key_machine)
        .find(|&m| match accept(m) {
            Ok(()) => true,
            Err(r) => {
                tally.reject(r, m);
                false
            }
        })
}

/// Walks the admitted classes' machines in load order until one passes.
fn least_loaded(
    snap: &Snapshot<'_>,
    prop: &Proposed,
    unit: u32,
    tally: &mut Tally,
    mut accept: impl FnMut(u32) -> Result<(), Reject>,
) -> Option<u32> {
    let e = snap.eligible_of(unit);
    let info = &snap.info[unit as usize];
    let mut classes: Cow<'_, [u32]> = Cow::Borrowed(&e.classes);
    if !info.conflicts.is_empty() || !info.matched.is_empty() {
        let open: Vec<u32> = e
            .classes
            .iter()
            .copied()
            .filter(|&c| {
                let blocked = conflicts::blocks_class(snap, prop, unit, c);
                if blocked {
                    let members = &snap.class_members[c as usize];
                    tally.reject_many(Reject::Conflict, members[0], members.len());
                }
                !blocked
            })
            .collect();
        if open.len() != e.classes.len() {
            classes = Cow::Owned(open);
        }
    }
    let mut try_key = |key: u64| {
        let m = key_machine(key);
        match accept(m) {
            Ok(()) => Some(m),
            Err(r) => {
                tally.reject(r, m);
                None
            }
        }
    };
    let whole = classes.len() == snap.class_members.len();
    if whole {
        return prop.by_load.iter().find_map(|&k| try_key(k));
    }
    if classes.len() > MERGE_LIMIT {
        let mut mask = vec![false; snap.class_members.len()];
        for &c in classes.iter() {
            mask[c as usize] = true;
        }
        return prop
            .by_load
            .iter()
            .filter(|&&k| mask[snap.class_of[key_machine(k) as usize] as usize])
            .find_map(|&k| try_key(k));
    }
    let mut heads: Vec<_> = classes
        .iter()
        .map(|&c| prop.by_load_in_class[c as usize].iter().peekable())
        .collect();
    loop {
        let mut best: Option<(usize, u64)> = None;
        for (i, it) in heads.iter_mut().enumerate() {
            if let Some(&&k) = it.peek()
                && best.is_none_or(|(_, b)| k < b)
            {
                best = Some((i, k));
            }
        }
        let (i, k) = best?;
        heads[i].next();
        if let Some(m) = try_key(k) {
            return Some(m);
        }
    }
}
