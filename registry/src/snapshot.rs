//! The whole cluster at one revision: what the engine plans from.

use crate::decode;
use crate::error::RegistryError;
use crate::model::ClusterSnapshot;
use crate::registry::Registry;

impl Registry {
    /// Reads units, targets, machines, schedule, states and unplaced notes in ONE txn,
    /// so all of it is consistent at `revision`; watch from `revision + 1` to follow.
    pub async fn snapshot(&self) -> Result<ClusterSnapshot, RegistryError> {
        let k = &self.keys;
        let (revision, g) = self
            .get_prefixes(
                "snapshot",
                vec![
                    k.units(),
                    k.jobs(),
                    k.machines(),
                    k.schedules(),
                    k.states(),
                    k.unplaced_all(),
                ],
            )
            .await?;
        let [units, jobs, machines, schedule, states, unplaced] = g.as_slice() else {
            return Err(RegistryError::corrupt(
                k.prefix().as_bytes(),
                "snapshot txn returned an unexpected number of ranges",
            ));
        };
        Ok(ClusterSnapshot {
            revision,
            units: decode::units(k, units.kvs(), jobs.kvs())?,
            machines: decode::machines(k, machines.kvs())?,
            schedule: decode::schedule(k, schedule.kvs())?,
            states: decode::states(k, states.kvs())?,
            unplaced: decode::unplaced(k, unplaced.kvs())?,
        })
    }

    /// What the engine plans from: [`Registry::snapshot`] without the unit states
    /// (`states` is empty), which the scheduler never reads and which are as many as
    /// the units; one txn, consistent at `revision`.
    pub async fn placement_snapshot(&self) -> Result<ClusterSnapshot, RegistryError> {
        let k = &self.keys;
        let (revision, g) = self
            .get_prefixes(
                "placement snapshot",
                vec![
                    k.units(),
                    k.jobs(),
                    k.machines(),
                    k.schedules(),
                    k.unplaced_all(),
                ],
            )
            .await?;
        let [units, jobs, machines, schedule, unplaced] = g.as_slice() else {
            return Err(RegistryError::corrupt(
                k.prefix().as_bytes(),
                "snapshot txn returned an unexpected number of ranges",
            ));
        };
        Ok(ClusterSnapshot {
            revision,
            units: decode::units(k, units.kvs(), jobs.kvs())?,
            machines: decode::machines(k, machines.kvs())?,
            schedule: decode::schedule(k, schedule.kvs())?,
            states: Vec::new(),
            unplaced: decode::unplaced(k, unplaced.kvs())?,
        })
    }
}
