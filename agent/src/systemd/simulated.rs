//! **A SIMULATED systemd, for scale benchmarks ONLY.** It speaks no D-Bus, runs nothing,
//! and is not a test double for correctness: the agent's behaviour against systemd is
//! tested against a real `systemd --user` (see `agent/tests/systemd.rs`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use fleet_core::{SystemdState, UnitFile, UnitHash, UnitName};
use tokio::sync::mpsc;

use super::call_counts::CallCounts;
use super::{StateChanged, SystemdError, UnitManager};

/// Capacity of each hint channel.
const HINT_CHANNEL: usize = 1024;

/// **SIMULATED — benchmarks only, never production.** An in-memory systemd so one process
/// can host thousands of agents: unit files live in a map, `start`/`stop` flip states
/// instantly (or after a configurable latency, passing through `activating`/
/// `deactivating`), and every change is announced as a [`StateChanged`] hint, as the real
/// manager's signals would. States mirror systemd's: `loaded/inactive/dead` once written,
/// `loaded/active/running` after start, `not-found/inactive/dead` for unknown units.
#[derive(Clone, Default)]
pub struct SimulatedSystemd {
    inner: Arc<Mutex<Sim>>,
    latency: Duration,
}

#[derive(Default)]
struct Sim {
    units: HashMap<UnitName, SimUnit>,
    subscribers: Vec<mpsc::Sender<StateChanged>>,
    counts: CallCounts,
}

struct SimUnit {
    hash: UnitHash,
    state: SystemdState,
}

fn state(load: &str, active: &str, sub: &str) -> SystemdState {
    SystemdState {
        load: load.to_owned(),
        active: active.to_owned(),
        sub: sub.to_owned(),
    }
}

impl SimulatedSystemd {
    /// A simulator whose transitions are instant.
    pub fn new() -> Self {
        Self::default()
    }

    /// A simulator whose start/stop jobs take `latency` (states pass through
    /// `activating`/`deactivating` meanwhile); needs a tokio runtime.
    pub fn with_latency(latency: Duration) -> Self {
        SimulatedSystemd {
            latency,
            ..Self::default()
        }
    }

    /// Calls made so far, counted as the real manager counts its D-Bus calls.
    pub fn call_counts(&self) -> CallCounts {
        self.lock().counts
    }

    fn lock(&self) -> MutexGuard<'_, Sim> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets a unit's state if it still exists, then hints subscribers.
    fn set_state(inner: &Mutex<Sim>, unit: &UnitName, new: SystemdState) {
        let mut sim = inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(u) = sim.units.get_mut(unit) {
            u.state = new;
            sim.hint(unit);
        }
    }

    /// Runs a job: the transient state now, the final state now or after the latency.
    fn job(
        &self,
        unit: &UnitName,
        op: &'static str,
        transient: SystemdState,
        done: SystemdState,
    ) -> Result<(), SystemdError> {
        if !self.lock().units.contains_key(unit) {
            return Err(SystemdError::Unit {
                op,
                unit: unit.as_str().to_owned(),
                message: format!("Unit {} not found.", unit.as_str()),
            });
        }
        if self.latency.is_zero() {
            Self::set_state(&self.inner, unit, done);
            return Ok(());
        }
        Self::set_state(&self.inner, unit, transient);
        let (inner, unit, latency) = (self.inner.clone(), unit.clone(), self.latency);
        tokio::spawn(async move {
            tokio::time::sleep(latency).await;
            Self::set_state(&inner, &unit, done);
        });
        Ok(())
    }
}

impl Sim {
    /// Hints every live subscriber; a full channel gets its hint from a short task, so
    /// the simulator never blocks and never loses a hint.
    fn hint(&mut self, unit: &UnitName) {
        self.subscribers.retain(|tx| !tx.is_closed());
        for tx in &self.subscribers {
            if let Err(mpsc::error::TrySendError::Full(hint)) =
                tx.try_send(StateChanged(unit.clone()))
            {
                let tx = tx.clone();
                tokio::spawn(async move { tx.send(hint).await });
            }
        }
    }
}

impl UnitManager for SimulatedSystemd {
    async fn write_units(&self, units: &[(UnitName, String)]) -> Result<(), SystemdError> {
        let mut parsed = Vec::with_capacity(units.len());
        for (unit, text) in units {
            let file = UnitFile::parse(text).map_err(|e| SystemdError::Unit {
                op: "LinkUnitFiles",
                unit: unit.as_str().to_owned(),
                message: e.to_string(),
            })?;
            parsed.push((unit.clone(), file.hash()));
        }
        let mut sim = self.lock();
        sim.counts.link_unit_files += u64::from(!units.is_empty());
        for (unit, hash) in parsed {
            let entry = sim.units.entry(unit).or_insert_with(|| SimUnit {
                hash,
                state: state("loaded", "inactive", "dead"),
            });
            entry.hash = hash;
        }
        Ok(())
    }

    async fn remove_units(&self, units: &[UnitName]) -> Result<(), SystemdError> {
        let mut sim = self.lock();
        sim.counts.disable_unit_files += u64::from(!units.is_empty());
        for unit in units {
            if sim.units.remove(unit).is_some() {
                sim.hint(unit);
            }
        }
        Ok(())
    }

    async fn reload(&self) -> Result<(), SystemdError> {
        self.lock().counts.reload += 1;
        Ok(())
    }

    async fn start(&self, unit: &UnitName) -> Result<(), SystemdError> {
        self.lock().counts.start_unit += 1;
        self.job(
            unit,
            "StartUnit",
            state("loaded", "activating", "start"),
            state("loaded", "active", "running"),
        )
    }

    async fn stop(&self, unit: &UnitName) -> Result<(), SystemdError> {
        self.lock().counts.stop_unit += 1;
        self.job(
            unit,
            "StopUnit",
            state("loaded", "deactivating", "stop"),
            state("loaded", "inactive", "dead"),
        )
    }

    async fn states(
        &self,
        units: &[UnitName],
    ) -> Result<Vec<(UnitName, SystemdState)>, SystemdError> {
        let mut sim = self.lock();
        sim.counts.list_units_by_names += u64::from(!units.is_empty());
        Ok(units
            .iter()
            .map(|unit| {
                let s = sim.units.get(unit).map_or_else(
                    || state("not-found", "inactive", "dead"),
                    |u| u.state.clone(),
                );
                (unit.clone(), s)
            })
            .collect())
    }

    async fn installed_units(&self) -> Result<Vec<(UnitName, UnitHash)>, SystemdError> {
        let sim = self.lock();
        let mut out: Vec<_> = sim.units.iter().map(|(n, u)| (n.clone(), u.hash)).collect();
        out.sort();
        Ok(out)
    }

    /// Benchmarks never stop fleetd gracefully: nothing to fence.
    async fn arm_fence(
        &self,
        _fence: &str,
        _units: &[UnitName],
        _after: std::time::Duration,
    ) -> Result<(), SystemdError> {
        Ok(())
    }

    async fn disarm_fences(&self, _fence: &str) -> Result<usize, SystemdError> {
        Ok(0)
    }

    async fn subscribe(&self) -> Result<mpsc::Receiver<StateChanged>, SystemdError> {
        let (tx, rx) = mpsc::channel(HINT_CHANNEL);
        self.lock().subscribers.push(tx);
        Ok(rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> UnitName {
        UnitName::parse(s).unwrap()
    }

    #[tokio::test]
    async fn lifecycle_with_hints() {
        let sim = SimulatedSystemd::new();
        let mut hints = sim.subscribe().await.unwrap();
        let a = name("a.service");
        let text = "[Service]\nExecStart=/bin/sleep 1\n".to_owned();
        assert_eq!(
            sim.states(std::slice::from_ref(&a)).await.unwrap()[0].1,
            state("not-found", "inactive", "dead")
        );
        assert!(sim.start(&a).await.is_err());
        sim.write_units(&[(a.clone(), text.clone())]).await.unwrap();
        sim.reload().await.unwrap();
        assert_eq!(
            sim.installed_units().await.unwrap(),
            vec![(a.clone(), UnitFile::parse(&text).unwrap().hash())]
        );
        assert_eq!(
            sim.states(std::slice::from_ref(&a)).await.unwrap()[0].1,
            state("loaded", "inactive", "dead")
        );
        sim.start(&a).await.unwrap();
        assert_eq!(hints.recv().await, Some(StateChanged(a.clone())));
        assert_eq!(
            sim.states(std::slice::from_ref(&a)).await.unwrap()[0].1,
            state("loaded", "active", "running")
        );
        sim.stop(&a).await.unwrap();
        assert_eq!(hints.recv().await, Some(StateChanged(a.clone())));
        assert_eq!(
            sim.states(std::slice::from_ref(&a)).await.unwrap()[0].1,
            state("loaded", "inactive", "dead")
        );
        sim.remove_units(std::slice::from_ref(&a)).await.unwrap();
        assert!(sim.installed_units().await.unwrap().is_empty());
        let counts = sim.call_counts();
        assert_eq!(
            (counts.link_unit_files, counts.reload, counts.start_unit),
            (1, 1, 2)
        );
    }

    #[tokio::test]
    async fn latency_passes_through_activating() {
        let sim = SimulatedSystemd::with_latency(Duration::from_millis(20));
        let mut hints = sim.subscribe().await.unwrap();
        let a = name("a.service");
        sim.write_units(&[(a.clone(), "[Service]\nExecStart=/bin/true\n".into())])
            .await
            .unwrap();
        sim.start(&a).await.unwrap();
        assert_eq!(
            sim.states(std::slice::from_ref(&a)).await.unwrap()[0]
                .1
                .active,
            "activating"
        );
        assert!(hints.recv().await.is_some());
        assert!(hints.recv().await.is_some());
        assert_eq!(
            sim.states(std::slice::from_ref(&a)).await.unwrap()[0].1,
            state("loaded", "active", "running")
        );
    }
}
