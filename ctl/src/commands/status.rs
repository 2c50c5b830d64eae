//! `fleetctl status UNIT...`: what `systemctl status` prints on the machine running each
//! unit, streamed from that machine's fleetd (fleet ran it over SSH).

use std::io::Write;
use std::process::ExitCode;

use fleet_api::client::{Output, OutputPiece};
use fleet_core::{MachineId, Requirements, TargetState, UnitName};
use fleet_registry::{ClusterSnapshot, UnitRecord};

use serde_json::json;

use crate::cli::OutputFormat;
use crate::commands::list_units::machine_ips;
use crate::commands::visible::Visible;
use crate::context::{Ctx, err, fail};
use crate::table::print_json_rows;

pub async fn run(ctx: &mut Ctx, args: &[String], format: OutputFormat) -> anyhow::Result<ExitCode> {
    if args.is_empty() {
        err("No units given");
        return Ok(ExitCode::SUCCESS);
    }
    let client = ctx.client().await?.clone();
    let snapshot = client.snapshot().await.map_err(|e| {
        fail(format!(
            "Error retrieving list of units from repository: {e}"
        ))
    })?;
    if format == OutputFormat::Json {
        return json_status(&snapshot, args);
    }
    for (i, arg) in args.iter().enumerate() {
        let (name, _) = UnitName::from_arg(arg)
            .map_err(|e| fail(format!("Error retrieving unit {arg}: {e}")))?;
        let unit = find(&snapshot, &name)?;
        let machines: Vec<MachineId> = if is_global(unit) {
            let machines: Vec<MachineId> = snapshot
                .states_of(&name)
                .map(|s| s.machine.clone())
                .collect();
            // Not loaded anywhere yet: say so rather than print nothing and succeed.
            if machines.is_empty() {
                return Err(fail(format!("Unit {name} does not appear to be loaded.")));
            }
            machines
        } else {
            vec![
                running_on(&snapshot, &name)
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
            let output = api
                .status(&name, Some(machine))
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

/// `status -o json`: the cluster's view of each unit, one object per unit and machine
/// reporting it (one object with null machine fields when none does). Every unit is
/// checked before anything is printed.
fn json_status(snapshot: &ClusterSnapshot, args: &[String]) -> anyhow::Result<ExitCode> {
    let ips = machine_ips(snapshot);
    let mut rows = Vec::new();
    for arg in args {
        let (name, _) = UnitName::from_arg(arg)
            .map_err(|e| fail(format!("Error retrieving unit {arg}: {e}")))?;
        let unit = find(snapshot, &name)?;
        let global = is_global(unit);
        let current = (!global).then(|| snapshot.current_state(&name).to_string());
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
        for state in snapshot.states_of(&name) {
            let mut row = base.clone();
            row["machine_id"] = json!(state.machine.as_str());
            row["machine_ip"] = json!(ips.get(&state.machine).filter(|ip| !ip.is_empty()));
            row["load"] = json!(state.systemd.load);
            row["active"] = json!(state.systemd.active);
            row["sub"] = json!(state.systemd.sub);
            row["hash"] = json!(state.hash.to_string());
            rows.push(row);
            reported = true;
        }
        if !reported {
            let mut row = base;
            if let Some(m) = snapshot.scheduled_on(&name) {
                row["machine_id"] = json!(m.as_str());
                row["machine_ip"] = json!(ips.get(m).filter(|ip| !ip.is_empty()));
            }
            rows.push(row);
        }
    }
    print_json_rows(rows)?;
    Ok(ExitCode::SUCCESS)
}

/// The unit, or fleet's `Unit <n> does not exist.`.
pub(super) fn find<'a>(
    snapshot: &'a ClusterSnapshot,
    name: &UnitName,
) -> anyhow::Result<&'a UnitRecord> {
    snapshot
        .units
        .iter()
        .find(|u| &u.name == name)
        .ok_or_else(|| fail(format!("Unit {name} does not exist.")))
}

pub(super) fn is_global(unit: &UnitRecord) -> bool {
    Requirements::parse(&unit.file).is_ok_and(|r| r.global)
}

/// The machine running a non-global unit, if its current state is not `inactive`.
pub(super) fn running_on(snapshot: &ClusterSnapshot, name: &UnitName) -> Option<MachineId> {
    if snapshot.current_state(name) == TargetState::Inactive {
        return None;
    }
    snapshot.scheduled_on(name).cloned()
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
