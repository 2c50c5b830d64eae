//! One file per fleetctl command (fleet's `fleetctl/*.go`, mini-redis's `cmd/`).

mod cat;
mod create;
mod destroy;
mod drain;
mod etcd_roles;
pub(crate) mod etcd_roles_ns;
mod fd_forward;
mod journal;
mod list_machines;
mod list_unit_files;
mod list_units;
mod namespace;
mod restart;
mod ssh;
mod start;
mod status;
mod stop;
mod token;
mod undrain;
mod unload;
mod visible;

use std::process::ExitCode;

use crate::cli::{Cli, Command};
use crate::context::{Ctx, EXIT_SKIPPED, err, out};

/// Runs the parsed command line. A command that succeeded but read records it had to
/// leave out exits with [`EXIT_SKIPPED`], so scripts notice.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut ctx = Ctx::new(cli.global);
    let code = run_command(&mut ctx, cli.command).await?;
    if code == ExitCode::SUCCESS && ctx.skipped_any() {
        return Ok(ExitCode::from(EXIT_SKIPPED));
    }
    Ok(code)
}

async fn run_command(ctx: &mut Ctx, command: Option<Command>) -> anyhow::Result<ExitCode> {
    let Some(command) = command else {
        // fleetctl with no arguments prints help and succeeds.
        crate::cli::command().print_help()?;
        return Ok(ExitCode::SUCCESS);
    };
    match command {
        Command::Token(t) => token::run(ctx, t).await,
        Command::EtcdRoles(a) => etcd_roles::run(ctx, a).await,
        Command::Namespace(c) => namespace::run(ctx, c).await,
        Command::User(c) => namespace::run_user(ctx, c).await,
        Command::Version => {
            out(format!("fleetctl version {}", fleet_core::VERSION))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { .. } => {
            err("Command \"verify\" is deprecated, DEPRECATED - No longer works");
            err("WARNING: The signed/verified units feature is DEPRECATED and cannot be used.");
            Ok(ExitCode::from(2))
        }
        Command::Submit { create, units } => start::submit(ctx, &create, &units.units).await,
        Command::Load {
            create,
            block,
            units,
        } => start::load(ctx, &create, &block, &units.units).await,
        Command::Start {
            create,
            block,
            units,
        } => start::start(ctx, &create, &block, &units.units).await,
        Command::Stop { block, units } => stop::run(ctx, &block, &units.units).await,
        Command::Restart { block, units } => restart::run(ctx, &block, &units.units).await,
        Command::Unload { block, units } => unload::run(ctx, &block, &units.units).await,
        Command::Destroy { units, .. } => destroy::run(ctx, &units.units).await,
        Command::Cat { units } => cat::run(ctx, &units.units).await,
        Command::ListUnitFiles { table, full } => list_unit_files::run(ctx, &table, full).await,
        Command::ListUnits { table, full } => list_units::run(ctx, &table, full.full).await,
        Command::Drain { machine, block } => drain::run(ctx, &machine, &block).await,
        Command::Undrain { machine } => undrain::run(ctx, &machine).await,
        Command::ListMachines { table, full } => list_machines::run(ctx, &table, full.full).await,
        Command::Status { units, output, .. } => {
            status::run(ctx, &units.units, output.output).await
        }
        Command::Journal {
            lines,
            follow,
            output,
            sudo: _,
            ssh: _,
            units,
        } => journal::run(ctx, &units.units, lines, follow, &output).await,
        Command::Ssh {
            machine,
            unit,
            forward_agent,
            ssh,
            args,
        } => {
            let target = ssh::Target::from_flags(machine, unit, args)?;
            ssh::run(ctx, target, forward_agent, ssh.ssh_port).await
        }
        Command::Completion { shell } => crate::completion::run(shell),
        Command::FdForward { args } => fd_forward::run(&args).await,
    }
}
