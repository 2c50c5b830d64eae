//! `fleetctl status UNIT...`: what `systemctl status` prints on the machine running each
//! unit, streamed from that machine's fleetd (fleet ran it over SSH).

use std::io::Write;
use std::process::ExitCode;

use fleet_api::client::{Output, OutputPiece};
use std::collections::HashMap;

use fleet_core::{Machine, MachineId, Requirements, TargetState, UnitName};
use fleet_registry::{UnitRecord, UnitView};

use serde_json::json;

use crate::cli::OutputFormat;
use crate::client::Client;
use crate::commands::visible::Visible;
use crate::context::{Ctx, err, fail};
use crate::table::print_json_rows;

pub async fn run(ctx: &mut Ctx, args: &[String], format: OutputFormat) -> anyhow::Result<ExitCode> {
    if args.is_empty() {
        err("No units given");
        return Ok(ExitCode::SUCCESS);
    }
    let client = ctx.client().await?.clone();
    // Only the named units' keys, not the whole cluster.
    let views = Views::read(&client, args).await?;
    if format == OutputFormat::Json {
        let machines = client.list_machines().await.map_err(|e| {
            fail(format!(
                "Error retrieving list of machines from repository: {e}"
            ))
        })?;
        return json_status(&views, &machines, args);
    }
    for (i, arg) in args.iter().enumerate() {
        let (name, _) = UnitName::from_arg(arg)
            .map_err(|e| fail(format!("Error retrieving unit {arg}: {e}")))?;
        let view = views.find(&name)?;
        let machines: Vec<MachineId> = if is_global(&view.unit) {
            let machines: Vec<MachineId> = view.states.iter().map(|s| s.machine.clone()).collect();
            // Not loaded anywhere yet: say so rather than print nothing and succeed.
            if machines.is_empty() {
                return Err(fail(format!("Unit {name} does not appear to be loaded.")));
            }
            machines
        } else {
            vec![
                running_on(view)
                    .ok_or_else(|| fail(format!("Unit {name} does not appear to be loaded.")))?,
            ]
        };
        if i > 0 {
            crate::context::out("")?;
        }
        for machine in &machines {
            let api = client
                .api_for(machine)
                .await
                .map_err(|e| fail(format!("Unable to reach machine {machine}: {e}")))?;
            // On the machine the unit runs under its namespace-qualified name.
            let stored = client.stored_name(&name).map_err(|e| fail(e.to_string()))?;
            let output = api
                .status(&stored, Some(machine))
                .await
                .map_err(|e| fail(e.to_string()))?;
            let code = pipe(output).await?;
            if code != 0 {
                return Ok(exit_code(code));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The named units as read in one batch (status never reads the whole cluster).
struct Views(HashMap<UnitName, UnitView>);

impl Views {
    async fn read(client: &Client, args: &[String]) -> anyhow::Result<Views> {
        let mut names: Vec<UnitName> = args
            .iter()
            .filter_map(|a| UnitName::from_arg(a).ok().map(|(n, _)| n))
            .collect();
        names.sort();
        names.dedup();
        let (_, views) = client.registry.unit_views(&names).await.map_err(|e| {
            fail(format!(
                "Error retrieving list of units from repository: {e}"
            ))
        })?;
        Ok(Views(
            views
                .into_iter()
                .flatten()
                .map(|v| (v.unit.name.clone(), v))
                .collect(),
        ))
    }

    /// The unit, or fleet's `Unit <n> does not exist.`.
    fn find(&self, name: &UnitName) -> anyhow::Result<&UnitView> {
        self.0
            .get(name)
            .ok_or_else(|| fail(format!("Unit {name} does not exist.")))
    }
}

/// `status -o json`: the cluster's view of each unit, one object per unit and machine
/// reporting it (one object with null machine fields when none does). Every unit is
/// checked before anything is printed.
fn json_status(views: &Views, machines: &[Machine], args: &[String]) -> anyhow::Result<ExitCode> {
    let ips: HashMap<&MachineId, String> = machines
        .iter()
        .filter_map(|m| Some((&m.id, m.public_ip?.to_string())))
        .collect();
    let mut rows = Vec::new();
    for arg in args {
        let (name, _) = UnitName::from_arg(arg)
            .map_err(|e| fail(format!("Error retrieving unit {arg}: {e}")))?;
        let view = views.find(&name)?;
        let unit = &view.unit;
        let global = is_global(unit);
        let current = (!global).then(|| view.current_state().to_string());
        let base = json!({
            "unit": name.as_str(),
            "desired_state": unit.target.to_string(),
            "current_state": current,
            "global": global,
            "machine_id": null,
            "machine_ip": null,
            "load": null,
            "active": null,
            "sub": null,
            "hash": unit.hash.to_string(),
        });
        let mut reported = false;
        for state in &view.states {
            let mut row = base.clone();
            row["machine_id"] = json!(state.machine.as_str());
            row["machine_ip"] = json!(ips.get(&state.machine));
            row["load"] = json!(state.systemd.load);
            row["active"] = json!(state.systemd.active);
            row["sub"] = json!(state.systemd.sub);
            row["hash"] = json!(state.hash.to_string());
            rows.push(row);
            reported = true;
        }
        if !reported {
            // No machine reports it: where it is scheduled is not read (that would
            // mean scanning every machine's schedule), so the machine fields stay null.
            rows.push(base);
        }
    }
    print_json_rows(rows)?;
    Ok(ExitCode::SUCCESS)
}

pub(super) fn is_global(unit: &UnitRecord) -> bool {
    Requirements::parse(&unit.file).is_ok_and(|r| r.global)
}

/// The machine running a non-global unit, if its current state is not `inactive`.
pub(super) fn running_on(view: &UnitView) -> Option<MachineId> {
    if view.current_state() == TargetState::Inactive {
        return None;
    }
    view.scheduled_on.clone()
}

/// Copies a remote command's output to ours, control characters made visible (see
/// `visible`); returns its exit code (255 if the stream ended without one). A broken
/// connection is one line and exit 1.
pub(super) async fn pipe(mut output: Output) -> anyhow::Result<i32> {
    let (mut out, mut err) = (Visible::default(), Visible::default());
    let result = loop {
        match output.next().await {
            Ok(Some(OutputPiece::Stdout(b))) => {
                let mut stdout = std::io::stdout().lock();
                stdout.write_all(out.push(&b).as_bytes())?;
                stdout.flush()?;
            }
            Ok(Some(OutputPiece::Stderr(b))) => {
                let _ = std::io::stderr().lock().write_all(err.push(&b).as_bytes());
            }
            Ok(Some(OutputPiece::Exit(code))) => break Ok(code),
            Ok(None) => break Ok(255),
            Err(e) => break Err(fail(e.to_string())),
        }
    };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.finish().as_bytes())?;
    stdout.flush()?;
    let _ = std::io::stderr().lock().write_all(err.finish().as_bytes());
    result
}

/// A remote exit status as ours (`-1`, a signal, becomes 255 as in fleet).
pub(super) fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(255))
}
