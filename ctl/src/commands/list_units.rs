//! `fleetctl list-units`: one row per unit per machine that reports it, with systemd's
//! LOAD/ACTIVE/SUB as the agent there sees them.

use std::collections::HashMap;
use std::process::ExitCode;

use fleet_core::MachineId;
use fleet_core::machine::machine_legend;
use fleet_registry::ClusterSnapshot;

use serde_json::json;

use crate::cli::{LIST_UNITS_FIELDS, OutputFormat, TableFlags};
use crate::context::{Ctx, fail, out};
use crate::table::{Table, print_json_rows, select_fields};

pub async fn run(ctx: &mut Ctx, flags: &TableFlags, full: bool) -> anyhow::Result<ExitCode> {
    let (valid, defaults) = LIST_UNITS_FIELDS;
    let fields =
        select_fields(flags.fields.as_deref(), defaults, valid).map_err(|e| fail(e.to_string()))?;
    let snapshot = fetch_snapshot(ctx).await?;
    let ips = machine_ips(&snapshot);
    if flags.output.output == OutputFormat::Json {
        print_json_rows(snapshot.states.iter().map(|s| {
            json!({
                "unit": s.unit.as_str(),
                "machine_id": s.machine.as_str(),
                "machine_ip": ips.get(&s.machine).filter(|ip| !ip.is_empty()),
                "load": s.systemd.load,
                "active": s.systemd.active,
                "sub": s.systemd.sub,
                "hash": s.hash.to_string(),
            })
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows = snapshot.states.iter().map(|s| {
        fields
            .iter()
            .map(|f| match *f {
                "unit" => s.unit.to_string(),
                // A machine that is no longer listed shows without its IP, as in fleet.
                "machine" => {
                    machine_legend(&s.machine, ips.get(&s.machine).map(String::as_str), full)
                }
                "active" => s.systemd.active.clone(),
                "sub" => s.systemd.sub.clone(),
                "load" => s.systemd.load.clone(),
                _ => {
                    if full {
                        s.hash.to_string()
                    } else {
                        s.hash.short()
                    }
                }
            })
            .collect()
    });
    print_table(&fields, rows, flags)
}

/// The cluster at one revision, for the list commands.
pub async fn fetch_snapshot(ctx: &mut Ctx) -> anyhow::Result<ClusterSnapshot> {
    let client = ctx.client().await?;
    client.snapshot().await.map_err(|e| {
        fail(format!(
            "Error retrieving list of units from repository: {e}"
        ))
    })
}

/// Machine id → public IP of the machines alive in `snapshot`.
pub fn machine_ips(snapshot: &ClusterSnapshot) -> HashMap<&MachineId, String> {
    snapshot
        .machines
        .iter()
        .filter_map(|m| Some((&m.machine.id, m.machine.public_ip?.to_string())))
        .collect()
}

/// Renders rows under the legend, honouring `--no-legend` and `--sort`.
pub fn print_table(
    fields: &[&str],
    rows: impl Iterator<Item = Vec<String>>,
    flags: &TableFlags,
) -> anyhow::Result<ExitCode> {
    let sort_column = match &flags.sort {
        Some(field) => Some(fields.iter().position(|f| f == field).ok_or_else(|| {
            fail(format!(
                "Invalid sort key {field:?}: it must be one of the printed fields"
            ))
        })?),
        None => None,
    };
    let mut table = Table::new(fields, !flags.no_legend);
    for row in rows {
        table.push(row);
    }
    if let Some(column) = sort_column {
        table.sort_by_column(column, !flags.no_legend);
    }
    let text = table.to_string();
    if !text.is_empty() {
        out(text.trim_end_matches('\n'))?;
    }
    Ok(ExitCode::SUCCESS)
}
