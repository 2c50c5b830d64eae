//! Turning range results into sorted typed records (shared by lists and snapshots).

use std::collections::{BTreeMap, HashMap};

use etcd_client::KeyValue;
use fleet_core::{TargetState, UnitName};

use crate::codec;
use crate::error::RegistryError;
use crate::keys::{Keys, RegistryKey};
use crate::model::{MachineRecord, ScheduleEntry, UnitRecord, UnitStateRecord};

/// Joins `unit/` and `job/` ranges; a unit without a target key is `inactive` (the
/// two are always written together, so that only happens mid-destroy).
pub(crate) fn units(
    keys: &Keys,
    unit_kvs: &[KeyValue],
    job_kvs: &[KeyValue],
) -> Result<Vec<UnitRecord>, RegistryError> {
    let mut targets: HashMap<UnitName, TargetState> = HashMap::new();
    for kv in job_kvs {
        if let Some(RegistryKey::JobTarget(n)) = keys.parse(kv.key())? {
            targets.insert(n, codec::decode_target(kv.key(), kv.value())?);
        }
    }
    let mut out = Vec::with_capacity(unit_kvs.len());
    for kv in unit_kvs {
        if let Some(RegistryKey::Unit(name)) = keys.parse(kv.key())? {
            let (file, hash) = codec::decode_unit(kv.key(), kv.value())?;
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
    Ok(out)
}

pub(crate) fn machines(keys: &Keys, kvs: &[KeyValue]) -> Result<Vec<MachineRecord>, RegistryError> {
    let mut out = Vec::with_capacity(kvs.len());
    for kv in kvs {
        if let Some(RegistryKey::Machine(id)) = keys.parse(kv.key())? {
            out.push(codec::decode_machine(kv.key(), id, kv.value())?);
        }
    }
    out.sort_by(|a, b| a.machine.id.cmp(&b.machine.id));
    crate::metadata::merge(keys, kvs, &mut out)?;
    Ok(out)
}

pub(crate) fn schedule(keys: &Keys, kvs: &[KeyValue]) -> Result<Vec<ScheduleEntry>, RegistryError> {
    let mut out = Vec::with_capacity(kvs.len());
    for kv in kvs {
        if let Some(RegistryKey::Schedule(m, n)) = keys.parse(kv.key())? {
            out.push(codec::decode_schedule(kv.key(), m, n, kv.value())?);
        }
    }
    out.sort_by(|a, b| (&a.machine, &a.unit).cmp(&(&b.machine, &b.unit)));
    Ok(out)
}

pub(crate) fn states(keys: &Keys, kvs: &[KeyValue]) -> Result<Vec<UnitStateRecord>, RegistryError> {
    let mut out = Vec::with_capacity(kvs.len());
    for kv in kvs {
        if let Some(RegistryKey::State(n, m)) = keys.parse(kv.key())? {
            out.push(codec::decode_state(kv.key(), n, m, kv.value())?);
        }
    }
    out.sort_by(|a, b| (&a.unit, &a.machine).cmp(&(&b.unit, &b.machine)));
    Ok(out)
}

pub(crate) fn unplaced(
    keys: &Keys,
    kvs: &[KeyValue],
) -> Result<BTreeMap<UnitName, String>, RegistryError> {
    let mut out = BTreeMap::new();
    for kv in kvs {
        if let Some(RegistryKey::Unplaced(n)) = keys.parse(kv.key())? {
            out.insert(n, codec::decode_unplaced(kv.value()));
        }
    }
    Ok(out)
}
