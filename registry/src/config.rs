//! How to reach etcd and where fleet's keys live.

use std::path::PathBuf;
use std::time::Duration;

use etcd_client::ConnectOptions;

use crate::error::RegistryError;

/// fleet's historical key prefix, kept so operators find their keys where fleet put them.
pub const DEFAULT_KEY_PREFIX: &str = "/_coreos.com/fleet/";
/// fleet's default `etcd_request_timeout` (it used 1 s). With etcd's default 1 s
/// election timeout a call made as the raft leader dies waits for the next leader:
/// 1.2-2 s typically, 3.0 s at worst as measured (which 3 s failed). 5 s rides out
/// that too, but then calls stalled on a connection a partition killed hold the agent
/// so long that a healed machine did not register again within 20 s: 3 s until lease
/// loss is learnt as soon as etcd answers.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// Interval of the HTTP/2 pings on a connection with open streams. etcd's
/// `--grpc-keepalive-min-time` defaults to 5 s; a client pinging more often is answered
/// GOAWAY `too_many_pings` and loses its connection with every watch on it.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(6);

/// How long a ping may go unanswered before the connection counts as dead: the request
/// timeout, within 1-5 s.
fn keepalive_timeout(request_timeout: Duration) -> Duration {
    request_timeout.clamp(Duration::from_secs(1), Duration::from_secs(5))
}

/// Connection settings for the registry (fleet.conf's `etcd_*` options).
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// Client URLs, e.g. `http://127.0.0.1:2379`.
    pub endpoints: Vec<String>,
    /// Root of fleet's keys; normalised to exactly one trailing `/`.
    pub key_prefix: String,
    /// Bound on every unary etcd call (and on establishing each watch).
    pub request_timeout: Duration,
    /// etcd authentication, when enabled on the cluster.
    pub username: Option<String>,
    pub password: Option<crate::Secret>,
    /// Client TLS (fleet's `etcd_cafile`/`etcd_certfile`/`etcd_keyfile`); needs the
    /// crate's `tls` feature.
    pub tls: Option<TlsFiles>,
}

/// PEM files for TLS to etcd.
#[derive(Clone, Debug, Default)]
pub struct TlsFiles {
    /// CA that signed etcd's server certificate; needed: this build trusts no system roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key, for clusters requiring client authentication.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

impl RegistryConfig {
    /// Settings for one endpoint with the default prefix and timeout.
    pub fn new(endpoint: impl Into<String>) -> Self {
        RegistryConfig {
            endpoints: vec![endpoint.into()],
            key_prefix: DEFAULT_KEY_PREFIX.to_string(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            username: None,
            password: None,
            tls: None,
        }
    }

    /// Same settings under another key prefix (tests use one per test).
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// Same settings with another request timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The endpoints as one string for error messages.
    pub(crate) fn endpoints_label(&self) -> String {
        self.endpoints.join(",")
    }

    /// etcd-client options. Deliberately no client-wide `with_timeout`: it would also
    /// cancel blocking election calls made with the same client; every call is bounded
    /// with `tokio::time::timeout` instead.
    pub(crate) fn connect_options(&self) -> Result<ConnectOptions, RegistryError> {
        if self.endpoints.is_empty() || self.endpoints.iter().any(|e| e.trim().is_empty()) {
            return Err(RegistryError::Config(
                "at least one non-empty etcd endpoint is required".into(),
            ));
        }
        if self.request_timeout.is_zero() {
            return Err(RegistryError::Config(
                "the etcd request timeout must be positive".into(),
            ));
        }
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(self.request_timeout)
            // HTTP/2 pings notice a dead member under a long-lived watch or campaign.
            .with_keep_alive(KEEPALIVE_INTERVAL, keepalive_timeout(self.request_timeout))
            // etcd refuses pings on a connection without streams whatever their rate.
            .with_keep_alive_while_idle(false)
            // A member cut off from its peers answers "no leader" (and ends its
            // watches) instead of serving stale reads or hanging: calls move on.
            .with_require_leader(true)
            // A restarted etcd forgets every auth token: log in again, not fail forever.
            .with_auto_token_refresh(true);
        match (&self.username, &self.password) {
            (Some(u), Some(p)) => opts = opts.with_user(u.clone(), p.expose()),
            (None, None) => {}
            _ => {
                return Err(RegistryError::Config(
                    "etcd username and password must be given together".into(),
                ));
            }
        }
        if let Some(tls) = &self.tls {
            opts = apply_tls(opts, tls)?;
        }
        Ok(opts)
    }
}

#[cfg(feature = "tls")]
fn apply_tls(opts: ConnectOptions, tls: &TlsFiles) -> Result<ConnectOptions, RegistryError> {
    use etcd_client::{Certificate, Identity, TlsOptions};
    let read = |p: &PathBuf| {
        std::fs::read(p).map_err(|e| RegistryError::Config(format!("{}: {e}", p.display())))
    };
    let mut t = TlsOptions::new();
    if let Some(ca) = &tls.ca_file {
        t = t.ca_certificate(Certificate::from_pem(read(ca)?));
    }
    match (&tls.cert_file, &tls.key_file) {
        (Some(c), Some(k)) => t = t.identity(Identity::from_pem(read(c)?, read(k)?)),
        (None, None) => {}
        _ => {
            return Err(RegistryError::Config(
                "etcd TLS certificate and key files must be given together".into(),
            ));
        }
    }
    Ok(opts.with_tls(t))
}

#[cfg(not(feature = "tls"))]
fn apply_tls(_opts: ConnectOptions, _tls: &TlsFiles) -> Result<ConnectOptions, RegistryError> {
    Err(RegistryError::Config(
        "TLS to etcd was requested but this build lacks the `tls` feature of fleet-registry".into(),
    ))
}
