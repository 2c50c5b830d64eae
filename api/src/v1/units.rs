//! `/fleet/v1/units` and `/fleet/v1/units/<name>`.
//!
//! PUT follows fleet's decision procedure: create (201) when the unit is absent or
//! its options differ (then the body replaces it), else change the desired state
//! (204). Every write is the gRPC service's own operation, with its validation.

use axum::extract::Request;
use axum::http::{StatusCode, header};
use fleet_core::{TargetState, UnitName};
use tonic::Request as Rpc;

use super::entities::{self, UnitBody};
use super::{HttpError, HttpResult, empty_response, json_response, page, query_values};
use crate::FleetService;
use crate::convert;
use crate::pb::{self, fleet_server::Fleet};

fn name_of(s: &str) -> Result<UnitName, HttpError> {
    convert::unit_name(s).map_err(|e| HttpError::bad_request(e.to_string()))
}

/// A unit name of the default namespace, the only one HTTP API v1 serves (fleet's
/// clients know no other): a name of another namespace is refused.
pub(crate) async fn default_name(svc: &FleetService, s: &str) -> Result<UnitName, HttpError> {
    let name = name_of(s)?;
    if name.as_str().contains(fleet_core::namespace::SEPARATOR) {
        let known = svc.ctx.people().namespaces().await?;
        let (ns, _) = known.split(&name);
        if !ns.is_default() {
            return Err(HttpError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "unit {name} belongs to namespace {ns}: fleet's HTTP API v1 serves the default namespace only"
                ),
            ));
        }
    }
    Ok(name)
}

fn unit_missing() -> HttpError {
    HttpError::new(StatusCode::NOT_FOUND, "unit does not exist")
}

pub(crate) async fn list(svc: &FleetService, uri: &axum::http::Uri) -> HttpResult {
    let page_no = page::requested(&query_values(uri, "nextPageToken"))?;
    let mut snap = svc.ctx.registry.snapshot().await?;
    let known = svc.ctx.people().namespaces().await?;
    if !known.is_empty() {
        snap.units.retain(|u| known.split(&u.name).0.is_default());
    }
    let (units, next) = page::slice(&snap.units, page_no);
    let units: Vec<_> = units
        .iter()
        .map(|u| entities::unit(u, &snap, true))
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &entities::page("units", &units, next),
    ))
}

pub(crate) async fn get(svc: &FleetService, name: &str) -> HttpResult {
    let name = default_name(svc, name).await?;
    // Placement without every unit's states, then only this unit's states.
    let mut snap = svc.ctx.registry.placement_snapshot().await?;
    snap.states = svc.ctx.registry.unit_states(&name).await?;
    let unit = snap
        .units
        .binary_search_by(|u| u.name.cmp(&name))
        .ok()
        .and_then(|i| snap.units.get(i))
        .ok_or_else(unit_missing)?;
    Ok(json_response(
        StatusCode::OK,
        &entities::unit(unit, &snap, false),
    ))
}

pub(crate) async fn delete(svc: &FleetService, name: &str) -> HttpResult {
    let name = default_name(svc, name).await?;
    let done = svc
        .destroy_unit(Rpc::new(pb::DestroyUnitRequest {
            name: name.to_string(),
        }))
        .await?;
    if !done.get_ref().existed {
        return Err(unit_missing());
    }
    Ok(empty_response(StatusCode::NO_CONTENT))
}

/// fleet accepts exactly one `Content-Type`, of media type `application/json`.
fn check_content_type(req: &Request) -> Result<(), HttpError> {
    let values: Vec<_> = req.headers().get_all(header::CONTENT_TYPE).iter().collect();
    let [value] = values[..] else {
        return Err(HttpError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("expected 1 Content-Type, got {}", values.len()),
        ));
    };
    let media = value
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim();
    if !media.eq_ignore_ascii_case("application/json") {
        return Err(HttpError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "only acceptable Content-Type is application/json",
        ));
    }
    Ok(())
}

pub(crate) async fn put(svc: &FleetService, url_name: &str, req: Request) -> HttpResult {
    check_content_type(&req)?;
    let scope = req.extensions().get::<crate::scope::Scope>().cloned();
    let bytes = super::body_bytes(req).await?;
    let body: UnitBody = serde_json::from_slice(&bytes)
        .map_err(|e| HttpError::bad_request(format!("unable to decode body: {e}")))?;
    if let Some(body_name) = body.name.as_deref().filter(|n| !n.is_empty())
        && body_name != url_name
    {
        return Err(HttpError::bad_request(format!(
            "name in URL {url_name:?} differs from unit name in request body {body_name:?}"
        )));
    }
    let name = default_name(svc, url_name).await?;
    let desired = body
        .desired_state
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<TargetState>()
                .map_err(|e| HttpError::bad_request(format!("invalid desiredState: {e}")))
        })
        .transpose()?;
    // Refused before anything is written (set_targets would refuse it after).
    if name.is_template() && desired.is_some_and(|d| d != TargetState::Inactive) {
        return Err(HttpError::bad_request(format!(
            "cannot activate template {:?}",
            name.as_str()
        )));
    }
    let options: Vec<pb::UnitOption> = body
        .options
        .unwrap_or_default()
        .into_iter()
        .map(|o| pb::UnitOption {
            section: o.section,
            name: o.name,
            value: o.value,
        })
        .collect();
    let existing = svc
        .get_unit(Rpc::new(pb::GetUnitRequest {
            name: name.to_string(),
        }))
        .await?
        .into_inner()
        .unit;
    let replaces = match &existing {
        None if options.is_empty() => {
            return Err(HttpError::new(
                StatusCode::CONFLICT,
                "unit does not exist and options field empty",
            ));
        }
        None => Some(false),
        Some(_) if options.is_empty() => None,
        Some(unit) => {
            let file = convert::file_from_wire(&options)
                .map_err(|e| HttpError::bad_request(e.to_string()))?;
            (file.hash().0[..] != unit.hash[..]).then_some(true)
        }
    };
    match replaces {
        Some(replace) => {
            // A namespace user changes units and their desired states (as ReplaceUnit
            // and SetTargets); creating one takes an admin (as CreateUnit).
            if let Some(scope) =
                scope.filter(|s| !replace && s.role < fleet_registry::NsRole::Admin)
            {
                return Err(HttpError::new(
                    StatusCode::FORBIDDEN,
                    format!(
                        "user {} ({} in namespace {}) may not submit units (this needs admin)",
                        scope.user, scope.role, scope.ns
                    ),
                ));
            }
            create(svc, &name, options, replace).await?;
            let desired = desired.unwrap_or(TargetState::Inactive);
            if desired != TargetState::Inactive {
                set_target(svc, &name, desired).await?;
            }
            Ok(empty_response(StatusCode::CREATED))
        }
        None => {
            let desired = desired.ok_or_else(|| {
                HttpError::new(
                    StatusCode::CONFLICT,
                    "must provide DesiredState to update existing unit",
                )
            })?;
            set_target(svc, &name, desired).await?;
            Ok(empty_response(StatusCode::NO_CONTENT))
        }
    }
}

/// Creates the unit (create-only) or, when it exists with other options, replaces
/// it; either way its desired state is then `inactive`.
async fn create(
    svc: &FleetService,
    name: &UnitName,
    options: Vec<pb::UnitOption>,
    replace: bool,
) -> Result<(), HttpError> {
    use pb::create_unit_response::Outcome;
    if !replace {
        let created = svc
            .create_unit(Rpc::new(pb::CreateUnitRequest {
                name: name.to_string(),
                options: options.clone(),
            }))
            .await?
            .into_inner();
        // Created meanwhile by someone else with other options: ours replaces it,
        // as it would have a moment later.
        if created.outcome != Outcome::Differs as i32 {
            return Ok(());
        }
    }
    svc.replace_unit(Rpc::new(pb::ReplaceUnitRequest {
        name: name.to_string(),
        options,
    }))
    .await?;
    Ok(())
}

async fn set_target(
    svc: &FleetService,
    name: &UnitName,
    target: TargetState,
) -> Result<(), HttpError> {
    let done = svc
        .set_targets(Rpc::new(pb::SetTargetsRequest {
            targets: vec![pb::set_targets_request::Target {
                name: name.to_string(),
                target: convert::target_to_wire(target),
            }],
        }))
        .await?
        .into_inner();
    if !done.missing.is_empty() {
        return Err(unit_missing());
    }
    Ok(())
}
