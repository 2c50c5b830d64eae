//! `fleetctl list-unit-files`: every submitted unit with its desired state, current
//! state and target machine — and, unlike fleet, why an unplaced unit is not running.

use std::collections::{BTreeMap, HashMap};
use std::process::ExitCode;

use fleet_core::machine::machine_legend;
use fleet_core::{MachineId, Requirements, TargetState, UnitName};
use fleet_registry::{UnitStateRecord, current_state};

use serde_json::json;

use crate::cli::{LIST_UNIT_FILES_FIELDS, OutputFormat, TableFlags};
use crate::client::Reading;
use crate::commands::list_units::{
    fetch_snapshot, json_namespace, machine_ips, namespace_column, print_table,
};
use crate::context::{Ctx, err, fail};
use crate::table::{print_json_rows, select_fields};

pub async fn run(ctx: &mut Ctx, flags: &TableFlags, full: bool) -> anyhow::Result<ExitCode> {
    let (valid, defaults) = LIST_UNIT_FILES_FIELDS;
    let fields =
        select_fields(flags.fields.as_deref(), defaults, valid).map_err(|e| fail(e.to_string()))?;
    let json_output = flags.output.output == OutputFormat::Json;
    if fields.contains(&"tmachine") && !json_output {
        err("WARNING: The \"tmachine\" field is deprecated. Use \"target\" instead");
    }
    let (snapshot, known) = fetch_snapshot(ctx, Reading::Whole).await?;
    let ips = machine_ips(&snapshot);
    // Indexes built once, so the table costs O(units + placements + states).
    let mut scheduled_on: HashMap<&UnitName, &MachineId> = HashMap::new();
    for e in &snapshot.schedule {
        scheduled_on.entry(&e.unit).or_insert(&e.machine);
    }
    let mut states: HashMap<&UnitName, Vec<&UnitStateRecord>> = HashMap::new();
    for s in &snapshot.states {
        states.entry(&s.unit).or_default().push(s);
    }
    // Why a unit's record (or its placement or state) was left out, in its reason.
    let mut skipped: BTreeMap<&UnitName, String> = BTreeMap::new();
    for s in &snapshot.skipped {
        if let Some(u) = &s.unit {
            skipped.entry(u).or_insert_with(|| s.to_string());
        }
    }
    // Units whose own record is unreadable get a row of their own, with only the reason.
    let unreadable: Vec<&UnitName> = snapshot
        .unreadable_units()
        .into_iter()
        .filter(|u| snapshot.units.binary_search_by(|r| r.name.cmp(u)).is_err())
        .collect();
    let reason_of = |u: &UnitName| snapshot.unplaced.get(u).or_else(|| skipped.get(u)).cloned();
    if json_output {
        print_json_rows(
            snapshot
                .units
                .iter()
                .map(|u| {
                    let global = Requirements::parse(&u.file)
                        .map(|r| r.global)
                        .unwrap_or(false);
                    let scheduled = scheduled_on.get(&u.name).copied();
                    let current = (!global).then(|| {
                        current_state(
                            scheduled,
                            states.get(&u.name).into_iter().flatten().copied(),
                        )
                        .to_string()
                    });
                    let (namespace, unit) = json_namespace(known.as_ref(), &u.name);
                    let mut row = json!({
                        "unit": unit,
                        "hash": u.hash.to_string(),
                        "desired_state": u.target.to_string(),
                        "current_state": current,
                        "target_machine_id": scheduled.map(|m| m.as_str()),
                        "target_machine_ip": scheduled
                            .and_then(|m| ips.get(m).map(String::as_str))
                            .filter(|ip| !ip.is_empty()),
                        "global": global,
                        "description": u.file.description(),
                        "reason": reason_of(&u.name),
                    });
                    if let Some(ns) = namespace {
                        row["namespace"] = json!(ns);
                    }
                    row
                })
                .chain(unreadable.iter().map(|u| {
                    json!({
                        "unit": u.as_str(),
                        "reason": reason_of(u),
                    })
                })),
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut unexplained = 0usize;
    let rows: Vec<Vec<String>> = snapshot
        .units
        .iter()
        .map(|u| {
            let global = Requirements::parse(&u.file)
                .map(|r| r.global)
                .unwrap_or(false);
            let scheduled = scheduled_on.get(&u.name).copied();
            let reason = reason_of(&u.name).unwrap_or_default();
            if !global
                && scheduled.is_none()
                && u.target != TargetState::Inactive
                && !u.name.is_template()
            {
                unexplained += 1;
            }
            fields
                .iter()
                .map(|f| match *f {
                    "unit" => u.name.to_string(),
                    "hash" => {
                        if full {
                            u.hash.to_string()
                        } else {
                            u.hash.short()
                        }
                    }
                    "dstate" => u.target.to_string(),
                    "state" if global => "-".to_string(),
                    "state" => current_state(
                        scheduled,
                        states.get(&u.name).into_iter().flatten().copied(),
                    )
                    .to_string(),
                    "target" | "tmachine" if global => "global".to_string(),
                    "target" | "tmachine" => scheduled
                        .map(|m| machine_legend(m, ips.get(m).map(String::as_str), full))
                        .unwrap_or_default(),
                    "desc" => u.file.description().unwrap_or_default().to_string(),
                    "global" => global.to_string(),
                    _ => reason.clone(),
                })
                .collect()
        })
        .chain(unreadable.iter().map(|u| {
            fields
                .iter()
                .map(|f| match *f {
                    "unit" => u.to_string(),
                    "reason" => reason_of(u).unwrap_or_default(),
                    _ => "-".to_string(),
                })
                .collect()
        }))
        .collect();
    let (fields, rows) = namespace_column(known.as_ref(), &fields, rows);
    let code = print_table(&fields, rows.into_iter(), flags)?;
    if unexplained > 0 && !fields.contains(&"reason") && ctx.tty {
        err(format!(
            "{unexplained} unit(s) should run but are not placed on any machine; see why with: fleetctl list-unit-files --fields unit,dstate,target,reason"
        ));
    }
    Ok(code)
}
