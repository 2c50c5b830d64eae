//! Machines as readers see them; each agent publishes its own (see `agent`).

use fleet_core::Machine;

use crate::decode;
use crate::error::RegistryError;
use crate::model::MachineRecord;
use crate::registry::Registry;

impl Registry {
    /// Live machines, sorted by id.
    pub async fn list_machines(&self) -> Result<Vec<Machine>, RegistryError> {
        Ok(self
            .list_machine_records()
            .await?
            .into_iter()
            .map(|r| r.machine)
            .collect())
    }

    /// Live machines with their agents' API addresses, sorted by id.
    pub async fn list_machine_records(&self) -> Result<Vec<MachineRecord>, RegistryError> {
        let resp = self
            .get_prefix("list machines", self.keys.machines())
            .await?;
        decode::machines(&self.keys, resp.kvs())
    }
}
