//! Dynamic machine metadata, set through the API (fleet's `PATCH /fleet/v1/machines`).
//!
//! Stored as `machine/<id>/metadata/<name>` = value, with no lease: it outlives the
//! machine's presence key (`machine/<id>`, on the agent's lease), so a machine that
//! leaves and rejoins keeps it. Because it sits under `machine/`, every read of the
//! machines (lists, the engine's snapshot) and the engine's `machine/` watch see it
//! with no extra round trip: a change wakes the engine at once. Reads merge it over
//! the configured metadata; an empty value is a tombstone that hides a configured key.

use etcd_client::{Txn, TxnOp};
use fleet_core::MachineId;

use crate::codec;
use crate::error::RegistryError;
use crate::keys::{Keys, RegistryKey};
use crate::model::{MachineRecord, Skipped};
use crate::registry::Registry;

/// One change of dynamic metadata: set `name` to `value`, or remove it (`None`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetadataChange {
    pub machine: MachineId,
    pub name: String,
    pub value: Option<String>,
}

/// Whether `name` may be a metadata name (fleet's `[A-Za-z0-9_.-]+`).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Applies the dynamic metadata among `kvs` (a `machine/` range) to the machines
/// decoded from the same range. Metadata of machines not present is ignored.
pub(crate) fn merge(
    keys: &Keys,
    kvs: &[etcd_client::KeyValue],
    machines: &mut [MachineRecord],
    skipped: &mut Vec<Skipped>,
) {
    for kv in kvs {
        // Unparsable keys were reported with the machines of the same range.
        let Ok(Some(RegistryKey::MachineMetadata(id, name))) = keys.parse(kv.key()) else {
            continue;
        };
        let Ok(i) = machines.binary_search_by(|m| m.machine.id.cmp(&id)) else {
            continue;
        };
        let value = match codec::decode_metadata(kv.key(), kv.value()) {
            Ok(v) => v,
            Err(e) => {
                skipped.push(Skipped {
                    key: String::from_utf8_lossy(kv.key()).into_owned(),
                    revision: kv.mod_revision(),
                    unit: None,
                    unit_record: false,
                    reason: match e {
                        RegistryError::Corrupt { reason, .. } => reason,
                        e => e.to_string(),
                    },
                });
                continue;
            }
        };
        let metadata = &mut machines[i].machine.metadata;
        if value.is_empty() {
            metadata.remove(&name);
        } else {
            metadata.insert(name, value);
        }
    }
}

impl Registry {
    /// Applies `changes` in order, in txns of at most 128 puts (later duplicates win).
    /// A removal stores a tombstone, so it hides a key the machine's configuration
    /// sets. The machines need not exist.
    pub async fn set_machine_metadata(
        &self,
        changes: &[MetadataChange],
    ) -> Result<(), RegistryError> {
        let mut last = std::collections::BTreeMap::new();
        for c in changes {
            last.insert(
                self.keys.machine_metadata(&c.machine, &c.name),
                c.value.as_deref().unwrap_or(""),
            );
        }
        let ops: Vec<TxnOp> = last
            .into_iter()
            .map(|(k, v)| TxnOp::put(k, codec::encode_metadata(v), None))
            .collect();
        let txns = ops
            .chunks(crate::MAX_TXN_OPS)
            .map(|chunk| Txn::new().and_then(chunk.to_vec()))
            .collect();
        self.txns("set machine metadata", txns)
            .await
            .map_err(|e| e.denied(crate::roles::KeyClass::Metadata))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_bad_keys_are_corrupt() {
        let k = Keys::new("/p").unwrap();
        let m = MachineId::new("abc").unwrap();
        let key = k.machine_metadata(&m, "disk");
        assert_eq!(key, "/p/machine/abc/metadata/disk");
        assert_eq!(
            k.parse(key.as_bytes()).unwrap(),
            Some(RegistryKey::MachineMetadata(m.clone(), "disk".into()))
        );
        assert_eq!(
            k.parse(b"/p/machine/abc").unwrap(),
            Some(RegistryKey::Machine(m))
        );
        assert!(k.parse(b"/p/machine/abc/other/disk").is_err());
        assert!(k.parse(b"/p/machine/abc/metadata/a b").is_err());
    }

    #[test]
    fn names() {
        assert!(valid_name("disk_type.v-1"));
        assert!(!valid_name(""));
        assert!(!valid_name("a/b"));
        assert!(!valid_name("a=b"));
    }
}
