//! The engine's placements: `schedule/<machine>/<unit>`, per machine so each agent
//! watches only its own prefix; writes are fenced on the leader key.

use std::collections::BTreeMap;

use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use fleet_core::{MachineId, UnitName};

use crate::MAX_TXN_OPS;
use crate::codec;
use crate::decode;
use crate::error::RegistryError;
use crate::model::ScheduleEntry;
use crate::registry::{Registry, revision};

/// Proof of leadership: the engine's election key and its create revision. A write
/// fenced on it fails once another engine has won, so a unit is never placed twice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderFence {
    pub key: Vec<u8>,
    pub create_revision: i64,
}

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
        decode::schedule(&self.keys, resp.kvs())
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
            revision(resp.header()),
            decode::schedule(&self.keys, resp.kvs())?,
        ))
    }

    /// Writes a plan in txns of at most 128 ops, each fenced on `fence` when given.
    /// Returns the number of txns; [`RegistryError::NotLeader`] if a fence failed
    /// (earlier txns of the plan stay applied; the next leader re-plans from a snapshot).
    pub async fn apply_schedule(
        &self,
        plan: &SchedulePlan,
        fence: Option<&LeaderFence>,
    ) -> Result<usize, RegistryError> {
        let k = &self.keys;
        // Keyed so that a key is written at most once (etcd refuses duplicates in a txn).
        let mut ops: BTreeMap<String, TxnOp> = BTreeMap::new();
        for (m, n) in &plan.unschedule {
            ops.insert(k.schedule(m, n), TxnOp::delete(k.schedule(m, n), None));
        }
        for e in &plan.place {
            let key = k.schedule(&e.machine, &e.unit);
            ops.insert(
                key.clone(),
                TxnOp::put(key, codec::encode_schedule(e), None),
            );
        }
        for n in &plan.clear_unplaced {
            ops.insert(k.unplaced(n), TxnOp::delete(k.unplaced(n), None));
        }
        for (n, why) in &plan.unplaced {
            ops.insert(
                k.unplaced(n),
                TxnOp::put(k.unplaced(n), codec::encode_unplaced(why), None),
            );
        }
        let ops: Vec<TxnOp> = ops.into_values().collect();
        let txns: Vec<Txn> = ops
            .chunks(MAX_TXN_OPS)
            .map(|chunk| {
                let txn = match fence {
                    Some(f) => Txn::new().when([Compare::create_revision(
                        f.key.clone(),
                        CompareOp::Equal,
                        f.create_revision,
                    )]),
                    None => Txn::new(),
                };
                txn.and_then(chunk.to_vec())
            })
            .collect();
        let txns = self.txns("write schedule", txns).await?;
        if txns.iter().any(|r| !r.succeeded()) {
            return Err(RegistryError::NotLeader);
        }
        let txns = txns.len();
        Ok(txns)
    }
}
