//! The scheduler with namespaces: rules apply within a namespace, a namespace bound to
//! a selector places only on its machines, and without namespaces nothing changes.

use std::collections::BTreeMap;

use fleet_core::scheduler::{ClusterView, Plan, UnitSpec, plan, plan_in};
use fleet_core::unit::UnitGlob;
use fleet_core::{Machine, MachineId, Namespace, Namespaces, Requirements, Selector};
use fleet_core::{TargetState, UnitName};

fn machine(id: &str, meta: &[(&str, &str)]) -> Machine {
    let mut m = Machine::new(MachineId::new(id).unwrap());
    m.metadata = meta
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect::<BTreeMap<_, _>>();
    m
}

/// A launched unit stored under `name` (qualified for a namespace), with its rules as
/// written in the namespace.
fn unit(name: &str, conflicts: &[&str], machine_of: &[&str]) -> UnitSpec {
    let mut requirements = Requirements::default();
    requirements
        .conflicts
        .extend(conflicts.iter().map(|g| UnitGlob::new(g)));
    requirements
        .machine_of
        .extend(machine_of.iter().map(|s| s.to_string()));
    UnitSpec {
        name: UnitName::parse(name).unwrap(),
        target: TargetState::Launched,
        requirements,
    }
}

fn namespaces(list: &[(&str, &str)]) -> Namespaces {
    Namespaces::new(
        list.iter()
            .map(|(n, s)| (Namespace::parse(n).unwrap(), Selector::parse(s).unwrap())),
    )
}

fn view(machines: Vec<Machine>, units: Vec<UnitSpec>) -> ClusterView {
    ClusterView {
        machines,
        units,
        ..ClusterView::default()
    }
}

fn placed(p: &Plan) -> BTreeMap<String, String> {
    p.place
        .iter()
        .map(|(u, m)| (u.to_string(), m.to_string()))
        .collect()
}

fn web3(prefix: &str) -> Vec<UnitSpec> {
    (1..=3)
        .map(|i| unit(&format!("{prefix}web@{i}.service"), &["web@*"], &[]))
        .collect()
}

#[test]
fn two_namespaces_each_run_web_1_to_3_with_conflicts_of_their_own() {
    let machines = vec![machine("m1", &[]), machine("m2", &[]), machine("m3", &[])];
    let mut units = web3("a:");
    units.extend(web3("b:"));
    let nss = namespaces(&[("a", ""), ("b", "")]);
    let p = plan_in(&view(machines, units), &nss);
    assert!(p.unplaceable.is_empty(), "{:?}", p.unplaceable);
    let got = placed(&p);
    assert_eq!(got.len(), 6, "{got:?}");
    // Within each namespace Conflicts=web@* spreads the three over the three machines.
    for ns in ["a", "b"] {
        let machines: std::collections::BTreeSet<&String> = got
            .iter()
            .filter(|(u, _)| u.starts_with(&format!("{ns}:")))
            .map(|(_, m)| m)
            .collect();
        assert_eq!(machines.len(), 3, "{ns}: {got:?}");
    }
}

#[test]
fn conflicts_of_one_namespace_do_not_see_another() {
    // One machine: a's web@1 and b's web@1 both conflict with web@*, but only within
    // their own namespace, so both fit; a second web in `a` does not.
    let machines = vec![machine("m1", &[])];
    let units = vec![
        unit("a:web@1.service", &["web@*"], &[]),
        unit("b:web@1.service", &["web@*"], &[]),
        unit("a:web@2.service", &["web@*"], &[]),
        // A default unit conflicting with everything sees no namespaced unit.
        unit("solo.service", &["*"], &[]),
    ];
    let p = plan_in(&view(machines, units), &namespaces(&[("a", ""), ("b", "")]));
    let got = placed(&p);
    assert!(got.contains_key("a:web@1.service"), "{got:?}");
    assert!(got.contains_key("b:web@1.service"), "{got:?}");
    assert!(got.contains_key("solo.service"), "{got:?}");
    let why: Vec<&(UnitName, String)> = p.unplaceable.iter().collect();
    assert_eq!(why.len(), 1, "{why:?}");
    assert_eq!(why[0].0.as_str(), "a:web@2.service");
    assert!(
        why[0].1.contains("conflicts with a:web@1.service"),
        "{}",
        why[0].1
    );
}

#[test]
fn machine_of_names_a_unit_of_the_same_namespace() {
    let machines = vec![machine("m1", &[]), machine("m2", &[])];
    let units = vec![
        unit("db.service", &[], &[]),
        unit("a:db.service", &[], &[]),
        unit("a:app.service", &[], &["db.service"]),
        unit("b:app.service", &[], &["db.service"]),
    ];
    let p = plan_in(&view(machines, units), &namespaces(&[("a", ""), ("b", "")]));
    let got = placed(&p);
    assert_eq!(got["a:app.service"], got["a:db.service"], "{got:?}");
    // b has no db.service: the default one is not its MachineOf= target.
    let why: BTreeMap<String, String> = p
        .unplaceable
        .iter()
        .map(|(u, w)| (u.to_string(), w.clone()))
        .collect();
    assert!(
        why["b:app.service"].contains("MachineOf target db.service is not placed"),
        "{why:?}"
    );
}

#[test]
fn a_bound_namespace_never_places_elsewhere_even_when_emptier() {
    let machines = vec![
        machine("m1", &[("team", "a")]),
        machine("m2", &[("team", "b")]),
        machine("m3", &[]),
    ];
    let mut units: Vec<UnitSpec> = (1..=4)
        .map(|i| unit(&format!("a:x{i}.service"), &[], &[]))
        .collect();
    units.push(unit("a:glob.service", &[], &[]));
    units.last_mut().unwrap().requirements.global = true;
    let nss = namespaces(&[("a", "team=a")]);
    let p = plan_in(&view(machines.clone(), units), &nss);
    assert!(p.unplaceable.is_empty(), "{:?}", p.unplaceable);
    for (u, m) in placed(&p) {
        assert_eq!(m, "m1", "{u} placed on {m}");
    }

    // When none of its machines fits, the reason says the namespace is bound.
    let units = vec![
        unit("a:web@1.service", &["web@*"], &[]),
        unit("a:web@2.service", &["web@*"], &[]),
    ];
    let p = plan_in(&view(machines, units), &nss);
    assert_eq!(p.unplaceable.len(), 1, "{:?}", p.unplaceable);
    let why = &p.unplaceable[0].1;
    assert!(
        why.contains("namespace a is bound to machines with team=a"),
        "{why}"
    );
}

#[test]
fn without_namespaces_plan_in_is_plan() {
    // A default unit whose name holds ':' stays default while no namespace `a` exists.
    let machines = vec![machine("m1", &[]), machine("m2", &[])];
    let units = vec![
        unit("a:web@1.service", &["*web@*"], &[]),
        unit("web@1.service", &["*web@*"], &[]),
        unit("x.service", &[], &["a:web@1.service"]),
    ];
    let v = view(machines, units);
    let p = plan(&v);
    assert_eq!(p, plan_in(&v, &Namespaces::default()));
    assert_eq!(p, plan_in(&v, &namespaces(&[("b", "")])));
    let got = placed(&p);
    assert_ne!(got["a:web@1.service"], got["web@1.service"], "{got:?}");
    assert_eq!(got["x.service"], got["a:web@1.service"]);
}

#[test]
fn changing_a_namespace_selector_moves_its_units() {
    // `fleetctl namespace set a --machines team=b`: a's unit on m1 (team=a) moves to
    // m2 (team=b); b's unit, in a namespace bound to nothing, stays where it is.
    let machines = vec![
        machine("m1", &[("team", "a")]),
        machine("m2", &[("team", "b")]),
    ];
    let units = vec![
        unit("a:web.service", &[], &[]),
        unit("b:web.service", &[], &[]),
    ];
    let mut v = view(machines, units);
    v.placements = vec![
        (
            UnitName::parse("a:web.service").unwrap(),
            MachineId::new("m1").unwrap(),
        ),
        (
            UnitName::parse("b:web.service").unwrap(),
            MachineId::new("m1").unwrap(),
        ),
    ];
    let before = plan_in(&v, &namespaces(&[("a", "team=a"), ("b", "")]));
    assert!(
        before.place.is_empty() && before.unplace.is_empty(),
        "{before:?}"
    );
    let after = plan_in(&v, &namespaces(&[("a", "team=b"), ("b", "")]));
    assert_eq!(
        placed(&after),
        BTreeMap::from([("a:web.service".to_string(), "m2".to_string())])
    );
    let unplaced: Vec<(String, String)> = after
        .unplace
        .iter()
        .map(|(u, m, _)| (u.to_string(), m.to_string()))
        .collect();
    assert_eq!(unplaced, [("a:web.service".to_string(), "m1".to_string())]);
    assert_eq!(
        after.keep,
        [(
            UnitName::parse("b:web.service").unwrap(),
            MachineId::new("m1").unwrap()
        )]
    );
}
