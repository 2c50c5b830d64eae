//! The cluster as fleetctl reaches it: through fleetd's API (the default driver) or
//! straight to etcd (`--driver=etcd`, also chosen when the endpoint looks like etcd).
//! Both drivers offer the same operations, so every command works through either.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use fleet_api::{ApiClient, ApiError, ClientConfig, ClientTls, StateChange, Transport};
use fleet_core::{Machine, MachineId, Namespace, Namespaces, TargetState, UnitFile, UnitName};
use fleet_registry::{
    Change, ClusterSnapshot, CreateOutcome, Listed, MachineRecord, Registry, RegistryConfig,
    RegistryError, RegistryKey, RegistryWatch, Secret, SetTargetsOutcome, Skipped, TlsFiles,
    UnitRecord, UnitView, WatchBatch, WatchEvent,
};

use crate::cli::GlobalFlags;
/// Default etcd endpoint when `--driver=etcd` is given without `--endpoint`.
const DEFAULT_ETCD_ENDPOINT: &str = "http://127.0.0.1:2379";
pub const DEFAULT_API_ENDPOINT: &str = "unix:///var/run/fleet.sock";

/// Which backend a command talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    Api,
    Etcd,
}

/// Picks the driver as fleetctl did, plus the auto-detection fleet intended but never
/// shipped: an `http(s)://host:2379` or `:4001` endpoint means etcd.
pub fn choose_driver(driver: &str, endpoint: &str) -> anyhow::Result<Driver> {
    let looks_like_etcd = endpoint.split(',').any(|e| {
        let e = e.trim().trim_end_matches('/');
        (e.starts_with("http://") || e.starts_with("https://"))
            && (e.ends_with(":2379") || e.ends_with(":4001"))
    });
    match driver.to_ascii_lowercase().as_str() {
        "etcd" => Ok(Driver::Etcd),
        "api" if looks_like_etcd => Ok(Driver::Etcd),
        "api" => Ok(Driver::Api),
        _ => bail!("unrecognized driver {driver:?}"),
    }
}

/// Why a cluster operation failed, from either driver; displays as one line.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{}", crate::context::registry_error_line(.0))]
    Registry(#[from] RegistryError),
    #[error("{}", crate::context::api_error_line(.0))]
    Api(#[from] ApiError),
    /// `--namespace` names no namespace, or a name is too long once qualified.
    #[error("{0}")]
    Namespace(String),
}

impl ClientError {
    /// A state watch asked for compacted history: list again, then watch again.
    pub fn is_compacted(&self) -> bool {
        matches!(
            self,
            ClientError::Registry(RegistryError::Compacted { .. })
                | ClientError::Api(ApiError::Compacted)
        )
    }
}

/// One cluster operation of either driver, boxed so that [`Cluster`] is object safe.
pub type Op<'a, T> = Pin<Box<dyn Future<Output = Result<T, ClientError>> + Send + 'a>>;

/// What fleetctl needs from the cluster. Both drivers implement it (etcd itself, and
/// fleetd's API in front of it), so every command works the same through either, and a
/// driver missing an operation does not compile.
pub trait Cluster: Send + Sync {
    fn get_unit<'a>(&'a self, name: &'a UnitName) -> Op<'a, Option<UnitRecord>>;
    /// Many units in few round trips, in the order asked; `None` for missing ones.
    fn get_units<'a>(&'a self, names: &'a [UnitName]) -> Op<'a, Vec<Option<UnitRecord>>>;
    /// Creates the units not yet in the registry, each with its first desired state
    /// `target` written with it (one write for `start` of a new unit, not two).
    fn create_units<'a>(
        &'a self,
        units: &'a [(UnitName, UnitFile)],
        target: TargetState,
    ) -> Op<'a, Vec<CreateOutcome>>;
    fn replace_unit<'a>(&'a self, name: &'a UnitName, file: &'a UnitFile) -> Op<'a, ()>;
    fn set_targets<'a>(
        &'a self,
        targets: &'a [(UnitName, TargetState)],
    ) -> Op<'a, SetTargetsOutcome>;
    /// Destroys units in few round trips; whether each existed, in the order given.
    fn destroy_units<'a>(&'a self, names: &'a [UnitName]) -> Op<'a, Vec<bool>>;
    /// The named units with their states and placement (`None`: missing), without
    /// reading the rest of the cluster, and the revision to watch states after.
    fn unit_views<'a>(&'a self, names: &'a [UnitName]) -> Op<'a, (i64, Vec<Option<UnitView>>)>;
    fn snapshot(&self) -> Op<'_, ClusterSnapshot>;
    /// What `--namespace ns` needs of the snapshot (callers filter it): the etcd driver
    /// reads only the keys the namespace's etcd roles grant (`ns_roles`).
    fn snapshot_in<'a>(&'a self, _ns: &'a Namespace) -> Op<'a, ClusterSnapshot> {
        self.snapshot()
    }
    /// Every machine and reported state, and nothing else (`list-units`): a fraction
    /// of the snapshot's bytes in a large cluster.
    fn states_snapshot(&self) -> Op<'_, ClusterSnapshot>;
    /// What `--namespace ns` needs of `states_snapshot` (callers filter it): the etcd
    /// driver also asks etcd whether this user may read the namespace.
    fn states_snapshot_in<'a>(&'a self, _ns: &'a Namespace) -> Op<'a, ClusterSnapshot> {
        self.states_snapshot()
    }
    /// Live machines and the machine keys left out as undecodable.
    fn list_machines(&self) -> Op<'_, Listed<Machine>>;
    /// Watches unit states from `from_revision` (a `unit_views` revision + 1).
    fn watch_states(&self, from_revision: i64) -> Op<'_, StateWatch>;
    /// The API that answers journal/status for a unit on `machine`.
    fn api_for<'a>(&'a self, machine: &'a MachineId, how: &'a Forwarding) -> Op<'a, ApiClient>;
    /// `fleetctl drain`: true if the machine was not drained before.
    fn drain_machine<'a>(&'a self, machine: &'a MachineId) -> Op<'a, bool>;
    /// `fleetctl undrain`: true if the machine was drained.
    fn undrain_machine<'a>(&'a self, machine: &'a MachineId) -> Op<'a, bool>;
    fn drained_machines(&self) -> Op<'_, BTreeSet<MachineId>>;
    /// The namespaces besides `default` (`fleetctl --namespace`).
    fn namespaces(&self) -> Op<'_, Namespaces>;
}

/// How much of the cluster a read takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reading {
    /// Units, targets, machines, placements and states.
    Whole,
    /// Machines and states only (`list-units`).
    States,
}

impl Reading {
    fn of(self, cluster: &dyn Cluster) -> Op<'_, ClusterSnapshot> {
        match self {
            Reading::Whole => cluster.snapshot(),
            Reading::States => cluster.states_snapshot(),
        }
    }
}

/// The cluster as the connected driver reaches it. Cheap to clone.
pub type ClusterRegistry = Arc<dyn Cluster>;

/// How fleetctl reaches a machine's own fleetd (journal/status with the etcd driver).
#[derive(Clone, Debug)]
pub struct Forwarding {
    tls: Option<ClientTls>,
    timeout: Duration,
}

/// Runs one etcd-driver operation, logging it as `--debug` shows API requests:
/// `etcd <Operation> <endpoints> ok|failed in <duration>`.
fn logged<'a, T: Send + 'a>(
    reg: &'a Registry,
    op: &'static str,
    fut: impl Future<Output = Result<T, RegistryError>> + Send + 'a,
) -> Op<'a, T> {
    Box::pin(async move {
        let started = std::time::Instant::now();
        let result = fut.await;
        let elapsed = started.elapsed();
        match &result {
            Ok(_) => tracing::debug!("etcd {op} {} ok in {elapsed:.1?}", reg.endpoints()),
            Err(e) => tracing::debug!("etcd {op} {} failed in {elapsed:.1?}: {e}", reg.endpoints()),
        }
        Ok(result?)
    })
}

impl Cluster for Registry {
    fn get_unit<'a>(&'a self, name: &'a UnitName) -> Op<'a, Option<UnitRecord>> {
        logged(self, "GetUnit", Registry::get_unit(self, name))
    }
    fn get_units<'a>(&'a self, names: &'a [UnitName]) -> Op<'a, Vec<Option<UnitRecord>>> {
        logged(self, "GetUnits", Registry::get_units(self, names))
    }
    fn create_units<'a>(
        &'a self,
        units: &'a [(UnitName, UnitFile)],
        target: TargetState,
    ) -> Op<'a, Vec<CreateOutcome>> {
        logged(
            self,
            "CreateUnits",
            Registry::create_units_with_target(self, units, target),
        )
    }
    fn replace_unit<'a>(&'a self, name: &'a UnitName, file: &'a UnitFile) -> Op<'a, ()> {
        logged(
            self,
            "ReplaceUnit",
            Registry::replace_unit(self, name, file),
        )
    }
    fn set_targets<'a>(
        &'a self,
        targets: &'a [(UnitName, TargetState)],
    ) -> Op<'a, SetTargetsOutcome> {
        logged(self, "SetTargets", Registry::set_targets(self, targets))
    }
    fn destroy_units<'a>(&'a self, names: &'a [UnitName]) -> Op<'a, Vec<bool>> {
        logged(self, "DestroyUnits", Registry::destroy_units(self, names))
    }
    fn unit_views<'a>(&'a self, names: &'a [UnitName]) -> Op<'a, (i64, Vec<Option<UnitView>>)> {
        logged(self, "GetUnitViews", Registry::unit_views(self, names))
    }
    fn snapshot(&self) -> Op<'_, ClusterSnapshot> {
        logged(self, "Snapshot", Registry::snapshot(self))
    }
    fn snapshot_in<'a>(&'a self, ns: &'a Namespace) -> Op<'a, ClusterSnapshot> {
        if ns.is_default() {
            return Cluster::snapshot(self);
        }
        logged(
            self,
            "NamespaceSnapshot",
            Registry::namespace_snapshot(self, ns),
        )
    }
    fn states_snapshot(&self) -> Op<'_, ClusterSnapshot> {
        logged(self, "StatesSnapshot", Registry::states_snapshot(self))
    }
    fn states_snapshot_in<'a>(&'a self, ns: &'a Namespace) -> Op<'a, ClusterSnapshot> {
        if ns.is_default() {
            return Cluster::states_snapshot(self);
        }
        logged(
            self,
            "NamespaceStatesSnapshot",
            Registry::namespace_states_snapshot(self, ns),
        )
    }
    fn list_machines(&self) -> Op<'_, Listed<Machine>> {
        logged(self, "ListMachines", async move {
            let listed = Registry::list_machines_checked(self).await?;
            Ok(machines_of(listed))
        })
    }
    fn drain_machine<'a>(&'a self, machine: &'a MachineId) -> Op<'a, bool> {
        logged(self, "DrainMachine", Registry::drain_machine(self, machine))
    }
    fn undrain_machine<'a>(&'a self, machine: &'a MachineId) -> Op<'a, bool> {
        logged(
            self,
            "UndrainMachine",
            Registry::undrain_machine(self, machine),
        )
    }
    fn drained_machines(&self) -> Op<'_, BTreeSet<MachineId>> {
        logged(self, "ListDrained", Registry::drained_machines(self))
    }
    fn namespaces(&self) -> Op<'_, Namespaces> {
        logged(self, "ListNamespaces", Registry::namespaces(self))
    }
    fn watch_states(&self, from_revision: i64) -> Op<'_, StateWatch> {
        let watch = self.watch_prefix(self.keys().states(), from_revision);
        Box::pin(async move { Ok(StateWatch::Etcd(Box::new(watch))) })
    }
    /// That machine's fleetd at the address it publishes.
    fn api_for<'a>(&'a self, machine: &'a MachineId, how: &'a Forwarding) -> Op<'a, ApiClient> {
        Box::pin(async move {
            let machines = self.list_machine_records().await?;
            let Some(rec) = machines.into_iter().find(|m| &m.machine.id == machine) else {
                return Err(ApiError::Endpoint(format!(
                    "machine {machine} is not in the cluster any more"
                ))
                .into());
            };
            if rec.api_addr.is_empty() {
                return Err(ApiError::Endpoint(format!(
                    "machine {machine} publishes no API address"
                ))
                .into());
            }
            // Only IP:PORT, over http or https: a record must not send fleetctl to a
            // host name, a path or a local socket.
            let Some((https, addr)) = fleet_api::parse_api_addr(&rec.api_addr) else {
                return Err(ApiError::Endpoint(format!(
                    "machine {machine} publishes an invalid API address {:?} (want IP:PORT)",
                    rec.api_addr
                ))
                .into());
            };
            let scheme = if https { "https" } else { "http" };
            let mut config = ClientConfig::new(format!("{scheme}://{addr}"));
            config.tls = how.tls.clone();
            config.request_timeout = how.timeout;
            config.connect_timeout = how.timeout;
            Ok(ApiClient::connect(&config).await?)
        })
    }
}

impl Cluster for ApiClient {
    fn get_unit<'a>(&'a self, name: &'a UnitName) -> Op<'a, Option<UnitRecord>> {
        Box::pin(async move { Ok(ApiClient::get_unit(self, name).await?) })
    }
    fn get_units<'a>(&'a self, names: &'a [UnitName]) -> Op<'a, Vec<Option<UnitRecord>>> {
        Box::pin(async move { Ok(ApiClient::get_units(self, names).await?) })
    }
    fn create_units<'a>(
        &'a self,
        units: &'a [(UnitName, UnitFile)],
        target: TargetState,
    ) -> Op<'a, Vec<CreateOutcome>> {
        Box::pin(async move { Ok(ApiClient::create_units_with_target(self, units, target).await?) })
    }
    fn replace_unit<'a>(&'a self, name: &'a UnitName, file: &'a UnitFile) -> Op<'a, ()> {
        Box::pin(async move { Ok(ApiClient::replace_unit(self, name, file).await?) })
    }
    fn set_targets<'a>(
        &'a self,
        targets: &'a [(UnitName, TargetState)],
    ) -> Op<'a, SetTargetsOutcome> {
        Box::pin(async move { Ok(ApiClient::set_targets(self, targets).await?) })
    }
    fn destroy_units<'a>(&'a self, names: &'a [UnitName]) -> Op<'a, Vec<bool>> {
        Box::pin(async move { Ok(ApiClient::destroy_units(self, names).await?) })
    }
    fn unit_views<'a>(&'a self, names: &'a [UnitName]) -> Op<'a, (i64, Vec<Option<UnitView>>)> {
        Box::pin(async move { Ok(ApiClient::unit_views(self, names).await?) })
    }
    fn snapshot(&self) -> Op<'_, ClusterSnapshot> {
        Box::pin(async move { Ok(ApiClient::snapshot(self).await?) })
    }
    fn states_snapshot(&self) -> Op<'_, ClusterSnapshot> {
        Box::pin(async move { Ok(ApiClient::states_snapshot(self).await?) })
    }
    fn list_machines(&self) -> Op<'_, Listed<Machine>> {
        Box::pin(async move { Ok(machines_of(ApiClient::list_machines_checked(self).await?)) })
    }
    fn drain_machine<'a>(&'a self, machine: &'a MachineId) -> Op<'a, bool> {
        Box::pin(async move { Ok(ApiClient::drain_machine(self, machine).await?) })
    }
    fn undrain_machine<'a>(&'a self, machine: &'a MachineId) -> Op<'a, bool> {
        Box::pin(async move { Ok(ApiClient::undrain_machine(self, machine).await?) })
    }
    fn drained_machines(&self) -> Op<'_, BTreeSet<MachineId>> {
        Box::pin(async move { Ok(ApiClient::drained_machines(self).await?) })
    }
    fn namespaces(&self) -> Op<'_, Namespaces> {
        Box::pin(async move { Ok(ApiClient::namespaces(self).await?) })
    }
    fn watch_states(&self, from_revision: i64) -> Op<'_, StateWatch> {
        Box::pin(async move {
            let w = ApiClient::watch_states(self, from_revision).await?;
            Ok(StateWatch::Api(Box::new(w)))
        })
    }
    /// The fleetd fleetctl talks to: it forwards to the machine running the unit.
    fn api_for<'a>(&'a self, _machine: &'a MachineId, _how: &'a Forwarding) -> Op<'a, ApiClient> {
        Box::pin(async move { Ok(self.clone()) })
    }
}

fn machines_of(listed: Listed<MachineRecord>) -> Listed<Machine> {
    Listed {
        items: listed.items.into_iter().map(|r| r.machine).collect(),
        skipped: listed.skipped,
    }
}

/// A watch on unit states (`machine-state/`) through either driver, yielding the
/// registry's batches.
pub enum StateWatch {
    Etcd(Box<RegistryWatch>),
    Api(Box<fleet_api::StateWatch>),
    /// Only one namespace's units, under their names there (`--namespace`).
    Namespaced {
        inner: Box<StateWatch>,
        known: Arc<Namespaces>,
        ns: Namespace,
    },
}

impl StateWatch {
    pub async fn next(&mut self) -> Result<WatchBatch, ClientError> {
        match self {
            StateWatch::Namespaced { inner, known, ns } => {
                let batch = Box::pin(inner.next()).await?;
                Ok(crate::namespace::filter_batch(batch, known, ns))
            }
            StateWatch::Etcd(w) => Ok(w.next().await?),
            StateWatch::Api(w) => {
                let (revision, changes) = w.next().await?;
                let events = changes
                    .into_iter()
                    .map(|c| match c {
                        StateChange::Put(s) => WatchEvent::Put {
                            revision,
                            key: RegistryKey::State(s.unit.clone(), s.machine.clone()),
                            change: Change::State(s),
                        },
                        StateChange::Deleted(unit, machine) => WatchEvent::Delete {
                            revision,
                            key: RegistryKey::State(unit, machine),
                        },
                    })
                    .collect();
                Ok(WatchBatch { revision, events })
            }
        }
    }
}

/// A connected client. Cheap to clone (both drivers share one connection).
#[derive(Clone)]
pub struct Client {
    /// Named as before the API existed, so commands read `client.registry.<op>`.
    pub registry: ClusterRegistry,
    /// How to reach a machine's fleetd directly (journal/status with the etcd driver).
    forwarding: Forwarding,
    /// Keys reads left out as undecodable, already warned about (once each).
    skipped: Arc<Mutex<BTreeSet<String>>>,
    /// The whole cluster, every namespace (`--all-namespaces`, `fleetctl namespace`).
    pub all: ClusterRegistry,
    /// The namespace `registry` shows (`--namespace`).
    pub namespace: Namespace,
}

impl Client {
    /// The cluster at one revision; keys left out as undecodable are named on stderr.
    pub async fn snapshot(&self) -> Result<ClusterSnapshot, ClientError> {
        self.read(Reading::Whole).await
    }

    /// [`Client::snapshot`], or only as much of it as `reading` asks for.
    pub async fn read(&self, reading: Reading) -> Result<ClusterSnapshot, ClientError> {
        let snap = reading.of(&*self.registry).await?;
        self.warn_skipped(&snap.skipped);
        Ok(snap)
    }

    /// [`Client::read`] of every namespace, with the namespaces to tell them apart.
    pub async fn read_all(
        &self,
        reading: Reading,
    ) -> Result<(ClusterSnapshot, Namespaces), ClientError> {
        let known = self.all.namespaces().await?;
        let snap = reading.of(&*self.all).await?;
        self.warn_skipped(&snap.skipped);
        Ok((snap, known))
    }

    /// The name `name` of this namespace has on machines (journal, status, ssh).
    pub fn stored_name(&self, name: &UnitName) -> Result<UnitName, ClientError> {
        self.namespace
            .qualify(name)
            .map_err(|e| ClientError::Namespace(e.to_string()))
    }

    /// Live machines; records left out as undecodable are named on stderr.
    pub async fn list_machines(&self) -> Result<Vec<Machine>, ClientError> {
        let listed = self.registry.list_machines().await?;
        self.warn_skipped(&listed.skipped);
        Ok(listed.items)
    }

    /// One stderr line per skipped key, the first time it is seen.
    fn warn_skipped(&self, skipped: &[Skipped]) {
        let mut seen = self.skipped.lock().unwrap_or_else(|e| e.into_inner());
        for s in skipped {
            if seen.insert(s.key.clone()) {
                crate::context::err(format!("WARNING: {s}"));
            }
        }
    }

    /// Whether some read left records out (fleetctl then exits with
    /// [`crate::context::EXIT_SKIPPED`] instead of 0).
    pub fn skipped_any(&self) -> bool {
        !self
            .skipped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    fn new(
        all: ClusterRegistry,
        forwarding: Forwarding,
        global: &GlobalFlags,
    ) -> anyhow::Result<Client> {
        let namespace = Namespace::parse(global.namespace.trim())?;
        Ok(Client {
            registry: Arc::new(crate::namespace::Namespaced::new(
                all.clone(),
                namespace.clone(),
            )),
            forwarding,
            skipped: Arc::default(),
            all,
            namespace,
        })
    }

    pub async fn connect(global: &GlobalFlags) -> anyhow::Result<Client> {
        if !(global.request_timeout > 0.0 && global.request_timeout.is_finite()) {
            bail!(
                "--request-timeout must be a positive number of seconds, got {}",
                global.request_timeout
            );
        }
        let timeout = Duration::from_secs_f64(global.request_timeout);
        let tls = client_tls(global);
        match choose_driver(&global.driver, &global.endpoint)? {
            Driver::Api => {
                let mut endpoints = global
                    .endpoint
                    .split(',')
                    .map(str::trim)
                    .filter(|e| !e.is_empty());
                let Some(endpoint) = endpoints.next() else {
                    bail!("no fleet API endpoint given");
                };
                if endpoints.next().is_some() {
                    tracing::warn!(
                        "multiple endpoints provided but only the first ({endpoint}) is used"
                    );
                }
                let mut config = ClientConfig::new(endpoint);
                config.tls = tls.clone();
                config.request_timeout = timeout;
                config.connect_timeout = timeout;
                // The API confines a registered person to the namespace named here.
                let ns = global.namespace.trim();
                config.namespace = (ns != fleet_core::Namespace::DEFAULT).then(|| ns.to_string());
                if let Some(tunnel) = &global.tunnel {
                    config.transport =
                        Transport::Command(tunnel_command(global, tunnel, endpoint)?);
                    config.connect_timeout = Duration::from_secs_f64(global.ssh_timeout.max(0.1));
                }
                let api = ApiClient::connect(&config).await?;
                Ok(Client::new(
                    Arc::new(api),
                    Forwarding { tls, timeout },
                    global,
                )?)
            }
            Driver::Etcd => {
                let registry = etcd_registry(global, timeout).await?;
                Ok(Client::new(
                    Arc::new(registry),
                    Forwarding { tls, timeout },
                    global,
                )?)
            }
        }
    }

    /// The API that answers journal/status for a unit on `machine`: with the API driver
    /// the fleetd fleetctl talks to (it forwards); with the etcd driver, that machine's
    /// fleetd at its published address.
    pub async fn api_for(&self, machine: &MachineId) -> Result<ApiClient, ClientError> {
        self.registry.api_for(machine, &self.forwarding).await
    }
}

/// The registry in etcd, as the etcd driver reaches it (`--endpoint`, TLS, credentials).
pub async fn etcd_registry(global: &GlobalFlags, timeout: Duration) -> anyhow::Result<Registry> {
    let endpoint = if global.endpoint == DEFAULT_API_ENDPOINT {
        DEFAULT_ETCD_ENDPOINT
    } else {
        global.endpoint.as_str()
    };
    let endpoints: Vec<String> = endpoint
        .split(',')
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty())
        .collect();
    if endpoints.is_empty() {
        bail!("no etcd endpoint given");
    }
    let mut config = RegistryConfig::new(endpoints[0].clone())
        .with_prefix(global.etcd_key_prefix.clone())
        .with_timeout(timeout);
    config.endpoints = endpoints;
    config.tls = etcd_tls(global);
    (config.username, config.password) = etcd_credentials(global)?;
    let registry = Registry::connect(config)
        .await
        .map_err(|e| anyhow::anyhow!(crate::context::registry_error_line(&e)))?;
    Ok(registry)
}

/// `--ca-file/--cert-file/--key-file` as the API client's TLS.
fn client_tls(global: &GlobalFlags) -> Option<ClientTls> {
    if global.ca_file.is_none() && global.cert_file.is_none() && global.key_file.is_none() {
        return None;
    }
    Some(ClientTls {
        ca: global.ca_file.as_ref().map(PathBuf::from),
        cert: global.cert_file.as_ref().map(PathBuf::from),
        key: global.key_file.as_ref().map(PathBuf::from),
        domain: None,
    })
}

/// `--ca-file/--cert-file/--key-file` as the etcd driver's TLS.
fn etcd_tls(global: &GlobalFlags) -> Option<TlsFiles> {
    client_tls(global).map(|t| TlsFiles {
        ca_file: t.ca,
        cert_file: t.cert,
        key_file: t.key,
    })
}

/// The etcd user and password from `--etcd-username` and `--etcd-password` or
/// `--etcd-password-file` (or their `FLEETCTL_*` variables); both or neither.
fn etcd_credentials(global: &GlobalFlags) -> anyhow::Result<(Option<String>, Option<Secret>)> {
    let password = match (&global.etcd_password, &global.etcd_password_file) {
        (Some(_), Some(_)) => {
            bail!("give the etcd password with --etcd-password or --etcd-password-file, not both")
        }
        (Some(p), None) => Some(p.clone()),
        (None, Some(file)) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read --etcd-password-file {file}"))?;
            let line = text.lines().next().unwrap_or_default();
            if line.is_empty() {
                bail!("--etcd-password-file {file} is empty");
            }
            Some(Secret::from(line))
        }
        (None, None) => None,
    };
    let username = global.etcd_username.clone().filter(|u| !u.is_empty());
    match (username, password) {
        (Some(u), Some(p)) => Ok((Some(u), Some(p))),
        (None, None) => Ok((None, None)),
        (Some(_), None) => {
            bail!(
                "--etcd-username needs a password (--etcd-password-file or FLEETCTL_ETCD_PASSWORD)"
            )
        }
        (None, Some(_)) => bail!("an etcd password was given without --etcd-username"),
    }
}

/// The `ssh` program fleetctl runs (`FLEETCTL_SSH_COMMAND` overrides it, e.g. for a
/// wrapper script).
pub fn ssh_program() -> String {
    std::env::var("FLEETCTL_SSH_COMMAND")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "ssh".to_string())
}

/// Splits `host[:port]` (port 22 by default; `[v6]:port` accepted).
pub fn host_port(addr: &str) -> anyhow::Result<(String, u16)> {
    let addr = addr.trim();
    if let Some(rest) = addr.strip_prefix('[') {
        let Some((host, port)) = rest.split_once(']') else {
            bail!("invalid address {addr:?}");
        };
        let port = match port.strip_prefix(':') {
            Some(p) => p
                .parse()
                .with_context(|| format!("invalid port in {addr:?}"))?,
            None => 22,
        };
        return Ok((host.to_string(), port));
    }
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => Ok((
            host.to_string(),
            port.parse()
                .with_context(|| format!("invalid port in {addr:?}"))?,
        )),
        _ if addr.is_empty() => bail!("empty address"),
        _ => Ok((addr.to_string(), 22)),
    }
}

/// ssh options shared by tunnels and `fleetctl ssh`: user, port, host key policy and
/// connect timeout, from fleet's flags.
pub fn ssh_options(global: &GlobalFlags, port: u16) -> Vec<String> {
    let mut args = vec![
        "-l".to_string(),
        global.ssh_username.clone(),
        "-p".to_string(),
        port.to_string(),
        "-o".to_string(),
        format!(
            "ConnectTimeout={}",
            global.ssh_timeout.ceil().max(1.0) as u64
        ),
    ];
    if global.strict_host_key_checking {
        args.push("-o".into());
        args.push("StrictHostKeyChecking=ask".into());
        args.push("-o".into());
        args.push(format!(
            "UserKnownHostsFile={}",
            expand_home(&global.known_hosts_file)
        ));
    } else {
        args.extend(
            [
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
            ]
            .map(String::from),
        );
    }
    args
}

fn expand_home(path: &str) -> String {
    match (path.strip_prefix("~/"), std::env::var("HOME")) {
        (Some(rest), Ok(home)) => format!("{home}/{rest}"),
        _ => path.to_string(),
    }
}

/// The command whose stdin/stdout carry the API through `--tunnel`: for a unix socket,
/// `fleetctl fd-forward SOCKET` on the tunnel host (fleet's way); for TCP, ssh's own
/// forwarding (`-W HOST:PORT`).
fn tunnel_command(
    global: &GlobalFlags,
    tunnel: &str,
    endpoint: &str,
) -> anyhow::Result<Vec<String>> {
    let (host, port) = host_port(tunnel)?;
    let mut argv = vec![ssh_program()];
    argv.extend(ssh_options(global, port));
    match fleet_api::client::parse_endpoint(endpoint)? {
        // `--` before the host; the remote shell gets the socket path single-quoted.
        fleet_api::client::Target::Unix(path) => {
            argv.push("--".into());
            argv.push(host);
            argv.extend([
                "fleetctl".to_string(),
                "fd-forward".to_string(),
                shell_quote(&path.to_string_lossy()),
            ]);
        }
        fleet_api::client::Target::Http { uri, .. } => {
            let hostport = uri.split_once("://").map_or(uri.as_str(), |(_, r)| r);
            let hostport = hostport.split('/').next().unwrap_or(hostport);
            argv.push("-W".into());
            argv.push(hostport.to_string());
            argv.push("--".into());
            argv.push(host);
        }
    }
    Ok(argv)
}

/// `s` as one word for a POSIX shell (ssh hands the remote command to one).
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_words_are_quoted() {
        assert_eq!(shell_quote("/var/run/fleet.sock"), "'/var/run/fleet.sock'");
        assert_eq!(shell_quote("/tmp/a b;x'y"), r"'/tmp/a b;x'\''y'");
    }

    #[test]
    fn driver_selection() {
        assert_eq!(
            choose_driver("API", "unix:///var/run/fleet.sock").unwrap(),
            Driver::Api
        );
        assert_eq!(
            choose_driver("API", "http://10.0.0.1:2379").unwrap(),
            Driver::Etcd
        );
        assert_eq!(
            choose_driver("api", "http://a:4001,http://b:4001").unwrap(),
            Driver::Etcd
        );
        assert_eq!(
            choose_driver("etcd", "http://10.0.0.1:12379").unwrap(),
            Driver::Etcd
        );
        assert_eq!(
            choose_driver("x", "").unwrap_err().to_string(),
            "unrecognized driver \"x\""
        );
    }
}
