//! Leases: an agent's machine and state keys live exactly as long as it renews one.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::RegistryError;
use crate::registry::Registry;

pub use crate::model::LeaseId;

/// A background task renewing a lease (every TTL/3, or as asked). Dropping it stops renewing (the
/// lease then expires after its TTL); [`LeaseKeepAlive::lost`] tells when it is gone.
#[derive(Debug)]
pub struct LeaseKeepAlive {
    lease: LeaseId,
    lost: watch::Receiver<bool>,
    overdue: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

impl LeaseKeepAlive {
    pub fn lease(&self) -> LeaseId {
        self.lease
    }

    /// Resolves once etcd says the lease is gone (expired or revoked): the owner must
    /// re-register under a new lease. Not while etcd cannot be asked: without a quorum
    /// etcd expires no lease, and its next leader extends them all, so a lease not
    /// renewed for a TTL because etcd was down is usually still ours; a fleetd cut off
    /// from a working etcd learns its loss from the first renewal that gets through.
    pub async fn lost(&mut self) -> RegistryError {
        // An Err means the task ended, which only happens once the lease is lost.
        let _ = self.lost.wait_for(|lost| *lost).await;
        RegistryError::LeaseLost(self.lease)
    }

    /// Resolves when the lease goes a whole TTL without a renewal etcd answered
    /// (`Overdue(true)`: the cluster may have given this machine up, if etcd itself is
    /// up), when it is renewed again after that (`Overdue(false)`), or when etcd says it
    /// is gone (`Lost`). Self-fencing listens to the first, re-registration to the last.
    pub async fn news(&mut self) -> LeaseNews {
        tokio::select! {
            biased;
            _ = self.lost.wait_for(|lost| *lost) => LeaseNews::Lost(RegistryError::LeaseLost(self.lease)),
            changed = self.overdue.changed() => match changed {
                Ok(()) => LeaseNews::Overdue(*self.overdue.borrow_and_update()),
                // The task ended: the lease is lost.
                Err(_) => LeaseNews::Lost(RegistryError::LeaseLost(self.lease)),
            },
        }
    }
}

/// What [`LeaseKeepAlive::news`] reports.
#[derive(Debug)]
pub enum LeaseNews {
    Lost(RegistryError),
    Overdue(bool),
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
        let resp = self
            .call("grant lease", |mut c| async move {
                c.client.lease_grant(secs, None).await
            })
            .await?;
        Ok(LeaseId(resp.id()))
    }

    /// Renews `lease` once, now, and returns the TTL etcd granted: the lease lives at
    /// least that long from the moment this call was made; [`RegistryError::LeaseLost`]
    /// if etcd no longer knows it. A restarted fleetd takes its lease back with this
    /// before anything else, so the time it takes to start does not eat the lease.
    pub async fn renew_lease_once(&self, lease: LeaseId) -> Result<Duration, RegistryError> {
        let answer = self
            .call("keep lease alive", |mut c| async move {
                let (mut keeper, mut stream) = c.client.lease_keep_alive(lease.0).await?;
                keeper.keep_alive().await?;
                stream.message().await
            })
            .await?;
        match answer {
            Some(r) if r.ttl() > 0 => Ok(Duration::from_secs(r.ttl().unsigned_abs())),
            _ => Err(RegistryError::LeaseLost(lease)),
        }
    }

    /// Revokes a lease now, deleting every key bound to it (clean agent shutdown). A
    /// lease etcd no longer knows counts as revoked (a re-sent revoke finds it gone).
    pub async fn revoke_lease(&self, lease: LeaseId) -> Result<(), RegistryError> {
        let r = self
            .call("revoke lease", |mut c| async move {
                c.client.lease_revoke(lease.0).await
            })
            .await;
        match r {
            Err(RegistryError::Etcd {
                source: etcd_client::Error::GRpcStatus(s),
                ..
            }) if i32::from(s.code()) == 5 => Ok(()),
            r => r.map(|_| ()),
        }
    }

    /// Starts renewing `lease` (granted with `ttl`) every `ttl / 3` in a task. Each
    /// renewal is bounded by the request timeout; a broken or silent stream is re-opened
    /// on a live member at once; the lease counts as lost when etcd answers TTL 0.
    pub async fn keep_alive(
        &self,
        lease: LeaseId,
        ttl: Duration,
    ) -> Result<LeaseKeepAlive, RegistryError> {
        self.keep_alive_every(lease, ttl, ttl / 3).await
    }

    /// [`Registry::keep_alive`] renewing every `period` (at most TTL/2), on the
    /// keep-alive connections (never behind other requests). A failed renewal is
    /// retried at once on another member, then every TTL/8, so a longer period costs
    /// etcd fewer renewals without leaving fewer chances before the TTL runs out.
    /// Agents renew every TTL/2: at 5,000 machines that is a third fewer renewals
    /// than TTL/3.
    pub async fn keep_alive_every(
        &self,
        lease: LeaseId,
        ttl: Duration,
        period: Duration,
    ) -> Result<LeaseKeepAlive, RegistryError> {
        let period = period.min(ttl / 2);
        let conn = self.open_keep_alive(lease).await?;
        let (tx, rx) = watch::channel(false);
        let (overdue_tx, overdue_rx) = watch::channel(false);
        let reg = self.clone();
        let task = tokio::spawn(async move {
            renew_loop(reg, lease, ttl, period, conn, overdue_tx).await;
            let _ = tx.send(true);
        });
        Ok(LeaseKeepAlive {
            lease,
            lost: rx,
            overdue: overdue_rx,
            task,
        })
    }

    async fn open_keep_alive(&self, lease: LeaseId) -> Result<KeepAliveConn, RegistryError> {
        let (member, (keeper, stream)) = self
            .lease_pool
            .call_on("keep lease alive", |mut c| async move {
                c.client.lease_keep_alive(lease.0).await
            })
            .await?;
        Ok(KeepAliveConn {
            member,
            keeper,
            stream,
        })
    }
}

/// A keep-alive stream and the member it runs on.
struct KeepAliveConn {
    member: usize,
    keeper: etcd_client::LeaseKeeper,
    stream: etcd_client::LeaseKeepAliveStream,
}

/// The longest a lease renewal waits for its answer (less if the request timeout is
/// shorter): short enough that a renewal stalled on a frozen member leaves time to
/// renew on another within the engine's default 5 s lease, whatever the request
/// timeout.
const RENEWAL_PATIENCE: Duration = Duration::from_secs(3);

/// Whether etcd answers that `lease` no longer exists (false when it does not answer).
async fn lease_gone(reg: &Registry, lease: LeaseId) -> bool {
    let ttl = reg
        .call("lease time to live", |mut c| async move {
            c.client.lease_time_to_live(lease.0, None).await
        })
        .await;
    matches!(ttl, Ok(r) if r.ttl() < 0)
}

async fn renew_loop(
    reg: Registry,
    lease: LeaseId,
    ttl: Duration,
    period: Duration,
    conn: KeepAliveConn,
    overdue_tx: watch::Sender<bool>,
) {
    let period = period.max(Duration::from_millis(100));
    let retry = (ttl / 8).clamp(Duration::from_millis(100), period);
    let mut conn = Some(conn);
    let mut last_ok = Instant::now();
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // After a failed renewal the next one is tried at once on another member (twice
    // at most, so a cluster without quorum is not hammered), then every `retry`.
    let mut again = false;
    let mut failing = false;
    let mut immediate = 0;
    // Not renewed for a whole TTL: said once.
    let mut overdue = false;
    loop {
        if again && immediate < 2 {
            immediate += 1;
        } else if failing {
            tokio::time::sleep(retry).await;
            immediate = 0;
        } else {
            tick.tick().await;
            immediate = 0;
        }
        again = false;
        if last_ok.elapsed() >= ttl && !overdue {
            overdue = true;
            overdue_tx.send_replace(true);
            tracing::warn!(%lease, "lease not renewed for a whole TTL (etcd unreachable); it counts as lost only if etcd says so when it answers");
        }
        if overdue && lease_gone(&reg, lease).await {
            // Asked over the calls' connections, which recover from a partition sooner
            // than a keep-alive stream stalled on a connection the partition killed.
            tracing::warn!(%lease, "etcd reports the lease gone");
            fleet_metrics::lease_renewal(false);
            return;
        }
        if conn.is_none() {
            match reg.open_keep_alive(lease).await {
                Ok(kc) => conn = Some(kc),
                Err(e) => {
                    tracing::debug!(%lease, error = %e, "cannot re-open lease keep-alive");
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else {
            continue;
        };
        if reg.lease_pool.should_leave(c.member) || reg.pool.should_leave(c.member) {
            // Other calls found its member gone: move before this renewal hangs on it.
            conn = None;
            again = true;
            continue;
        }
        let renewal = async {
            c.keeper.keep_alive().await?;
            c.stream.message().await
        };
        match tokio::time::timeout(reg.timeout.min(RENEWAL_PATIENCE), renewal).await {
            Ok(Ok(Some(resp))) if resp.ttl() > 0 => {
                reg.lease_pool.answered(c.member);
                if overdue {
                    tracing::info!(%lease, "lease renewed again; etcd kept it");
                }
                last_ok = Instant::now();
                if failing {
                    // Back on the regular period, counted from now.
                    failing = false;
                    tick.reset();
                }
                if overdue {
                    overdue_tx.send_replace(false);
                }
                overdue = false;
                fleet_metrics::lease_renewal(true);
            }
            Ok(Ok(Some(_))) => {
                tracing::warn!(%lease, "etcd reports the lease gone");
                fleet_metrics::lease_renewal(false);
                return;
            }
            Err(_) if reg.lease_pool.progressing(c.member) || reg.pool.progressing(c.member) => {
                // The member serves other calls: busy, not gone. Ask again on the same
                // stream (the answer may still come) rather than open a new stream
                // on a member that is already behind.
                tracing::debug!(%lease, member = reg.lease_pool.url(c.member), "lease renewal slow; the member is busy, asking again");
                again = true;
                failing = true;
            }
            broken => {
                let why = match broken {
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => "no answer within the request timeout".to_string(),
                    _ => "stream ended".to_string(),
                };
                tracing::debug!(%lease, member = reg.lease_pool.url(c.member), error = %why, "lease keep-alive failed; re-opening on a live member");
                reg.lease_pool.mark_failed(c.member, &why);
                conn = None;
                again = true;
                failing = true;
            }
        }
    }
}
