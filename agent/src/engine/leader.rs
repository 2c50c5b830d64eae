//! The leader's loop (kube-rs's watch → reconcile → requeue, Nomad's commit path):
//! one full read when leadership is won, then a view kept from watches
//! ([`EngineView`]); each pass plans from the view, writes the difference in fenced
//! txns and records it in the view, then sleeps until a watched change (debounced) or
//! the periodic pass, and starts over. The view is read afresh only after a watch was
//! compacted or failed, or a write failed half-way (etcd may hold part of it).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use fleet_registry::{EngineView, Leadership, Registry, RegistryError, Skipped};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::decide::decide_in;
use super::election::Won;
use super::{EngineConfig, EngineStatus, PassReport, backoff};

/// Why the leader loop ended.
pub enum StepDown {
    Shutdown,
    /// Leadership is gone or cannot be proven (lease lost, fenced write refused).
    Lost(String),
}

/// Acts as leader until shut down or deposed.
pub async fn lead(
    _reg: &Registry,
    cfg: &EngineConfig,
    won: &mut Won,
    shutdown: &CancellationToken,
    status: &watch::Sender<EngineStatus>,
) -> StepDown {
    let mut view: Option<EngineView> = None;
    let mut failures = 0u32;
    // How long the last pass took: the next one collects changes at least that long,
    // so a burst becomes fewer, larger passes.
    let mut last_pass: Duration;
    let mut reported = Reported::default();
    loop {
        let v = match &mut view {
            Some(v) => v,
            None => {
                let read = tokio::select! {
                    _ = shutdown.cancelled() => return StepDown::Shutdown,
                    e = won.keep.lost() => return StepDown::Lost(e.to_string()),
                    r = won.leadership.follow() => r,
                };
                match read {
                    Ok(v) => {
                        tracing::debug!(revision = v.revision(), "engine view read in full");
                        view.insert(v)
                    }
                    Err(e) => {
                        failures += 1;
                        tracing::warn!(error = %e, "engine cannot read the cluster; retrying");
                        tokio::select! {
                            _ = shutdown.cancelled() => return StepDown::Shutdown,
                            e = won.keep.lost() => return StepDown::Lost(e.to_string()),
                            _ = tokio::time::sleep(backoff(failures, cfg.reconcile_interval)) => {}
                        }
                        continue;
                    }
                }
            }
        };
        let outcome = tokio::select! {
            _ = shutdown.cancelled() => return StepDown::Shutdown,
            e = won.keep.lost() => return StepDown::Lost(e.to_string()),
            r = pass(&won.leadership, v, &mut reported) => r,
        };
        match outcome {
            Ok(report) => {
                failures = 0;
                last_pass = report.duration;
                fleet_metrics::engine_pass(report.duration, report.placed, report.unplaceable);
                status.send_modify(|s| {
                    s.passes += 1;
                    s.last_pass = Some(report);
                });
            }
            Err(RegistryError::NotLeader) => {
                return StepDown::Lost("a newer leader refused our schedule write".into());
            }
            Err(e) => {
                // Part of the plan may have been applied: read the cluster afresh.
                view = None;
                failures += 1;
                tracing::warn!(error = %e, "engine pass failed; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return StepDown::Shutdown,
                    e = won.keep.lost() => return StepDown::Lost(e.to_string()),
                    _ = tokio::time::sleep(backoff(failures, cfg.reconcile_interval)) => {}
                }
                continue;
            }
        }
        let woke = tokio::select! {
            _ = shutdown.cancelled() => return StepDown::Shutdown,
            e = won.keep.lost() => return StepDown::Lost(e.to_string()),
            _ = tokio::time::sleep(cfg.full_pass_interval()) => Ok(0),
            r = v.changed(cfg.debounce.max(last_pass)) => r,
        };
        if let Err(e) = woke {
            // Compacted or broken watches: the next view is read in full, and its
            // watches start right after that read.
            tracing::warn!(error = %e, "engine watch failed; re-reading the cluster");
            view = None;
            if !matches!(e, RegistryError::Compacted { .. }) {
                failures += 1;
                tokio::select! {
                    _ = shutdown.cancelled() => return StepDown::Shutdown,
                    e = won.keep.lost() => return StepDown::Lost(e.to_string()),
                    _ = tokio::time::sleep(backoff(failures, cfg.reconcile_interval)) => {}
                }
            }
        }
    }
}

/// The skipped keys already logged, with the revision of the value seen: each bad
/// value is logged once, not on every pass; a key rewritten (still bad) is logged again.
#[derive(Default)]
struct Reported(HashMap<String, i64>);

impl Reported {
    /// Logs the skipped keys not logged before at their revision; returns how many.
    fn log(&mut self, skipped: &[Skipped]) -> usize {
        let mut now = HashMap::with_capacity(skipped.len());
        let mut logged = 0;
        for s in skipped {
            if self.0.get(&s.key) != Some(&s.revision) {
                logged += 1;
                match &s.unit {
                    Some(unit) if s.unit_record => tracing::warn!(
                        key = %s.key,
                        %unit,
                        "{s}; the unit is neither placed nor moved until it is fixed or destroyed"
                    ),
                    _ => tracing::warn!(key = %s.key, "{s}"),
                }
            }
            now.insert(s.key.clone(), s.revision);
        }
        self.0 = now;
        logged
    }
}

/// One pass: the view's snapshot (no etcd read), the plan (off the async threads, so
/// lease renewals are not starved by a big plan), ⌈ops/128⌉ fenced write txns (none
/// if nothing changed), recorded in the view once etcd accepted them.
async fn pass(
    leadership: &Leadership,
    view: &mut EngineView,
    reported: &mut Reported,
) -> Result<PassReport, RegistryError> {
    let started = Instant::now();
    let snap = view.snapshot();
    // Namespaces (issue 17): which units belong together and where they may run.
    let namespaces = view.namespaces();
    reported.log(&snap.skipped);
    let planned = tokio::task::spawn_blocking(move || {
        let d = decide_in(&snap, &namespaces);
        (snap.revision, d)
    })
    .await;
    let (revision, d) = match planned {
        Ok(p) => p,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Only when the runtime shuts down: the pass is moot.
        Err(_) => {
            return Err(RegistryError::Config(
                "the engine's plan was cancelled (shutting down)".into(),
            ));
        }
    };
    for (u, m, why) in &d.plan.unplace {
        tracing::info!(unit = %u, machine = %m, reason = %why, "Unscheduling unit {u} from {m}: {why}");
    }
    for (u, note) in &d.plan.notes {
        tracing::debug!(unit = %u, "{note}");
    }
    let txns = if d.writes.is_empty() {
        0
    } else {
        let (n, written_at) = leadership.apply_at(&d.writes).await?;
        view.record(&d.writes, written_at);
        n
    };
    let report = PassReport {
        revision,
        txns,
        placed: d.plan.place.len(),
        unscheduled: d.plan.unplace.len(),
        unplaceable: d.plan.unplaceable.len(),
        duration: started.elapsed(),
    };
    if txns > 0 {
        tracing::info!(
            revision = report.revision,
            placed = report.placed,
            unscheduled = report.unscheduled,
            unplaceable = report.unplaceable,
            txns,
            took = ?report.duration,
            "engine pass wrote the schedule"
        );
    } else {
        tracing::debug!(revision = report.revision, took = ?report.duration, "engine pass: nothing to change");
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skipped(key: &str, revision: i64) -> Skipped {
        Skipped {
            key: key.into(),
            revision,
            unit: None,
            unit_record: false,
            reason: "bad".into(),
        }
    }

    #[test]
    fn each_bad_value_is_logged_once() {
        let mut r = Reported::default();
        let a = skipped("/p/unit/a.service", 5);
        let b = skipped("/p/machine/m", 6);
        assert_eq!(r.log(&[a.clone(), b.clone()]), 2);
        assert_eq!(
            r.log(&[a.clone(), b.clone()]),
            0,
            "second pass: nothing new"
        );
        // rewritten, still bad: logged again; fixed keys are forgotten
        assert_eq!(r.log(&[skipped("/p/unit/a.service", 9)]), 1);
        assert_eq!(r.log(&[b]), 1);
        assert_eq!(r.log(&[]), 0);
    }
}
