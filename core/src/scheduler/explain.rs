//! Why a unit has no machine: rejections are counted per reason while candidates are
//! evaluated (Nomad's `AllocMetric`), then turned into one sentence for users.

use std::mem::discriminant;

use super::Reject;
use super::conflicts;
use super::proposed::Proposed;
use super::snapshot::{Peer, Snapshot};

/// Rejections of one placement attempt: per kind, how many machines and a sample.
#[derive(Default)]
pub(super) struct Tally {
    kinds: Vec<(Reject, u32, usize)>,
}

impl Tally {
    pub(super) fn reject(&mut self, reject: Reject, machine: u32) {
        self.reject_many(reject, machine, 1);
    }

    pub(super) fn reject_many(&mut self, reject: Reject, machine: u32, count: usize) {
        match self
            .kinds
            .iter_mut()
            .find(|(r, _, _)| discriminant(r) == discriminant(&reject))
        {
            Some((_, _, n)) => *n += count,
            None => self.kinds.push((reject, machine, count)),
        }
    }

    /// Exactly one machine was tried and it said no: its reason alone.
    pub(super) fn single(&self) -> Option<(Reject, u32)> {
        match self.kinds.as_slice() {
            [(r, m, 1)] => Some((*r, *m)),
            _ => None,
        }
    }

    /// One sentence over all eligible machines, e.g. "conflicts with web@2.service on
    /// every eligible machine". Must be called before the proposed state changes, so the
    /// sample machines still hold what rejected the unit.
    pub(super) fn sentence(&self, snap: &Snapshot<'_>, prop: &Proposed, unit: u32) -> String {
        match self.kinds.as_slice() {
            [] => "no eligible machine".to_string(),
            [(Reject::Conflict, m, n)] => {
                let with = conflict_name(snap, prop, unit, *m);
                if *n == 1 {
                    format!("conflicts with {with} on every eligible machine")
                } else {
                    format!(
                        "conflicts with units on all {n} eligible machines (e.g. {with} on {})",
                        snap.machine_short(*m)
                    )
                }
            }
            [(r, m, n)] => {
                let clause = describe(snap, prop, unit, *r, *m);
                let m8 = snap.machine_short(*m);
                if *n == 1 {
                    format!("on the only eligible machine ({m8}), {clause}")
                } else {
                    format!("on all {n} eligible machines, e.g. {m8}, {clause}")
                }
            }
            kinds => {
                let parts: Vec<String> = kinds
                    .iter()
                    .map(|(r, m, n)| {
                        format!(
                            "{n} where {} (e.g. {})",
                            describe(snap, prop, unit, *r, *m),
                            snap.machine_short(*m)
                        )
                    })
                    .collect();
                format!("every eligible machine rejects it: {}", parts.join("; "))
            }
        }
    }
}

fn conflict_name(snap: &Snapshot<'_>, prop: &Proposed, unit: u32, machine: u32) -> String {
    conflicts::culprit(snap, prop, unit, machine).map_or_else(
        || "another unit".to_string(),
        |v| snap.unit_name(v).to_string(),
    )
}

/// A clause saying why `machine` rejected `unit`, to follow "where".
pub(super) fn describe(
    snap: &Snapshot<'_>,
    prop: &Proposed,
    unit: u32,
    reject: Reject,
    machine: u32,
) -> String {
    match reject {
        Reject::MachineId => format!(
            "MachineID={} does not match",
            snap.units[unit as usize]
                .requirements
                .machine_id
                .as_deref()
                .unwrap_or_default()
        ),
        Reject::Metadata => format!("the machine lacks {}", snap.eligible_of(unit).text),
        Reject::PeerElsewhere(p) => format!("MachineOf target {} is not there", snap.unit_name(p)),
        Reject::PeerUnknown => {
            let name = snap.info[unit as usize]
                .peers
                .iter()
                .find_map(|p| match p {
                    Peer::Unknown(n) => Some(*n),
                    Peer::Unit(_) => None,
                })
                .unwrap_or_default();
            format!("MachineOf target {name} does not exist")
        }
        Reject::Conflict => format!(
            "it conflicts with {}",
            conflict_name(snap, prop, unit, machine)
        ),
        Reject::ReplacedBy(v) => format!("{} replaces it", snap.unit_name(v)),
        Reject::Drained => "the machine is drained".to_string(),
        Reject::Namespace => {
            let ns = snap.ns_of[unit as usize] as usize;
            format!(
                "namespace {} is bound to machines with {}",
                snap.ns_names[ns], snap.ns_selectors[ns]
            )
        }
    }
}
