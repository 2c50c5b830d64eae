//! The engine's election on `leader`: etcd's server-side election bound to a lease, so
//! a leader that stops renewing loses its key and the next candidate wins.

use etcd_client::{GetOptions, LeaderKey, ResignOptions, SortOrder, SortTarget};

use crate::error::RegistryError;
use crate::lease::LeaseId;
use crate::registry::Registry;
use crate::schedule::LeaderFence;

/// Won leadership: the fence every engine write carries, and the key to resign with.
#[derive(Clone, Debug)]
pub struct Leadership {
    key: LeaderKey,
}

impl Leadership {
    /// The write fence: holds exactly as long as this engine's election key exists.
    pub fn fence(&self) -> LeaderFence {
        LeaderFence {
            key: self.key.key().to_vec(),
            create_revision: self.key.rev(),
        }
    }

    /// The revision at which leadership was won.
    pub fn revision(&self) -> i64 {
        self.key.rev()
    }
}

impl Registry {
    /// Campaigns for the engine leadership with `value` (the machine id) on `lease`,
    /// blocking until won. Deliberately NOT bounded by the request timeout: waiting is
    /// its purpose. Cancel by dropping the future; a dead etcd breaks the call through
    /// the connection's HTTP/2 keep-alive.
    pub async fn campaign(&self, value: &str, lease: LeaseId) -> Result<Leadership, RegistryError> {
        let mut c = self.client.clone();
        let resp = c
            .campaign(self.keys.leader(), value, lease.0)
            .await
            .map_err(|e| RegistryError::from_etcd("campaign", &self.endpoints, e))?;
        match resp.leader() {
            Some(key) => Ok(Leadership { key: key.clone() }),
            None => Err(RegistryError::corrupt(
                self.keys.leader().as_bytes(),
                "campaign answered without a leader key",
            )),
        }
    }

    /// Gives up leadership now (graceful stop), so the next candidate wins at once
    /// instead of after the lease TTL.
    pub async fn resign(&self, leadership: &Leadership) -> Result<(), RegistryError> {
        let mut c = self.client.clone();
        let opts = ResignOptions::new().with_leader(leadership.key.clone());
        self.call("resign", c.resign(Some(opts))).await?;
        Ok(())
    }

    /// Who leads (the campaign value of the oldest candidate), and the revision read
    /// at: watch the election from there to follow changes. A plain range read, so
    /// "nobody leads" is `None` rather than etcd's "election: no leader" error.
    pub async fn current_leader(&self) -> Result<(i64, Option<String>), RegistryError> {
        let mut kv = self.kv.clone();
        let opts = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Create, SortOrder::Ascend)
            .with_limit(1);
        let resp = self
            .call("get leader", kv.get(self.leader_prefix(), Some(opts)))
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
