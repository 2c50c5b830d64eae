//! `/fleet/v1/machines`: the live machines, and JSON Patch of their dynamic metadata.

use axum::extract::Request;
use axum::http::StatusCode;
use fleet_core::MachineId;
use fleet_registry::MetadataChange;
use fleet_registry::metadata::valid_name;
use serde_json::Value;

use super::entities;
use super::{HttpError, HttpResult, empty_response, json_response, page, query_values};
use crate::FleetService;

pub(crate) async fn list(svc: &FleetService, uri: &axum::http::Uri) -> HttpResult {
    let page_no = page::requested(&query_values(uri, "nextPageToken"))?;
    let machines: Vec<_> = svc
        .ctx
        .registry
        .list_machine_records()
        .await?
        .iter()
        .map(entities::machine)
        .collect();
    let (machines, next) = page::slice(&machines, page_no);
    Ok(json_response(
        StatusCode::OK,
        &entities::page("machines", machines, next),
    ))
}

/// Applies `[{"op":"add|remove|replace","path":"/<id>/metadata/<name>",
/// "value":{"value":"<v>"}}, …]`: every operation is checked before any is applied.
pub(crate) async fn patch(svc: &FleetService, req: Request) -> HttpResult {
    let bytes = super::body_bytes(req).await?;
    let ops: Vec<Value> = serde_json::from_slice(&bytes)
        .map_err(|e| HttpError::bad_request(format!("unable to decode body: {e}")))?;
    let changes = ops
        .iter()
        .map(change)
        .collect::<Result<Vec<_>, HttpError>>()?;
    svc.ctx.registry.set_machine_metadata(&changes).await?;
    Ok(empty_response(StatusCode::NO_CONTENT))
}

/// A field of a JSON object, its name matched case-insensitively (as Go decodes).
fn field<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

fn change(op: &Value) -> Result<MetadataChange, HttpError> {
    if !op.is_object() {
        return Err(HttpError::bad_request(
            "unable to decode body: each operation must be a JSON object",
        ));
    }
    let kind = field(op, "op").and_then(Value::as_str).unwrap_or("");
    if !matches!(kind, "add" | "remove" | "replace") {
        return Err(HttpError::bad_request(
            "invalid op: expect add, remove, or replace",
        ));
    }
    let path = field(op, "path").and_then(Value::as_str).unwrap_or("");
    let (machine, name) = metadata_path(path)
        .ok_or_else(|| HttpError::bad_request("machine metadata path invalid"))?;
    // fleet nests the value (`"value":{"value":"ssd"}`); a bare string is accepted too.
    let value = field(op, "value").and_then(|v| match v {
        Value::String(s) => Some(s.as_str()),
        _ => field(v, "value").and_then(Value::as_str),
    });
    let value = match kind {
        "remove" => None,
        _ => match value {
            // Readers refuse control characters in metadata (they reach terminals).
            Some(v) if fleet_core::machine::metadata_control_char(v).is_some() => {
                return Err(HttpError::bad_request(
                    "invalid value: control characters are not allowed",
                ));
            }
            Some(v) if !v.is_empty() => Some(v.to_string()),
            _ => {
                return Err(HttpError::bad_request(
                    "invalid value: add and replace require a value",
                ));
            }
        },
    };
    Ok(MetadataChange {
        machine,
        name,
        value,
    })
}

/// `/<machine-id>/metadata/<name>`.
fn metadata_path(path: &str) -> Option<(MachineId, String)> {
    let mut parts = path.strip_prefix('/')?.split('/');
    let (id, dir, name) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || dir != "metadata" || !valid_name(name) {
        return None;
    }
    Some((MachineId::new(id).ok()?, name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_checked_as_fleet_did() {
        let ok = change(&serde_json::json!(
            {"op":"add","path":"/m1/metadata/disk","Value":{"value":"ssd"}}
        ))
        .unwrap();
        assert_eq!(ok.machine.as_str(), "m1");
        assert_eq!(
            (ok.name.as_str(), ok.value.as_deref()),
            ("disk", Some("ssd"))
        );
        let rm = change(&serde_json::json!({"op":"remove","path":"/m1/metadata/disk"})).unwrap();
        assert_eq!(rm.value, None);
        let msg = |v: Value| change(&v).unwrap_err().message;
        assert_eq!(
            msg(serde_json::json!({"op":"noop","path":"/m1/metadata/a"})),
            "invalid op: expect add, remove, or replace"
        );
        assert_eq!(
            msg(serde_json::json!({"op":"add","path":"/m1/foo","value":{"value":"x"}})),
            "machine metadata path invalid"
        );
        assert_eq!(
            msg(serde_json::json!({"op":"add","path":"/m1/metadata/a b","value":"x"})),
            "machine metadata path invalid"
        );
        assert_eq!(
            msg(serde_json::json!({"op":"add","path":"/m1/metadata/a","value":"x\u{1b}[2J"})),
            "invalid value: control characters are not allowed"
        );
        assert_eq!(
            msg(serde_json::json!({"op":"replace","path":"/m1/metadata/a","value":{"value":""}})),
            "invalid value: add and replace require a value"
        );
    }
}
