//! The engine's election on `leader` and the engine's handle: etcd's server-side
//! election bound to a lease, so a leader that stops renewing loses its key and the
//! next candidate wins. Only a won [`Leadership`] can write `schedule/` and
//! `unplaced/`, and every such write is fenced on its election key.

use std::collections::BTreeMap;

use etcd_client::{
    Compare, CompareOp, GetOptions, LeaderKey, ResignOptions, SortOrder, SortTarget, Txn, TxnOp,
};

use crate::MAX_TXN_OPS;
use crate::codec;
use crate::error::RegistryError;
use crate::lease::LeaseId;
use crate::model::ClusterSnapshot;
use crate::registry::Registry;
use crate::roles::KeyClass;
use crate::schedule::SchedulePlan;

/// Consecutive member failures a campaign rides out before reporting to the engine.
const CAMPAIGN_MOVES: u32 = 5;
/// Pause between campaigns on different members.
const CAMPAIGN_BACKOFF: crate::Backoff = crate::Backoff::new(
    std::time::Duration::from_millis(50),
    std::time::Duration::from_secs(1),
);

/// Won leadership: the engine's handle. Obtained only from [`Registry::campaign`];
/// every write it makes carries the fence "my election key still exists with the
/// create revision I won at", so a deposed engine's writes are refused.
#[derive(Clone)]
pub struct Leadership {
    pub(crate) reg: Registry,
    key: LeaderKey,
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership")
            .field("key", &String::from_utf8_lossy(self.key.key()))
            .field("revision", &self.key.rev())
            .finish()
    }
}

impl Leadership {
    /// The revision at which leadership was won.
    pub fn revision(&self) -> i64 {
        self.key.rev()
    }

    /// What the engine plans from: the whole cluster at one revision, without unit
    /// states (which planning never reads and which are as many as the units).
    pub async fn snapshot(&self) -> Result<ClusterSnapshot, RegistryError> {
        self.reg.placement_snapshot().await
    }

    /// Writes a plan in txns of at most 128 ops, each fenced on this leadership.
    /// Returns the number of txns; [`RegistryError::NotLeader`] if a fence failed
    /// (earlier txns of the plan stay applied; the next leader re-plans from a snapshot).
    pub async fn apply(&self, plan: &SchedulePlan) -> Result<usize, RegistryError> {
        Ok(self.apply_at(plan).await?.0)
    }

    /// [`Leadership::apply`], also returning the newest revision written (0 if none):
    /// the view ignores the echo of these writes from its watch.
    pub async fn apply_at(&self, plan: &SchedulePlan) -> Result<(usize, i64), RegistryError> {
        let k = &self.reg.keys;
        // Each unit's ops go in one txn: a unit moved between machines leaves the old
        // one and lands on the new one at one revision, so it is never placed on both
        // (it would run twice) nor on neither. Units are independent of each other, so
        // the txns go out pipelined in one round, and a pass that fails half-way leaves
        // every unit either moved or not. Keyed so that a key is written at most once
        // (etcd refuses duplicates in a txn): a placement overrides a removal of the
        // same key.
        let mut by_unit: BTreeMap<&fleet_core::UnitName, BTreeMap<String, TxnOp>> = BTreeMap::new();
        for (m, n) in &plan.unschedule {
            let key = k.schedule(m, n);
            by_unit
                .entry(n)
                .or_default()
                .insert(key.clone(), TxnOp::delete(key, None));
        }
        let mut placed_at: BTreeMap<&fleet_core::UnitName, String> = BTreeMap::new();
        for e in &plan.place {
            let key = k.schedule(&e.machine, &e.unit);
            placed_at.insert(&e.unit, key.clone());
            by_unit.entry(&e.unit).or_default().insert(
                key.clone(),
                TxnOp::put(key, codec::encode_schedule(e), None),
            );
        }
        for n in &plan.clear_unplaced {
            let key = k.unplaced(n);
            by_unit
                .entry(n)
                .or_default()
                .insert(key.clone(), TxnOp::delete(key, None));
        }
        for (n, why) in &plan.unplaced {
            let key = k.unplaced(n);
            by_unit.entry(n).or_default().insert(
                key.clone(),
                TxnOp::put(key, codec::encode_unplaced(why), None),
            );
        }
        // In the order of where each unit goes (its new placement's key, else its first
        // key): a txn then holds the placements of few machines, and etcd sends each of
        // them one watch response for it instead of one per unit.
        let mut groups: Vec<(String, Vec<TxnOp>)> = by_unit
            .into_iter()
            .map(|(unit, ops)| {
                let first = ops.keys().next().cloned().unwrap_or_default();
                let order = placed_at.get(unit).cloned().unwrap_or(first);
                (order, ops.into_values().collect())
            })
            .collect();
        groups.sort_by(|a, b| a.0.cmp(&b.0));
        let chunks = pack(groups.into_iter().map(|(_, ops)| ops));
        if chunks.is_empty() {
            return Ok((0, 0));
        }
        self.write_fenced(chunks).await
    }

    /// Writes each chunk (at most 128 ops) as one txn fenced on this leadership;
    /// returns the number of txns and the newest revision written.
    async fn write_fenced(&self, chunks: Vec<Vec<TxnOp>>) -> Result<(usize, i64), RegistryError> {
        let txns: Vec<Txn> = chunks
            .into_iter()
            .map(|chunk| {
                Txn::new()
                    .when([Compare::create_revision(
                        self.key.key().to_vec(),
                        CompareOp::Equal,
                        self.key.rev(),
                    )])
                    .and_then(chunk)
            })
            .collect();
        let txns = self
            .reg
            .txns("write schedule", txns)
            .await
            .map_err(|e| e.denied(KeyClass::Schedule))?;
        if txns.iter().any(|r| !r.succeeded()) {
            return Err(RegistryError::NotLeader);
        }
        let revision = txns
            .iter()
            .map(|r| crate::registry::revision(r.header()))
            .max()
            .unwrap_or(0);
        Ok((txns.len(), revision))
    }

    /// Gives up leadership now (graceful stop), so the next candidate wins at once
    /// instead of after the lease TTL.
    pub async fn resign(self) -> Result<(), RegistryError> {
        let key = self.key.clone();
        self.reg
            .call("resign", |mut c| {
                let opts = ResignOptions::new().with_leader(key.clone());
                async move { c.client.resign(Some(opts)).await }
            })
            .await?;
        Ok(())
    }
}

impl Registry {
    /// Campaigns for the engine leadership with `value` (the machine id) on `lease`,
    /// blocking until won. Deliberately NOT bounded by the request timeout: waiting is
    /// its purpose. Cancel by dropping the future; a dead etcd breaks the call through
    /// the connection's HTTP/2 keep-alive.
    pub async fn campaign(&self, value: &str, lease: LeaseId) -> Result<Leadership, RegistryError> {
        let name = self.keys.leader();
        let mut failures = 0;
        let resp = loop {
            // Re-campaigning with the same lease is safe: etcd finds the candidate key
            // the lease already holds and keeps waiting on it.
            match self.campaign_on_a_member(&name, value, lease).await {
                Ok(resp) => break resp,
                Err(e) if e.is_unavailable() && failures < CAMPAIGN_MOVES => {
                    failures += 1;
                    tracing::debug!(error = %e, "campaign lost its etcd member; campaigning on another");
                    tokio::time::sleep(CAMPAIGN_BACKOFF.delay(failures)).await;
                }
                Err(e) => return Err(e),
            }
        };
        match resp.leader() {
            Some(key) => Ok(Leadership {
                reg: self.clone(),
                key: key.clone(),
            }),
            None => Err(RegistryError::corrupt(
                name.as_bytes(),
                "campaign answered without a leader key",
            )),
        }
    }

    /// One blocking campaign call on the first live member; it ends with an
    /// `Unreachable` error as soon as that member is known to be gone (by this call's
    /// failure or by any other call's).
    async fn campaign_on_a_member(
        &self,
        name: &str,
        value: &str,
        lease: LeaseId,
    ) -> Result<etcd_client::CampaignResponse, RegistryError> {
        let pool = &self.pool;
        let member = pool.order().first().copied().unwrap_or(0);
        let mut c = pool
            .conn(member)
            .await
            .map_err(|e| RegistryError::from_etcd("campaign", &self.endpoints, e))?;
        let abandoned = async {
            while !pool.should_leave(member) {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        };
        tokio::select! {
            r = c.client.campaign(name, value, lease.0) => r.map_err(|e| {
                let e = RegistryError::from_etcd("campaign", &self.endpoints, e)
                    .denied(KeyClass::Election);
                if e.is_unavailable() {
                    pool.mark_failed(member, &e);
                }
                e
            }),
            () = abandoned => Err(RegistryError::Timeout {
                endpoints: pool.url(member).to_string(),
                timeout: self.timeout,
            }),
        }
    }

    /// Who leads (the campaign value of the oldest candidate), and the revision read
    /// at: watch the election from there to follow changes. A plain range read, so
    /// "nobody leads" is `None` rather than etcd's "election: no leader" error.
    pub async fn current_leader(&self) -> Result<(i64, Option<String>), RegistryError> {
        let prefix = self.leader_prefix();
        let resp = self
            .call("get leader", |mut c| {
                let prefix = prefix.clone();
                let opts = GetOptions::new()
                    .with_prefix()
                    .with_sort(SortTarget::Create, SortOrder::Ascend)
                    .with_limit(1);
                async move { c.kv.get(prefix, Some(opts)).await }
            })
            .await?;
        let rev = crate::registry::revision(resp.header());
        let leader = resp
            .kvs()
            .first()
            .map(|kv| String::from_utf8_lossy(kv.value()).into_owned());
        Ok((rev, leader))
    }

    /// The prefix holding every candidate's key (`leader/`).
    pub fn leader_prefix(&self) -> String {
        format!("{}/", self.keys.leader())
    }
}

/// Packs groups of ops into txns of at most [`MAX_TXN_OPS`], never splitting a group
/// (one unit's ops) unless it alone is larger than a txn.
fn pack<T>(groups: impl IntoIterator<Item = Vec<T>>) -> Vec<Vec<T>> {
    let mut txns: Vec<Vec<T>> = Vec::new();
    let mut current: Vec<T> = Vec::new();
    for mut group in groups {
        if current.len() + group.len() > MAX_TXN_OPS && !current.is_empty() {
            txns.push(std::mem::take(&mut current));
        }
        while group.len() > MAX_TXN_OPS {
            let rest = group.split_off(MAX_TXN_OPS);
            txns.push(std::mem::replace(&mut group, rest));
        }
        current.extend(group);
    }
    if !current.is_empty() {
        txns.push(current);
    }
    txns
}

#[cfg(test)]
mod tests {
    use super::{MAX_TXN_OPS, pack};

    #[test]
    fn a_units_ops_share_a_txn() {
        // 100 moves (a removal and a placement each): 64 fit in a txn of 128.
        let groups: Vec<Vec<(usize, u8)>> = (0..100).map(|u| vec![(u, 0), (u, 1)]).collect();
        let txns = pack(groups);
        assert_eq!(
            txns.iter().map(Vec::len).collect::<Vec<_>>(),
            [MAX_TXN_OPS, 200 - MAX_TXN_OPS]
        );
        // Groups of 3 never straddle two txns.
        let txns = pack((0..100).map(|u| vec![u; 3]));
        for t in &txns {
            assert!(t.len() <= MAX_TXN_OPS && t.len() % 3 == 0, "{}", t.len());
            assert!(t.chunks(3).all(|g| g.iter().all(|u| *u == g[0])));
        }
        assert_eq!(txns.iter().map(Vec::len).sum::<usize>(), 300);
        // Only a group larger than a txn is split.
        let txns = pack([vec![0; 300], vec![1]]);
        assert_eq!(
            txns.iter().map(Vec::len).collect::<Vec<_>>(),
            [MAX_TXN_OPS, MAX_TXN_OPS, 300 - 2 * MAX_TXN_OPS + 1]
        );
    }
}
