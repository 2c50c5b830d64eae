//! fleetd's top level: the agent on every machine and, unless `disable_engine`, the
//! engine (which only acts while it holds leadership). Signals are the caller's: it
//! cancels [`Server::run`] and then either stops ([`Server::shutdown`], SIGTERM) or
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
    /// etcd refused fleetd's identity or permission: retrying cannot help.
    #[error("etcd at {endpoints}: {}{}", .refusal.why,
        if .refusal.credentials { " (fleet.conf's etcd_username and etcd_password)" } else { "" })]
    EtcdAuth {
        endpoints: String,
        refusal: fleet_registry::AuthRefusal,
    },
    /// etcd refused the API's own identity.
    #[error("etcd at {endpoints}: {}{}", .refusal.why,
        if .refusal.credentials { " (fleet.conf's api_etcd_username and api_etcd_password)" } else { "" })]
    ApiEtcdAuth {
        endpoints: String,
        refusal: fleet_registry::AuthRefusal,
    },
    #[error("agent: {0}")]
    Agent(#[from] AgentError),
    #[error("engine: {0}")]
    Engine(String),
    #[error("API: {0}")]
    Api(#[from] fleet_api::ApiError),
    #[error("API: {0}")]
    ApiTask(String),
}

/// What fleetd sets up once per process: who this machine is and the etcd
/// connection. The API and every incarnation of the components share it; a SIGHUP that
/// would change it is refused (see [`reload_refusal`]).
#[derive(Clone, Debug)]
pub struct Setup {
    /// The machine as published (metadata is refreshed from each reloaded config).
    pub machine: Machine,
    pub registry: Registry,
    /// What the API reads and writes with: `registry`, or a connection of its own as
    /// `api_etcd_username`.
    pub api_registry: Registry,
}

impl Setup {
    /// Resolves the machine's identity and prepares the etcd connection.
    pub async fn new(config: &Config) -> Result<Setup, ServerError> {
        let id = identity::machine_id(config.machine_id.as_deref(), &config.machine_id_file)?;
        let public_ip = match config.public_ip {
            Some(ip) => Some(ip),
            None => identity::detect_public_ip().await,
        };
        let machine = Machine {
            id,
            public_ip,
            metadata: config.metadata.clone(),
            version: fleet_core::VERSION.to_string(),
            disable_engine: config.disable_engine,
        };
        let auth = |e: RegistryError| match fleet_registry::auth_refusal(&e) {
            Some(refusal) => ServerError::EtcdAuth {
                endpoints: config.etcd_servers.join(","),
                refusal,
            },
            None => ServerError::Registry(e),
        };
        let registry = Registry::connect(registry_config(config))
            .await
            .map_err(auth)?;
        // etcd checks credentials on the first request, not on connecting: a refusal
        // is final, so say it now rather than retry it forever. An unreachable etcd is
        // not (the agent waits for it).
        if let Err(e) = registry.check_access().await
            && fleet_registry::auth_refusal(&e).is_some()
        {
            return Err(auth(e));
        }
        let api_registry = match &config.api_etcd_username {
            None => registry.clone(),
            Some(user) => {
                let api_auth = |e: RegistryError| match fleet_registry::auth_refusal(&e) {
                    Some(refusal) => ServerError::ApiEtcdAuth {
                        endpoints: config.etcd_servers.join(","),
                        refusal,
                    },
                    None => ServerError::Registry(e),
                };
                let mut api_config = registry_config(config);
                api_config.username = Some(user.clone());
                api_config.password = config.api_etcd_password.clone();
                let api = Registry::connect(api_config).await.map_err(api_auth)?;
                if let Err(e) = api.check_access().await
                    && fleet_registry::auth_refusal(&e).is_some()
                {
                    return Err(api_auth(e));
                }
                api
            }
        };
        Ok(Setup {
            machine,
            registry,
            api_registry,
        })
    }
}

/// Why a reloaded configuration cannot be applied without restarting fleetd, if it
/// cannot: the settings that identity, the etcd connection, the API's listeners and the
/// systemd connection were built from are set up once per process.
pub fn reload_refusal(old: &Config, new: &Config) -> Option<String> {
    let mut changed = Vec::new();
    let mut check = |name: &'static str, differs: bool| {
        if differs {
            changed.push(name);
        }
    };
    check("etcd_servers", old.etcd_servers != new.etcd_servers);
    check("etcd_username", old.etcd_username != new.etcd_username);
    check("etcd_password", old.etcd_password != new.etcd_password);
    check(
        "api_etcd_username",
        old.api_etcd_username != new.api_etcd_username,
    );
    check(
        "api_etcd_password",
        old.api_etcd_password != new.api_etcd_password,
    );
    check("etcd_keyfile", old.etcd_keyfile != new.etcd_keyfile);
    check("etcd_certfile", old.etcd_certfile != new.etcd_certfile);
    check("etcd_cafile", old.etcd_cafile != new.etcd_cafile);
    check(
        "etcd_key_prefix",
        old.etcd_key_prefix != new.etcd_key_prefix,
    );
    check(
        "etcd_request_timeout",
        old.etcd_request_timeout != new.etcd_request_timeout,
    );
    check("public_ip", old.public_ip != new.public_ip);
    check(
        "machine_id",
        old.machine_id != new.machine_id || old.machine_id_file != new.machine_id_file,
    );
    check(
        "units_directory",
        old.units_directory != new.units_directory,
    );
    check("systemd_user", old.systemd_user != new.systemd_user);
    check(
        "api_*",
        old.api_socket != new.api_socket
            || old.api_listen != new.api_listen
            || old.api_tls_cert != new.api_tls_cert
            || old.api_tls_key != new.api_tls_key
            || old.api_tls_client_ca != new.api_tls_client_ca
            || old.api_operator_group != new.api_operator_group
            || old.api_allow_plaintext != new.api_allow_plaintext,
    );
    (!changed.is_empty()).then(|| {
        format!(
            "changing {} needs a restart of fleetd (systemctl restart fleet); keeping the current configuration",
            changed.join(", ")
        )
    })
}

/// One incarnation of fleetd's components.
pub struct Server<M: UnitManager> {
    registry: Registry,
    agent: Agent<M>,
    /// The machine campaigns for the engine (not `disable_engine`).
    engine: Option<EngineConfig>,
}

impl<M: UnitManager> Server<M> {
    /// The components for `config` on the process's [`Setup`]; `api` tells the agent
    /// where this machine's API answers (published with the machine; may be empty).
    pub fn new(config: &Config, setup: &Setup, systemd: Arc<M>, api: &Api) -> Self {
        let mut machine = setup.machine.clone();
        machine.metadata = config.metadata.clone();
        machine.disable_engine = config.disable_engine;
        let id = machine.id.clone();
        let mut agent_config = AgentConfig::from_config(config, machine);
        agent_config.api_addr = api.addr.clone();
        agent_config.registered = Some(api.registered.clone());
        let agent = Agent::new(setup.registry.clone(), systemd, agent_config);
        let engine = (!config.disable_engine).then(|| {
            let mut cfg = EngineConfig::new(id);
            cfg.reconcile_interval = config.engine_reconcile_interval;
            cfg.lease_ttl = config.engine_lease_ttl;
            cfg
        });
        Server {
            registry: setup.registry.clone(),
            agent,
            engine,
        }
    }

    pub fn machine(&self) -> &Machine {
        self.agent.machine()
    }

    /// Runs the agent and the engine until `stop` (Ok) or until one of them fails. An
    /// engine that ends on its own (error or panic) is a failure: fleetd exits non-zero
    /// and systemd restarts it.
    pub async fn run(&mut self, stop: CancellationToken) -> Result<(), ServerError> {
        let components = stop.child_token();
        let mut engine = self.engine.clone().map(|cfg| {
            let (registry, token) = (self.registry.clone(), components.clone());
            tokio::spawn(run_engine(registry, cfg, token))
        });
        tracing::info!(machine = %self.agent.machine().id, ip = ?self.agent.machine().public_ip, engine = engine.is_some(), "starting fleetd components");
        let agent_run = self.agent.run(components.clone());
        tokio::pin!(agent_run);
        let engine_done = async {
            match engine.as_mut() {
                Some(task) => task.await,
                None => std::future::pending().await,
            }
        };
        let early_engine = tokio::select! {
            a = &mut agent_run => Err(a),
            e = engine_done => Ok(e),
        };
        components.cancel();
        let (agent, ended) = match early_engine {
            Err(agent) => match engine {
                Some(task) => (agent, Some(task.await)),
                None => (agent, None),
            },
            Ok(ended) => (agent_run.await, Some(ended)),
        };
        let engine = match ended {
            None => Ok(()),
            Some(Ok(Ok(()))) if stop.is_cancelled() => Ok(()),
            Some(Ok(Ok(()))) => Err(ServerError::Engine("stopped unexpectedly".into())),
            Some(Ok(Err(e))) => Err(e),
            // A panic: fleetd must not carry on without its engine.
            Some(Err(e)) => Err(ServerError::Engine(format!("task failed: {e}"))),
        };
        agent?;
        engine
    }

    /// Graceful stop: this machine's units keep running for the next fleetd, which
    /// disarms the fence armed here; bounded by [`SHUTDOWN_TIMEOUT`].
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
    task: Option<tokio::task::JoinHandle<Result<(), fleet_api::ApiError>>>,
}

impl Api {
    /// Opens the listeners (systemd's LISTEN_FDS sockets if passed, else `api_socket`
    /// and `api_listen`) and serves with the process's [`Setup`] until [`Api::stop`].
    pub fn start(config: &Config, setup: &Setup) -> Result<Api, ServerError> {
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
            auth: fleet_api::AuthConfig {
                operator_gid: config
                    .api_operator_group
                    .as_deref()
                    .map(fleet_api::resolve_group)
                    .transpose()
                    .map_err(|e| fleet_api::ApiError::Config(format!("api_operator_group: {e}")))?,
                allow_plaintext: config.api_allow_plaintext,
            },
        };
        let listeners = fleet_api::Listeners::open(&listen)?;
        let addr = listeners.api_addr(setup.machine.public_ip);
        let mut ctx =
            fleet_api::ApiContext::new(setup.api_registry.clone(), setup.machine.id.clone());
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
            task: Some(task),
        })
    }

    /// Resolves only if the API stopped serving on its own (error or panic): fleetd
    /// must then exit non-zero. Never resolves again once it has.
    pub async fn died(&mut self) -> ServerError {
        let Some(task) = self.task.as_mut() else {
            return std::future::pending().await;
        };
        let result = task.await;
        self.task = None;
        match result {
            Ok(Err(e)) => ServerError::Api(e),
            Ok(Ok(())) => ServerError::ApiTask("stopped serving unexpectedly".into()),
            Err(e) => ServerError::ApiTask(e.to_string()),
        }
    }

    /// Stops serving and waits for the listeners to close.
    pub async fn stop(self) {
        self.stop.cancel();
        let Some(task) = self.task else { return };
        match task.await {
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
    cfg: EngineConfig,
    stop: CancellationToken,
) -> Result<(), ServerError> {
    engine::run(registry, cfg, stop)
        .await
        .map_err(|e| ServerError::Engine(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_touching_what_is_set_up_once_is_refused_by_name() {
        let old = Config::default();
        let mut new = old.clone();
        new.metadata.insert("region".into(), "west".into());
        new.agent_ttl = Duration::from_secs(10);
        assert_eq!(reload_refusal(&old, &new), None);
        new.etcd_servers = vec!["http://10.0.0.1:2379".into()];
        new.api_listen = vec!["127.0.0.1:4002".parse().unwrap()];
        let why = reload_refusal(&old, &new).unwrap();
        assert!(
            why.starts_with("changing etcd_servers, api_* needs a restart"),
            "{why}"
        );
    }
}
