//! Table tests of the scheduler on fleet's documented examples (fleet-behaviour §5.3,
//! §3.4): each case is a small cluster, the expected schedule and the expected reasons.

use std::collections::BTreeMap;

use fleet_core::scheduler::{ClusterView, Plan, UnitSpec, UnplaceReason, plan};
use fleet_core::unit::UnitGlob;
use fleet_core::{Machine, MachineId, Requirements, TargetState, UnitName};

fn machine(id: &str, meta: &[(&str, &str)]) -> Machine {
    let mut m = Machine::new(MachineId::new(id).unwrap());
    m.metadata = meta
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect::<BTreeMap<_, _>>();
    m
}

/// A launched unit with no requirements; tweak with the methods below.
fn unit(name: &str) -> UnitSpec {
    UnitSpec {
        name: UnitName::parse(name).unwrap(),
        target: TargetState::Launched,
        requirements: Requirements::default(),
    }
}

trait Tweak {
    fn conflicts(self, globs: &[&str]) -> Self;
    fn replaces(self, globs: &[&str]) -> Self;
    fn meta(self, key: &str, values: &[&str]) -> Self;
    fn machine_of(self, peer: &str) -> Self;
    fn machine_id(self, id: &str) -> Self;
    fn global(self) -> Self;
    fn target(self, t: TargetState) -> Self;
}

impl Tweak for UnitSpec {
    fn conflicts(mut self, globs: &[&str]) -> Self {
        self.requirements
            .conflicts
            .extend(globs.iter().map(|g| UnitGlob::new(g)));
        self
    }
    fn replaces(mut self, globs: &[&str]) -> Self {
        self.requirements
            .replaces
            .extend(globs.iter().map(|g| UnitGlob::new(g)));
        self
    }
    fn meta(mut self, key: &str, values: &[&str]) -> Self {
        self.requirements
            .metadata
            .entry(key.to_string())
            .or_default()
            .extend(values.iter().map(|v| v.to_string()));
        self
    }
    fn machine_of(mut self, peer: &str) -> Self {
        self.requirements.machine_of.push(peer.to_string());
        self
    }
    fn machine_id(mut self, id: &str) -> Self {
        self.requirements.machine_id = Some(id.to_string());
        self
    }
    fn global(mut self) -> Self {
        self.requirements.global = true;
        self
    }
    fn target(mut self, t: TargetState) -> Self {
        self.target = t;
        self
    }
}

fn view(machines: Vec<Machine>, units: Vec<UnitSpec>, placed: &[(&str, &str)]) -> ClusterView {
    ClusterView {
        machines,
        units,
        placements: placed
            .iter()
            .map(|(u, m)| (UnitName::parse(u).unwrap(), MachineId::new(m).unwrap()))
            .collect(),
        drained: Default::default(),
    }
}

fn pairs(v: &[(UnitName, MachineId)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(u, m)| (u.to_string(), m.to_string()))
        .collect()
}

fn own(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(u, m)| (u.to_string(), m.to_string()))
        .collect()
}

/// Plans, checks the place/keep/unplaceable lists, and that planning again on the
/// applied plan changes nothing.
fn check(
    v: &ClusterView,
    place: &[(&str, &str)],
    keep: &[(&str, &str)],
    unplaceable: &[(&str, &str)],
) -> Plan {
    let p = plan(v);
    assert_eq!(pairs(&p.place), own(place), "place");
    assert_eq!(pairs(&p.keep), own(keep), "keep");
    let why: Vec<(String, String)> = p
        .unplaceable
        .iter()
        .map(|(u, w)| (u.to_string(), w.clone()))
        .collect();
    assert_eq!(why, own(unplaceable), "unplaceable");
    let again = ClusterView {
        placements: p.apply_to(&v.placements),
        ..v.clone()
    };
    let p2 = plan(&again);
    assert!(p2.is_noop(), "second plan not empty: {p2:?}");
    p
}

fn unplaced(p: &Plan) -> Vec<(String, String, UnplaceReason)> {
    p.unplace
        .iter()
        .map(|(u, m, r)| (u.to_string(), m.to_string(), r.clone()))
        .collect()
}

fn three() -> Vec<Machine> {
    vec![machine("m3", &[]), machine("m1", &[]), machine("m2", &[])]
}

#[test]
fn three_units_spread_one_per_machine_ties_by_id() {
    // §5.3.5: three empty machines and three units → one per machine, ties by id.
    let v = view(
        three(),
        vec![unit("c.service"), unit("a.service"), unit("b.service")],
        &[],
    );
    check(
        &v,
        &[
            ("a.service", "m1"),
            ("b.service", "m2"),
            ("c.service", "m3"),
        ],
        &[],
        &[],
    );
}

#[test]
fn least_loaded_counts_existing_units() {
    // m1 holds two units, m2 one: the new unit goes to m3, then nothing moves.
    let v = view(
        three(),
        vec![
            unit("a.service"),
            unit("b.service"),
            unit("c.service"),
            unit("d.service"),
        ],
        &[
            ("a.service", "m1"),
            ("b.service", "m1"),
            ("c.service", "m2"),
        ],
    );
    check(
        &v,
        &[("d.service", "m3")],
        &[
            ("a.service", "m1"),
            ("b.service", "m1"),
            ("c.service", "m2"),
        ],
        &[],
    );
}

#[test]
fn conflicting_instances_beyond_machine_count_stay_unplaced() {
    // §5.3.5: web@1..3 conflict with each other on two machines: the third has no home.
    let webs = (1..=3)
        .map(|i| unit(&format!("web@{i}.service")).conflicts(&["web@*.service"]))
        .collect();
    let p = check(
        &view(vec![machine("m1", &[]), machine("m2", &[])], webs, &[]),
        &[("web@1.service", "m1"), ("web@2.service", "m2")],
        &[],
        &[(
            "web@3.service",
            "conflicts with units on all 2 eligible machines (e.g. web@1.service on m1)",
        )],
    );
    assert!(p.unplace.is_empty());
}

#[test]
fn conflict_reason_names_the_other_unit() {
    // One machine, web@2 already there: web@1 is kept away and the reason names web@2.
    let v = view(
        vec![machine("m1", &[])],
        vec![
            unit("web@1.service").conflicts(&["web@*.service"]),
            unit("web@2.service").conflicts(&["web@*.service"]),
        ],
        &[("web@2.service", "m1")],
    );
    check(
        &v,
        &[],
        &[("web@2.service", "m1")],
        &[(
            "web@1.service",
            "conflicts with web@2.service on every eligible machine",
        )],
    );
}

#[test]
fn conflicts_are_symmetric() {
    // b has no Conflicts, but a's glob matches it: b avoids a's machine even though m1
    // is the tie-break winner.
    let v = view(
        vec![machine("m1", &[]), machine("m2", &[])],
        vec![
            unit("a.service").conflicts(&["b*.service"]),
            unit("b.service"),
        ],
        &[("a.service", "m1")],
    );
    check(&v, &[("b.service", "m2")], &[("a.service", "m1")], &[]);
}

#[test]
fn metadata_and_across_keys_or_within() {
    // §3.4: diskType=SSD AND (region=us-east-1 OR region=us-west-1).
    let ms = vec![
        machine("m1", &[("region", "us-east-1"), ("diskType", "HDD")]),
        machine("m2", &[("region", "eu-west-1"), ("diskType", "SSD")]),
        machine("m3", &[("region", "us-west-1"), ("diskType", "SSD")]),
        machine("m4", &[("diskType", "SSD")]),
    ];
    let u = unit("db.service")
        .meta("region", &["us-east-1", "us-west-1"])
        .meta("diskType", &["SSD"]);
    check(&view(ms, vec![u], &[]), &[("db.service", "m3")], &[], &[]);
}

#[test]
fn missing_metadata_is_explained() {
    let v = view(
        vec![machine("m1", &[("region", "east")])],
        vec![unit("a.service").meta("region", &["west"])],
        &[],
    );
    check(&v, &[], &[], &[("a.service", "no machine has region=west")]);
}

#[test]
fn machine_id_full_or_short_form() {
    // §3.4: MachineID matches the full id or its 8-character short form.
    let ms = vec![
        machine("113f16a7cc1b4a9b8bd1a4d5c2e1f0aa", &[]),
        machine("0000000000000000000000000000000a", &[]),
    ];
    let v = view(
        ms,
        vec![
            unit("full.service").machine_id("113f16a7cc1b4a9b8bd1a4d5c2e1f0aa"),
            unit("short.service").machine_id("113f16a7"),
            unit("nowhere.service").machine_id("deadbeef"),
        ],
        &[],
    );
    check(
        &v,
        &[
            ("full.service", "113f16a7cc1b4a9b8bd1a4d5c2e1f0aa"),
            ("short.service", "113f16a7cc1b4a9b8bd1a4d5c2e1f0aa"),
        ],
        &[],
        &[("nowhere.service", "no machine has MachineID deadbeef")],
    );
}

#[test]
fn machine_of_joins_its_target_even_when_loaded() {
    // The sidekick goes where db runs (m1, the busiest), not to an empty machine.
    let v = view(
        three(),
        vec![
            unit("db.service"),
            unit("x.service"),
            unit("db-sidekick.service").machine_of("db.service"),
        ],
        &[("db.service", "m1"), ("x.service", "m1")],
    );
    check(
        &v,
        &[("db-sidekick.service", "m1")],
        &[("db.service", "m1"), ("x.service", "m1")],
        &[],
    );
}

#[test]
fn machine_of_target_placed_in_the_same_pass() {
    // Targets are decided before followers, whatever the names' order.
    let v = view(
        three(),
        vec![
            unit("b.service").machine_of("z.service"),
            unit("a.service"),
            unit("z.service"),
        ],
        &[],
    );
    check(
        &v,
        &[
            ("a.service", "m1"),
            ("b.service", "m2"),
            ("z.service", "m2"),
        ],
        &[],
        &[],
    );
}

#[test]
fn machine_of_unplaced_target_is_explained() {
    let v = view(
        three(),
        vec![
            unit("db.service").target(TargetState::Inactive),
            unit("side.service").machine_of("db.service"),
            unit("ghost.service").machine_of("nothing.service"),
        ],
        &[],
    );
    check(
        &v,
        &[],
        &[],
        &[
            (
                "ghost.service",
                "MachineOf target nothing.service is not placed",
            ),
            ("side.service", "MachineOf target db.service is not placed"),
        ],
    );
}

#[test]
fn machine_of_target_machine_that_rejects_is_explained() {
    let v = view(
        vec![
            machine("m1", &[("region", "east")]),
            machine("m2", &[("region", "west")]),
        ],
        vec![
            unit("db.service").meta("region", &["east"]),
            unit("side.service")
                .machine_of("db.service")
                .meta("region", &["west"]),
        ],
        &[],
    );
    check(
        &v,
        &[("db.service", "m1")],
        &[],
        &[(
            "side.service",
            "MachineOf target db.service is on m1, where the machine lacks region=west",
        )],
    );
}

#[test]
fn machine_of_cycle_is_reported_not_looped() {
    let v = view(
        three(),
        vec![
            unit("a.service").machine_of("b.service"),
            unit("b.service").machine_of("a.service"),
            unit("c.service").machine_of("a.service"),
        ],
        &[],
    );
    check(
        &v,
        &[],
        &[],
        &[
            (
                "a.service",
                "MachineOf cycle: a.service -> b.service -> a.service",
            ),
            (
                "b.service",
                "MachineOf cycle: a.service -> b.service -> a.service",
            ),
            ("c.service", "MachineOf target a.service is not placed"),
        ],
    );
}

#[test]
fn machine_loss_replaces_units_and_followers_move_together() {
    // §5.3.6: m3 went away; db and its sidekick are re-placed together, a stays put.
    let v = view(
        vec![machine("m1", &[]), machine("m2", &[])],
        vec![
            unit("a.service"),
            unit("db.service"),
            unit("side.service").machine_of("db.service"),
        ],
        &[
            ("a.service", "m1"),
            ("db.service", "m3"),
            ("side.service", "m3"),
        ],
    );
    let p = check(
        &v,
        &[("db.service", "m2"), ("side.service", "m2")],
        &[("a.service", "m1")],
        &[],
    );
    assert_eq!(
        unplaced(&p),
        vec![
            ("db.service".into(), "m3".into(), UnplaceReason::MachineGone),
            (
                "side.service".into(),
                "m3".into(),
                UnplaceReason::MachineGone
            ),
        ]
    );
}

#[test]
fn stable_placement_is_not_rebalanced() {
    // Everything on m1 while m2 is empty: nothing moves.
    let v = view(
        vec![machine("m1", &[]), machine("m2", &[])],
        vec![unit("a.service"), unit("b.service")],
        &[("a.service", "m1"), ("b.service", "m1")],
    );
    check(&v, &[], &[("a.service", "m1"), ("b.service", "m1")], &[]);
}

#[test]
fn ineligible_placement_moves() {
    // The machine's metadata changed: the unit moves to a machine that still matches.
    let v = view(
        vec![
            machine("m1", &[("region", "east")]),
            machine("m2", &[("region", "west")]),
        ],
        vec![unit("a.service").meta("region", &["west"])],
        &[("a.service", "m1")],
    );
    let p = check(&v, &[("a.service", "m2")], &[], &[]);
    assert_eq!(
        unplaced(&p),
        vec![(
            "a.service".into(),
            "m1".into(),
            UnplaceReason::Ineligible("the machine lacks region=west".into())
        )]
    );
}

#[test]
fn inactive_removed_duplicate_and_template_placements_are_unplaced() {
    let v = view(
        vec![machine("m1", &[]), machine("m2", &[])],
        vec![
            unit("a.service").target(TargetState::Inactive),
            unit("b.service"),
            unit("web@.service"),
        ],
        &[
            ("a.service", "m1"),
            ("b.service", "m1"),
            ("b.service", "m2"),
            ("gone.service", "m1"),
            ("web@.service", "m2"),
        ],
    );
    let p = check(
        &v,
        &[],
        &[("b.service", "m1")],
        &[(
            "web@.service",
            "a template is never placed; start its instances instead",
        )],
    );
    assert_eq!(
        unplaced(&p),
        vec![
            (
                "a.service".into(),
                "m1".into(),
                UnplaceReason::TargetInactive
            ),
            ("b.service".into(), "m2".into(), UnplaceReason::Duplicate),
            (
                "gone.service".into(),
                "m1".into(),
                UnplaceReason::UnitRemoved
            ),
            ("web@.service".into(), "m2".into(), UnplaceReason::Template),
        ]
    );
}

#[test]
fn global_units_on_every_eligible_machine_and_count_as_load() {
    // The global runs on the two east machines; they count it, so `a` goes to m3.
    let v = view(
        vec![
            machine("m1", &[("region", "east")]),
            machine("m2", &[("region", "east")]),
            machine("m3", &[("region", "west")]),
        ],
        vec![
            unit("mon.service").global().meta("region", &["east"]),
            unit("a.service"),
        ],
        &[],
    );
    check(
        &v,
        &[
            ("a.service", "m3"),
            ("mon.service", "m1"),
            ("mon.service", "m2"),
        ],
        &[],
        &[],
    );
}

#[test]
fn conflicting_globals_alphabetically_first_wins() {
    // §5.4.1: both globals conflict; `a-mon` wins everywhere, even over a placed `b-mon`.
    let v = view(
        vec![machine("m1", &[]), machine("m2", &[])],
        vec![
            unit("b-mon.service").global().conflicts(&["a-mon.service"]),
            unit("a-mon.service").global(),
        ],
        &[("b-mon.service", "m1")],
    );
    check(
        &v,
        &[("a-mon.service", "m1"), ("a-mon.service", "m2")],
        &[],
        &[(
            "b-mon.service",
            "conflicts with units on all 2 eligible machines (e.g. a-mon.service on m1)",
        )],
    );
}

#[test]
fn replaces_moves_the_replaced_unit_away() {
    // §5.3.4: r lands on m1 (least loaded, ties by id) where x runs; x moves to m2.
    let v = view(
        vec![machine("m1", &[]), machine("m2", &[])],
        vec![
            unit("r.service").replaces(&["x.service"]),
            unit("x.service"),
            unit("y.service"),
        ],
        &[("x.service", "m1"), ("y.service", "m2")],
    );
    let p = check(
        &v,
        &[("r.service", "m1"), ("x.service", "m2")],
        &[("y.service", "m2")],
        &[],
    );
    assert_eq!(
        unplaced(&p),
        vec![(
            "x.service".into(),
            "m1".into(),
            UnplaceReason::ReplacedBy(UnitName::parse("r.service").unwrap())
        )]
    );
}

#[test]
fn mutual_replaces_is_ignored() {
    let v = view(
        vec![machine("m1", &[])],
        vec![
            unit("a.service").replaces(&["b.service"]),
            unit("b.service").replaces(&["a.service"]),
        ],
        &[],
    );
    let p = check(&v, &[("a.service", "m1"), ("b.service", "m1")], &[], &[]);
    assert_eq!(p.notes.len(), 2);
}

#[test]
fn circular_replaces_chain_terminates() {
    // a replaces b replaces c replaces a, one machine: nothing loops, the plan settles.
    let v = view(
        vec![machine("m1", &[])],
        vec![
            unit("a.service").replaces(&["b.service"]),
            unit("b.service").replaces(&["c.service"]),
            unit("c.service").replaces(&["a.service"]),
        ],
        &[],
    );
    let p = check(
        &v,
        &[
            ("a.service", "m1"),
            ("b.service", "m1"),
            ("c.service", "m1"),
        ],
        &[],
        &[],
    );
    let note = "Replaces= ignored between a.service, b.service, c.service: \
                they replace each other in a cycle";
    assert_eq!(p.notes.len(), 3);
    assert!(p.notes.iter().all(|(_, n)| n == note), "{:?}", p.notes);
}

#[test]
fn replaces_chain_frees_room_in_the_same_pass() {
    // a replaces b, c replaces a, one machine. c displaces a after b was kept away by a;
    // b is retried in the same pass, so the next pass has nothing to do.
    let v = view(
        vec![machine("m1", &[])],
        vec![
            unit("a.service").replaces(&["b.service"]),
            unit("b.service"),
            unit("c.service").replaces(&["a.service"]),
        ],
        &[],
    );
    check(
        &v,
        &[("b.service", "m1"), ("c.service", "m1")],
        &[],
        &[(
            "a.service",
            "on the only eligible machine (m1), c.service replaces it",
        )],
    );
}

#[test]
fn no_machines_at_all() {
    let v = view(
        vec![],
        vec![unit("a.service"), unit("g.service").global()],
        &[],
    );
    check(
        &v,
        &[],
        &[],
        &[
            ("a.service", "no machines in the cluster"),
            ("g.service", "no machines in the cluster"),
        ],
    );
}

#[test]
fn same_input_in_any_order_gives_the_same_plan() {
    let units = vec![
        unit("web@1.service").conflicts(&["web@*.service"]),
        unit("web@2.service").conflicts(&["web@*.service"]),
        unit("side.service").machine_of("web@2.service"),
        unit("mon.service").global(),
    ];
    let mut rev = units.clone();
    rev.reverse();
    let mut ms = three();
    let a = plan(&view(ms.clone(), units, &[]));
    ms.reverse();
    let b = plan(&view(ms, rev, &[]));
    assert_eq!(a, b);
}

/// Found by the property test: a replacer never displaces a unit on its own MachineOf
/// chain, also through another unit (web@1 follows web@4, which follows a.service):
/// moving a.service would drag web@1 along, forever.
#[test]
fn replacer_never_displaces_its_machine_of_chain_even_transitively() {
    let v = view(
        vec![machine("m0", &[]), machine("m1", &[])],
        vec![
            unit("a.service"),
            unit("web@4.service").machine_of("a.service"),
            unit("web@1.service")
                .machine_of("web@4.service")
                .replaces(&["?.service"]),
        ],
        &[],
    );
    let p = check(
        &v,
        &[
            ("a.service", "m0"),
            ("web@1.service", "m0"),
            ("web@4.service", "m0"),
        ],
        &[],
        &[],
    );
    assert!(p.unplace.is_empty(), "{:?}", p.unplace);
}

/// `fleetctl drain`: a drained machine keeps nothing and gets nothing; its units move
/// (followers with their target, conflicts honoured), globals leave it, and the others
/// stay where they are.
#[test]
fn a_drained_machine_keeps_and_gets_nothing() {
    let mut v = view(
        vec![machine("m1", &[]), machine("m2", &[]), machine("m3", &[])],
        vec![
            unit("a.service").conflicts(&["b.service"]),
            unit("b.service"),
            unit("c.service").machine_of("a.service"),
            unit("d.service"),
            unit("g.service").global(),
        ],
        &[
            ("a.service", "m1"),
            ("c.service", "m1"),
            ("b.service", "m2"),
            ("d.service", "m3"),
            ("g.service", "m1"),
            ("g.service", "m2"),
            ("g.service", "m3"),
        ],
    );
    v.drained.insert(MachineId::new("m1").unwrap());
    let p = check(
        &v,
        &[("a.service", "m3"), ("c.service", "m3")],
        &[
            ("b.service", "m2"),
            ("d.service", "m3"),
            ("g.service", "m2"),
            ("g.service", "m3"),
        ],
        &[],
    );
    assert_eq!(
        unplaced(&p),
        vec![
            ("a.service".into(), "m1".into(), UnplaceReason::Drained),
            ("c.service".into(), "m1".into(), UnplaceReason::Drained),
            ("g.service".into(), "m1".into(), UnplaceReason::Drained),
        ]
    );
    assert_eq!(UnplaceReason::Drained.to_string(), "machine drained");

    // Every machine drained: nothing runs, and the reason says so.
    v.drained
        .extend(["m2", "m3"].map(|m| MachineId::new(m).unwrap()));
    let p = plan(&v);
    assert!(p.place.is_empty() && p.keep.is_empty(), "{p:?}");
    let why: BTreeMap<String, String> = p
        .unplaceable
        .iter()
        .map(|(u, w)| (u.to_string(), w.clone()))
        .collect();
    assert_eq!(
        why["d.service"],
        "on all 3 eligible machines, e.g. m1, the machine is drained"
    );
}
