//! Explicit conversions between wire messages and the core/registry types (which are
//! neither prost nor serde types), validating everything that comes off the wire.

use std::collections::BTreeMap;

use fleet_core::unit::UnitOption;
use fleet_core::{Machine, MachineId, SystemdState, TargetState, UnitFile, UnitHash, UnitName};
use fleet_registry::{
    Change, CreateOutcome, MachineRecord, RegistryKey, ScheduleEntry, Skipped, UnitRecord,
    UnitStateRecord, UnitView, WatchEvent,
};

use crate::pb;
use fleet_registry::RegistryError;
use tonic::Status;

/// A wire message that does not describe a valid value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what}: {reason}")]
pub struct WireError {
    pub what: &'static str,
    pub reason: String,
}

fn bad(what: &'static str, reason: impl std::fmt::Display) -> WireError {
    WireError {
        what,
        reason: reason.to_string(),
    }
}

pub fn target_to_wire(t: TargetState) -> i32 {
    match t {
        TargetState::Inactive => pb::TargetState::Inactive as i32,
        TargetState::Loaded => pb::TargetState::Loaded as i32,
        TargetState::Launched => pb::TargetState::Launched as i32,
    }
}

pub fn target_from_wire(v: i32) -> Result<TargetState, WireError> {
    match pb::TargetState::try_from(v) {
        Ok(pb::TargetState::Inactive) => Ok(TargetState::Inactive),
        Ok(pb::TargetState::Loaded) => Ok(TargetState::Loaded),
        Ok(pb::TargetState::Launched) => Ok(TargetState::Launched),
        _ => Err(bad("target state", format!("unknown value {v}"))),
    }
}

pub fn unit_name(s: &str) -> Result<UnitName, WireError> {
    UnitName::parse(s).map_err(|e| bad("unit name", e))
}

pub fn machine_id(s: &str) -> Result<MachineId, WireError> {
    MachineId::new(s).map_err(|e| bad("machine id", e))
}

pub fn hash_from_wire(b: &[u8]) -> Result<UnitHash, WireError> {
    <[u8; 20]>::try_from(b)
        .map(UnitHash)
        .map_err(|_| bad("unit hash", format!("{} bytes, want 20", b.len())))
}

pub fn options_to_wire(file: &UnitFile) -> Vec<pb::UnitOption> {
    file.options()
        .iter()
        .map(|o| pb::UnitOption {
            section: o.section.clone(),
            name: o.name.clone(),
            value: o.value.clone(),
        })
        .collect()
}

/// Rebuilds a unit file and checks it is one systemd would parse the same way.
pub fn file_from_wire(options: &[pb::UnitOption]) -> Result<UnitFile, WireError> {
    let file = UnitFile::from_options(
        options
            .iter()
            .map(|o| UnitOption {
                section: o.section.clone(),
                name: o.name.clone(),
                value: o.value.clone(),
            })
            .collect(),
    );
    file.check().map_err(|e| bad("unit file", e))?;
    Ok(file)
}

pub fn unit_to_wire(u: &UnitRecord) -> pb::Unit {
    pb::Unit {
        name: u.name.to_string(),
        options: options_to_wire(&u.file),
        hash: u.hash.0.to_vec(),
        target: target_to_wire(u.target),
    }
}

pub fn unit_from_wire(u: &pb::Unit) -> Result<UnitRecord, WireError> {
    Ok(UnitRecord {
        name: unit_name(&u.name)?,
        file: file_from_wire(&u.options)?,
        hash: hash_from_wire(&u.hash)?,
        target: target_from_wire(u.target)?,
    })
}

pub fn machine_to_wire(m: &MachineRecord) -> pb::Machine {
    pb::Machine {
        id: m.machine.id.to_string(),
        public_ip: m
            .machine
            .public_ip
            .map(|ip| ip.to_string())
            .unwrap_or_default(),
        metadata: m
            .machine
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        version: m.machine.version.clone(),
        disable_engine: m.machine.disable_engine,
        api_addr: m.api_addr.clone(),
    }
}

pub fn machine_from_wire(m: &pb::Machine) -> Result<MachineRecord, WireError> {
    Ok(MachineRecord {
        machine: Machine {
            id: machine_id(&m.id)?,
            public_ip: match m.public_ip.as_str() {
                "" => None,
                ip => Some(ip.parse().map_err(|e| bad("public_ip", e))?),
            },
            metadata: m
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<BTreeMap<_, _>>(),
            version: m.version.clone(),
            disable_engine: m.disable_engine,
        },
        api_addr: m.api_addr.clone(),
    })
}

pub fn skipped_to_wire(s: &Skipped) -> pb::Skipped {
    pb::Skipped {
        key: s.key.clone(),
        revision: s.revision,
        unit: s.unit.as_ref().map(ToString::to_string).unwrap_or_default(),
        unit_record: s.unit_record,
        reason: s.reason.clone(),
    }
}

pub fn skipped_from_wire(s: &pb::Skipped) -> Result<Skipped, WireError> {
    Ok(Skipped {
        key: s.key.clone(),
        revision: s.revision,
        unit: match s.unit.as_str() {
            "" => None,
            u => Some(unit_name(u)?),
        },
        unit_record: s.unit_record,
        reason: s.reason.clone(),
    })
}

pub fn schedule_to_wire(e: &ScheduleEntry) -> pb::ScheduleEntry {
    pb::ScheduleEntry {
        machine: e.machine.to_string(),
        unit: e.unit.to_string(),
        hash: e.hash.0.to_vec(),
        target: target_to_wire(e.target),
    }
}

pub fn schedule_from_wire(e: &pb::ScheduleEntry) -> Result<ScheduleEntry, WireError> {
    Ok(ScheduleEntry {
        machine: machine_id(&e.machine)?,
        unit: unit_name(&e.unit)?,
        hash: hash_from_wire(&e.hash)?,
        target: target_from_wire(e.target)?,
        text: None,
    })
}

pub fn state_to_wire(s: &UnitStateRecord) -> pb::UnitState {
    pb::UnitState {
        unit: s.unit.to_string(),
        machine: s.machine.to_string(),
        hash: s.hash.0.to_vec(),
        state: target_to_wire(s.state),
        load: s.systemd.load.clone(),
        active: s.systemd.active.clone(),
        sub: s.systemd.sub.clone(),
    }
}

pub fn state_from_wire(s: &pb::UnitState) -> Result<UnitStateRecord, WireError> {
    Ok(UnitStateRecord {
        unit: unit_name(&s.unit)?,
        machine: machine_id(&s.machine)?,
        hash: hash_from_wire(&s.hash)?,
        state: target_from_wire(s.state)?,
        systemd: SystemdState {
            load: s.load.clone(),
            active: s.active.clone(),
            sub: s.sub.clone(),
        },
    })
}

/// What a create did, as the wire says it.
/// A unit's view for stop/restart/status; `None` (no such unit) has no `unit`.
pub fn view_to_wire(v: Option<&UnitView>) -> pb::UnitView {
    match v {
        None => pb::UnitView::default(),
        Some(v) => pb::UnitView {
            unit: Some(unit_to_wire(&v.unit)),
            states: v.states.iter().map(state_to_wire).collect(),
            scheduled_on: v
                .scheduled_on
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
        },
    }
}

pub fn view_from_wire(v: &pb::UnitView) -> Result<Option<UnitView>, WireError> {
    let Some(unit) = &v.unit else {
        return Ok(None);
    };
    Ok(Some(UnitView {
        unit: unit_from_wire(unit)?,
        states: v
            .states
            .iter()
            .map(state_from_wire)
            .collect::<Result<_, _>>()?,
        scheduled_on: match v.scheduled_on.as_str() {
            "" => None,
            m => Some(machine_id(m)?),
        },
    }))
}

pub fn outcome_to_wire(outcome: CreateOutcome) -> pb::CreateUnitResponse {
    use pb::create_unit_response::Outcome;
    let (outcome, existing_hash) = match outcome {
        CreateOutcome::Created => (Outcome::Created, Vec::new()),
        CreateOutcome::Identical => (Outcome::Identical, Vec::new()),
        CreateOutcome::Differs { existing } => (Outcome::Differs, existing.0.to_vec()),
    };
    pb::CreateUnitResponse {
        outcome: outcome as i32,
        existing_hash,
    }
}

/// A state put or delete as a wire event; `None` for anything else.
pub fn state_event_to_wire(e: &WatchEvent) -> Option<pb::StateEvent> {
    use pb::state_event::Event;
    match e {
        WatchEvent::Put {
            change: Change::State(s),
            ..
        } => Some(pb::StateEvent {
            event: Some(Event::Put(state_to_wire(s))),
        }),
        WatchEvent::Delete {
            key: RegistryKey::State(unit, machine),
            ..
        } => Some(pb::StateEvent {
            event: Some(Event::Deleted(pb::StateKey {
                unit: unit.to_string(),
                machine: machine.to_string(),
            })),
        }),
        _ => None,
    }
}

/// An unplaced unit and why.
pub fn unplaced_to_wire(unit: &UnitName, reason: &str) -> pb::Unplaced {
    pb::Unplaced {
        unit: unit.to_string(),
        reason: reason.to_string(),
    }
}

/// A registry error as the gRPC status fleetctl shows (fleet's words for etcd trouble).
pub(crate) fn registry_status(e: RegistryError) -> Status {
    match &e {
        RegistryError::Unreachable { .. } | RegistryError::Timeout { .. } => {
            Status::unavailable(format!("fleet server unable to communicate with etcd: {e}"))
        }
        RegistryError::UnitNotFound(_) => Status::not_found(e.to_string()),
        RegistryError::UnitTooLarge { .. } => Status::invalid_argument(e.to_string()),
        RegistryError::Compacted { .. } => Status::out_of_range(e.to_string()),
        _ => Status::internal(e.to_string()),
    }
}

/// An invalid wire value as the caller's mistake.
pub(crate) fn wire_status(e: WireError) -> Status {
    Status::invalid_argument(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let file = UnitFile::parse("[Unit]\nDescription=x\n[Service]\nExecStart=/bin/true\n")
            .expect("parse");
        let unit = UnitRecord {
            name: UnitName::parse("a.service").unwrap(),
            hash: file.hash(),
            file,
            target: TargetState::Launched,
        };
        assert_eq!(unit_from_wire(&unit_to_wire(&unit)).unwrap(), unit);
        let mut machine = Machine::new(MachineId::new("m1").unwrap());
        machine.metadata.insert("region".into(), "eu".into());
        let rec = MachineRecord {
            machine,
            api_addr: "http://10.0.0.1:4002".into(),
        };
        assert_eq!(machine_from_wire(&machine_to_wire(&rec)).unwrap(), rec);
        let state = UnitStateRecord {
            unit: unit.name.clone(),
            machine: MachineId::new("m1").unwrap(),
            hash: unit.hash,
            state: TargetState::Loaded,
            systemd: SystemdState {
                load: "loaded".into(),
                active: "active".into(),
                sub: "running".into(),
            },
        };
        assert_eq!(state_from_wire(&state_to_wire(&state)).unwrap(), state);
    }

    #[test]
    fn bad_wire_values_are_refused() {
        assert!(target_from_wire(0).is_err());
        assert!(hash_from_wire(&[1, 2]).is_err());
        assert!(unit_name("no suffix").is_err());
    }
}
