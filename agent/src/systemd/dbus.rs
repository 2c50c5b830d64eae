//! The real [`UnitManager`]: systemd's Manager over D-Bus (zbus), as fleet's agent drives it.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use fleet_core::{SystemdState, UnitHash, UnitName};
use tokio::sync::mpsc;
use tracing::Instrument;

use super::call_counts::{CallCounts, Counters, bump};
use super::proxy::{ManagerProxy, UnitRow};
use super::signals::{self, KnownUnits};
use super::unit_files::{UnitsDirectory, has_install_section};
use super::{StateChanged, SystemdError, UnitManager};

/// How long any single D-Bus call may take before it is reported as failed; systemd
/// answers in milliseconds unless it is wedged, and a wedged call must not wedge the agent.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Where fleet writes unit files unless configured otherwise.
pub const DEFAULT_UNITS_DIRECTORY: &str = "/run/fleet/units";

/// How to reach systemd and where fleet keeps its unit files.
#[derive(Clone, Debug)]
pub struct SystemdOptions {
    /// Drive the user manager on the session bus (fleet's `systemd_user`) instead of the
    /// system manager on the system bus.
    pub user: bool,
    /// Directory for the unit files fleet writes and links (created 0755).
    pub units_directory: PathBuf,
    /// Explicit bus address (tests run a private systemd on a private bus); `None` uses
    /// the system or session bus.
    pub bus_address: Option<String>,
    /// Bound on every D-Bus call.
    pub call_timeout: Duration,
}

impl SystemdOptions {
    /// Options with the default call timeout and the standard bus for `user`.
    pub fn new(user: bool, units_directory: impl Into<PathBuf>) -> Self {
        SystemdOptions {
            user,
            units_directory: units_directory.into(),
            bus_address: None,
            call_timeout: DEFAULT_CALL_TIMEOUT,
        }
    }
}

/// fleet's systemd driver: one D-Bus connection to the system (or user) manager.
pub struct SystemdManager {
    conn: zbus::Connection,
    manager: ManagerProxy<'static>,
    units: UnitsDirectory,
    known: KnownUnits,
    counters: Counters,
    timeout: Duration,
    /// Set once systemd said it lacks ListUnitsByNames (systemd < 230): use ListUnits.
    no_list_by_names: AtomicBool,
    /// Bounds the calls in flight: the system bus refuses a connection more than 128
    /// pending replies (`LimitsExceeded`), and a batch of hundreds of stops or resets
    /// would otherwise fail wholesale and be retried wholesale.
    inflight: tokio::sync::Semaphore,
    /// Driving the user manager: the fence's `systemctl` needs `--user`.
    user: bool,
}

/// Calls in flight at most, below dbus-daemon's 128 pending replies per connection.
const MAX_INFLIGHT_CALLS: usize = 64;

/// A D-Bus error's name, e.g. `org.freedesktop.systemd1.NoSuchUnit`.
fn error_name(e: &zbus::Error) -> Option<String> {
    match e {
        zbus::Error::MethodError(name, _, _) => Some(name.as_str().to_owned()),
        zbus::Error::FDO(e) => match &**e {
            zbus::fdo::Error::UnknownMethod(_) => {
                Some("org.freedesktop.DBus.Error.UnknownMethod".to_owned())
            }
            _ => None,
        },
        _ => None,
    }
}

/// What failed, for error messages: the unit, or the first few of a batch.
fn describe(units: &[&str]) -> String {
    const SHOWN: usize = 3;
    match units.len() {
        0 => "(no units)".to_owned(),
        n if n <= SHOWN => units.join(", "),
        n => format!("{} and {} more", units[..SHOWN].join(", "), n - SHOWN),
    }
}

/// A failed call: names the operation, and the unit(s) when there are any.
#[derive(Debug)]
struct CallError {
    name: Option<String>,
    message: String,
}

impl CallError {
    fn into_error(self, op: &'static str, units: &[&str]) -> SystemdError {
        if units.is_empty() {
            SystemdError::Manager {
                op,
                message: self.message,
            }
        } else {
            SystemdError::Unit {
                op,
                unit: describe(units),
                message: self.message,
            }
        }
    }

    fn is(&self, dbus_name: &str) -> bool {
        self.name.as_deref() == Some(dbus_name)
    }
}

const NO_SUCH_UNIT: &str = "org.freedesktop.systemd1.NoSuchUnit";
const UNKNOWN_METHOD: &str = "org.freedesktop.DBus.Error.UnknownMethod";

impl SystemdManager {
    /// Connects to the manager, subscribes to its signals (`Subscribe()`, once per
    /// connection, or systemd emits none) and creates the units directory.
    pub async fn connect(options: SystemdOptions) -> Result<Self, SystemdError> {
        let units = UnitsDirectory::create(options.units_directory.clone())?;
        let known: HashSet<UnitName> = units.names()?.into_iter().collect();
        let builder = match (&options.bus_address, options.user) {
            (Some(address), _) => zbus::connection::Builder::address(address.as_str()),
            (None, true) => zbus::connection::Builder::session(),
            (None, false) => zbus::connection::Builder::system(),
        };
        let bus = options.bus_address.clone().unwrap_or_else(|| {
            if options.user {
                "session bus"
            } else {
                "system bus"
            }
            .to_owned()
        });
        let conn = tokio::time::timeout(
            options.call_timeout,
            builder.method_timeout(options.call_timeout).build(),
        )
        .await
        .map_err(|_| {
            SystemdError::Connect(format!("{bus}: timed out after {:?}", options.call_timeout))
        })?
        .map_err(|e| SystemdError::Connect(format!("{bus}: {e}")))?;
        let manager = tokio::time::timeout(
            options.call_timeout,
            ManagerProxy::builder(&conn)
                .cache_properties(zbus::proxy::CacheProperties::No)
                .build(),
        )
        .await
        .map_err(|_| SystemdError::Connect(format!("{bus}: proxy: timed out")))?
        .map_err(|e| SystemdError::Connect(format!("{bus}: proxy: {e}")))?;
        let this = SystemdManager {
            conn,
            manager,
            units,
            known: Arc::new(Mutex::new(known)),
            counters: Counters::default(),
            timeout: options.call_timeout,
            no_list_by_names: AtomicBool::new(false),
            inflight: tokio::sync::Semaphore::new(MAX_INFLIGHT_CALLS),
            user: options.user,
        };
        this.call("Subscribe", &[], this.manager.subscribe())
            .await
            .map_err(|e| SystemdError::Connect(format!("{bus}: Subscribe: {}", e.message)))?;
        tracing::debug!(bus = %bus, units_directory = %this.units.path().display(), "connected to systemd");
        Ok(this)
    }

    /// Calls made so far, by kind.
    pub fn call_counts(&self) -> CallCounts {
        self.counters.snapshot()
    }

    /// Runs one D-Bus call under the timeout, in a span naming the operation and units.
    async fn call<T>(
        &self,
        op: &'static str,
        units: &[&str],
        fut: impl Future<Output = zbus::Result<T>>,
    ) -> Result<T, CallError> {
        let span = tracing::debug_span!("systemd", op, unit = %describe(units));
        async {
            // Waiting for a slot is not the call's time: the timeout starts after.
            let _slot = self.inflight.acquire().await.ok();
            match tokio::time::timeout(self.timeout, fleet_metrics::dbus_call(op, fut)).await {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "call failed");
                    Err(CallError {
                        name: error_name(&e),
                        message: e.to_string(),
                    })
                }
                Err(_) => {
                    tracing::warn!(timeout = ?self.timeout, "call timed out");
                    Err(CallError {
                        name: None,
                        message: format!("timed out after {:?}", self.timeout),
                    })
                }
            }
        }
        .instrument(span)
        .await
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashSet<UnitName>> {
        self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runtime-disables (and unlinks) units in one call. systemd refuses the whole batch
    /// if one unit's link is already gone (a retried unload), so then each unit is
    /// disabled alone and "no such unit" means already done.
    async fn disable(&self, names: &[&str]) -> Result<(), SystemdError> {
        bump(&self.counters.disable_unit_files);
        let batch = self
            .call(
                "DisableUnitFiles",
                names,
                self.manager.disable_unit_files(names, true),
            )
            .await;
        match batch {
            Ok(_) => Ok(()),
            Err(e) if e.is(NO_SUCH_UNIT) => {
                for name in names {
                    bump(&self.counters.disable_unit_files);
                    match self
                        .call(
                            "DisableUnitFiles",
                            &[name],
                            self.manager.disable_unit_files(&[name], true),
                        )
                        .await
                    {
                        Err(e) if !e.is(NO_SUCH_UNIT) => {
                            return Err(e.into_error("DisableUnitFiles", &[name]));
                        }
                        _ => {}
                    }
                }
                Ok(())
            }
            Err(e) => Err(e.into_error("DisableUnitFiles", names)),
        }
    }

    /// ListUnits filtered to `names` (systemd < 230); units it does not list are not loaded.
    async fn states_from_list_units(
        &self,
        names: &[&str],
    ) -> Result<HashMap<String, UnitRow>, SystemdError> {
        bump(&self.counters.list_units);
        let rows = self
            .call("ListUnits", &[], self.manager.list_units())
            .await
            .map_err(|e| e.into_error("ListUnits", &[]))?;
        let wanted: HashSet<&str> = names.iter().copied().collect();
        Ok(rows
            .into_iter()
            .filter(|row| wanted.contains(row.0.as_str()))
            .map(|row| (row.0.clone(), row))
            .collect())
    }
}

/// `systemctl` where systemd installs it; a bare name (resolved by systemd ≥ 239) if
/// neither exists.
fn systemctl_path() -> String {
    ["/usr/bin/systemctl", "/bin/systemctl"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("systemctl")
        .to_owned()
}

fn not_found() -> SystemdState {
    SystemdState {
        load: "not-found".to_owned(),
        active: "inactive".to_owned(),
        sub: "dead".to_owned(),
    }
}

impl UnitManager for SystemdManager {
    async fn write_units(&self, units: &[(UnitName, String)]) -> Result<(), SystemdError> {
        if units.is_empty() {
            return Ok(());
        }
        let mut paths = Vec::with_capacity(units.len());
        for (unit, text) in units {
            paths.push(self.units.write(unit, text)?.display().to_string());
        }
        self.known().extend(units.iter().map(|(u, _)| u.clone()));
        let names: Vec<&str> = units.iter().map(|(u, _)| u.as_str()).collect();
        let path_refs: Vec<&str> = paths.iter().map(String::as_str).collect();
        bump(&self.counters.link_unit_files);
        self.call(
            "LinkUnitFiles",
            &names,
            self.manager.link_unit_files(&path_refs, true, true),
        )
        .await
        .map_err(|e| e.into_error("LinkUnitFiles", &names))?;

        let install: Vec<&UnitName> = units
            .iter()
            .filter(|(_, text)| has_install_section(text))
            .map(|(u, _)| u)
            .collect();
        if install.is_empty() {
            return Ok(());
        }
        let install_names: Vec<&str> = install.iter().map(|u| u.as_str()).collect();
        bump(&self.counters.enable_unit_files);
        let enabled = self
            .call(
                "EnableUnitFiles",
                &install_names,
                self.manager.enable_unit_files(&install_names, true, true),
            )
            .await;
        if let Err(e) = enabled {
            // fleet: a unit that cannot be enabled is not loaded at all (its file is removed).
            for unit in &install {
                self.units.remove(unit)?;
            }
            let mut known = self.known();
            for unit in &install {
                known.remove(*unit);
            }
            return Err(e.into_error("EnableUnitFiles", &install_names));
        }
        Ok(())
    }

    async fn remove_units(&self, units: &[UnitName]) -> Result<(), SystemdError> {
        if units.is_empty() {
            return Ok(());
        }
        let names: Vec<&str> = units.iter().map(UnitName::as_str).collect();
        self.disable(&names).await?;
        let resets = names.iter().map(|name| async move {
            bump(&self.counters.reset_failed_unit);
            match self
                .call(
                    "ResetFailedUnit",
                    &[name],
                    self.manager.reset_failed_unit(name),
                )
                .await
            {
                Err(e) if !e.is(NO_SUCH_UNIT) => Err(e.into_error("ResetFailedUnit", &[name])),
                _ => Ok(()),
            }
        });
        for result in futures_util::future::join_all(resets).await {
            result?;
        }
        for unit in units {
            self.units.remove(unit)?;
        }
        let mut known = self.known();
        for unit in units {
            known.remove(unit);
        }
        Ok(())
    }

    async fn reload(&self) -> Result<(), SystemdError> {
        bump(&self.counters.reload);
        self.call("Reload", &[], self.manager.reload())
            .await
            .map_err(|e| e.into_error("Reload", &[]))
    }

    async fn start(&self, unit: &UnitName) -> Result<(), SystemdError> {
        bump(&self.counters.start_unit);
        let name = unit.as_str();
        self.call(
            "StartUnit",
            &[name],
            self.manager.start_unit(name, "replace"),
        )
        .await
        .map(drop)
        .map_err(|e| e.into_error("StartUnit", &[name]))
    }

    async fn stop(&self, unit: &UnitName) -> Result<(), SystemdError> {
        bump(&self.counters.stop_unit);
        let name = unit.as_str();
        self.call("StopUnit", &[name], self.manager.stop_unit(name, "replace"))
            .await
            .map(drop)
            .map_err(|e| e.into_error("StopUnit", &[name]))
    }

    async fn states(
        &self,
        units: &[UnitName],
    ) -> Result<Vec<(UnitName, SystemdState)>, SystemdError> {
        if units.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<&str> = units.iter().map(UnitName::as_str).collect();
        let mut rows: Option<HashMap<String, UnitRow>> = None;
        if !self.no_list_by_names.load(Ordering::Relaxed) {
            bump(&self.counters.list_units_by_names);
            match self
                .call(
                    "ListUnitsByNames",
                    &names,
                    self.manager.list_units_by_names(&names),
                )
                .await
            {
                Ok(list) => rows = Some(list.into_iter().map(|r| (r.0.clone(), r)).collect()),
                Err(e) if e.is(UNKNOWN_METHOD) => {
                    tracing::info!("systemd lacks ListUnitsByNames; falling back to ListUnits");
                    self.no_list_by_names.store(true, Ordering::Relaxed);
                }
                Err(e) => return Err(e.into_error("ListUnitsByNames", &names)),
            }
        }
        let rows = match rows {
            Some(rows) => rows,
            None => self.states_from_list_units(&names).await?,
        };
        Ok(units
            .iter()
            .map(|unit| {
                let state = rows
                    .get(unit.as_str())
                    .map_or_else(not_found, |row| SystemdState {
                        load: row.2.clone(),
                        active: row.3.clone(),
                        sub: row.4.clone(),
                    });
                (unit.clone(), state)
            })
            .collect())
    }

    async fn installed_units(&self) -> Result<Vec<(UnitName, UnitHash)>, SystemdError> {
        self.units.scan()
    }

    async fn arm_fence(
        &self,
        fence: &str,
        units: &[UnitName],
        after: Duration,
    ) -> Result<(), SystemdError> {
        if units.is_empty() {
            return Ok(());
        }
        // A unique name: a timer being stopped may linger a moment under its old name.
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros());
        let timer = format!("{fence}-{stamp}.timer");
        let service = format!("{fence}-{stamp}.service");
        let mut argv = vec!["systemctl".to_owned()];
        if self.user {
            argv.push("--user".to_owned());
        }
        argv.extend(["--no-block", "stop", "--"].map(str::to_owned));
        argv.extend(units.iter().map(|u| u.as_str().to_owned()));
        let exec = vec![(systemctl_path(), argv, false)];
        let description = format!(
            "fleet: stop this machine's {} unit(s) unless fleetd comes back",
            units.len()
        );
        let usec = u64::try_from(after.as_micros()).unwrap_or(u64::MAX);
        let timer_props: Vec<(&str, zbus::Variant<'_>)> = vec![
            ("Description", description.as_str().into()),
            ("RemainAfterElapse", false.into()),
            // Timers coalesce within a minute by default: the fence must be on time.
            ("AccuracyUSec", 100_000u64.into()),
            (
                "TimersMonotonic",
                vec![("OnActiveSec".to_owned(), usec)].into(),
            ),
        ];
        let service_props: Vec<(&str, zbus::Variant<'_>)> = vec![
            ("Description", description.as_str().into()),
            ("Type", "oneshot".into()),
            ("ExecStart", exec.into()),
        ];
        let aux = [(service.as_str(), service_props)];
        self.call(
            "StartTransientUnit",
            &[timer.as_str()],
            self.manager
                .start_transient_unit(&timer, "replace", &timer_props, &aux),
        )
        .await
        .map(drop)
        .map_err(|e| e.into_error("StartTransientUnit", &[timer.as_str()]))?;
        tracing::info!(timer = %timer, units = units.len(), after = ?after, "armed this machine's fence");
        Ok(())
    }

    async fn disarm_fences(&self, fence: &str) -> Result<usize, SystemdError> {
        let rows = self
            .call("ListUnits", &[], self.manager.list_units())
            .await
            .map_err(|e| e.into_error("ListUnits", &[]))?;
        let prefix = format!("{fence}-");
        let timers: Vec<String> = rows
            .into_iter()
            .map(|r| r.0)
            .filter(|n| n.starts_with(&prefix) && n.ends_with(".timer"))
            .collect();
        for timer in &timers {
            match self
                .call(
                    "StopUnit",
                    &[timer.as_str()],
                    self.manager.stop_unit(timer, "replace"),
                )
                .await
            {
                Err(e) if !e.is(NO_SUCH_UNIT) => {
                    return Err(e.into_error("StopUnit", &[timer.as_str()]));
                }
                _ => tracing::info!(timer = %timer, "disarmed the fence a previous fleetd armed"),
            }
        }
        Ok(timers.len())
    }

    async fn subscribe(&self) -> Result<mpsc::Receiver<StateChanged>, SystemdError> {
        signals::spawn(&self.conn, &self.manager, self.known.clone(), self.timeout).await
    }
}
