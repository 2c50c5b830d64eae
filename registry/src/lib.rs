//! fleet's cluster state in etcd v3: the key layout ([`keys`]), typed reads and writes,
//! consistent snapshots, watches that resume, and leases.
//!
//! One handle per role, so the ownership rules are enforced by types: [`Registry`]
//! (fleetctl, the API) reads everything and writes units and targets;
//! [`AgentRegistry`] (from [`Registry::register_agent`]) is one machine under its
//! lease; [`Leadership`] (from [`Registry::campaign`]) is the engine, the only writer
//! of `schedule/` and `unplaced/`, always fenced. The etcd client never leaves the crate.
//!
//! Every etcd call is bounded by [`RegistryConfig::request_timeout`]; an unreachable
//! etcd surfaces as [`RegistryError::Timeout`] or [`RegistryError::Unreachable`]
//! naming the endpoints, never as a hang. Values are encoded only in `codec`.

mod agent;
pub mod auth;
mod backoff;
mod batch;
mod codec;
/// For the fuzz target only; not an API.
#[doc(hidden)]
pub use codec::fuzz_check;
pub mod config;
mod decode;
mod drain;
mod election;
mod endpoints;
pub mod error;
pub mod keys;
pub mod lease;
mod machines;
pub mod metadata;
pub mod model;
pub mod namespaces;
pub mod ns_roles;
mod paged;
mod people;
mod registry;
pub mod roles;
mod schedule;
mod snapshot;
mod states;
pub mod tokens;
mod units;
mod view;
pub mod watch;

pub use agent::AgentRegistry;
pub use auth::{AuthRefusal, Secret, auth_refusal};
pub use backoff::Backoff;
pub use batch::UnitView;
pub use config::{DEFAULT_KEY_PREFIX, DEFAULT_REQUEST_TIMEOUT, RegistryConfig, TlsFiles};
pub use election::Leadership;
pub use error::RegistryError;
pub use keys::{Keys, RegistryKey};
pub use lease::{LeaseId, LeaseKeepAlive, LeaseNews};
pub use metadata::MetadataChange;
pub use model::{
    ClusterSnapshot, CreateOutcome, Listed, MachineRecord, ScheduleEntry, Skipped, UnitRecord,
    UnitStateRecord, current_state,
};
pub use namespaces::{AccessError, NsRole, UserRecord};
pub use people::PeopleView;
pub use registry::Registry;
pub use schedule::SchedulePlan;
pub use tokens::{TokenInfo, TokenRecord};
pub use units::SetTargetsOutcome;
pub use view::EngineView;
pub use watch::{Change, RegistryWatch, WatchBatch, WatchEvent};

/// etcd's default `--max-txn-ops`: the most operations one txn may carry.
pub const MAX_TXN_OPS: usize = 128;
