//! Every encoding and decoding of etcd values, in one place. Decoding failures name
//! the key; they never panic.
//!
//! The values written once per unit and machine at scale (placements, states, job
//! targets) are protobuf (prost), about a third of their JSON size; unit texts and
//! machine records stay JSON (written rarely, read by operators). Decoding still reads
//! the JSON and plain-word values older versions wrote, so a cluster upgraded in place
//! keeps working: a JSON value starts with `{`, a plain target with a letter, and none
//! of the protobuf values here can (their first byte is a field tag, 0x08 or 0x0a).

use std::collections::BTreeMap;
use std::net::IpAddr;

use fleet_core::machine::metadata_control_char;
use fleet_core::unit::file::MAX_UNIT_SIZE;
use fleet_core::{Machine, MachineId, SystemdState, TargetState, UnitFile, UnitHash, UnitName};
use serde::{Deserialize, Serialize};

use crate::error::RegistryError;
use crate::keys::{Keys, RegistryKey};
use crate::model::{MachineRecord, ScheduleEntry, UnitStateRecord};

#[derive(Serialize, Deserialize)]
struct UnitValue {
    text: String,
    hash: String,
}

#[derive(Serialize, Deserialize)]
struct MachineValue {
    id: String,
    #[serde(default)]
    public_ip: String,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    #[serde(default)]
    version: String,
    #[serde(default)]
    disable_engine: bool,
    #[serde(default)]
    api_addr: String,
}

/// The JSON placements older versions wrote (read only).
#[derive(Deserialize)]
struct ScheduleValue {
    hash: String,
    target: String,
}

/// The JSON states older versions wrote (read only).
#[derive(Deserialize)]
struct StateValue {
    hash: String,
    state: String,
    #[serde(default)]
    load: String,
    #[serde(default)]
    active: String,
    #[serde(default)]
    sub: String,
}

/// Targets on the wire: 0 is "unset" (an empty or truncated value is corrupt, never
/// silently `inactive`).
fn target_code(t: TargetState) -> i32 {
    match t {
        TargetState::Inactive => 1,
        TargetState::Loaded => 2,
        TargetState::Launched => 3,
    }
}

fn target_of_code(key: &[u8], code: i32) -> Result<TargetState, RegistryError> {
    match code {
        1 => Ok(TargetState::Inactive),
        2 => Ok(TargetState::Loaded),
        3 => Ok(TargetState::Launched),
        c => Err(RegistryError::corrupt(
            key,
            format!("unknown target code {c}"),
        )),
    }
}

/// `job/<n>/target`.
#[derive(Clone, PartialEq, prost::Message)]
struct TargetProto {
    #[prost(int32, tag = "1")]
    target: i32,
}

/// `schedule/<machine>/<unit>`.
#[derive(Clone, PartialEq, prost::Message)]
struct ScheduleProto {
    #[prost(bytes = "vec", tag = "1")]
    hash: Vec<u8>,
    #[prost(int32, tag = "2")]
    target: i32,
    /// The unit's text when small (older readers skip the field).
    #[prost(string, optional, tag = "3")]
    text: Option<String>,
}

/// `state/<unit>/<machine>`.
#[derive(Clone, PartialEq, prost::Message)]
struct StateProto {
    #[prost(bytes = "vec", tag = "1")]
    hash: Vec<u8>,
    #[prost(int32, tag = "2")]
    state: i32,
    #[prost(string, tag = "3")]
    load: String,
    #[prost(string, tag = "4")]
    active: String,
    #[prost(string, tag = "5")]
    sub: String,
}

/// Whether `val` is a value older versions wrote as JSON.
fn is_json(val: &[u8]) -> bool {
    val.first() == Some(&b'{')
}

fn from_proto<T: prost::Message + Default>(key: &[u8], val: &[u8]) -> Result<T, RegistryError> {
    T::decode(val).map_err(|e| RegistryError::corrupt(key, e))
}

fn hash_bytes(key: &[u8], b: &[u8]) -> Result<UnitHash, RegistryError> {
    <[u8; 20]>::try_from(b)
        .map(UnitHash)
        .map_err(|_| RegistryError::corrupt(key, format!("bad hash of {} bytes", b.len())))
}

fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    // Serialising these plain structs (strings, bools, string maps) cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

fn from_json<'a, T: Deserialize<'a>>(key: &[u8], val: &'a [u8]) -> Result<T, RegistryError> {
    serde_json::from_slice(val).map_err(|e| RegistryError::corrupt(key, e))
}

fn hash(key: &[u8], s: &str) -> Result<UnitHash, RegistryError> {
    s.parse()
        .map_err(|e| RegistryError::corrupt(key, format!("bad hash {s:?}: {e}")))
}

fn target(key: &[u8], s: &str) -> Result<TargetState, RegistryError> {
    s.parse().map_err(|e| RegistryError::corrupt(key, e))
}

/// The stored form of a unit: canonical text and its hash.
pub(crate) fn encode_unit(file: &UnitFile) -> (Vec<u8>, UnitHash) {
    let h = file.hash();
    let v = UnitValue {
        text: file.canonical(),
        hash: h.to_string(),
    };
    (to_json(&v), h)
}

/// [`encode_unit`], refusing a value larger than fleet's 1 MiB unit limit: the limit
/// applies to what is stored (escaping can make it larger than the text), so etcd's
/// request limit is never what refuses a unit.
pub(crate) fn encode_unit_checked(
    name: &UnitName,
    file: &UnitFile,
) -> Result<(Vec<u8>, UnitHash), RegistryError> {
    let (value, hash) = encode_unit(file);
    if value.len() > MAX_UNIT_SIZE {
        return Err(RegistryError::UnitTooLarge {
            unit: name.clone(),
            size: value.len(),
            max: MAX_UNIT_SIZE,
        });
    }
    Ok((value, hash))
}

/// Only the hash of a stored unit (for create-only comparisons; no parsing).
pub(crate) fn decode_unit_hash(key: &[u8], val: &[u8]) -> Result<UnitHash, RegistryError> {
    let v: UnitValue = from_json(key, val)?;
    hash(key, &v.hash)
}

pub(crate) fn decode_unit(key: &[u8], val: &[u8]) -> Result<(UnitFile, UnitHash), RegistryError> {
    let v: UnitValue = from_json(key, val)?;
    let file = UnitFile::parse(&v.text).map_err(|e| RegistryError::corrupt(key, e))?;
    Ok((file, hash(key, &v.hash)?))
}

/// A job target: protobuf (2 bytes).
pub(crate) fn encode_target(t: TargetState) -> Vec<u8> {
    prost::Message::encode_to_vec(&TargetProto {
        target: target_code(t),
    })
}

/// Reads protobuf targets and the plain words (`launched`) older versions wrote.
pub(crate) fn decode_target(key: &[u8], val: &[u8]) -> Result<TargetState, RegistryError> {
    if val.first().is_some_and(u8::is_ascii_alphabetic) {
        let s = std::str::from_utf8(val).map_err(|e| RegistryError::corrupt(key, e))?;
        return target(key, s.trim());
    }
    let v: TargetProto = from_proto(key, val)?;
    target_of_code(key, v.target)
}

pub(crate) fn encode_machine(m: &Machine, api_addr: &str) -> Vec<u8> {
    to_json(&MachineValue {
        id: m.id.to_string(),
        public_ip: m.public_ip.map(|ip| ip.to_string()).unwrap_or_default(),
        metadata: m.metadata.clone(),
        version: m.version.clone(),
        disable_engine: m.disable_engine,
        api_addr: api_addr.to_string(),
    })
}

/// The key names the machine; a value claiming another id is corrupt.
pub(crate) fn decode_machine(
    key: &[u8],
    id: MachineId,
    val: &[u8],
) -> Result<MachineRecord, RegistryError> {
    let v: MachineValue = from_json(key, val)?;
    if v.id != id.as_str() {
        return Err(RegistryError::corrupt(
            key,
            format!("value names machine {:?}", v.id),
        ));
    }
    // fleet publishes "" when it found no address; anything else must be an IP.
    let public_ip = match v.public_ip.as_str() {
        "" => None,
        s => Some(s.parse::<IpAddr>().map_err(|_| {
            RegistryError::corrupt(key, format!("public_ip {s:?} is not an IP address"))
        })?),
    };
    for (k, v) in &v.metadata {
        if let Some(c) = metadata_control_char(k).or_else(|| metadata_control_char(v)) {
            return Err(RegistryError::corrupt(
                key,
                format!(
                    "metadata {k:?} holds control character U+{:04X}",
                    u32::from(c)
                ),
            ));
        }
    }
    Ok(MachineRecord {
        machine: Machine {
            id,
            public_ip,
            metadata: v.metadata,
            version: v.version,
            disable_engine: v.disable_engine,
        },
        api_addr: v.api_addr,
    })
}

/// A placement: protobuf (24 bytes without a text; its JSON was about 70).
pub(crate) fn encode_schedule(e: &ScheduleEntry) -> Vec<u8> {
    prost::Message::encode_to_vec(&ScheduleProto {
        hash: e.hash.0.to_vec(),
        target: target_code(e.target),
        text: e.text.as_deref().map(str::to_owned),
    })
}

pub(crate) fn decode_schedule(
    key: &[u8],
    machine: MachineId,
    unit: UnitName,
    val: &[u8],
) -> Result<ScheduleEntry, RegistryError> {
    let (hash, target, text) = if is_json(val) {
        let v: ScheduleValue = from_json(key, val)?;
        (hash(key, &v.hash)?, target(key, &v.target)?, None)
    } else {
        let v: ScheduleProto = from_proto(key, val)?;
        (
            hash_bytes(key, &v.hash)?,
            target_of_code(key, v.target)?,
            v.text.map(std::sync::Arc::from),
        )
    };
    Ok(ScheduleEntry {
        machine,
        unit,
        hash,
        target,
        text,
    })
}

/// A reported state: protobuf (about 50 bytes; its JSON was about 120).
pub(crate) fn encode_state(s: &UnitStateRecord) -> Vec<u8> {
    prost::Message::encode_to_vec(&StateProto {
        hash: s.hash.0.to_vec(),
        state: target_code(s.state),
        load: s.systemd.load.clone(),
        active: s.systemd.active.clone(),
        sub: s.systemd.sub.clone(),
    })
}

pub(crate) fn decode_state(
    key: &[u8],
    unit: UnitName,
    machine: MachineId,
    val: &[u8],
) -> Result<UnitStateRecord, RegistryError> {
    if is_json(val) {
        let v: StateValue = from_json(key, val)?;
        return Ok(UnitStateRecord {
            unit,
            machine,
            hash: hash(key, &v.hash)?,
            state: target(key, &v.state)?,
            systemd: SystemdState {
                load: v.load,
                active: v.active,
                sub: v.sub,
            },
        });
    }
    let v: StateProto = from_proto(key, val)?;
    Ok(UnitStateRecord {
        unit,
        machine,
        hash: hash_bytes(key, &v.hash)?,
        state: target_of_code(key, v.state)?,
        systemd: SystemdState {
            load: v.load,
            active: v.active,
            sub: v.sub,
        },
    })
}

/// Unplaced reasons are plain text for operators reading etcd directly.
pub(crate) fn encode_unplaced(reason: &str) -> Vec<u8> {
    reason.as_bytes().to_vec()
}

pub(crate) fn decode_unplaced(val: &[u8]) -> String {
    String::from_utf8_lossy(val).into_owned()
}

/// Dynamic machine metadata values are plain text, as in fleet (empty: removed).
pub(crate) fn encode_metadata(value: &str) -> Vec<u8> {
    value.as_bytes().to_vec()
}

pub(crate) fn decode_metadata(key: &[u8], val: &[u8]) -> Result<String, RegistryError> {
    let v = String::from_utf8(val.to_vec()).map_err(|e| RegistryError::corrupt(key, e))?;
    match metadata_control_char(&v) {
        Some(c) => Err(RegistryError::corrupt(
            key,
            format!(
                "metadata value holds control character U+{:04X}",
                u32::from(c)
            ),
        )),
        None => Ok(v),
    }
}

/// What the fuzz target checks on any key and value (`fuzz/fuzz_targets/registry_value.rs`):
/// decoding never panics; an error is one line naming the key; a decoded record encodes
/// back to a value that decodes to the same record. Returns whether it decoded.
#[doc(hidden)]
pub fn fuzz_check(keys: &Keys, key: &[u8], value: &[u8]) -> bool {
    let one_line = |e: &RegistryError| {
        let s = e.to_string();
        assert!(
            !s.chars().any(char::is_control),
            "not one visible line: {s:?}"
        );
    };
    let parsed = match keys.parse(key) {
        Ok(Some(k)) => k,
        Ok(None) => return false,
        Err(e) => {
            one_line(&e);
            return false;
        }
    };
    let result: Result<(), RegistryError> = (|| {
        match parsed {
            RegistryKey::Unit(_) => {
                let (file, hash) = decode_unit(key, value)?;
                assert_eq!(decode_unit_hash(key, value)?, hash);
                let (again, h2) = encode_unit(&file);
                let (file2, _) = decode_unit(key, &again).expect("re-encoded unit decodes");
                // The same unit: what is stored, hashed and written to disk is the
                // canonical text, sections grouped in order of first appearance (a value
                // fleet did not write may repeat a section; systemd merges them too).
                assert_eq!(file2.canonical(), file.canonical());
                assert_eq!(file2.hash(), h2);
                assert_eq!(file2.hash(), file.hash());
            }
            RegistryKey::JobTarget(_) => {
                let t = decode_target(key, value)?;
                assert_eq!(decode_target(key, &encode_target(t)).ok(), Some(t));
            }
            RegistryKey::Machine(id) => {
                let r = decode_machine(key, id.clone(), value)?;
                let again = encode_machine(&r.machine, &r.api_addr);
                assert_eq!(decode_machine(key, id, &again).ok(), Some(r));
            }
            RegistryKey::MachineMetadata(..) => {
                let v = decode_metadata(key, value)?;
                assert_eq!(decode_metadata(key, &encode_metadata(&v)).ok(), Some(v));
            }
            RegistryKey::Schedule(m, n) => {
                let e = decode_schedule(key, m.clone(), n.clone(), value)?;
                assert_eq!(
                    decode_schedule(key, m, n, &encode_schedule(&e)).ok(),
                    Some(e)
                );
            }
            RegistryKey::State(n, m) => {
                let s = decode_state(key, n.clone(), m.clone(), value)?;
                assert_eq!(decode_state(key, n, m, &encode_state(&s)).ok(), Some(s));
            }
            RegistryKey::Unplaced(_) => {
                let r = decode_unplaced(value);
                assert_eq!(decode_unplaced(&encode_unplaced(&r)), r);
            }
            RegistryKey::Leader | RegistryKey::Drain(_) => {}
        }
        Ok(())
    })();
    match result {
        Ok(()) => true,
        Err(e) => {
            one_line(&e);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_round_trip_and_corruption() {
        let id = MachineId::new("m1").unwrap();
        let mut m = Machine::new(id.clone());
        m.public_ip = Some("10.0.0.1".parse().unwrap());
        m.metadata.insert("region".into(), "eu".into());
        let bytes = encode_machine(&m, "10.0.0.1:4002");
        let back = decode_machine(b"k", id.clone(), &bytes).unwrap();
        assert_eq!(back.machine, m);
        assert_eq!(back.api_addr, "10.0.0.1:4002");
        let err = decode_machine(b"/p/machine/m1", id.clone(), b"{not json").unwrap_err();
        assert!(err.to_string().contains("/p/machine/m1"), "{err}");
        let other = decode_machine(b"k", MachineId::new("m2").unwrap(), &bytes);
        assert!(other.is_err());
        // fleet's "no address known" stays valid; anything but an IP is corrupt.
        let none = decode_machine(b"k", id.clone(), br#"{"id":"m1","public_ip":""}"#).unwrap();
        assert_eq!(none.machine.public_ip, None);
        let v6 = decode_machine(b"k", id.clone(), br#"{"id":"m1","public_ip":"fd00::1"}"#);
        assert_eq!(
            v6.unwrap().machine.public_ip,
            Some("fd00::1".parse().unwrap())
        );
        for bad in [
            "-oProxyCommand=touch pwned",
            "host.example",
            "10.0.0.1 -v",
            "10.0.0.1:22",
            " 10.0.0.1",
        ] {
            let v = serde_json::json!({"id": "m1", "public_ip": bad}).to_string();
            let err = decode_machine(b"/p/machine/m1", id.clone(), v.as_bytes()).unwrap_err();
            assert!(
                err.to_string().contains("is not an IP address"),
                "{bad}: {err}"
            );
        }
        // Metadata reaches terminals (list-machines): control characters are corrupt.
        for (k, v) in [("region", "eu\u{1b}[2J"), ("a\nb", "x"), ("disk", "ssd\r")] {
            let val = serde_json::json!({"id": "m1", "metadata": {k: v}}).to_string();
            let err = decode_machine(b"/p/machine/m1", id.clone(), val.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(err.contains("holds control character U+"), "{err}");
            assert!(!err.chars().any(char::is_control), "{err}");
        }
        // A tab too: list-machines separates its columns with tabs.
        let tab = serde_json::json!({"id": "m1", "metadata": {"a": "b\tc"}}).to_string();
        assert!(decode_machine(b"k", id.clone(), tab.as_bytes()).is_err());
        let ok = serde_json::json!({"id": "m1", "metadata": {"a": "b c=d"}}).to_string();
        assert!(decode_machine(b"k", id.clone(), ok.as_bytes()).is_ok());
        assert!(decode_metadata(b"k", b"ssd").is_ok());
        let err = decode_metadata(b"/p/machine/m1/metadata/disk", b"ssd\x1b[2J").unwrap_err();
        assert!(
            err.to_string()
                .contains("metadata value holds control character U+001B"),
            "{err}"
        );
    }

    /// Found by fuzz/registry_value: a stored unit that repeats a section decodes, and
    /// its re-encoding (sections grouped) is the same unit, not a failed check.
    #[test]
    fn a_stored_unit_repeating_a_section_is_the_same_unit_re_encoded() {
        let keys = Keys::new("/p/").unwrap();
        let text =
            "[Unit]\nDescription=a\n[Service]\nExecStart=/bin/true\n[Unit]\nAfter=b.service\n";
        let value = serde_json::json!({
            "text": text,
            "hash": "0123456789abcdef0123456789abcdef01234567"
        })
        .to_string();
        assert!(fuzz_check(&keys, b"/p/unit/a.service", value.as_bytes()));
        let (file, _) = decode_unit(b"k", value.as_bytes()).unwrap();
        assert_eq!(
            file.canonical(),
            "[Unit]\nDescription=a\nAfter=b.service\n\n[Service]\nExecStart=/bin/true\n"
        );
    }

    #[test]
    fn state_and_schedule_round_trip() {
        let s = UnitStateRecord {
            unit: UnitName::parse("a.service").unwrap(),
            machine: MachineId::new("m").unwrap(),
            hash: UnitHash([7; 20]),
            state: TargetState::Launched,
            systemd: SystemdState {
                load: "loaded".into(),
                active: "active".into(),
                sub: "running".into(),
            },
        };
        let back = decode_state(b"k", s.unit.clone(), s.machine.clone(), &encode_state(&s));
        assert_eq!(back.unwrap(), s);
        let e = ScheduleEntry {
            machine: s.machine.clone(),
            unit: s.unit.clone(),
            hash: s.hash,
            target: TargetState::Loaded,
            text: None,
        };
        let back = decode_schedule(
            b"k",
            e.machine.clone(),
            e.unit.clone(),
            &encode_schedule(&e),
        );
        assert_eq!(back.unwrap(), e);
        let with_text = ScheduleEntry {
            text: Some("[Service]\nExecStart=/bin/true\n".into()),
            ..e.clone()
        };
        let bytes = encode_schedule(&with_text);
        let back = decode_schedule(b"k", e.machine.clone(), e.unit.clone(), &bytes);
        assert_eq!(back.unwrap(), with_text);
        // A fleetd that predates the text reads the placement and skips the text.
        #[derive(Clone, PartialEq, prost::Message)]
        struct Before {
            #[prost(bytes = "vec", tag = "1")]
            hash: Vec<u8>,
            #[prost(int32, tag = "2")]
            target: i32,
        }
        let old: Before = prost::Message::decode(bytes.as_slice()).unwrap();
        assert_eq!(
            (old.hash, old.target),
            (e.hash.0.to_vec(), target_code(TargetState::Loaded))
        );
        assert!(decode_target(b"k", b"running").is_err());
        assert!(
            decode_target(b"k", b"").is_err(),
            "an empty target is not inactive"
        );
        for t in [
            TargetState::Inactive,
            TargetState::Loaded,
            TargetState::Launched,
        ] {
            assert_eq!(decode_target(b"k", &encode_target(t)).unwrap(), t);
        }
        assert_eq!(
            decode_target(b"k", b"launched").unwrap(),
            TargetState::Launched
        );
    }

    /// A cluster upgraded in place still holds the values older versions wrote: JSON
    /// placements and states, plain-word targets. They read as before, and the new
    /// values are smaller.
    #[test]
    fn values_written_by_older_versions_still_read() {
        let h = UnitHash([0xab; 20]);
        let m = MachineId::new("m1").unwrap();
        let u = UnitName::parse("a.service").unwrap();
        let old_schedule = format!(r#"{{"hash":"{h}","target":"launched"}}"#);
        let e = decode_schedule(b"k", m.clone(), u.clone(), old_schedule.as_bytes()).unwrap();
        assert_eq!((e.hash, e.target), (h, TargetState::Launched));
        assert!(encode_schedule(&e).len() * 2 < old_schedule.len());
        let old_state = format!(
            r#"{{"hash":"{h}","state":"launched","load":"loaded","active":"active","sub":"running"}}"#
        );
        let s = decode_state(b"k", u.clone(), m.clone(), old_state.as_bytes()).unwrap();
        assert_eq!(s.hash, h);
        assert_eq!(s.state, TargetState::Launched);
        assert_eq!(s.systemd.sub, "running");
        assert!(encode_state(&s).len() * 2 < old_state.len());
        assert_eq!(
            decode_target(b"k", b"loaded").unwrap(),
            TargetState::Loaded,
            "plain-word target"
        );
        assert_eq!(
            decode_target(b"k", b"launched\n").unwrap(),
            TargetState::Launched
        );
        // A truncated protobuf value is corrupt, named by its key.
        let mut cut = encode_schedule(&e);
        cut.truncate(5);
        let err = decode_schedule(b"/p/schedule/m1/a.service", m, u, &cut).unwrap_err();
        assert!(
            err.to_string().contains("/p/schedule/m1/a.service"),
            "{err}"
        );
    }
}
