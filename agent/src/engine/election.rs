//! Becoming the leader: a fresh lease, kept alive every TTL/3, and a campaign on it.
//! While waiting, the current leader is followed and logged as fleet did
//! ("Engine leader is <id>").

use std::time::Duration;

use fleet_registry::{Leadership, LeaseKeepAlive, Registry, RegistryError};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{EngineConfig, EngineStatus};

/// Leadership won, with the lease that holds it. Dropping the keep-alive stops
/// renewing: the key then expires after the TTL (what a hard kill looks like).
pub struct Won {
    pub leadership: Leadership,
    pub keep: LeaseKeepAlive,
}

/// Campaigns until won (`Some`), shut down (`None`) or failed (etcd unreachable,
/// lease lost): the caller backs off and calls again.
pub async fn campaign(
    reg: &Registry,
    cfg: &EngineConfig,
    shutdown: &CancellationToken,
    status: &watch::Sender<EngineStatus>,
) -> Result<Option<Won>, RegistryError> {
    let lease = reg.grant_lease(cfg.lease_ttl).await?;
    let mut keep = match reg.keep_alive(lease, cfg.lease_ttl).await {
        Ok(k) => k,
        Err(e) => {
            revoke_quietly(reg, lease).await;
            return Err(e);
        }
    };
    let outcome = tokio::select! {
        _ = shutdown.cancelled() => None,
        e = keep.lost() => Some(Err(e)),
        r = reg.campaign(cfg.machine_id.as_str(), lease) => Some(r),
        never = follow_leader(reg, status) => match never {},
    };
    match outcome {
        Some(Ok(leadership)) => Ok(Some(Won { leadership, keep })),
        Some(Err(e)) => {
            revoke_quietly(reg, lease).await;
            Err(e)
        }
        None => {
            revoke_quietly(reg, lease).await;
            Ok(None)
        }
    }
}

/// Gives leadership up at once (graceful stop): resign, then revoke the lease.
pub async fn step_down(reg: &Registry, won: Won) {
    let lease = won.keep.lease();
    if let Err(e) = won.leadership.resign().await {
        tracing::debug!(error = %e, "resign failed; revoking the lease instead");
    }
    revoke_quietly(reg, lease).await;
}

/// Best effort: a lease we cannot revoke expires by itself after its TTL.
pub async fn revoke_quietly(reg: &Registry, lease: fleet_registry::LeaseId) {
    if let Err(e) = reg.revoke_lease(lease).await {
        tracing::debug!(%lease, error = %e, "cannot revoke lease; it will expire");
    }
}

/// Logs and publishes who leads, whenever it changes. Never returns; errors are
/// retried after a pause (it only informs, nothing depends on it).
async fn follow_leader(
    reg: &Registry,
    status: &watch::Sender<EngineStatus>,
) -> std::convert::Infallible {
    let mut known: Option<String> = None;
    loop {
        match reg.current_leader().await {
            Ok((rev, leader)) => {
                if leader != known {
                    if let Some(id) = &leader {
                        tracing::info!(leader = %id, "Engine leader is {id}");
                    }
                    status.send_modify(|s| s.leader.clone_from(&leader));
                    known = leader;
                }
                let mut w = reg.watch_prefix(reg.leader_prefix(), rev + 1);
                if let Err(e) = w.next().await {
                    tracing::debug!(error = %e, "leader watch failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the engine leader");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
