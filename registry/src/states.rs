//! Unit states reported by agents, under their leases. Undecodable records are left
//! out (the snapshot names them).

use fleet_core::UnitName;

use crate::decode;
use crate::error::RegistryError;
use crate::model::UnitStateRecord;
use crate::registry::Registry;

impl Registry {
    /// Every reported state, sorted by unit, then machine.
    pub async fn list_states(&self) -> Result<Vec<UnitStateRecord>, RegistryError> {
        let resp = self.get_prefix("list states", self.keys.states()).await?;
        Ok(decode::states(&self.keys, resp.kvs(), &mut Vec::new()))
    }

    /// Every reported state and the revision they were read at, so a caller can watch
    /// `state/` from `revision + 1` and miss nothing (fleetctl's blocking waits).
    pub async fn list_states_at(&self) -> Result<(i64, Vec<UnitStateRecord>), RegistryError> {
        let resp = self.get_prefix("list states", self.keys.states()).await?;
        let revision = crate::registry::revision(resp.header());
        Ok((
            revision,
            decode::states(&self.keys, resp.kvs(), &mut Vec::new()),
        ))
    }

    /// The states machines report for one unit, sorted by machine.
    pub async fn unit_states(
        &self,
        unit: &UnitName,
    ) -> Result<Vec<UnitStateRecord>, RegistryError> {
        let resp = self
            .get_prefix("get unit states", self.keys.unit_states(unit))
            .await?;
        Ok(decode::states(&self.keys, resp.kvs(), &mut Vec::new()))
    }
}
