//! Unit states reported by agents, under their leases.

use std::collections::BTreeMap;

use etcd_client::{PutOptions, Txn, TxnOp};
use fleet_core::{MachineId, UnitName};

use crate::MAX_TXN_OPS;
use crate::codec;
use crate::decode;
use crate::error::RegistryError;
use crate::lease::LeaseId;
use crate::model::UnitStateRecord;
use crate::registry::Registry;

impl Registry {
    /// Every reported state, sorted by unit, then machine.
    pub async fn list_states(&self) -> Result<Vec<UnitStateRecord>, RegistryError> {
        let resp = self.get_prefix("list states", self.keys.states()).await?;
        decode::states(&self.keys, resp.kvs())
    }

    /// Every reported state and the revision they were read at, so a caller can watch
    /// `state/` from `revision + 1` and miss nothing (fleetctl's blocking waits).
    pub async fn list_states_at(&self) -> Result<(i64, Vec<UnitStateRecord>), RegistryError> {
        let resp = self.get_prefix("list states", self.keys.states()).await?;
        let revision = crate::registry::revision(resp.header());
        Ok((revision, decode::states(&self.keys, resp.kvs())?))
    }

    /// The states machines report for one unit, sorted by machine.
    pub async fn unit_states(
        &self,
        unit: &UnitName,
    ) -> Result<Vec<UnitStateRecord>, RegistryError> {
        let resp = self
            .get_prefix("get unit states", self.keys.unit_states(unit))
            .await?;
        decode::states(&self.keys, resp.kvs())
    }

    /// Publishes states in txns of at most 128 puts, all bound to `lease` so they
    /// vanish with the agent. Later duplicates win.
    pub async fn put_states(
        &self,
        states: &[UnitStateRecord],
        lease: LeaseId,
    ) -> Result<(), RegistryError> {
        let dedup: BTreeMap<String, &UnitStateRecord> = states
            .iter()
            .map(|s| (self.keys.state(&s.unit, &s.machine), s))
            .collect();
        let ops: Vec<TxnOp> = dedup
            .into_iter()
            .map(|(k, s)| {
                TxnOp::put(
                    k,
                    codec::encode_state(s),
                    Some(PutOptions::new().with_lease(lease.0)),
                )
            })
            .collect();
        let txns = ops
            .chunks(MAX_TXN_OPS)
            .map(|chunk| Txn::new().and_then(chunk.to_vec()))
            .collect();
        self.txns("put states", txns).await?;
        Ok(())
    }

    /// Withdraws one machine's reports on many units, in txns of at most 128 deletes.
    pub async fn delete_states(
        &self,
        units: &[UnitName],
        machine: &MachineId,
    ) -> Result<(), RegistryError> {
        let txns = units
            .chunks(MAX_TXN_OPS)
            .map(|chunk| {
                Txn::new().and_then(
                    chunk
                        .iter()
                        .map(|u| TxnOp::delete(self.keys.state(u, machine), None))
                        .collect::<Vec<_>>(),
                )
            })
            .collect();
        self.txns("delete states", txns).await?;
        Ok(())
    }

    /// Withdraws one machine's report on a unit (it unloaded it); true if it existed.
    pub async fn delete_state(
        &self,
        unit: &UnitName,
        machine: &MachineId,
    ) -> Result<bool, RegistryError> {
        let mut kv = self.kv.clone();
        let resp = self
            .call(
                "delete state",
                kv.delete(self.keys.state(unit, machine), None),
            )
            .await?;
        Ok(resp.deleted() > 0)
    }
}
