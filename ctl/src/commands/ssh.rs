//! `fleetctl ssh MACHINE|UNIT [CMD...]`: runs the system `ssh` to a machine's public IP
//! (or the machine running a unit), through `--tunnel` when given.
//!
//! Namespaces (issue 17): with `--namespace NS` (not `default`), only NS's machines
//! are reached: those running one of its units, and, for a namespace bound to a
//! selector, those matching it; through the API, only by a person who is `user` or
//! `admin` there. A unit is looked up in NS, which the caller's rights
//! there already allow reading. This is fleetctl's courtesy, not a lock: who may log
//! in is decided by each machine's sshd and its keys, which fleet does not manage.

use std::process::ExitCode;

use fleet_core::{Machine, UnitName};

use crate::client::{ClientError, host_port, ssh_options, ssh_program};
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
                        "Unable to proceed: one machine or unit must be provided",
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
    let machines = client.list_machines().await.map_err(|e| {
        fail(format!(
            "Error retrieving list of active machines from fleet API ({e})"
        ))
    })?;
    // fleet's lookups and their reasons for not finding anything.
    let by_prefix = |p: &str| -> Result<Machine, &'static str> {
        let mut found = machines.iter().filter(|m| m.id.as_str().starts_with(p));
        match (found.next(), found.next()) {
            (Some(m), None) => Ok(m.clone()),
            (Some(_), Some(_)) => Err("found more than one machine"),
            (None, _) => Err("machine does not exist"),
        }
    };
    let snapshot = client.snapshot().await.map_err(|e| {
        fail(format!(
            "Error retrieving list of units from repository: {e}"
        ))
    })?;
    // Ok(None): the unit exists but is on no (known) machine.
    let unit_machine = |u: &str| -> Result<Option<Machine>, &'static str> {
        let Ok((name, _)) = UnitName::from_arg(u) else {
            return Err("unit does not exist");
        };
        let Some(unit) = snapshot.units.iter().find(|r| r.name == name) else {
            return Err("unit does not exist");
        };
        if super::status::is_global(unit) {
            return Err("global units unsupported");
        }
        Ok(snapshot
            .scheduled_on(&name)
            .and_then(|id| machines.iter().find(|m| &m.id == id))
            .cloned())
    };
    let proceed = |reason: &str| fail(format!("Unable to proceed: {reason}"));
    let unknown_address = || fail("Could not determine address of machine.");
    let machine = match target {
        Target::Machine(m) => by_prefix(&m).map_err(proceed)?,
        Target::Unit(u) => unit_machine(&u)
            .map_err(proceed)?
            .ok_or_else(unknown_address)?,
        Target::Either(x) => match (by_prefix(&x), unit_machine(&x)) {
            (Ok(_), Ok(Some(_))) => {
                return Err(fail(format!(
                    "Unable to proceed: ambiguous argument, both machine and unit found for `{x}`.\nPlease use flag `-m` or `-u` to refine the search"
                )));
            }
            (Ok(m), _) | (Err(_), Ok(Some(m))) => m,
            (Err(_), _) => return Err(proceed("could not find matching unit or machine")),
        },
    };
    if !client.namespace.is_default() {
        let ns = &client.namespace;
        let known = client
            .registry
            .namespaces()
            .await
            .map_err(|e| fail(e.to_string()))?;
        let bound = known
            .selector(ns)
            .is_some_and(|s| !s.is_empty() && s.matches(&machine.metadata));
        // The snapshot holds only the namespace's units (see `Namespaced`).
        let runs_ours = snapshot.schedule.iter().any(|e| e.machine == machine.id);
        if !bound && !runs_ours {
            return Err(proceed(&format!(
                "machine {} is not a machine of namespace {ns} (it runs none of its units)",
                machine.id
            )));
        }
        // Through the API a person's role there decides: an empty SetTargets asks
        // whether they may change its units (user or admin) and changes nothing. With
        // the etcd driver it touches no key: etcd roles cannot say who may log in.
        match client.registry.set_targets(&[]).await {
            Ok(_) => {}
            Err(ClientError::Api(e)) if e.is_permission_denied() => {
                return Err(proceed(&format!(
                    "ssh to the machines of namespace {ns} takes the role user or admin there ({e})"
                )));
            }
            Err(e) => return Err(fail(e.to_string())),
        }
    }
    // The address comes from the cluster, typed: only an IP reaches ssh's command line
    // (a record with anything else is skipped when it is read).
    let Some(ip) = machine.public_ip else {
        return Err(unknown_address());
    };
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
    // `--`: the host and the remote command are never read as ssh options.
    argv.push("--".into());
    argv.push(ip.to_string());
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
