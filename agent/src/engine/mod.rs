//! The engine: decides where units run. Every fleetd may run it, but only the elected
//! leader acts (etcd election on a lease, `leader/`); `disable_engine` opts a machine
//! out of campaigning.
//!
//! While leading: one full read when leadership is won, then a view kept from
//! watches on `unit/`, `job/`, `machine/` and `drain/` (`fleet_registry::EngineView`;
//! read in full again only after a watch is compacted or fails) → pure scheduler →
//! the difference written to `schedule/<machine>/` and `unplaced/` in txns of ≤ 128
//! ops, each fenced on the leader key's create revision (a deposed leader's writes
//! fail), and recorded in the view → wait for a change (debounced) or the periodic
//! pass → repeat. Losing the lease or a fenced write means stepping down and
//! campaigning again; a graceful stop resigns so another engine takes over at once.
//!
//! - `election`: lease, campaign, following the current leader.
//! - `leader`: the leader's pass loop.
//! - `decide`: snapshot → registry writes (pure).

mod decide;
mod election;
mod leader;

use std::time::Duration;

use fleet_core::MachineId;
use fleet_registry::{Leadership, Registry};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use decide::{Decisions, decide, decide_in};

/// fleet's default `engine_reconcile_interval`.
pub const DEFAULT_RECONCILE_INTERVAL: Duration = Duration::from_secs(2);
/// Leadership lease TTL (fleet.conf `engine_lease_ttl`): after a hard kill of the
/// leading machine the next engine leads within this plus etcd's expiry check (0.5 s).
/// Chosen from measurements on a 3-member etcd: when the raft leader dies, renewals
/// stall 1.2-2 s until the next leader (etcd's default 1 s election timeout), which a
/// 1 s lease (fleet's was 10 s) did not survive (three leader changes, 4 s without an
/// engine); 5 s rides that out with a renewal to spare, and a 300 ms link only slows
/// each renewal. A false loss stays safe (fenced writes, stable placements) but costs
/// a pass.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(5);
/// How long a burst of changes is collected before one pass handles all of it.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(30);

/// How this machine's engine behaves.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Campaign value: shown as "Engine leader is <id>" by every other engine.
    pub machine_id: MachineId,
    /// fleet's `disable_engine`: never campaign (the machine still receives work).
    pub disable_engine: bool,
    /// fleet's `engine_reconcile_interval`. Watches drive passes; this sets the slow
    /// safety-net pass (10×) and caps retry backoff when etcd is unavailable.
    pub reconcile_interval: Duration,
    /// Leadership lease TTL, renewed every TTL/3; bounds failover after a hard kill.
    pub lease_ttl: Duration,
    /// Quiet time collected after the first change before planning.
    pub debounce: Duration,
}

impl EngineConfig {
    /// fleet's defaults for `machine_id`.
    pub fn new(machine_id: MachineId) -> Self {
        EngineConfig {
            machine_id,
            disable_engine: false,
            reconcile_interval: DEFAULT_RECONCILE_INTERVAL,
            lease_ttl: DEFAULT_LEASE_TTL,
            debounce: DEFAULT_DEBOUNCE,
        }
    }

    /// The periodic full pass, a safety net for anything the watches missed.
    pub fn full_pass_interval(&self) -> Duration {
        self.reconcile_interval * 10
    }

    fn validate(&self) -> Result<(), EngineError> {
        if self.reconcile_interval.is_zero() {
            return Err(EngineError::Config(
                "engine_reconcile_interval must be positive".into(),
            ));
        }
        if self.lease_ttl < Duration::from_secs(1) {
            return Err(EngineError::Config(
                "the engine's leadership lease TTL must be at least 1s (etcd counts whole seconds)"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// Why the engine stopped. Transient etcd trouble is never one: it is retried.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("invalid engine configuration: {0}")]
    Config(String),
}

/// What this engine is doing, for tests, status endpoints and logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Role {
    /// Campaigning (or waiting to retry): another engine may lead.
    #[default]
    Follower,
    Leader,
    /// `disable_engine=true`: never campaigns.
    Disabled,
    /// `run` returned.
    Stopped,
}

/// A snapshot of the engine's state, published on every change.
#[derive(Clone, Debug, Default)]
pub struct EngineStatus {
    pub role: Role,
    /// The leading engine's machine id, as last seen.
    pub leader: Option<String>,
    /// This engine's current leadership (tests keep a copy to prove that a deposed
    /// leader's writes are refused).
    pub leadership: Option<Leadership>,
    /// Passes completed while leading, over this engine's lifetime.
    pub passes: u64,
    pub last_pass: Option<PassReport>,
}

impl EngineStatus {
    pub fn is_leader(&self) -> bool {
        self.role == Role::Leader
    }
}

/// What one leader pass did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassReport {
    /// The snapshot's revision: the pass saw everything up to it.
    pub revision: i64,
    /// Write txns sent (0 when nothing changed).
    pub txns: usize,
    pub placed: usize,
    pub unscheduled: usize,
    pub unplaceable: usize,
    pub duration: Duration,
}

/// A running engine task. Dropping it aborts the task (like a hard kill: the lease is
/// not revoked and expires after its TTL); cancel the token for a graceful stop.
pub struct EngineHandle {
    status: watch::Receiver<EngineStatus>,
    task: Option<JoinHandle<Result<(), EngineError>>>,
}

impl EngineHandle {
    /// Follows the engine's status (e.g. `wait_for(|s| s.is_leader())`).
    pub fn status(&self) -> watch::Receiver<EngineStatus> {
        self.status.clone()
    }

    pub fn is_leader(&self) -> bool {
        self.status.borrow().is_leader()
    }

    /// Waits for the task to end (after its shutdown token was cancelled).
    pub async fn join(mut self) -> Result<(), EngineError> {
        match self.task.take() {
            Some(t) => t
                .await
                .unwrap_or_else(|e| Err(EngineError::Config(format!("engine task failed: {e}")))),
            None => Ok(()),
        }
    }
}

impl Drop for EngineHandle {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// Starts [`run`] in a task and returns its handle.
pub fn spawn(
    registry: Registry,
    config: EngineConfig,
    shutdown: CancellationToken,
) -> EngineHandle {
    let (tx, rx) = watch::channel(EngineStatus::default());
    let task = tokio::spawn(run_reporting(registry, config, shutdown, tx));
    EngineHandle {
        status: rx,
        task: Some(task),
    }
}

/// Runs the engine until `shutdown` is cancelled.
pub async fn run(
    registry: Registry,
    config: EngineConfig,
    shutdown: CancellationToken,
) -> Result<(), EngineError> {
    run_reporting(
        registry,
        config,
        shutdown,
        watch::channel(EngineStatus::default()).0,
    )
    .await
}

/// [`run`], publishing [`EngineStatus`] on `status`.
pub async fn run_reporting(
    registry: Registry,
    config: EngineConfig,
    shutdown: CancellationToken,
    status: watch::Sender<EngineStatus>,
) -> Result<(), EngineError> {
    config.validate()?;
    let span = tracing::info_span!("engine", machine = %config.machine_id);
    let result = campaign_loop(&registry, &config, &shutdown, &status)
        .instrument(span)
        .await;
    status.send_modify(|s| {
        s.role = Role::Stopped;
        s.leadership = None;
    });
    result
}

async fn campaign_loop(
    reg: &Registry,
    cfg: &EngineConfig,
    shutdown: &CancellationToken,
    status: &watch::Sender<EngineStatus>,
) -> Result<(), EngineError> {
    if cfg.disable_engine {
        tracing::info!("Not starting engine; disable-engine is set");
        status.send_modify(|s| s.role = Role::Disabled);
        shutdown.cancelled().await;
        return Ok(());
    }
    let mut failures = 0u32;
    loop {
        if shutdown.is_cancelled() {
            return Ok(());
        }
        let mut won = match election::campaign(reg, cfg, shutdown, status).await {
            Ok(Some(won)) => won,
            Ok(None) => return Ok(()),
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %e, "engine cannot campaign; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(backoff(failures, cfg.reconcile_interval)) => {}
                }
                continue;
            }
        };
        failures = 0;
        tracing::info!(
            revision = won.leadership.revision(),
            "Engine leadership acquired"
        );
        fleet_metrics::leadership_change();
        let leadership = won.leadership.clone();
        status.send_modify(|s| {
            s.role = Role::Leader;
            s.leader = Some(cfg.machine_id.to_string());
            s.leadership = Some(leadership);
        });
        let end = leader::lead(reg, cfg, &mut won, shutdown, status).await;
        fleet_metrics::leadership_change();
        status.send_modify(|s| {
            s.role = Role::Follower;
            s.leadership = None;
        });
        match end {
            leader::StepDown::Shutdown => {
                election::step_down(reg, won).await;
                tracing::info!("Engine leadership released on shutdown");
                return Ok(());
            }
            leader::StepDown::Lost(why) => {
                tracing::warn!("Engine leadership lost: {why}");
                election::revoke_quietly(reg, won.keep.lease()).await;
            }
        }
    }
}

/// Exponential from 100 ms up to `cap`, jittered (see [`fleet_registry::Backoff`]).
fn backoff(failures: u32, cap: Duration) -> Duration {
    fleet_registry::Backoff::new(Duration::from_millis(100), cap).delay(failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap() {
        let cap = Duration::from_secs(2);
        assert!(backoff(1, cap) <= Duration::from_millis(125));
        for f in 1..50 {
            assert!(backoff(f, cap) <= cap.mul_f64(1.25));
        }
        assert!(backoff(30, cap) >= cap.mul_f64(0.75));
    }

    #[test]
    fn config_rejects_sub_second_leases() {
        let mut c = EngineConfig::new(MachineId::new("m1").unwrap());
        assert!(c.validate().is_ok());
        c.lease_ttl = Duration::from_millis(500);
        assert!(c.validate().is_err());
    }
}
