//! `fleetctl journal [--lines N] [-f] [--output MODE] UNIT`: the unit's journal from the
//! machine running it; with `-f`, until Ctrl-C (which closes the stream and stops
//! `journalctl` there).

use std::process::ExitCode;

use fleet_core::UnitName;

use super::status::{exit_code, is_global, pipe, running_on};
use crate::context::{Ctx, fail};

pub async fn run(
    ctx: &mut Ctx,
    args: &[String],
    lines: u32,
    follow: bool,
    output: &str,
) -> anyhow::Result<ExitCode> {
    let [arg] = args else {
        return Err(fail("One unit file must be provided."));
    };
    let (name, _) =
        UnitName::from_arg(arg).map_err(|e| fail(format!("Error retrieving unit {arg}: {e}")))?;
    let client = ctx.client().await?.clone();
    // Only this unit's keys, not the whole cluster.
    let (_, views) = client
        .registry
        .unit_views(std::slice::from_ref(&name))
        .await
        .map_err(|e| {
            fail(format!(
                "Error retrieving list of units from repository: {e}"
            ))
        })?;
    let Some(view) = views.into_iter().flatten().next() else {
        return Err(fail(format!("Unit {name} does not exist.")));
    };
    if is_global(&view.unit) {
        return Err(fail(format!(
            "Unable to retrieve journal of global unit {name}."
        )));
    }
    let Some(machine) = running_on(&view) else {
        return Err(fail(format!("Unit {name} does not appear to be running.")));
    };
    let api = client
        .api_for(&machine)
        .await
        .map_err(|e| fail(format!("Unable to reach machine {machine}: {e}")))?;
    // On the machine the unit runs under its namespace-qualified name.
    let stored = client.stored_name(&name).map_err(|e| fail(e.to_string()))?;
    let stream = api
        .journal(&stored, lines, follow, output)
        .await
        .map_err(|e| fail(e.to_string()))?;
    tokio::select! {
        code = pipe(stream) => Ok(exit_code(code?)),
        // Ctrl-C ends a follow cleanly: dropping the stream closes it remotely.
        _ = tokio::signal::ctrl_c() => Ok(ExitCode::SUCCESS),
    }
}
