use super::*;

use TargetState::{Inactive, Launched, Loaded};

fn n(s: &str) -> UnitName {
    UnitName::parse(s).unwrap()
}

fn h(b: u8) -> UnitHash {
    UnitHash([b; 20])
}

fn desired(items: &[(&str, u8, TargetState)]) -> BTreeMap<UnitName, DesiredUnit> {
    items
        .iter()
        .map(|(u, b, t)| {
            (
                n(u),
                DesiredUnit {
                    hash: h(*b),
                    target: *t,
                },
            )
        })
        .collect()
}

fn current(items: &[(&str, u8, TargetState)]) -> BTreeMap<UnitName, CurrentUnit> {
    items
        .iter()
        .map(|(u, b, s)| {
            (
                n(u),
                CurrentUnit {
                    hash: h(*b),
                    state: *s,
                },
            )
        })
        .collect()
}

fn unload(u: &str, reason: Reason) -> Action {
    Action::Unload { unit: n(u), reason }
}
fn load(u: &str, b: u8, reason: Reason) -> Action {
    Action::Load {
        unit: n(u),
        hash: h(b),
        reason,
    }
}
fn start(u: &str, reason: Reason) -> Action {
    Action::Start { unit: n(u), reason }
}
fn stop(u: &str, reason: Reason) -> Action {
    Action::Stop { unit: n(u), reason }
}
const RELOAD: Action = Action::DaemonReload {
    reason: Reason::UnitFilesChanged,
};

type Case = (
    &'static str,
    Vec<(&'static str, u8, TargetState)>,
    Vec<(&'static str, u8, TargetState)>,
    Vec<Action>,
);

#[test]
fn plan_table() {
    use Reason::*;
    let cases: Vec<Case> = vec![
        // Nothing scheduled, nothing loaded: nothing to do, not even a reload.
        ("empty", vec![], vec![], vec![]),
        // Scheduled as loaded, absent: load it and reload systemd once.
        (
            "load",
            vec![("a.service", 1, Loaded)],
            vec![],
            vec![load("a.service", 1, ScheduledButUnloaded), RELOAD],
        ),
        // Scheduled as launched, absent: load, reload, then start.
        (
            "load and start",
            vec![("a.service", 1, Launched)],
            vec![],
            vec![
                load("a.service", 1, ScheduledButUnloaded),
                RELOAD,
                start("a.service", ScheduledButUnloaded),
            ],
        ),
        // Loaded here but no longer scheduled here (moved or destroyed): unload.
        (
            "unload unscheduled",
            vec![],
            vec![("a.service", 1, Launched)],
            vec![unload("a.service", LoadedButNotScheduled), RELOAD],
        ),
        // A schedule entry with target inactive counts as not scheduled.
        (
            "inactive target unloads",
            vec![("a.service", 1, Inactive)],
            vec![("a.service", 1, Loaded)],
            vec![unload("a.service", LoadedButNotScheduled), RELOAD],
        ),
        // An inactive target for an absent unit: nothing.
        (
            "inactive target absent",
            vec![("a.service", 1, Inactive)],
            vec![],
            vec![],
        ),
        // Same hash and state: nothing (a restarted agent adopting a running unit).
        (
            "in sync launched",
            vec![("a.service", 1, Launched)],
            vec![("a.service", 1, Launched)],
            vec![],
        ),
        (
            "in sync loaded",
            vec![("a.service", 1, Loaded)],
            vec![("a.service", 1, Loaded)],
            vec![],
        ),
        // Loaded, desired launched: start only, no reload.
        (
            "start",
            vec![("a.service", 1, Launched)],
            vec![("a.service", 1, Loaded)],
            vec![start("a.service", LoadedDesiredStateLaunched)],
        ),
        // Launched, desired loaded: stop only, no reload.
        (
            "stop",
            vec![("a.service", 1, Loaded)],
            vec![("a.service", 1, Launched)],
            vec![stop("a.service", LaunchedDesiredStateLoaded)],
        ),
        // Another hash: unload the old file, load the new one, start it again.
        (
            "hash differs",
            vec![("a.service", 2, Launched)],
            vec![("a.service", 1, Launched)],
            vec![
                unload("a.service", LoadedButHashDiffers),
                load("a.service", 2, LoadedButHashDiffers),
                RELOAD,
                start("a.service", LoadedButHashDiffers),
            ],
        ),
        // Many units: all unloads, all loads, ONE reload, all stops, all starts,
        // each group in name order.
        (
            "batch order",
            vec![
                ("b.service", 1, Launched),
                ("c.service", 1, Loaded),
                ("d.service", 1, Launched),
                ("e.service", 1, Launched),
            ],
            vec![
                ("a.service", 1, Launched),
                ("c.service", 1, Launched),
                ("d.service", 1, Loaded),
                ("f.service", 1, Loaded),
            ],
            vec![
                unload("a.service", LoadedButNotScheduled),
                unload("f.service", LoadedButNotScheduled),
                load("b.service", 1, ScheduledButUnloaded),
                load("e.service", 1, ScheduledButUnloaded),
                RELOAD,
                stop("c.service", LaunchedDesiredStateLoaded),
                start("b.service", ScheduledButUnloaded),
                start("d.service", LoadedDesiredStateLaunched),
                start("e.service", ScheduledButUnloaded),
            ],
        ),
    ];
    for (name, d, c, want) in cases {
        assert_eq!(plan(&desired(&d), &current(&c)), want, "case {name}");
    }
}

#[test]
fn fifty_placements_cost_one_reload() {
    let d: Vec<(String, u8, TargetState)> = (0..50)
        .map(|i| (format!("hello@{i}.service"), 1, Launched))
        .collect();
    let d: BTreeMap<UnitName, DesiredUnit> = d
        .iter()
        .map(|(u, b, t)| {
            (
                n(u),
                DesiredUnit {
                    hash: h(*b),
                    target: *t,
                },
            )
        })
        .collect();
    let actions = plan(&d, &BTreeMap::new());
    assert_eq!(actions.len(), 101);
    let reloads = actions
        .iter()
        .filter(|a| matches!(a, Action::DaemonReload { .. }))
        .count();
    assert_eq!(reloads, 1);
    assert!(matches!(actions[50], Action::DaemonReload { .. }));
}

#[test]
fn reasons_read_like_fleet() {
    assert_eq!(
        Reason::LoadedButHashDiffers.to_string(),
        "unit loaded but hash differs to expected"
    );
    assert_eq!(
        load("a.service", 1, Reason::ScheduledButUnloaded).to_string(),
        "type=LoadUnit job=a.service reason=\"unit scheduled here but not loaded\""
    );
}
