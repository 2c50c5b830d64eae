//! The engine's view of the cluster, kept from watches: one full read when leadership
//! is won (or after a watch fails or is compacted), then only the changes. A pass plans
//! from [`EngineView::snapshot`] without reading etcd, so at 100,000 units a pass no
//! longer costs etcd a 30-40 MB range read.
//!
//! `unit/`, `job/`, `machine/`, `drain/`, `namespace/`, `schedule/` and `unplaced/`
//! are watched.
//! The last two are written by the leader itself: the view records its writes as soon
//! as etcd accepted them ([`EngineView::record`], with their revision) and ignores
//! their echo from the watch (any event at or below the revision it knows for that
//! key, so a late echo never undoes a newer write); a change made by anyone else (an
//! operator, a corrupt value) is seen and repaired. `state/` is neither read nor
//! watched (planning never uses it).
//!
//! Decoding follows the snapshot's rules (`decode`): an undecodable record is left
//! out and named in `skipped`; a unit whose text or target is unreadable is left out
//! whole.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use etcd_client::{EventType, KeyValue};
use fleet_core::{MachineId, Namespaces, TargetState, UnitFile, UnitHash, UnitName};

use crate::codec;
use crate::decode;
use crate::election::Leadership;
use crate::error::RegistryError;
use crate::keys::RegistryKey;
use crate::model::{ClusterSnapshot, ScheduleEntry, Skipped, UnitRecord};
use crate::namespaces::decode_namespaces;
use crate::registry::Registry;
use crate::schedule::SchedulePlan;
use crate::watch::RegistryWatch;

/// A decoded record, or why it could not be.
type Slot<T> = Result<T, Skipped>;

/// What the leader plans from, kept current by watches. Dropping it cancels them.
pub struct EngineView {
    reg: Registry,
    /// The newest revision applied (the full read's, then the newest event's).
    revision: i64,
    units: BTreeMap<UnitName, Slot<(UnitFile, UnitHash)>>,
    targets: BTreeMap<UnitName, Slot<TargetState>>,
    /// Keys under `unit/` or `job/` whose name is invalid.
    bad_keys: BTreeMap<Vec<u8>, Skipped>,
    /// Raw: few, and decoded with their metadata keys by the snapshot's rules.
    machines: BTreeMap<Vec<u8>, KeyValue>,
    drains: BTreeMap<Vec<u8>, KeyValue>,
    /// `namespace/` records (few).
    namespaces: BTreeMap<Vec<u8>, KeyValue>,
    schedule: BTreeMap<(MachineId, UnitName), ScheduleEntry>,
    unplaced: BTreeMap<UnitName, String>,
    /// Undecodable `schedule/`/`unplaced/` keys (until rewritten).
    bad_schedule: BTreeMap<String, Skipped>,
    /// The newest revision known of each `schedule/`/`unplaced/` key, deletions
    /// included: older events about it are echoes of what the view already holds.
    written: HashMap<Vec<u8>, i64>,
    watches: [RegistryWatch; 7],
}

/// Which watch an event came from.
#[derive(Clone, Copy)]
enum Source {
    Units,
    Jobs,
    Machines,
    Drains,
    Namespaces,
    Schedule,
    Unplaced,
}

fn skipped(kv: &KeyValue, unit: Option<&UnitName>, unit_record: bool, e: RegistryError) -> Skipped {
    Skipped {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        revision: kv.mod_revision(),
        unit: unit.cloned(),
        unit_record,
        reason: match e {
            RegistryError::Corrupt { reason, .. } => reason,
            e => e.to_string(),
        },
    }
}

impl Leadership {
    /// Reads the cluster once (one txn: units, targets, machines, schedule, unplaced
    /// notes, drains, namespaces, at one revision) and watches it from the next revision.
    pub async fn follow(&self) -> Result<EngineView, RegistryError> {
        let reg = &self.reg;
        let k = &reg.keys;
        let prefixes = vec![
            k.units(),
            k.jobs(),
            k.machines(),
            k.schedules(),
            k.unplaced_all(),
            k.drains(),
            k.namespaces(),
        ];
        let (revision, g) = reg.get_prefixes("engine view", prefixes).await?;
        let [
            units,
            jobs,
            machines,
            schedule,
            unplaced,
            drains,
            namespaces,
        ] = &g[..]
        else {
            return Err(RegistryError::corrupt(
                k.prefix().as_bytes(),
                "view txn returned an unexpected number of ranges",
            ));
        };
        let from = revision + 1;
        let mut view = EngineView {
            reg: reg.clone(),
            revision,
            units: BTreeMap::new(),
            targets: BTreeMap::new(),
            bad_keys: BTreeMap::new(),
            machines: BTreeMap::new(),
            drains: BTreeMap::new(),
            namespaces: BTreeMap::new(),
            schedule: BTreeMap::new(),
            unplaced: BTreeMap::new(),
            bad_schedule: BTreeMap::new(),
            written: HashMap::new(),
            watches: [
                reg.watch_prefix(k.units(), from),
                reg.watch_prefix(k.jobs(), from),
                reg.watch_prefix(k.machines(), from),
                reg.watch_prefix(k.drains(), from),
                reg.watch_prefix(k.namespaces(), from),
                reg.watch_prefix(k.schedules(), from),
                reg.watch_prefix(k.unplaced_all(), from),
            ],
        };
        for (source, r) in [
            (Source::Units, units),
            (Source::Jobs, jobs),
            (Source::Machines, machines),
            (Source::Drains, drains),
            (Source::Namespaces, namespaces),
            (Source::Schedule, schedule),
            (Source::Unplaced, unplaced),
        ] {
            for kv in r.kvs() {
                view.apply(source, false, kv);
            }
        }
        Ok(view)
    }
}

impl EngineView {
    /// The newest revision the view includes.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// The cluster as the snapshot would read it now (without unit states).
    pub fn snapshot(&self) -> ClusterSnapshot {
        let k = &self.reg.keys;
        let mut skipped: Vec<Skipped> = self.bad_keys.values().cloned().collect();
        skipped.extend(self.bad_schedule.values().cloned());
        for t in self.targets.values() {
            if let Err(s) = t {
                skipped.push(s.clone());
            }
        }
        let mut units = Vec::with_capacity(self.units.len());
        for (name, slot) in &self.units {
            let (file, hash) = match slot {
                Ok(u) => u,
                Err(s) => {
                    skipped.push(s.clone());
                    continue;
                }
            };
            let target = match self.targets.get(name) {
                Some(Ok(t)) => *t,
                Some(Err(_)) => continue,
                None => TargetState::Inactive,
            };
            units.push(UnitRecord {
                name: name.clone(),
                file: file.clone(),
                hash: *hash,
                target,
            });
        }
        let machines: Vec<KeyValue> = self.machines.values().cloned().collect();
        let drains: Vec<KeyValue> = self.drains.values().cloned().collect();
        let mut snap = ClusterSnapshot {
            revision: self.revision,
            units,
            machines: decode::machines(k, &machines, &mut skipped),
            schedule: self.schedule.values().cloned().collect(),
            states: Vec::new(),
            unplaced: self.unplaced.clone(),
            drained: decode::drained(k, &drains, &mut skipped),
            skipped: Vec::new(),
        };
        skipped.sort_by(|a, b| a.key.cmp(&b.key));
        snap.skipped = skipped;
        snap
    }

    /// Namespaces besides `default` and their machine selectors, as last seen.
    pub fn namespaces(&self) -> Namespaces {
        let kvs: Vec<KeyValue> = self.namespaces.values().cloned().collect();
        Namespaces::new(decode_namespaces(&self.reg.keys, &kvs))
    }

    /// Records a plan etcd accepted at `revision` (the newest of its txns), so the
    /// next pass plans from it without waiting for the watch to echo it.
    pub fn record(&mut self, plan: &SchedulePlan, revision: i64) {
        let k = self.reg.keys.clone();
        let mut wrote = |key: String| {
            self.bad_schedule.remove(&key);
            let r = self.written.entry(key.into_bytes()).or_insert(revision);
            *r = (*r).max(revision);
        };
        for (m, n) in &plan.unschedule {
            wrote(k.schedule(m, n));
        }
        for e in &plan.place {
            wrote(k.schedule(&e.machine, &e.unit));
        }
        for n in &plan.clear_unplaced {
            wrote(k.unplaced(n));
        }
        for (n, _) in &plan.unplaced {
            wrote(k.unplaced(n));
        }
        for (m, n) in &plan.unschedule {
            self.schedule.remove(&(m.clone(), n.clone()));
        }
        for e in &plan.place {
            self.schedule.insert(
                (e.machine.clone(), e.unit.clone()),
                e.clone().without_text(),
            );
        }
        for n in &plan.clear_unplaced {
            self.unplaced.remove(n);
        }
        for (n, why) in &plan.unplaced {
            self.unplaced.insert(n.clone(), why.clone());
        }
    }

    /// Waits for a change (not the echo of the leader's own writes), applies it, then
    /// keeps applying changes for `debounce` so one pass covers a burst. Returns how
    /// many events changed the view. Errors (a compacted or broken watch) leave the
    /// view stale: follow again. Cancel-safe (events received are applied at once).
    pub async fn changed(&mut self, debounce: Duration) -> Result<usize, RegistryError> {
        let mut applied = 0;
        while applied == 0 {
            applied = self.next_any().await?;
        }
        let quiet = tokio::time::sleep(debounce);
        tokio::pin!(quiet);
        loop {
            tokio::select! {
                _ = &mut quiet => return Ok(applied),
                n = self.next_any() => applied += n?,
            }
        }
    }

    /// Applies the next batch from any watch.
    async fn next_any(&mut self) -> Result<usize, RegistryError> {
        let [
            units,
            jobs,
            machines,
            drains,
            namespaces,
            schedule,
            unplaced,
        ] = &mut self.watches;
        let (source, events) = tokio::select! {
            e = units.next_raw() => (Source::Units, e?),
            e = jobs.next_raw() => (Source::Jobs, e?),
            e = machines.next_raw() => (Source::Machines, e?),
            e = drains.next_raw() => (Source::Drains, e?),
            e = namespaces.next_raw() => (Source::Namespaces, e?),
            e = schedule.next_raw() => (Source::Schedule, e?),
            e = unplaced.next_raw() => (Source::Unplaced, e?),
        };
        let mut changed = 0;
        for ev in &events {
            let Some(kv) = ev.kv() else { continue };
            self.revision = self.revision.max(kv.mod_revision());
            if self.apply(source, ev.event_type() == EventType::Delete, kv) {
                changed += 1;
            }
        }
        Ok(changed)
    }

    /// Applies one key's new value (or deletion); false if it was an echo of what the
    /// view already holds.
    fn apply(&mut self, source: Source, deleted: bool, kv: &KeyValue) -> bool {
        if matches!(source, Source::Schedule | Source::Unplaced) {
            let known = self.written.entry(kv.key().to_vec()).or_insert(0);
            if *known >= kv.mod_revision() {
                return false;
            }
            *known = kv.mod_revision();
        }
        if deleted {
            self.delete(source, kv);
        } else {
            self.put(source, kv);
        }
        true
    }

    fn put(&mut self, source: Source, kv: &KeyValue) {
        let key = kv.key();
        match source {
            Source::Schedule | Source::Unplaced => {
                let key_text = String::from_utf8_lossy(key).into_owned();
                self.bad_schedule.remove(&key_text);
                match self.reg.keys.parse(key) {
                    Ok(Some(RegistryKey::Schedule(m, n))) => {
                        let slot = (m.clone(), n.clone());
                        match codec::decode_schedule(key, m, n.clone(), kv.value()) {
                            Ok(e) => {
                                self.schedule.insert(slot, e.without_text());
                            }
                            Err(e) => {
                                self.schedule.remove(&slot);
                                self.bad_schedule
                                    .insert(key_text, skipped(kv, Some(&n), false, e));
                            }
                        }
                    }
                    Ok(Some(RegistryKey::Unplaced(n))) => {
                        self.unplaced.insert(n, codec::decode_unplaced(kv.value()));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        self.bad_schedule
                            .insert(key_text, skipped(kv, None, false, e));
                    }
                }
            }
            Source::Machines => {
                self.machines.insert(key.to_vec(), kv.clone());
            }
            Source::Drains => {
                self.drains.insert(key.to_vec(), kv.clone());
            }
            Source::Namespaces => {
                self.namespaces.insert(key.to_vec(), kv.clone());
            }
            Source::Units | Source::Jobs => match self.reg.keys.parse(key) {
                Ok(Some(RegistryKey::Unit(n))) => {
                    let slot = codec::decode_unit(key, kv.value())
                        .map_err(|e| skipped(kv, Some(&n), true, e));
                    self.units.insert(n, slot);
                }
                Ok(Some(RegistryKey::JobTarget(n))) => {
                    let slot = codec::decode_target(key, kv.value())
                        .map_err(|e| skipped(kv, Some(&n), true, e));
                    self.targets.insert(n, slot);
                }
                Ok(_) => {}
                Err(e) => {
                    self.bad_keys
                        .insert(key.to_vec(), skipped(kv, None, false, e));
                }
            },
        }
    }

    fn delete(&mut self, source: Source, kv: &KeyValue) {
        let key = kv.key();
        match source {
            Source::Schedule | Source::Unplaced => {
                self.bad_schedule
                    .remove(String::from_utf8_lossy(key).as_ref());
                match self.reg.keys.parse(key) {
                    Ok(Some(RegistryKey::Schedule(m, n))) => {
                        self.schedule.remove(&(m, n));
                    }
                    Ok(Some(RegistryKey::Unplaced(n))) => {
                        self.unplaced.remove(&n);
                    }
                    _ => {}
                }
            }
            Source::Machines => {
                self.machines.remove(key);
            }
            Source::Drains => {
                self.drains.remove(key);
            }
            Source::Namespaces => {
                self.namespaces.remove(key);
            }
            Source::Units | Source::Jobs => {
                self.bad_keys.remove(key);
                match self.reg.keys.parse(key) {
                    Ok(Some(RegistryKey::Unit(n))) => {
                        self.units.remove(&n);
                    }
                    Ok(Some(RegistryKey::JobTarget(n))) => {
                        self.targets.remove(&n);
                    }
                    _ => {}
                }
            }
        }
    }
}
