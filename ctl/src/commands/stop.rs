//! `fleetctl stop UNIT...`: ask for `loaded` (stopped but still on its machine).

use std::process::ExitCode;

use fleet_core::{Requirements, TargetState, UnitName};

use crate::cli::BlockFlags;
use crate::commands::destroy::find_views;
use crate::context::{Ctx, err, fail};
use crate::wait::{Verb, apply_targets};

pub async fn run(ctx: &mut Ctx, block: &BlockFlags, args: &[String]) -> anyhow::Result<ExitCode> {
    if args.is_empty() {
        err("No units given");
        return Ok(ExitCode::SUCCESS);
    }
    let (found, missing, _) = find_views(ctx, args).await?;
    let mut wait = Vec::new();
    let mut globals = Vec::new();
    // As fleet: by current state. A unit on no machine cannot be stopped (checked for
    // every unit before anything is written); one already stopped is skipped.
    for view in &found {
        let unit = &view.unit;
        let global = Requirements::parse(&unit.file)
            .map(|r| r.global)
            .unwrap_or(false);
        if global {
            if unit.target == TargetState::Launched {
                globals.push(unit.name.clone());
            }
            continue;
        }
        match view.current_state() {
            TargetState::Inactive => {
                return Err(fail(format!(
                    "Unable to stop unit {} in state inactive",
                    unit.name
                )));
            }
            TargetState::Loaded => {}
            TargetState::Launched => wait.push(unit.name.clone()),
        }
    }
    let (target, verb) = (TargetState::Loaded, Verb::Stop);
    apply_targets(
        ctx,
        target,
        verb,
        &[],
        &globals,
        &wait,
        block,
        "Error stopping units",
    )
    .await?;
    err(format!("Successfully stopped units [{}].", join(&wait)));
    Ok(if missing {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Go's `%v` of a string slice, without the brackets.
pub fn join(names: &[UnitName]) -> String {
    names
        .iter()
        .map(UnitName::as_str)
        .collect::<Vec<_>>()
        .join(" ")
}
