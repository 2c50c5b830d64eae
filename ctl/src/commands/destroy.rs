//! `fleetctl destroy UNIT...`: remove units from the cluster (their agents stop them).

use std::process::ExitCode;

use fleet_core::UnitName;
use fleet_registry::{ClusterSnapshot, UnitRecord};

use crate::context::{Ctx, err, fail, out};

pub async fn run(ctx: &mut Ctx, args: &[String]) -> anyhow::Result<ExitCode> {
    if args.is_empty() {
        err("No units given");
        return Ok(ExitCode::SUCCESS);
    }
    let (_, found, missing) = find_units(ctx, args).await?;
    let client = ctx.client().await?;
    let mut failed = false;
    for unit in &found {
        match client.registry.destroy_unit(&unit.name).await {
            Ok(_) => out(format!("Destroyed {}", unit.name))?,
            Err(e) => {
                err(format!("Error destroying units: {}: {e}", unit.name));
                failed = true;
            }
        }
    }
    Ok(if failed || missing {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Looks the arguments up in the registry. Unknown units get a line on stderr each;
/// if none is known, the command fails with fleet's `Units not found in registry`.
/// Returns the snapshot, the units found (in argument order) and whether any was missing.
pub async fn find_units(
    ctx: &mut Ctx,
    args: &[String],
) -> anyhow::Result<(ClusterSnapshot, Vec<UnitRecord>, bool)> {
    let client = ctx.client().await?;
    let snapshot = client.registry.snapshot().await.map_err(|e| {
        fail(format!(
            "Error retrieving list of units from repository: {e}"
        ))
    })?;
    let mut found: Vec<UnitRecord> = Vec::new();
    let mut missing = Vec::new();
    for arg in args {
        let unit = UnitName::from_arg(arg)
            .ok()
            .and_then(|(name, _)| snapshot.units.binary_search_by(|u| u.name.cmp(&name)).ok())
            .map(|i| &snapshot.units[i]);
        match unit {
            Some(u) if !found.iter().any(|f| f.name == u.name) => found.push(u.clone()),
            Some(_) => {}
            None => missing.push(arg),
        }
    }
    if found.is_empty() {
        return Err(fail("Units not found in registry"));
    }
    for arg in &missing {
        err(format!("Unit {arg} not found in registry"));
    }
    Ok((snapshot, found, !missing.is_empty()))
}
