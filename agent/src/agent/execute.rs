//! Applies a plan to systemd: in the plan's order, batching what systemd can batch
//! (one write of all unit files, one removal, one daemon-reload), and reporting each
//! action's outcome. A failure skips only the later actions of the same unit (and the
//! starts that needed a failed reload); unrelated units proceed. A batch call that fails
//! is retried one unit at a time, so a unit systemd or the filesystem refuses fails
//! alone and the rest of the batch is written or removed.

use std::collections::{BTreeSet, HashMap};

use fleet_core::UnitName;
use futures_util::future::join_all;

use crate::agent::reconcile::Action;
use crate::systemd::{SystemdError, UnitManager};

/// Why an action did not take effect.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error(transparent)]
    Systemd(#[from] SystemdError),
    /// The unit's text (with the scheduled hash) could not be read from the registry.
    #[error("the text of the scheduled unit is not available yet")]
    NoText,
    /// An earlier action this one depends on failed.
    #[error("skipped: {0}")]
    Skipped(&'static str),
}

/// One attempted action and its result.
#[derive(Debug)]
pub struct Outcome {
    pub action: Action,
    pub result: Result<(), ActionError>,
}

/// Runs `actions` (sorted, as [`crate::agent::reconcile::plan`] returns them).
/// `texts` holds the unit text for every `Load`.
pub async fn execute<M: UnitManager>(
    systemd: &M,
    actions: &[Action],
    texts: &HashMap<UnitName, String>,
) -> Vec<Outcome> {
    let _timer = fleet_metrics::ActionBatch::start(actions.iter().map(Action::kind));
    let mut out: Vec<Outcome> = Vec::with_capacity(actions.len());
    let mut failed: BTreeSet<UnitName> = BTreeSet::new();
    let mut loaded_now: BTreeSet<UnitName> = BTreeSet::new();

    // Unloads: stop each, then remove the files of those whose stop was accepted
    // (fleet keeps the file of a unit it could not stop, so the stop is retried).
    let unloads: Vec<&Action> = actions
        .iter()
        .filter(|a| matches!(a, Action::Unload { .. }))
        .collect();
    let stops = join_all(unloads.iter().map(|a| async move {
        let unit = a.unit().expect("unload has a unit");
        systemd.stop(unit).await
    }))
    .await;
    let mut stopped: Vec<(&Action, UnitName)> = Vec::new();
    for (a, r) in unloads.into_iter().zip(stops) {
        let unit = a.unit().expect("unload has a unit").clone();
        match r {
            Ok(()) => stopped.push((a, unit)),
            Err(e) => {
                failed.insert(unit);
                out.push(outcome(a, Err(e.into())));
            }
        }
    }
    if !stopped.is_empty() {
        let names: Vec<UnitName> = stopped.iter().map(|(_, u)| u.clone()).collect();
        let results = per_unit(&names, |chunk| systemd.remove_units(chunk)).await;
        for ((a, u), r) in stopped.iter().zip(results) {
            if r.is_err() {
                failed.insert(u.clone());
            }
            out.push(outcome(a, r));
        }
    }

    // Loads: one write of every file whose text is known.
    let mut batch: Vec<(UnitName, String)> = Vec::new();
    let mut batch_actions: Vec<&Action> = Vec::new();
    for a in actions.iter().filter(|a| matches!(a, Action::Load { .. })) {
        let unit = a.unit().expect("load has a unit");
        if failed.contains(unit) {
            out.push(outcome(
                a,
                Err(ActionError::Skipped("unloading the old file failed")),
            ));
            continue;
        }
        match texts.get(unit) {
            Some(text) => {
                batch.push((unit.clone(), text.clone()));
                batch_actions.push(a);
            }
            None => {
                failed.insert(unit.clone());
                out.push(outcome(a, Err(ActionError::NoText)));
            }
        }
    }
    if !batch.is_empty() {
        let results = per_unit(&batch, |chunk| systemd.write_units(chunk)).await;
        for (a, r) in batch_actions.iter().zip(results) {
            match &r {
                Ok(()) => loaded_now.extend(a.unit().cloned()),
                Err(_) => failed.extend(a.unit().cloned()),
            }
            out.push(outcome(a, r));
        }
    }

    // One daemon-reload, if anything changed on disk.
    let mut reload_failed = false;
    if let Some(a) = actions
        .iter()
        .find(|a| matches!(a, Action::DaemonReload { .. }))
    {
        let changed = out.iter().any(|o| {
            o.result.is_ok() && matches!(o.action, Action::Load { .. } | Action::Unload { .. })
        });
        if changed {
            let r = systemd.reload().await;
            reload_failed = r.is_err();
            out.push(outcome(a, r.map_err(ActionError::from)));
        }
    }
    if reload_failed {
        failed.extend(loaded_now.iter().cloned());
    }

    // Stops, then starts, each group concurrently (systemd queues the jobs).
    for is_start in [false, true] {
        let group: Vec<&Action> = actions
            .iter()
            .filter(|a| match a {
                Action::Stop { .. } => !is_start,
                Action::Start { .. } => is_start,
                _ => false,
            })
            .collect();
        let (skip, run): (Vec<&Action>, Vec<&Action>) = group
            .into_iter()
            .partition(|a| a.unit().is_some_and(|u| failed.contains(u)));
        out.extend(skip.into_iter().map(|a| {
            outcome(
                a,
                Err(ActionError::Skipped(
                    "an earlier action on this unit (or the reload) failed",
                )),
            )
        }));
        let results = join_all(run.iter().map(|a| async move {
            let unit = a.unit().expect("stop/start has a unit");
            if is_start {
                systemd.start(unit).await
            } else {
                systemd.stop(unit).await
            }
        }))
        .await;
        for (a, r) in run.into_iter().zip(results) {
            out.push(outcome(a, r.map_err(ActionError::from)));
        }
    }
    out
}

fn outcome(a: &Action, result: Result<(), ActionError>) -> Outcome {
    Outcome {
        action: a.clone(),
        result,
    }
}

/// Runs `call` on the whole batch; if that fails, on each item alone (in order), so
/// one item systemd or the filesystem refuses fails by itself. One result per item.
async fn per_unit<'a, T, F, Fut>(items: &'a [T], call: F) -> Vec<Result<(), ActionError>>
where
    F: Fn(&'a [T]) -> Fut,
    Fut: std::future::Future<Output = Result<(), SystemdError>>,
{
    match call(items).await {
        Ok(()) => items.iter().map(|_| Ok(())).collect(),
        Err(e) if items.len() == 1 => vec![Err(e.into())],
        Err(e) => {
            tracing::debug!(error = %e, items = items.len(), "batch refused; retrying unit by unit");
            let mut out = Vec::with_capacity(items.len());
            for i in 0..items.len() {
                out.push(call(&items[i..=i]).await.map_err(ActionError::from));
            }
            out
        }
    }
}
