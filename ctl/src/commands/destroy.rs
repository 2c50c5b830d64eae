//! `fleetctl destroy UNIT...`: remove units from the cluster (their agents stop them).

use std::process::ExitCode;

use fleet_core::UnitName;
use fleet_registry::{UnitRecord, UnitView};

use crate::context::{Ctx, err, fail, out};

pub async fn run(ctx: &mut Ctx, args: &[String]) -> anyhow::Result<ExitCode> {
    if args.is_empty() {
        err("No units given");
        return Ok(ExitCode::SUCCESS);
    }
    // Destroyed by name, without reading the units first: a unit whose record is
    // corrupt can be destroyed too (that is how it is cleared). All in few txns (64
    // units each), not one round trip per unit.
    let (names, mut missing) = parse_args(args);
    let client = ctx.client().await?;
    let lookup: Vec<UnitName> = names.iter().map(|(n, _)| n.clone()).collect();
    let existed = match client.registry.destroy_units(&lookup).await {
        Ok(existed) => existed,
        Err(e) => {
            err(format!("Error destroying units: {e}"));
            return Ok(ExitCode::FAILURE);
        }
    };
    let mut destroyed = Vec::new();
    for ((name, arg), existed) in names.iter().zip(existed) {
        if existed {
            destroyed.push(name);
        } else {
            missing.push(arg);
        }
    }
    if destroyed.is_empty() {
        return Err(fail("Units not found in registry"));
    }
    for arg in &missing {
        err(format!("Unit {arg} not found in registry"));
    }
    for name in destroyed {
        out(format!("Destroyed {name}"))?;
    }
    Ok(if missing.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Looks the arguments up in the registry (one batched read, not the whole cluster).
/// Unknown units get a line on stderr each; if none is known, the command fails with
/// fleet's `Units not found in registry`. Returns the units found (in argument order)
/// and whether any was missing.
pub async fn find_units(ctx: &mut Ctx, args: &[String]) -> anyhow::Result<(Vec<UnitRecord>, bool)> {
    let (names, missing) = parse_args(args);
    let client = ctx.client().await?;
    let lookup: Vec<UnitName> = names.iter().map(|(n, _)| n.clone()).collect();
    let units = client.registry.get_units(&lookup).await.map_err(|e| {
        fail(format!(
            "Error retrieving list of units from repository: {e}"
        ))
    })?;
    report_found(names, units, missing)
}

/// [`find_units`] with each unit's reported states and placement (stop, restart):
/// one read of the named units' keys, not the whole cluster. Also returns the
/// revision read at.
pub async fn find_views(
    ctx: &mut Ctx,
    args: &[String],
) -> anyhow::Result<(Vec<UnitView>, bool, i64)> {
    let (names, missing) = parse_args(args);
    let client = ctx.client().await?;
    let lookup: Vec<UnitName> = names.iter().map(|(n, _)| n.clone()).collect();
    let (revision, views) = client.registry.unit_views(&lookup).await.map_err(|e| {
        fail(format!(
            "Error retrieving list of units from repository: {e}"
        ))
    })?;
    let (found, missing) = report_found(names, views, missing)?;
    Ok((found, missing, revision))
}

/// The arguments as unit names (each once, with its argument), and the arguments
/// that are no valid unit name.
fn parse_args(args: &[String]) -> (Vec<(UnitName, &String)>, Vec<&String>) {
    let mut names: Vec<(UnitName, &String)> = Vec::new();
    let mut missing: Vec<&String> = Vec::new();
    for arg in args {
        match UnitName::from_arg(arg) {
            Ok((name, _)) if !names.iter().any(|(n, _)| *n == name) => names.push((name, arg)),
            Ok(_) => {}
            Err(_) => missing.push(arg),
        }
    }
    (names, missing)
}

/// Pairs lookups with their arguments, printing fleet's lines for missing units.
fn report_found<'a, T>(
    names: Vec<(UnitName, &'a String)>,
    units: Vec<Option<T>>,
    mut missing: Vec<&'a String>,
) -> anyhow::Result<(Vec<T>, bool)> {
    let mut found = Vec::with_capacity(units.len());
    for ((_, arg), unit) in names.iter().zip(units) {
        match unit {
            Some(u) => found.push(u),
            None => missing.push(arg),
        }
    }
    if found.is_empty() {
        return Err(fail("Units not found in registry"));
    }
    for arg in &missing {
        err(format!("Unit {arg} not found in registry"));
    }
    Ok((found, !missing.is_empty()))
}
