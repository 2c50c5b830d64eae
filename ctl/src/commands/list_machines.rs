//! `fleetctl list-machines`: the machines whose agents are alive.

use std::process::ExitCode;

use fleet_core::machine::machine_legend;

use crate::cli::TableFlags;
use crate::commands::list_units::print_table;
use crate::context::{Ctx, fail};

const DEFAULT_FIELDS: &[&str] = &["machine", "ip", "metadata"];
const VALID_FIELDS: &[&str] = &["machine", "ip", "metadata"];

pub async fn run(ctx: &mut Ctx, flags: &TableFlags, full: bool) -> anyhow::Result<ExitCode> {
    let fields = crate::table::select_fields(flags.fields.as_deref(), DEFAULT_FIELDS, VALID_FIELDS)
        .map_err(|e| fail(e.to_string()))?;
    let client = ctx.client().await?;
    let machines = client.registry.list_machines().await.map_err(|e| {
        fail(format!(
            "Error retrieving list of active machines from fleet API ({e})\nPossible issues:\n  etcd is unhealthy and/or lost quorum\n  connection cannot be established to any etcd servers"
        ))
    })?;
    let rows = machines.iter().map(|m| {
        fields
            .iter()
            .map(|f| match *f {
                "machine" => machine_legend(&m.id, None, full),
                "ip" => m.public_ip.clone(),
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
