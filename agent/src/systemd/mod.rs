//! The boundary between the agent and systemd.
//!
//! The agent's reconciler only ever talks to a [`UnitManager`]. The real implementation
//! drives `org.freedesktop.systemd1` over D-Bus; a simulated one (instant, in memory)
//! exists only so benchmarks can run thousands of agents in one process. Architecture
//! invariant: nothing outside this module speaks D-Bus.

use std::future::Future;
use std::time::Duration;

use fleet_core::{SystemdState, UnitHash, UnitName};
use tokio::sync::mpsc;

/// A systemd operation failed; names the unit and the operation.
#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    #[error("cannot connect to systemd: {0}")]
    Connect(String),
    #[error("{op} {unit}: {message}")]
    Unit {
        op: &'static str,
        unit: String,
        message: String,
    },
    #[error("{op}: {message}")]
    Manager { op: &'static str, message: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// A hint that a unit's state may have changed (from D-Bus signals); the agent batches
/// these and asks [`UnitManager::states`] once per batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateChanged(pub UnitName);

/// What the agent needs from systemd on its machine. Methods take batches where systemd
/// can do a batch in one call, so a reconcile of N units costs one daemon-reload and one
/// state query, not N.
pub trait UnitManager: Send + Sync + 'static {
    /// Writes each unit's text to the units directory (e.g. `/run/fleet/units/<name>`),
    /// links it into systemd's runtime unit directory, and runtime-enables units that
    /// have an `[Install]` section (as fleet did). Does not reload.
    fn write_units(
        &self,
        units: &[(UnitName, String)],
    ) -> impl Future<Output = Result<(), SystemdError>> + Send;

    /// Disables (runtime), unlinks and deletes these units' files; resets their failed
    /// state. The caller stops them first. Does not reload.
    fn remove_units(
        &self,
        units: &[UnitName],
    ) -> impl Future<Output = Result<(), SystemdError>> + Send;

    /// One daemon-reload, after a batch of writes/removals.
    fn reload(&self) -> impl Future<Output = Result<(), SystemdError>> + Send;

    /// StartUnit(name, "replace"); does not wait for the job to finish.
    fn start(&self, unit: &UnitName) -> impl Future<Output = Result<(), SystemdError>> + Send;

    /// StopUnit(name, "replace"); does not wait for the job to finish.
    fn stop(&self, unit: &UnitName) -> impl Future<Output = Result<(), SystemdError>> + Send;

    /// systemd's LOAD/ACTIVE/SUB of these units, in one call (ListUnitsByNames).
    fn states(
        &self,
        units: &[UnitName],
    ) -> impl Future<Output = Result<Vec<(UnitName, SystemdState)>, SystemdError>> + Send;

    /// Units found in the units directory with the hash of their file: what a restarted
    /// agent adopts instead of restarting.
    fn installed_units(
        &self,
    ) -> impl Future<Output = Result<Vec<(UnitName, UnitHash)>, SystemdError>> + Send;

    /// Arms this machine's fence: a transient systemd timer, named after `fence` (see
    /// [`fence_name`]), that stops `units` after `after` unless
    /// [`UnitManager::disarm_fences`] removes it first. Armed by a fleetd that stops
    /// and leaves its units running, so that a fleetd which does not come back cannot
    /// leave copies running that the engine has placed elsewhere.
    fn arm_fence(
        &self,
        fence: &str,
        units: &[UnitName],
        after: Duration,
    ) -> impl Future<Output = Result<(), SystemdError>> + Send;

    /// Stops every timer a previous fleetd armed under `fence` (the units keep running);
    /// returns how many there were.
    fn disarm_fences(
        &self,
        fence: &str,
    ) -> impl Future<Output = Result<usize, SystemdError>> + Send;

    /// A stream of state-change hints for units of the units directory. Implementations
    /// must drain their signal sources continuously (zbus stalls method calls when a
    /// signal queue fills).
    fn subscribe(
        &self,
    ) -> impl Future<Output = Result<mpsc::Receiver<StateChanged>, SystemdError>> + Send;
}

/// The name prefix of a machine's fence timers: `fleet-fence-<machine id>`, with any
/// character systemd refuses in a unit name replaced by `_`.
pub fn fence_name(machine: &str) -> String {
    let id: String = machine
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("fleet-fence-{id}")
}

mod call_counts;
mod dbus;
mod proxy;
mod signals;
mod simulated;
mod unit_files;

pub use call_counts::CallCounts;
pub use dbus::{DEFAULT_CALL_TIMEOUT, DEFAULT_UNITS_DIRECTORY, SystemdManager, SystemdOptions};
pub use simulated::SimulatedSystemd;
