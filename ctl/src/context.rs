//! What every command gets: the parsed global flags, a lazily connected client and the
//! output streams. No globals: tests and commands see exactly this.

use std::fmt::Display;
use std::io::{self, IsTerminal, Write};

use fleet_api::ApiError;
use fleet_api::client::connect_reason;
use fleet_registry::RegistryError;

use crate::cli::GlobalFlags;
use crate::client::Client;

/// A failure worded exactly as fleetctl words it, with its exit code. Printed once by
/// `main`, as-is (fleet's scripts grep these lines).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub message: String,
    pub code: u8,
}

/// fleetctl's exit status when the command did its work but some records it read
/// could not be decoded and were left out (each named on stderr).
pub const EXIT_SKIPPED: u8 = 5;

/// Shorthand for a failure with exit status 1.
pub fn fail(message: impl Into<String>) -> anyhow::Error {
    Failure {
        message: message.into(),
        code: 1,
    }
    .into()
}

/// Per-invocation state passed to every command.
pub struct Ctx {
    pub global: GlobalFlags,
    client: Option<Client>,
    /// Whether stdout is a terminal (progress displays and hints only then).
    pub tty: bool,
}

impl Ctx {
    pub fn new(global: GlobalFlags) -> Ctx {
        Ctx {
            global,
            client: None,
            tty: io::stdout().is_terminal(),
        }
    }

    /// Connects on first use, so commands that need no cluster (version) never touch it.
    pub async fn client(&mut self) -> anyhow::Result<&Client> {
        let client = match self.client.take() {
            Some(client) => client,
            None => Client::connect(&self.global).await.map_err(|e| {
                let line = match e.downcast_ref::<ApiError>() {
                    Some(api) => api_error_line(api),
                    None => e.to_string(),
                };
                fail(format!("Unable to initialize client: {line}"))
            })?,
        };
        Ok(self.client.insert(client))
    }

    /// Whether a read of this command left out undecodable records.
    pub fn skipped_any(&self) -> bool {
        self.client.as_ref().is_some_and(Client::skipped_any)
    }
}

/// Writes one line to stdout; a closed pipe surfaces as an error `main` treats quietly.
pub fn out(line: impl Display) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "{line}")?;
    stdout.flush()
}

/// Writes one line to stderr (warnings and fleet's stderr messages).
pub fn err(line: impl Display) {
    let _ = writeln!(io::stderr().lock(), "{line}");
}

/// What to try when the cluster cannot be reached.
const ENDPOINT_HINT: &str = "set the address with --endpoint or FLEETCTL_ENDPOINT";

/// An API error as one line; connection failures say where, why and what to try.
pub fn api_error_line(e: &ApiError) -> String {
    match e {
        ApiError::Connect { .. } | ApiError::Timeout { .. } => {
            format!("{e}; is fleetd running there? ({ENDPOINT_HINT}, or reach it with --tunnel)")
        }
        _ => e.to_string(),
    }
}

/// A registry (etcd driver) error as one line, without etcd-client's and tonic's
/// nested debug dumps.
pub fn registry_error_line(e: &RegistryError) -> String {
    if let Some(refusal) = fleet_registry::auth_refusal(e) {
        if !refusal.credentials {
            return refusal.why.to_string();
        }
        return format!(
            "{} (--etcd-username with --etcd-password-file, or FLEETCTL_ETCD_USERNAME and FLEETCTL_ETCD_PASSWORD)",
            refusal.why
        );
    }
    match e {
        RegistryError::Unreachable { endpoints, source } => {
            let reason = etcd_reason(source);
            if reason.contains("UnknownIssuer") {
                return format!(
                    "cannot reach etcd at {endpoints}: {reason}; give the CA that signed etcd's certificate with --ca-file"
                );
            }
            format!(
                "cannot reach etcd at {endpoints}: {reason}; is etcd running there? ({ENDPOINT_HINT})"
            )
        }
        RegistryError::Timeout { .. } => {
            format!("{e}; is etcd running and healthy there? ({ENDPOINT_HINT})")
        }
        RegistryError::Etcd { op, source } => format!("etcd {op} failed: {}", etcd_reason(source)),
        _ => e.to_string(),
    }
}

/// The reason inside an etcd-client error: the OS error of a failed connection, or
/// etcd's own message.
fn etcd_reason(e: &etcd_client::Error) -> String {
    use etcd_client::Error as E;
    match e {
        E::GRpcStatus(status) => match std::error::Error::source(status) {
            Some(source) => connect_reason(source),
            None if status.message().is_empty() => format!("{:?}", status.code()),
            None => status.message().to_string(),
        },
        E::TransportError(t) => connect_reason(t),
        E::IoError(io) => connect_reason(io),
        other => other.to_string(),
    }
}
