//! The agent: one per machine. It registers the machine under a lease, makes systemd
//! match what the engine scheduled here (`schedule/<me>/`, the only prefix it
//! watches), and reports unit states from systemd's signals under the same lease.
//!
//! - [`identity`]: machine id and public IP.
//! - [`registration`]: the machine key and its lease.
//! - [`reconcile`]: the pure plan (desired × current → actions).
//! - [`execute`]: applies a plan through a [`crate::systemd::UnitManager`].
//! - [`AgentMetrics`]: counters readable while the agent runs (benchmarks).
//! - `events`: the loop's closed `Event` set and its pure handler (debounce, batching,
//!   retries, resync), tested under a paused clock.
//! - `runner`: the event loop tying them together (waits for the next event, runs the
//!   handler's effects).

mod events;
pub mod execute;
pub mod identity;
mod metrics;
pub mod reconcile;
pub mod registration;
mod runner;

use std::path::{Path, PathBuf};
use std::time::Duration;

use fleet_core::Machine;

use crate::config::Config;

pub use metrics::AgentMetrics;
pub use runner::{Agent, AgentError};

/// How an agent behaves; built from fleetd's [`Config`] or set directly in tests.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// What is published at `machine/<id>`.
    pub machine: Machine,
    /// Where this machine's API answers (`http(s)://ip:port`), published with the machine
    /// so any fleetd can forward journal/status here; empty when it has no TCP listener.
    pub api_addr: String,
    /// Lease TTL of the machine and state keys (`agent_ttl`).
    pub ttl: Duration,
    /// Where the lease id is kept across restarts of fleetd (`None`: not kept).
    pub lease_file: Option<PathBuf>,
    /// Schedule events closer together than this are handled as one batch.
    pub debounce: Duration,
    /// systemd state hints are collected this long before one state query.
    pub state_batch: Duration,
    /// Full re-list of the schedule and republish of every state (safety net).
    pub resync_interval: Duration,
    /// Told `true` while the machine is registered, `false` otherwise (the API refuses
    /// calls meanwhile, as fleet's did).
    pub registered: Option<std::sync::Arc<tokio::sync::watch::Sender<bool>>>,
    /// Every unit here opts in to `StopOnEtcdLoss` (fleet.conf `stop_on_etcd_loss`).
    pub stop_on_etcd_loss: bool,
}

impl AgentConfig {
    /// Defaults for a machine: 15 ms debounce, 50 ms state batches, 60 s resync.
    pub fn new(machine: Machine, ttl: Duration) -> Self {
        AgentConfig {
            machine,
            api_addr: String::new(),
            ttl,
            lease_file: None,
            debounce: Duration::from_millis(15),
            state_batch: Duration::from_millis(50),
            resync_interval: Duration::from_secs(60),
            registered: None,
            stop_on_etcd_loss: false,
        }
    }

    /// fleetd's agent: the lease id is kept next to the units directory.
    pub fn from_config(config: &Config, machine: Machine) -> Self {
        let mut c = AgentConfig::new(machine, config.agent_ttl);
        c.lease_file = Some(lease_file_for(&config.units_directory, &c.machine));
        c.stop_on_etcd_loss = config.stop_on_etcd_loss;
        c
    }
}

/// `/run/fleet/units/` → `/run/fleet/agent-<machine>.lease`: outside the units
/// directory (which holds only unit files), per machine id (several agents may share
/// a host in tests).
fn lease_file_for(units_directory: &Path, machine: &Machine) -> PathBuf {
    let dir = units_directory
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(units_directory);
    dir.join(format!("agent-{}.lease", machine.id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_core::MachineId;

    #[test]
    fn lease_file_sits_beside_the_units_directory() {
        let m = Machine::new(MachineId::new("abc").unwrap());
        assert_eq!(
            lease_file_for(Path::new("/run/fleet/units/"), &m),
            PathBuf::from("/run/fleet/agent-abc.lease")
        );
    }
}
