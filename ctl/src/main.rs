//! fleetctl: fleet's command-line client.
//!
//! `main` only maps the outcome of [`commands::run`] to an exit code; every message a
//! user sees is produced by the command that knows what went wrong.

mod cli;
mod client;
mod commands;
mod completion;
mod context;
mod namespace;
mod table;
mod unit_source;
mod wait;

use std::process::ExitCode;

use clap::FromArgMatches;

use crate::cli::{Cli, normalize_args};
use crate::context::Failure;

fn main() -> ExitCode {
    // A shell's completion script calling back: answer and exit.
    completion::answer_if_asked();
    let args = normalize_args(std::env::args());
    let parsed = cli::command()
        .try_get_matches_from(&args)
        .and_then(|m| Cli::from_arg_matches(&m));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(err) => {
            use clap::error::ErrorKind;
            let code = match err.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => 0,
                ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => 0,
                _ => 1,
            };
            let _ = err.print();
            return ExitCode::from(code);
        }
    };
    init_tracing(cli.global.debug);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("fleetctl: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(err) => report(err),
    }
}

/// Prints a failure once, as fleet words it, and picks the exit code.
fn report(err: anyhow::Error) -> ExitCode {
    if let Some(io) = err.downcast_ref::<std::io::Error>()
        && io.kind() == std::io::ErrorKind::BrokenPipe
    {
        return ExitCode::SUCCESS;
    }
    match err.downcast_ref::<Failure>() {
        Some(f) => {
            eprintln!("{}", f.message);
            ExitCode::from(f.code)
        }
        None => {
            eprintln!("fleetctl: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Debug logs go to stderr only with `--debug`/`FLEETCTL_DEBUG`, and only fleetctl's
/// own (its requests: method, endpoint, duration, result), not the transport's frames;
/// warnings always. Colour only on a terminal.
fn init_tracing(debug: bool) {
    use std::io::IsTerminal;
    let filter = if debug {
        "warn,fleetctl=debug,fleet_api::client=debug,fleet_registry=debug"
    } else {
        "warn"
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_target(false)
        .without_time()
        .try_init();
}
