//! `fleetctl unload UNIT...`: ask for `inactive` (stopped and removed from its machine).

use std::process::ExitCode;

use fleet_core::{Requirements, TargetState};

use crate::cli::BlockFlags;
use crate::commands::destroy::find_units;
use crate::commands::stop::join;
use crate::context::{Ctx, err};
use crate::wait::{Verb, apply_targets};

pub async fn run(ctx: &mut Ctx, block: &BlockFlags, args: &[String]) -> anyhow::Result<ExitCode> {
    if args.is_empty() {
        err("No units given");
        return Ok(ExitCode::SUCCESS);
    }
    let (found, missing) = find_units(ctx, args).await?;
    let mut wait = Vec::new();
    let mut globals = Vec::new();
    for unit in found.iter().filter(|u| u.target != TargetState::Inactive) {
        if Requirements::parse(&unit.file)
            .map(|r| r.global)
            .unwrap_or(false)
        {
            globals.push(unit.name.clone());
        } else {
            wait.push(unit.name.clone());
        }
    }
    let (target, verb) = (TargetState::Inactive, Verb::Unload);
    apply_targets(
        ctx,
        target,
        verb,
        &[],
        &globals,
        &wait,
        block,
        "Error unloading units",
    )
    .await?;
    err(format!("Successfully unloaded units [{}].", join(&wait)));
    Ok(if missing {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
