//! `fleetctl list-machines`: the machines whose agents are alive.

use std::process::ExitCode;

use fleet_core::machine::machine_legend;

use serde_json::json;

use crate::cli::{LIST_MACHINES_FIELDS, OutputFormat, TableFlags};
use crate::commands::list_units::print_table;
use crate::context::{Ctx, fail};
use crate::table::print_json_rows;

pub async fn run(ctx: &mut Ctx, flags: &TableFlags, full: bool) -> anyhow::Result<ExitCode> {
    let (valid, defaults) = LIST_MACHINES_FIELDS;
    let fields = crate::table::select_fields(flags.fields.as_deref(), defaults, valid)
        .map_err(|e| fail(e.to_string()))?;
    let client = ctx.client().await?;
    let machines = client.list_machines().await.map_err(|e| {
        fail(format!(
            "Error retrieving list of active machines from fleet API ({e})"
        ))
    })?;
    let json = flags.output.output == OutputFormat::Json;
    // Read only when shown: fleet's columns cost one call, as in fleet.
    let drained = if json || fields.contains(&"drained") {
        client.registry.drained_machines().await.map_err(|e| {
            fail(format!(
                "Error retrieving list of drained machines from fleet API ({e})"
            ))
        })?
    } else {
        Default::default()
    };
    if json {
        print_json_rows(machines.iter().map(|m| {
            json!({
                "machine_id": m.id.as_str(),
                "ip": m.public_ip.map(|ip| ip.to_string()),
                "metadata": m.metadata,
                "drained": drained.contains(&m.id),
            })
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows = machines.iter().map(|m| {
        fields
            .iter()
            .map(|f| match *f {
                "machine" => machine_legend(&m.id, None, full),
                "ip" => m.public_ip.map(|ip| ip.to_string()).unwrap_or_default(),
                "drained" => if drained.contains(&m.id) {
                    "drained"
                } else {
                    "-"
                }
                .to_string(),
                _ => m
                    .metadata
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(","),
            })
            .collect()
    });
    print_table(&fields, rows, flags)
}
