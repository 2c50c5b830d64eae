//! fleetctl's many-unit operations that touch only the units named: destroying them in
//! few txns, and reading what `stop`, `restart` and `status` need to know about them
//! (unit, target, reported states, where each is scheduled) without the whole cluster.

use std::collections::BTreeSet;

use etcd_client::{DeleteOptions, GetOptions, Txn, TxnOp, TxnOpResponse};
use fleet_core::{MachineId, TargetState, UnitName};

use crate::MAX_TXN_OPS;
use crate::decode;
use crate::error::RegistryError;
use crate::model::{UnitRecord, UnitStateRecord};
use crate::registry::{Registry, gets, revision};

/// One unit as `stop`, `restart` and `status` see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitView {
    pub unit: UnitRecord,
    /// What machines report for it, sorted by machine.
    pub states: Vec<UnitStateRecord>,
    /// The reporting machine the engine has it scheduled on, if any. A unit scheduled
    /// on a machine that has not reported it yet has `None` here: its current state is
    /// `inactive` either way.
    pub scheduled_on: Option<MachineId>,
}

impl UnitView {
    /// The unit's current state, as [`crate::ClusterSnapshot::current_state`] derives it.
    pub fn current_state(&self) -> TargetState {
        crate::current_state(self.scheduled_on.as_ref(), &self.states)
    }
}

impl Registry {
    /// Destroys many units in txns of at most 64 units (128 ops), pipelined; answers
    /// in the order given whether each unit existed. Each unit goes with its `job/<n>/`
    /// keys in the same txn, as [`Registry::destroy_unit`] does. A name given twice
    /// is destroyed once (the second answer is `false`).
    pub async fn destroy_units(&self, names: &[UnitName]) -> Result<Vec<bool>, RegistryError> {
        let k = &self.keys;
        let mut seen = BTreeSet::new();
        // etcd refuses a txn that deletes one key twice.
        let unique: Vec<&UnitName> = names.iter().filter(|n| seen.insert(*n)).collect();
        let chunks: Vec<&[&UnitName]> = unique.chunks(MAX_TXN_OPS / 2).collect();
        let txns = chunks
            .iter()
            .map(|chunk| {
                let ops: Vec<TxnOp> = chunk
                    .iter()
                    .flat_map(|n| {
                        [
                            TxnOp::delete(k.unit(n), None),
                            TxnOp::delete(k.job_dir(n), Some(DeleteOptions::new().with_prefix())),
                        ]
                    })
                    .collect();
                Txn::new().and_then(ops)
            })
            .collect();
        let responses = self
            .txns("destroy units", txns)
            .await
            .map_err(|e| e.denied(crate::roles::KeyClass::Units))?;
        let mut existed = std::collections::HashMap::with_capacity(unique.len());
        for (chunk, resp) in chunks.iter().zip(&responses) {
            let ops = resp.op_responses();
            for (i, n) in chunk.iter().enumerate() {
                let gone =
                    matches!(ops.get(2 * i), Some(TxnOpResponse::Delete(d)) if d.deleted() > 0);
                existed.insert(*n, gone);
            }
        }
        Ok(names
            .iter()
            .map(|n| existed.remove(n).unwrap_or(false))
            .collect())
    }

    /// The named units with their reported states and placement, in the order asked
    /// (`None`: no such unit), and the revision they were read at (watch
    /// `machine-state/` from `revision + 1` to follow them): one txn per 64 units for
    /// unit and target, the states of those units at the same revision (see
    /// [`Registry::states_of`]), then one read at that revision of the `schedule/`
    /// keys of the machines that report them. Nothing else in the cluster is read.
    pub async fn unit_views(
        &self,
        names: &[UnitName],
    ) -> Result<(i64, Vec<Option<UnitView>>), RegistryError> {
        let k = &self.keys;
        let per_txn = MAX_TXN_OPS / 2;
        let mut txns: Vec<Txn> = Vec::new();
        let mut rev = 0;
        let mut units: Vec<Option<UnitRecord>> = Vec::with_capacity(names.len());
        for (i, chunk) in names.chunks(per_txn).enumerate() {
            // Every later chunk reads at the first one's revision: one consistent view.
            let at =
                || -> Option<GetOptions> { (i > 0).then(|| GetOptions::new().with_revision(rev)) };
            let ops: Vec<TxnOp> = chunk
                .iter()
                .flat_map(|n| {
                    [
                        TxnOp::get(k.unit(n), at()),
                        TxnOp::get(k.job_target(n), at()),
                    ]
                })
                .collect();
            txns.push(Txn::new().and_then(ops));
            if i == 0 {
                // The revision is known only after the first answer.
                let first = self.txn("get unit views", txns.remove(0)).await?;
                rev = revision(first.header());
                collect_units(self, &first, &mut units)?;
            }
        }
        for resp in self.txns("get unit views", txns).await? {
            collect_units(self, &resp, &mut units)?;
        }
        let found: Vec<UnitName> = units.iter().flatten().map(|u| u.name.clone()).collect();
        let mut skipped = Vec::new();
        let (_, mut states) = if found.is_empty() {
            (rev, Vec::new())
        } else {
            self.states_of(&found, Some(rev), &mut skipped).await?
        };
        // A corrupt state report of a unit asked for is left out (and logged), as in a
        // snapshot.
        for s in &skipped {
            tracing::warn!(key = %crate::error::visible(&s.key), reason = %s.reason, "skipped corrupt state record");
        }
        states.reverse();
        let mut views: Vec<Option<UnitView>> = units
            .into_iter()
            .map(|u| {
                u.map(|unit| UnitView {
                    unit,
                    states: states.pop().unwrap_or_default(),
                    scheduled_on: None,
                })
            })
            .collect();
        // Which reporting machines have the unit scheduled, at the same revision.
        let asks: Vec<(usize, MachineId)> = views
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.as_ref().map(|v| (i, v)))
            .flat_map(|(i, v)| v.states.iter().map(move |s| (i, s.machine.clone())))
            .collect();
        let chunks: Vec<&[(usize, MachineId)]> = asks.chunks(MAX_TXN_OPS).collect();
        let txns = chunks
            .iter()
            .map(|chunk| {
                let ops: Vec<TxnOp> = chunk
                    .iter()
                    .filter_map(|(i, m)| views[*i].as_ref().map(|v| (v, m)))
                    .map(|(v, m)| {
                        let opts = GetOptions::new().with_keys_only().with_revision(rev);
                        TxnOp::get(k.schedule(m, &v.unit.name), Some(opts))
                    })
                    .collect();
                Txn::new().and_then(ops)
            })
            .collect();
        let responses = self.txns("get unit placements", txns).await?;
        for (chunk, resp) in chunks.iter().zip(&responses) {
            for ((i, m), g) in chunk.iter().zip(gets(resp)) {
                if let Some(v) = views[*i].as_mut()
                    && v.scheduled_on.is_none()
                    && !g.kvs().is_empty()
                {
                    v.scheduled_on = Some(m.clone());
                }
            }
        }
        Ok((rev, views))
    }
}

fn collect_units(
    reg: &Registry,
    resp: &etcd_client::TxnResponse,
    units: &mut Vec<Option<UnitRecord>>,
) -> Result<(), RegistryError> {
    for pair in gets(resp).chunks(2) {
        let [unit, job] = pair else {
            return Err(RegistryError::corrupt(
                b"get unit views",
                "short txn response",
            ));
        };
        // A unit asked for by name whose record is corrupt is an error naming its key.
        units.push(decode::one_unit(&reg.keys, unit.kvs(), job.kvs())?);
    }
    Ok(())
}
