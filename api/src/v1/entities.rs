//! The JSON entities of fleet's api-v1 (`schema/v1-json.json`): field names, order
//! and omission of empty fields as fleet serialised them.

use std::collections::BTreeMap;

use fleet_core::Requirements;
use fleet_registry::{ClusterSnapshot, MachineRecord, UnitRecord, UnitStateRecord};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct UnitOption {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub section: String,
    #[serde(default)]
    pub value: String,
}

#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Unit {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub current_state: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub desired_state: String,
    #[serde(rename = "machineID", skip_serializing_if = "String::is_empty")]
    pub machine_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<UnitOption>,
}

/// A `PUT /units/<name>` body: every field optional, unknown fields ignored.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UnitBody {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub options: Option<Vec<UnitOption>>,
    #[serde(default)]
    pub desired_state: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct UnitState {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub hash: String,
    #[serde(rename = "machineID", skip_serializing_if = "String::is_empty")]
    pub machine_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(
        rename = "systemdActiveState",
        skip_serializing_if = "String::is_empty"
    )]
    pub active: String,
    #[serde(rename = "systemdLoadState", skip_serializing_if = "String::is_empty")]
    pub load: String,
    #[serde(rename = "systemdSubState", skip_serializing_if = "String::is_empty")]
    pub sub: String,
}

#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Machine {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    #[serde(rename = "primaryIP", skip_serializing_if = "String::is_empty")]
    pub primary_ip: String,
}

/// How a unit looks over the API. `in_list`: global units show `inactive` in lists
/// and no current state when read one by one (fleet's quirk); they never have a
/// machine.
pub(crate) fn unit(u: &UnitRecord, snap: &ClusterSnapshot, in_list: bool) -> Unit {
    let global = Requirements::parse(&u.file).is_ok_and(|r| r.global);
    let (current_state, machine_id) = if global {
        let current = if in_list { "inactive" } else { "" };
        (current.to_string(), String::new())
    } else {
        (
            snap.current_state(&u.name).as_str().to_string(),
            snap.scheduled_on(&u.name)
                .map(ToString::to_string)
                .unwrap_or_default(),
        )
    };
    Unit {
        current_state,
        desired_state: u.target.as_str().to_string(),
        machine_id,
        name: u.name.to_string(),
        options: u
            .file
            .options()
            .iter()
            .map(|o| UnitOption {
                name: o.name.clone(),
                section: o.section.clone(),
                value: o.value.clone(),
            })
            .collect(),
    }
}

pub(crate) fn unit_state(s: &UnitStateRecord) -> UnitState {
    UnitState {
        hash: s.hash.to_string(),
        machine_id: s.machine.to_string(),
        name: s.unit.to_string(),
        active: s.systemd.active.clone(),
        load: s.systemd.load.clone(),
        sub: s.systemd.sub.clone(),
    }
}

pub(crate) fn machine(m: &MachineRecord) -> Machine {
    Machine {
        id: m.machine.id.to_string(),
        metadata: m.machine.metadata.clone(),
        primary_ip: m
            .machine
            .public_ip
            .map(|ip| ip.to_string())
            .unwrap_or_default(),
    }
}

/// fleet's pages: the items under `key` and the next token, each omitted when empty
/// (an empty last page is `{}`). Keys come out sorted, as fleet's did.
pub(crate) fn page<T: Serialize>(
    key: &str,
    items: &[T],
    next_page_token: Option<String>,
) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    if let Some(token) = next_page_token {
        map.insert("nextPageToken".into(), token.into());
    }
    if !items.is_empty() {
        map.insert(key.into(), serde_json::to_value(items).unwrap_or_default());
    }
    serde_json::Value::Object(map)
}
