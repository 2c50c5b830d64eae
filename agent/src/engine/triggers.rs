//! What wakes the leader: watches on `unit/`, `job/`, `machine/` and `drain/` from a revision,
//! debounced so a burst of submissions becomes one pass. `schedule/` and `unplaced/`
//! are written only by the engine itself and `state/` does not affect placement, so
//! they are not watched (agents' state reports never wake the engine).

use std::time::Duration;

use fleet_registry::{Registry, RegistryError, RegistryWatch, WatchBatch, WatchEvent};

/// The watches the leader follows. Dropping it cancels them.
pub struct Triggers {
    units: RegistryWatch,
    jobs: RegistryWatch,
    machines: RegistryWatch,
    drains: RegistryWatch,
}

impl Triggers {
    /// Watches from `from_revision` (a snapshot's revision + 1), so nothing between
    /// the snapshot and the watch is missed.
    pub fn new(reg: &Registry, from_revision: i64) -> Triggers {
        let k = reg.keys();
        Triggers {
            units: reg.watch_prefix(k.units(), from_revision),
            jobs: reg.watch_prefix(k.jobs(), from_revision),
            machines: reg.watch_prefix(k.machines(), from_revision),
            drains: reg.watch_prefix(k.drains(), from_revision),
        }
    }

    /// Waits for a change after revision `seen` (changes up to `seen` are already in
    /// the last snapshot), then keeps collecting for `debounce` so one pass covers the
    /// burst. Returns the newest revision seen. Cancel-safe (the watches are).
    pub async fn changed_after(
        &mut self,
        seen: i64,
        debounce: Duration,
    ) -> Result<i64, RegistryError> {
        let mut newest = loop {
            let batch = self.next_any().await?;
            if let Some(rev) = newest_after(&batch, seen) {
                break rev;
            }
        };
        let quiet = tokio::time::sleep(debounce);
        tokio::pin!(quiet);
        loop {
            tokio::select! {
                _ = &mut quiet => return Ok(newest),
                batch = self.next_any() => {
                    if let Some(rev) = newest_after(&batch?, seen) {
                        newest = newest.max(rev);
                    }
                }
            }
        }
    }

    async fn next_any(&mut self) -> Result<WatchBatch, RegistryError> {
        tokio::select! {
            b = self.units.next() => b,
            b = self.jobs.next() => b,
            b = self.machines.next() => b,
            b = self.drains.next() => b,
        }
    }
}

/// The newest event revision in `batch` that the last snapshot did not include.
fn newest_after(batch: &WatchBatch, seen: i64) -> Option<i64> {
    batch
        .events
        .iter()
        .map(|e| match e {
            WatchEvent::Put { revision, .. }
            | WatchEvent::Delete { revision, .. }
            | WatchEvent::Corrupt { revision, .. } => *revision,
        })
        .filter(|&r| r > seen)
        .max()
}
