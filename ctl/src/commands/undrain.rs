//! `fleetctl undrain MACHINE`: the machine takes units again.

use std::process::ExitCode;

use fleet_core::MachineId;

use crate::commands::drain::by_prefix;
use crate::context::{Ctx, fail, out};

pub async fn run(ctx: &mut Ctx, arg: &str) -> anyhow::Result<ExitCode> {
    let client = ctx.client().await?;
    let machines = client.list_machines().await.map_err(|e| {
        fail(format!(
            "Error retrieving list of active machines from fleet API ({e})"
        ))
    })?;
    // A drained machine may have left the cluster meanwhile: its drain can still end.
    let drained = client
        .registry
        .drained_machines()
        .await
        .map_err(|e| fail(format!("Error retrieving drained machines: {e}")))?;
    let mut ids: Vec<&MachineId> = machines.iter().map(|m| &m.id).collect();
    ids.extend(
        drained
            .iter()
            .filter(|d| !machines.iter().any(|m| &m.id == *d)),
    );
    let machine = by_prefix(&ids, arg)?;
    let was = client
        .registry
        .undrain_machine(&machine)
        .await
        .map_err(|e| fail(format!("Error undraining machine {machine}: {e}")))?;
    out(if was {
        format!("Machine {machine} undrained: it takes units again")
    } else {
        format!("Machine {machine} is not drained")
    })?;
    Ok(ExitCode::SUCCESS)
}
