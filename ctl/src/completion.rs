//! Shell completion: `fleetctl completion bash|zsh|fish` prints a script that calls
//! fleetctl back on Tab (clap_complete's environment protocol), so unit names and
//! machine ids come from the cluster at that moment, reached with the `FLEETCTL_*`
//! settings of the user's shell.

use std::ffi::OsStr;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use clap_complete::engine::{
    ArgValueCandidates, ArgValueCompleter, CompletionCandidate, PathCompleter, ValueCompleter,
};
use clap_complete::env::{Bash, EnvCompleter, Fish, Zsh};

use crate::cli::{Cli, CompletionShell};
use crate::client::Client;

/// The environment variable the completion scripts set when they call fleetctl back.
pub const COMPLETE_VAR: &str = "COMPLETE";

/// Answers a completion request (and exits) when fleetctl was called back by a script.
pub fn answer_if_asked() {
    clap_complete::CompleteEnv::with_factory(crate::cli::command)
        .var(COMPLETE_VAR)
        .complete();
}

/// `fleetctl completion SHELL`: the script that registers the completion.
pub fn run(shell: CompletionShell) -> anyhow::Result<ExitCode> {
    let completer: &dyn EnvCompleter = match shell {
        CompletionShell::Bash => &Bash,
        CompletionShell::Zsh => &Zsh,
        CompletionShell::Fish => &Fish,
    };
    // Call back the binary that wrote the script, wherever it is on PATH later.
    let me = std::env::current_exe()
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|| "fleetctl".to_string());
    let mut buf = Vec::new();
    completer.write_registration(COMPLETE_VAR, "fleetctl", "fleetctl", &me, &mut buf)?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&buf)?;
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Completes units already in the cluster.
pub fn unit_names() -> ArgValueCandidates {
    ArgValueCandidates::new(|| names(Cluster::fetch().units))
}

/// Completes machine ids.
pub fn machine_ids() -> ArgValueCandidates {
    ArgValueCandidates::new(|| names(Cluster::fetch().machines))
}

/// Completes `ssh`'s target: machine ids and units.
pub fn machines_and_units() -> ArgValueCandidates {
    ArgValueCandidates::new(|| {
        let cluster = Cluster::fetch();
        names(cluster.machines.into_iter().chain(cluster.units))
    })
}

/// Completes local unit files and units already in the cluster (submit/load/start).
pub fn unit_files() -> ArgValueCompleter {
    ArgValueCompleter::new(|current: &OsStr| {
        let mut out = PathCompleter::any().complete(current);
        let prefix = current.to_string_lossy();
        out.extend(
            Cluster::fetch()
                .units
                .into_iter()
                .filter(|u| u.starts_with(prefix.as_ref()))
                .map(CompletionCandidate::new),
        );
        out
    })
}

fn names(items: impl IntoIterator<Item = String>) -> Vec<CompletionCandidate> {
    items.into_iter().map(CompletionCandidate::new).collect()
}

/// What completion offers from the cluster; empty when it cannot be reached (a Tab
/// must never print errors into the user's command line).
#[derive(Default)]
struct Cluster {
    units: Vec<String>,
    machines: Vec<String>,
}

/// How long a Tab may wait for the cluster.
const COMPLETION_TIMEOUT: Duration = Duration::from_secs(2);

impl Cluster {
    fn fetch() -> Cluster {
        // The global flags as the user's environment sets them (FLEETCTL_*).
        let Ok(cli) = Cli::try_parse_from(["fleetctl"]) else {
            return Cluster::default();
        };
        let mut global = cli.global;
        global.request_timeout = global.request_timeout.min(COMPLETION_TIMEOUT.as_secs_f64());
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return Cluster::default();
        };
        runtime.block_on(async {
            let fetch = async {
                let client = Client::connect(&global).await.ok()?;
                let snapshot = client.snapshot().await.ok()?;
                Some(Cluster {
                    units: snapshot.units.iter().map(|u| u.name.to_string()).collect(),
                    machines: snapshot
                        .machines
                        .iter()
                        .map(|m| m.machine.id.to_string())
                        .collect(),
                })
            };
            tokio::time::timeout(COMPLETION_TIMEOUT * 2, fetch)
                .await
                .ok()
                .flatten()
                .unwrap_or_default()
        })
    }
}
