//! fleetd as a library: the binary is a thin shell over these modules, and tests and
//! benchmarks run engines and agents in-process against a real etcd.
//!
//! - [`config`]: fleet.conf, `FLEET_*` environment, flags.
//! - [`engine`]: leader election and fenced, watch-driven placement (leader only).
//! - [`agent`]: machine registration, the per-machine reconciler, state reports.
//! - [`server`]: the agent plus the engine, as the fleetd binary runs them.
//! - [`systemd`]: the `UnitManager` boundary; only this module speaks D-Bus.

pub mod agent;
pub mod config;
pub mod engine;
pub mod server;
pub mod systemd;
