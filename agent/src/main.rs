//! fleetd: runs the agent on every machine and the engine while it holds leadership.
//!
//! Signals: SIGTERM/SIGINT stop fleetd and leave this machine's units running for the
//! next fleetd, which adopts them (unlike fleet, which unloaded them); a fence timer
//! stops them if no fleetd comes back before the machine's lease expires. SIGHUP
//! reloads the configuration and restarts the components without stopping units.
//! SIGKILL leaves units running; the next fleetd adopts them.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use fleetd::config::{CommandLine, Config, DEFAULT_CONFIG_PATH, parse_command_line};
use fleetd::server::{Api, Server, Setup, reload_refusal};
use fleetd::systemd::{SystemdManager, SystemdOptions};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let cl = match parse_command_line(&args) {
        Ok(cl) => cl,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::FAILURE;
        }
    };
    if cl.version {
        println!("fleetd version {}", fleet_core::VERSION);
        return ExitCode::SUCCESS;
    }
    let (config, warnings) = match Config::load(&cl, std::env::vars()) {
        Ok(loaded) => loaded,
        Err(err) => {
            eprintln!("fleetd: {err}");
            return ExitCode::FAILURE;
        }
    };
    init_tracing(config.verbosity);
    for w in warnings {
        tracing::warn!("{w}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fleetd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(cl, config)) {
        Ok(()) => ExitCode::SUCCESS,
        // Once: the tracing subscriber writes to stderr too, so logging the error as
        // well would print it twice.
        Err(e) => {
            eprintln!("fleetd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// journald adds timestamps: log `LEVEL message` only, debug when `verbosity` > 0.
fn init_tracing(verbosity: u32) {
    let level = if verbosity > 0 { "debug" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!(
            "{level},h2=info,tower=info,hyper=info,zbus=info"
        ))
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .without_time()
        .with_target(false)
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .init();
}

/// Why the components were stopped.
enum Stop {
    Terminate(&'static str),
    Reload,
    /// The API task ended on its own.
    Failed(fleetd::server::ServerError),
}

async fn serve(cl: CommandLine, config: Config) -> anyhow::Result<()> {
    let mut sigterm = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut sighup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    let systemd = Arc::new(
        SystemdManager::connect(SystemdOptions::new(
            config.systemd_user,
            config.units_directory.clone(),
        ))
        .await?,
    );
    // Identity and the etcd connection: once per process, shared by API and components.
    let setup = Setup::new(&config).await?;
    let mut api = Api::start(&config, &setup)?;
    let result = run_components(
        &cl,
        config,
        &setup,
        systemd,
        &mut api,
        (&mut sigterm, &mut sigint, &mut sighup),
    )
    .await;
    api.stop().await;
    result
}

/// Runs incarnations of the components until a terminating signal (or a failure of a
/// component or of the API); SIGHUP rebuilds them from the reloaded configuration
/// without stopping units, or refuses a change that needs a restart.
async fn run_components(
    cl: &CommandLine,
    mut config: Config,
    setup: &Setup,
    systemd: Arc<SystemdManager>,
    api: &mut Api,
    (sigterm, sigint, sighup): (&mut Signal, &mut Signal, &mut Signal),
) -> anyhow::Result<()> {
    loop {
        let mut server = Server::new(&config, setup, systemd.clone(), api);
        let stop = CancellationToken::new();
        let why = {
            let run = server.run(stop.clone());
            tokio::pin!(run);
            let why = tokio::select! {
                r = &mut run => {
                    r?;
                    return Ok(());
                }
                _ = sigterm.recv() => Stop::Terminate("SIGTERM"),
                _ = sigint.recv() => Stop::Terminate("SIGINT"),
                _ = sighup.recv() => Stop::Reload,
                e = api.died() => Stop::Failed(e),
            };
            stop.cancel();
            run.await?;
            why
        };
        match why {
            Stop::Failed(e) => {
                drop(server);
                return Err(e.into());
            }
            Stop::Terminate(sig) => {
                tracing::info!("{sig}: shutting down, leaving this machine's units running");
                server.shutdown().await;
                return Ok(());
            }
            Stop::Reload => {
                let path = cl.config_path.as_deref().unwrap_or(DEFAULT_CONFIG_PATH);
                tracing::info!("Reloading configuration from {path}");
                match Config::load(cl, std::env::vars()) {
                    Ok((c, warnings)) => {
                        for w in warnings {
                            tracing::warn!("{w}");
                        }
                        match reload_refusal(&config, &c) {
                            Some(why) => tracing::error!("{why}"),
                            None => config = c,
                        }
                    }
                    Err(e) => tracing::error!("{e}; keeping the current configuration"),
                }
                tracing::info!("Restarting server components");
                drop(server);
            }
        }
    }
}
