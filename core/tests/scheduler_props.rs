//! Property tests of the scheduler on random small clusters: whatever the input, the
//! schedule after applying a plan breaks no rule, planning again changes nothing, and
//! the plan depends only on the input's content, not its order.

use std::collections::{BTreeMap, BTreeSet};

use fleet_core::scheduler::{ClusterView, UnitSpec, plan};
use fleet_core::unit::UnitGlob;
use fleet_core::{Machine, MachineId, Requirements, TargetState, UnitName};
use proptest::prelude::*;

const NAMES: &[&str] = &[
    "a.service",
    "b.service",
    "c.service",
    "d.service",
    "web@1.service",
    "web@2.service",
    "web@3.service",
    "web@4.service",
    "db@1.service",
    "db@2.service",
    "side@1.service",
    "side@2.service",
    "web@.service",
    "mon.service",
    "log.service",
];
const GLOBS: &[&str] = &[
    "web@*.service",
    "db@*.service",
    "a.service",
    "?.service",
    "side@[12].service",
];

fn machine_strategy(i: usize) -> impl Strategy<Value = Machine> {
    (
        prop::option::of(prop::sample::select(vec!["east", "west"])),
        prop::option::of(prop::sample::select(vec!["ssd", "hdd"])),
    )
        .prop_map(move |(region, disk)| {
            let mut m = Machine::new(MachineId::new(&format!("m{i}")).unwrap());
            if let Some(r) = region {
                m.metadata.insert("region".into(), r.into());
            }
            if let Some(d) = disk {
                m.metadata.insert("disk".into(), d.into());
            }
            m
        })
}

fn unit_strategy(name: &'static str) -> impl Strategy<Value = UnitSpec> {
    let global = name == "mon.service" || name == "log.service";
    (
        prop::sample::select(vec![
            TargetState::Launched,
            TargetState::Launched,
            TargetState::Loaded,
            TargetState::Inactive,
        ]),
        prop::collection::vec(prop::sample::select(GLOBS.to_vec()), 0..2),
        prop::option::weighted(0.2, prop::sample::select(GLOBS.to_vec())),
        prop::option::weighted(0.3, prop::sample::select(vec!["east", "west"])),
        prop::option::weighted(0.2, prop::sample::select(NAMES.to_vec())),
        prop::option::weighted(0.1, 0..7usize),
    )
        .prop_map(move |(target, conflicts, replaces, region, peer, mid)| {
            let mut r = Requirements {
                conflicts: conflicts.into_iter().map(UnitGlob::new).collect(),
                replaces: replaces.into_iter().map(UnitGlob::new).collect(),
                global,
                ..Requirements::default()
            };
            if let Some(region) = region {
                r.metadata
                    .insert("region".into(), BTreeSet::from([region.to_string()]));
            }
            if !global {
                r.machine_of.extend(peer.map(str::to_string));
                r.machine_id = mid.map(|i| format!("m{i}"));
            }
            UnitSpec {
                name: UnitName::parse(name).unwrap(),
                target,
                requirements: r,
            }
        })
}

fn cluster() -> impl Strategy<Value = ClusterView> {
    let machines = (0..6usize).prop_flat_map(|n| (0..n).map(machine_strategy).collect::<Vec<_>>());
    let units = prop::sample::subsequence(NAMES.to_vec(), 0..NAMES.len())
        .prop_flat_map(|names| names.into_iter().map(unit_strategy).collect::<Vec<_>>());
    let placements =
        prop::collection::vec((prop::sample::select(NAMES.to_vec()), 0..7usize), 0..12);
    (machines, units, placements).prop_map(|(machines, units, placements)| ClusterView {
        machines,
        units,
        placements: placements
            .into_iter()
            .map(|(u, m)| {
                (
                    UnitName::parse(u).unwrap(),
                    MachineId::new(&format!("m{m}")).unwrap(),
                )
            })
            .collect(),
        drained: Default::default(),
    })
}

fn glob_hit(globs: &[UnitGlob], name: &UnitName) -> bool {
    globs.iter().any(|g| g.matches(name.as_str()))
}

/// Every rule holds in the schedule `after` (a plan applied to `v`).
/// Whether `unit` is on `target`'s `MachineOf=` chain, directly or through others.
fn follows(specs: &[&UnitSpec], unit: &UnitName, target: &UnitName) -> bool {
    let mut seen = vec![unit.clone()];
    let mut todo = vec![unit.clone()];
    while let Some(u) = todo.pop() {
        let Some(spec) = specs.iter().find(|s| s.name == u) else {
            continue;
        };
        for peer in &spec.requirements.machine_of {
            if peer == target.as_str() {
                return true;
            }
            if let Ok(p) = UnitName::parse(peer)
                && !seen.contains(&p)
            {
                seen.push(p.clone());
                todo.push(p);
            }
        }
    }
    false
}

fn assert_rules(v: &ClusterView, after: &[(UnitName, MachineId)], exempt: &BTreeSet<UnitName>) {
    let units: BTreeMap<&UnitName, &UnitSpec> = v.units.iter().map(|u| (&u.name, u)).collect();
    let machines: BTreeMap<&MachineId, &Machine> = v.machines.iter().map(|m| (&m.id, m)).collect();
    let mut on: BTreeMap<&MachineId, Vec<&UnitSpec>> = BTreeMap::new();
    let mut seen: BTreeSet<&UnitName> = BTreeSet::new();
    for (u, m) in after {
        let spec = units.get(u).unwrap_or_else(|| panic!("{u} is not a unit"));
        let machine = machines
            .get(m)
            .unwrap_or_else(|| panic!("{m} is not a machine"));
        assert_ne!(spec.target, TargetState::Inactive, "{u} is inactive");
        assert!(!u.is_template(), "template {u} placed");
        let r = &spec.requirements;
        if !r.global {
            assert!(seen.insert(u), "{u} placed twice");
        }
        for (k, values) in &r.metadata {
            let has = machine.metadata.get(k);
            assert!(
                has.is_some_and(|x| values.contains(x)),
                "{u} on {m}: metadata {k}"
            );
        }
        if let Some(id) = &r.machine_id {
            assert!(
                m.as_str() == id || m.short() == id,
                "{u} on {m}: MachineID {id}"
            );
        }
        on.entry(m).or_default().push(spec);
    }
    for (m, specs) in &on {
        for a in specs {
            for b in specs {
                if a.name == b.name {
                    continue;
                }
                assert!(
                    !glob_hit(&a.requirements.conflicts, &b.name),
                    "{} and {} conflict on {m}",
                    a.name,
                    b.name
                );
                // Replacement is ignored when mutual, on a cycle (noted), towards a
                // global unit, or towards a unit on the replacer's own MachineOf chain
                // (directly or through others: moving it would move the replacer).
                let mutual = glob_hit(&b.requirements.replaces, &a.name);
                let target = follows(specs, &a.name, &b.name);
                if !b.requirements.global && !mutual && !target && !exempt.contains(&a.name) {
                    assert!(
                        !glob_hit(&a.requirements.replaces, &b.name),
                        "{} replaces {} on {m}",
                        a.name,
                        b.name
                    );
                }
            }
            for peer in &a.requirements.machine_of {
                assert!(
                    specs.iter().any(|s| s.name.as_str() == peer),
                    "{} on {m} without its MachineOf target {peer}",
                    a.name
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(400)))]

    #[test]
    fn plans_obey_rules_settle_and_are_deterministic(v in cluster()) {
        let p = plan(&v);
        let after = p.apply_to(&v.placements);
        let exempt: BTreeSet<UnitName> = p.notes.iter().map(|(u, _)| u.clone()).collect();
        assert_rules(&v, &after, &exempt);

        // Every unit that wants to run is placed or explained.
        let placed: BTreeSet<&UnitName> = after.iter().map(|(u, _)| u).collect();
        let explained: BTreeSet<&UnitName> = p.unplaceable.iter().map(|(u, _)| u).collect();
        let mut names = BTreeSet::new();
        for u in &v.units {
            if !names.insert(&u.name) {
                continue;
            }
            if u.target != TargetState::Inactive {
                prop_assert!(placed.contains(&u.name) != explained.contains(&u.name), "{}", u.name);
            }
        }

        // Idempotent: applying the plan and planning again changes nothing.
        let again = ClusterView { placements: after.clone(), ..v.clone() };
        let p2 = plan(&again);
        prop_assert!(p2.is_noop(), "second plan: {:?}", p2);

        // Deterministic, whatever the input order.
        let mut shuffled = v.clone();
        shuffled.machines.reverse();
        shuffled.units.reverse();
        shuffled.placements.reverse();
        prop_assert_eq!(plan(&shuffled), p);
    }

    #[test]
    fn losing_a_machine_moves_only_its_units(mut v in cluster(), lost in 0..6usize) {
        // Replaces may move units off live machines by design: leave it out here.
        for u in &mut v.units {
            u.requirements.replaces.clear();
        }
        let settled = plan(&v).apply_to(&v.placements);
        let gone = MachineId::new(&format!("m{lost}")).unwrap();
        let mut w = ClusterView { placements: settled.clone(), ..v.clone() };
        w.machines.retain(|m| m.id != gone);
        let p = plan(&w);
        for (u, m, why) in &p.unplace {
            prop_assert_eq!(m, &gone, "{} moved off {} ({})", u, m, why);
        }
        let after = p.apply_to(&w.placements);
        assert_rules(&w, &after, &p.notes.iter().map(|(u, _)| u.clone()).collect());
    }

    #[test]
    fn homogeneous_units_are_balanced(units in 0..60usize, machines in 1..12usize, globals in 0..3usize) {
        let mut v = ClusterView::default();
        for i in 0..machines {
            v.machines.push(Machine::new(MachineId::new(&format!("m{i:02}")).unwrap()));
        }
        for i in 0..units {
            v.units.push(UnitSpec {
                name: UnitName::parse(&format!("app@{i}.service")).unwrap(),
                target: TargetState::Launched,
                requirements: Requirements::default(),
            });
        }
        for i in 0..globals {
            v.units.push(UnitSpec {
                name: UnitName::parse(&format!("g{i}.service")).unwrap(),
                target: TargetState::Launched,
                requirements: Requirements { global: true, ..Requirements::default() },
            });
        }
        let p = plan(&v);
        let mut load: BTreeMap<&MachineId, usize> = v.machines.iter().map(|m| (&m.id, 0)).collect();
        for (_, m) in &p.place {
            *load.get_mut(m).unwrap() += 1;
        }
        let max = load.values().max().copied().unwrap_or(0);
        let min = load.values().min().copied().unwrap_or(0);
        prop_assert!(max - min <= 1, "loads {:?}", load);
        prop_assert!(p.unplaceable.is_empty());
    }

    #[test]
    fn conflicting_instances_take_distinct_machines(n in 1..10usize, machines in 1..10usize) {
        let mut v = ClusterView::default();
        for i in 0..machines {
            v.machines.push(Machine::new(MachineId::new(&format!("m{i}")).unwrap()));
        }
        for i in 0..n {
            v.units.push(UnitSpec {
                name: UnitName::parse(&format!("web@{i}.service")).unwrap(),
                target: TargetState::Launched,
                requirements: Requirements {
                    conflicts: vec![UnitGlob::new("web@*.service")],
                    ..Requirements::default()
                },
            });
        }
        let p = plan(&v);
        prop_assert_eq!(p.place.len(), n.min(machines));
        prop_assert_eq!(p.unplaceable.len(), n.saturating_sub(machines));
    }
}
