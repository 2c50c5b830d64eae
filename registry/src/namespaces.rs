//! Namespaces (other than `default`), the people who use them and their roles.
//!
//! `namespace/<ns>` holds a namespace's machine selector; `user/<name>` a person: a
//! superadmin, or a role per namespace (`admin`, `user`, `viewer`). Both are JSON and
//! readers ignore fields they do not know. Units of a namespace are ordinary units under
//! qualified names (`fleet_core::namespace`): nothing here touches the unit layout.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use etcd_client::{Compare, CompareOp, GetOptions, KeyValue, Txn, TxnOp};
use fleet_core::{Namespace, Namespaces, Selector, UnitName};
use serde::{Deserialize, Serialize};

use crate::error::RegistryError;
use crate::keys::Keys;
use crate::model::ClusterSnapshot;
use crate::registry::Registry;

/// A person's rights in one namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NsRole {
    /// Reads units, states, journals and statuses.
    Viewer,
    /// What an admin does except creating and destroying units.
    User,
    /// Creates, changes, starts, stops and destroys the namespace's units.
    Admin,
}

impl NsRole {
    pub fn as_str(self) -> &'static str {
        match self {
            NsRole::Viewer => "viewer",
            NsRole::User => "user",
            NsRole::Admin => "admin",
        }
    }
}

impl fmt::Display for NsRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for NsRole {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "viewer" => Ok(NsRole::Viewer),
            "user" => Ok(NsRole::User),
            "admin" => Ok(NsRole::Admin),
            _ => Err(format!(
                "invalid role {s:?}: expected admin, user or viewer"
            )),
        }
    }
}

/// A person as stored under `user/<name>`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    #[serde(default)]
    pub superadmin: bool,
    /// Role per namespace name (`default` included).
    #[serde(default)]
    pub grants: BTreeMap<String, NsRole>,
}

impl UserRecord {
    /// The user's role in `ns`; a superadmin is admin everywhere.
    pub fn role_in(&self, ns: &Namespace) -> Option<NsRole> {
        if self.superadmin {
            return Some(NsRole::Admin);
        }
        self.grants.get(ns.as_str()).copied()
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct NamespaceRecord {
    #[serde(default)]
    selector: String,
}

/// Why a namespace or user change was refused (nothing was changed).
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("namespace {0} already exists")]
    NamespaceExists(Namespace),
    #[error("namespace {0} does not exist")]
    NoNamespace(Namespace),
    #[error("the default namespace always exists and cannot be created or deleted")]
    DefaultNamespace,
    #[error("namespace {ns} has {units} unit(s): destroy them first or pass --destroy-units")]
    NotEmpty { ns: Namespace, units: usize },
    #[error(
        "{units} unit(s) of the default namespace are named {ns}:*: a namespace {ns} would take them over"
    )]
    NameClash { ns: Namespace, units: usize },
    #[error("user {0} already exists")]
    UserExists(String),
    #[error("user {0} does not exist")]
    NoUser(String),
    #[error("invalid user name {0:?}: use letters, digits, '.', '_', '-' and '@' (at most 64)")]
    BadUserName(String),
}

/// User names: what a client certificate's CN or a token may carry.
pub fn valid_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c))
}

/// The namespaces stored in `kvs` (keys under `namespace/`), sorted by name; a
/// record whose selector cannot be read counts as a namespace without selector.
pub(crate) fn decode_namespaces(keys: &Keys, kvs: &[KeyValue]) -> Vec<(Namespace, Selector)> {
    let dir = keys.namespaces();
    let mut out: Vec<(Namespace, Selector)> = kvs
        .iter()
        .filter_map(|kv| {
            let name = kv.key_str().ok()?.strip_prefix(&dir)?;
            let ns = Namespace::parse(name).ok().filter(|n| !n.is_default())?;
            let sel = serde_json::from_slice::<NamespaceRecord>(kv.value())
                .ok()
                .and_then(|r| Selector::parse(&r.selector).ok())
                .unwrap_or_default();
            Some((ns, sel))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The people stored in `kvs` (keys under `user/`), in key order; undecodable
/// records are left out.
pub(crate) fn decode_users(keys: &Keys, kvs: &[KeyValue]) -> Vec<(String, UserRecord)> {
    let dir = keys.users();
    kvs.iter()
        .filter_map(|kv| {
            let name = kv.key_str().ok()?.strip_prefix(&dir)?.to_string();
            Some((name, serde_json::from_slice(kv.value()).ok()?))
        })
        .collect()
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, RegistryError> {
    serde_json::to_vec(v).map_err(|e| RegistryError::Config(e.to_string()))
}

impl Registry {
    /// Every namespace besides `default`, with its selector; undecodable records count
    /// as namespaces without selector (their units must not fall into `default`).
    pub async fn namespaces(&self) -> Result<Namespaces, RegistryError> {
        Ok(Namespaces::new(self.list_namespaces().await?))
    }

    /// Namespaces besides `default`, sorted by name.
    pub async fn list_namespaces(&self) -> Result<Vec<(Namespace, Selector)>, RegistryError> {
        let dir = self.keys.namespaces();
        let resp = self.get_prefix("list namespaces", dir).await?;
        Ok(decode_namespaces(&self.keys, resp.kvs()))
    }

    /// Names of the units stored under `ns`'s sub-prefix.
    pub async fn namespace_units(&self, ns: &Namespace) -> Result<Vec<UnitName>, RegistryError> {
        let dir = self.keys.units();
        let prefix = self.keys.ns_units(ns);
        let resp = self
            .call("list namespace units", |mut c| {
                let prefix = prefix.clone();
                async move {
                    c.kv.get(
                        prefix,
                        Some(GetOptions::new().with_prefix().with_keys_only()),
                    )
                    .await
                }
            })
            .await?;
        Ok(resp
            .kvs()
            .iter()
            .filter_map(|kv| UnitName::parse(kv.key_str().ok()?.strip_prefix(&dir)?).ok())
            .collect())
    }

    /// Creates namespace `ns` bound to `selector` (empty: every machine). Refused when
    /// it exists, or when default units already carry its qualified prefix.
    pub async fn create_namespace(
        &self,
        ns: &Namespace,
        selector: &Selector,
    ) -> Result<(), AccessError> {
        if ns.is_default() {
            return Err(AccessError::DefaultNamespace);
        }
        if self.namespaces().await?.contains(ns) {
            return Err(AccessError::NamespaceExists(ns.clone()));
        }
        let clash = self.namespace_units(ns).await?;
        if !clash.is_empty() {
            return Err(AccessError::NameClash {
                ns: ns.clone(),
                units: clash.len(),
            });
        }
        if !self
            .put_namespace("create namespace", ns, selector, CompareOp::Equal)
            .await?
        {
            return Err(AccessError::NamespaceExists(ns.clone()));
        }
        Ok(())
    }

    /// Binds existing namespace `ns` to `selector` (empty: every machine). The engine
    /// follows the record by watch: units on machines that no longer match move.
    pub async fn set_namespace_selector(
        &self,
        ns: &Namespace,
        selector: &Selector,
    ) -> Result<(), AccessError> {
        if ns.is_default() {
            return Err(AccessError::DefaultNamespace);
        }
        if !self
            .put_namespace("set namespace selector", ns, selector, CompareOp::Greater)
            .await?
        {
            return Err(AccessError::NoNamespace(ns.clone()));
        }
        Ok(())
    }

    /// Writes `ns`'s record with `selector` if its key's version compares to 0 by
    /// `existing` (`Equal`: create; `Greater`: rebind); whether it was written.
    async fn put_namespace(
        &self,
        op: &'static str,
        ns: &Namespace,
        selector: &Selector,
        existing: CompareOp,
    ) -> Result<bool, AccessError> {
        let key = self.keys.namespace(ns);
        let value = encode(&NamespaceRecord {
            selector: selector.to_string(),
        })?;
        let txn = Txn::new()
            .when([Compare::version(key.clone(), existing, 0)])
            .and_then([TxnOp::put(key, value, None)]);
        Ok(self.txn(op, txn).await?.succeeded())
    }

    /// One namespace's part of [`Registry::snapshot`], read only from keys its etcd
    /// roles grant (`ns_roles`): its units, targets and unplaced notes, and every
    /// machine, placement, state and drain (callers keep the namespace's, see
    /// `fleetctl --namespace`). One txn, consistent at `revision`.
    pub async fn namespace_snapshot(
        &self,
        ns: &Namespace,
    ) -> Result<ClusterSnapshot, RegistryError> {
        self.read_snapshot("namespace snapshot", self.keys.ns_prefixes(ns), true)
            .await
    }

    /// [`Registry::states_snapshot`] for a user confined to namespace `ns`: machines and
    /// states are readable by every namespace's roles, so a count of the namespace's own
    /// units, read alongside, is what etcd refuses to someone without access to it.
    pub async fn namespace_states_snapshot(
        &self,
        ns: &Namespace,
    ) -> Result<ClusterSnapshot, RegistryError> {
        let [units, ..] = self.keys.ns_prefixes(ns);
        let probe = self.call("namespace access", |mut c| {
            let units = units.clone();
            async move {
                let opts = GetOptions::new().with_prefix().with_count_only();
                c.kv.get(units, Some(opts)).await
            }
        });
        let (_, snap) = tokio::try_join!(probe, self.states_snapshot())?;
        Ok(snap)
    }

    /// Deletes namespace `ns`; with units in it only if `destroy_units`, which destroys
    /// them first. Returns how many units were destroyed.
    pub async fn delete_namespace(
        &self,
        ns: &Namespace,
        destroy_units: bool,
    ) -> Result<usize, AccessError> {
        if ns.is_default() {
            return Err(AccessError::DefaultNamespace);
        }
        let key = self.keys.namespace(ns);
        let exists = self
            .call("read namespace", |mut c| {
                let key = key.clone();
                async move { c.kv.get(key, None).await }
            })
            .await?
            .count()
            > 0;
        if !exists {
            return Err(AccessError::NoNamespace(ns.clone()));
        }
        let units = self.namespace_units(ns).await?;
        if !units.is_empty() && !destroy_units {
            return Err(AccessError::NotEmpty {
                ns: ns.clone(),
                units: units.len(),
            });
        }
        let destroyed = self
            .destroy_units(&units)
            .await?
            .into_iter()
            .filter(|d| *d)
            .count();
        self.call("delete namespace", |mut c| {
            let key = key.clone();
            async move { c.kv.delete(key, None).await }
        })
        .await?;
        Ok(destroyed)
    }

    /// A person's record; `None` for an unknown (or undecodable) one.
    pub async fn get_user(&self, name: &str) -> Result<Option<UserRecord>, RegistryError> {
        if !valid_user_name(name) {
            return Ok(None);
        }
        let key = self.keys.user(name);
        let resp = self
            .call("read user", |mut c| {
                let key = key.clone();
                async move { c.kv.get(key, None).await }
            })
            .await?;
        Ok(resp
            .kvs()
            .first()
            .and_then(|kv| serde_json::from_slice(kv.value()).ok()))
    }

    /// Every person, sorted by name.
    pub async fn list_users(&self) -> Result<Vec<(String, UserRecord)>, RegistryError> {
        let resp = self.get_prefix("list users", self.keys.users()).await?;
        Ok(decode_users(&self.keys, resp.kvs()))
    }

    /// Adds a person (refused if the name is taken).
    pub async fn add_user(&self, name: &str, superadmin: bool) -> Result<(), AccessError> {
        if !valid_user_name(name) {
            return Err(AccessError::BadUserName(name.to_string()));
        }
        let key = self.keys.user(name);
        let value = encode(&UserRecord {
            superadmin,
            grants: BTreeMap::new(),
        })?;
        let txn = Txn::new()
            .when([Compare::version(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value, None)]);
        if !self.txn("add user", txn).await?.succeeded() {
            return Err(AccessError::UserExists(name.to_string()));
        }
        Ok(())
    }

    /// Removes a person and all their grants; whether they existed.
    pub async fn remove_user(&self, name: &str) -> Result<bool, AccessError> {
        if !valid_user_name(name) {
            return Err(AccessError::BadUserName(name.to_string()));
        }
        let key = self.keys.user(name);
        let resp = self
            .call("remove user", |mut c| {
                let key = key.clone();
                async move { c.kv.delete(key, None).await }
            })
            .await?;
        Ok(resp.deleted() > 0)
    }

    /// Sets (`Some`) or removes (`None`) `name`'s role in `ns`, compare-and-swap on
    /// the record so concurrent grants are not lost.
    pub async fn set_grant(
        &self,
        name: &str,
        ns: &Namespace,
        role: Option<NsRole>,
    ) -> Result<UserRecord, AccessError> {
        if !valid_user_name(name) {
            return Err(AccessError::BadUserName(name.to_string()));
        }
        if !ns.is_default() && !self.namespaces().await?.contains(ns) {
            return Err(AccessError::NoNamespace(ns.clone()));
        }
        let key = self.keys.user(name);
        loop {
            let resp = self
                .call("read user", |mut c| {
                    let key = key.clone();
                    async move { c.kv.get(key, None).await }
                })
                .await?;
            let Some(kv) = resp.kvs().first() else {
                return Err(AccessError::NoUser(name.to_string()));
            };
            let mut record: UserRecord = serde_json::from_slice(kv.value())
                .map_err(|e| RegistryError::corrupt(kv.key(), e))?;
            match role {
                Some(r) => record.grants.insert(ns.to_string(), r),
                None => record.grants.remove(ns.as_str()),
            };
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    key.clone(),
                    CompareOp::Equal,
                    kv.mod_revision(),
                )])
                .and_then([TxnOp::put(key.clone(), encode(&record)?, None)]);
            if self.txn("grant", txn).await?.succeeded() {
                return Ok(record);
            }
        }
    }
}
