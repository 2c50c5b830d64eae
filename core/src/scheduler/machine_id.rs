//! `MachineID=`: the unit runs only on that machine, named by its full id or the
//! 8-character short form (fleet's `MatchID`; its docs say full id only).

use super::Reject;
use super::snapshot::Snapshot;

/// Whether the machine's full or short id equals the requirement.
pub(super) fn check(snap: &Snapshot<'_>, unit: u32, machine: u32) -> Result<(), Reject> {
    match &snap.units[unit as usize].requirements.machine_id {
        None => Ok(()),
        Some(want) => {
            let id = &snap.machines[machine as usize].id;
            if id.as_str() == want || id.short() == want {
                Ok(())
            } else {
                Err(Reject::MachineId)
            }
        }
    }
}

/// The machines a `MachineID=` value names, ascending: straight to them, no ranking scan.
pub(super) fn candidates(snap: &Snapshot<'_>, want: &str) -> Vec<u32> {
    let mut out: Vec<u32> = snap.machine_by_id.get(want).copied().into_iter().collect();
    if let Some(short) = snap.machine_by_short.get(want) {
        out.extend(short);
    }
    out.sort_unstable();
    out.dedup();
    out
}
