//! `fleetctl unload UNIT...`: ask for `inactive` (stopped and removed from its machine).

use std::process::ExitCode;

use fleet_core::{Requirements, TargetState};

use crate::cli::BlockFlags;
use crate::commands::destroy::find_units;
use crate::commands::stop::join;
use crate::context::{Ctx, err, fail, out};
use crate::wait::{Verb, wait_for_units};

pub async fn run(ctx: &mut Ctx, block: &BlockFlags, args: &[String]) -> anyhow::Result<ExitCode> {
    if args.is_empty() {
        err("No units given");
        return Ok(ExitCode::SUCCESS);
    }
    let (_, found, missing) = find_units(ctx, args).await?;
    let mut changes = Vec::new();
    let mut wait = Vec::new();
    let mut globals = Vec::new();
    for unit in found.iter().filter(|u| u.target != TargetState::Inactive) {
        changes.push((unit.name.clone(), TargetState::Inactive));
        if Requirements::parse(&unit.file)
            .map(|r| r.global)
            .unwrap_or(false)
        {
            globals.push(unit.name.clone());
        } else {
            wait.push(unit.name.clone());
        }
    }
    if !changes.is_empty() {
        let client = ctx.client().await?;
        client
            .registry
            .set_targets(&changes)
            .await
            .map_err(|e| fail(format!("Error unloading units: {e}")))?;
    }
    for name in &globals {
        out(format!("Triggered global unit {name} unload"))?;
    }
    wait_for_units(ctx, &wait, TargetState::Inactive, Verb::Unload, block).await?;
    err(format!("Successfully unloaded units [{}].", join(&wait)));
    Ok(if missing {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
