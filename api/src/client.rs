//! The typed API client: fleetctl's default driver and fleetd's forwarder. It speaks
//! to a unix socket, TCP (optionally TLS/mTLS), or through a command's stdin/stdout
//! (an SSH tunnel), and returns core types.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use fleet_core::{Machine, MachineId, TargetState, UnitFile, UnitName};
use fleet_registry::{
    ClusterSnapshot, CreateOutcome, Listed, MachineRecord, SetTargetsOutcome, UnitRecord,
    UnitStateRecord, UnitView,
};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::convert::{self};
use crate::pb::{self, fleet_client::FleetClient};
use crate::{ApiError, ClientTls};

/// How bytes reach the endpoint.
#[derive(Clone, Debug, Default)]
pub enum Transport {
    /// Connect to the endpoint's socket or address.
    #[default]
    Direct,
    /// Run this command (e.g. `ssh HOST fleetctl fd-forward SOCKET`, or `ssh -W IP:PORT
    /// HOST`) and speak to the API over its stdin/stdout.
    Command(Vec<String>),
}

/// Where and how to reach a fleet API.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// `unix:///path`, `file:///path`, `http://host:port` or `https://host:port`.
    pub endpoint: String,
    /// TLS for `https://` endpoints.
    pub tls: Option<ClientTls>,
    pub transport: Transport,
    pub connect_timeout: Duration,
    /// Bound on each request, and on each page of a listing.
    pub request_timeout: Duration,
    /// The namespace every call acts in (`fleet-namespace`); `None`: the default one.
    pub namespace: Option<String>,
}

/// Sends the caller's namespace with every call (`crate::scope`).
#[derive(Clone)]
pub struct NamespaceHeader(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for NamespaceHeader {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut()
                .insert(crate::scope::NAMESPACE_HEADER, v.clone());
        }
        Ok(req)
    }
}

impl ClientConfig {
    pub fn new(endpoint: impl Into<String>) -> ClientConfig {
        ClientConfig {
            endpoint: endpoint.into(),
            tls: None,
            transport: Transport::Direct,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(3),
            namespace: None,
        }
    }
}

/// A parsed endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Unix(PathBuf),
    Http { uri: String, tls: bool },
}

/// Parses an endpoint as fleetctl did, with its messages for the common mistakes.
pub fn parse_endpoint(endpoint: &str) -> Result<Target, ApiError> {
    let Some((scheme, rest)) = endpoint.split_once("://") else {
        return Err(ApiError::Endpoint("URL scheme undefined".into()));
    };
    match scheme {
        "unix" | "file" => {
            let (host, path) = match rest.find('/') {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            if !host.is_empty() || path.is_empty() {
                let host = if host.is_empty() { rest } else { host };
                return Err(ApiError::Endpoint(format!(
                    "unable to connect to host {host:?} with scheme {scheme:?}"
                )));
            }
            Ok(Target::Unix(PathBuf::from(path)))
        }
        "http" | "https" => {
            if rest.is_empty() {
                return Err(ApiError::Endpoint(format!(
                    "no host in endpoint {endpoint:?}"
                )));
            }
            Ok(Target::Http {
                uri: endpoint.trim_end_matches('/').to_string(),
                tls: scheme == "https",
            })
        }
        other => Err(ApiError::Endpoint(format!(
            "unsupported URL scheme {other:?} in endpoint {endpoint:?}"
        ))),
    }
}

/// A connected API client. Cheap to clone (one HTTP/2 connection).
#[derive(Clone)]
pub struct ApiClient {
    inner: FleetClient<InterceptedService<Channel, NamespaceHeader>>,
    endpoint: String,
    timeout: Duration,
    /// What the tunnel command (ssh) last said on stderr, to explain a dead tunnel.
    tunnel_log: Option<Arc<Mutex<TunnelLog>>>,
}

/// The tunnel command's stderr as far as read: its last line, and whether it ended.
#[derive(Debug, Default)]
struct TunnelLog {
    last_line: String,
    closed: bool,
}

/// One piece of a journal or status stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutputPiece {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    /// The remote command's exit status; the stream ends after it.
    Exit(i32),
}

/// A journal or status stream. Dropping it closes the stream and stops the command.
pub struct Output {
    stream: tonic::Streaming<pb::OutputChunk>,
}

impl Output {
    /// The next piece, or `None` when the server closed the stream.
    pub async fn next(&mut self) -> Result<Option<OutputPiece>, ApiError> {
        use pb::output_chunk::Chunk;
        loop {
            let Some(chunk) = self.stream.message().await? else {
                return Ok(None);
            };
            return Ok(Some(match chunk.chunk {
                Some(Chunk::Stdout(b)) => OutputPiece::Stdout(b),
                Some(Chunk::Stderr(b)) => OutputPiece::Stderr(b),
                Some(Chunk::ExitCode(c)) => OutputPiece::Exit(c),
                None => continue,
            }));
        }
    }
}

/// A change to `state/`, as a state watch reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateChange {
    Put(UnitStateRecord),
    Deleted(UnitName, MachineId),
}

/// A watch on unit states from a revision on.
pub struct StateWatch {
    stream: tonic::Streaming<pb::StateEvents>,
}

impl StateWatch {
    /// The next batch and the revision it brings the caller to. [`ApiError::Compacted`]
    /// means: list again and watch from the new revision.
    pub async fn next(&mut self) -> Result<(i64, Vec<StateChange>), ApiError> {
        use pb::state_event::Event;
        let msg = match self.stream.message().await {
            Ok(Some(msg)) => msg,
            Ok(None) => {
                return Err(ApiError::Status(tonic::Status::unavailable(
                    "fleet API closed the state watch",
                )));
            }
            Err(s) if s.code() == tonic::Code::OutOfRange => return Err(ApiError::Compacted),
            Err(s) => return Err(s.into()),
        };
        let mut changes = Vec::with_capacity(msg.events.len());
        for e in &msg.events {
            match &e.event {
                Some(Event::Put(s)) => changes.push(StateChange::Put(convert::state_from_wire(s)?)),
                Some(Event::Deleted(k)) => changes.push(StateChange::Deleted(
                    convert::unit_name(&k.unit)?,
                    convert::machine_id(&k.machine)?,
                )),
                None => {}
            }
        }
        Ok((msg.revision, changes))
    }
}

impl ApiClient {
    /// Connects (bounded by `connect_timeout`); fails if nothing answers.
    pub async fn connect(config: &ClientConfig) -> Result<ApiClient, ApiError> {
        let target = parse_endpoint(&config.endpoint)?;
        let connect_err = |e: &(dyn std::error::Error + 'static)| ApiError::Connect {
            endpoint: config.endpoint.clone(),
            reason: connect_reason(e),
        };
        let base = match &target {
            Target::Unix(_) => "http://localhost".to_string(),
            Target::Http { uri, .. } => uri.clone(),
        };
        let mut endpoint = Endpoint::from_shared(base.clone())
            .map_err(|e| ApiError::Endpoint(format!("invalid endpoint {base:?}: {e}")))?
            .connect_timeout(config.connect_timeout)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true);
        if let Target::Http { tls: true, .. } = target {
            let tls = config.tls.clone().unwrap_or_default();
            endpoint = endpoint.tls_config(tls.config()?)?;
        }
        let tunnel_log = matches!(config.transport, Transport::Command(_))
            .then(|| Arc::new(Mutex::new(TunnelLog::default())));
        let connecting = async {
            match (&config.transport, &target) {
                (Transport::Command(argv), _) => {
                    let argv = argv.clone();
                    let log = tunnel_log.clone().unwrap_or_default();
                    endpoint
                        .connect_with_connector(tower::service_fn(move |_: Uri| {
                            let argv = argv.clone();
                            let log = log.clone();
                            async move { spawn_stdio(&argv, log).map(TokioIo::new) }
                        }))
                        .await
                }
                (Transport::Direct, Target::Unix(path)) => {
                    let path = path.clone();
                    endpoint
                        .connect_with_connector(tower::service_fn(move |_: Uri| {
                            let path = path.clone();
                            async move {
                                tokio::net::UnixStream::connect(path)
                                    .await
                                    .map(TokioIo::new)
                            }
                        }))
                        .await
                }
                (Transport::Direct, Target::Http { .. }) => endpoint.connect().await,
            }
        };
        // The connect timeout bounds TCP setup; this also bounds TLS and tunnels.
        let started = std::time::Instant::now();
        let channel = tokio::time::timeout(config.connect_timeout * 2, connecting)
            .await
            .map_err(|_| ApiError::Timeout {
                endpoint: config.endpoint.clone(),
                timeout: config.connect_timeout,
            })
            .and_then(|r| r.map_err(|e| connect_err(&e)));
        let elapsed = started.elapsed();
        match &channel {
            Ok(_) => tracing::debug!("API connect {} ok in {elapsed:.1?}", config.endpoint),
            Err(e) => tracing::debug!("API connect failed in {elapsed:.1?}: {e}"),
        }
        let channel = channel?;
        Ok(ApiClient {
            inner: FleetClient::with_interceptor(
                channel,
                NamespaceHeader(config.namespace.as_deref().and_then(|n| n.parse().ok())),
            ),
            endpoint: config.endpoint.clone(),
            timeout: config.request_timeout,
            tunnel_log,
        })
    }

    /// A failed call's error; when the tunnel broke, what ssh said instead of tonic's
    /// bare "transport error".
    async fn call_error(&self, status: tonic::Status) -> ApiError {
        let Some(log) = &self.tunnel_log else {
            // The connection broke or could not be re-established: say where and why.
            if status.code() == tonic::Code::Unavailable
                && let Some(source) = std::error::Error::source(&status)
            {
                return ApiError::Connect {
                    endpoint: self.endpoint.clone(),
                    reason: connect_reason(source),
                };
            }
            return status.into();
        };
        if !matches!(
            status.code(),
            tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Internal
        ) {
            return status.into();
        }
        // ssh writes its reason, then exits: give its stderr a moment to be read.
        for _ in 0..100 {
            if log.lock().map(|l| l.closed).unwrap_or(true) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let line = log.lock().map(|l| l.last_line.clone()).unwrap_or_default();
        if line.is_empty() {
            return status.into();
        }
        ApiError::Connect {
            endpoint: self.endpoint.clone(),
            reason: format!("tunnel failed: {line}"),
        }
    }

    /// One call, bounded by the request timeout; logged at debug level (method,
    /// endpoint, duration, result) for `fleetctl --debug`.
    async fn bounded<T>(
        &self,
        method: &'static str,
        fut: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, ApiError> {
        let started = std::time::Instant::now();
        let result = match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(status)) => Err(self.call_error(status).await),
            Err(_) => Err(ApiError::Timeout {
                endpoint: self.endpoint.clone(),
                timeout: self.timeout,
            }),
        };
        let elapsed = started.elapsed();
        match &result {
            Ok(_) => tracing::debug!("API {method} {} ok in {elapsed:.1?}", self.endpoint),
            Err(e) => tracing::debug!(
                "API {method} {} failed in {elapsed:.1?}: {e}",
                self.endpoint
            ),
        }
        result
    }

    async fn next_page<T>(&self, stream: &mut tonic::Streaming<T>) -> Result<Option<T>, ApiError> {
        match tokio::time::timeout(self.timeout, stream.message()).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(status)) => Err(self.call_error(status).await),
            Err(_) => Err(ApiError::Timeout {
                endpoint: self.endpoint.clone(),
                timeout: self.timeout,
            }),
        }
    }

    pub async fn get_unit(&self, name: &UnitName) -> Result<Option<UnitRecord>, ApiError> {
        let mut c = self.inner.clone();
        let resp = self
            .bounded(
                "GetUnit",
                c.get_unit(pb::GetUnitRequest {
                    name: name.to_string(),
                }),
            )
            .await?;
        Ok(resp
            .unit
            .as_ref()
            .map(convert::unit_from_wire)
            .transpose()?)
    }

    /// Several units in `names` order (`None`: no such unit): one round trip, or more
    /// when the server answers a prefix to keep each message below the size limit.
    pub async fn get_units(&self, names: &[UnitName]) -> Result<Vec<Option<UnitRecord>>, ApiError> {
        let mut out = Vec::with_capacity(names.len());
        let mut rest = names;
        while !rest.is_empty() {
            let mut c = self.inner.clone();
            let resp = self
                .bounded(
                    "GetUnits",
                    c.get_units(pb::GetUnitsRequest {
                        names: rest.iter().map(ToString::to_string).collect(),
                    }),
                )
                .await?;
            // An empty answer would never finish; more answers than asked is wrong.
            if resp.units.is_empty() || resp.units.len() > rest.len() {
                return Err(count_mismatch(rest.len(), resp.units.len()));
            }
            for u in &resp.units {
                out.push(u.unit.as_ref().map(convert::unit_from_wire).transpose()?);
            }
            rest = &rest[resp.units.len()..];
        }
        Ok(out)
    }

    pub async fn create_unit(
        &self,
        name: &UnitName,
        file: &UnitFile,
    ) -> Result<CreateOutcome, ApiError> {
        let mut c = self.inner.clone();
        let resp = self
            .bounded(
                "CreateUnit",
                c.create_unit(pb::CreateUnitRequest {
                    name: name.to_string(),
                    options: convert::options_to_wire(file),
                }),
            )
            .await?;
        outcome_from_wire(&resp)
    }

    /// Several create-only submissions; outcomes in input order. One round trip, or
    /// several when the units would not fit in one message (each unit is created or
    /// reported on its own either way, so the split changes nothing the caller sees).
    pub async fn create_units(
        &self,
        units: &[(UnitName, UnitFile)],
    ) -> Result<Vec<CreateOutcome>, ApiError> {
        self.create_units_with_target(units, TargetState::Inactive)
            .await
    }

    /// [`ApiClient::create_units`] with the first desired state of the units created
    /// (`fleetctl start` of new units): written with each unit in one call; a server
    /// that predates this sets no target, and the targets of the units created are then
    /// set here. Units that existed keep their targets.
    pub async fn create_units_with_target(
        &self,
        units: &[(UnitName, UnitFile)],
        target: TargetState,
    ) -> Result<Vec<CreateOutcome>, ApiError> {
        use prost::Message as _;
        let wire: Vec<pb::CreateUnitRequest> = units
            .iter()
            .map(|(n, f)| pb::CreateUnitRequest {
                name: n.to_string(),
                options: convert::options_to_wire(f),
            })
            .collect();
        let mut batches: Vec<Vec<pb::CreateUnitRequest>> = Vec::new();
        let mut bytes = 0;
        for w in wire {
            let len = w.encoded_len() + 6;
            match batches.last_mut() {
                Some(batch) if bytes + len <= crate::server::PAGE_BYTES => batch.push(w),
                _ => {
                    batches.push(vec![w]);
                    bytes = 0;
                }
            }
            bytes += len;
        }
        let mut outcomes = Vec::with_capacity(units.len());
        let mut written = true;
        for batch in batches {
            let asked = batch.len();
            let mut c = self.inner.clone();
            let resp = self
                .bounded(
                    "CreateUnits",
                    c.create_units(pb::CreateUnitsRequest {
                        units: batch,
                        target: convert::target_to_wire(target),
                    }),
                )
                .await?;
            if resp.outcomes.len() != asked {
                return Err(count_mismatch(asked, resp.outcomes.len()));
            }
            written &= resp.target_written;
            for o in &resp.outcomes {
                outcomes.push(outcome_from_wire(o)?);
            }
        }
        if !written && target != TargetState::Inactive {
            let created: Vec<(UnitName, TargetState)> = units
                .iter()
                .zip(&outcomes)
                .filter(|(_, o)| matches!(o, CreateOutcome::Created))
                .map(|((n, _), _)| (n.clone(), target))
                .collect();
            if !created.is_empty() {
                self.set_targets(&created).await?;
            }
        }
        Ok(outcomes)
    }

    pub async fn replace_unit(&self, name: &UnitName, file: &UnitFile) -> Result<(), ApiError> {
        let mut c = self.inner.clone();
        self.bounded(
            "ReplaceUnit",
            c.replace_unit(pb::ReplaceUnitRequest {
                name: name.to_string(),
                options: convert::options_to_wire(file),
            }),
        )
        .await?;
        Ok(())
    }

    pub async fn set_targets(
        &self,
        targets: &[(UnitName, TargetState)],
    ) -> Result<SetTargetsOutcome, ApiError> {
        let mut c = self.inner.clone();
        let resp = self
            .bounded(
                "SetTargets",
                c.set_targets(pb::SetTargetsRequest {
                    targets: targets
                        .iter()
                        .map(|(n, t)| pb::set_targets_request::Target {
                            name: n.to_string(),
                            target: convert::target_to_wire(*t),
                        })
                        .collect(),
                }),
            )
            .await?;
        Ok(SetTargetsOutcome {
            missing: resp
                .missing
                .iter()
                .map(|n| convert::unit_name(n))
                .collect::<Result<_, _>>()?,
            txns: None,
        })
    }

    pub async fn destroy_unit(&self, name: &UnitName) -> Result<bool, ApiError> {
        let mut c = self.inner.clone();
        let resp = self
            .bounded(
                "DestroyUnit",
                c.destroy_unit(pb::DestroyUnitRequest {
                    name: name.to_string(),
                }),
            )
            .await?;
        Ok(resp.existed)
    }

    /// Drains `machine` (`fleetctl drain`); true if it was not drained before.
    pub async fn drain_machine(&self, machine: &MachineId) -> Result<bool, ApiError> {
        let mut c = self.inner.clone();
        let req = pb::DrainMachineRequest {
            machine: machine.to_string(),
        };
        let resp = self.bounded("DrainMachine", c.drain_machine(req)).await?;
        Ok(resp.changed)
    }

    /// Ends a drain (`fleetctl undrain`); true if `machine` was drained.
    pub async fn undrain_machine(&self, machine: &MachineId) -> Result<bool, ApiError> {
        let mut c = self.inner.clone();
        let req = pb::DrainMachineRequest {
            machine: machine.to_string(),
        };
        let resp = self
            .bounded("UndrainMachine", c.undrain_machine(req))
            .await?;
        Ok(resp.changed)
    }

    /// Every drained machine id.
    pub async fn drained_machines(&self) -> Result<BTreeSet<MachineId>, ApiError> {
        let mut c = self.inner.clone();
        let resp = self
            .bounded("ListDrained", c.list_drained(pb::ListDrainedRequest {}))
            .await?;
        resp.machines
            .iter()
            .map(|m| convert::machine_id(m).map_err(ApiError::from))
            .collect()
    }

    /// Namespaces besides `default`; a fleetd without namespaces (an older one) has none.
    pub async fn namespaces(&self) -> Result<fleet_core::Namespaces, ApiError> {
        let mut c = self.inner.clone();
        let resp = match self
            .bounded(
                "ListNamespaces",
                c.list_namespaces(pb::ListNamespacesRequest {}),
            )
            .await
        {
            Ok(r) => r,
            Err(ApiError::Status(s)) if s.code() == tonic::Code::Unimplemented => {
                return Ok(fleet_core::Namespaces::default());
            }
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for n in resp.namespaces {
            let ns = fleet_core::Namespace::parse(&n.name)
                .map_err(|e| ApiError::Config(format!("fleet API sent a bad namespace: {e}")))?;
            let sel = fleet_core::Selector::parse(&n.selector)
                .map_err(|e| ApiError::Config(format!("fleet API sent a bad namespace: {e}")))?;
            out.push((ns, sel));
        }
        Ok(fleet_core::Namespaces::new(out))
    }

    /// Destroys several units (in few etcd txns on the server); whether each existed,
    /// in `names` order. Sent in requests of at most 10,000 names.
    pub async fn destroy_units(&self, names: &[UnitName]) -> Result<Vec<bool>, ApiError> {
        let mut out = Vec::with_capacity(names.len());
        for chunk in names.chunks(BATCH_NAMES) {
            let mut c = self.inner.clone();
            let resp = self
                .bounded(
                    "DestroyUnits",
                    c.destroy_units(pb::DestroyUnitsRequest {
                        names: chunk.iter().map(ToString::to_string).collect(),
                    }),
                )
                .await?;
            if resp.existed.len() != chunk.len() {
                return Err(count_mismatch(chunk.len(), resp.existed.len()));
            }
            out.extend(resp.existed);
        }
        Ok(out)
    }

    /// What stop, restart and status need about the units named (see
    /// `Registry::unit_views`), in `names` order, with the revision to watch states
    /// after; several round trips when the server answers a prefix to keep each
    /// message below the size limit (the revision is then the earliest answer's, so a
    /// watch from it replays every later change).
    pub async fn unit_views(
        &self,
        names: &[UnitName],
    ) -> Result<(i64, Vec<Option<UnitView>>), ApiError> {
        let mut out = Vec::with_capacity(names.len());
        let mut revision: Option<i64> = None;
        let mut rest = names;
        while !rest.is_empty() {
            let ask = &rest[..rest.len().min(BATCH_NAMES)];
            let mut c = self.inner.clone();
            let resp = self
                .bounded(
                    "GetUnitViews",
                    c.get_unit_views(pb::GetUnitViewsRequest {
                        names: ask.iter().map(ToString::to_string).collect(),
                    }),
                )
                .await?;
            if resp.units.is_empty() || resp.units.len() > ask.len() {
                return Err(count_mismatch(ask.len(), resp.units.len()));
            }
            for v in &resp.units {
                out.push(convert::view_from_wire(v)?);
            }
            revision = Some(revision.map_or(resp.revision, |r| r.min(resp.revision)));
            rest = &rest[resp.units.len()..];
        }
        Ok((revision.unwrap_or(0), out))
    }

    /// The whole cluster at one revision, received in pages.
    pub async fn snapshot(&self) -> Result<ClusterSnapshot, ApiError> {
        let mut c = self.inner.clone();
        let mut stream = self
            .bounded("Snapshot", c.snapshot(pb::SnapshotRequest { page_size: 0 }))
            .await?;
        let mut snap = ClusterSnapshot::default();
        while let Some(page) = self.next_page(&mut stream).await? {
            snap.revision = page.revision;
            for u in &page.units {
                snap.units.push(convert::unit_from_wire(u)?);
            }
            for m in &page.machines {
                snap.machines.push(convert::machine_from_wire(m)?);
            }
            for e in &page.schedule {
                snap.schedule.push(convert::schedule_from_wire(e)?);
            }
            for s in &page.states {
                snap.states.push(convert::state_from_wire(s)?);
            }
            for u in &page.unplaced {
                snap.unplaced
                    .insert(convert::unit_name(&u.unit)?, u.reason.clone());
            }
            for s in &page.skipped {
                snap.skipped.push(convert::skipped_from_wire(s)?);
            }
        }
        Ok(snap)
    }

    /// What `fleetctl list-units` shows: the live machines and every reported state,
    /// read side by side (two reads, as fleet's own list-units did); the rest of the
    /// snapshot is left empty.
    pub async fn states_snapshot(&self) -> Result<ClusterSnapshot, ApiError> {
        let (machines, states) =
            tokio::join!(self.list_machines_checked(), self.list_states_checked());
        let (revision, states) = states?;
        let machines = machines?;
        let mut skipped = machines.skipped;
        skipped.extend(states.skipped);
        skipped.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(ClusterSnapshot {
            revision,
            machines: machines.items,
            states: states.items,
            skipped,
            ..ClusterSnapshot::default()
        })
    }

    /// Live machines with their API addresses, following page tokens to the end
    /// (records that cannot be decoded left out).
    pub async fn list_machine_records(&self) -> Result<Vec<MachineRecord>, ApiError> {
        Ok(self.list_machines_checked().await?.items)
    }

    /// Live machine records and the machine keys fleetd skipped as undecodable.
    pub async fn list_machines_checked(&self) -> Result<Listed<MachineRecord>, ApiError> {
        let mut out = Vec::new();
        let mut skipped = Vec::new();
        let mut token = String::new();
        // Bounded: each page advances the token strictly (ids are sorted).
        for _ in 0..100_000 {
            let mut c = self.inner.clone();
            let resp = self
                .bounded(
                    "ListMachines",
                    c.list_machines(pb::ListMachinesRequest {
                        page_size: 0,
                        page_token: token.clone(),
                    }),
                )
                .await?;
            for m in &resp.machines {
                out.push(convert::machine_from_wire(m)?);
            }
            // Every page names them (each page is a new read): keep the first page's.
            if token.is_empty() {
                for s in &resp.skipped {
                    skipped.push(convert::skipped_from_wire(s)?);
                }
            }
            if resp.next_page_token.is_empty() || resp.next_page_token <= token {
                break;
            }
            token = resp.next_page_token;
        }
        Ok(Listed {
            items: out,
            skipped,
        })
    }

    pub async fn list_machines(&self) -> Result<Vec<Machine>, ApiError> {
        Ok(self
            .list_machine_records()
            .await?
            .into_iter()
            .map(|r| r.machine)
            .collect())
    }

    /// Every reported state and the revision to watch from (plus one).
    pub async fn list_states_at(&self) -> Result<(i64, Vec<UnitStateRecord>), ApiError> {
        let (revision, listed) = self.list_states_checked().await?;
        Ok((revision, listed.items))
    }

    /// [`ApiClient::list_states_at`] with the state keys fleetd left out as undecodable.
    pub async fn list_states_checked(&self) -> Result<(i64, Listed<UnitStateRecord>), ApiError> {
        let mut c = self.inner.clone();
        let mut stream = self
            .bounded(
                "ListStates",
                c.list_states(pb::ListStatesRequest { page_size: 0 }),
            )
            .await?;
        let mut revision = 0;
        let mut items = Vec::new();
        let mut skipped = Vec::new();
        while let Some(page) = self.next_page(&mut stream).await? {
            revision = page.revision;
            for s in &page.states {
                items.push(convert::state_from_wire(s)?);
            }
            for s in &page.skipped {
                skipped.push(convert::skipped_from_wire(s)?);
            }
        }
        Ok((revision, Listed { items, skipped }))
    }

    /// Watches `state/` from `from_revision`; the caller bounds how long it waits.
    pub async fn watch_states(&self, from_revision: i64) -> Result<StateWatch, ApiError> {
        let mut c = self.inner.clone();
        let stream = self
            .bounded(
                "WatchStates",
                c.watch_states(pb::WatchStatesRequest { from_revision }),
            )
            .await?;
        Ok(StateWatch { stream })
    }

    /// The unit's journal from the machine that runs it; with `follow` it runs until
    /// the returned stream is dropped.
    pub async fn journal(
        &self,
        unit: &UnitName,
        lines: u32,
        follow: bool,
        output: &str,
    ) -> Result<Output, ApiError> {
        let stream = self
            .journal_raw(pb::JournalRequest {
                unit: unit.to_string(),
                lines: Some(lines),
                follow,
                output: output.to_string(),
                no_forward: false,
            })
            .await?;
        Ok(Output { stream })
    }

    /// `systemctl status` of the unit on `machine` (or where it runs).
    pub async fn status(
        &self,
        unit: &UnitName,
        machine: Option<&MachineId>,
    ) -> Result<Output, ApiError> {
        let stream = self
            .status_raw(pb::StatusRequest {
                unit: unit.to_string(),
                machine: machine.map(ToString::to_string).unwrap_or_default(),
                no_forward: false,
            })
            .await?;
        Ok(Output { stream })
    }

    /// The journal call as-is, for fleetd's forwarding.
    pub async fn journal_raw(
        &self,
        req: pb::JournalRequest,
    ) -> Result<tonic::Streaming<pb::OutputChunk>, ApiError> {
        let mut c = self.inner.clone();
        self.bounded("Journal", c.journal(req)).await
    }

    /// The status call as-is, for fleetd's forwarding.
    pub async fn status_raw(
        &self,
        req: pb::StatusRequest,
    ) -> Result<tonic::Streaming<pb::OutputChunk>, ApiError> {
        let mut c = self.inner.clone();
        self.bounded("Status", c.status(req)).await
    }
}

/// Names per batch request: the server's limit.
const BATCH_NAMES: usize = 10_000;

fn count_mismatch(asked: usize, got: usize) -> ApiError {
    convert::WireError {
        what: "batch answer",
        reason: format!("{got} answers for {asked} units"),
    }
    .into()
}

fn outcome_from_wire(resp: &pb::CreateUnitResponse) -> Result<CreateOutcome, ApiError> {
    use pb::create_unit_response::Outcome;
    match Outcome::try_from(resp.outcome) {
        Ok(Outcome::Created) => Ok(CreateOutcome::Created),
        Ok(Outcome::Identical) => Ok(CreateOutcome::Identical),
        Ok(Outcome::Differs) => Ok(CreateOutcome::Differs {
            existing: convert::hash_from_wire(&resp.existing_hash)?,
        }),
        _ => Err(convert::WireError {
            what: "create outcome",
            reason: format!("unknown value {}", resp.outcome),
        }
        .into()),
    }
}

/// Why a connection failed, in a few words: the OS error at the bottom of the chain
/// (tonic and hyper wrap it in "transport error: tcp connect error: ..." layers that
/// repeat each other), or the innermost message when there is none.
pub fn connect_reason(e: &(dyn std::error::Error + 'static)) -> String {
    let reason = innermost_reason(e);
    // rustls' words for "the server answered in plain text".
    if reason.contains("InvalidContentType") {
        return "TLS handshake failed: the server does not speak TLS (for a plain-text API use http://)".into();
    }
    reason
}

fn innermost_reason(e: &(dyn std::error::Error + 'static)) -> String {
    let mut innermost = e.to_string();
    let mut cause = Some(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return io_reason(io);
        }
        let text = c.to_string();
        if !text.is_empty() {
            innermost = text;
        }
        cause = c.source();
    }
    innermost
}

/// An I/O error as a short phrase, without Rust's "(os error N)" suffix.
fn io_reason(io: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match io.kind() {
        K::ConnectionRefused => "connection refused".into(),
        K::NotFound => "no such socket".into(),
        K::PermissionDenied => "permission denied".into(),
        K::TimedOut => "connection timed out".into(),
        K::ConnectionReset => "connection reset".into(),
        K::AddrNotAvailable => "address not available".into(),
        K::HostUnreachable => "host unreachable".into(),
        K::NetworkUnreachable => "network unreachable".into(),
        _ => {
            let text = io.to_string();
            match text.find(" (os error") {
                Some(i) => text[..i].to_string(),
                None => text,
            }
        }
    }
}

/// A command's stdin/stdout as one bidirectional stream; the command is killed when
/// the connection is dropped.
struct CommandIo {
    _child: Child,
    io: tokio::io::Join<ChildStdout, ChildStdin>,
}

/// Runs the tunnel command; its stderr goes to `log` (ssh's prompts use the terminal,
/// not stderr, so host-key questions still reach the user).
fn spawn_stdio(argv: &[String], log: Arc<Mutex<TunnelLog>>) -> std::io::Result<CommandIo> {
    let Some((program, args)) = argv.split_first() else {
        return Err(std::io::Error::other("empty tunnel command"));
    };
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot run {program}: {e}")))?;
    let (Some(stdout), Some(stdin), Some(stderr)) =
        (child.stdout.take(), child.stdin.take(), child.stderr.take())
    else {
        return Err(std::io::Error::other("tunnel command has no pipes"));
    };
    if let Ok(mut l) = log.lock() {
        *l = TunnelLog::default();
    }
    tokio::spawn(async move {
        use tokio::io::AsyncBufReadExt;
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let line = line.trim();
            if !line.is_empty()
                && let Ok(mut l) = log.lock()
            {
                tracing::debug!("tunnel: {line}");
                l.last_line = line.to_string();
            }
        }
        if let Ok(mut l) = log.lock() {
            l.closed = true;
        }
    });
    Ok(CommandIo {
        _child: child,
        io: tokio::io::join(stdout, stdin),
    })
}

impl AsyncRead for CommandIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for CommandIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_as_fleetctl_did() {
        assert_eq!(
            parse_endpoint("unix:///var/run/fleet.sock").unwrap(),
            Target::Unix("/var/run/fleet.sock".into())
        );
        assert_eq!(
            parse_endpoint("unix://var/run/fleet.sock")
                .unwrap_err()
                .to_string(),
            "unable to connect to host \"var\" with scheme \"unix\""
        );
        assert_eq!(
            parse_endpoint("/var/run/fleet.sock")
                .unwrap_err()
                .to_string(),
            "URL scheme undefined"
        );
        assert_eq!(
            parse_endpoint("https://10.0.0.1:4002").unwrap(),
            Target::Http {
                uri: "https://10.0.0.1:4002".into(),
                tls: true
            }
        );
    }
}
