//! Journal and status: answered by the fleetd of the machine that runs the unit, which
//! runs `journalctl`/`systemctl` there; any other fleetd forwards the request to it.

use std::net::SocketAddr;

use fleet_core::{MachineId, Requirements, TargetState, UnitName};
use futures_util::{Stream, StreamExt};
use tonic::Status;

use crate::client::{ApiClient, ClientConfig};
use crate::context::ApiContext;
use crate::convert;
use crate::convert::{registry_status, wire_status};
use crate::exec::stream_command;
use crate::pb;

/// How long a fleetd tries to reach the unit's machine: below fleetctl's default
/// `--request-timeout` (3 s), so a user asking about a unit on an unreachable machine
/// hears which machine is unreachable, not that the fleetd they asked timed out.
const FORWARD_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

type Chunks = std::pin::Pin<Box<dyn Stream<Item = Result<pb::OutputChunk, Status>> + Send>>;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Journal,
    Status,
}

/// Where a request must be answered.
enum Route {
    Local,
    Remote {
        machine: MachineId,
        api_addr: String,
    },
}

/// `journalctl` output modes; anything else is refused before reaching the command.
fn valid_output(mode: &str) -> bool {
    !mode.is_empty()
        && mode.len() <= 32
        && mode.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

pub(crate) async fn journal(ctx: &ApiContext, req: pb::JournalRequest) -> Result<Chunks, Status> {
    let unit = convert::unit_name(&req.unit).map_err(wire_status)?;
    let output = if req.output.is_empty() {
        "short".to_string()
    } else {
        req.output.clone()
    };
    if !valid_output(&output) {
        return Err(Status::invalid_argument(format!(
            "invalid journal output mode {output:?}"
        )));
    }
    match route(ctx, &unit, None, Kind::Journal, req.no_forward).await? {
        Route::Local => {
            let cmd = ctx.commands.journal(&unit, req.lines, req.follow, &output);
            Ok(Box::pin(stream_command(cmd)?))
        }
        Route::Remote { machine, api_addr } => {
            let client = forward_client(ctx, &machine, &api_addr).await?;
            let stream = client
                .journal_raw(pb::JournalRequest {
                    no_forward: true,
                    output,
                    ..req
                })
                .await
                .map_err(|e| forward_error(&machine, e))?;
            Ok(relay(machine, stream))
        }
    }
}

pub(crate) async fn status(ctx: &ApiContext, req: pb::StatusRequest) -> Result<Chunks, Status> {
    let unit = convert::unit_name(&req.unit).map_err(wire_status)?;
    let machine = if req.machine.is_empty() {
        None
    } else {
        Some(convert::machine_id(&req.machine).map_err(wire_status)?)
    };
    match route(ctx, &unit, machine, Kind::Status, req.no_forward).await? {
        Route::Local => Ok(Box::pin(stream_command(ctx.commands.status(&unit))?)),
        Route::Remote { machine, api_addr } => {
            let client = forward_client(ctx, &machine, &api_addr).await?;
            let stream = client
                .status_raw(pb::StatusRequest {
                    unit: unit.to_string(),
                    machine: machine.to_string(),
                    no_forward: true,
                })
                .await
                .map_err(|e| forward_error(&machine, e))?;
            Ok(relay(machine, stream))
        }
    }
}

/// Finds the machine that runs `unit` (or checks that `asked` does) with fleet's
/// messages for units that do not exist or do not run anywhere.
async fn route(
    ctx: &ApiContext,
    unit: &UnitName,
    asked: Option<MachineId>,
    kind: Kind,
    no_forward: bool,
) -> Result<Route, Status> {
    let reg = &ctx.registry;
    let Some(record) = reg.get_unit(unit).await.map_err(registry_status)? else {
        return Err(Status::not_found(format!("Unit {unit} does not exist.")));
    };
    let global = Requirements::parse(&record.file)
        .map(|r| r.global)
        .unwrap_or(false);
    let states = reg.unit_states(unit).await.map_err(registry_status)?;
    let not_running = || {
        Status::failed_precondition(match kind {
            Kind::Journal => format!("Unit {unit} does not appear to be running."),
            Kind::Status => format!("Unit {unit} does not appear to be loaded."),
        })
    };
    let machine = if global {
        match (kind, asked) {
            (Kind::Journal, None) => {
                return Err(Status::failed_precondition(format!(
                    "Unable to retrieve journal of global unit {unit}."
                )));
            }
            (_, Some(m)) if states.iter().any(|s| s.machine == m) => m,
            (_, Some(_)) => return Err(not_running()),
            (Kind::Status, None) => {
                return Err(Status::failed_precondition(format!(
                    "Unit {unit} is global: ask for one machine's status"
                )));
            }
        }
    } else {
        let schedule = reg.list_schedule().await.map_err(registry_status)?;
        let scheduled = schedule
            .iter()
            .find(|e| &e.unit == unit)
            .map(|e| e.machine.clone());
        if fleet_registry::model::current_state(scheduled.as_ref(), &states)
            == TargetState::Inactive
        {
            return Err(not_running());
        }
        let Some(m) = scheduled else {
            return Err(not_running());
        };
        if asked.as_ref().is_some_and(|a| a != &m) {
            return Err(not_running());
        }
        m
    };
    if machine == ctx.machine_id {
        return Ok(Route::Local);
    }
    if no_forward {
        return Err(Status::failed_precondition(format!(
            "Unit {unit} runs on machine {machine}, not on {}",
            ctx.machine_id
        )));
    }
    let machines = reg.list_machine_records().await.map_err(registry_status)?;
    let Some(rec) = machines.into_iter().find(|m| m.machine.id == machine) else {
        return Err(Status::unavailable(format!(
            "Machine {machine} running unit {unit} is not in the cluster any more"
        )));
    };
    if rec.api_addr.is_empty() {
        return Err(Status::unavailable(format!(
            "Machine {machine} running unit {unit} publishes no API address"
        )));
    }
    Ok(Route::Remote {
        machine,
        api_addr: rec.api_addr,
    })
}

/// A machine record's `api_addr` as published by fleetd: an IP and a port, optionally
/// behind `http://` or `https://` (returned as whether it said `https`). Anything else
/// (host names, paths, unix sockets, port 0, unspecified or multicast addresses) is
/// `None`: whoever can write a machine record must not steer where requests go.
pub fn parse_api_addr(api_addr: &str) -> Option<(bool, SocketAddr)> {
    let (https, bare) = match api_addr.split_once("://") {
        Some(("https", rest)) => (true, rest),
        Some(("http", rest)) => (false, rest),
        Some(_) => return None,
        None => (false, api_addr),
    };
    let addr: SocketAddr = bare.parse().ok()?;
    (addr.port() != 0 && !addr.ip().is_unspecified() && !addr.ip().is_multicast())
        .then_some((https, addr))
}

/// The socket address to forward to. The record never chooses the scheme: the
/// forwarding fleetd's own TLS setting does.
fn forward_target(machine: &MachineId, api_addr: &str) -> Result<SocketAddr, Status> {
    parse_api_addr(api_addr).map(|(_, a)| a).ok_or_else(|| {
        Status::failed_precondition(format!(
            "machine {machine} publishes an invalid API address {api_addr:?} (want IP:PORT)"
        ))
    })
}

async fn forward_client(
    ctx: &ApiContext,
    machine: &MachineId,
    api_addr: &str,
) -> Result<ApiClient, Status> {
    let target = forward_target(machine, api_addr)?;
    // TLS exactly when this fleetd's own API is configured for it.
    let scheme = if ctx.forward_tls.is_some() {
        "https"
    } else {
        "http"
    };
    let mut config = ClientConfig::new(format!("{scheme}://{target}"));
    config.tls = ctx.forward_tls.clone();
    config.connect_timeout = ctx.forward_timeout.min(FORWARD_CONNECT_TIMEOUT);
    config.request_timeout = ctx.forward_timeout;
    ApiClient::connect(&config)
        .await
        .map_err(|e| forward_error(machine, e))
}

fn forward_error(machine: &MachineId, e: crate::ApiError) -> Status {
    match e {
        // The remote fleetd's own answer (unit gone meanwhile, ...) passes through.
        crate::ApiError::Status(s) => s,
        other => Status::unavailable(format!(
            "fleetd on machine {machine} is unreachable: {other}"
        )),
    }
}

/// Passes the remote stream through, rewording a broken connection.
fn relay(machine: MachineId, stream: tonic::Streaming<pb::OutputChunk>) -> Chunks {
    Box::pin(stream.map(move |item| {
        item.map_err(|s| match s.code() {
            tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled => {
                Status::unavailable(format!(
                    "lost machine {machine} mid-stream: {}",
                    s.message()
                ))
            }
            _ => s,
        })
    }))
}

#[cfg(test)]
mod tests {
    use super::parse_api_addr;

    #[test]
    fn api_addr_is_an_ip_and_a_port() {
        let ok = |s: &str| parse_api_addr(s).map(|(https, a)| (https, a.to_string()));
        assert_eq!(ok("10.0.0.1:4002"), Some((false, "10.0.0.1:4002".into())));
        assert_eq!(
            ok("http://10.0.0.1:4002"),
            Some((false, "10.0.0.1:4002".into()))
        );
        assert_eq!(
            ok("https://[fd00::1]:4002"),
            Some((true, "[fd00::1]:4002".into()))
        );
        for bad in [
            "",
            "10.0.0.1",
            "10.0.0.1:0",
            "0.0.0.0:4002",
            "[::]:4002",
            "224.0.0.1:4002",
            "host:4002",
            "unix:///run/fleet.sock",
            "file:///run/fleet.sock",
            "HTTP://10.0.0.1:4002",
            "http://10.0.0.1:4002/",
            "http://u@10.0.0.1:4002",
            " 10.0.0.1:4002",
            "10.0.0.1:4002\n",
            "fd00::1:4002",
        ] {
            assert_eq!(parse_api_addr(bad), None, "{bad:?}");
        }
    }
}
