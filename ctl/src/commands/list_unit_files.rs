//! `fleetctl list-unit-files`: every submitted unit with its desired state, current
//! state and target machine — and, unlike fleet, why an unplaced unit is not running.

use std::collections::HashMap;
use std::process::ExitCode;

use fleet_core::machine::machine_legend;
use fleet_core::{MachineId, Requirements, TargetState, UnitName};
use fleet_registry::{UnitStateRecord, current_state};

use crate::cli::TableFlags;
use crate::commands::list_units::{fetch_snapshot, machine_ips, print_table};
use crate::context::{Ctx, err, fail};
use crate::table::select_fields;

const DEFAULT_FIELDS: &[&str] = &["unit", "hash", "dstate", "state", "target"];
const VALID_FIELDS: &[&str] = &[
    "unit", "hash", "dstate", "state", "target", "desc", "global", "tmachine", "reason",
];

pub async fn run(ctx: &mut Ctx, flags: &TableFlags, full: bool) -> anyhow::Result<ExitCode> {
    let fields = select_fields(flags.fields.as_deref(), DEFAULT_FIELDS, VALID_FIELDS)
        .map_err(|e| fail(e.to_string()))?;
    if fields.contains(&"tmachine") {
        err("WARNING: The \"tmachine\" field is deprecated. Use \"target\" instead");
    }
    let snapshot = fetch_snapshot(ctx).await?;
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
    let mut unexplained = 0usize;
    let rows: Vec<Vec<String>> = snapshot
        .units
        .iter()
        .map(|u| {
            let global = Requirements::parse(&u.file)
                .map(|r| r.global)
                .unwrap_or(false);
            let scheduled = scheduled_on.get(&u.name).copied();
            let reason = snapshot.unplaced.get(&u.name).cloned().unwrap_or_default();
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
                        .map(|m| machine_legend(m, ips.get(m).copied(), full))
                        .unwrap_or_default(),
                    "desc" => u.file.description().unwrap_or_default().to_string(),
                    "global" => global.to_string(),
                    _ => reason.clone(),
                })
                .collect()
        })
        .collect();
    let code = print_table(&fields, rows.into_iter(), flags)?;
    if unexplained > 0 && !fields.contains(&"reason") && ctx.tty {
        err(format!(
            "{unexplained} unit(s) should run but are not placed on any machine; see why with: fleetctl list-unit-files --fields unit,dstate,target,reason"
        ));
    }
    Ok(code)
}
