//! Counters an agent keeps about itself, readable from outside while it runs, so a
//! benchmark hosting thousands of agents can check that each one hears only about its
//! own units (no thundering herd) and see how far placement and start-up have got
//! without reading etcd.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Shared view of one agent's counters; cheap to clone (one `Arc`).
#[derive(Clone, Debug, Default)]
pub struct AgentMetrics(Arc<Counters>);

#[derive(Debug, Default)]
struct Counters {
    watch_batches: AtomicU64,
    watch_events: AtomicU64,
    foreign_events: AtomicU64,
    scheduled: AtomicU64,
    reported_active: AtomicU64,
    registration_failures: AtomicU64,
    self_fence_checks: AtomicU64,
    self_fenced_units: AtomicU64,
    listening: AtomicU64,
}

impl AgentMetrics {
    /// Watch responses received on the agent's schedule watch.
    pub fn watch_batches(&self) -> u64 {
        self.0.watch_batches.load(Ordering::Relaxed)
    }

    /// Events received on the agent's schedule watch.
    pub fn watch_events(&self) -> u64 {
        self.0.watch_events.load(Ordering::Relaxed)
    }

    /// Events about anything but this machine's schedule (must stay 0).
    pub fn foreign_events(&self) -> u64 {
        self.0.foreign_events.load(Ordering::Relaxed)
    }

    /// Units currently scheduled here, as the agent knows it.
    pub fn scheduled(&self) -> u64 {
        self.0.scheduled.load(Ordering::Relaxed)
    }

    /// Units whose published state (in etcd) says launched and systemd-active.
    pub fn reported_active(&self) -> u64 {
        self.0.reported_active.load(Ordering::Relaxed)
    }

    /// Whether the agent is registered, has read its schedule and follows it (a
    /// benchmark submits units once every agent is, without reading etcd to know).
    pub fn listening(&self) -> bool {
        self.0.listening.load(Ordering::Relaxed) != 0
    }

    pub(super) fn set_listening(&self, yes: bool) {
        self.0.listening.store(u64::from(yes), Ordering::Relaxed);
    }

    /// Registrations refused or failed so far (e.g. the machine id is taken).
    pub fn registration_failures(&self) -> u64 {
        self.0.registration_failures.load(Ordering::Relaxed)
    }

    /// Times the agent decided whether to stop its `StopOnEtcdLoss` units after losing
    /// etcd, and how many units it stopped so.
    pub fn self_fence_checks(&self) -> u64 {
        self.0.self_fence_checks.load(Ordering::Relaxed)
    }

    pub fn self_fenced_units(&self) -> u64 {
        self.0.self_fenced_units.load(Ordering::Relaxed)
    }

    pub(super) fn self_fence_checked(&self, stopped: usize) {
        self.0
            .self_fenced_units
            .fetch_add(stopped as u64, Ordering::Relaxed);
        self.0.self_fence_checks.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn registration_failed(&self) {
        self.0.registration_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn received(&self, events: usize, foreign: usize) {
        self.0.watch_batches.fetch_add(1, Ordering::Relaxed);
        self.0
            .watch_events
            .fetch_add(events as u64, Ordering::Relaxed);
        self.0
            .foreign_events
            .fetch_add(foreign as u64, Ordering::Relaxed);
    }

    pub(super) fn set_scheduled(&self, n: usize) {
        self.0.scheduled.store(n as u64, Ordering::Relaxed);
    }

    pub(super) fn set_reported_active(&self, n: usize) {
        self.0.reported_active.store(n as u64, Ordering::Relaxed);
    }
}
