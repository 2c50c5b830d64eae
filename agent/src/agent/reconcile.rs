//! The agent's reconciler as a pure function: from what the engine scheduled here and
//! what this agent has loaded, the systemd actions to take, each with fleet's reason.
//!
//! Kept free of I/O so every case is a table row (fleet's `agent/reconcile_test.go`).

use std::collections::BTreeMap;
use std::fmt;

use fleet_core::{TargetState, UnitHash, UnitName};

/// What the engine wants of one unit on this machine (`schedule/<me>/<unit>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DesiredUnit {
    pub hash: UnitHash,
    pub target: TargetState,
}

/// What this agent has done with one unit: its file (by hash) is installed and it is
/// `Loaded` or `Launched` (never `Inactive`: such a unit is not in the map).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CurrentUnit {
    pub hash: UnitHash,
    pub state: TargetState,
}

/// Why an action is taken: fleet's closed list of plain sentences, printed in logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    ScheduledButUnloaded,
    LoadedButNotScheduled,
    LoadedButHashDiffers,
    LoadedDesiredStateLaunched,
    LaunchedDesiredStateLoaded,
    /// A load or unload happened in this batch.
    UnitFilesChanged,
    /// The machine lost etcd for longer than `agent_ttl` and the unit opted in to
    /// `StopOnEtcdLoss`.
    EtcdLost,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reason::ScheduledButUnloaded => "unit scheduled here but not loaded",
            Reason::LoadedButNotScheduled => "unit loaded but not scheduled here",
            Reason::LoadedButHashDiffers => "unit loaded but hash differs to expected",
            Reason::LoadedDesiredStateLaunched => {
                "unit currently loaded but desired state is launched"
            }
            Reason::LaunchedDesiredStateLoaded => {
                "unit currently launched but desired state is loaded"
            }
            Reason::UnitFilesChanged => "unit files changed",
            Reason::EtcdLost => "machine lost etcd (StopOnEtcdLoss)",
        })
    }
}

/// One step of a reconcile. The derived `Ord` is the execution order: every unload,
/// every load, one daemon-reload, every stop, every start (then by unit name).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    /// Stop the unit and remove its file.
    Unload {
        unit: UnitName,
        reason: Reason,
    },
    /// Write the unit file with this hash and link it into systemd.
    Load {
        unit: UnitName,
        hash: UnitHash,
        reason: Reason,
    },
    /// One daemon-reload for all loads and unloads of the batch.
    DaemonReload {
        reason: Reason,
    },
    Stop {
        unit: UnitName,
        reason: Reason,
    },
    Start {
        unit: UnitName,
        reason: Reason,
    },
}

impl Action {
    /// The unit acted on (`None` for the daemon-reload).
    pub fn unit(&self) -> Option<&UnitName> {
        match self {
            Action::Unload { unit, .. }
            | Action::Load { unit, .. }
            | Action::Stop { unit, .. }
            | Action::Start { unit, .. } => Some(unit),
            Action::DaemonReload { .. } => None,
        }
    }

    pub fn reason(&self) -> Reason {
        match self {
            Action::Unload { reason, .. }
            | Action::Load { reason, .. }
            | Action::DaemonReload { reason }
            | Action::Stop { reason, .. }
            | Action::Start { reason, .. } => *reason,
        }
    }

    /// fleet's task type name, as its logs printed it.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Unload { .. } => "UnloadUnit",
            Action::Load { .. } => "LoadUnit",
            Action::DaemonReload { .. } => "ReloadUnitFiles",
            Action::Stop { .. } => "StopUnit",
            Action::Start { .. } => "StartUnit",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.unit() {
            Some(u) => write!(
                f,
                "type={} job={} reason={:?}",
                self.kind(),
                u,
                self.reason().to_string()
            ),
            None => write!(
                f,
                "type={} reason={:?}",
                self.kind(),
                self.reason().to_string()
            ),
        }
    }
}

/// The actions that make `current` match `desired`, in execution order, with at most
/// one daemon-reload (only when something was loaded or unloaded).
pub fn plan(
    desired: &BTreeMap<UnitName, DesiredUnit>,
    current: &BTreeMap<UnitName, CurrentUnit>,
) -> Vec<Action> {
    let mut names: Vec<&UnitName> = desired.keys().chain(current.keys()).collect();
    names.sort();
    names.dedup();
    let mut actions: Vec<Action> = names
        .into_iter()
        .flat_map(|n| plan_unit(n, desired.get(n), current.get(n)))
        .collect();
    if actions
        .iter()
        .any(|a| matches!(a, Action::Load { .. } | Action::Unload { .. }))
    {
        actions.push(Action::DaemonReload {
            reason: Reason::UnitFilesChanged,
        });
    }
    actions.sort();
    actions
}

/// One unit's actions (fleet's `calculateTaskChainForUnit`).
fn plan_unit(
    name: &UnitName,
    desired: Option<&DesiredUnit>,
    current: Option<&CurrentUnit>,
) -> Vec<Action> {
    let unit = || name.clone();
    let desired = desired.filter(|d| d.target != TargetState::Inactive);
    match (desired, current) {
        (None, None) => vec![],
        (None, Some(_)) => vec![Action::Unload {
            unit: unit(),
            reason: Reason::LoadedButNotScheduled,
        }],
        (Some(d), None) => load_then(name, d, Reason::ScheduledButUnloaded),
        (Some(d), Some(c)) if d.hash != c.hash => {
            let mut v = vec![Action::Unload {
                unit: unit(),
                reason: Reason::LoadedButHashDiffers,
            }];
            v.extend(load_then(name, d, Reason::LoadedButHashDiffers));
            v
        }
        (Some(d), Some(c)) => match (d.target, c.state) {
            (TargetState::Launched, TargetState::Loaded) => vec![Action::Start {
                unit: unit(),
                reason: Reason::LoadedDesiredStateLaunched,
            }],
            (TargetState::Loaded, TargetState::Launched) => vec![Action::Stop {
                unit: unit(),
                reason: Reason::LaunchedDesiredStateLoaded,
            }],
            _ => vec![],
        },
    }
}

fn load_then(name: &UnitName, d: &DesiredUnit, reason: Reason) -> Vec<Action> {
    let mut v = vec![Action::Load {
        unit: name.clone(),
        hash: d.hash,
        reason,
    }];
    if d.target == TargetState::Launched {
        v.push(Action::Start {
            unit: name.clone(),
            reason,
        });
    }
    v
}

#[cfg(test)]
mod tests;
