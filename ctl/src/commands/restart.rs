//! `fleetctl restart UNIT...`: a real restart. fleet v1.0 flipped the desired state to
//! `loaded` and straight back to `launched`, so its agents usually never stopped the
//! unit (behaviour §2.8); here every unit is stopped first, waited for, then started.

use std::process::ExitCode;

use fleet_core::{Requirements, TargetState, UnitName};

use crate::cli::BlockFlags;
use crate::commands::destroy::find_views;
use crate::context::{Ctx, err};
use crate::wait::{Verb, apply_targets};

pub async fn run(ctx: &mut Ctx, block: &BlockFlags, args: &[String]) -> anyhow::Result<ExitCode> {
    if args.is_empty() {
        err("No units given");
        return Ok(ExitCode::SUCCESS);
    }
    let (found, missing, _) = find_views(ctx, args).await?;
    let mut failed = missing;
    // Units to stop first (launched now), and every unit to (re)start.
    let mut stop: Vec<UnitName> = Vec::new();
    let mut start: Vec<(UnitName, bool)> = Vec::new();
    for view in &found {
        let unit = &view.unit;
        let global = Requirements::parse(&unit.file)
            .map(|r| r.global)
            .unwrap_or(false);
        let placed = global || view.current_state() != TargetState::Inactive;
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
    // Always wait for the stop, even with --no-block: without it there is no restart.
    let stop_wait = BlockFlags {
        no_block: false,
        ..block.clone()
    };
    let e = "Error restarting units";
    apply_targets(
        ctx,
        TargetState::Loaded,
        Verb::Stop,
        &[],
        &[],
        &stop,
        &stop_wait,
        e,
    )
    .await?;
    let (globals, wait): (Vec<_>, Vec<_>) = start.into_iter().partition(|(_, global)| *global);
    let names = |v: Vec<(UnitName, bool)>| v.into_iter().map(|(n, _)| n).collect::<Vec<_>>();
    apply_targets(
        ctx,
        TargetState::Launched,
        Verb::Restart,
        &[],
        &names(globals),
        &names(wait),
        block,
        e,
    )
    .await?;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
