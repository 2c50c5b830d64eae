//! `fleetctl destroy UNIT...`: remove units from the cluster (their agents stop them).

use std::process::ExitCode;

use fleet_core::UnitName;
use fleet_registry::UnitRecord;

use crate::context::{Ctx, err, fail, out};

pub async fn run(ctx: &mut Ctx, args: &[String]) -> anyhow::Result<ExitCode> {
    if args.is_empty() {
        err("No units given");
        return Ok(ExitCode::SUCCESS);
    }
    // Destroyed by name, without reading the units first: a unit whose record is
    // corrupt can be destroyed too (that is how it is cleared).
    let mut names: Vec<(UnitName, &String)> = Vec::new();
    let mut missing: Vec<&String> = Vec::new();
    for arg in args {
        match UnitName::from_arg(arg) {
            Ok((name, _)) if !names.iter().any(|(n, _)| *n == name) => names.push((name, arg)),
            Ok(_) => {}
            Err(_) => missing.push(arg),
        }
    }
    let client = ctx.client().await?;
    let mut failed = false;
    let mut destroyed = Vec::new();
    for (name, arg) in &names {
        match client.registry.destroy_unit(name).await {
            Ok(true) => destroyed.push(name),
            Ok(false) => missing.push(arg),
            Err(e) => {
                err(format!("Error destroying units: {name}: {e}"));
                failed = true;
            }
        }
    }
    if destroyed.is_empty() && !failed {
        return Err(fail("Units not found in registry"));
    }
    for arg in &missing {
        err(format!("Unit {arg} not found in registry"));
    }
    for name in destroyed {
        out(format!("Destroyed {name}"))?;
    }
    let missing = !missing.is_empty();
    Ok(if failed || missing {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Looks the arguments up in the registry (one batched read, not the whole cluster).
/// Unknown units get a line on stderr each; if none is known, the command fails with
/// fleet's `Units not found in registry`. Returns the units found (in argument order)
/// and whether any was missing.
pub async fn find_units(ctx: &mut Ctx, args: &[String]) -> anyhow::Result<(Vec<UnitRecord>, bool)> {
    let mut names: Vec<(UnitName, &String)> = Vec::new();
    let mut missing: Vec<&String> = Vec::new();
    for arg in args {
        match UnitName::from_arg(arg) {
            Ok((name, _)) if !names.iter().any(|(n, _)| *n == name) => names.push((name, arg)),
            Ok(_) => {}
            Err(_) => missing.push(arg),
        }
    }
    let client = ctx.client().await?;
    let lookup: Vec<UnitName> = names.iter().map(|(n, _)| n.clone()).collect();
    let units = client.registry.get_units(&lookup).await.map_err(|e| {
        fail(format!(
            "Error retrieving list of units from repository: {e}"
        ))
    })?;
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
