//! Blocking until a unit reaches a condition (fleetctl's `start`/`stop`/`load`
//! without `--no-block`): watch, never poll.

use std::time::Duration;

use etcd_client::{GetOptions, Txn, TxnOp};
use fleet_core::{MachineId, TargetState, UnitHash, UnitName};
use tokio::time::Instant;

use crate::codec;
use crate::decode;
use crate::error::RegistryError;
use crate::keys::RegistryKey;
use crate::model::{UnitStateRecord, current_state};
use crate::registry::{Registry, gets, revision};
use crate::watch::{RegistryWatch, WatchEvent};

/// Everything about one unit that a blocking command looks at, at one revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitView {
    pub name: UnitName,
    pub revision: i64,
    /// `None` when the unit does not exist.
    pub hash: Option<UnitHash>,
    pub target: Option<TargetState>,
    pub scheduled_on: Option<MachineId>,
    pub states: Vec<UnitStateRecord>,
}

impl UnitView {
    pub fn exists(&self) -> bool {
        self.hash.is_some()
    }

    /// The unit's current state ("STATE"), see [`crate::current_state`].
    pub fn current_state(&self) -> TargetState {
        current_state(self.scheduled_on.as_ref(), &self.states)
    }
}

impl Registry {
    /// Reads a unit's view in one txn. Finding its machine scans the schedule's keys
    /// (keys only), because the schedule is indexed by machine for the agents' sake.
    pub async fn unit_view(&self, name: &UnitName) -> Result<UnitView, RegistryError> {
        let k = &self.keys;
        let txn = Txn::new().and_then([
            TxnOp::get(k.unit(name), None),
            TxnOp::get(k.job_target(name), None),
            TxnOp::get(
                k.schedules(),
                Some(GetOptions::new().with_prefix().with_keys_only()),
            ),
            TxnOp::get(k.unit_states(name), Some(GetOptions::new().with_prefix())),
        ]);
        let resp = self.txn("read unit", txn).await?;
        let rev = revision(resp.header());
        let g = gets(&resp);
        let [unit, job, sched, states] = g.as_slice() else {
            return Err(RegistryError::corrupt(
                k.unit(name).as_bytes(),
                "unexpected txn reply",
            ));
        };
        let hash = match unit.kvs().first() {
            Some(kv) => Some(codec::decode_unit_hash(kv.key(), kv.value())?),
            None => None,
        };
        let target = match job.kvs().first() {
            Some(kv) => Some(codec::decode_target(kv.key(), kv.value())?),
            None => None,
        };
        let mut scheduled_on = None;
        for kv in sched.kvs() {
            if let Some(RegistryKey::Schedule(m, n)) = k.parse(kv.key())?
                && &n == name
            {
                scheduled_on = Some(m);
                break;
            }
        }
        Ok(UnitView {
            name: name.clone(),
            revision: rev,
            hash,
            target,
            scheduled_on,
            states: decode::states(k, states.kvs())?,
        })
    }

    /// Waits until `pred` holds for the unit's view, re-reading it only when its
    /// states, target or placement change, or gives up after `timeout`. Returns the
    /// view that satisfied `pred`.
    pub async fn wait_for_unit(
        &self,
        name: &UnitName,
        timeout: Duration,
        mut pred: impl FnMut(&UnitView) -> bool,
    ) -> Result<UnitView, RegistryError> {
        let deadline = Instant::now() + timeout;
        let give_up = || RegistryError::WaitTimeout {
            what: format!("unit {name}"),
            waited: timeout,
        };
        let k = &self.keys;
        loop {
            let view = match tokio::time::timeout_at(deadline, self.unit_view(name)).await {
                Err(_) => return Err(give_up()),
                Ok(v) => v?,
            };
            if pred(&view) {
                return Ok(view);
            }
            let from = view.revision + 1;
            let mut watches = [
                self.watch_prefix(k.unit_states(name), from),
                self.watch_prefix(k.job_dir(name), from),
                self.watch_prefix(k.schedules(), from),
            ];
            // Re-read on the first relevant change; on compaction, re-read and re-watch.
            loop {
                let changed = tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => return Err(give_up()),
                    r = next_relevant(&mut watches, name) => r,
                };
                match changed {
                    Ok(()) => break,
                    Err(RegistryError::Compacted { .. }) => break,
                    Err(e) if e.is_unavailable() => {
                        tracing::debug!(unit = %name, error = %e, "waiting on an unavailable etcd");
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }
}

/// Resolves when any of the watches reports an event concerning `name`.
async fn next_relevant(
    watches: &mut [RegistryWatch; 3],
    name: &UnitName,
) -> Result<(), RegistryError> {
    let [states, job, sched] = watches;
    loop {
        let batch = tokio::select! {
            b = states.next() => return b.map(|_| ()),
            b = job.next() => return b.map(|_| ()),
            b = sched.next() => b?,
        };
        let relevant = batch.events.iter().any(|e| match e {
            WatchEvent::Put {
                key: RegistryKey::Schedule(_, n),
                ..
            }
            | WatchEvent::Delete {
                key: RegistryKey::Schedule(_, n),
                ..
            } => n == name,
            _ => false,
        });
        if relevant {
            return Ok(());
        }
    }
}
