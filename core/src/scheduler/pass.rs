//! One scheduling pass: globals, then keep what may stay, then place the rest.
//!
//! 1. Globals on every eligible machine (name order).
//! 2. Keep: each current placement, targets before followers, stays if its machine is
//!    alive and still passes every check against what is kept so far (stability: a
//!    placed unit never moves while its machine is alive and eligible).
//! 3. Place: every unit without a machine, targets before followers, least-loaded.
//!    Units displaced by `Replaces=` (with their followers) are queued and placed after;
//!    a displacement frees room, so units left without a machine are then retried
//!    (otherwise the next pass would place them: plans must be idempotent).
//! 4. The plan is the difference between the current and the proposed schedule.

use std::collections::{HashMap, VecDeque};

use super::explain::describe;
use super::proposed::Proposed;
use super::snapshot::Snapshot;
use super::view::{ClusterView, Plan, UnplaceReason};
use super::{feasible, machine_of, rank, replaces};
use crate::TargetState;

pub(super) struct Pass<'a> {
    pub snap: Snapshot<'a>,
    pub prop: Proposed,
    /// Current machines of each known unit on a live machine, ascending.
    pub original: Vec<Vec<u32>>,
    /// Why a (unit, machine) placement was dropped, if it was.
    pub reasons: HashMap<(u32, u32), UnplaceReason>,
    pub unplaceable: HashMap<u32, String>,
    pending: VecDeque<u32>,
    /// Set whenever a unit leaves a machine during placement.
    evicted: bool,
}

pub(super) fn run(view: &ClusterView, namespaces: &crate::Namespaces) -> Plan {
    let snap = Snapshot::build(view, namespaces);
    let prop = Proposed::new(&snap);
    let n = snap.units.len();
    let mut plan = Plan::default();
    let mut original = vec![Vec::new(); n];
    for (unit, machine) in &view.placements {
        match (
            snap.unit_by_name.get(unit.as_str()),
            snap.machine_by_id.get(machine.as_str()),
        ) {
            (None, _) => {
                plan.unplace
                    .push((unit.clone(), machine.clone(), UnplaceReason::UnitRemoved))
            }
            (Some(_), None) => {
                plan.unplace
                    .push((unit.clone(), machine.clone(), UnplaceReason::MachineGone))
            }
            (Some(&u), Some(&m)) => original[u as usize].push(m),
        }
    }
    for o in &mut original {
        o.sort_unstable();
        o.dedup();
    }
    let mut pass = Pass {
        snap,
        prop,
        original,
        reasons: HashMap::new(),
        unplaceable: HashMap::new(),
        pending: VecDeque::new(),
        evicted: false,
    };
    pass.place_globals();
    let (order, cyclic) = machine_of::order(&pass.snap);
    for &u in &order {
        if let Some(cycle) = cyclic.get(&u) {
            for &m in &pass.original[u as usize] {
                pass.reasons
                    .insert((u, m), UnplaceReason::Ineligible(cycle.clone()));
            }
            continue;
        }
        pass.keep(u);
    }
    for (&u, cycle) in &cyclic {
        pass.unplaceable.insert(u, cycle.clone());
    }
    pass.evicted = false;
    // Displacements follow the acyclic "replaces" graph, so this settles; the budget is
    // a guard against pathological graphs, not an expected limit.
    let mut budget = 4 * n + 16;
    let mut rounds = 0;
    while rounds == 0 || (pass.evicted && rounds <= n) {
        rounds += 1;
        pass.evicted = false;
        for &u in &order {
            if !cyclic.contains_key(&u) && pass.prop.machine_of[u as usize].is_none() {
                pass.place(u);
            }
        }
        while let Some(u) = pass.pending.pop_front() {
            if pass.prop.machine_of[u as usize].is_some() {
                continue;
            }
            if budget == 0 {
                pass.unplaceable
                    .insert(u, "placement did not settle in one pass".to_string());
                continue;
            }
            budget -= 1;
            pass.place(u);
        }
        if budget == 0 {
            break;
        }
    }
    pass.finish(plan)
}

impl Pass<'_> {
    /// Keeps the unit on the first of its current machines that still accepts it.
    fn keep(&mut self, u: u32) {
        for i in 0..self.original[u as usize].len() {
            let m = self.original[u as usize][i];
            if self.prop.machine_of[u as usize].is_some() {
                self.reasons.insert((u, m), UnplaceReason::Duplicate);
                continue;
            }
            match feasible(&self.snap, &self.prop, u, m) {
                Ok(()) => self.add(u, m),
                Err(super::Reject::Drained) => {
                    self.reasons.insert((u, m), UnplaceReason::Drained);
                }
                Err(super::Reject::ReplacedBy(by)) => {
                    let by = self.snap.units[by as usize].name.clone();
                    self.reasons.insert((u, m), UnplaceReason::ReplacedBy(by));
                }
                Err(r) => {
                    let why = describe(&self.snap, &self.prop, u, r, m);
                    self.reasons.insert((u, m), UnplaceReason::Ineligible(why));
                }
            }
        }
    }

    fn place(&mut self, u: u32) {
        match rank::choose(&self.snap, &self.prop, u) {
            Ok(m) => {
                self.unplaceable.remove(&u);
                self.add(u, m);
            }
            Err(why) => {
                self.unplaceable.insert(u, why);
            }
        }
    }

    /// Puts the unit on the machine and moves away the units it replaces there.
    fn add(&mut self, u: u32, m: u32) {
        self.prop.add(&self.snap, u, m);
        for v in replaces::victims(&self.snap, &self.prop, u, m) {
            let by = self.snap.units[u as usize].name.clone();
            self.evict(v, m, UnplaceReason::ReplacedBy(by));
        }
    }

    /// Takes the unit and, recursively, its followers off the machine and queues them.
    fn evict(&mut self, unit: u32, m: u32, reason: UnplaceReason) {
        let mut stack = vec![(unit, reason)];
        while let Some((x, reason)) = stack.pop() {
            self.prop.remove(&self.snap, x, m);
            self.reasons.insert((x, m), reason);
            self.pending.push_back(x);
            self.evicted = true;
            let name = &self.snap.units[x as usize].name;
            for &f in &self.snap.followers[x as usize] {
                if self.prop.machine_of[f as usize] == Some(m) {
                    stack.push((f, UnplaceReason::PeerMoved(name.clone())));
                }
            }
        }
    }

    /// The difference between the current and the proposed schedule.
    fn finish(self, mut plan: Plan) -> Plan {
        let snap = &self.snap;
        for (u, spec) in snap.units.iter().enumerate() {
            let u32_ = u as u32;
            let info = &snap.info[u];
            let now: Vec<u32> = if info.global {
                self.prop.global_on.get(&u32_).cloned().unwrap_or_default()
            } else {
                self.prop.machine_of[u].into_iter().collect()
            };
            let before = &self.original[u];
            let machine = |m: u32| snap.machines[m as usize].id.clone();
            for &m in &now {
                if before.contains(&m) {
                    plan.keep.push((spec.name.clone(), machine(m)));
                } else {
                    plan.place.push((spec.name.clone(), machine(m)));
                }
            }
            for &m in before.iter().filter(|m| !now.contains(m)) {
                let reason = if spec.name.is_template() {
                    UnplaceReason::Template
                } else if spec.target == TargetState::Inactive {
                    UnplaceReason::TargetInactive
                } else {
                    self.reasons.get(&(u32_, m)).cloned().unwrap_or_else(|| {
                        UnplaceReason::Ineligible("the machine no longer accepts it".into())
                    })
                };
                plan.unplace.push((spec.name.clone(), machine(m), reason));
            }
            if now.is_empty() && spec.target != TargetState::Inactive {
                let why = if spec.name.is_template() {
                    "a template is never placed; start its instances instead".to_string()
                } else {
                    self.unplaceable
                        .get(&u32_)
                        .cloned()
                        .unwrap_or_else(|| "no machine accepts it".to_string())
                };
                plan.unplaceable.push((spec.name.clone(), why));
            }
        }
        plan.place.sort();
        plan.keep.sort();
        plan.unplace.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        plan.unplace.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
        plan.unplaceable.sort();
        plan.notes = snap
            .notes
            .iter()
            .map(|(u, text)| (snap.units[*u as usize].name.clone(), text.clone()))
            .collect();
        plan.notes.sort();
        plan
    }
}
