//! One file per fleetctl command (fleet's `fleetctl/*.go`, mini-redis's `cmd/`).

mod cat;
mod create;
mod destroy;
mod fd_forward;
mod journal;
mod list_machines;
mod list_unit_files;
mod list_units;
mod restart;
mod ssh;
mod start;
mod status;
mod stop;
mod token;
mod unload;
mod visible;

use std::process::ExitCode;

use crate::cli::{Cli, Command};
use crate::context::{Ctx, err, out};

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut ctx = Ctx::new(cli.global);
    let Some(command) = cli.command else {
        // fleetctl with no arguments prints help and succeeds.
        crate::cli::command().print_help()?;
        return Ok(ExitCode::SUCCESS);
    };
    match command {
        Command::Token(t) => token::run(&ctx, t).await,
        Command::Version => {
            out(format!("fleetctl version {}", fleet_core::VERSION))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { .. } => {
            err("Command \"verify\" is deprecated, DEPRECATED - No longer works");
            err("WARNING: The signed/verified units feature is DEPRECATED and cannot be used.");
            Ok(ExitCode::from(2))
        }
        Command::Submit { create, units } => start::submit(&mut ctx, &create, &units.units).await,
        Command::Load {
            create,
            block,
            units,
        } => start::load(&mut ctx, &create, &block, &units.units).await,
        Command::Start {
            create,
            block,
            units,
        } => start::start(&mut ctx, &create, &block, &units.units).await,
        Command::Stop { block, units } => stop::run(&mut ctx, &block, &units.units).await,
        Command::Restart { block, units } => restart::run(&mut ctx, &block, &units.units).await,
        Command::Unload { block, units } => unload::run(&mut ctx, &block, &units.units).await,
        Command::Destroy { units, .. } => destroy::run(&mut ctx, &units.units).await,
        Command::Cat { units } => cat::run(&mut ctx, &units.units).await,
        Command::ListUnitFiles { table, full } => {
            list_unit_files::run(&mut ctx, &table, full).await
        }
        Command::ListUnits { table, full } => list_units::run(&mut ctx, &table, full.full).await,
        Command::ListMachines { table, full } => {
            list_machines::run(&mut ctx, &table, full.full).await
        }
        Command::Status { units, output, .. } => {
            status::run(&mut ctx, &units.units, output.output).await
        }
        Command::Journal {
            lines,
            follow,
            output,
            sudo: _,
            ssh: _,
            units,
        } => journal::run(&mut ctx, &units.units, lines, follow, &output).await,
        Command::Ssh {
            machine,
            unit,
            forward_agent,
            ssh,
            args,
        } => {
            let target = ssh::Target::from_flags(machine, unit, args)?;
            ssh::run(&mut ctx, target, forward_agent, ssh.ssh_port).await
        }
        Command::Completion { shell } => crate::completion::run(shell),
        Command::FdForward { args } => fd_forward::run(&args).await,
    }
}
