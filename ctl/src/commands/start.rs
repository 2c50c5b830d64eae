//! `fleetctl submit|load|start UNIT...`: create units as needed, then ask for the
//! desired state (`inactive`, `loaded`, `launched`) and wait for it.

use std::process::ExitCode;

use fleet_core::{TargetState, UnitName};

use crate::cli::{BlockFlags, CreateFlags};
use crate::commands::create::{NamedUnit, create_units};
use crate::context::{Ctx, err, fail, out};
use crate::wait::{Verb, apply_targets, wait_for_units};

pub async fn submit(
    ctx: &mut Ctx,
    create: &CreateFlags,
    args: &[String],
) -> anyhow::Result<ExitCode> {
    if args.is_empty() {
        err("No units given");
        return Ok(ExitCode::SUCCESS);
    }
    create_units(
        ctx,
        args,
        create,
        &[TargetState::Inactive],
        TargetState::Inactive,
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn load(
    ctx: &mut Ctx,
    create: &CreateFlags,
    block: &BlockFlags,
    args: &[String],
) -> anyhow::Result<ExitCode> {
    activate(ctx, create, block, args, TargetState::Loaded).await
}

pub async fn start(
    ctx: &mut Ctx,
    create: &CreateFlags,
    block: &BlockFlags,
    args: &[String],
) -> anyhow::Result<ExitCode> {
    activate(ctx, create, block, args, TargetState::Launched).await
}

/// Shared by load and start: they differ only in the state asked for.
async fn activate(
    ctx: &mut Ctx,
    create: &CreateFlags,
    block: &BlockFlags,
    args: &[String],
    target: TargetState,
) -> anyhow::Result<ExitCode> {
    let (verb, error_prefix, allowed): (Verb, &str, &[TargetState]) = match target {
        TargetState::Launched => (
            Verb::Start,
            "Error starting units",
            &[
                TargetState::Inactive,
                TargetState::Loaded,
                TargetState::Launched,
            ],
        ),
        _ => (
            Verb::Load,
            "Error loading units",
            &[TargetState::Inactive, TargetState::Loaded],
        ),
    };
    if args.is_empty() {
        err("No units given");
        return Ok(ExitCode::SUCCESS);
    }
    // Templates can never run; refuse before anything is written.
    for arg in args {
        if let Ok((name, _)) = UnitName::from_arg(arg)
            && name.is_template()
        {
            return Err(fail(format!(
                "{error_prefix}: cannot activate template {:?}",
                name.as_str()
            )));
        }
    }
    let units = create_units(ctx, args, create, allowed, target).await?;
    // Only units whose desired state changes are triggered (and waited for), as in fleet.
    let changing: Vec<&NamedUnit> = units
        .iter()
        .filter(|u| u.previous != Some(target))
        .collect();
    let names = |pick: &dyn Fn(&NamedUnit) -> bool| -> Vec<UnitName> {
        changing
            .iter()
            .filter(|u| pick(u))
            .map(|u| u.name.clone())
            .collect()
    };
    // Units just created carry `target` already: only the others' targets are written.
    apply_targets(
        ctx,
        target,
        verb,
        &names(&|u| !u.target_written),
        &[],
        &[],
        block,
        error_prefix,
    )
    .await?;
    for name in names(&|u| u.global) {
        out(format!("Triggered global unit {name} {}", verb.word()))?;
    }
    wait_for_units(ctx, &names(&|u| !u.global), target, verb, block).await?;
    Ok(ExitCode::SUCCESS)
}
