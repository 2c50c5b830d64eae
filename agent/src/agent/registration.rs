//! Publishing this machine under a lease the agent keeps alive, without ever taking
//! over a machine key that another live fleetd holds.
//!
//! A restarted fleetd (crash, SIGKILL, SIGHUP) finds its previous lease id in a small
//! file and takes that lease back while it is alive: the machine key never vanishes,
//! so the engine does not move this machine's units during the restart.

use std::path::Path;
use std::time::Duration;

use fleet_core::Machine;
use fleet_registry::{LeaseId, LeaseKeepAlive, Registry, RegistryError};

/// Why registration did not happen this time (all retryable).
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The machine key exists under a lease that is not ours.
    #[error(
        "machine {machine} is already registered under lease {lease} by another fleetd (same machine ID on two hosts, or a previous registration that has not expired yet)"
    )]
    Duplicate { machine: String, lease: LeaseId },
}

/// Registers `machine` (and where its API answers, for journal/status forwarding) for `ttl`: takes back one of `own_leases` if the machine key is
/// still bound to it, else creates the key under a new lease if it is absent.
pub async fn register(
    registry: &Registry,
    machine: &Machine,
    api_addr: &str,
    ttl: Duration,
    own_leases: &[LeaseId],
) -> Result<LeaseKeepAlive, RegisterError> {
    let existing = machine_key_lease(registry, machine).await?;
    let lease = match existing {
        Some(l) if own_leases.contains(&l) && lease_alive(registry, l).await? => l,
        Some(lease) => {
            tracing::debug!(%lease, own = ?own_leases, "machine key held under another lease");
            return Err(RegisterError::Duplicate {
                machine: machine.id.to_string(),
                lease,
            });
        }
        None => registry.grant_lease(ttl).await?,
    };
    let result = async {
        let keeper = registry.keep_alive(lease, ttl).await?;
        registry.register_machine(machine, api_addr, lease).await?;
        Ok::<_, RegistryError>(keeper)
    }
    .await;
    match result {
        Ok(k) => Ok(k),
        Err(e) => {
            if existing.is_none() {
                let _ = registry.revoke_lease(lease).await;
            }
            Err(e.into())
        }
    }
}

/// The lease the machine key is bound to, if the key exists.
async fn machine_key_lease(
    registry: &Registry,
    machine: &Machine,
) -> Result<Option<LeaseId>, RegistryError> {
    let key = registry.keys().machine(&machine.id);
    let mut c = registry.etcd_client();
    let resp = bounded(registry, "get machine", c.get(key, None)).await?;
    Ok(resp.kvs().first().map(|kv| LeaseId(kv.lease())))
}

async fn lease_alive(registry: &Registry, lease: LeaseId) -> Result<bool, RegistryError> {
    let mut c = registry.etcd_client();
    match bounded(registry, "lease ttl", c.lease_time_to_live(lease.0, None)).await {
        // etcd reports whole seconds: 0 is "under a second left", -1 is gone.
        Ok(r) => Ok(r.ttl() >= 0),
        Err(e) if e.is_unavailable() => Err(e),
        Err(_) => Ok(false),
    }
}

async fn bounded<T>(
    registry: &Registry,
    op: &'static str,
    fut: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, RegistryError> {
    let timeout = registry.request_timeout();
    match tokio::time::timeout(timeout, fut).await {
        Err(_) => Err(RegistryError::Timeout {
            endpoints: "etcd".to_string(),
            timeout,
        }),
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(map_etcd_error(op, e)),
    }
}

/// Sorts a raw etcd-client error into "unreachable" (retry) and "etcd said no".
fn map_etcd_error(op: &'static str, e: etcd_client::Error) -> RegistryError {
    use etcd_client::Error as E;
    let unreachable = match &e {
        E::TransportError(_) | E::IoError(_) => true,
        E::GRpcStatus(s) => matches!(i32::from(s.code()), 14 | 4 | 2),
        _ => false,
    };
    if unreachable {
        RegistryError::Unreachable {
            endpoints: "etcd".to_string(),
            source: e,
        }
    } else {
        RegistryError::Etcd { op, source: e }
    }
}

/// The lease id a previous fleetd on this machine saved, if any.
pub fn read_lease_file(path: &Path) -> Option<LeaseId> {
    let text = std::fs::read_to_string(path).ok()?;
    i64::from_str_radix(text.trim(), 16).ok().map(LeaseId)
}

/// Remembers the lease for the next fleetd on this machine; failure only costs a
/// slower restart, so it is logged, not fatal.
pub fn write_lease_file(path: &Path, lease: LeaseId) {
    let write = || {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, format!("{lease}\n"))
    };
    if let Err(e) = write() {
        tracing::warn!(path = %path.display(), error = %e, "cannot save the agent's lease id");
    }
}

/// Forgets the saved lease (graceful shutdown revoked it).
pub fn remove_lease_file(path: &Path) {
    let _ = std::fs::remove_file(path);
}
