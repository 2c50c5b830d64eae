//! `fleetctl drain MACHINE`: the engine moves every unit off the machine, honouring
//! the units' rules, and places nothing there until `fleetctl undrain MACHINE`.

use std::process::ExitCode;

use fleet_core::{MachineId, UnitName};

use crate::cli::BlockFlags;
use crate::context::{Ctx, fail, out};
use crate::wait::wait_for_drain;

pub async fn run(ctx: &mut Ctx, arg: &str, block: &BlockFlags) -> anyhow::Result<ExitCode> {
    let client = ctx.client().await?;
    let machines = client.list_machines().await.map_err(|e| {
        fail(format!(
            "Error retrieving list of active machines from fleet API ({e})"
        ))
    })?;
    let ids: Vec<&MachineId> = machines.iter().map(|m| &m.id).collect();
    let machine = by_prefix(&ids, arg)?;
    // What the machine reports now, read before the drain so no move is missed (one
    // read of the cluster: a drain is rare).
    let there: Vec<UnitName> = if block.no_block {
        Vec::new()
    } else {
        let snapshot = client
            .snapshot()
            .await
            .map_err(|e| fail(format!("Error retrieving units: {e}")))?;
        let mut names: Vec<UnitName> = snapshot
            .states
            .into_iter()
            .filter(|s| s.machine == machine)
            .map(|s| s.unit)
            .collect();
        names.dedup();
        names
    };
    let newly = client
        .registry
        .drain_machine(&machine)
        .await
        .map_err(|e| fail(format!("Error draining machine {machine}: {e}")))?;
    out(if newly {
        format!("Machine {machine} drained: its units move to other machines")
    } else {
        format!("Machine {machine} is already drained")
    })?;
    wait_for_drain(ctx, &machine, &there, block).await?;
    Ok(ExitCode::SUCCESS)
}

/// The one machine of `ids` whose id is `arg` or starts with it; a clear error
/// otherwise (nothing is written).
pub fn by_prefix(ids: &[&MachineId], arg: &str) -> anyhow::Result<MachineId> {
    if MachineId::new(arg).is_err() {
        return Err(fail(format!("Invalid machine id {arg:?}")));
    }
    if let Some(exact) = ids.iter().find(|m| m.as_str() == arg) {
        return Ok((*exact).clone());
    }
    let mut found = ids.iter().filter(|m| m.as_str().starts_with(arg));
    match (found.next(), found.next()) {
        (Some(m), None) => Ok((*m).clone()),
        (Some(_), Some(_)) => Err(fail(format!(
            "Machine {arg} is ambiguous: more than one machine id starts with it"
        ))),
        (None, _) => Err(fail(format!("Machine {arg} does not exist"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machines_by_id_or_unique_prefix() {
        let ids = ["abc1", "abc2", "def"].map(|s| MachineId::new(s).unwrap());
        let refs: Vec<&MachineId> = ids.iter().collect();
        assert_eq!(by_prefix(&refs, "d").unwrap().as_str(), "def");
        assert_eq!(by_prefix(&refs, "abc1").unwrap().as_str(), "abc1");
        let msg = |arg: &str| by_prefix(&refs, arg).unwrap_err().to_string();
        assert_eq!(
            msg("abc"),
            "Machine abc is ambiguous: more than one machine id starts with it"
        );
        assert_eq!(msg("x"), "Machine x does not exist");
        assert_eq!(msg(""), "Invalid machine id \"\"");
        assert_eq!(msg("a/b"), "Invalid machine id \"a/b\"");
    }
}
