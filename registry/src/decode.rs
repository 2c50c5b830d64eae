//! Turning range results into sorted typed records (shared by lists and snapshots).
//!
//! One undecodable key or value never fails a read: it is left out and reported as a
//! [`Skipped`], so one corrupt record cannot stop the engine or the list commands
//! (they show the rest and name the key).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use etcd_client::KeyValue;
use fleet_core::{MachineId, TargetState, UnitName};

use crate::codec;
use crate::error::RegistryError;
use crate::keys::{Keys, RegistryKey};
use crate::model::{MachineRecord, ScheduleEntry, Skipped, UnitRecord, UnitStateRecord};

/// Records `kv` as skipped because of `e`, about `unit` if the key names one.
fn skip(out: &mut Vec<Skipped>, kv: &KeyValue, unit: Option<&UnitName>, e: RegistryError) {
    skip_as(out, kv, unit, false, e)
}

/// [`skip`] of a key of the unit's own record (`unit/`, `job/`).
fn skip_as(
    out: &mut Vec<Skipped>,
    kv: &KeyValue,
    unit: Option<&UnitName>,
    unit_record: bool,
    e: RegistryError,
) {
    let reason = match e {
        RegistryError::Corrupt { reason, .. } => reason,
        e => e.to_string(),
    };
    out.push(Skipped {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        revision: kv.mod_revision(),
        unit: unit.cloned(),
        unit_record,
        reason,
    });
}

/// The key of `kv`, parsed; an unparsable key is skipped (`None`).
fn parse(keys: &Keys, kv: &KeyValue, skipped: &mut Vec<Skipped>) -> Option<RegistryKey> {
    match keys.parse(kv.key()) {
        Ok(k) => k,
        Err(e) => {
            skip(skipped, kv, None, e);
            None
        }
    }
}

/// Joins `unit/` and `job/` ranges; a unit without a target key is `inactive` (the
/// two are always written together, so that only happens mid-destroy). A unit whose
/// text or target cannot be decoded is left out whole (never shown or planned with a
/// made-up target).
pub(crate) fn units(
    keys: &Keys,
    unit_kvs: &[KeyValue],
    job_kvs: &[KeyValue],
    skipped: &mut Vec<Skipped>,
) -> Vec<UnitRecord> {
    let mut targets: HashMap<UnitName, TargetState> = HashMap::new();
    let mut bad: BTreeSet<UnitName> = BTreeSet::new();
    for kv in job_kvs {
        if let Some(RegistryKey::JobTarget(n)) = parse(keys, kv, skipped) {
            match codec::decode_target(kv.key(), kv.value()) {
                Ok(t) => {
                    targets.insert(n, t);
                }
                Err(e) => {
                    skip_as(skipped, kv, Some(&n), true, e);
                    bad.insert(n);
                }
            }
        }
    }
    let mut out = Vec::with_capacity(unit_kvs.len());
    for kv in unit_kvs {
        if let Some(RegistryKey::Unit(name)) = parse(keys, kv, skipped) {
            let (file, hash) = match codec::decode_unit(kv.key(), kv.value()) {
                Ok(d) => d,
                Err(e) => {
                    skip_as(skipped, kv, Some(&name), true, e);
                    continue;
                }
            };
            if bad.contains(&name) {
                continue;
            }
            let target = targets.get(&name).copied().unwrap_or(TargetState::Inactive);
            out.push(UnitRecord {
                name,
                file,
                hash,
                target,
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

pub(crate) fn machines(
    keys: &Keys,
    kvs: &[KeyValue],
    skipped: &mut Vec<Skipped>,
) -> Vec<MachineRecord> {
    let mut out = Vec::with_capacity(kvs.len());
    for kv in kvs {
        if let Some(RegistryKey::Machine(id)) = parse(keys, kv, skipped) {
            match codec::decode_machine(kv.key(), id, kv.value()) {
                Ok(m) => out.push(m),
                Err(e) => skip(skipped, kv, None, e),
            }
        }
    }
    out.sort_by(|a, b| a.machine.id.cmp(&b.machine.id));
    crate::metadata::merge(keys, kvs, &mut out, skipped);
    out
}

/// Placements without the unit texts they may carry: a snapshot has the texts in its
/// units already.
pub(crate) fn schedule(
    keys: &Keys,
    kvs: &[KeyValue],
    skipped: &mut Vec<Skipped>,
) -> Vec<ScheduleEntry> {
    schedule_with_texts(keys, kvs, skipped)
        .into_iter()
        .map(ScheduleEntry::without_text)
        .collect()
}

/// Placements as stored, texts included (the agent's own schedule).
pub(crate) fn schedule_with_texts(
    keys: &Keys,
    kvs: &[KeyValue],
    skipped: &mut Vec<Skipped>,
) -> Vec<ScheduleEntry> {
    let mut out = Vec::with_capacity(kvs.len());
    for kv in kvs {
        if let Some(RegistryKey::Schedule(m, n)) = parse(keys, kv, skipped) {
            let unit = n.clone();
            match codec::decode_schedule(kv.key(), m, n, kv.value()) {
                Ok(e) => out.push(e),
                Err(e) => skip(skipped, kv, Some(&unit), e),
            }
        }
    }
    out.sort_by(|a, b| (&a.machine, &a.unit).cmp(&(&b.machine, &b.unit)));
    out
}

pub(crate) fn states(
    keys: &Keys,
    kvs: &[KeyValue],
    skipped: &mut Vec<Skipped>,
) -> Vec<UnitStateRecord> {
    let mut out = Vec::with_capacity(kvs.len());
    for kv in kvs {
        if let Some(RegistryKey::State(n, m)) = parse(keys, kv, skipped) {
            let unit = n.clone();
            match codec::decode_state(kv.key(), n, m, kv.value()) {
                Ok(s) => out.push(s),
                Err(e) => skip(skipped, kv, Some(&unit), e),
            }
        }
    }
    out.sort_by(|a, b| (&a.unit, &a.machine).cmp(&(&b.unit, &b.machine)));
    out
}

pub(crate) fn unplaced(
    keys: &Keys,
    kvs: &[KeyValue],
    skipped: &mut Vec<Skipped>,
) -> BTreeMap<UnitName, String> {
    let mut out = BTreeMap::new();
    for kv in kvs {
        if let Some(RegistryKey::Unplaced(n)) = parse(keys, kv, skipped) {
            out.insert(n, codec::decode_unplaced(kv.value()));
        }
    }
    out
}

/// The machine ids of `drain/` keys (a drain's whole record is its key).
pub(crate) fn drained(
    keys: &Keys,
    kvs: &[KeyValue],
    skipped: &mut Vec<Skipped>,
) -> BTreeSet<MachineId> {
    let mut out = BTreeSet::new();
    for kv in kvs {
        match parse(keys, kv, skipped) {
            Some(RegistryKey::Drain(m)) => {
                out.insert(m);
            }
            Some(_) => skip(
                skipped,
                kv,
                None,
                RegistryError::corrupt(kv.key(), "not a drain key"),
            ),
            None => {}
        }
    }
    out
}

/// Decodes one unit (with its target) for a read that asked for it by name: a corrupt
/// record is an error naming its key, since there is nothing else to show.
pub(crate) fn one_unit(
    keys: &Keys,
    unit_kvs: &[KeyValue],
    job_kvs: &[KeyValue],
) -> Result<Option<UnitRecord>, RegistryError> {
    let mut skipped = Vec::new();
    let unit = units(keys, unit_kvs, job_kvs, &mut skipped)
        .into_iter()
        .next();
    match skipped.into_iter().next() {
        Some(s) => Err(RegistryError::Corrupt {
            key: crate::error::visible(&s.key),
            reason: s.reason,
        }),
        None => Ok(unit),
    }
}
