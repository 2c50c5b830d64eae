//! `/fleet/v1/state` (with the `machineID` and `unitName` filters) and
//! `/fleet/v1/state/<name>`.

use axum::http::StatusCode;

use super::entities;
use super::{HttpError, HttpResult, json_response, page, query_values};
use crate::FleetService;

pub(crate) async fn list(svc: &FleetService, uri: &axum::http::Uri) -> HttpResult {
    let page_no = page::requested(&query_values(uri, "nextPageToken"))?;
    // Exact matches on the first value of each filter, before paging (as fleet).
    let machine = query_values(uri, "machineID").into_iter().next();
    let unit = query_values(uri, "unitName").into_iter().next();
    let known = svc.ctx.people().namespaces().await?;
    let states: Vec<_> = svc
        .ctx
        .registry
        .list_states()
        .await?
        .iter()
        .filter(|s| known.is_empty() || known.split(&s.unit).0.is_default())
        .filter(|s| machine.as_deref().is_none_or(|m| s.machine.as_str() == m))
        .filter(|s| unit.as_deref().is_none_or(|u| s.unit.as_str() == u))
        .map(entities::unit_state)
        .collect();
    let (states, next) = page::slice(&states, page_no);
    Ok(json_response(
        StatusCode::OK,
        &entities::page("states", states, next),
    ))
}

pub(crate) async fn get(svc: &FleetService, name: &str) -> HttpResult {
    let name = super::units::default_name(svc, name).await?;
    let states = svc.ctx.registry.unit_states(&name).await?;
    let state = states
        .first()
        .ok_or_else(|| HttpError::new(StatusCode::NOT_FOUND, "unit state does not exist"))?;
    Ok(json_response(StatusCode::OK, &entities::unit_state(state)))
}
