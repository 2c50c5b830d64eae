//! fleetd's API listeners: taken from systemd socket activation (`LISTEN_FDS`) when
//! present, else bound from configuration (the unix socket, mode 0660, and any TCP
//! addresses), then served until shutdown: gRPC and fleet's JSON HTTP API v1 (HTTP/1.1
//! or HTTP/2) on each of them.

use std::net::SocketAddr;
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;

use crate::{ApiContext, ApiError, AuthConfig, FleetService, ServerTls};

/// systemd passes activated sockets from fd 3 on.
const SD_LISTEN_FDS_START: RawFd = 3;

/// Which listeners fleetd opens when systemd did not pass any.
#[derive(Clone, Debug)]
pub struct ListenConfig {
    /// The unix socket (default `/var/run/fleet.sock`); `None` for no unix listener.
    pub unix: Option<PathBuf>,
    /// TCP addresses to bind (fleetd's `api_listen`); empty for none.
    pub tcp: Vec<SocketAddr>,
    /// TLS for every TCP listener (bound or activated); required unless the operator
    /// accepts plaintext (a warning is logged).
    pub tls: Option<ServerTls>,
    /// Take `LISTEN_FDS` sockets when systemd passed them to this process.
    pub socket_activation: bool,
    /// Who may do what (see the `auth` module).
    pub auth: AuthConfig,
}

impl Default for ListenConfig {
    fn default() -> Self {
        ListenConfig {
            unix: Some(PathBuf::from(crate::DEFAULT_SOCKET)),
            tcp: Vec::new(),
            tls: None,
            socket_activation: true,
            auth: AuthConfig::default(),
        }
    }
}

/// Open listeners, ready to serve. The unix socket file this process created is removed
/// on drop.
pub struct Listeners {
    unix: Vec<tokio::net::UnixListener>,
    tcp: Vec<tokio::net::TcpListener>,
    tls: Option<ServerTls>,
    auth: AuthConfig,
    created: Vec<PathBuf>,
    activated: bool,
}

impl Drop for Listeners {
    fn drop(&mut self) {
        for path in &self.created {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn listen_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ApiError {
    let what = what.into();
    move |source| ApiError::Listen { what, source }
}

impl Listeners {
    /// Takes activated sockets if systemd passed some, else binds what `config` says.
    /// Must run inside a tokio runtime.
    pub fn open(config: &ListenConfig) -> Result<Listeners, ApiError> {
        let mut listeners = Listeners {
            unix: Vec::new(),
            tcp: Vec::new(),
            tls: config.tls.clone(),
            auth: config.auth.clone(),
            created: Vec::new(),
            activated: false,
        };
        if config.socket_activation
            && let Some(fds) = activated_fds()
        {
            listeners.activated = true;
            for fd in fds {
                listeners.adopt(fd)?;
            }
        } else {
            if let Some(path) = &config.unix {
                listeners.bind_unix(path)?;
            }
            for addr in &config.tcp {
                let l = std::net::TcpListener::bind(addr)
                    .map_err(listen_err(format!("bind tcp {addr}")))?;
                l.set_nonblocking(true)
                    .map_err(listen_err(format!("tcp {addr}")))?;
                listeners.tcp.push(
                    tokio::net::TcpListener::from_std(l)
                        .map_err(listen_err(format!("tcp {addr}")))?,
                );
            }
        }
        listeners.check_tcp_security()?;
        Ok(listeners)
    }

    /// Plaintext TCP beyond loopback only with `api_allow_plaintext` (warned about);
    /// TLS without a client CA is warned about (every TCP client is then admin).
    fn check_tcp_security(&self) -> Result<(), ApiError> {
        match &self.tls {
            None => {
                let exposed: Vec<SocketAddr> = self
                    .tcp_addrs()
                    .into_iter()
                    .filter(|a| !a.ip().is_loopback())
                    .collect();
                if exposed.is_empty() {
                    return Ok(());
                }
                let shown = exposed
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ");
                if !self.auth.allow_plaintext {
                    return Err(ApiError::Config(format!(
                        "refusing to serve the fleet API on {shown} without TLS: set api_tls_cert and api_tls_key (and api_tls_client_ca), or accept the risk with api_allow_plaintext=true"
                    )));
                }
                tracing::warn!(
                    "INSECURE: the fleet API serves plaintext TCP on {shown} (api_allow_plaintext=true): anyone who can reach it is admin of the cluster and runs code as root on every machine"
                );
            }
            Some(tls) if tls.client_ca.is_none() && !self.tcp.is_empty() => {
                tracing::warn!(
                    addrs = ?self.tcp_addrs(),
                    "the fleet API serves TLS without a client CA (api_tls_client_ca): every TCP client is admin of the cluster"
                );
            }
            Some(_) => {}
        }
        Ok(())
    }

    /// Bound TCP addresses (port 0 resolved), e.g. to publish as the machine's `api_addr`.
    pub fn tcp_addrs(&self) -> Vec<SocketAddr> {
        self.tcp
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// The address other fleetds should use to reach this one (first TCP listener),
    /// with the scheme its TLS setting implies; empty when there is no TCP listener.
    pub fn api_addr(&self, public_ip: Option<std::net::IpAddr>) -> String {
        let Some(addr) = self.tcp_addrs().into_iter().next() else {
            return String::new();
        };
        let ip = match (addr.ip().is_unspecified(), public_ip) {
            (true, Some(ip)) => ip,
            _ => addr.ip(),
        };
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", SocketAddr::new(ip, addr.port()))
    }

    fn bind_unix(&mut self, path: &Path) -> Result<(), ApiError> {
        let shown = path.display().to_string();
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(ApiError::Listen {
                    what: shown,
                    source: std::io::Error::other("exists and is not a socket"),
                });
            }
            // A live socket belongs to another fleetd; a dead one is left over.
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(ApiError::Listen {
                    what: shown,
                    source: std::io::Error::other("another process is serving on it"),
                });
            }
            std::fs::remove_file(path).map_err(listen_err(format!("remove stale {shown}")))?;
        }
        let l =
            tokio::net::UnixListener::bind(path).map_err(listen_err(format!("bind {shown}")))?;
        self.created.push(path.to_path_buf());
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
            .map_err(listen_err(format!("chmod 0660 {shown}")))?;
        self.unix.push(l);
        Ok(())
    }

    /// Takes ownership of one activated fd, as TCP if it has an inet address, else unix.
    fn adopt(&mut self, fd: RawFd) -> Result<(), ApiError> {
        // SAFETY: systemd passed us this fd (LISTEN_PID is ours) and nothing else in
        // this process owns it; it is taken exactly once.
        let tcp = unsafe { std::net::TcpListener::from_raw_fd(fd) };
        if tcp.local_addr().is_ok() {
            // A close-on-exec duplicate, so commands we run never inherit the socket.
            let dup = tcp
                .try_clone()
                .map_err(listen_err(format!("activated fd {fd}")))?;
            drop(tcp);
            dup.set_nonblocking(true)
                .map_err(listen_err(format!("activated fd {fd}")))?;
            self.tcp.push(
                tokio::net::TcpListener::from_std(dup)
                    .map_err(listen_err(format!("activated fd {fd}")))?,
            );
            return Ok(());
        }
        let raw = std::os::fd::IntoRawFd::into_raw_fd(tcp);
        // SAFETY: the same fd, released just above.
        let unix = unsafe { std::os::unix::net::UnixListener::from_raw_fd(raw) };
        unix.local_addr().map_err(listen_err(format!(
            "activated fd {fd} is neither TCP nor unix"
        )))?;
        let dup = unix
            .try_clone()
            .map_err(listen_err(format!("activated fd {fd}")))?;
        drop(unix);
        dup.set_nonblocking(true)
            .map_err(listen_err(format!("activated fd {fd}")))?;
        self.unix.push(
            tokio::net::UnixListener::from_std(dup)
                .map_err(listen_err(format!("activated fd {fd}")))?,
        );
        Ok(())
    }
}

/// The fds systemd passed, if `LISTEN_PID` names this process.
fn activated_fds() -> Option<Vec<RawFd>> {
    let pid: u32 = std::env::var("LISTEN_PID").ok()?.trim().parse().ok()?;
    if pid != std::process::id() {
        return None;
    }
    let n: RawFd = std::env::var("LISTEN_FDS").ok()?.trim().parse().ok()?;
    if !(1..=64).contains(&n) {
        return None;
    }
    Some((SD_LISTEN_FDS_START..SD_LISTEN_FDS_START + n).collect())
}

/// This process's uid (the owner of `/proc/self`).
fn own_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// Opens the listeners and serves the API until `shutdown` is cancelled.
pub async fn serve(
    ctx: ApiContext,
    config: &ListenConfig,
    shutdown: CancellationToken,
) -> Result<(), ApiError> {
    let listeners = Listeners::open(config)?;
    serve_on(listeners, ctx, shutdown).await
}

/// Serves the API on already opened listeners until `shutdown` is cancelled; returns
/// once every listener has stopped (in-flight streams are closed).
pub async fn serve_on(
    mut listeners: Listeners,
    ctx: ApiContext,
    shutdown: CancellationToken,
) -> Result<(), ApiError> {
    let people = ctx.people().clone();
    let svc = FleetService::new(ctx);
    let mut tasks = tokio::task::JoinSet::new();
    let (tls, client_chain) = match &listeners.tls {
        Some(t) => {
            let (acceptor, chain) = crate::tls_accept::acceptor(t)?;
            (Some(acceptor), chain)
        }
        None => (None, None),
    };
    // gRPC and fleet's HTTP API v1 on every listener: HTTP/2 (gRPC, or HTTP/2
    // clients of the JSON API) and HTTP/1.1 are told apart per connection.
    let policy = std::sync::Arc::new(crate::auth::Policy {
        operator_gid: listeners.auth.operator_gid,
        allow_plaintext: listeners.auth.allow_plaintext,
        client_chain,
        own_uid: own_uid(),
        people,
    });
    let routes = crate::v1::routes(svc, policy);
    for l in listeners.unix.drain(..) {
        let routes = routes.clone();
        let stop = shutdown.clone();
        tasks.spawn(async move {
            Server::builder()
                .accept_http1(true)
                .add_routes(routes)
                .serve_with_incoming_shutdown(UnixListenerStream::new(l), stop.cancelled_owned())
                .await
        });
    }
    for l in listeners.tcp.drain(..) {
        let mut builder = Server::builder().accept_http1(true);
        let routes = routes.clone();
        let stop = shutdown.clone();
        match &tls {
            Some(acceptor) => {
                let incoming = crate::tls_accept::incoming(l, acceptor.clone(), stop.clone());
                tasks.spawn(async move {
                    builder
                        .add_routes(routes)
                        .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
                        .await
                });
            }
            None => {
                tasks.spawn(async move {
                    builder
                        .add_routes(routes)
                        .serve_with_incoming_shutdown(
                            TcpListenerStream::new(l),
                            stop.cancelled_owned(),
                        )
                        .await
                });
            }
        }
    }
    let mut first_err = None;
    while let Some(done) = tasks.join_next().await {
        let err = match done {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => ApiError::Serve(e),
            Err(e) => ApiError::Listen {
                what: "server task".into(),
                source: std::io::Error::other(e.to_string()),
            },
        };
        // One listener failing stops them all: fleetd should not run half-reachable.
        shutdown.cancel();
        first_err.get_or_insert(err);
    }
    drop(listeners);
    first_err.map_or(Ok(()), Err)
}
