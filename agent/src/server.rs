//! fleetd's top level: the agent on every machine and, unless `disable_engine`, the
//! engine (which only acts while it holds leadership). Signals are the caller's: it
//! cancels [`Server::run`] and then either purges ([`Server::shutdown`], SIGTERM) or
//! drops the server and builds a new one from a reloaded configuration (SIGHUP),
//! which adopts the running units and takes the machine's lease back.

use std::sync::Arc;
use std::time::Duration;

use fleet_core::Machine;
use fleet_registry::{Registry, RegistryConfig, RegistryError, TlsFiles};
use tokio_util::sync::CancellationToken;

use crate::agent::identity::{self, IdentityError};
use crate::agent::{Agent, AgentConfig, AgentError};
use crate::config::Config;
use crate::engine::{self, EngineConfig};
use crate::systemd::UnitManager;

/// The longest a graceful shutdown may take before fleetd exits anyway.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(60);

/// Why fleetd cannot run (it exits non-zero; systemd restarts it).
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("agent: {0}")]
    Agent(#[from] AgentError),
    #[error("engine: {0}")]
    Engine(String),
    #[error("API: {0}")]
    Api(#[from] fleet_api::ApiError),
}

/// One incarnation of fleetd's components.
pub struct Server<M: UnitManager> {
    registry: Registry,
    agent: Agent<M>,
    /// The machine campaigns for the engine (not `disable_engine`).
    engine: Option<(fleet_core::MachineId, Duration)>,
}

impl<M: UnitManager> Server<M> {
    /// Resolves the machine's identity and prepares the etcd connection. `api_addr` is
    /// where this machine's API answers (published with the machine; may be empty).
    pub async fn new(config: &Config, systemd: Arc<M>, api: &Api) -> Result<Self, ServerError> {
        let id = identity::machine_id(config.machine_id.as_deref(), &config.machine_id_file)?;
        let public_ip = if config.public_ip.is_empty() {
            identity::detect_public_ip().await
        } else {
            config.public_ip.clone()
        };
        let machine = Machine {
            id: id.clone(),
            public_ip,
            metadata: config.metadata.clone(),
            version: fleet_core::VERSION.to_string(),
            disable_engine: config.disable_engine,
        };
        let registry = Registry::connect(registry_config(config)).await?;
        let mut agent_config = AgentConfig::from_config(config, machine);
        agent_config.api_addr = api.addr.clone();
        agent_config.registered = Some(api.registered.clone());
        let agent = Agent::new(registry.clone(), systemd, agent_config);
        let engine = (!config.disable_engine).then_some((id, config.engine_reconcile_interval));
        Ok(Server {
            registry,
            agent,
            engine,
        })
    }

    pub fn machine(&self) -> &Machine {
        self.agent.machine()
    }

    /// Runs the agent and the engine until `stop` (Ok) or until one of them fails.
    pub async fn run(&mut self, stop: CancellationToken) -> Result<(), ServerError> {
        let components = stop.child_token();
        let engine = self.engine.clone().map(|(id, interval)| {
            let (registry, token) = (self.registry.clone(), components.clone());
            tokio::spawn(run_engine(registry, id, interval, token))
        });
        tracing::info!(machine = %self.agent.machine().id, ip = %self.agent.machine().public_ip, engine = engine.is_some(), "starting fleetd components");
        let agent = self.agent.run(components.clone()).await;
        components.cancel();
        let engine = match engine {
            Some(task) => match task.await {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "engine task panicked");
                    Ok(())
                }
            },
            None => Ok(()),
        };
        agent?;
        engine
    }

    /// Graceful shutdown as fleet: unloads (stops) every unit of this machine and
    /// removes the machine from the cluster; bounded by [`SHUTDOWN_TIMEOUT`].
    pub async fn shutdown(self) {
        if tokio::time::timeout(SHUTDOWN_TIMEOUT, self.agent.shutdown())
            .await
            .is_err()
        {
            tracing::error!("graceful shutdown did not finish within {SHUTDOWN_TIMEOUT:?}");
        }
    }
}

/// fleetd's API (what fleetctl's default driver talks to). Its listeners are opened once
/// per process and survive SIGHUP reloads, as fleet's socket-activated listeners did.
pub struct Api {
    /// `http(s)://ip:port` of the first TCP listener, empty without one.
    pub addr: String,
    /// The agent says here whether the machine is registered; the API refuses calls
    /// until it is.
    pub registered: Arc<tokio::sync::watch::Sender<bool>>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), fleet_api::ApiError>>,
}

impl Api {
    /// Opens the listeners (systemd's LISTEN_FDS sockets if passed, else `api_socket`
    /// and `api_listen`) and serves until [`Api::stop`].
    pub async fn start(config: &Config) -> Result<Api, ServerError> {
        let tls = match (&config.api_tls_cert, &config.api_tls_key) {
            (Some(cert), Some(key)) => Some(fleet_api::ServerTls {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: config.api_tls_client_ca.clone(),
            }),
            _ => None,
        };
        let listen = fleet_api::ListenConfig {
            unix: config.api_socket.clone(),
            tcp: config.api_listen.clone(),
            tls: tls.clone(),
            socket_activation: true,
        };
        let listeners = fleet_api::Listeners::open(&listen)?;
        let id = identity::machine_id(config.machine_id.as_deref(), &config.machine_id_file)?;
        let public_ip = if config.public_ip.is_empty() {
            identity::detect_public_ip().await
        } else {
            config.public_ip.clone()
        };
        let addr = listeners.api_addr(public_ip.parse().ok());
        let mut ctx =
            fleet_api::ApiContext::new(Registry::connect(registry_config(config)).await?, id);
        let (registered, registered_rx) = tokio::sync::watch::channel(false);
        ctx.registered = Some(registered_rx);
        ctx.commands.user = config.systemd_user;
        // Forwarding to other machines' TLS listeners uses this machine's identity.
        ctx.forward_tls = tls.map(|t| fleet_api::ClientTls {
            ca: t.client_ca,
            cert: Some(t.cert),
            key: Some(t.key),
            domain: None,
        });
        let stop = CancellationToken::new();
        let task = tokio::spawn(fleet_api::serve_on(listeners, ctx, stop.clone()));
        tracing::info!(addr = %addr, "serving the fleet API");
        Ok(Api {
            addr,
            registered: Arc::new(registered),
            stop,
            task,
        })
    }

    /// Stops serving and waits for the listeners to close.
    pub async fn stop(self) {
        self.stop.cancel();
        match self.task.await {
            Ok(Err(e)) => tracing::error!("API: {e}"),
            Err(e) => tracing::error!("API task failed: {e}"),
            Ok(Ok(())) => {}
        }
    }
}

/// The registry settings of fleet.conf's `etcd_*` options.
pub fn registry_config(config: &Config) -> RegistryConfig {
    let tls = (config.etcd_cafile.is_some()
        || config.etcd_certfile.is_some()
        || config.etcd_keyfile.is_some())
    .then(|| TlsFiles {
        ca_file: config.etcd_cafile.clone(),
        cert_file: config.etcd_certfile.clone(),
        key_file: config.etcd_keyfile.clone(),
    });
    RegistryConfig {
        endpoints: config.etcd_servers.clone(),
        key_prefix: config.etcd_key_prefix.clone(),
        request_timeout: config.etcd_request_timeout,
        username: config.etcd_username.clone(),
        password: config.etcd_password.clone(),
        tls,
    }
}

/// The engine, while this machine holds leadership.
async fn run_engine(
    registry: Registry,
    id: fleet_core::MachineId,
    reconcile_interval: Duration,
    stop: CancellationToken,
) -> Result<(), ServerError> {
    let mut cfg = EngineConfig::new(id);
    cfg.reconcile_interval = reconcile_interval;
    engine::run(registry, cfg, stop)
        .await
        .map_err(|e| ServerError::Engine(e.to_string()))
}
