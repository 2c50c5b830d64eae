//! Machines: published by each agent under its lease, so a dead machine disappears.

use etcd_client::PutOptions;
use fleet_core::Machine;

use crate::codec;
use crate::decode;
use crate::error::RegistryError;
use crate::lease::LeaseId;
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

    /// Publishes (or refreshes) this machine, bound to `lease` so it vanishes when the
    /// agent stops renewing it.
    pub async fn register_machine(
        &self,
        machine: &Machine,
        api_addr: &str,
        lease: LeaseId,
    ) -> Result<(), RegistryError> {
        let mut kv = self.kv.clone();
        let put = kv.put(
            self.keys.machine(&machine.id),
            codec::encode_machine(machine, api_addr),
            Some(PutOptions::new().with_lease(lease.0)),
        );
        self.call("register machine", put).await?;
        Ok(())
    }
}
