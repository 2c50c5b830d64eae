//! The pure heart of fleet: what a unit is, what it requires, and where it should run.
//!
//! Architecture invariant: nothing in this crate performs I/O or reads a clock. The
//! registry (etcd), the agent (systemd) and fleetctl feed it values and act on the
//! values it returns, which is what makes it exhaustively testable and benchmarkable.

pub mod duration;
pub mod machine;
pub mod namespace;
pub mod scheduler;
pub mod state;
pub mod unit;

pub use duration::{DurationError, MAX_DURATION, MIN_AGENT_TTL, parse_duration};
pub use machine::{Machine, MachineId};
pub use namespace::{Namespace, NamespaceError, Namespaces, Selector};
pub use state::{SystemdState, TargetState};
pub use unit::{Requirements, UnitFile, UnitHash, UnitName};

/// Version string shared by fleetd and fleetctl (`fleetctl version`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
