//! `fleetctl ssh MACHINE|UNIT [CMD...]`: runs the system `ssh` to a machine's public IP
//! (or the machine running a unit), through `--tunnel` when given.

use std::process::ExitCode;

use fleet_core::{Machine, UnitName};

use crate::client::{host_port, ssh_options, ssh_program};
use crate::context::{Ctx, fail};

/// What to connect to, from `--machine`, `--unit` or the first argument.
pub enum Target {
    Machine(String),
    Unit(String),
    Either(String),
}

impl Target {
    /// Splits the flags and arguments; the rest is the remote command.
    pub fn from_flags(
        machine: Option<String>,
        unit: Option<String>,
        mut args: Vec<String>,
    ) -> anyhow::Result<(Target, Vec<String>)> {
        let target = match (machine, unit) {
            (Some(_), Some(_)) => {
                return Err(fail(
                    "Both machine and unit flags provided, please specify only one.",
                ));
            }
            (Some(m), None) => Target::Machine(m),
            (None, Some(u)) => Target::Unit(u),
            (None, None) => {
                if args.is_empty() || args[0] == "--" {
                    return Err(fail(
                        "Unable to proceed: could not find matching unit or machine",
                    ));
                }
                Target::Either(args.remove(0))
            }
        };
        if args.first().is_some_and(|a| a == "--") {
            args.remove(0);
        }
        Ok((target, args))
    }
}

pub async fn run(
    ctx: &mut Ctx,
    (target, command): (Target, Vec<String>),
    forward_agent: bool,
    port: u16,
) -> anyhow::Result<ExitCode> {
    let client = ctx.client().await?.clone();
    let machines = client.registry.list_machines().await.map_err(|e| {
        fail(format!(
            "Error retrieving list of active machines from fleet API ({e})"
        ))
    })?;
    let by_prefix = |p: &str| -> Option<Machine> {
        let mut found = machines.iter().filter(|m| m.id.as_str().starts_with(p));
        match (found.next(), found.next()) {
            (Some(m), None) => Some(m.clone()),
            _ => None,
        }
    };
    let unit_machine = |u: &str| {
        let client = client.clone();
        let u = u.to_string();
        async move {
            let Ok((name, _)) = UnitName::from_arg(&u) else {
                return Ok::<_, anyhow::Error>(None);
            };
            let snapshot = client.registry.snapshot().await.map_err(|e| {
                fail(format!(
                    "Error retrieving list of units from repository: {e}"
                ))
            })?;
            Ok(snapshot.scheduled_on(&name).cloned())
        }
    };
    let not_found = || fail("Unable to proceed: could not find matching unit or machine");
    let machine = match target {
        Target::Machine(m) => by_prefix(&m).ok_or_else(not_found)?,
        Target::Unit(u) => {
            let id = unit_machine(&u).await?.ok_or_else(not_found)?;
            machines
                .iter()
                .find(|m| m.id == id)
                .cloned()
                .ok_or_else(not_found)?
        }
        Target::Either(x) => {
            let as_machine = by_prefix(&x);
            let as_unit = unit_machine(&x).await?;
            match (as_machine, as_unit) {
                (Some(_), Some(_)) => {
                    return Err(fail(format!(
                        "Unable to proceed: ambiguous argument, both machine and unit found for `{x}`.\nPlease use flag `-m` or `-u` to refine the search"
                    )));
                }
                (Some(m), None) => m,
                (None, Some(id)) => machines
                    .iter()
                    .find(|m| m.id == id)
                    .cloned()
                    .ok_or_else(not_found)?,
                (None, None) => return Err(not_found()),
            }
        }
    };
    if machine.public_ip.is_empty() {
        return Err(fail("Could not determine address of machine."));
    }
    let global = &ctx.global;
    let mut argv = ssh_options(global, port);
    if forward_agent {
        argv.push("-A".into());
    }
    if let Some(tunnel) = &global.tunnel {
        let (host, tport) = host_port(tunnel)?;
        argv.push("-J".into());
        argv.push(format!("{}@{host}:{tport}", global.ssh_username));
    }
    argv.push(machine.public_ip.clone());
    if !command.is_empty() {
        argv.push(command.join(" "));
    }
    let status = tokio::process::Command::new(ssh_program())
        .args(&argv)
        .kill_on_drop(true)
        .status()
        .await
        .map_err(|e| fail(format!("Unable to run ssh: {e}")))?;
    Ok(super::status::exit_code(status.code().unwrap_or(255)))
}
