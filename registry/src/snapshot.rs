//! The whole cluster at one revision: what the engine plans from.

use crate::decode;
use crate::error::RegistryError;
use crate::model::ClusterSnapshot;
use crate::registry::Registry;

impl Registry {
    /// Reads units, targets, machines, schedule, states and unplaced notes in ONE txn,
    /// so all of it is consistent at `revision`; watch from `revision + 1` to follow.
    pub async fn snapshot(&self) -> Result<ClusterSnapshot, RegistryError> {
        self.read_snapshot("snapshot", whole(&self.keys), true)
            .await
    }

    /// What the engine plans from: [`Registry::snapshot`] without the unit states
    /// (`states` is empty), which the scheduler never reads and which are as many as
    /// the units; one txn, consistent at `revision`. The HTTP API reads one unit with it.
    pub async fn placement_snapshot(&self) -> Result<ClusterSnapshot, RegistryError> {
        self.read_snapshot("placement snapshot", whole(&self.keys), false)
            .await
    }

    /// What `fleetctl list-units` shows: every machine and every reported state, in one
    /// txn at `revision`; units (with their texts), targets, placements and the rest
    /// are left empty, as list-units prints none of them.
    pub async fn states_snapshot(&self) -> Result<ClusterSnapshot, RegistryError> {
        let k = &self.keys;
        let (revision, g) = self
            .get_prefixes("states snapshot", vec![k.machines(), k.states()])
            .await?;
        let [machines, states] = g.as_slice() else {
            return Err(RegistryError::corrupt(
                k.prefix().as_bytes(),
                "states txn returned an unexpected number of ranges",
            ));
        };
        let mut skipped = Vec::new();
        let mut snap = ClusterSnapshot {
            revision,
            machines: decode::machines(k, machines.kvs(), &mut skipped),
            states: decode::states(k, states.kvs(), &mut skipped),
            ..ClusterSnapshot::default()
        };
        skipped.sort_by(|a, b| a.key.cmp(&b.key));
        snap.skipped = skipped;
        Ok(snap)
    }

    /// The snapshot of the units, targets and unplaced notes under `[units, jobs,
    /// unplaced]` (the whole cluster's, or one namespace's), with every machine,
    /// placement and drain (and state if `with_states`), in one txn.
    pub(crate) async fn read_snapshot(
        &self,
        op: &'static str,
        [units, jobs, unplaced]: [String; 3],
        with_states: bool,
    ) -> Result<ClusterSnapshot, RegistryError> {
        let k = &self.keys;
        let mut prefixes = vec![
            units,
            jobs,
            k.machines(),
            k.schedules(),
            unplaced,
            k.drains(),
        ];
        if with_states {
            prefixes.push(k.states());
        }
        let (revision, g) = self.get_prefixes(op, prefixes).await?;
        let (ranges, states) = g.split_at(g.len().min(6));
        let [units, jobs, machines, schedule, unplaced, drains] = ranges else {
            return Err(RegistryError::corrupt(
                k.prefix().as_bytes(),
                "snapshot txn returned an unexpected number of ranges",
            ));
        };
        let mut skipped = Vec::new();
        let s = &mut skipped;
        let mut snap = ClusterSnapshot {
            revision,
            units: decode::units(k, units.kvs(), jobs.kvs(), s),
            machines: decode::machines(k, machines.kvs(), s),
            schedule: decode::schedule(k, schedule.kvs(), s),
            states: match states.first() {
                Some(st) => decode::states(k, st.kvs(), s),
                None => Vec::new(),
            },
            unplaced: decode::unplaced(k, unplaced.kvs(), s),
            drained: decode::drained(k, drains.kvs(), s),
            skipped: Vec::new(),
        };
        skipped.sort_by(|a, b| a.key.cmp(&b.key));
        snap.skipped = skipped;
        Ok(snap)
    }
}

/// The unit, target and unplaced prefixes of the whole cluster (every namespace).
fn whole(k: &crate::Keys) -> [String; 3] {
    [k.units(), k.jobs(), k.unplaced_all()]
}
