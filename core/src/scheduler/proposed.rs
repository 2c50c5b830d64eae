//! The mutable half of a pass: where every unit is *now*, including decisions taken
//! earlier in the same pass (Nomad's "proposed allocations"), with the indices the
//! checks and the ranker read: load order, per-glob counters per machine and class.

use std::collections::{BTreeSet, HashMap};

use super::patterns::PatId;
use super::snapshot::Snapshot;

/// Small per-machine multiset of glob ids (a machine holds tens of units).
#[derive(Default, Clone)]
struct Counts(Vec<(PatId, u32)>);

impl Counts {
    fn get(&self, p: PatId) -> u32 {
        self.0.iter().find(|(q, _)| *q == p).map_or(0, |(_, n)| *n)
    }

    /// Adds one; returns whether the glob is new on this machine.
    fn inc(&mut self, p: PatId) -> bool {
        match self.0.iter_mut().find(|(q, _)| *q == p) {
            Some((_, n)) => {
                *n += 1;
                false
            }
            None => {
                self.0.push((p, 1));
                true
            }
        }
    }

    /// Removes one; returns whether the glob left this machine.
    fn dec(&mut self, p: PatId) -> bool {
        if let Some(pos) = self.0.iter().position(|(q, _)| *q == p) {
            self.0[pos].1 -= 1;
            if self.0[pos].1 == 0 {
                self.0.swap_remove(pos);
                return true;
            }
        }
        false
    }
}

/// Load-ordered key: (units on machine, machine index), packed so a `BTreeSet<u64>`
/// iterates machines least-loaded first, ties by id.
pub(super) fn load_key(load: usize, machine: u32) -> u64 {
    ((load as u64) << 32) | u64::from(machine)
}

pub(super) fn key_machine(key: u64) -> u32 {
    key as u32
}

pub(super) struct Proposed {
    /// Units on each machine (globals included: they count toward load and conflicts).
    pub on: Vec<Vec<u32>>,
    /// The machine of each placed non-global unit.
    pub machine_of: Vec<Option<u32>>,
    /// Machines of each global unit, ascending.
    pub global_on: HashMap<u32, Vec<u32>>,
    /// Per machine: how many units there match each glob.
    hits: Vec<Counts>,
    /// Per machine: how many units there declare each `Conflicts=` glob.
    declared: Vec<Counts>,
    /// Per machine: how many units there declare `Replaces=` (non-zero: scan needed).
    pub replacers: Vec<u32>,
    /// Per (glob, class): machines of the class with a unit matching the glob.
    class_hit: HashMap<(PatId, u32), u32>,
    /// Per (glob, class): machines of the class with a unit declaring it in Conflicts.
    class_declared: HashMap<(PatId, u32), u32>,
    pub by_load: BTreeSet<u64>,
    pub by_load_in_class: Vec<BTreeSet<u64>>,
}

impl Proposed {
    pub(super) fn new(snap: &Snapshot<'_>) -> Proposed {
        let n = snap.machines.len();
        let mut by_load_in_class = vec![BTreeSet::new(); snap.class_members.len()];
        for (m, &c) in snap.class_of.iter().enumerate() {
            by_load_in_class[c as usize].insert(load_key(0, m as u32));
        }
        Proposed {
            on: vec![Vec::new(); n],
            machine_of: vec![None; snap.units.len()],
            global_on: HashMap::new(),
            hits: vec![Counts::default(); n],
            declared: vec![Counts::default(); n],
            replacers: vec![0; n],
            class_hit: HashMap::new(),
            class_declared: HashMap::new(),
            by_load: (0..n as u32).map(|m| load_key(0, m)).collect(),
            by_load_in_class,
        }
    }

    pub(super) fn load(&self, machine: u32) -> usize {
        self.on[machine as usize].len()
    }

    /// Whether `unit` is on `machine` in the proposed state.
    pub(super) fn is_on(&self, snap: &Snapshot<'_>, unit: u32, machine: u32) -> bool {
        if snap.info[unit as usize].global {
            self.on[machine as usize].contains(&unit)
        } else {
            self.machine_of[unit as usize] == Some(machine)
        }
    }

    /// Whether a unit matching glob `p` is on the machine.
    pub(super) fn has_hit(&self, machine: u32, p: PatId) -> bool {
        self.hits[machine as usize].get(p) > 0
    }

    /// Whether a unit declaring `Conflicts=` glob `p` is on the machine.
    pub(super) fn has_declared(&self, machine: u32, p: PatId) -> bool {
        self.declared[machine as usize].get(p) > 0
    }

    /// Machines of `class` holding a unit matching `p`.
    pub(super) fn class_hits(&self, p: PatId, class: u32) -> u32 {
        self.class_hit.get(&(p, class)).copied().unwrap_or(0)
    }

    /// Machines of `class` holding a unit that declares `Conflicts=` glob `p`.
    pub(super) fn class_declares(&self, p: PatId, class: u32) -> u32 {
        self.class_declared.get(&(p, class)).copied().unwrap_or(0)
    }

    pub(super) fn add(&mut self, snap: &Snapshot<'_>, unit: u32, machine: u32) {
        let m = machine as usize;
        let class = snap.class_of[m];
        let info = &snap.info[unit as usize];
        self.reindex_load(class, machine, self.on[m].len(), self.on[m].len() + 1);
        self.on[m].push(unit);
        if info.global {
            let v = self.global_on.entry(unit).or_default();
            if let Err(pos) = v.binary_search(&machine) {
                v.insert(pos, machine);
            }
        } else {
            self.machine_of[unit as usize] = Some(machine);
        }
        for &p in &info.matched {
            if self.hits[m].inc(p) {
                *self.class_hit.entry((p, class)).or_default() += 1;
            }
        }
        for &p in &info.conflicts {
            if self.declared[m].inc(p) {
                *self.class_declared.entry((p, class)).or_default() += 1;
            }
        }
        if !info.replaces.is_empty() {
            self.replacers[m] += 1;
        }
    }

    pub(super) fn remove(&mut self, snap: &Snapshot<'_>, unit: u32, machine: u32) {
        let m = machine as usize;
        let Some(pos) = self.on[m].iter().position(|&u| u == unit) else {
            return;
        };
        let class = snap.class_of[m];
        let info = &snap.info[unit as usize];
        self.reindex_load(class, machine, self.on[m].len(), self.on[m].len() - 1);
        self.on[m].swap_remove(pos);
        if info.global {
            if let Some(v) = self.global_on.get_mut(&unit) {
                v.retain(|&x| x != machine);
            }
        } else {
            self.machine_of[unit as usize] = None;
        }
        for &p in &info.matched {
            if self.hits[m].dec(p) {
                decrement(&mut self.class_hit, (p, class));
            }
        }
        for &p in &info.conflicts {
            if self.declared[m].dec(p) {
                decrement(&mut self.class_declared, (p, class));
            }
        }
        if !info.replaces.is_empty() {
            self.replacers[m] -= 1;
        }
    }

    fn reindex_load(&mut self, class: u32, machine: u32, from: usize, to: usize) {
        self.by_load.remove(&load_key(from, machine));
        self.by_load.insert(load_key(to, machine));
        let set = &mut self.by_load_in_class[class as usize];
        set.remove(&load_key(from, machine));
        set.insert(load_key(to, machine));
    }
}

fn decrement(map: &mut HashMap<(PatId, u32), u32>, key: (PatId, u32)) {
    if let Some(n) = map.get_mut(&key) {
        *n -= 1;
        if *n == 0 {
            map.remove(&key);
        }
    }
}
