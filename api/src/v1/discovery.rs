//! `/fleet/v1/discovery`: the API described as a Google discovery document (what
//! fleet's Go client was generated from). `$ENDPOINT` stands for wherever the
//! client reached fleetd, as in fleet's own document.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;

const DOCUMENT: &str = include_str!("discovery.json");

pub(crate) fn document() -> Response {
    let mut resp = Response::new(axum::body::Body::from(DOCUMENT));
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_is_json_naming_every_resource() {
        let doc: serde_json::Value = serde_json::from_str(super::DOCUMENT).expect("valid JSON");
        assert_eq!(doc["kind"], "discovery#restDescription");
        for schema in ["Unit", "UnitOption", "UnitState", "Machine", "UnitPage"] {
            assert!(doc["schemas"][schema].is_object(), "{schema}");
        }
        for resource in ["Units", "UnitState", "Machines"] {
            assert!(doc["resources"][resource].is_object(), "{resource}");
        }
    }
}
