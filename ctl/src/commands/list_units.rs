//! `fleetctl list-units`: one row per unit per machine that reports it, with systemd's
//! LOAD/ACTIVE/SUB as the agent there sees them.

use std::collections::HashMap;
use std::process::ExitCode;

use fleet_core::machine::machine_legend;
use fleet_core::{MachineId, Namespace, Namespaces, UnitName};
use fleet_registry::ClusterSnapshot;

use serde_json::json;

use crate::cli::{LIST_UNITS_FIELDS, OutputFormat, TableFlags};
use crate::client::Reading;
use crate::context::{Ctx, fail, out};
use crate::table::{Table, print_json_rows, select_fields};

pub async fn run(ctx: &mut Ctx, flags: &TableFlags, full: bool) -> anyhow::Result<ExitCode> {
    let (valid, defaults) = LIST_UNITS_FIELDS;
    let fields =
        select_fields(flags.fields.as_deref(), defaults, valid).map_err(|e| fail(e.to_string()))?;
    let (snapshot, known) = fetch_snapshot(ctx, Reading::States).await?;
    let ips = machine_ips(&snapshot);
    if flags.output.output == OutputFormat::Json {
        print_json_rows(snapshot.states.iter().map(|s| {
            let (namespace, unit) = json_namespace(known.as_ref(), &s.unit);
            let mut row = json!({
                "unit": unit,
                "machine_id": s.machine.as_str(),
                "machine_ip": ips.get(&s.machine).filter(|ip| !ip.is_empty()),
                "load": s.systemd.load,
                "active": s.systemd.active,
                "sub": s.systemd.sub,
                "hash": s.hash.to_string(),
            });
            if let Some(ns) = namespace {
                row["namespace"] = json!(ns);
            }
            row
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = snapshot
        .states
        .iter()
        .map(|s| {
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
        })
        .collect();
    let (fields, rows) = namespace_column(known.as_ref(), &fields, rows);
    print_table(&fields, rows.into_iter(), flags)
}

/// The cluster at one revision, for the list commands: the namespace's units, or with
/// `--all-namespaces` every unit under its stored name and the namespaces to split it.
pub async fn fetch_snapshot(
    ctx: &mut Ctx,
    reading: Reading,
) -> anyhow::Result<(ClusterSnapshot, Option<Namespaces>)> {
    let all = ctx.global.all_namespaces;
    let client = ctx.client().await?;
    let fetched = if all {
        (client.read_all(reading).await).map(|(snap, known)| (snap, Some(known)))
    } else {
        client.read(reading).await.map(|snap| (snap, None))
    };
    fetched.map_err(|e| {
        fail(format!(
            "Error retrieving list of units from repository: {e}"
        ))
    })
}

/// With `--all-namespaces`: a NAMESPACE column first, and units named as in their
/// namespace. Without, the fields and rows unchanged.
pub fn namespace_column<'f>(
    known: Option<&Namespaces>,
    fields: &[&'f str],
    rows: Vec<Vec<String>>,
) -> (Vec<&'f str>, Vec<Vec<String>>) {
    let Some(known) = known else {
        return (fields.to_vec(), rows);
    };
    let unit_col = fields.iter().position(|f| *f == "unit");
    let mut out_fields = vec!["namespace"];
    out_fields.extend_from_slice(fields);
    let rows = rows
        .into_iter()
        .map(|mut row| {
            let mut ns = Namespace::DEFAULT.to_string();
            if let Some(c) = unit_col
                && let Some(cell) = row.get_mut(c)
                && let Ok(stored) = UnitName::parse(cell)
            {
                let (n, local) = known.split(&stored);
                ns = n.to_string();
                *cell = local.to_string();
            }
            row.insert(0, ns);
            row
        })
        .collect();
    (out_fields, rows)
}

/// The namespace and name there of a stored unit name, for JSON rows.
pub fn json_namespace(known: Option<&Namespaces>, stored: &UnitName) -> (Option<String>, String) {
    match known {
        Some(k) => {
            let (n, local) = k.split(stored);
            (Some(n.to_string()), local.to_string())
        }
        None => (None, stored.to_string()),
    }
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
