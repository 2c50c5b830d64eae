//! What the API server needs from fleetd (shared by the service and the forwarding of
//! journal/status in `remote`).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use fleet_core::MachineId;
use fleet_registry::{PeopleView, Registry};

use crate::exec::LocalCommands;
use crate::tls::ClientTls;

/// What the API server needs from fleetd.
#[derive(Clone)]
pub struct ApiContext {
    pub registry: Registry,
    /// This machine, to know which journal/status requests to answer locally.
    pub machine_id: MachineId,
    pub commands: LocalCommands,
    /// TLS used when forwarding to another machine's `https://` API address.
    pub forward_tls: Option<ClientTls>,
    /// Bound on connecting to another fleetd and on its first answer.
    pub forward_timeout: Duration,
    /// Whether this machine's agent is registered. While it is not (etcd unreachable,
    /// or another fleetd holds this machine id), every call is refused as fleet did:
    /// `fleet server unable to communicate with etcd`. `None`: always serve.
    pub registered: Option<tokio::sync::watch::Receiver<bool>>,
    /// People, namespaces and tokens followed by a watch (started on first use, which
    /// needs the tokio runtime), shared by every clone of the context.
    people: Arc<OnceLock<PeopleView>>,
}

impl ApiContext {
    /// A context with the default commands, no forwarding TLS and a 5 s forward timeout.
    pub fn new(registry: Registry, machine_id: MachineId) -> ApiContext {
        ApiContext {
            registry,
            machine_id,
            commands: LocalCommands::default(),
            forward_tls: None,
            forward_timeout: Duration::from_secs(5),
            registered: None,
            people: Arc::default(),
        }
    }

    /// People, namespaces and API tokens as etcd has them, without a read per call.
    pub fn people(&self) -> &PeopleView {
        self.people
            .get_or_init(|| PeopleView::follow(self.registry.clone()))
    }
}
