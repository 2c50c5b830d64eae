//! Machines as readers see them; each agent publishes its own (see `agent`).

use etcd_client::GetOptions;
use fleet_core::Machine;

use crate::decode;
use crate::error::RegistryError;
use crate::model::{Listed, MachineRecord};
use crate::registry::Registry;

impl Registry {
    /// Live machines, sorted by id (records that cannot be decoded are left out; see
    /// [`Registry::list_machines_checked`] to learn which).
    pub async fn list_machines(&self) -> Result<Vec<Machine>, RegistryError> {
        Ok(self
            .list_machine_records()
            .await?
            .into_iter()
            .map(|r| r.machine)
            .collect())
    }

    /// Proves this identity may read the registry with one key-only read of at most
    /// one key: etcd checks credentials on the first request, not on connecting, and
    /// fleetd wants a refusal at start-up (reading every machine record for it cost a
    /// 5,000-machine listing per fleetd start).
    pub async fn check_access(&self) -> Result<(), RegistryError> {
        let prefix = self.keys.machines();
        self.call("check access", |mut c| {
            let prefix = prefix.clone();
            async move {
                c.kv.get(
                    prefix,
                    Some(
                        GetOptions::new()
                            .with_prefix()
                            .with_keys_only()
                            .with_limit(1),
                    ),
                )
                .await
            }
        })
        .await
        .map(|_| ())
    }

    /// Live machines with their agents' API addresses, sorted by id (undecodable
    /// records left out).
    pub async fn list_machine_records(&self) -> Result<Vec<MachineRecord>, RegistryError> {
        Ok(self.list_machines_checked().await?.items)
    }

    /// Live machine records, sorted by id, and the keys skipped because their values
    /// cannot be decoded (e.g. a `public_ip` that is not an IP).
    pub async fn list_machines_checked(&self) -> Result<Listed<MachineRecord>, RegistryError> {
        let resp = self
            .get_prefix("list machines", self.keys.machines())
            .await?;
        let mut skipped = Vec::new();
        let items = decode::machines(&self.keys, resp.kvs(), &mut skipped);
        Ok(Listed { items, skipped })
    }
}
