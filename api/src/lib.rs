//! fleetd's gRPC API: the `.proto` (in `proto/`), the server fleetd runs over the
//! registry, and the typed client fleetctl's default driver uses.
//!
//! fleetd calls [`serve`] (or [`Listeners::open`] then [`serve_on`] when it must know
//! the bound TCP address before serving, to publish it as the machine's `api_addr`).
//! Journal and status requests are answered by the fleetd of the machine running the
//! unit; any other fleetd forwards them there using that machine's published address.

mod auth;
pub mod client;
mod context;
pub mod convert;
mod error;
mod exec;
mod limits;
mod listen;
mod remote;
mod scope;
mod server;
mod tls;
mod tls_accept;
mod ui;
mod v1;

pub use auth::{AuthConfig, Role, resolve_group};
pub use client::{ApiClient, ClientConfig, Output, StateChange, StateWatch, Transport};
pub use error::ApiError;
pub use exec::LocalCommands;
pub use limits::{MAX_STREAMS, MAX_STREAMS_PER_CLIENT};
pub use listen::{ListenConfig, Listeners, serve, serve_on};
pub use remote::parse_api_addr;
pub use scope::NAMESPACE_HEADER;
pub use server::{ApiContext, FleetService};
pub use tls::{ClientTls, ServerTls};

/// The generated protobuf and gRPC code (package `fleet.v1`).
pub mod pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("fleet.v1");
}

/// Where fleetd serves the API when neither socket activation nor configuration says
/// otherwise, and where fleetctl looks for it by default.
pub const DEFAULT_SOCKET: &str = "/var/run/fleet.sock";
