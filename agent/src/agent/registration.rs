//! Keeping the agent's lease id across restarts of fleetd.
//!
//! A restarted fleetd (SIGTERM, crash, SIGKILL, SIGHUP) finds its previous lease id in a small
//! file and takes that lease back while it is alive (see
//! `fleet_registry::Registry::register_agent`): the machine key never vanishes, so the
//! engine does not move this machine's units during the restart.

use std::path::Path;

use fleet_registry::LeaseId;

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
