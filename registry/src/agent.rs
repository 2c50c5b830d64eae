//! The agent's handle: one machine's view of the registry, bound to the lease it is
//! registered under. It reads only `schedule/<me>/` and the units placed there, and
//! writes only `machine/<me>` and `machine-state/<me>/<unit>`, always under its lease; the
//! types make any other read or write impossible from the agent.

use std::collections::BTreeMap;
use std::time::Duration;

use etcd_client::{PutOptions, Txn, TxnOp};
use fleet_core::{Machine, MachineId, UnitName};

use crate::MAX_TXN_OPS;
use crate::codec;
use crate::decode;
use crate::error::RegistryError;
use crate::lease::{LeaseId, LeaseKeepAlive};
use crate::model::{ScheduleEntry, UnitRecord, UnitStateRecord};
use crate::registry::Registry;
use crate::roles::KeyClass;
use crate::watch::RegistryWatch;

/// A registered machine's access to the registry. Obtained only from
/// [`Registry::register_agent`], so it always names a machine and the live lease its
/// keys are bound to.
#[derive(Clone, Debug)]
pub struct AgentRegistry {
    reg: Registry,
    machine: MachineId,
    lease: LeaseId,
}

impl Registry {
    /// Registers `machine` (and where its API answers, for journal/status forwarding)
    /// for `ttl` and returns the agent's handle with the keep-alive of its lease.
    ///
    /// Never takes over a machine key another live fleetd holds: one of `own_leases`
    /// (a previous fleetd on this host) is taken back if the machine key is still bound
    /// to it and it is alive; an absent key is created under a new lease; any other
    /// holder is [`RegistryError::MachineTaken`].
    pub async fn register_agent(
        &self,
        machine: &Machine,
        api_addr: &str,
        ttl: Duration,
        own_leases: &[LeaseId],
    ) -> Result<(AgentRegistry, LeaseKeepAlive), RegistryError> {
        let existing = self.machine_key_lease(&machine.id).await?;
        let lease = match existing {
            Some(l) if own_leases.contains(&l) && self.lease_alive(l).await? => l,
            Some(lease) => {
                tracing::debug!(%lease, own = ?own_leases, "machine key held under another lease");
                return Err(RegistryError::MachineTaken {
                    machine: machine.id.clone(),
                    lease,
                });
            }
            None => self.grant_lease(ttl).await?,
        };
        let agent = AgentRegistry {
            reg: self.clone(),
            machine: machine.id.clone(),
            lease,
        };
        let result = async {
            let keeper = self
                .keep_alive_every(lease, ttl, agent_renewal_period(ttl))
                .await?;
            agent.publish_machine(machine, api_addr).await?;
            Ok::<_, RegistryError>(keeper)
        }
        .await;
        match result {
            Ok(keeper) => Ok((agent, keeper)),
            Err(e) => {
                if existing.is_none() {
                    let _ = self.revoke_lease(lease).await;
                }
                Err(e)
            }
        }
    }

    /// The lease the machine key is bound to, if the key exists.
    async fn machine_key_lease(&self, id: &MachineId) -> Result<Option<LeaseId>, RegistryError> {
        let key = self.keys.machine(id);
        let resp = self
            .call("get machine", |mut c| {
                let key = key.clone();
                async move { c.kv.get(key, None).await }
            })
            .await?;
        Ok(resp.kvs().first().map(|kv| LeaseId(kv.lease())))
    }

    /// Whether etcd still knows the lease (an unreachable etcd is an error, any other
    /// refusal means gone).
    async fn lease_alive(&self, lease: LeaseId) -> Result<bool, RegistryError> {
        match self
            .call("lease ttl", |mut c| async move {
                c.client.lease_time_to_live(lease.0, None).await
            })
            .await
        {
            // etcd reports whole seconds: 0 is "under a second left", -1 is gone.
            Ok(r) => Ok(r.ttl() >= 0),
            Err(e) if e.is_unavailable() => Err(e),
            Err(_) => Ok(false),
        }
    }
}

/// How often an agent renews its lease: every TTL/2 (at 5,000 machines a third fewer
/// renewals than TTL/3), but often enough that the lease always has 5 s (two thirds of
/// a TTL under 7.5 s) left. That is the time a fleetd killed between two renewals has to
/// come back and take its lease over before the engine moves its units (systemd
/// restarts it after `RestartSec`: 10 s in fleet.service, with the default 30 s TTL;
/// 1 s in the lab, where a 3 s TTL renewed every TTL/2 left it 1.5 s at worst).
fn agent_renewal_period(ttl: Duration) -> Duration {
    (ttl / 3)
        .max(ttl.saturating_sub(Duration::from_secs(5)))
        .min(ttl / 2)
}

impl AgentRegistry {
    pub fn machine(&self) -> &MachineId {
        &self.machine
    }

    /// The lease the machine and its states are bound to.
    pub fn lease(&self) -> LeaseId {
        self.lease
    }

    /// Publishes (or refreshes) this machine's record under its lease: what it runs as
    /// and where its API answers. The record is this handle's own; no other is writable.
    pub async fn publish_machine(
        &self,
        machine: &Machine,
        api_addr: &str,
    ) -> Result<(), RegistryError> {
        let key = self.reg.keys.machine(&self.machine);
        let value = codec::encode_machine(machine, api_addr);
        let lease = self.lease.0;
        self.reg
            .call("register machine", |mut c| {
                let (key, value) = (key.clone(), value.clone());
                async move {
                    c.kv.put(key, value, Some(PutOptions::new().with_lease(lease)))
                        .await
                }
            })
            .await
            .map_err(|e| e.denied(KeyClass::MachineRecord(self.machine.clone())))?;
        Ok(())
    }

    /// This machine's placements, sorted by unit, and the revision they were read at
    /// (watch with [`AgentRegistry::watch_schedule`] from that revision + 1), never
    /// older than `seen` (the newest revision the caller already knows). Served first
    /// without a round of consensus: the watch from that revision brings the listing
    /// up to date, and thousands of agents listing at once (a cluster starting, etcd
    /// recovering) then cost etcd no more than local reads. A member behind `seen` (cut
    /// off, lagging) is not believed: the read is confirmed with the raft leader then.
    pub async fn schedule(&self, seen: i64) -> Result<(i64, Vec<ScheduleEntry>), RegistryError> {
        let prefix = self.reg.keys.machine_schedule(&self.machine);
        let mut resp = self
            .reg
            .get_prefix_serializable("get machine schedule", prefix.clone())
            .await?;
        if resp.revision < seen {
            resp = self.reg.get_prefix("get machine schedule", prefix).await?;
        }
        let mut skipped = Vec::new();
        let entries = decode::schedule_with_texts(&self.reg.keys, resp.kvs(), &mut skipped);
        // A placement this agent cannot read is not run here; the engine rewrites it.
        for s in &skipped {
            tracing::warn!(key = %s.key, "{s}");
        }
        Ok((resp.revision, entries))
    }

    /// Watches `schedule/<me>/` (and nothing else) from `from_revision`.
    pub fn watch_schedule(&self, from_revision: i64) -> RegistryWatch {
        self.reg
            .watch_prefix(self.reg.keys.machine_schedule(&self.machine), from_revision)
    }

    /// The units placed here, with their text (batched; `None` for units gone). A unit
    /// whose record cannot be decoded is `None` too, with a warning naming its key, so it
    /// does not hold up the loads of the others.
    pub async fn units(
        &self,
        names: &[UnitName],
    ) -> Result<Vec<Option<UnitRecord>>, RegistryError> {
        let (units, skipped) = self.reg.get_units_skipping(names).await?;
        for s in &skipped {
            tracing::warn!(key = %s.key, "{s}");
        }
        Ok(units)
    }

    /// Publishes this machine's states in txns of at most 128 puts, all bound to the
    /// lease so they vanish with the agent. Later duplicates win; a record about another
    /// machine is refused before anything is written.
    pub async fn put_states(&self, states: &[UnitStateRecord]) -> Result<(), RegistryError> {
        if let Some(s) = states.iter().find(|s| s.machine != self.machine) {
            return Err(RegistryError::ForeignMachine {
                machine: s.machine.clone(),
                own: self.machine.clone(),
            });
        }
        let keys = &self.reg.keys;
        let dedup: BTreeMap<String, &UnitStateRecord> = states
            .iter()
            .map(|s| (keys.state(&s.unit, &self.machine), s))
            .collect();
        let ops: Vec<TxnOp> = dedup
            .into_iter()
            .map(|(k, s)| {
                TxnOp::put(
                    k,
                    codec::encode_state(s),
                    Some(PutOptions::new().with_lease(self.lease.0)),
                )
            })
            .collect();
        let txns = ops
            .chunks(MAX_TXN_OPS)
            .map(|chunk| Txn::new().and_then(chunk.to_vec()))
            .collect();
        self.reg
            .txns("put states", txns)
            .await
            .map_err(|e| e.denied(KeyClass::MachineStates(self.machine.clone())))?;
        Ok(())
    }

    /// The states this machine has published, as etcd holds them (the periodic check
    /// compares them with systemd's and writes only what differs). Undecodable records
    /// are left out, so they are written again.
    pub async fn own_states(&self) -> Result<Vec<UnitStateRecord>, RegistryError> {
        let resp = self
            .reg
            .get_prefix(
                "get own states",
                self.reg.keys.machine_states(&self.machine),
            )
            .await
            .map_err(|e| e.denied(KeyClass::MachineStates(self.machine.clone())))?;
        Ok(decode::states(&self.reg.keys, resp.kvs(), &mut Vec::new()))
    }

    /// Withdraws this machine's reports on many units, in txns of at most 128 deletes.
    pub async fn delete_states(&self, units: &[UnitName]) -> Result<(), RegistryError> {
        let keys = &self.reg.keys;
        let txns = units
            .chunks(MAX_TXN_OPS)
            .map(|chunk| {
                Txn::new().and_then(
                    chunk
                        .iter()
                        .map(|u| TxnOp::delete(keys.state(u, &self.machine), None))
                        .collect::<Vec<_>>(),
                )
            })
            .collect();
        self.reg
            .txns("delete states", txns)
            .await
            .map_err(|e| e.denied(KeyClass::MachineStates(self.machine.clone())))?;
        Ok(())
    }

    /// Renews the lease once, now, and returns the TTL etcd granted: the lease lives at
    /// least that long from the moment this call was made. A fleetd stopping without
    /// revoking uses it to know how long its machine stays present.
    pub async fn renew(&self) -> Result<Duration, RegistryError> {
        self.reg.renew_lease_once(self.lease).await
    }

    /// Revokes the lease now (clean shutdown): the machine key and every state
    /// record go with it.
    pub async fn revoke(self) -> Result<(), RegistryError> {
        self.reg.revoke_lease(self.lease).await
    }
}

#[cfg(test)]
mod tests {
    use super::agent_renewal_period;
    use std::time::Duration;

    #[test]
    fn a_renewed_lease_keeps_time_for_a_restart() {
        let s = Duration::from_secs;
        assert_eq!(agent_renewal_period(s(30)), s(15));
        assert_eq!(agent_renewal_period(s(10)), s(5));
        assert_eq!(agent_renewal_period(s(6)), s(2));
        assert_eq!(agent_renewal_period(s(3)), s(1));
    }
}
