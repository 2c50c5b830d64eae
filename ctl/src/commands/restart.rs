//! `fleetctl restart UNIT...`: a real restart. fleet v1.0 flipped the desired state to
//! `loaded` and straight back to `launched`, so its agents usually never stopped the
//! unit (behaviour §2.8); here every unit is stopped first, waited for, then started.

use std::process::ExitCode;

use fleet_core::{Requirements, TargetState, UnitName};

use crate::cli::BlockFlags;
use crate::commands::destroy::find_units;
use crate::context::{Ctx, err, fail, out};
use crate::wait::{Verb, wait_for_units};

pub async fn run(ctx: &mut Ctx, block: &BlockFlags, args: &[String]) -> anyhow::Result<ExitCode> {
    if args.is_empty() {
        err("No units given");
        return Ok(ExitCode::SUCCESS);
    }
    let (snapshot, found, missing) = find_units(ctx, args).await?;
    let mut failed = missing;
    // Units to stop first (launched now), and every unit to (re)start.
    let mut stop: Vec<UnitName> = Vec::new();
    let mut start: Vec<(UnitName, bool)> = Vec::new();
    for unit in &found {
        let global = Requirements::parse(&unit.file)
            .map(|r| r.global)
            .unwrap_or(false);
        let placed = global || snapshot.current_state(&unit.name) != TargetState::Inactive;
        match unit.target {
            TargetState::Launched if placed => stop.push(unit.name.clone()),
            TargetState::Loaded if placed => {}
            _ => {
                err(format!(
                    "Unable to restart unit {} in state inactive",
                    unit.name
                ));
                failed = true;
                continue;
            }
        }
        start.push((unit.name.clone(), global));
    }
    if start.is_empty() {
        return Ok(ExitCode::FAILURE);
    }
    let client = ctx.client().await?.clone();
    if !stop.is_empty() {
        let changes: Vec<_> = stop
            .iter()
            .map(|n| (n.clone(), TargetState::Loaded))
            .collect();
        client
            .registry
            .set_targets(&changes)
            .await
            .map_err(|e| fail(format!("Error restarting units: {e}")))?;
        // Always wait for the stop, even with --no-block: without it there is no restart.
        let stop_wait = BlockFlags {
            no_block: false,
            ..block.clone()
        };
        wait_for_units(ctx, &stop, TargetState::Loaded, Verb::Stop, &stop_wait).await?;
    }
    let changes: Vec<_> = start
        .iter()
        .map(|(n, _)| (n.clone(), TargetState::Launched))
        .collect();
    client
        .registry
        .set_targets(&changes)
        .await
        .map_err(|e| fail(format!("Error restarting units: {e}")))?;
    let mut wait = Vec::new();
    for (name, global) in start {
        if global {
            out(format!("Triggered global unit {name} restart"))?;
        } else {
            wait.push(name);
        }
    }
    wait_for_units(ctx, &wait, TargetState::Launched, Verb::Start, block).await?;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
