//! What can go wrong while building, driving or tearing down a lab.

use std::path::PathBuf;

/// A lab failure, worded for the person who typed the command.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error(
        "fleet-lab needs root privileges (it creates network namespaces, a bridge and containers): run it as root"
    )]
    NotRoot,
    #[error("invalid cluster file {path}: {reason}")]
    ConfigFile { path: PathBuf, reason: String },
    #[error("invalid cluster: {0}")]
    InvalidConfig(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("lab {0:?} is already running (stop it with `fleet-lab down --name {0}`)")]
    AlreadyRunning(String),
    #[error("lab {0:?} is not running")]
    NotRunning(String),
    #[error("no machine {node:?} in lab {lab:?}")]
    NoSuchMachine { lab: String, node: String },
    #[error("no etcd member {member:?} in lab {lab:?} (members: {members})")]
    NoSuchMember {
        lab: String,
        member: String,
        members: String,
    },
    #[error("machine {0:?} is not running")]
    MachineDown(String),
    #[error("missing binary {path}: {hint}")]
    MissingBinary { path: PathBuf, hint: String },
    #[error("building the Debian root file system failed: {0}")]
    Rootfs(String),
    #[error("`{cmd}` failed: {detail}")]
    Command { cmd: String, detail: String },
    #[error("{what} was not ready after {secs} s{detail}")]
    Timeout {
        what: String,
        secs: u64,
        detail: String,
    },
    #[error("no free /24 subnet left for a lab (all of 10.231.0.0/16 in use)")]
    NoSubnet,
    #[error("state of lab {lab:?} ({path}): {reason}")]
    State {
        lab: String,
        path: PathBuf,
        reason: String,
    },
    #[error("lab etcd: {0}")]
    Etcd(#[from] fleet_testkit::EtcdError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl LabError {
    /// Wraps an I/O error with what was being done, since a bare errno names no file.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> LabError {
        let context = context.into();
        move |source| LabError::Io { context, source }
    }
}

/// Result alias for the lab library.
pub type Result<T, E = LabError> = std::result::Result<T, E>;
