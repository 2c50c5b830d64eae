//! Who may do what through the API: every request (gRPC and HTTP API v1, any method,
//! including ones added later) passes [`check`] before it reaches the service.
//!
//! Roles, from least to most: `viewer` reads (list, cat, status, journal); `operator`
//! also submits, loads, starts, stops, unloads and destroys units; `admin` may do
//! everything, including calls not listed here (a new method is admin-only until it is
//! classified in [`needs`]). Who has which role:
//!
//! - **TLS client certificates** (TCP with `api_tls_client_ca`): the certificate's
//!   subject Organization (`O=`) names the role: `fleet:admin`, `fleet:operator` or
//!   `fleet:viewer` (the highest one wins); a certificate the CA signed without any of
//!   them is a viewer. A client without a certificate is refused ("certificate
//!   required").
//! - **The unix socket**: the peer's uid 0 (or fleetd's own uid) is admin; a member of
//!   `api_operator_group` is operator; anyone else who can open the socket is a viewer.
//! - **TCP without a client CA** (TLS without `api_tls_client_ca`, plaintext on a
//!   loopback address, or plaintext with `api_allow_plaintext`): clients cannot be
//!   told apart, so each is admin; fleetd warns at start-up.
//! - **Bearer tokens** (`fleetctl token create`), on any listener: a request carrying
//!   `Authorization: Bearer <token>` or the console's `fleet_token` cookie has the
//!   token's role, whatever the connection would give (a viewer token on an admin
//!   connection is a viewer). An unknown, revoked or expired token is refused, never
//!   ignored. The console's endpoints (`/ui/api/`) accept only tokens, so a browser
//!   never lends its connection's role to another site's requests.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo, UdsConnectInfo};

/// What a caller may do; ordered, each role including the ones below it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl Role {
    /// The role a certificate's Organization value names (`fleet:<role>`).
    fn from_organization(o: &str) -> Option<Role> {
        Role::from_name(o.strip_prefix("fleet:")?)
    }

    /// `viewer`, `operator` or `admin`.
    pub fn from_name(name: &str) -> Option<Role> {
        match name {
            "admin" => Some(Role::Admin),
            "operator" => Some(Role::Operator),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }
}

/// The name of the cookie the console's login sets.
pub(crate) const TOKEN_COOKIE: &str = "fleet_token";

/// The caller a request was authenticated as; handlers read it from the request's
/// extensions (e.g. the console shows only the actions the role allows).
#[derive(Clone, Debug)]
pub(crate) struct Caller {
    pub who: String,
    pub role: Role,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        })
    }
}

/// fleet.conf's API access settings.
#[derive(Clone, Debug, Default)]
pub struct AuthConfig {
    /// Unix-socket peers in this group are operators (`api_operator_group`).
    pub operator_gid: Option<u32>,
    /// Serve plaintext TCP on non-loopback addresses (`api_allow_plaintext`).
    pub allow_plaintext: bool,
}

/// What the listeners enforce, fixed when serving starts.
#[derive(Debug)]
pub(crate) struct Policy {
    pub operator_gid: Option<u32>,
    pub allow_plaintext: bool,
    /// With a client CA: the check every TCP client's certificate chain must pass
    /// (the TLS handshake only proves the client holds the certificate's key).
    pub client_chain: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
    /// fleetd's own uid: a unix peer running as fleetd's user is admin.
    pub own_uid: Option<u32>,
    /// People, namespaces and bearer tokens, followed by a watch: checked on every
    /// call without an etcd round trip.
    pub people: fleet_registry::PeopleView,
}

/// The group id of `name` (a number, or a group of `/etc/group`).
pub fn resolve_group(name: &str) -> Result<u32, String> {
    if let Ok(gid) = name.parse::<u32>() {
        return Ok(gid);
    }
    let groups = std::fs::read_to_string("/etc/group").map_err(|e| format!("/etc/group: {e}"))?;
    groups
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 3 && f[0] == name)
        .and_then(|f| f[2].parse().ok())
        .ok_or_else(|| format!("no group {name:?} in /etc/group"))
}

/// A refused request: its gRPC code and the line the client prints.
struct Refusal {
    code: tonic::Code,
    message: String,
}

/// Who is calling and with which role, from the connection the request came on.
fn caller(policy: &Policy, req: &Request) -> Result<(String, Role), Refusal> {
    let ext = req.extensions();
    if let Some(uds) = ext.get::<UdsConnectInfo>() {
        return Ok(unix_caller(policy, uds));
    }
    if let Some(tls) = ext.get::<TlsConnectInfo<TcpConnectInfo>>() {
        let peer = tls.get_ref().remote_addr();
        let certs = tls.peer_certs();
        return match certs.as_deref().map(Vec::as_slice) {
            Some([leaf, intermediates @ ..]) => {
                if let Some(chain) = &policy.client_chain {
                    let now = rustls::pki_types::UnixTime::now();
                    chain
                        .verify_client_cert(leaf, intermediates, now)
                        .map_err(|e| Refusal {
                            code: tonic::Code::Unauthenticated,
                            message: format!(
                                "client certificate refused ({e}): it must be signed by this fleet API's client CA"
                            ),
                        })?;
                }
                cert_caller(leaf.as_ref()).map_err(|why| Refusal {
                    code: tonic::Code::Unauthenticated,
                    message: format!("client certificate unusable: {why}"),
                })
            }
            _ if policy.client_chain.is_some() => Err(Refusal {
                code: tonic::Code::Unauthenticated,
                message: "certificate required: this fleet API serves only clients with a \
                          certificate signed by its client CA (fleetctl --cert-file and --key-file)"
                    .into(),
            }),
            _ => Ok((label(peer), Role::Admin)),
        };
    }
    if let Some(tcp) = ext.get::<TcpConnectInfo>() {
        let peer = tcp.remote_addr();
        let loopback = peer.is_some_and(|p| p.ip().is_loopback());
        if loopback || policy.allow_plaintext {
            return Ok((label(peer), Role::Admin));
        }
        return Err(Refusal {
            code: tonic::Code::Unauthenticated,
            message: "plaintext TCP refused: this fleet API requires TLS (https://)".into(),
        });
    }
    Err(Refusal {
        code: tonic::Code::Unauthenticated,
        message: "unknown connection: refused".into(),
    })
}

fn label(peer: Option<SocketAddr>) -> String {
    peer.map_or_else(|| "tcp client".to_string(), |p| p.to_string())
}

fn unix_caller(policy: &Policy, uds: &UdsConnectInfo) -> (String, Role) {
    let Some(cred) = uds.peer_cred else {
        return ("unix client".into(), Role::Viewer);
    };
    let uid = cred.uid();
    let who = format!("uid {uid}");
    if uid == 0 || Some(uid) == policy.own_uid {
        return (who, Role::Admin);
    }
    if let Some(gid) = policy.operator_gid
        && (cred.gid() == gid || cred.pid().is_some_and(|pid| in_group(pid, gid)))
    {
        return (who, Role::Operator);
    }
    (who, Role::Viewer)
}

/// Whether process `pid` has `gid` among its supplementary groups.
fn in_group(pid: i32, gid: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .is_some_and(|g| g.split_whitespace().any(|x| x.parse() == Ok(gid)))
}

/// The certificate's CN and the role its Organization names (viewer when none does).
fn cert_caller(der: &[u8]) -> Result<(String, Role), String> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
    let subject = cert.subject();
    let cn = subject
        .iter_common_name()
        .find_map(|a| a.as_str().ok())
        .unwrap_or("(no CN)");
    let role = subject
        .iter_organization()
        .filter_map(|a| a.as_str().ok())
        .filter_map(Role::from_organization)
        .max()
        .unwrap_or(Role::Viewer);
    Ok((format!("CN={cn}"), role))
}

/// The bearer token a request carries: `Authorization: Bearer`, else the cookie.
pub(crate) fn bearer(req: &Request) -> Option<String> {
    let headers = req.headers();
    if let Some(v) = headers.get(axum::http::header::AUTHORIZATION) {
        let v = v.to_str().ok()?;
        return v.strip_prefix("Bearer ").map(|t| t.trim().to_string());
    }
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == TOKEN_COOKIE)
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty())
}

/// The token's user and role; refused when the token is not a live one.
async fn token_caller(policy: &Policy, token: &str) -> Result<(String, Role), Refusal> {
    let refused = |message: String| Refusal {
        code: tonic::Code::Unauthenticated,
        message,
    };
    match policy.people.token(token).await {
        Ok(Some(record)) => match Role::from_name(&record.role) {
            Some(role) => Ok((format!("token user {}", record.user), role)),
            None => Err(refused(format!("token has unknown role {:?}", record.role))),
        },
        Ok(None) => Err(refused(
            "token unknown, revoked or expired: create one with `fleetctl token create`".into(),
        )),
        Err(e) => Err(Refusal {
            code: tonic::Code::Unavailable,
            message: format!("cannot check the token: {e}"),
        }),
    }
}

/// The role a request needs, and what it does in the words of a refusal.
fn needs(req: &Request, grpc: bool) -> (Role, String) {
    if grpc {
        let path = req.uri().path();
        let (service, method) = path
            .trim_start_matches('/')
            .split_once('/')
            .unwrap_or((path, ""));
        if service != "fleet.v1.Fleet" {
            return (Role::Admin, format!("call {path}"));
        }
        return match method {
            "GetUnit" | "GetUnits" | "GetUnitViews" | "Snapshot" | "ListMachines"
            | "ListStates" | "WatchStates" | "Journal" | "Status" | "ListDrained"
            | "ListNamespaces" => (Role::Viewer, String::new()),
            "CreateUnit" | "CreateUnits" | "ReplaceUnit" => (Role::Operator, "submit units".into()),
            "SetTargets" => (Role::Operator, "start, stop, load or unload units".into()),
            "DestroyUnit" | "DestroyUnits" => (Role::Operator, "destroy units".into()),
            // Machines are the whole cluster's, not one team's: admin only.
            "DrainMachine" | "UndrainMachine" => (Role::Admin, "drain or undrain machines".into()),
            other => (Role::Admin, format!("call {other}")),
        };
    }
    match *req.method() {
        Method::GET | Method::HEAD | Method::OPTIONS => (Role::Viewer, String::new()),
        Method::DELETE => (Role::Operator, "destroy units".into()),
        _ => (Role::Operator, "submit, start or stop units".into()),
    }
}

/// How much of a refused request's body is read (and dropped) before the answer.
const REFUSED_BODY_LIMIT: usize = 256 * 1024;
/// How long a refused request's body is waited for before the answer.
const REFUSED_BODY_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The middleware every request passes: refused requests never reach the service.
pub(crate) async fn check(policy: Arc<Policy>, mut req: Request, next: Next) -> Response {
    let grpc = req
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if !grpc && crate::ui::is_public(req.uri().path()) {
        return next.run(req).await;
    }
    let who = match bearer(&req) {
        Some(token) => token_caller(&policy, &token).await,
        // The console's data and actions need a token even where the connection alone
        // would be admin: a browser must not lend its loopback connection to other
        // sites' requests.
        None if req.uri().path().starts_with("/ui/api/") => Err(Refusal {
            code: tonic::Code::Unauthenticated,
            message: "log in with a token (fleetctl token create)".into(),
        }),
        None => caller(&policy, &req),
    };
    // A registered person (issue 17) acts in one namespace with their role there; any
    // other caller keeps the connection's or token's role over the whole cluster.
    let user = match &who {
        Ok((label, _)) => match person(label) {
            Some(name) => match policy.people.user(name).await {
                Ok(record) => record.map(|r| (name.to_string(), r)),
                Err(e) => {
                    return refuse(
                        grpc,
                        req,
                        Refusal {
                            code: tonic::Code::Unavailable,
                            message: format!("cannot check user {name}: {e}"),
                        },
                    )
                    .await;
                }
            },
            None => None,
        },
        Err(_) => None,
    };
    let refusal = match who {
        Err(r) => r,
        Ok((who, _)) if user.is_some() => {
            let (name, record) = user.unwrap_or_default();
            match person_check(&policy, &mut req, grpc, &who, &name, &record).await {
                Ok(()) => return next.run(req).await,
                Err(r) => {
                    tracing::info!(%who, path = req.uri().path(), "fleet API: refused");
                    r
                }
            }
        }
        Ok((who, role)) => {
            let (needed, what) = needs(&req, grpc);
            if role >= needed {
                req.extensions_mut().insert(Caller { who, role });
                return next.run(req).await;
            }
            tracing::info!(%who, %role, path = req.uri().path(), "fleet API: refused");
            Refusal {
                code: tonic::Code::PermissionDenied,
                message: format!("role {role} may not {what} (this needs role {needed})"),
            }
        }
    };
    refuse(grpc, req, refusal).await
}

/// A refusal as the protocol answers it: a gRPC status, or fleet's HTTP error.
async fn refuse(grpc: bool, req: Request, refusal: Refusal) -> Response {
    if grpc {
        return tonic::Status::new(refusal.code, refusal.message).into_http();
    }
    // Read what the client is still sending before answering: an HTTP/2 stream
    // answered with its request body unread is reset, and clients such as curl then
    // report a stream error instead of the refusal. Bounded in size and time.
    let _ = tokio::time::timeout(
        REFUSED_BODY_WAIT,
        axum::body::to_bytes(req.into_body(), REFUSED_BODY_LIMIT),
    )
    .await;
    let status = match refusal.code {
        tonic::Code::PermissionDenied => StatusCode::FORBIDDEN,
        tonic::Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::UNAUTHORIZED,
    };
    crate::v1::HttpError::new(status, refusal.message).into_response()
}

/// A person's name from a caller's label: a certificate's CN or a token's user.
fn person(label: &str) -> Option<&str> {
    label
        .strip_prefix("CN=")
        .or_else(|| label.strip_prefix("token user "))
        .filter(|n| fleet_registry::namespaces::valid_user_name(n))
}

/// What a call does within a namespace, for a person's role there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NsNeed {
    Read,
    /// Replace a unit, start, stop, load or unload: `user` and `admin`.
    Change,
    /// Create or destroy units: `admin`.
    CreateDestroy,
    /// Machines, the console, metrics, calls not classified: superadmin only.
    Cluster,
}

fn ns_needs(req: &Request, grpc: bool) -> NsNeed {
    let path = req.uri().path();
    if grpc {
        let method = path.rsplit('/').next().unwrap_or_default();
        if !path.starts_with("/fleet.v1.Fleet/") {
            return NsNeed::Cluster;
        }
        return match method {
            "GetUnit" | "GetUnits" | "GetUnitViews" | "Snapshot" | "ListMachines"
            | "ListStates" | "WatchStates" | "Journal" | "Status" | "ListDrained"
            | "ListNamespaces" => NsNeed::Read,
            "ReplaceUnit" | "SetTargets" => NsNeed::Change,
            "CreateUnit" | "CreateUnits" | "DestroyUnit" | "DestroyUnits" => NsNeed::CreateDestroy,
            _ => NsNeed::Cluster,
        };
    }
    if !path.starts_with("/fleet/v1/") {
        return NsNeed::Cluster;
    }
    match *req.method() {
        Method::GET | Method::HEAD | Method::OPTIONS => NsNeed::Read,
        Method::DELETE if path.starts_with("/fleet/v1/units") => NsNeed::CreateDestroy,
        // v1's PUT changes a unit's desired state, or creates or replaces the unit:
        // the handler asks for admin when it creates or replaces (`v1::units::put`).
        Method::PUT if path.starts_with("/fleet/v1/units") => NsNeed::Change,
        _ => NsNeed::Cluster,
    }
}

/// Whether `record` may make this call, in the namespace it names; on success the
/// request carries the [`crate::scope::Scope`] its handler confines it to.
async fn person_check(
    policy: &Policy,
    req: &mut Request,
    grpc: bool,
    who: &str,
    name: &str,
    record: &fleet_registry::UserRecord,
) -> Result<(), Refusal> {
    use fleet_core::Namespace;
    use fleet_registry::NsRole;
    let denied = |message: String| Refusal {
        code: tonic::Code::PermissionDenied,
        message,
    };
    let ns = match req.headers().get(crate::scope::NAMESPACE_HEADER) {
        Some(v) if grpc => {
            let v = v.to_str().unwrap_or_default();
            Namespace::parse(v).map_err(|e| Refusal {
                code: tonic::Code::InvalidArgument,
                message: e.to_string(),
            })?
        }
        _ => Namespace::default_ns(),
    };
    let known = policy.people.namespaces().await.map_err(|e| Refusal {
        code: tonic::Code::Unavailable,
        message: format!("cannot read namespaces: {e}"),
    })?;
    if !known.contains(&ns) {
        return Err(denied(format!("no access: namespace {ns} does not exist")));
    }
    let need = ns_needs(req, grpc);
    let Some(ns_role) = record.role_in(&ns) else {
        return Err(denied(format!(
            "no access: user {name} has no role in namespace {ns}"
        )));
    };
    let allowed = match need {
        NsNeed::Read => true,
        NsNeed::Change => ns_role >= NsRole::User,
        NsNeed::CreateDestroy => ns_role >= NsRole::Admin,
        NsNeed::Cluster => record.superadmin,
    };
    if !allowed {
        let (_, mut what) = needs(req, grpc);
        if what.is_empty() {
            what = format!("use {}", req.uri().path());
        }
        let wanted = match need {
            NsNeed::Change => "user or admin",
            NsNeed::CreateDestroy => "admin",
            _ => "superadmin",
        };
        return Err(denied(format!(
            "user {name} ({ns_role} in namespace {ns}) may not {what} (this needs {wanted})"
        )));
    }
    let role = match (record.superadmin, ns_role) {
        (true, _) => Role::Admin,
        (false, NsRole::Viewer) => Role::Viewer,
        (false, _) => Role::Operator,
    };
    req.extensions_mut().insert(Caller {
        who: who.to_string(),
        role,
    });
    req.extensions_mut().insert(crate::scope::Scope {
        ns,
        known,
        user: name.to_string(),
        role: ns_role,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_come_from_fleet_organizations_only() {
        assert_eq!(
            Role::from_organization("fleet:operator"),
            Some(Role::Operator)
        );
        assert_eq!(Role::from_organization("fleet:admin"), Some(Role::Admin));
        assert_eq!(Role::from_organization("admin"), None);
        assert_eq!(Role::from_organization("fleet:root"), None);
        assert!(Role::Admin > Role::Operator && Role::Operator > Role::Viewer);
    }

    fn request(method: Method, path: &str) -> Request {
        axum::http::Request::builder()
            .method(method)
            .uri(path)
            .body(axum::body::Body::empty())
            .unwrap()
    }

    #[test]
    fn reads_are_viewer_writes_operator_and_anything_new_admin() {
        let grpc = |m: &str| {
            needs(
                &request(Method::POST, &format!("/fleet.v1.Fleet/{m}")),
                true,
            )
        };
        for m in [
            "GetUnits",
            "GetUnitViews",
            "Snapshot",
            "ListMachines",
            "WatchStates",
            "Journal",
            "Status",
        ] {
            assert_eq!(grpc(m).0, Role::Viewer, "{m}");
        }
        for m in [
            "CreateUnits",
            "ReplaceUnit",
            "SetTargets",
            "DestroyUnit",
            "DestroyUnits",
        ] {
            assert_eq!(grpc(m).0, Role::Operator, "{m}");
        }
        // A method this table does not know yet (e.g. one added later) is admin-only,
        // and so is any other service.
        assert_eq!(grpc("DrainMachine").0, Role::Admin);
        let other = request(Method::POST, "/grpc.reflection.v1.ServerReflection/Info");
        assert_eq!(needs(&other, true).0, Role::Admin);
        let http = |m: Method| needs(&request(m, "/fleet/v1/units/a.service"), false).0;
        assert_eq!(http(Method::GET), Role::Viewer);
        assert_eq!(http(Method::PUT), Role::Operator);
        assert_eq!(http(Method::DELETE), Role::Operator);
        assert_eq!(http(Method::PATCH), Role::Operator);
    }

    #[test]
    fn tokens_come_from_the_bearer_header_or_the_console_cookie() {
        let with = |name: &str, value: &str| {
            let mut r = request(Method::GET, "/ui/api/me");
            r.headers_mut().insert(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
            bearer(&r)
        };
        assert_eq!(
            with("authorization", "Bearer fleet_ab"),
            Some("fleet_ab".into())
        );
        assert_eq!(with("authorization", "Basic x"), None);
        assert_eq!(
            with("cookie", "a=1; fleet_token=fleet_cd"),
            Some("fleet_cd".into())
        );
        assert_eq!(with("cookie", "fleet_token="), None);
        assert_eq!(with("cookie", "other=fleet_token"), None);
        assert_eq!(bearer(&request(Method::GET, "/")), None);
        assert_eq!(Role::from_name("operator"), Some(Role::Operator));
        assert_eq!(Role::from_name("root"), None);
    }

    #[test]
    fn what_each_call_needs_of_a_person_in_a_namespace() {
        let grpc = |m: &str| {
            ns_needs(
                &request(Method::POST, &format!("/fleet.v1.Fleet/{m}")),
                true,
            )
        };
        for m in [
            "GetUnits",
            "Snapshot",
            "WatchStates",
            "Journal",
            "ListNamespaces",
        ] {
            assert_eq!(grpc(m), NsNeed::Read, "{m}");
        }
        assert_eq!(grpc("SetTargets"), NsNeed::Change);
        assert_eq!(grpc("ReplaceUnit"), NsNeed::Change);
        assert_eq!(grpc("CreateUnits"), NsNeed::CreateDestroy);
        assert_eq!(grpc("DestroyUnits"), NsNeed::CreateDestroy);
        assert_eq!(grpc("DrainMachine"), NsNeed::Cluster);
        assert_eq!(grpc("SomethingNew"), NsNeed::Cluster);
        let http = |m: Method, p: &str| ns_needs(&request(m, p), false);
        assert_eq!(http(Method::GET, "/fleet/v1/units"), NsNeed::Read);
        assert_eq!(
            http(Method::PUT, "/fleet/v1/units/a.service"),
            NsNeed::Change
        );
        assert_eq!(
            http(Method::DELETE, "/fleet/v1/units/a.service"),
            NsNeed::CreateDestroy
        );
        assert_eq!(http(Method::PATCH, "/fleet/v1/machines"), NsNeed::Cluster);
        assert_eq!(http(Method::GET, "/ui/api/snapshot"), NsNeed::Cluster);
        assert_eq!(person("CN=alice"), Some("alice"));
        assert_eq!(person("token user bob"), Some("bob"));
        assert_eq!(person("uid 0"), None);
        assert_eq!(person("CN=(no CN)"), None);
    }

    #[test]
    fn numeric_and_named_groups_resolve() {
        assert_eq!(resolve_group("1234"), Ok(1234));
        assert_eq!(resolve_group("root"), Ok(0));
        assert!(resolve_group("no-such-group-x").is_err());
    }
}
