//! Leases: an agent's machine and state keys live exactly as long as it renews one.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::RegistryError;
use crate::registry::Registry;

pub use crate::model::LeaseId;

/// A background task renewing a lease every TTL/3. Dropping it stops renewing (the
/// lease then expires after its TTL); [`LeaseKeepAlive::lost`] tells when it is gone.
#[derive(Debug)]
pub struct LeaseKeepAlive {
    lease: LeaseId,
    lost: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

impl LeaseKeepAlive {
    pub fn lease(&self) -> LeaseId {
        self.lease
    }

    /// Resolves once the lease is known to be gone (expired, revoked, or not renewed
    /// for a whole TTL): the owner must re-register under a new lease.
    pub async fn lost(&mut self) -> RegistryError {
        // An Err means the task ended, which only happens once the lease is lost.
        let _ = self.lost.wait_for(|lost| *lost).await;
        RegistryError::LeaseLost(self.lease)
    }
}

impl Drop for LeaseKeepAlive {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Registry {
    /// Grants a lease of `ttl` (rounded up to whole seconds, at least 1 s).
    pub async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, RegistryError> {
        let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        let secs = i64::try_from(secs.max(1)).unwrap_or(i64::MAX);
        let mut c = self.client.clone();
        let resp = self.call("grant lease", c.lease_grant(secs, None)).await?;
        Ok(LeaseId(resp.id()))
    }

    /// Revokes a lease now, deleting every key bound to it (clean agent shutdown).
    pub async fn revoke_lease(&self, lease: LeaseId) -> Result<(), RegistryError> {
        let mut c = self.client.clone();
        self.call("revoke lease", c.lease_revoke(lease.0)).await?;
        Ok(())
    }

    /// Starts renewing `lease` (granted with `ttl`) every `ttl / 3` in a task. Each
    /// renewal is bounded by the request timeout; a broken stream is re-opened; the
    /// lease counts as lost when etcd answers TTL 0 or no renewal succeeded for `ttl`.
    pub async fn keep_alive(
        &self,
        lease: LeaseId,
        ttl: Duration,
    ) -> Result<LeaseKeepAlive, RegistryError> {
        let mut c = self.client.clone();
        let (keeper, stream) = self
            .call("keep lease alive", c.lease_keep_alive(lease.0))
            .await?;
        let (tx, rx) = watch::channel(false);
        let reg = self.clone();
        let task = tokio::spawn(async move {
            renew_loop(reg, lease, ttl, keeper, stream).await;
            let _ = tx.send(true);
        });
        Ok(LeaseKeepAlive {
            lease,
            lost: rx,
            task,
        })
    }
}

async fn renew_loop(
    reg: Registry,
    lease: LeaseId,
    ttl: Duration,
    keeper: etcd_client::LeaseKeeper,
    stream: etcd_client::LeaseKeepAliveStream,
) {
    let period = (ttl / 3).max(Duration::from_millis(100));
    let mut conn = Some((keeper, stream));
    let mut last_ok = Instant::now();
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if last_ok.elapsed() >= ttl {
            tracing::warn!(%lease, "lease not renewed for a whole TTL; treating it as lost");
            fleet_metrics::lease_renewal(false);
            return;
        }
        if conn.is_none() {
            let mut c = reg.client.clone();
            match reg
                .call("keep lease alive", c.lease_keep_alive(lease.0))
                .await
            {
                Ok(kc) => conn = Some(kc),
                Err(e) => {
                    tracing::debug!(%lease, error = %e, "cannot re-open lease keep-alive");
                    continue;
                }
            }
        }
        let Some((keeper, stream)) = conn.as_mut() else {
            continue;
        };
        let renewal = async {
            keeper.keep_alive().await?;
            stream.message().await
        };
        match tokio::time::timeout(reg.timeout, renewal).await {
            Ok(Ok(Some(resp))) if resp.ttl() > 0 => {
                last_ok = Instant::now();
                fleet_metrics::lease_renewal(true);
            }
            Ok(Ok(Some(_))) => {
                tracing::warn!(%lease, "etcd reports the lease gone");
                fleet_metrics::lease_renewal(false);
                return;
            }
            Ok(Ok(None)) | Ok(Err(_)) | Err(_) => {
                tracing::debug!(%lease, "lease keep-alive stream broke; re-opening");
                conn = None;
            }
        }
    }
}
