//! The agent loop's events and its pure handler: what woke the agent goes in, what to
//! do next comes out. No I/O and no clock (the time is passed in), so the debounce,
//! batching and retry rules are tested without etcd, systemd or sleeping.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use fleet_core::MachineId;
use fleet_core::{UnitHash, UnitName};
use fleet_registry::{Change, RegistryError, RegistryKey, ScheduleEntry, WatchBatch, WatchEvent};
use tokio::time::Instant;

use crate::agent::reconcile::DesiredUnit;

/// Everything that wakes the agent while it is registered: a closed set.
#[derive(Debug)]
pub enum Event {
    /// A batch from the `schedule/<me>/` watch, or the watch's failure.
    Schedule(Result<WatchBatch, RegistryError>),
    /// systemd says a unit's state changed.
    Hint(UnitName),
    /// The lease is gone: register again.
    LeaseLost(RegistryError),
    /// The lease went a whole TTL without a renewal (`true`), or was renewed again
    /// after that (`false`).
    LeaseOverdue(bool),
    /// The debounce window closed or a retry is due.
    ReconcileDue,
    /// The state-batch window closed: publish the dirty units' states.
    PublishDue,
    /// The periodic safety net: re-list and republish everything.
    Resync,
    Stop,
}

/// What the loop must do after an event, in this order: stop, register again, re-list
/// (which reconciles), reconcile, publish.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Effects {
    pub stop: bool,
    pub reregister: bool,
    pub relist: bool,
    /// The relist keeps the watch that follows the schedule (a periodic re-check):
    /// re-creating every agent's watch each minute made etcd catch each new one up
    /// from the listing's revision, holding the lock its writes need meanwhile.
    pub keep_watch: bool,
    pub reconcile: bool,
    pub publish: bool,
    /// Compare every loaded unit's state with etcd's copy and write what differs.
    pub recheck_states: bool,
    /// (events received, events not about this machine's schedule) for the metrics.
    pub received: Option<(usize, usize)>,
    /// etcd unanswered for a whole TTL: the opted-in units may need self-fencing.
    pub self_fence: bool,
}

/// The timing rules of the loop.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Schedule events closer together than this are one batch...
    pub debounce: Duration,
    /// ...but a reconcile is never put off longer than this after the first of them.
    pub max_debounce: Duration,
    /// State hints are collected this long before one query and one write.
    pub state_batch: Duration,
    pub resync: Duration,
}

/// State writes are paced by etcd's own answer time: the next comes no sooner than
/// this many times the last one's round trip after it. An idle etcd answers in
/// milliseconds, so this costs nothing then; an overloaded one gets fewer, larger writes
/// from every agent instead of a write per reconcile round piling up behind the others.
const PUBLISH_PACE: u32 = 4;
/// ...but the pause never exceeds this, so a state shows within seconds.
const MAX_PUBLISH_GAP: Duration = Duration::from_secs(5);

/// `resync` scaled into [0.75, 1.25) by the machine's id: machines started together
/// (a cluster powered on, a benchmark) then do not all re-list and re-check their states
/// at the same moment, a burst of reads and writes that stalled etcd at 5,000 machines.
fn resync_period(me: &MachineId, resync: Duration) -> Duration {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    me.as_str().hash(&mut h);
    let spread = (h.finish() % 1000) as f64 / 1000.0;
    resync.mul_f64(0.75 + spread / 2.0)
}

/// The loop's memory between events: what should run here, which states are stale,
/// and when each timer fires.
#[derive(Debug)]
pub struct LoopState {
    pub me: MachineId,
    pub timing: Timing,
    pub desired: BTreeMap<UnitName, DesiredUnit>,
    /// Texts the placements carried, by hash, not yet checked and cached by the loop.
    pub carried: HashMap<UnitHash, Arc<str>>,
    /// Units whose state must be queried and published.
    pub dirty: BTreeSet<UnitName>,
    /// The listing must be read again before reconciling (new session, compaction).
    pub need_sync: bool,
    /// The revision of the last listing: watch events up to it are already in
    /// `desired` (a kept watch may still deliver them) and are not applied again.
    listed_at: i64,
    /// When to reconcile (end of the debounce window, or a retry).
    pub reconcile_at: Option<Instant>,
    /// Start of the current debounce window, which bounds it.
    debounce_since: Option<Instant>,
    /// When to publish the dirty states.
    pub publish_at: Option<Instant>,
    /// The earliest the next state write may go ([`PUBLISH_PACE`]).
    publish_floor: Option<Instant>,
    pub next_resync: Instant,
}

impl LoopState {
    pub fn new(me: MachineId, timing: Timing, now: Instant) -> Self {
        let next_resync = now + resync_period(&me, timing.resync);
        LoopState {
            me,
            timing,
            desired: BTreeMap::new(),
            carried: HashMap::new(),
            dirty: BTreeSet::new(),
            need_sync: true,
            listed_at: 0,
            reconcile_at: None,
            debounce_since: None,
            publish_at: None,
            publish_floor: None,
            next_resync,
        }
    }

    /// A new registration: re-list first, timers start over.
    pub fn new_session(&mut self, now: Instant) {
        self.need_sync = true;
        self.reconcile_at = None;
        self.debounce_since = None;
        self.next_resync = now + resync_period(&self.me, self.timing.resync);
    }

    /// Asks for a retry at `at` (the earlier of it and any pending wake-up wins).
    pub fn retry_at(&mut self, at: Instant) {
        self.reconcile_at = Some(self.reconcile_at.map_or(at, |t| t.min(at)));
    }

    /// The listing was read and reconciled: nothing is pending but a retry it asks for.
    pub fn synced(&mut self, retry: Option<Instant>) {
        self.need_sync = false;
        self.debounce_since = None;
        self.reconcile_at = retry;
    }

    pub fn on(&mut self, event: Event, now: Instant) -> Effects {
        let mut fx = Effects::default();
        match event {
            Event::Stop => fx.stop = true,
            Event::LeaseLost(_) => fx.reregister = true,
            Event::LeaseOverdue(true) => fx.self_fence = true,
            // Back in touch under the same lease: re-list, so units stopped by the
            // self-fence and still scheduled here run again.
            Event::LeaseOverdue(false) => {
                self.need_sync = true;
                fx.relist = true;
            }
            Event::Schedule(Ok(batch)) => {
                fx.received = Some(self.apply_batch(batch));
                if !self.need_sync {
                    let since = *self.debounce_since.get_or_insert(now);
                    let at = (now + self.timing.debounce).min(since + self.timing.max_debounce);
                    self.reconcile_at = Some(at);
                }
            }
            Event::Schedule(Err(RegistryError::Compacted { .. })) => {
                self.need_sync = true;
                fx.relist = true;
            }
            // The watch backs off and reconnects by itself; units keep running.
            Event::Schedule(Err(_)) => {}
            Event::Hint(unit) => {
                self.dirty.insert(unit);
                let at = self.paced(now + self.timing.state_batch);
                self.publish_at.get_or_insert(at);
            }
            Event::ReconcileDue => {
                self.reconcile_at = None;
                self.debounce_since = None;
                if self.need_sync {
                    fx.relist = true;
                } else {
                    fx.reconcile = true;
                }
            }
            Event::PublishDue => {
                self.publish_at = None;
                fx.publish = true;
            }
            Event::Resync => {
                self.next_resync = now + resync_period(&self.me, self.timing.resync);
                // Only a watch that was following: after a compaction it must go.
                fx.keep_watch = !self.need_sync;
                self.need_sync = true;
                fx.relist = true;
                fx.recheck_states = true;
            }
        }
        fx
    }

    /// `at`, or later if the last state write asks for a pause.
    fn paced(&self, at: Instant) -> Instant {
        self.publish_floor.map_or(at, |floor| at.max(floor))
    }

    /// Whether the states may be written now (after a reconcile); if not, a publish is
    /// set for when they may.
    pub fn may_publish(&mut self, now: Instant) -> bool {
        let at = self.paced(now);
        if at <= now {
            return true;
        }
        self.publish_at = Some(self.publish_at.map_or(at, |t| t.max(at)));
        false
    }

    /// A state write took from `started` to `ended`: the next one waits
    /// [`PUBLISH_PACE`] times as long (at most [`MAX_PUBLISH_GAP`]).
    pub fn published(&mut self, started: Instant, ended: Instant) {
        let floor = ended
            + (ended - started)
                .saturating_mul(PUBLISH_PACE)
                .min(MAX_PUBLISH_GAP);
        self.publish_floor = Some(floor);
        if let Some(t) = self.publish_at {
            self.publish_at = Some(t.max(floor));
        }
    }

    /// A full listing of this machine's placements at `revision` replaces `desired`.
    pub fn listed(&mut self, revision: i64, entries: Vec<ScheduleEntry>) {
        self.listed_at = revision;
        self.desired.clear();
        for e in entries {
            self.place(e);
        }
    }

    fn place(&mut self, e: ScheduleEntry) {
        if let Some(text) = e.text {
            self.carried.insert(e.hash, text);
        }
        self.desired.insert(
            e.unit,
            DesiredUnit {
                hash: e.hash,
                target: e.target,
            },
        );
    }

    /// Applies one watch batch to `desired`; returns (events, foreign events).
    fn apply_batch(&mut self, batch: WatchBatch) -> (usize, usize) {
        let received = batch.events.len();
        let mut foreign = 0;
        for ev in batch.events {
            match ev {
                WatchEvent::Put { revision, .. } | WatchEvent::Delete { revision, .. }
                    if revision <= self.listed_at => {}
                WatchEvent::Put {
                    key: RegistryKey::Schedule(m, _),
                    change: Change::Schedule(e),
                    ..
                } if m == self.me => self.place(e),
                WatchEvent::Delete {
                    key: RegistryKey::Schedule(m, unit),
                    ..
                } if m == self.me => {
                    self.desired.remove(&unit);
                }
                // Reported by the loop when it receives the batch.
                WatchEvent::Corrupt { .. } => {}
                _ => foreign += 1,
            }
        }
        (received, foreign)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_core::{TargetState, UnitFile};
    use fleet_registry::ScheduleEntry;

    fn timing() -> Timing {
        Timing {
            debounce: Duration::from_millis(15),
            max_debounce: Duration::from_millis(100),
            state_batch: Duration::from_millis(50),
            resync: Duration::from_secs(60),
        }
    }

    fn me() -> MachineId {
        MachineId::new("m1").unwrap()
    }

    fn placed(unit: &str) -> Event {
        placed_at(unit, 1)
    }

    fn entry(unit: &str) -> ScheduleEntry {
        let Event::Schedule(Ok(mut batch)) = placed(unit) else {
            unreachable!("placed is a schedule batch")
        };
        match batch.events.pop() {
            Some(WatchEvent::Put {
                change: Change::Schedule(e),
                ..
            }) => e,
            other => unreachable!("{other:?}"),
        }
    }

    fn placed_at(unit: &str, revision: i64) -> Event {
        let hash = UnitFile::parse("[Service]\nExecStart=/bin/true\n")
            .unwrap()
            .hash();
        let unit = UnitName::parse(unit).unwrap();
        let entry = ScheduleEntry {
            machine: me(),
            unit: unit.clone(),
            hash,
            target: TargetState::Launched,
            text: None,
        };
        Event::Schedule(Ok(WatchBatch {
            revision,
            events: vec![WatchEvent::Put {
                revision,
                key: RegistryKey::Schedule(me(), unit),
                change: Change::Schedule(entry),
            }],
        }))
    }

    fn synced(now: Instant) -> LoopState {
        let mut s = LoopState::new(me(), timing(), now);
        s.synced(None);
        s
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_one_reconcile_but_the_debounce_is_bounded() {
        let t0 = Instant::now();
        let mut s = synced(t0);
        let fx = s.on(placed("a.service"), t0);
        assert_eq!(fx.received, Some((1, 0)));
        assert!(!fx.reconcile, "debounced, not at once");
        assert_eq!(s.reconcile_at, Some(t0 + Duration::from_millis(15)));
        // Events keep coming every 10 ms: the window slides, up to the bound.
        for i in 1..30u64 {
            tokio::time::advance(Duration::from_millis(10)).await;
            let fx = s.on(placed(&format!("u{i}.service")), Instant::now());
            assert!(!fx.reconcile);
            assert!(s.reconcile_at.unwrap() <= t0 + Duration::from_millis(100));
        }
        assert_eq!(s.reconcile_at, Some(t0 + Duration::from_millis(100)));
        assert_eq!(s.desired.len(), 30);
        let fx = s.on(Event::ReconcileDue, Instant::now());
        assert!(fx.reconcile && s.reconcile_at.is_none());
        // The next burst opens a new window.
        let now = Instant::now();
        s.on(placed("late.service"), now);
        assert_eq!(s.reconcile_at, Some(now + Duration::from_millis(15)));
    }

    #[tokio::test(start_paused = true)]
    async fn stop_and_lease_loss_end_a_debounce_window() {
        let t0 = Instant::now();
        let mut s = synced(t0);
        s.on(placed("a.service"), t0);
        assert!(s.on(Event::Stop, t0).stop);
        assert!(
            s.on(Event::LeaseLost(RegistryError::Config("x".into())), t0)
                .reregister
        );
        s.new_session(t0);
        assert!(s.reconcile_at.is_none() && s.need_sync);
    }

    #[tokio::test(start_paused = true)]
    async fn hints_are_batched_from_the_first_one() {
        let t0 = Instant::now();
        let mut s = synced(t0);
        s.on(Event::Hint(UnitName::parse("a.service").unwrap()), t0);
        tokio::time::advance(Duration::from_millis(40)).await;
        s.on(
            Event::Hint(UnitName::parse("b.service").unwrap()),
            Instant::now(),
        );
        assert_eq!(s.publish_at, Some(t0 + Duration::from_millis(50)));
        assert_eq!(s.dirty.len(), 2);
        assert!(s.on(Event::PublishDue, Instant::now()).publish);
        assert!(s.publish_at.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn state_writes_are_paced_by_how_long_the_last_one_took() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut s = synced(t0);
        assert!(s.may_publish(t0), "nothing written yet: at once");
        // A quick answer (an idle etcd): the next write may follow almost at once.
        s.published(t0, t0 + ms(2));
        assert!(s.may_publish(t0 + ms(10)));
        assert!(!s.may_publish(t0 + ms(5)));
        assert_eq!(s.publish_at, Some(t0 + ms(10)));
        // A slow answer (an overloaded etcd): reconciles and hints wait for the pause.
        let t1 = t0 + ms(100);
        s.publish_at = None;
        s.published(t1, t1 + ms(500));
        let done = t1 + ms(500);
        assert!(!s.may_publish(done + ms(100)));
        assert_eq!(s.publish_at, Some(done + ms(2000)));
        s.publish_at = None;
        s.on(Event::Hint(UnitName::parse("a.service").unwrap()), done);
        assert_eq!(s.publish_at, Some(done + ms(2000)));
        // A pending publish is pushed past a pause that a later write set.
        s.publish_at = Some(done + ms(100));
        s.published(done, done + ms(300));
        assert_eq!(s.publish_at, Some(done + ms(300) + ms(1200)));
        // The pause is bounded, however long a write took (a timeout).
        let t2 = t0 + Duration::from_secs(60);
        s.publish_at = None;
        s.published(t2, t2 + Duration::from_secs(6));
        assert!(s.may_publish(t2 + Duration::from_secs(11)));
        assert!(!s.may_publish(t2 + Duration::from_secs(10)));
    }

    #[tokio::test(start_paused = true)]
    async fn compaction_and_resync_relist_and_retries_wait_for_the_listing() {
        let t0 = Instant::now();
        let mut s = synced(t0);
        let fx = s.on(
            Event::Schedule(Err(RegistryError::Compacted {
                compact_revision: 3,
            })),
            t0,
        );
        assert!(fx.relist && s.need_sync);
        // A batch while unsynced does not schedule a reconcile of a stale view.
        s.on(placed("a.service"), t0);
        assert!(s.reconcile_at.is_none());
        // A retry while unsynced re-lists instead of reconciling.
        s.retry_at(t0);
        let fx = s.on(Event::ReconcileDue, t0);
        assert!(fx.relist && !fx.reconcile);
        s.synced(None);
        tokio::time::advance(Duration::from_secs(60)).await;
        let fx = s.on(Event::Resync, Instant::now());
        assert!(fx.relist && fx.recheck_states && s.need_sync);
        assert!(fx.keep_watch, "a watch that was following keeps following");
        assert_eq!(
            s.next_resync,
            Instant::now() + resync_period(&me(), Duration::from_secs(60))
        );
    }

    /// A kept watch may still deliver events the listing already holds: they are
    /// not applied again (an old delete after the listing would unload a unit that is
    /// still placed here, and its later put load it again).
    #[test]
    fn events_up_to_the_listing_are_not_applied_again() {
        let mut s = LoopState::new(me(), timing(), Instant::now());
        let gone = |unit: &str, revision: i64| {
            Event::Schedule(Ok(WatchBatch {
                revision,
                events: vec![WatchEvent::Delete {
                    revision,
                    key: RegistryKey::Schedule(me(), UnitName::parse(unit).unwrap()),
                }],
            }))
        };
        s.listed(10, vec![entry("a.service")]);
        let now = Instant::now();
        s.on(gone("a.service", 9), now);
        s.on(placed_at("b.service", 10), now);
        assert_eq!(
            s.desired.keys().map(UnitName::as_str).collect::<Vec<_>>(),
            ["a.service"]
        );
        s.on(gone("a.service", 11), now);
        s.on(placed_at("b.service", 12), now);
        assert_eq!(
            s.desired.keys().map(UnitName::as_str).collect::<Vec<_>>(),
            ["b.service"]
        );
    }

    #[test]
    fn machines_resync_at_spread_out_periods() {
        let minute = Duration::from_secs(60);
        let periods: BTreeSet<Duration> = (0..50)
            .map(|i| resync_period(&MachineId::new(&format!("m{i}")).unwrap(), minute))
            .collect();
        assert!(periods.len() > 40, "50 machines, {} periods", periods.len());
        assert!(
            periods
                .iter()
                .all(|p| (Duration::from_secs(45)..Duration::from_secs(75)).contains(p))
        );
        assert_eq!(
            resync_period(&me(), minute),
            resync_period(&me(), minute),
            "a machine keeps its period"
        );
    }

    #[test]
    fn retries_keep_the_earliest_wake_up() {
        let t0 = Instant::now();
        let mut s = synced(t0);
        s.retry_at(t0 + Duration::from_secs(2));
        s.retry_at(t0 + Duration::from_secs(1));
        s.retry_at(t0 + Duration::from_secs(3));
        assert_eq!(s.reconcile_at, Some(t0 + Duration::from_secs(1)));
    }
}
