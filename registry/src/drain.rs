//! Drained machines (`fleetctl drain` / `undrain`): `drain/<machine-id>`, written
//! through the client role [`Registry`] and read by the engine in its snapshot, where
//! the scheduler treats a drained machine as infeasible ("machine drained"). The key's
//! presence is the whole record (its value is empty) and it has no lease, so a drain
//! outlives the machine's registration until `undrain`.

use std::collections::BTreeSet;

use etcd_client::{GetOptions, PutOptions};
use fleet_core::MachineId;

use crate::error::RegistryError;
use crate::keys::{Keys, RegistryKey};
use crate::registry::Registry;

impl Registry {
    /// Drains `machine`; true if it was not drained before.
    pub async fn drain_machine(&self, machine: &MachineId) -> Result<bool, RegistryError> {
        let key = self.keys.drain(machine);
        let resp = self
            .call("drain machine", |mut c| {
                let key = key.clone();
                async move {
                    c.kv.put(
                        key,
                        Vec::<u8>::new(),
                        Some(PutOptions::new().with_prev_key()),
                    )
                    .await
                }
            })
            .await
            .map_err(|e| e.denied(crate::roles::KeyClass::Drain))?;
        Ok(resp.prev_key().is_none())
    }

    /// Ends a drain; true if `machine` was drained.
    pub async fn undrain_machine(&self, machine: &MachineId) -> Result<bool, RegistryError> {
        let key = self.keys.drain(machine);
        let resp = self
            .call("undrain machine", |mut c| {
                let key = key.clone();
                async move { c.kv.delete(key, None).await }
            })
            .await
            .map_err(|e| e.denied(crate::roles::KeyClass::Drain))?;
        Ok(resp.deleted() > 0)
    }

    /// Every drained machine id, whether its machine is registered or not.
    pub async fn drained_machines(&self) -> Result<BTreeSet<MachineId>, RegistryError> {
        let prefix = self.keys.drains();
        let resp = self
            .call("list drained machines", |mut c| {
                let prefix = prefix.clone();
                async move {
                    c.kv.get(
                        prefix,
                        Some(GetOptions::new().with_prefix().with_keys_only()),
                    )
                    .await
                }
            })
            .await?;
        decode(&self.keys, resp.kvs())
    }
}

/// The machine ids of `drain/` keys; a malformed one is corrupt data.
pub(crate) fn decode(
    keys: &Keys,
    kvs: &[etcd_client::KeyValue],
) -> Result<BTreeSet<MachineId>, RegistryError> {
    let mut out = BTreeSet::new();
    for kv in kvs {
        match keys.parse(kv.key())? {
            Some(RegistryKey::Drain(m)) => {
                out.insert(m);
            }
            _ => return Err(RegistryError::corrupt(kv.key(), "not a drain key")),
        }
    }
    Ok(out)
}
