//! fleetctl: fleet's command-line client.
//!
//! `main` only maps the outcome of [`commands::run`] to an exit code; every message a
//! user sees is produced by the command that knows what went wrong.

mod cli;
mod client;
mod commands;
mod context;
mod table;
mod unit_source;
mod wait;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, normalize_args};
use crate::context::Failure;

fn main() -> ExitCode {
    let args = normalize_args(std::env::args());
    let cli = match Cli::try_parse_from(&args) {
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

/// Debug logs go to stderr only with `--debug`/`FLEETCTL_DEBUG`; warnings always.
fn init_tracing(debug: bool) {
    let filter = if debug { "debug" } else { "warn" };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_target(false)
        .without_time()
        .try_init();
}
