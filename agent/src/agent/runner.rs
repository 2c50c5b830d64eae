//! The agent's event loop: register, list this machine's schedule, watch only
//! `schedule/<me>/` from the listed revision, and reconcile after each (debounced)
//! batch of changes, after failures (with backoff) and on a slow periodic resync.
//! systemd state hints are batched into one state query and one etcd write.
//!
//! etcd trouble never touches running units: the agent simply keeps retrying. A lost
//! lease (partition longer than the TTL) leads to a new registration and a fresh
//! listing, which unloads whatever the engine moved elsewhere meanwhile.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::pending;
use std::sync::Arc;

use fleet_core::{Machine, Requirements, TargetState, UnitFile, UnitHash, UnitName};
use fleet_registry::{
    AgentRegistry, Backoff, LeaseId, LeaseKeepAlive, LeaseNews, Registry, RegistryError,
    RegistryWatch, UnitStateRecord, WatchEvent,
};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::agent::events::{Effects, Event, LoopState, Timing};
use crate::agent::execute::{Outcome, execute};
use crate::agent::reconcile::{Action, CurrentUnit, Reason, plan};
use crate::agent::registration;
use crate::agent::{AgentConfig, AgentMetrics};
use crate::systemd::{StateChanged, SystemdError, UnitManager, fence_name};

/// Why the agent stopped on its own (fleetd exits; systemd restarts it).
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("systemd: {0}")]
    Systemd(#[from] SystemdError),
    #[error("the stream of systemd state changes ended (connection to systemd lost)")]
    HintsClosed,
}

/// One machine's agent. Its memory (what it loaded and started, what it reported)
/// survives [`Agent::run`] returning, so the caller decides: [`Agent::shutdown`]
/// (graceful: units keep running, the fence is armed) or drop (units keep running,
/// nothing armed: a SIGHUP rebuild).
pub struct Agent<M: UnitManager> {
    pub(super) registry: Registry,
    pub(super) systemd: Arc<M>,
    pub(super) config: AgentConfig,
    /// The event loop's memory: desired units, dirty states, timers.
    state: LoopState,
    pub(super) current: BTreeMap<UnitName, CurrentUnit>,
    texts: HashMap<UnitHash, String>,
    /// What is published at `machine-state/<me>/<unit>`, to write only changes.
    pub(super) reported: BTreeMap<UnitName, UnitStateRecord>,
    /// Publish every state even if unchanged (new lease, periodic safety net).
    pub(super) force_publish: bool,
    /// A write was refused for want of our lease: etcd says it is gone, register again.
    lease_gone: bool,
    /// This machine's handle on the registry, once registered.
    handle: Option<AgentRegistry>,
    own_leases: Vec<LeaseId>,
    /// Units here that opted in to `StopOnEtcdLoss` (from their text at load).
    opted_in: BTreeSet<UnitName>,
    /// Adopted units whose text (so whether they opted in) is not read yet.
    opt_unknown: BTreeSet<UnitName>,
    adopted: bool,
    /// The newest schedule revision this agent has seen: a listing is never older.
    seen: i64,
    failures: u32,
    metrics: AgentMetrics,
}

/// Registration retries: 0.5 s doubling up to 10 s.
const REGISTER_BACKOFF: Backoff = Backoff::new(
    std::time::Duration::from_millis(500),
    std::time::Duration::from_secs(10),
);
/// Reconcile and publish retries: 0.2 s doubling up to 10 s.
const RETRY_BACKOFF: Backoff = Backoff::new(
    std::time::Duration::from_millis(200),
    std::time::Duration::from_secs(10),
);
/// A burst of schedule events is debounced at most this many debounce periods.
const MAX_DEBOUNCE_FACTOR: u32 = 20;

/// What a wait ended with.
enum Woke {
    Stop,
    Elapsed,
}

impl<M: UnitManager> Agent<M> {
    pub fn new(registry: Registry, systemd: Arc<M>, config: AgentConfig) -> Self {
        let own_leases = config
            .lease_file
            .as_deref()
            .and_then(registration::read_lease_file)
            .into_iter()
            .collect();
        let state = LoopState::new(
            config.machine.id.clone(),
            Timing {
                debounce: config.debounce,
                max_debounce: config.debounce * MAX_DEBOUNCE_FACTOR,
                state_batch: config.state_batch,
                resync: config.resync_interval,
            },
            Instant::now(),
        );
        Agent {
            registry,
            systemd,
            config,
            state,
            current: BTreeMap::new(),
            texts: HashMap::new(),
            reported: BTreeMap::new(),
            force_publish: false,
            lease_gone: false,
            handle: None,
            own_leases,
            opted_in: BTreeSet::new(),
            opt_unknown: BTreeSet::new(),
            adopted: false,
            seen: 0,
            failures: 0,
            metrics: AgentMetrics::default(),
        }
    }

    /// Tells whoever listens (fleetd's API) whether this machine is registered.
    fn set_registered(&self, registered: bool) {
        if !registered {
            self.metrics.set_listening(false);
        }
        if let Some(tx) = &self.config.registered {
            tx.send_replace(registered);
        }
    }

    pub fn machine(&self) -> &Machine {
        &self.config.machine
    }

    /// The lease the machine is registered under (None before registration).
    pub fn lease(&self) -> Option<LeaseId> {
        self.handle.as_ref().map(AgentRegistry::lease)
    }

    /// Counters about this agent, readable while it runs.
    pub fn metrics(&self) -> AgentMetrics {
        self.metrics.clone()
    }

    /// Units this agent has loaded, with the state it brought them to.
    pub fn units(&self) -> &BTreeMap<UnitName, CurrentUnit> {
        &self.current
    }

    /// Runs until `stop` is cancelled (Ok) or systemd is lost (Err). etcd problems are
    /// retried forever with bounded, jittered backoff.
    pub async fn run(&mut self, stop: CancellationToken) -> Result<(), AgentError> {
        if !self.adopted {
            self.take_lease_back().await;
        }
        let mut hints = self.systemd.subscribe().await?;
        if !self.adopted {
            let fence = fence_name(self.config.machine.id.as_str());
            if let Err(e) = self.systemd.disarm_fences(&fence).await {
                tracing::warn!(error = %e, "cannot disarm the fence a previous fleetd armed");
            }
            self.adopt().await?;
            self.adopted = true;
        }
        loop {
            let Some((handle, mut keeper)) = self.register(&mut hints, &stop).await? else {
                return Ok(());
            };
            self.state.new_session(Instant::now());
            let mut watch: Option<RegistryWatch> = None;
            let mut fx = Effects {
                relist: true,
                ..Effects::default()
            };
            loop {
                if fx.stop {
                    return Ok(());
                }
                if fx.reregister || std::mem::take(&mut self.lease_gone) {
                    tracing::warn!("the agent's lease is gone; registering again");
                    self.set_registered(false);
                    self.self_fence().await;
                    break;
                }
                if fx.self_fence {
                    self.self_fence().await;
                }
                if let Some((received, foreign)) = fx.received {
                    self.metrics.received(received, foreign);
                    self.metrics.set_scheduled(self.state.desired.len());
                }
                if fx.recheck_states {
                    self.recheck_states(&handle).await;
                }
                if let Some(w) = &watch {
                    self.seen = self.seen.max(w.next_revision() - 1);
                }
                if fx.relist {
                    let kept = if fx.keep_watch { watch.take() } else { None };
                    watch = self.relist(&handle, kept).await;
                } else if fx.reconcile {
                    let retry = self.reconcile(&handle).await;
                    if let Some(at) = retry {
                        self.state.retry_at(at);
                    }
                }
                if fx.publish
                    && !self.publish_states(&handle).await
                    && self.state.reconcile_at.is_none()
                {
                    self.state.retry_at(Instant::now() + self.retry_delay());
                }
                let event = self
                    .next_event(&mut hints, &stop, &mut keeper, watch.as_mut())
                    .await?;
                fx = self.state.on(event, Instant::now());
            }
        }
    }

    /// Registers (or takes our lease back), retrying with backoff; `None` if stopped
    /// meanwhile.
    async fn register(
        &mut self,
        hints: &mut mpsc::Receiver<StateChanged>,
        stop: &CancellationToken,
    ) -> Result<Option<(AgentRegistry, LeaseKeepAlive)>, AgentError> {
        let mut failures = 0u32;
        let (handle, keeper) = loop {
            let registered = self
                .registry
                .register_agent(
                    &self.config.machine,
                    &self.config.api_addr,
                    self.config.ttl,
                    &self.own_leases,
                )
                .await;
            match registered {
                Ok(r) => break r,
                Err(e) => {
                    failures += 1;
                    self.metrics.registration_failed();
                    let d = register_delay(failures, self.config.ttl, !self.own_leases.is_empty());
                    tracing::warn!("Server register machine failed: {e}, retrying in {d:?}");
                    if let Woke::Stop = self.wait(hints, stop, Instant::now() + d).await? {
                        return Ok(None);
                    }
                }
            }
        };
        self.set_registered(true);
        let lease = handle.lease();
        if self.lease() != Some(lease) {
            tracing::info!(machine = %self.config.machine.id, %lease, "registered machine");
            self.force_publish = true;
            self.state.dirty.extend(self.current.keys().cloned());
        }
        self.handle = Some(handle.clone());
        self.own_leases = vec![lease];
        if let Some(f) = &self.config.lease_file {
            registration::write_lease_file(f, lease);
        }
        Ok(Some((handle, keeper)))
    }

    /// A restarted fleetd renews the lease its predecessor saved before anything
    /// else: the lease has what was left at the predecessor's last renewal, and
    /// systemd's restart delay has used part of it; listing and adopting units first
    /// could let it expire, and the engine would move this machine's units. Best
    /// effort: registration takes the lease back (or registers anew) either way.
    async fn take_lease_back(&self) {
        let Some(&lease) = self.own_leases.first() else {
            return;
        };
        match self.registry.renew_lease_once(lease).await {
            Ok(ttl) => tracing::info!(%lease, ?ttl, "renewed the lease of the previous fleetd"),
            Err(e) => {
                tracing::info!(%lease, error = %e, "cannot renew the lease of the previous fleetd; registering")
            }
        }
    }

    /// Reads this machine's schedule, reconciles, and returns the watch that follows
    /// it: `kept` if given, else a new one from the listing's revision. On failure
    /// (units keep running) a retry is scheduled and `kept` returned.
    async fn relist(
        &mut self,
        handle: &AgentRegistry,
        kept: Option<RegistryWatch>,
    ) -> Option<RegistryWatch> {
        match handle.schedule(self.seen).await {
            Ok((rev, entries)) => {
                self.seen = self.seen.max(rev);
                self.learn_opt_ins(handle).await;
                self.state.listed(rev, entries);
                self.metrics.set_scheduled(self.state.desired.len());
                let watch = kept.unwrap_or_else(|| handle.watch_schedule(rev + 1));
                self.metrics.set_listening(true);
                let retry = self.reconcile(handle).await;
                self.state.synced(retry);
                Some(watch)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read this machine's schedule; units keep running");
                self.failures += 1;
                self.state.retry_at(Instant::now() + self.retry_delay());
                kept
            }
        }
    }

    /// Waits for the next event. Stop and lease loss come first, then the timers (so a
    /// steady stream of watch events cannot put a due reconcile off), then the watch
    /// and systemd's hints.
    async fn next_event(
        &self,
        hints: &mut mpsc::Receiver<StateChanged>,
        stop: &CancellationToken,
        keeper: &mut LeaseKeepAlive,
        watch: Option<&mut RegistryWatch>,
    ) -> Result<Event, AgentError> {
        let at = |t: Option<Instant>| async move {
            match t {
                Some(t) => sleep_until(t).await,
                None => pending().await,
            }
        };
        let watch_next = async {
            match watch {
                Some(w) => w.next().await,
                None => pending().await,
            }
        };
        let event = tokio::select! {
            biased;
            _ = stop.cancelled() => Event::Stop,
            news = keeper.news() => match news {
                LeaseNews::Lost(e) => Event::LeaseLost(e),
                LeaseNews::Overdue(o) => Event::LeaseOverdue(o),
            },
            _ = at(self.state.reconcile_at) => Event::ReconcileDue,
            _ = at(self.state.publish_at) => Event::PublishDue,
            _ = sleep_until(self.state.next_resync) => Event::Resync,
            r = watch_next => Event::Schedule(r),
            h = hints.recv() => match h {
                Some(StateChanged(u)) => Event::Hint(u),
                None => return Err(AgentError::HintsClosed),
            },
        };
        match &event {
            Event::Schedule(Ok(b)) => {
                for e in &b.events {
                    if let WatchEvent::Corrupt { revision, error } = e {
                        tracing::warn!(revision, %error, "undecodable schedule entry ignored");
                    }
                }
            }
            Event::Schedule(Err(RegistryError::Compacted { .. })) => {}
            Event::Schedule(Err(e)) => {
                tracing::warn!(error = %e, "schedule watch failed; units keep running, retrying");
            }
            Event::LeaseLost(e) => tracing::debug!(error = %e, "lease lost"),
            _ => {}
        }
        Ok(event)
    }

    /// Graceful stop (SIGTERM): units keep running and the lease is kept, so the next
    /// fleetd on this machine takes both back (same MainPIDs, nothing moves). Unlike
    /// fleet, which unloaded every unit here (its issue #1086).
    ///
    /// The lease is renewed once and this machine's fence armed to fire [`fence_guard`]
    /// before the lease can expire: if no fleetd comes back by then, systemd itself
    /// stops the units, before the engine can see the machine gone and place them
    /// elsewhere. Stopping a machine's units on purpose is `fleetctl drain`.
    pub async fn shutdown(mut self) {
        let units: Vec<UnitName> = self.current.keys().cloned().collect();
        let asked = Instant::now();
        let ttl = match self.handle.take() {
            Some(handle) => match handle.renew().await {
                Ok(granted) => granted,
                Err(e) => {
                    // The lease may expire sooner than a TTL from now: the fence is then
                    // late by at most the time since the last renewal that succeeded.
                    let lease = handle.lease();
                    tracing::warn!(error = %e, %lease, "cannot renew the agent's lease at shutdown");
                    self.config.ttl
                }
            },
            // Never registered (etcd unreachable since start), yet the fence a previous
            // fleetd armed was disarmed: arm one again, as late as a lease could live.
            None => self.config.ttl,
        };
        let after = ttl
            .saturating_sub(fence_guard(ttl))
            .saturating_sub(asked.elapsed());
        let fence = fence_name(self.config.machine.id.as_str());
        match self.systemd.arm_fence(&fence, &units, after).await {
            Ok(()) if units.is_empty() => {}
            Ok(()) => tracing::info!(
                units = units.len(),
                "leaving this machine's units running for the next fleetd; they stop in {after:?} unless it comes back"
            ),
            Err(e) => tracing::error!(
                error = %e,
                "cannot arm this machine's fence: its units keep running if no fleetd comes back"
            ),
        }
    }

    /// Takes over the units a previous fleetd left installed: right file and running
    /// in systemd → launched, without touching them.
    async fn adopt(&mut self) -> Result<(), SystemdError> {
        let installed = self.systemd.installed_units().await?;
        if installed.is_empty() {
            return Ok(());
        }
        let names: Vec<UnitName> = installed.iter().map(|(n, _)| n.clone()).collect();
        let states: HashMap<UnitName, _> = self.systemd.states(&names).await?.into_iter().collect();
        for (name, hash) in installed {
            let running = states.get(&name).is_some_and(|s| is_running(&s.active));
            let state = if running {
                TargetState::Launched
            } else {
                TargetState::Loaded
            };
            tracing::info!(unit = %name, %state, "adopting unit found in the units directory");
            self.state.dirty.insert(name.clone());
            self.opt_unknown.insert(name.clone());
            self.current.insert(name, CurrentUnit { hash, state });
        }
        Ok(())
    }

    /// Waits until `deadline` or `stop`, still draining state hints (the systemd side
    /// must never block on a full channel).
    async fn wait(
        &mut self,
        hints: &mut mpsc::Receiver<StateChanged>,
        stop: &CancellationToken,
        deadline: Instant,
    ) -> Result<Woke, AgentError> {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return Ok(Woke::Stop),
                _ = sleep_until(deadline) => return Ok(Woke::Elapsed),
                h = hints.recv() => match h {
                    Some(StateChanged(u)) => { self.state.dirty.insert(u); }
                    None => return Err(AgentError::HintsClosed),
                },
            }
        }
    }

    /// Plans and executes; publishes states. Returns when to retry, if anything failed.
    async fn reconcile(&mut self, handle: &AgentRegistry) -> Option<Instant> {
        let actions = plan(&self.state.desired, &self.current);
        let mut ok = true;
        self.take_carried_texts();
        if !actions.is_empty() {
            self.fetch_texts(handle, &actions).await;
            let texts: HashMap<UnitName, String> = actions
                .iter()
                .filter_map(|a| match a {
                    Action::Load { unit, hash, .. } => {
                        self.texts.get(hash).map(|t| (unit.clone(), t.clone()))
                    }
                    _ => None,
                })
                .collect();
            let started = Instant::now();
            let outcomes = execute(&*self.systemd, &actions, &texts).await;
            ok = self.apply_outcomes(outcomes);
            tracing::debug!(actions = actions.len(), elapsed = ?started.elapsed(), "reconciled");
        }
        let keep: BTreeSet<UnitHash> = self
            .state
            .desired
            .values()
            .map(|d| d.hash)
            .chain(self.current.values().map(|c| c.hash))
            .collect();
        self.texts.retain(|h, _| keep.contains(h));
        if self.state.may_publish(Instant::now()) && !self.publish_states(handle).await {
            ok = false;
        }
        if ok {
            self.failures = 0;
            None
        } else {
            self.failures += 1;
            Some(Instant::now() + self.retry_delay())
        }
    }

    /// Logs each outcome and records what took effect; true if all succeeded.
    fn apply_outcomes(&mut self, outcomes: Vec<Outcome>) -> bool {
        let mut ok = true;
        for o in outcomes {
            match &o.result {
                Ok(()) => tracing::info!("AgentReconciler completed task: {}", o.action),
                Err(e) => {
                    ok = false;
                    tracing::warn!("AgentReconciler task failed: {} err={e}", o.action);
                    continue;
                }
            }
            if let Some(u) = o.action.unit() {
                self.state.dirty.insert(u.clone());
            }
            match o.action {
                Action::Unload { unit, .. } => {
                    self.opted_in.remove(&unit);
                    self.opt_unknown.remove(&unit);
                    self.current.remove(&unit);
                }
                Action::Load { unit, hash, .. } => {
                    self.opt_unknown.remove(&unit);
                    let opts_in = self
                        .texts
                        .get(&hash)
                        .and_then(|t| UnitFile::parse(t).ok())
                        .is_some_and(|f| Requirements::for_unit(&f, &unit).stop_on_etcd_loss);
                    if opts_in {
                        self.opted_in.insert(unit.clone());
                    } else {
                        self.opted_in.remove(&unit);
                    }
                    self.current.insert(
                        unit,
                        CurrentUnit {
                            hash,
                            state: TargetState::Loaded,
                        },
                    );
                }
                Action::Start { unit, .. } => {
                    if let Some(c) = self.current.get_mut(&unit) {
                        c.state = TargetState::Launched;
                    }
                }
                Action::Stop { unit, .. } => {
                    if let Some(c) = self.current.get_mut(&unit) {
                        c.state = TargetState::Loaded;
                    }
                }
                Action::DaemonReload { .. } => {}
            }
        }
        ok
    }

    /// Caches the texts placements carried, each checked against its hash (a text that
    /// does not match is dropped, and the unit is read from `unit/` instead).
    fn take_carried_texts(&mut self) {
        for (hash, text) in std::mem::take(&mut self.state.carried) {
            if self.texts.contains_key(&hash) {
                continue;
            }
            match UnitFile::parse(&text) {
                Ok(f) if f.hash() == hash => {
                    self.texts.insert(hash, text.to_string());
                }
                _ => tracing::warn!(
                    hash = %hash.short(),
                    "a placement carries a text that does not match its hash; reading the unit instead"
                ),
            }
        }
    }

    /// Reads `unit/<name>` for loads whose text (by hash) is not cached: only those.
    async fn fetch_texts(&mut self, handle: &AgentRegistry, actions: &[Action]) {
        let wanted: Vec<(UnitName, UnitHash)> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Load { unit, hash, .. } if !self.texts.contains_key(hash) => {
                    Some((unit.clone(), *hash))
                }
                _ => None,
            })
            .collect();
        if wanted.is_empty() {
            return;
        }
        // One batched read (64 units per txn) instead of a round trip per unit.
        let names: Vec<UnitName> = wanted.iter().map(|(u, _)| u.clone()).collect();
        let records = match handle.units(&names).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(units = names.len(), error = %e, "cannot read unit texts");
                return;
            }
        };
        for ((unit, hash), r) in wanted.into_iter().zip(records) {
            match r {
                Some(rec) if rec.hash == hash => {
                    self.texts.insert(hash, rec.file.canonical());
                }
                Some(rec) => {
                    tracing::debug!(unit = %unit, scheduled = %hash.short(), stored = %rec.hash.short(), "unit text changed since it was scheduled; waiting for the engine")
                }
                None => {
                    tracing::debug!(unit = %unit, "scheduled unit no longer exists; waiting for the engine")
                }
            }
        }
    }

    /// Reads the texts of adopted units (one batched read) to learn which opted in to
    /// `StopOnEtcdLoss`; retried at the next listing if etcd fails.
    async fn learn_opt_ins(&mut self, handle: &AgentRegistry) {
        if self.opt_unknown.is_empty() {
            return;
        }
        let names: Vec<UnitName> = self.opt_unknown.iter().cloned().collect();
        let Ok(records) = handle.units(&names).await else {
            return;
        };
        for (unit, record) in names.into_iter().zip(records) {
            let ours = self.current.get(&unit).map(|c| c.hash);
            if let Some(r) = record.filter(|r| Some(r.hash) == ours)
                && Requirements::for_unit(&r.file, &unit).stop_on_etcd_loss
            {
                self.opted_in.insert(unit.clone());
            }
            self.opt_unknown.remove(&unit);
        }
    }

    /// Self-fencing (opt-in): the lease is lost, so the cluster may already run this
    /// machine's units elsewhere. Units that opted in (`StopOnEtcdLoss=true`, or every
    /// unit with fleet.conf `stop_on_etcd_loss`) are stopped, unless an etcd member
    /// still answers here: then etcd itself is down or without quorum, an outage every
    /// machine sees, in which no engine can move anything. They stay loaded; once the
    /// machine registers again, the schedule starts them again or unloads them.
    async fn self_fence(&mut self) {
        let units: Vec<UnitName> = self
            .current
            .iter()
            .filter(|(u, c)| {
                c.state == TargetState::Launched
                    && (self.config.stop_on_etcd_loss || self.opted_in.contains(*u))
            })
            .map(|(u, _)| u.clone())
            .collect();
        if units.is_empty() {
            return;
        }
        if let Some(member) = reachable_member(self.registry.endpoints()).await {
            self.metrics.self_fence_checked(0);
            tracing::warn!(
                units = units.len(),
                %member,
                "lost etcd for longer than agent_ttl, but etcd member {member} answers: an outage every machine sees; units with StopOnEtcdLoss keep running"
            );
            return;
        }
        tracing::warn!(
            units = units.len(),
            "lost etcd for longer than agent_ttl and no etcd member answers: stopping the units with StopOnEtcdLoss"
        );
        let actions: Vec<Action> = units
            .into_iter()
            .map(|unit| Action::Stop {
                unit,
                reason: Reason::EtcdLost,
            })
            .collect();
        let outcomes = execute(&*self.systemd, &actions, &HashMap::new()).await;
        let stopped = outcomes.iter().filter(|o| o.result.is_ok()).count();
        self.apply_outcomes(outcomes);
        self.metrics.self_fence_checked(stopped);
    }

    /// The periodic safety net for states: learns what etcd holds (an operator may
    /// have deleted or rewritten a record) and marks every loaded unit for a query, so
    /// the next publish writes only what differs and deletes strays. Writing every state
    /// every minute instead cost 100,000 key writes a minute at 100,000 units. If etcd
    /// cannot be read, the states are compared with what this agent last wrote.
    async fn recheck_states(&mut self, handle: &AgentRegistry) {
        match handle.own_states().await {
            Ok(held) => {
                self.reported = held.into_iter().map(|r| (r.unit.clone(), r)).collect();
            }
            Err(e) => tracing::debug!(error = %e, "cannot read this machine's states back"),
        }
        self.state.dirty.extend(self.current.keys().cloned());
    }

    /// Publishes how many of this machine's published states say running.
    fn note_reported(&self) {
        self.metrics.set_reported_active(
            self.reported
                .values()
                .filter(|r| r.state == TargetState::Launched && r.systemd.active == "active")
                .count(),
        );
    }

    fn retry_delay(&self) -> std::time::Duration {
        RETRY_BACKOFF.delay(self.failures)
    }

    /// Deletes the records of units no longer loaded; queries systemd once for the
    /// dirty units and writes the records that changed, in one batch. False on failure
    /// (the units stay dirty and are retried).
    pub(super) async fn publish_states(&mut self, handle: &AgentRegistry) -> bool {
        let me = self.config.machine.id.clone();
        let mut ok = true;
        let gone: Vec<UnitName> = self
            .reported
            .keys()
            .filter(|u| !self.current.contains_key(*u))
            .cloned()
            .collect();
        let started = Instant::now();
        if !gone.is_empty() {
            // One batched delete (128 per txn) for every unit unloaded here.
            let deleted = handle.delete_states(&gone).await;
            self.state.published(started, Instant::now());
            match deleted {
                Ok(()) => {
                    for u in &gone {
                        self.reported.remove(u);
                    }
                }
                Err(e) => {
                    ok = false;
                    tracing::warn!(units = gone.len(), error = %e, "cannot delete unit states");
                }
            }
        }
        self.note_reported();
        self.state.dirty.retain(|u| self.current.contains_key(u));
        if self.state.dirty.is_empty() {
            self.force_publish = false;
            return ok;
        }
        let query: Vec<UnitName> = self.state.dirty.iter().cloned().collect();
        let states: HashMap<UnitName, _> = match self.systemd.states(&query).await {
            Ok(s) => s.into_iter().collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot query unit states from systemd");
                return false;
            }
        };
        let records: Vec<UnitStateRecord> = query
            .iter()
            .filter_map(|u| {
                let c = self.current.get(u)?;
                Some(UnitStateRecord {
                    unit: u.clone(),
                    machine: me.clone(),
                    hash: c.hash,
                    state: c.state,
                    systemd: states.get(u).cloned().unwrap_or_default(),
                })
            })
            .filter(|r| self.force_publish || self.reported.get(&r.unit) != Some(r))
            .collect();
        if !records.is_empty() {
            let started = Instant::now();
            let put = handle.put_states(&records).await;
            self.state.published(started, Instant::now());
            if let Err(e) = put {
                if e.is_lease_not_found() {
                    self.lease_gone = true;
                }
                tracing::warn!(error = %e, "cannot publish unit states; retrying");
                return false;
            }
            for r in records {
                self.reported.insert(r.unit.clone(), r);
            }
        }
        self.note_reported();
        self.state.dirty.clear();
        self.force_publish = false;
        ok
    }
}

/// The wait before the next registration attempt. While a lease of ours may still be
/// alive (etcd extends leases when it regains a leader, e.g. after a quorum loss), the
/// next attempt comes within a quarter of the TTL, so that the lease is taken back
/// before it expires and the engine moves nothing; otherwise the usual backoff.
fn register_delay(
    failures: u32,
    ttl: std::time::Duration,
    holding_lease: bool,
) -> std::time::Duration {
    let d = REGISTER_BACKOFF.delay(failures);
    if holding_lease {
        d.min((ttl / 4).max(std::time::Duration::from_millis(100)))
    } else {
        d
    }
}

/// How long before its lease can expire a stopped fleetd's fence stops the units:
/// a fifth of the TTL, between 0.5 s and 2 s. The engine moves units only once the
/// lease expired, so the old copies get their stop first.
pub fn fence_guard(ttl: std::time::Duration) -> std::time::Duration {
    (ttl / 5).clamp(
        std::time::Duration::from_millis(500),
        std::time::Duration::from_secs(2),
    )
}

/// The first etcd member (of fleetd's comma-separated endpoints) that accepts a TCP
/// connection within a second; all are tried at once.
async fn reachable_member(endpoints: &str) -> Option<String> {
    let probes = endpoints.split(',').map(|e| {
        let e = e.trim();
        let host_port = e
            .split_once("://")
            .map_or(e, |(_, rest)| rest)
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        async move {
            let connect = tokio::net::TcpStream::connect(host_port.clone());
            match tokio::time::timeout(std::time::Duration::from_secs(1), connect).await {
                Ok(Ok(_)) => Some(host_port),
                _ => None,
            }
        }
    });
    futures_util::future::join_all(probes)
        .await
        .into_iter()
        .flatten()
        .next()
}

/// systemd ACTIVE states that mean "started" for adoption.
fn is_running(active: &str) -> bool {
    matches!(active, "active" | "activating" | "reloading")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_retries_within_the_ttl_while_a_lease_may_live() {
        use std::time::Duration;
        let ttl = Duration::from_secs(3);
        for failures in 1..10 {
            assert!(register_delay(failures, ttl, true) <= Duration::from_millis(750));
        }
        assert!(register_delay(8, ttl, false) > Duration::from_secs(3));
    }

    #[test]
    fn the_fence_fires_before_the_lease_can_expire() {
        use std::time::Duration;
        assert_eq!(fence_guard(Duration::from_secs(10)), Duration::from_secs(2));
        assert_eq!(fence_guard(Duration::from_secs(30)), Duration::from_secs(2));
        assert_eq!(fence_guard(Duration::from_secs(5)), Duration::from_secs(1));
        assert_eq!(
            fence_guard(Duration::from_secs(1)),
            Duration::from_millis(500)
        );
    }

    #[test]
    fn running_states() {
        assert!(is_running("active") && is_running("activating"));
        assert!(!is_running("inactive") && !is_running("failed") && !is_running("deactivating"));
    }
}
