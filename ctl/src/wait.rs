//! Blocking until units reach a state (fleet behaviour §2.6), with fleet's output lines,
//! `--block-attempts` as the bound (one attempt = 2 s; 0 waits indefinitely) and a
//! progress line on a terminal.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use fleet_core::machine::machine_legend;
use fleet_core::{MachineId, TargetState, UnitName};
use fleet_registry::{Change, RegistryKey, UnitStateRecord, WatchBatch, WatchEvent};

use crate::cli::BlockFlags;
use crate::client::{ClusterRegistry, StateWatch};
use crate::context::{Ctx, err, fail, out};

/// How long one of fleet's "attempts" lasts.
const ATTEMPT: Duration = Duration::from_secs(2);
/// How long `start` waits for systemd to report a launched unit active.
const ACTIVE_WINDOW: Duration = Duration::from_secs(10);
/// How often the progress line refreshes while no change arrives.
const TICK: Duration = Duration::from_millis(500);

/// What a wait is for, so failures can be worded as fleet words them per command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Load,
    Start,
    Stop,
    Unload,
    /// Waits like `Start` (launched, then systemd active); printed as `restart`.
    Restart,
}

impl Verb {
    /// The verb as fleet prints it (`Triggered unit X start`).
    pub fn word(self) -> &'static str {
        match self {
            Verb::Load => "load",
            Verb::Start => "start",
            Verb::Stop => "stop",
            Verb::Unload => "unload",
            Verb::Restart => "restart",
        }
    }
}

/// Sets the desired state of `set_only`, `globals` and `wait` to `target` in one batch,
/// announces the global units (which never block, as in fleet) and waits for the units
/// in `wait`.
#[allow(clippy::too_many_arguments)]
pub async fn apply_targets(
    ctx: &mut Ctx,
    target: TargetState,
    verb: Verb,
    set_only: &[UnitName],
    globals: &[UnitName],
    wait: &[UnitName],
    block: &BlockFlags,
    error_prefix: &str,
) -> anyhow::Result<()> {
    let changes: Vec<(UnitName, TargetState)> = set_only
        .iter()
        .chain(globals)
        .chain(wait)
        .map(|n| (n.clone(), target))
        .collect();
    if !changes.is_empty() {
        let client = ctx.client().await?;
        client
            .registry
            .set_targets(&changes)
            .await
            .map_err(|e| fail(format!("{error_prefix}: {e}")))?;
    }
    for name in globals {
        out(format!("Triggered global unit {name} {}", verb.word()))?;
    }
    wait_for_units(ctx, wait, target, verb, block).await
}

/// Whether the records agents published for a unit show it at `target`.
fn reached(target: TargetState, records: &[&UnitStateRecord]) -> Option<Option<usize>> {
    match target {
        TargetState::Launched => records
            .iter()
            .position(|r| r.state == TargetState::Launched)
            .map(Some),
        TargetState::Loaded => {
            if records.iter().any(|r| r.state == TargetState::Launched) {
                None
            } else {
                records
                    .iter()
                    .position(|r| r.state == TargetState::Loaded)
                    .map(Some)
            }
        }
        TargetState::Inactive => records.is_empty().then_some(None),
    }
}

/// Waits until every unit reports `target`, printing `Unit X <state> [on M]` as each
/// does. With `--no-block`, prints `Triggered unit X <verb>` instead and returns.
/// `start` additionally waits for systemd to report the unit active (failing fast if
/// systemd reports it failed).
pub async fn wait_for_units(
    ctx: &mut Ctx,
    units: &[UnitName],
    target: TargetState,
    verb: Verb,
    block: &BlockFlags,
) -> anyhow::Result<()> {
    if units.is_empty() {
        return Ok(());
    }
    if block.no_block {
        for unit in units {
            out(format!("Triggered unit {unit} {}", verb.word()))?;
        }
        return Ok(());
    }
    let deadline = (block.block_attempts > 0).then(|| {
        Instant::now() + ATTEMPT * u32::try_from(block.block_attempts).unwrap_or(u32::MAX)
    });
    let started = Instant::now();
    let progress = Progress::new(ctx.tty, target);
    let client = ctx.client().await?.clone();
    let registry = &client.registry;
    let wanted: BTreeSet<&UnitName> = units.iter().collect();
    let mut pending: Vec<UnitName> = units.to_vec();
    // Units that reached `launched` and wait for systemd to say active (start only).
    let mut activating: Vec<(UnitName, Instant)> = Vec::new();
    let mut ips: HashMap<String, String> = HashMap::new();
    let (mut records, mut watch) = list_and_watch(registry, &wanted).await?;
    loop {
        let mut still = Vec::new();
        for unit in pending.drain(..) {
            let recs: Vec<&UnitStateRecord> = records
                .get(&unit)
                .map(|m| m.values().collect())
                .unwrap_or_default();
            match reached(target, &recs) {
                None => still.push(unit),
                Some(record) => {
                    let legend = match record.map(|i| recs[i]) {
                        Some(r) => {
                            if !ips.contains_key(r.machine.as_str()) {
                                ips = machine_ips(&client).await;
                            }
                            let ip = ips.get(r.machine.as_str()).map(String::as_str);
                            format!(" on {}", machine_legend(&r.machine, ip, false))
                        }
                        None => String::new(),
                    };
                    progress.suspend(|| out(format!("Unit {unit} {target}{legend}")))?;
                    if matches!(verb, Verb::Start | Verb::Restart) {
                        activating.push((unit, Instant::now()));
                    }
                }
            }
        }
        pending = still;
        let systemd_of = |unit: &UnitName| records.get(unit).into_iter().flat_map(|m| m.values());
        activating.retain(|(unit, _)| {
            !systemd_of(unit)
                .any(|r| r.state == TargetState::Launched && r.systemd.active == "active")
        });
        // A launched unit that systemd does not report active within the window (a
        // oneshot that already exited, a unit stuck in ExecStartPre) ends the wait, as
        // fleet's (2 s) window did, instead of blocking forever.
        if let Some((unit, _)) = activating
            .iter()
            .find(|(_, at)| at.elapsed() >= ACTIVE_WINDOW)
        {
            progress.finish();
            let seen = systemd_of(unit)
                .next()
                .map(|r| format!("{}/{}", r.systemd.active, r.systemd.sub))
                .unwrap_or_else(|| "no state".into());
            err(format!(
                "Error waiting for units: Failed to find an active unit {unit} within {ACTIVE_WINDOW:?}: systemd reports {seen}"
            ));
            return Err(fail(format!(
                "Error waiting for systemd unit states, err: unit {unit} not active within {ACTIVE_WINDOW:?} (systemd reports {seen}); see fleetctl status {unit}"
            )));
        }
        if let Some((unit, machine)) = activating.iter().find_map(|(unit, _)| {
            systemd_of(unit)
                .find(|r| r.systemd.active == "failed")
                .map(|r| (unit.clone(), r.machine.clone()))
        }) {
            progress.finish();
            err(format!(
                "Error waiting for units: unit {unit} failed to start on {machine} (systemd reports it failed)"
            ));
            return Err(fail(format!(
                "Error waiting for systemd unit states, err: unit {unit} failed; see fleetctl status {unit}"
            )));
        }
        if pending.is_empty() && activating.is_empty() {
            progress.finish();
            return Ok(());
        }
        progress.update(
            &pending,
            activating.iter().map(|(u, _)| u),
            started.elapsed(),
        );
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            progress.finish();
            let unit = pending
                .first()
                .or(activating.first().map(|(u, _)| u))
                .map(ToString::to_string)
                .unwrap_or_default();
            let waited = Duration::from_secs(started.elapsed().as_secs());
            if pending.is_empty() {
                err(format!(
                    "Error waiting for units: Failed to find an active unit {unit} within {waited:?}"
                ));
                return Err(fail(format!(
                    "Error waiting for systemd unit states, err: timed out after {waited:?} waiting for unit {unit} to be active"
                )));
            }
            err(format!(
                "Error waiting for units: timed out waiting for unit {unit} to report state {target}"
            ));
            let names = pending
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" ");
            // fleet's line, with what was waited for instead of a bare "timed out".
            let why = format!("timed out after {waited:?} waiting for [{names}] to be {target}");
            return Err(fail(match verb {
                Verb::Load | Verb::Start | Verb::Restart => {
                    format!("Error waiting for unit states, exit status: {why}")
                }
                Verb::Stop => format!("Failed to stop units [{names}]. err: {why}"),
                Verb::Unload => format!("Failed to unload units [{names}]. err: {why}"),
            }));
        }
        if let Err(e) = next_change(registry, &wanted, &mut records, &mut watch, deadline).await {
            progress.finish();
            return Err(e);
        }
    }
}

/// Waits for the next state change of the `wanted` units and applies it to `records`
/// (re-reading them if the watch was compacted), or returns early to refresh the
/// progress line and check `deadline`.
async fn next_change(
    registry: &ClusterRegistry,
    wanted: &BTreeSet<&UnitName>,
    records: &mut Records,
    watch: &mut StateWatch,
    deadline: Option<Instant>,
) -> anyhow::Result<()> {
    let tick = deadline.map_or(TICK, |d| {
        d.saturating_duration_since(Instant::now()).min(TICK)
    });
    tokio::select! {
        batch = watch.next() => match batch {
            Ok(batch) => apply(records, wanted, batch),
            Err(e) if e.is_compacted() => (*records, *watch) = list_and_watch(registry, wanted).await?,
            Err(e) => return Err(fail(format!("Error waiting for units: {e}"))),
        },
        _ = tokio::time::sleep(tick) => {}
    }
    Ok(())
}

/// `fleetctl drain`: waits until `machine` reports none of `units` any more, printing
/// where each went (`Unit X moved off M` and, once another machine reports it, `now
/// <state> on N`). Units the engine could not place elsewhere are named at the end; the
/// wait does not block on them (the drain already holds). Bounded by
/// `--block-attempts` like the other waits.
pub async fn wait_for_drain(
    ctx: &mut Ctx,
    machine: &MachineId,
    units: &[UnitName],
    block: &BlockFlags,
) -> anyhow::Result<()> {
    if units.is_empty() || block.no_block {
        return Ok(());
    }
    let deadline = (block.block_attempts > 0).then(|| {
        Instant::now() + ATTEMPT * u32::try_from(block.block_attempts).unwrap_or(u32::MAX)
    });
    let started = Instant::now();
    let progress = Progress::new(ctx.tty, TargetState::Inactive);
    let client = ctx.client().await?.clone();
    let registry = &client.registry;
    let wanted: BTreeSet<&UnitName> = units.iter().collect();
    let (mut records, mut watch) = list_and_watch(registry, &wanted).await?;
    let mut ips: HashMap<String, String> = HashMap::new();
    let mut pending: Vec<UnitName> = units.to_vec();
    // Left the machine, not yet reported anywhere else: said once they are.
    let mut moving: Vec<UnitName> = Vec::new();
    loop {
        let elsewhere = |records: &Records, unit: &UnitName| {
            records
                .get(unit)
                .and_then(|m| m.values().find(|r| &r.machine != machine))
                .map(|r| (r.state, r.machine.clone()))
        };
        let mut lines = Vec::new();
        pending.retain(|unit| {
            let still = records.get(unit).is_some_and(|m| m.contains_key(machine));
            if !still {
                lines.push(format!("Unit {unit} moved off {machine}"));
                moving.push(unit.clone());
            }
            still
        });
        let mut arrived = Vec::new();
        moving.retain(|unit| match elsewhere(&records, unit) {
            Some(at) => {
                arrived.push((unit.clone(), at));
                false
            }
            None => true,
        });
        for (unit, (state, m)) in arrived {
            if !ips.contains_key(m.as_str()) {
                ips = machine_ips(&client).await;
            }
            let ip = ips.get(m.as_str()).map(String::as_str);
            lines.push(format!(
                "Unit {unit} {state} on {}",
                machine_legend(&m, ip, false)
            ));
        }
        for line in lines {
            progress.suspend(|| out(&line))?;
        }
        if pending.is_empty() {
            progress.finish();
            if !moving.is_empty() {
                let names: Vec<String> = moving.iter().map(ToString::to_string).collect();
                err(format!(
                    "{} unit(s) not running on another machine yet: {} (see fleetctl list-unit-files --fields=unit,dstate,state,reason)",
                    moving.len(),
                    names.join(" ")
                ));
            }
            return Ok(());
        }
        progress.update(&pending, std::iter::empty(), started.elapsed());
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            progress.finish();
            let names: Vec<String> = pending.iter().map(ToString::to_string).collect();
            return Err(fail(format!(
                "Machine {machine} is drained, but after {:?} it still runs [{}]; they move once the engine and the agent get to them",
                Duration::from_secs(started.elapsed().as_secs()),
                names.join(" ")
            )));
        }
        if let Err(e) = next_change(registry, &wanted, &mut records, &mut watch, deadline).await {
            progress.finish();
            return Err(e);
        }
    }
}

/// State records of the units being waited for, by unit and machine.
type Records = HashMap<UnitName, BTreeMap<MachineId, UnitStateRecord>>;

/// Reads the current records of the units waited for (only theirs, not every unit's)
/// and watches unit states from right after that read, so no change in between is missed.
async fn list_and_watch(
    registry: &ClusterRegistry,
    wanted: &BTreeSet<&UnitName>,
) -> anyhow::Result<(Records, StateWatch)> {
    let names: Vec<UnitName> = wanted.iter().map(|n| (*n).clone()).collect();
    let (revision, views) = registry
        .unit_views(&names)
        .await
        .map_err(|e| fail(format!("Error waiting for units: {e}")))?;
    let mut records = Records::new();
    for s in views.into_iter().flatten().flat_map(|v| v.states) {
        records
            .entry(s.unit.clone())
            .or_default()
            .insert(s.machine.clone(), s);
    }
    let watch = registry
        .watch_states(revision + 1)
        .await
        .map_err(|e| fail(format!("Error waiting for units: {e}")))?;
    Ok((records, watch))
}

fn apply(records: &mut Records, wanted: &BTreeSet<&UnitName>, batch: WatchBatch) {
    for event in batch.events {
        match event {
            WatchEvent::Put {
                change: Change::State(s),
                ..
            } if wanted.contains(&s.unit) => {
                records
                    .entry(s.unit.clone())
                    .or_default()
                    .insert(s.machine.clone(), s);
            }
            WatchEvent::Delete {
                key: RegistryKey::State(unit, machine),
                ..
            } => {
                if let Some(m) = records.get_mut(&unit) {
                    m.remove(&machine);
                }
            }
            _ => {}
        }
    }
}

/// Machine id → public IP, for the ` on <id>.../<ip>` suffix.
async fn machine_ips(client: &crate::client::Client) -> HashMap<String, String> {
    match client.list_machines().await {
        Ok(machines) => machines
            .into_iter()
            .filter_map(|m| Some((m.id.to_string(), m.public_ip?.to_string())))
            .collect(),
        Err(_) => HashMap::new(),
    }
}

/// A one-line spinner on stdout while waiting, only when stdout is a terminal: which
/// units are still pending, and for how long. Piped output gets nothing extra.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    target: TargetState,
}

/// How many pending unit names the progress line shows before `+N more`.
const SHOWN: usize = 4;

impl Progress {
    fn new(tty: bool, target: TargetState) -> Progress {
        let bar = tty.then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_draw_target(indicatif::ProgressDrawTarget::stdout());
            bar
        });
        Progress { bar, target }
    }

    fn update<'a>(
        &self,
        pending: &[UnitName],
        activating: impl Iterator<Item = &'a UnitName>,
        elapsed: Duration,
    ) {
        let Some(bar) = &self.bar else {
            return;
        };
        let list = |names: &mut dyn Iterator<Item = &UnitName>, count: usize| {
            let mut text = names
                .take(SHOWN)
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" ");
            if count > SHOWN {
                text.push_str(&format!(" +{} more", count - SHOWN));
            }
            text
        };
        let activating: Vec<&UnitName> = activating.collect();
        let mut parts = Vec::new();
        if !pending.is_empty() {
            parts.push(format!(
                "{} unit(s) not yet {}: {}",
                pending.len(),
                self.target,
                list(&mut pending.iter(), pending.len())
            ));
        }
        if !activating.is_empty() {
            parts.push(format!(
                "{} unit(s) not yet active in systemd: {}",
                activating.len(),
                list(&mut activating.iter().copied(), activating.len())
            ));
        }
        bar.set_message(format!(
            "waiting {}s; {}",
            elapsed.as_secs(),
            parts.join("; ")
        ));
        bar.tick();
    }

    fn suspend<T>(&self, f: impl FnOnce() -> T) -> T {
        match &self.bar {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
