//! From a snapshot to the writes of one pass: the pure scheduler's plan turned into
//! the smallest set of registry changes (only what differs from the snapshot is
//! written, so an agent whose schedule did not change receives no event).

use std::collections::{BTreeMap, BTreeSet};

use fleet_core::scheduler::{self, ClusterView, Plan, UnitSpec};
use fleet_core::{Namespaces, Requirements, UnitName};
use fleet_registry::{ClusterSnapshot, ScheduleEntry, SchedulePlan, UnitRecord};

/// One pass's decisions: what to write, and the scheduler's plan (for logs).
#[derive(Debug)]
pub struct Decisions {
    pub writes: SchedulePlan,
    pub plan: Plan,
}

/// Plans from `snap` and diffs the result against it. No I/O.
///
/// A unit whose record could not be decoded (skipped in the snapshot) is not planned,
/// and neither stopped nor moved: its placements and unplaced note stay as they are
/// until the record is fixed or destroyed.
pub fn decide(snap: &ClusterSnapshot) -> Decisions {
    decide_in(snap, &Namespaces::default())
}

/// [`decide`] with units of several namespaces: each unit's rules are expanded for its
/// name within its namespace and apply there (`scheduler::plan_in`).
pub fn decide_in(snap: &ClusterSnapshot, namespaces: &Namespaces) -> Decisions {
    let mut plan = scheduler::plan_in(&view_of(snap, namespaces), namespaces);
    let units: BTreeMap<&UnitName, &UnitRecord> = snap.units.iter().map(|u| (&u.name, u)).collect();
    let unreadable = snap.unreadable_units();
    plan.unplace.retain(|(u, _, _)| !unreadable.contains(u));
    let current: BTreeMap<(&UnitName, &str), &ScheduleEntry> = snap
        .schedule
        .iter()
        .map(|e| ((&e.unit, e.machine.as_str()), e))
        .collect();
    let mut writes = SchedulePlan {
        unschedule: plan
            .unplace
            .iter()
            .map(|(u, m, _)| (m.clone(), u.clone()))
            .collect(),
        ..SchedulePlan::default()
    };
    let entry = |u: &UnitName, m: &fleet_core::MachineId| {
        units.get(u).map(|r| ScheduleEntry {
            machine: m.clone(),
            unit: u.clone(),
            hash: r.hash,
            target: r.target,
            text: None,
        })
    };
    for (u, m) in &plan.place {
        writes.place.extend(entry(u, m));
    }
    // A kept placement is rewritten only when the unit's text or target changed, so
    // the agent there learns about it; unchanged ones cost nothing.
    for (u, m) in &plan.keep {
        let Some(want) = entry(u, m) else { continue };
        match current.get(&(u, m.as_str())) {
            Some(have) if have.hash == want.hash && have.target == want.target => {}
            _ => writes.place.push(want),
        }
    }
    // Only what is written carries its text (rendered once per write, not per pass).
    for e in &mut writes.place {
        if let Some(r) = units.get(&e.unit) {
            e.carry_text_of(&r.file);
        }
    }
    let unplaceable: BTreeSet<&UnitName> = plan.unplaceable.iter().map(|(u, _)| u).collect();
    for (u, why) in &plan.unplaceable {
        if snap.unplaced.get(u) != Some(why) {
            writes.unplaced.push((u.clone(), why.clone()));
        }
    }
    writes.clear_unplaced = snap
        .unplaced
        .keys()
        .filter(|u| !unplaceable.contains(u) && !unreadable.contains(u))
        .cloned()
        .collect();
    Decisions { writes, plan }
}

/// The scheduler's input: requirements expanded per unit, placements as pairs.
fn view_of(snap: &ClusterSnapshot, namespaces: &Namespaces) -> ClusterView {
    ClusterView {
        machines: snap.machines.iter().map(|r| r.machine.clone()).collect(),
        units: snap
            .units
            .iter()
            .map(|u| UnitSpec {
                name: u.name.clone(),
                target: u.target,
                requirements: if namespaces.is_empty() {
                    Requirements::for_unit(&u.file, &u.name)
                } else {
                    Requirements::for_unit(&u.file, &namespaces.split(&u.name).1)
                },
            })
            .collect(),
        placements: snap
            .schedule
            .iter()
            .map(|e| (e.unit.clone(), e.machine.clone()))
            .collect(),
        drained: snap.drained.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_core::{Machine, MachineId, TargetState, UnitFile};
    use fleet_registry::MachineRecord;

    fn name(s: &str) -> UnitName {
        UnitName::parse(s).unwrap()
    }
    fn mid(s: &str) -> MachineId {
        MachineId::new(s).unwrap()
    }
    fn unit(n: &str, xfleet: &str, target: TargetState) -> UnitRecord {
        let file = UnitFile::parse(&format!(
            "[Service]\nExecStart=/bin/true\n\n[X-Fleet]\n{xfleet}\n"
        ))
        .unwrap();
        UnitRecord {
            name: name(n),
            hash: file.hash(),
            file,
            target,
        }
    }
    fn machine(id: &str) -> MachineRecord {
        MachineRecord {
            machine: Machine::new(mid(id)),
            api_addr: String::new(),
        }
    }
    fn placed(u: &UnitRecord, m: &str) -> ScheduleEntry {
        let mut e = ScheduleEntry {
            machine: mid(m),
            unit: u.name.clone(),
            hash: u.hash,
            target: u.target,
            text: None,
        };
        e.carry_text_of(&u.file);
        e
    }

    #[test]
    fn places_new_units_and_leaves_settled_ones_alone() {
        let a = unit("a.service", "", TargetState::Launched);
        let b = unit("b.service", "", TargetState::Launched);
        let snap = ClusterSnapshot {
            units: vec![a.clone(), b.clone()],
            machines: vec![machine("m1"), machine("m2")],
            schedule: vec![placed(&a, "m1")],
            ..Default::default()
        };
        let d = decide(&snap).writes;
        // a stays untouched (no rewrite), b goes to the less loaded m2
        assert_eq!(d.place, vec![placed(&b, "m2")]);
        assert!(d.unschedule.is_empty() && d.unplaced.is_empty());
    }

    #[test]
    fn target_change_rewrites_the_entry() {
        let a = unit("a.service", "", TargetState::Launched);
        let mut stale = placed(&a, "m1");
        stale.target = TargetState::Loaded;
        let snap = ClusterSnapshot {
            units: vec![a.clone()],
            machines: vec![machine("m1")],
            schedule: vec![stale],
            ..Default::default()
        };
        assert_eq!(decide(&snap).writes.place, vec![placed(&a, "m1")]);
    }

    #[test]
    fn unplaceable_gets_a_reason_once_and_it_is_cleared_later() {
        let a = unit("a.service", "MachineID=nowhere", TargetState::Launched);
        let mut snap = ClusterSnapshot {
            units: vec![a.clone()],
            machines: vec![machine("m1")],
            ..Default::default()
        };
        let d = decide(&snap).writes;
        assert_eq!(d.unplaced.len(), 1);
        // already recorded with the same words: nothing to write
        snap.unplaced
            .insert(a.name.clone(), d.unplaced[0].1.clone());
        assert!(decide(&snap).writes.is_empty());
        // the unit no longer wants to run: the note goes
        snap.units[0].target = TargetState::Inactive;
        assert_eq!(decide(&snap).writes.clear_unplaced, vec![a.name.clone()]);
    }

    #[test]
    fn an_unreadable_unit_keeps_its_placement_and_note() {
        let a = unit("a.service", "", TargetState::Launched);
        let bad = unit("bad.service", "", TargetState::Launched);
        let mut snap = ClusterSnapshot {
            units: vec![a.clone()],
            machines: vec![machine("m1")],
            schedule: vec![placed(&a, "m1"), placed(&bad, "m1")],
            skipped: vec![fleet_registry::Skipped {
                key: "/p/unit/bad.service".into(),
                revision: 3,
                unit: Some(bad.name.clone()),
                unit_record: true,
                reason: "expected value".into(),
            }],
            ..Default::default()
        };
        snap.unplaced.insert(bad.name.clone(), "old note".into());
        let d = decide(&snap);
        assert!(d.writes.is_empty(), "{:?}", d.writes);
        assert!(d.plan.unplace.is_empty());
        // Once it is gone for good (no skipped key), it is unscheduled as usual.
        snap.skipped.clear();
        let d = decide(&snap).writes;
        assert_eq!(d.unschedule, vec![(mid("m1"), bad.name.clone())]);
        assert_eq!(d.clear_unplaced, vec![bad.name.clone()]);
    }

    #[test]
    fn destroyed_units_and_gone_machines_are_unscheduled() {
        let a = unit("a.service", "", TargetState::Launched);
        let ghost = unit("ghost.service", "", TargetState::Launched);
        let snap = ClusterSnapshot {
            units: vec![a.clone()],
            machines: vec![machine("m2")],
            schedule: vec![placed(&a, "m1"), placed(&ghost, "m2")],
            ..Default::default()
        };
        let d = decide(&snap).writes;
        let mut un = d.unschedule.clone();
        un.sort();
        assert_eq!(
            un,
            vec![
                (mid("m1"), name("a.service")),
                (mid("m2"), name("ghost.service"))
            ]
        );
        assert_eq!(d.place, vec![placed(&a, "m2")]);
    }
}
