//! The API service over the registry: unit, target, machine and state operations,
//! snapshots streamed in pages, state watches, and journal/status (see `remote`).

use std::pin::Pin;
use std::sync::Arc;

use fleet_core::{Requirements, TargetState, UnitName};
use futures_util::Stream;
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};

pub use crate::context::ApiContext;
use crate::convert::{self, WireError};
pub(crate) use crate::convert::{registry_status, wire_status};
use crate::limits::{Peer, StreamLimits, StreamPermit};
use crate::pb::{self, fleet_server::Fleet};

/// Items per snapshot/list page when the caller does not say.
const DEFAULT_PAGE: usize = 500;
/// The largest page a caller may ask for.
const MAX_PAGE: usize = 2000;
/// Encoded bytes of items per page or batch answer: below gRPC's default 4 MiB message
/// limit with room to spare, whatever the count (one unit alone may be 1 MiB). An item
/// larger than this still goes, alone.
pub(crate) const PAGE_BYTES: usize = 3 * 1024 * 1024;

/// Cuts a sequence of items into pages by count and by encoded bytes.
struct Pager {
    size: usize,
    items: usize,
    bytes: usize,
}

impl Pager {
    fn new(size: usize) -> Pager {
        Pager {
            size,
            items: 0,
            bytes: 0,
        }
    }

    /// Counts an item of `len` encoded bytes; true when it must start a new page.
    fn starts_page(&mut self, len: usize) -> bool {
        // Field tag and length prefix of the item in its page.
        let len = len + 6;
        let full = self.items > 0 && (self.items >= self.size || self.bytes + len > PAGE_BYTES);
        if full {
            self.items = 0;
            self.bytes = 0;
        }
        self.items += 1;
        self.bytes += len;
        full
    }
}

/// The gRPC service; wrap it in `pb::fleet_server::FleetServer` to serve it.
#[derive(Clone)]
pub struct FleetService {
    pub(crate) ctx: Arc<ApiContext>,
    /// Open journal/status streams, bounded per client and in all.
    streams: Arc<StreamLimits>,
    /// Set once etcd said this machine's identity may write units (see [`writable`]).
    may_write: Arc<tokio::sync::OnceCell<()>>,
}

impl FleetService {
    pub fn new(ctx: ApiContext) -> FleetService {
        FleetService {
            ctx: Arc::new(ctx),
            streams: Arc::default(),
            may_write: Arc::default(),
        }
    }

    /// DrainMachine and UndrainMachine: one request and answer, either way.
    async fn set_drained(
        &self,
        req: &pb::DrainMachineRequest,
        drain: bool,
    ) -> Result<Response<pb::DrainMachineResponse>, Status> {
        writable(self).await?;
        let machine = convert::machine_id(&req.machine).map_err(wire_status)?;
        let registry = &self.ctx.registry;
        let changed = if drain {
            registry.drain_machine(&machine).await
        } else {
            registry.undrain_machine(&machine).await
        };
        Ok(Response::new(pb::DrainMachineResponse {
            changed: changed.map_err(registry_status)?,
        }))
    }

    /// The tonic server wrapper, ready for `Server::builder().add_service(..)`.
    pub fn into_server(
        self,
    ) -> InterceptedService<pb::fleet_server::FleetServer<FleetService>, RegisteredGate> {
        let gate = RegisteredGate(self.ctx.registered.clone());
        pb::fleet_server::FleetServer::with_interceptor(self, gate)
    }
}

/// Refuses calls while the machine is not registered (fleet's 503).
#[derive(Clone)]
pub struct RegisteredGate(Option<tokio::sync::watch::Receiver<bool>>);

impl Interceptor for RegisteredGate {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        match &self.0 {
            Some(registered) if !*registered.borrow() => Err(Status::unavailable(
                "fleet server unable to communicate with etcd",
            )),
            _ => Ok(req),
        }
    }
}

/// Maps registry failures to gRPC codes; the message stays the registry's one line.
fn page_size(asked: u32) -> usize {
    match asked as usize {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    }
}

/// Refuses unit files fleet would refuse (`[X-Fleet]` validation), as fleetctl does.
fn validate(name: &UnitName, file: &fleet_core::UnitFile) -> Result<(), Status> {
    Requirements::parse(file)
        .map(|_| ())
        .map_err(|e| Status::invalid_argument(format!("unit {name}: {e}")))
}

/// The most units one batch call may name (keeps requests far below 4 MiB).
const MAX_BATCH: usize = 10_000;

fn too_many(n: usize) -> Status {
    Status::invalid_argument(format!(
        "{n} units in one request; the limit is {MAX_BATCH}"
    ))
}

/// A batch request's names, validated and within [`MAX_BATCH`].
fn unit_names(names: &[String]) -> Result<Vec<UnitName>, Status> {
    if names.len() > MAX_BATCH {
        return Err(too_many(names.len()));
    }
    names
        .iter()
        .map(|n| convert::unit_name(n))
        .collect::<Result<Vec<_>, _>>()
        .map_err(wire_status)
}

fn creation(req: &pb::CreateUnitRequest) -> Result<(UnitName, fleet_core::UnitFile), Status> {
    let name = convert::unit_name(&req.name).map_err(wire_status)?;
    let file = convert::file_from_wire(&req.options).map_err(wire_status)?;
    validate(&name, &file)?;
    Ok((name, file))
}

use crate::scope::{Scope, confine, confine_write};
use fleet_registry::{RegistryKey, WatchEvent};

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Fleet for FleetService {
    async fn get_unit(
        &self,
        req: Request<pb::GetUnitRequest>,
    ) -> Result<Response<pb::GetUnitResponse>, Status> {
        confine(&req, [req.get_ref().name.as_str()])?;
        let name = convert::unit_name(&req.get_ref().name).map_err(wire_status)?;
        let unit = self
            .ctx
            .registry
            .get_unit(&name)
            .await
            .map_err(registry_status)?;
        Ok(Response::new(pb::GetUnitResponse {
            unit: unit.as_ref().map(convert::unit_to_wire),
        }))
    }

    async fn get_units(
        &self,
        req: Request<pb::GetUnitsRequest>,
    ) -> Result<Response<pb::GetUnitsResponse>, Status> {
        confine(&req, req.get_ref().names.iter().map(String::as_str))?;
        let names = req
            .get_ref()
            .names
            .iter()
            .map(|n| convert::unit_name(n))
            .collect::<Result<Vec<_>, _>>()
            .map_err(wire_status)?;
        if names.len() > MAX_BATCH {
            return Err(too_many(names.len()));
        }
        let units = self
            .ctx
            .registry
            .get_units(&names)
            .await
            .map_err(registry_status)?;
        // A prefix of the answers that fits in one message; the client asks for the rest.
        let mut pager = Pager::new(MAX_BATCH);
        let mut answers = Vec::new();
        for u in &units {
            let w = pb::GetUnitResponse {
                unit: u.as_ref().map(convert::unit_to_wire),
            };
            if pager.starts_page(w.encoded_len()) {
                break;
            }
            answers.push(w);
        }
        Ok(Response::new(pb::GetUnitsResponse { units: answers }))
    }

    async fn create_unit(
        &self,
        req: Request<pb::CreateUnitRequest>,
    ) -> Result<Response<pb::CreateUnitResponse>, Status> {
        confine_write(&req, self.ctx.people(), [req.get_ref().name.as_str()]).await?;
        writable(self).await?;
        let (name, file) = creation(req.get_ref())?;
        let outcome = self
            .ctx
            .registry
            .create_unit(&name, &file)
            .await
            .map_err(registry_status)?;
        Ok(Response::new(convert::outcome_to_wire(outcome)))
    }

    async fn create_units(
        &self,
        req: Request<pb::CreateUnitsRequest>,
    ) -> Result<Response<pb::CreateUnitsResponse>, Status> {
        confine_write(
            &req,
            self.ctx.people(),
            req.get_ref().units.iter().map(|u| u.name.as_str()),
        )
        .await?;
        writable(self).await?;
        let units = req
            .get_ref()
            .units
            .iter()
            .map(creation)
            .collect::<Result<Vec<_>, _>>()?;
        if units.len() > MAX_BATCH {
            return Err(too_many(units.len()));
        }
        let target = match req.get_ref().target {
            0 => TargetState::Inactive,
            t => convert::target_from_wire(t).map_err(wire_status)?,
        };
        if target != TargetState::Inactive
            && let Some((name, _)) = units.iter().find(|(n, _)| n.is_template())
        {
            return Err(Status::invalid_argument(format!(
                "cannot activate template {:?}",
                name.as_str()
            )));
        }
        let outcomes = self
            .ctx
            .registry
            .create_units_with_target(&units, target)
            .await
            .map_err(registry_status)?;
        Ok(Response::new(pb::CreateUnitsResponse {
            outcomes: outcomes.into_iter().map(convert::outcome_to_wire).collect(),
            target_written: true,
        }))
    }

    async fn replace_unit(
        &self,
        req: Request<pb::ReplaceUnitRequest>,
    ) -> Result<Response<pb::ReplaceUnitResponse>, Status> {
        confine_write(&req, self.ctx.people(), [req.get_ref().name.as_str()]).await?;
        writable(self).await?;
        let req = req.into_inner();
        let name = convert::unit_name(&req.name).map_err(wire_status)?;
        let file = convert::file_from_wire(&req.options).map_err(wire_status)?;
        validate(&name, &file)?;
        self.ctx
            .registry
            .replace_unit(&name, &file)
            .await
            .map_err(registry_status)?;
        Ok(Response::new(pb::ReplaceUnitResponse {}))
    }

    async fn set_targets(
        &self,
        req: Request<pb::SetTargetsRequest>,
    ) -> Result<Response<pb::SetTargetsResponse>, Status> {
        confine_write(
            &req,
            self.ctx.people(),
            req.get_ref().targets.iter().map(|t| t.name.as_str()),
        )
        .await?;
        // An empty request writes nothing (fleetctl ssh asks one to learn its rights).
        if !req.get_ref().targets.is_empty() {
            writable(self).await?;
        }
        let targets = req
            .into_inner()
            .targets
            .iter()
            .map(|t| {
                let name = convert::unit_name(&t.name)?;
                let target = convert::target_from_wire(t.target)?;
                Ok((name, target))
            })
            .collect::<Result<Vec<(UnitName, TargetState)>, WireError>>()
            .map_err(wire_status)?;
        if let Some((name, _)) = targets
            .iter()
            .find(|(n, t)| n.is_template() && *t != TargetState::Inactive)
        {
            return Err(Status::invalid_argument(format!(
                "cannot activate template {:?}",
                name.as_str()
            )));
        }
        let outcome = self
            .ctx
            .registry
            .set_targets(&targets)
            .await
            .map_err(registry_status)?;
        Ok(Response::new(pb::SetTargetsResponse {
            missing: outcome.missing.iter().map(ToString::to_string).collect(),
        }))
    }

    async fn destroy_unit(
        &self,
        req: Request<pb::DestroyUnitRequest>,
    ) -> Result<Response<pb::DestroyUnitResponse>, Status> {
        confine_write(&req, self.ctx.people(), [req.get_ref().name.as_str()]).await?;
        writable(self).await?;
        let name = convert::unit_name(&req.get_ref().name).map_err(wire_status)?;
        let existed = self
            .ctx
            .registry
            .destroy_unit(&name)
            .await
            .map_err(registry_status)?;
        Ok(Response::new(pb::DestroyUnitResponse { existed }))
    }

    async fn drain_machine(
        &self,
        req: Request<pb::DrainMachineRequest>,
    ) -> Result<Response<pb::DrainMachineResponse>, Status> {
        self.set_drained(req.get_ref(), true).await
    }

    async fn undrain_machine(
        &self,
        req: Request<pb::DrainMachineRequest>,
    ) -> Result<Response<pb::DrainMachineResponse>, Status> {
        self.set_drained(req.get_ref(), false).await
    }

    async fn list_drained(
        &self,
        _req: Request<pb::ListDrainedRequest>,
    ) -> Result<Response<pb::ListDrainedResponse>, Status> {
        let drained = self
            .ctx
            .registry
            .drained_machines()
            .await
            .map_err(registry_status)?;
        Ok(Response::new(pb::ListDrainedResponse {
            machines: drained.iter().map(|m| m.to_string()).collect(),
        }))
    }

    async fn list_namespaces(
        &self,
        _req: Request<pb::ListNamespacesRequest>,
    ) -> Result<Response<pb::ListNamespacesResponse>, Status> {
        let known = self
            .ctx
            .people()
            .namespaces()
            .await
            .map_err(registry_status)?;
        Ok(Response::new(pb::ListNamespacesResponse {
            namespaces: known
                .all()
                .filter(|n| !n.is_default())
                .map(|n| pb::NamespaceInfo {
                    name: n.to_string(),
                    selector: known
                        .selector(n)
                        .map(ToString::to_string)
                        .unwrap_or_default(),
                })
                .collect(),
        }))
    }

    async fn destroy_units(
        &self,
        req: Request<pb::DestroyUnitsRequest>,
    ) -> Result<Response<pb::DestroyUnitsResponse>, Status> {
        confine_write(
            &req,
            self.ctx.people(),
            req.get_ref().names.iter().map(String::as_str),
        )
        .await?;
        writable(self).await?;
        let names = unit_names(&req.get_ref().names)?;
        let existed = self
            .ctx
            .registry
            .destroy_units(&names)
            .await
            .map_err(registry_status)?;
        Ok(Response::new(pb::DestroyUnitsResponse { existed }))
    }

    async fn get_unit_views(
        &self,
        req: Request<pb::GetUnitViewsRequest>,
    ) -> Result<Response<pb::GetUnitViewsResponse>, Status> {
        confine(&req, req.get_ref().names.iter().map(String::as_str))?;
        let names = unit_names(&req.get_ref().names)?;
        let (revision, views) = self
            .ctx
            .registry
            .unit_views(&names)
            .await
            .map_err(registry_status)?;
        // A prefix of the answers that fits in one message; the client asks for the rest.
        let mut pager = Pager::new(MAX_BATCH);
        let mut answers = Vec::new();
        for v in &views {
            let w = convert::view_to_wire(v.as_ref());
            if pager.starts_page(w.encoded_len()) {
                break;
            }
            answers.push(w);
        }
        Ok(Response::new(pb::GetUnitViewsResponse {
            units: answers,
            revision,
        }))
    }

    type SnapshotStream = BoxStream<pb::SnapshotPage>;

    async fn snapshot(
        &self,
        req: Request<pb::SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        let size = page_size(req.get_ref().page_size);
        let mut snap = self
            .ctx
            .registry
            .snapshot()
            .await
            .map_err(registry_status)?;
        if let Some(scope) = Scope::of(&req) {
            scope.filter(&mut snap);
        }
        let revision = snap.revision;
        let mut pages = Vec::new();
        let mut page = pb::SnapshotPage {
            revision,
            ..Default::default()
        };
        let mut pager = Pager::new(size);
        let empty = || pb::SnapshotPage {
            revision,
            ..Default::default()
        };
        // Starts a new page when the next item (of `len` bytes) does not fit.
        let mut next = |len: usize, page: &mut pb::SnapshotPage, pages: &mut Vec<_>| {
            if pager.starts_page(len) {
                pages.push(std::mem::replace(page, empty()));
            }
        };
        for u in &snap.units {
            let w = convert::unit_to_wire(u);
            next(w.encoded_len(), &mut page, &mut pages);
            page.units.push(w);
        }
        for m in &snap.machines {
            let w = convert::machine_to_wire(m);
            next(w.encoded_len(), &mut page, &mut pages);
            page.machines.push(w);
        }
        for e in &snap.schedule {
            let w = convert::schedule_to_wire(e);
            next(w.encoded_len(), &mut page, &mut pages);
            page.schedule.push(w);
        }
        for st in &snap.states {
            let w = convert::state_to_wire(st);
            next(w.encoded_len(), &mut page, &mut pages);
            page.states.push(w);
        }
        for (unit, reason) in &snap.unplaced {
            let w = convert::unplaced_to_wire(unit, reason);
            next(w.encoded_len(), &mut page, &mut pages);
            page.unplaced.push(w);
        }
        for s in &snap.skipped {
            let w = convert::skipped_to_wire(s);
            next(w.encoded_len(), &mut page, &mut pages);
            page.skipped.push(w);
        }
        pages.push(page);
        Ok(Response::new(Box::pin(tokio_stream::iter(
            pages.into_iter().map(Ok),
        ))))
    }

    async fn list_machines(
        &self,
        req: Request<pb::ListMachinesRequest>,
    ) -> Result<Response<pb::ListMachinesResponse>, Status> {
        let req = req.into_inner();
        let size = page_size(req.page_size);
        let listed = self
            .ctx
            .registry
            .list_machines_checked()
            .await
            .map_err(registry_status)?;
        let machines = listed.items;
        // The token is the last id of the previous page: machines joining or leaving
        // between pages never shift the others.
        let mut pager = Pager::new(size);
        let mut page = Vec::new();
        let mut more = false;
        for m in machines.iter().filter(|m| {
            req.page_token.is_empty() || m.machine.id.as_str() > req.page_token.as_str()
        }) {
            let w = convert::machine_to_wire(m);
            if pager.starts_page(w.encoded_len()) {
                more = true;
                break;
            }
            page.push(w);
        }
        let next_page_token = match (more, page.last()) {
            (true, Some(last)) => last.id.clone(),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListMachinesResponse {
            machines: page,
            next_page_token,
            skipped: listed
                .skipped
                .iter()
                .map(convert::skipped_to_wire)
                .collect(),
        }))
    }

    type ListStatesStream = BoxStream<pb::StatesPage>;

    async fn list_states(
        &self,
        req: Request<pb::ListStatesRequest>,
    ) -> Result<Response<Self::ListStatesStream>, Status> {
        let size = page_size(req.get_ref().page_size);
        let (revision, listed) = self
            .ctx
            .registry
            .list_states_at()
            .await
            .map_err(registry_status)?;
        let mut states = listed.items;
        // A skipped key names a unit, maybe of another namespace: only unconfined
        // callers hear of them.
        let mut skipped = listed.skipped;
        if let Some(scope) = Scope::of(&req) {
            states.retain(|s| scope.keeps(&s.unit));
            skipped.clear();
        }
        let mut pager = Pager::new(size);
        let mut pages = Vec::new();
        let mut page = pb::StatesPage {
            revision,
            states: Vec::new(),
            skipped: skipped.iter().map(convert::skipped_to_wire).collect(),
        };
        for st in &states {
            let w = convert::state_to_wire(st);
            if pager.starts_page(w.encoded_len()) {
                let states = std::mem::take(&mut page.states);
                let skipped = std::mem::take(&mut page.skipped);
                pages.push(pb::StatesPage {
                    revision,
                    states,
                    skipped,
                });
            }
            page.states.push(w);
        }
        pages.push(page);
        Ok(Response::new(Box::pin(tokio_stream::iter(
            pages.into_iter().map(Ok),
        ))))
    }

    type WatchStatesStream = BoxStream<pb::StateEvents>;

    async fn watch_states(
        &self,
        req: Request<pb::WatchStatesRequest>,
    ) -> Result<Response<Self::WatchStatesStream>, Status> {
        let from = req.get_ref().from_revision;
        if from <= 0 {
            return Err(Status::invalid_argument(
                "from_revision must be a revision from ListStates, plus one",
            ));
        }
        let scope = Scope::of(&req);
        let registry = &self.ctx.registry;
        let mut watch = registry.watch_prefix(registry.keys().states(), from);
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            loop {
                let batch = tokio::select! {
                    b = watch.next() => b,
                    // The client went away: dropping the watch cancels it.
                    _ = tx.closed() => return,
                };
                let msg = match batch {
                    Ok(batch) => Ok(pb::StateEvents {
                        revision: batch.revision,
                        events: batch
                            .events
                            .iter()
                            .filter(|ev| match (&scope, ev) {
                                (
                                    Some(scope),
                                    WatchEvent::Put {
                                        key: RegistryKey::State(u, _),
                                        ..
                                    }
                                    | WatchEvent::Delete {
                                        key: RegistryKey::State(u, _),
                                        ..
                                    },
                                ) => scope.keeps(u),
                                _ => true,
                            })
                            .filter_map(convert::state_event_to_wire)
                            .collect(),
                    }),
                    Err(e) => Err(registry_status(e)),
                };
                let failed = msg.is_err();
                if tx.send(msg).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type JournalStream = BoxStream<pb::OutputChunk>;

    async fn journal(
        &self,
        req: Request<pb::JournalRequest>,
    ) -> Result<Response<Self::JournalStream>, Status> {
        confine(&req, [req.get_ref().unit.as_str()])?;
        let permit = self.streams.acquire(Peer::of(&req))?;
        crate::remote::journal(&self.ctx, req.into_inner())
            .await
            .map(|s| Response::new(holding(permit, s)))
    }

    type StatusStream = BoxStream<pb::OutputChunk>;

    async fn status(
        &self,
        req: Request<pb::StatusRequest>,
    ) -> Result<Response<Self::StatusStream>, Status> {
        confine(&req, [req.get_ref().unit.as_str()])?;
        let permit = self.streams.acquire(Peer::of(&req))?;
        crate::remote::status(&self.ctx, req.into_inner())
            .await
            .map(|s| Response::new(holding(permit, s)))
    }
}

/// Refuses a write on a worker machine, before anything is written: its etcd identity
/// holds only its machine role (no `fleet-operator`), so etcd would refuse the write
/// anyway. The caller is told why and where writes go: the control machines (those
/// running the engine) and their API addresses. A `true` answer is kept for the
/// process's life; a worker asks again at each write, so a role granted later works
/// without a restart.
async fn writable(svc: &FleetService) -> Result<(), Status> {
    let registry = &svc.ctx.registry;
    let asked = svc
        .may_write
        .get_or_try_init(|| async {
            match registry.may_write_units().await {
                Ok(true) => Ok(()),
                Ok(false) => Err(None),
                Err(e) => Err(Some(registry_status(e))),
            }
        })
        .await;
    match asked {
        Ok(()) => Ok(()),
        Err(Some(status)) => Err(status),
        Err(None) => {
            let control: Vec<String> = registry
                .list_machine_records()
                .await
                .unwrap_or_default()
                .into_iter()
                .filter(|r| !r.machine.disable_engine && !r.api_addr.is_empty())
                .map(|r| format!("{} ({})", r.machine.id.short(), r.api_addr))
                .collect();
            let go = if control.is_empty() {
                "use the API of a control machine (one whose etcd user holds fleet-operator)"
                    .to_string()
            } else {
                format!("use the API of a control machine: {}", control.join(", "))
            };
            Err(Status::failed_precondition(format!(
                "this machine is a worker: its etcd identity may not write units, targets or drains; {go}"
            )))
        }
    }
}

/// `stream`, keeping its slot among the open streams until it is dropped.
fn holding<T: Send + 'static>(
    permit: StreamPermit,
    stream: impl Stream<Item = Result<T, Status>> + Send + 'static,
) -> BoxStream<T> {
    use futures_util::StreamExt;
    Box::pin(stream.map(move |item| {
        let _held = &permit;
        item
    }))
}
