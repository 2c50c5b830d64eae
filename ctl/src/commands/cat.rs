//! `fleetctl cat UNIT`: the unit's text as stored, in fleet's canonical form.

use std::io::Write;
use std::process::ExitCode;

use fleet_core::UnitName;

use crate::context::{Ctx, fail};

pub async fn run(ctx: &mut Ctx, args: &[String]) -> anyhow::Result<ExitCode> {
    let [arg] = args else {
        return Err(fail("One unit file must be provided"));
    };
    let (name, _) =
        UnitName::from_arg(arg).map_err(|e| fail(format!("Error retrieving Unit {arg}: {e}")))?;
    let client = ctx.client().await?;
    let unit = client
        .registry
        .get_unit(&name)
        .await
        .map_err(|e| fail(format!("Error retrieving Unit {name}: {e}")))?;
    let Some(unit) = unit else {
        return Err(fail(format!("Unit {name} not found")));
    };
    // fleet prints the canonical text with no extra newline.
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(unit.file.canonical().as_bytes())?;
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}
