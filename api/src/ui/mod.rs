//! The console at `/ui/`: static assets embedded in the binary (no build step, no
//! CDN) and its JSON endpoints under `/ui/api/`, which reuse the registry and the
//! gRPC service (so the console obeys the same validation and, through `auth::check`,
//! the same roles as every other client).
//!
//! Live updates: `/ui/api/events` is a server-sent event stream fed by one etcd watch
//! on fleet's prefix; changes arriving within [`COALESCE`] are answered by one fresh
//! snapshot, so a burst of thousands of changes costs a handful of snapshots and
//! page renders, not one each.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use fleet_core::{MachineId, Namespaces, Requirements, TargetState, UnitFile, UnitName};
use fleet_registry::{ClusterSnapshot, RegistryError, UnitStateRecord};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tonic::Request as Rpc;

use crate::FleetService;
use crate::auth::{Caller, Role, TOKEN_COOKIE};
use crate::pb::{self, fleet_server::Fleet};
use crate::v1::{HttpError, HttpResult, json_response};

/// How long changes are collected before the console is sent a new view.
const COALESCE: Duration = Duration::from_millis(150);

/// The paths anyone may fetch: the page, its script and style, and the login call
/// (which checks the token it is given).
pub(crate) fn is_public(path: &str) -> bool {
    matches!(
        path,
        "/ui" | "/ui/" | "/ui/app.js" | "/ui/style.css" | "/ui/login" | "/ui/logout"
    )
}

/// Machines seen since fleetd started, so one that disappears is shown as lost.
#[derive(Default)]
struct Seen(Mutex<BTreeMap<String, MachineView>>);

/// The console's routes, merged into the API's router.
pub(crate) fn router(svc: FleetService) -> Router {
    let seen = Arc::new(Seen::default());
    let s1 = svc.clone();
    let s2 = svc.clone();
    let s3 = svc.clone();
    let s4 = svc.clone();
    let s5 = svc.clone();
    let s6 = svc.clone();
    let seen2 = seen.clone();
    Router::new()
        .route("/ui", get(|| async { redirect("/ui/") }))
        .route(
            "/ui/",
            get(|| async { asset(INDEX, "text/html; charset=utf-8") }),
        )
        .route(
            "/ui/app.js",
            get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/ui/style.css",
            get(|| async { asset(STYLE, "text/css; charset=utf-8") }),
        )
        .route(
            "/ui/login",
            post(move |req: Request| login(s1.clone(), req)),
        )
        .route("/ui/logout", post(|| async { logout() }))
        .route("/ui/api/me", get(me))
        .route(
            "/ui/api/cluster",
            get(move || {
                let (svc, seen) = (s2.clone(), seen.clone());
                async move {
                    reply(
                        cluster(&svc, &seen)
                            .await
                            .map(|c| json_response(StatusCode::OK, &c)),
                    )
                }
            }),
        )
        .route(
            "/ui/api/events",
            get(move |req: Request| events(s3.clone(), seen2.clone(), crate::auth::bearer(&req))),
        )
        .route(
            "/ui/api/units/{name}",
            get(move |Path(name): Path<String>| {
                let svc = s4.clone();
                async move { reply(unit(&svc, &name).await) }
            }),
        )
        .route(
            "/ui/api/units/{name}/journal",
            get(move |Path(name): Path<String>| {
                let svc = s5.clone();
                async move { reply(journal(&svc, &name).await) }
            }),
        )
        .route(
            "/ui/api/units",
            post(move |req: Request| {
                let svc = s6.clone();
                async move { reply(submit(&svc, req).await) }
            }),
        )
        .route(
            "/ui/api/units/{name}/{action}",
            post(
                move |Path((name, action)): Path<(String, String)>, req: Request| {
                    let svc = svc.clone();
                    async move { reply(act(&svc, &name, &action, caller(&req)).await) }
                },
            ),
        )
}

const INDEX: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/style.css");

/// Who `auth::check` let in, for the service calls the console makes on their behalf.
fn caller(req: &Request) -> Option<Caller> {
    req.extensions().get::<Caller>().cloned()
}

/// A service call carrying the console user's identity, so the service applies the
/// same rules as to their gRPC calls (e.g. an operator changes namespace `default`'s
/// units only).
fn rpc<T>(caller: &Option<Caller>, message: T) -> Rpc<T> {
    let mut r = Rpc::new(message);
    if let Some(c) = caller {
        r.extensions_mut().insert(c.clone());
    }
    r
}

fn reply(r: HttpResult) -> Response {
    r.unwrap_or_else(HttpError::into_response)
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut resp = Response::new(Body::from(body));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Only our own scripts, styles and connections: no inline script, no third party.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'"),
    );
    resp
}

fn redirect(to: &'static str) -> Response {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SEE_OTHER;
    resp.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(to));
    resp
}

#[derive(Deserialize)]
struct Login {
    token: String,
}

/// Checks a pasted token and, when it is live, keeps it in an HttpOnly cookie.
async fn login(svc: FleetService, req: Request) -> Response {
    let r = async {
        // JSON only: another site cannot send that without a CORS preflight, so it
        // cannot log a browser in under its own token.
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if !json {
            return Err(HttpError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "log in with a JSON body: {\"token\": \"...\"}",
            ));
        }
        let bytes = crate::v1::body_bytes(req).await?;
        let login: Login = serde_json::from_slice(&bytes)
            .map_err(|e| HttpError::bad_request(format!("unable to decode body: {e}")))?;
        let token = login.token.trim();
        if token.is_empty() || !token.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(HttpError::new(
                StatusCode::UNAUTHORIZED,
                "not a fleet token",
            ));
        }
        let record = svc.ctx.people().token(token).await?.ok_or_else(|| {
            HttpError::new(
                StatusCode::UNAUTHORIZED,
                "token unknown, revoked or expired: create one with `fleetctl token create`",
            )
        })?;
        let mut resp = json_response(
            StatusCode::OK,
            &serde_json::json!({"who": format!("token user {}", record.user), "role": record.role}),
        );
        let max_age = record.expires.saturating_sub(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        );
        let cookie =
            format!("{TOKEN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}");
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            resp.headers_mut().insert(header::SET_COOKIE, v);
        }
        Ok(resp)
    }
    .await;
    reply(r)
}

fn logout() -> Response {
    let mut resp = crate::v1::empty_response(StatusCode::NO_CONTENT);
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("fleet_token=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    resp
}

async fn me(req: Request) -> Response {
    let caller = req.extensions().get::<Caller>().cloned();
    let (who, role) = caller.map_or(("unknown".into(), Role::Viewer), |c| (c.who, c.role));
    json_response(
        StatusCode::OK,
        &serde_json::json!({
            "who": who,
            "role": role.to_string(),
            "can_act": role >= Role::Operator,
            // Below admin, a cluster-wide role changes namespace default's units only.
            "all_namespaces": role >= Role::Admin,
        }),
    )
}

#[derive(Clone, Debug, Serialize)]
struct MachineView {
    id: String,
    ip: String,
    metadata: BTreeMap<String, String>,
    lost: bool,
    /// Units on this machine by their systemd active state.
    units: BTreeMap<String, usize>,
}

#[derive(Debug, Serialize)]
struct UnitView {
    /// The stored name, which the console's actions take.
    name: String,
    /// Its namespace (`default` for a name not qualified by a known namespace) and its
    /// name there.
    namespace: String,
    local: String,
    /// `[X-Fleet] Global=true`: a row per machine running it, none when none does.
    global: bool,
    desired: String,
    machine: String,
    load: String,
    active: String,
    sub: String,
    /// Why the engine did not place it (empty when placed or not wanted).
    reason: String,
}

#[derive(Debug, Serialize)]
struct ClusterView {
    revision: i64,
    leader: Option<String>,
    /// Every namespace, `default` first, for the page's choice of namespace.
    namespaces: Vec<String>,
    machines: Vec<MachineView>,
    units: Vec<UnitView>,
}

async fn cluster(svc: &FleetService, seen: &Seen) -> Result<ClusterView, HttpError> {
    let snap = svc.ctx.registry.snapshot().await?;
    let (_, leader) = svc.ctx.registry.current_leader().await?;
    let namespaces = svc.ctx.people().namespaces().await?;
    Ok(view(&snap, leader, &namespaces, seen))
}

fn view(
    snap: &ClusterSnapshot,
    leader: Option<String>,
    namespaces: &Namespaces,
    seen: &Seen,
) -> ClusterView {
    let mut machines = seen.0.lock().unwrap_or_else(PoisonError::into_inner);
    for m in machines.values_mut() {
        m.lost = true;
        m.units.clear();
    }
    for r in &snap.machines {
        let m = &r.machine;
        machines.insert(
            m.id.to_string(),
            MachineView {
                id: m.id.to_string(),
                ip: m.public_ip.map(|ip| ip.to_string()).unwrap_or_default(),
                metadata: m.metadata.clone(),
                lost: false,
                units: BTreeMap::new(),
            },
        );
    }
    // Looked up once per unit: a burst re-renders thousands of them.
    let mut states: BTreeMap<&UnitName, Vec<&UnitStateRecord>> = BTreeMap::new();
    for s in &snap.states {
        states.entry(&s.unit).or_default().push(s);
    }
    let mut placed: BTreeMap<&UnitName, &MachineId> = BTreeMap::new();
    for e in &snap.schedule {
        placed.entry(&e.unit).or_insert(&e.machine);
    }
    let mut units = Vec::with_capacity(snap.units.len());
    for u in &snap.units {
        let (ns, local) = namespaces.split(&u.name);
        let unit_states = states.get(&u.name).map_or(&[][..], Vec::as_slice);
        // A global unit runs on every machine that qualifies, unscheduled: one row per
        // machine reporting it (as fleetctl list-units), or one without a machine.
        let global = Requirements::parse(&u.file).is_ok_and(|r| r.global);
        let rows: Vec<(Option<&MachineId>, Option<&UnitStateRecord>)> = if global {
            if unit_states.is_empty() {
                vec![(None, None)]
            } else {
                unit_states
                    .iter()
                    .map(|s| (Some(&s.machine), Some(*s)))
                    .collect()
            }
        } else {
            let machine = placed.get(&u.name).copied();
            let state = unit_states
                .iter()
                .find(|s| Some(&s.machine) == machine)
                .copied();
            vec![(machine, state)]
        };
        for (machine, state) in rows {
            let (load, active, sub) = state.map_or(("-", "-", "-"), |s| {
                (
                    s.systemd.load.as_str(),
                    s.systemd.active.as_str(),
                    s.systemd.sub.as_str(),
                )
            });
            if let Some(m) = machine.and_then(|m| machines.get_mut(m.as_str())) {
                *m.units.entry(active.to_string()).or_default() += 1;
            }
            units.push(UnitView {
                name: u.name.to_string(),
                namespace: ns.to_string(),
                local: local.to_string(),
                global,
                desired: u.target.to_string(),
                machine: machine.map(ToString::to_string).unwrap_or_default(),
                load: load.into(),
                active: active.into(),
                sub: sub.into(),
                reason: snap.unplaced.get(&u.name).cloned().unwrap_or_default(),
            });
        }
    }
    ClusterView {
        revision: snap.revision,
        leader,
        namespaces: namespaces.all().map(ToString::to_string).collect(),
        machines: machines.values().cloned().collect(),
        units,
    }
}

/// How often a live view checks that its token is still live (revoked or expired
/// tokens change no key its watch decodes).
const TOKEN_RECHECK: Duration = Duration::from_secs(3);

/// The stream's last event when its token is gone.
fn logged_out() -> Bytes {
    sse(
        "end",
        &serde_json::json!({"error": "token revoked or expired: log in again"}),
    )
}

/// Whether the token a stream was opened with is still live (read from etcd). A failed
/// read keeps the stream: an etcd hiccup is not a logout.
async fn still_live(svc: &FleetService, token: Option<&str>) -> bool {
    match token {
        Some(t) => !matches!(svc.ctx.registry.lookup_token(t).await, Ok(None)),
        None => false,
    }
}

/// Server-sent events: the cluster view now, then again after each burst of changes;
/// the stream ends (with an `end` event) once its token is revoked or expired.
async fn events(svc: FleetService, seen: Arc<Seen>, token: Option<String>) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    tokio::spawn(async move {
        let reg = svc.ctx.registry.clone();
        loop {
            let view = match cluster(&svc, &seen).await {
                Ok(v) => v,
                Err(e) => {
                    let problem = serde_json::json!({"error": e.message()});
                    if tx.send(sse("problem", &problem)).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let from = view.revision + 1;
            if tx.send(sse("cluster", &view)).await.is_err() {
                return;
            }
            let mut watch = reg.watch_prefix(reg.keys().prefix(), from);
            let mut recheck = tokio::time::interval(TOKEN_RECHECK);
            recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            recheck.reset();
            loop {
                tokio::select! {
                    _ = tx.closed() => return,
                    _ = recheck.tick() => {
                        if still_live(&svc, token.as_deref()).await {
                            continue;
                        }
                        let _ = tx.send(logged_out()).await;
                        return;
                    }
                    r = watch.next() => match r {
                        Ok(_) => {}
                        Err(RegistryError::Compacted { .. }) => break,
                        Err(e) => {
                            tracing::debug!(error = %e, "console watch failed; retrying");
                            continue;
                        }
                    },
                }
                // Whatever else arrives within the window is in the next view.
                let window = tokio::time::sleep(COALESCE);
                tokio::pin!(window);
                loop {
                    tokio::select! {
                        _ = &mut window => break,
                        r = watch.next() => if r.is_err() { break },
                    }
                }
                let view = match cluster(&svc, &seen).await {
                    Ok(v) => v,
                    Err(_) => break,
                };
                if tx.send(sse("cluster", &view)).await.is_err() {
                    return;
                }
            }
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<_, Infallible>);
    sse_response(Body::from_stream(stream))
}

fn sse(event: &str, data: &impl Serialize) -> Bytes {
    let json = serde_json::to_string(data).unwrap_or_default();
    Bytes::from(format!("event: {event}\ndata: {json}\n\n"))
}

fn sse_response(body: Body) -> Response {
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

fn unit_name(name: &str) -> Result<UnitName, HttpError> {
    UnitName::parse(name).map_err(|e| HttpError::bad_request(format!("{name:?}: {e}")))
}

/// One unit: its file, desired state and every machine's state of it.
async fn unit(svc: &FleetService, name: &str) -> HttpResult {
    let name = unit_name(name)?;
    let reg = &svc.ctx.registry;
    let Some(u) = reg.get_unit(&name).await? else {
        return Err(HttpError::new(
            StatusCode::NOT_FOUND,
            format!("unit {name} not found"),
        ));
    };
    let states: Vec<_> = reg
        .unit_states(&name)
        .await?
        .into_iter()
        .map(|s| {
            serde_json::json!({
                "machine": s.machine.to_string(),
                "state": s.state.to_string(),
                "load": s.systemd.load,
                "active": s.systemd.active,
                "sub": s.systemd.sub,
            })
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({
            "name": name.to_string(),
            "desired": u.target.to_string(),
            "hash": u.hash.to_string(),
            "file": u.file.canonical(),
            "states": states,
        }),
    ))
}

/// The unit's journal, last lines then following, as server-sent `line` events.
async fn journal(svc: &FleetService, name: &str) -> HttpResult {
    let name = unit_name(name)?;
    let stream = svc
        .journal(Rpc::new(pb::JournalRequest {
            unit: name.to_string(),
            lines: Some(50),
            follow: true,
            output: "short".into(),
            ..Default::default()
        }))
        .await?
        .into_inner();
    let mut pending = String::new();
    let lines = stream.map(move |chunk| {
        let text = match chunk.map(|c| c.chunk) {
            Ok(Some(pb::output_chunk::Chunk::Stdout(b) | pb::output_chunk::Chunk::Stderr(b))) => {
                String::from_utf8_lossy(&b).into_owned()
            }
            Ok(Some(pb::output_chunk::Chunk::ExitCode(c))) => {
                return Ok::<_, Infallible>(sse("end", &c));
            }
            Ok(None) => String::new(),
            Err(s) => return Ok(sse("end", &s.message())),
        };
        pending.push_str(&text);
        let mut out = String::new();
        while let Some(i) = pending.find('\n') {
            let line: String = pending.drain(..=i).collect();
            let json = serde_json::to_string(line.trim_end_matches('\n')).unwrap_or_default();
            out.push_str(&format!("event: line\ndata: {json}\n\n"));
        }
        Ok(Bytes::from(out))
    });
    Ok(sse_response(Body::from_stream(lines)))
}

#[derive(Deserialize)]
struct Submit {
    name: String,
    text: String,
}

/// Submits a unit from its pasted text (fleetctl submit).
async fn submit(svc: &FleetService, req: Request) -> HttpResult {
    let who = caller(&req);
    let bytes = crate::v1::body_bytes(req).await?;
    let body: Submit = serde_json::from_slice(&bytes)
        .map_err(|e| HttpError::bad_request(format!("unable to decode body: {e}")))?;
    let name = unit_name(body.name.trim())?;
    let file = UnitFile::parse(&body.text)
        .map_err(|e| HttpError::bad_request(format!("unit {name}: {e}")))?;
    let done = svc
        .create_unit(rpc(
            &who,
            pb::CreateUnitRequest {
                name: name.to_string(),
                options: crate::convert::options_to_wire(&file),
            },
        ))
        .await?
        .into_inner();
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({"outcome": done.outcome}),
    ))
}

/// start, stop, load, unload (desired states) or destroy.
async fn act(svc: &FleetService, name: &str, action: &str, who: Option<Caller>) -> HttpResult {
    let name = unit_name(name)?;
    let target = match action {
        "start" => TargetState::Launched,
        "stop" | "load" => TargetState::Loaded,
        "unload" => TargetState::Inactive,
        "destroy" => {
            svc.destroy_unit(rpc(
                &who,
                pb::DestroyUnitRequest {
                    name: name.to_string(),
                },
            ))
            .await?;
            return Ok(crate::v1::empty_response(StatusCode::NO_CONTENT));
        }
        other => {
            return Err(HttpError::new(
                StatusCode::NOT_FOUND,
                format!("no action {other:?}: start, stop, load, unload or destroy"),
            ));
        }
    };
    svc.set_targets(rpc(
        &who,
        pb::SetTargetsRequest {
            targets: vec![pb::set_targets_request::Target {
                name: name.to_string(),
                target: crate::convert::target_to_wire(target),
            }],
        },
    ))
    .await?;
    Ok(crate::v1::empty_response(StatusCode::NO_CONTENT))
}
