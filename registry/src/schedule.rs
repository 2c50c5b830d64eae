//! The engine's placements: `schedule/<machine>/<unit>`, per machine so each agent
//! watches only its own prefix. Written only through the engine's handle (`engine`).

use fleet_core::{MachineId, UnitName};

use crate::decode;
use crate::error::RegistryError;
use crate::model::ScheduleEntry;
use crate::registry::Registry;

/// One engine pass's decisions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SchedulePlan {
    /// Placements to write (or re-write with a new hash/target).
    pub place: Vec<ScheduleEntry>,
    /// Placements to remove.
    pub unschedule: Vec<(MachineId, UnitName)>,
    /// Units that could not be placed, with the reason shown to users.
    pub unplaced: Vec<(UnitName, String)>,
    /// Units whose unplaced note is obsolete (placed now, or destroyed).
    pub clear_unplaced: Vec<UnitName>,
}

impl SchedulePlan {
    pub fn is_empty(&self) -> bool {
        self.place.is_empty()
            && self.unschedule.is_empty()
            && self.unplaced.is_empty()
            && self.clear_unplaced.is_empty()
    }
}

impl Registry {
    /// Every placement, sorted by machine, then unit.
    pub async fn list_schedule(&self) -> Result<Vec<ScheduleEntry>, RegistryError> {
        let resp = self
            .get_prefix("list schedule", self.keys.schedules())
            .await?;
        Ok(decode::schedule(&self.keys, resp.kvs(), &mut Vec::new()))
    }

    /// One machine's placements, sorted by unit, and the revision they were read at
    /// (its agent watches `schedule/<id>/` from that revision + 1).
    pub async fn machine_schedule(
        &self,
        machine: &MachineId,
    ) -> Result<(i64, Vec<ScheduleEntry>), RegistryError> {
        let resp = self
            .get_prefix("get machine schedule", self.keys.machine_schedule(machine))
            .await?;
        Ok((
            resp.revision,
            decode::schedule(&self.keys, resp.kvs(), &mut Vec::new()),
        ))
    }
}
