//! The one error type of the registry; every variant names what the user must look at.

use std::time::Duration;

use fleet_core::{MachineId, UnitName};

use crate::model::LeaseId;

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The configuration cannot work (empty key prefix, no endpoints, TLS files…).
    #[error("invalid registry configuration: {0}")]
    Config(String),
    /// No connection to any endpoint.
    #[error("etcd at {endpoints} is unreachable: {source}")]
    Unreachable {
        endpoints: String,
        #[source]
        source: etcd_client::Error,
    },
    /// The request was not answered in time (etcd down, partitioned or overloaded).
    #[error("etcd at {endpoints} did not answer within {timeout:?}")]
    Timeout {
        endpoints: String,
        timeout: Duration,
    },
    /// etcd answered with an error.
    #[error("etcd {op} failed: {source}")]
    Etcd {
        op: &'static str,
        #[source]
        source: etcd_client::Error,
    },
    /// A stored value that this version cannot decode.
    #[error("corrupt registry value at {key}: {reason}")]
    Corrupt { key: String, reason: String },
    /// The unit's stored value (its canonical text, JSON-escaped, with its hash) would
    /// exceed the 1 MiB unit limit; nothing was written.
    #[error("unit {unit} is too large to store: {size} bytes encoded, the limit is {max} bytes")]
    UnitTooLarge {
        unit: UnitName,
        size: usize,
        max: usize,
    },
    /// The unit is not in the registry.
    #[error("unit {0} does not exist")]
    UnitNotFound(UnitName),
    /// The lease expired or was revoked: keys bound to it are gone.
    #[error("etcd lease {0} expired or was revoked")]
    LeaseLost(LeaseId),
    /// A watch asked for history etcd has compacted away: re-list, then watch again
    /// from the listed revision + 1.
    #[error(
        "etcd compacted the history up to revision {compact_revision}; re-list and watch again"
    )]
    Compacted { compact_revision: i64 },
    /// A fenced engine write found another leader key: this engine was deposed and
    /// must stop writing.
    #[error("this engine is no longer the leader; its schedule write was refused")]
    NotLeader,
    /// The machine key exists under a lease that is not ours.
    #[error(
        "machine {machine} is already registered under lease {lease} by another fleetd (same machine ID on two hosts, or a previous registration that has not expired yet)"
    )]
    MachineTaken { machine: MachineId, lease: LeaseId },
    /// etcd refused a write for lack of permission: the keys and the fleet etcd role
    /// that would allow it (see `roles`).
    #[error("etcd denied writing {keys}: this etcd user lacks the role {role}")]
    PermissionDenied { keys: String, role: String },
    /// An agent tried to publish a state for another machine.
    #[error("machine {own} may not publish states of machine {machine}")]
    ForeignMachine { machine: MachineId, own: MachineId },
}

/// `s` with control characters escaped (`\n`, `\u{1b}`), so text from etcd prints as
/// one visible line; unchanged when it has none.
pub fn visible(s: &str) -> String {
    if s.chars().any(char::is_control) {
        s.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_debug().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect()
    } else {
        s.to_string()
    }
}

impl RegistryError {
    /// etcd refused a write because its lease no longer exists: etcd's own word that
    /// the lease is gone (a keep-alive stream may not have said so yet).
    pub fn is_lease_not_found(&self) -> bool {
        match self {
            RegistryError::LeaseLost(_) => true,
            RegistryError::Etcd {
                source: etcd_client::Error::GRpcStatus(s),
                ..
            } => s.message().contains("requested lease not found"),
            _ => false,
        }
    }

    /// Whether retrying later may help (etcd down or slow), as opposed to bad data.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            RegistryError::Unreachable { .. } | RegistryError::Timeout { .. }
        )
    }

    /// A corrupt key or value; both are shown visibly (control characters escaped), as
    /// they come from whoever could write to etcd.
    pub(crate) fn corrupt(key: &[u8], reason: impl std::fmt::Display) -> Self {
        RegistryError::Corrupt {
            key: visible(&String::from_utf8_lossy(key)),
            reason: visible(&reason.to_string()),
        }
    }

    /// Sorts an etcd-client error into "cannot reach etcd" and "etcd said no".
    pub(crate) fn from_etcd(op: &'static str, endpoints: &str, e: etcd_client::Error) -> Self {
        let unreachable = is_connection_error(&e);
        if unreachable {
            RegistryError::Unreachable {
                endpoints: endpoints.to_string(),
                source: e,
            }
        } else {
            RegistryError::Etcd { op, source: e }
        }
    }
}

/// Whether an etcd-client error means "could not talk to that member" (refused,
/// broken, timed out, or a member without a raft leader) rather than "etcd said no".
pub(crate) fn is_connection_error(e: &etcd_client::Error) -> bool {
    use etcd_client::Error as E;
    match e {
        E::TransportError(_) | E::IoError(_) => true,
        // gRPC codes 14 (Unavailable: also etcd's "no leader") and 4 (DeadlineExceeded),
        // and codes 2 (Unknown) and 1 (Cancelled: hyper's "connection closed" when the
        // member died with the request in flight) wrapping a transport failure, which
        // is how tonic reports a connection broken mid-request. tonic is not a direct
        // dependency: compare numbers.
        E::GRpcStatus(s) => match i32::from(s.code()) {
            14 | 4 => true,
            1 | 2 => std::error::Error::source(s).is_some() || s.message() == "transport error",
            _ => false,
        },
        _ => false,
    }
}
