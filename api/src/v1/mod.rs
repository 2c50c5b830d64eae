//! fleet's JSON HTTP API v1 (`/fleet/v1/…`, and the legacy `/v1-alpha/…`), served on
//! the same listeners as gRPC so fleet's own clients (its Go `fleetctl`, its `client`
//! package, dashboards, `curl --unix-socket` scripts) keep working.
//!
//! Every request first passes `auth::check` (roles). Requests whose content type is
//! `application/grpc` never reach this module: tonic
//! routes them. Everything else lands in [`Http::handle`], which follows fleet's
//! routing (exact paths, 404 for anything else, 405 with fleet's texts). Writes go
//! through the gRPC [`FleetService`] methods, so a unit created here obeys exactly the
//! validation of every other path; reads use the registry the service reads.

mod discovery;
mod entities;
mod machines;
mod page;
mod state;
mod units;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use tonic::service::Routes;

use crate::FleetService;

/// Bodies larger than this are refused (gRPC's default message limit, 4 MiB).
const MAX_BODY: usize = 4 * 1024 * 1024;

/// The gRPC service plus fleet's HTTP API v1 as the fallback for every other request.
/// Every request, of either, first passes the access check of `policy`.
pub(crate) fn routes(svc: FleetService, policy: Arc<crate::auth::Policy>) -> Routes {
    let http = Arc::new(Http { svc: svc.clone() });
    let console = crate::ui::router(svc.clone());
    let router = Routes::new(svc.into_server())
        .into_axum_router()
        .merge(console)
        .route("/metrics", axum::routing::get(metrics))
        .fallback(move |req: Request| {
            let http = http.clone();
            async move { http.handle(req).await }
        })
        .layer(axum::middleware::from_fn(
            move |req: Request, next: axum::middleware::Next| {
                crate::auth::check(policy.clone(), req, next)
            },
        ))
        .layer(axum::middleware::from_fn(counted));
    Routes::from(router)
}

/// `GET /metrics`: fleetd's metrics in Prometheus' text format.
async fn metrics() -> Response {
    let mut resp = Response::new(Body::from(fleet_metrics::encode()));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(fleet_metrics::CONTENT_TYPE),
    );
    resp
}

/// Counts every request by method and answer (refused ones included).
async fn counted(req: Request, next: axum::middleware::Next) -> Response {
    let grpc = is_grpc(&req);
    let method = if grpc {
        req.uri().path().to_string()
    } else {
        format!("{} {}", req.method(), route_label(req.uri().path()))
    };
    let resp = next.run(req).await;
    // A gRPC call's status is in its headers when it failed before answering; a
    // successful unary or streaming call's comes in trailers, after this layer.
    let code = match resp.headers().get("grpc-status") {
        Some(v) => v.to_str().unwrap_or("?").to_string(),
        None if grpc => "0".into(),
        None => resp.status().as_str().to_string(),
    };
    fleet_metrics::api_call(&method, &code);
    resp
}

/// The route of a path, without unit names (so labels stay few).
fn route_label(path: &str) -> String {
    for dir in ["/units/", "/state/"] {
        if let Some(i) = path.find(dir) {
            let (head, rest) = path.split_at(i + dir.len());
            let tail = rest.split_once('/').map_or("", |(_, t)| t);
            return if tail.is_empty() {
                format!("{head}:name")
            } else {
                format!("{head}:name/{tail}")
            };
        }
    }
    path.to_string()
}

/// An error answered as fleet did: `{"error":{"code":<status>,"message":"…"}}`.
#[derive(Debug)]
pub(crate) struct HttpError {
    status: StatusCode,
    message: String,
}

impl HttpError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> HttpError {
        HttpError {
            status,
            message: message.into(),
        }
    }

    /// The one line the client is told.
    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": {"code": self.status.as_u16(), "message": self.message}
        });
        json_response(self.status, &body)
    }
}

/// The service's gRPC status as fleet's HTTP status, keeping the message.
impl From<tonic::Status> for HttpError {
    fn from(s: tonic::Status) -> HttpError {
        use tonic::Code;
        let status = match s.code() {
            Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::AlreadyExists | Code::FailedPrecondition | Code::Aborted => StatusCode::CONFLICT,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        HttpError::new(status, s.message())
    }
}

impl From<fleet_registry::RegistryError> for HttpError {
    fn from(e: fleet_registry::RegistryError) -> HttpError {
        crate::server::registry_status(e).into()
    }
}

pub(crate) type HttpResult = Result<Response, HttpError>;

/// A JSON response with fleet's content type.
pub(crate) fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Response {
    // Our entity types are strings, lists and maps: serialising them cannot fail.
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut resp = Response::new(Body::from(bytes));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// A body-less answer (201, 204) that still says JSON, as fleet's did.
pub(crate) fn empty_response(status: StatusCode) -> Response {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// The HTTP API over the gRPC service.
pub(crate) struct Http {
    svc: FleetService,
}

impl Http {
    async fn handle(&self, req: Request) -> Response {
        if is_grpc(&req) {
            // A gRPC call to a service or method we do not have.
            let (parts, ()) = tonic::Status::unimplemented("")
                .into_http::<()>()
                .into_parts();
            return Response::from_parts(parts, Body::empty());
        }
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let mut resp = match self.route(req).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(%method, %path, status = %e.status, message = %e.message, "fleet API v1 request refused");
                e.into_response()
            }
        };
        resp.headers_mut().insert(
            header::SERVER,
            HeaderValue::from_static(concat!("fleetd/", env!("CARGO_PKG_VERSION"))),
        );
        resp
    }

    async fn route(&self, req: Request) -> HttpResult {
        if let Some(registered) = &self.svc.ctx.registered
            && !*registered.borrow()
        {
            return Err(HttpError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "fleet server unable to communicate with etcd",
            ));
        }
        let path = req.uri().path().to_string();
        let Some(rest) = path
            .strip_prefix("/fleet/v1")
            .or_else(|| path.strip_prefix("/v1-alpha"))
        else {
            return Err(if path == "/" {
                not_allowed("only requests under /fleet/v1/ are supported")
            } else {
                not_found()
            });
        };
        let method = req.method().clone();
        match rest {
            "" | "/" => Err(not_allowed(
                "only requests to the resources of /fleet/v1/ are supported",
            )),
            "/discovery" => match method {
                Method::GET => Ok(discovery::document()),
                _ => Err(HttpError::bad_request(
                    "only HTTP GET supported against this resource",
                )),
            },
            "/units" => match method {
                Method::GET => units::list(&self.svc, req.uri()).await,
                _ => Err(not_allowed("only GET supported against this resource")),
            },
            "/state" => match method {
                Method::GET => state::list(&self.svc, req.uri()).await,
                _ => Err(not_allowed("only GET supported against this resource")),
            },
            "/machines" => match method {
                Method::GET => machines::list(&self.svc, req.uri()).await,
                Method::PATCH => machines::patch(&self.svc, req).await,
                _ => Err(not_allowed(
                    "only GET and PATCH supported against this resource",
                )),
            },
            _ => {
                if let Some(name) = item(rest, "/units/") {
                    let name = decode_segment(name)?;
                    match method {
                        Method::GET => units::get(&self.svc, &name).await,
                        Method::PUT => units::put(&self.svc, &name, req).await,
                        Method::DELETE => units::delete(&self.svc, &name).await,
                        _ => Err(not_allowed(
                            "only GET, PUT and DELETE supported against this resource",
                        )),
                    }
                } else if let Some(name) = item(rest, "/state/") {
                    let name = decode_segment(name)?;
                    match method {
                        Method::GET => state::get(&self.svc, &name).await,
                        _ => Err(not_allowed("only GET supported against this resource")),
                    }
                } else {
                    Err(not_found())
                }
            }
        }
    }
}

/// The one path segment after `prefix`; `None` for an empty one or deeper paths.
fn item<'a>(rest: &'a str, prefix: &str) -> Option<&'a str> {
    rest.strip_prefix(prefix)
        .filter(|s| !s.is_empty() && !s.contains('/'))
}

fn decode_segment(s: &str) -> Result<String, HttpError> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| HttpError::bad_request("path is not valid UTF-8"))
}

fn not_found() -> HttpError {
    HttpError::new(StatusCode::NOT_FOUND, "resource not found")
}

fn not_allowed(message: &str) -> HttpError {
    HttpError::new(StatusCode::METHOD_NOT_ALLOWED, message)
}

fn is_grpc(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// Every value of query parameter `key` (`+` and `%XX` decoded, as Go's url package).
pub(crate) fn query_values(uri: &axum::http::Uri, key: &str) -> Vec<String> {
    let Some(query) = uri.query() else {
        return Vec::new();
    };
    let decode = |s: &str| {
        let s = s.replace('+', " ");
        percent_encoding::percent_decode_str(&s)
            .decode_utf8_lossy()
            .into_owned()
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k) == key).then(|| decode(v))
        })
        .collect()
}

/// The body, at most [`MAX_BODY`] bytes.
pub(crate) async fn body_bytes(req: Request) -> Result<axum::body::Bytes, HttpError> {
    axum::body::to_bytes(req.into_body(), MAX_BODY)
        .await
        .map_err(|e| {
            HttpError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("unable to read body (at most {MAX_BODY} bytes): {e}"),
            )
        })
}
