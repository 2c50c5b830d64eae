//! Least privilege in etcd, fleet's NodeRestriction: the etcd roles and users a
//! cluster needs, applied idempotently (`fleetctl etcd-roles`), the one-time move of
//! states from the old layout, and the key classes a refused write is reported by.
//!
//! | role | may write | may read |
//! |---|---|---|
//! | `fleet-machine-<id>` (one per machine) | `machine/<id>`, `machine-state/<id>/` | everything under the prefix |
//! | `fleet-engine` (machines allowed to lead) | `schedule/`, `unplaced/`, `leader/` | everything |
//! | `fleet-operator` (people, and machines' APIs: `fleet-api-<id>` or the machine's user) | `unit/`, `job/`, `drain/`, `token/`, `machine/` (for metadata) | everything |
//! | `fleet-viewer` | nothing | everything |
//!
//! A machine's etcd user is `fleet-machine-<id>`, holding its own role, plus
//! `fleet-engine` when it may run the engine (a control-plane machine) and
//! `fleet-operator` when it serves the write API (the API writes units and targets on
//! behalf of its callers with the serving machine's etcd identity, after its own role
//! check) — or, better, the API has its own user `fleet-api-<id>` holding
//! `fleet-operator`, and the machine's user never does. A worker holds its own role
//! only. etcd grants by key range, and
//! `machine/<id>/metadata/` cannot be granted to operators without also granting
//! `machine/`: an operator can forge a machine record, as it can already run any
//! unit on every machine.

use std::collections::BTreeSet;

use etcd_client::{
    Compare, CompareOp, Permission, PermissionType, PutOptions, RoleRevokePermissionOptions, Txn,
    TxnOp, TxnOpResponse,
};
use fleet_core::MachineId;

use crate::auth::Secret;
use crate::error::RegistryError;
use crate::keys::Keys;
use crate::registry::Registry;

pub const VIEWER: &str = "fleet-viewer";
pub const OPERATOR: &str = "fleet-operator";
pub const ENGINE: &str = "fleet-engine";
/// etcd's own superuser role and user, which `auth enable` requires.
pub const ROOT: &str = "root";

/// A machine's etcd user and its own role: the same name.
pub fn machine_user(m: &MachineId) -> String {
    format!("fleet-machine-{m}")
}

/// The etcd user of machine `m`'s API when it has its own (fleet.conf's
/// `api_etcd_username`): it holds `fleet-operator` only, so the machine's own user
/// (agent and engine) needs no operator rights.
pub fn api_user(m: &MachineId) -> String {
    format!("fleet-api-{m}")
}

/// A new random password (32 hex digits, 128 bits) for a user fleet creates.
pub fn new_password() -> Secret {
    Secret::new(hex::encode(rand::random::<[u8; 16]>()))
}

/// What a grant allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    Read,
    Write,
    ReadWrite,
}

impl Access {
    fn etcd(self) -> PermissionType {
        match self {
            Access::Read => PermissionType::Read,
            Access::Write => PermissionType::Write,
            Access::ReadWrite => PermissionType::Readwrite,
        }
    }
    fn from_etcd(t: i32) -> Option<Access> {
        match PermissionType::try_from(t).ok()? {
            PermissionType::Read => Some(Access::Read),
            PermissionType::Write => Some(Access::Write),
            PermissionType::Readwrite => Some(Access::ReadWrite),
        }
    }
}

/// One permission of a role: `access` on `[key, range_end)`, or on `key` alone when
/// `range_end` is empty.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Grant {
    pub access: Access,
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
}

impl Grant {
    pub(crate) fn prefix(access: Access, prefix: String) -> Grant {
        let key = prefix.into_bytes();
        let range_end = prefix_end(&key);
        Grant {
            access,
            key,
            range_end,
        }
    }
    fn key(access: Access, key: String) -> Grant {
        Grant {
            access,
            key: key.into_bytes(),
            range_end: Vec::new(),
        }
    }
}

impl std::fmt::Display for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let access = match self.access {
            Access::Read => "read",
            Access::Write => "write",
            Access::ReadWrite => "readwrite",
        };
        let key = String::from_utf8_lossy(&self.key);
        if self.range_end.is_empty() {
            write!(f, "{access} {key}")
        } else if self.range_end == prefix_end(&self.key) {
            write!(f, "{access} {key}*")
        } else {
            let end = String::from_utf8_lossy(&self.range_end);
            write!(f, "{access} [{key}, {end})")
        }
    }
}

/// The end of the range of keys starting with `p` (etcd's `--prefix`).
fn prefix_end(p: &[u8]) -> Vec<u8> {
    let mut end = p.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// A role and exactly the permissions it should have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleSpec {
    pub name: String,
    pub grants: BTreeSet<Grant>,
}

/// The roles every cluster has: viewer, operator, engine.
pub fn cluster_roles(keys: &Keys) -> Vec<RoleSpec> {
    let read_all = Grant::prefix(Access::Read, keys.prefix().to_string());
    let role = |name: &str, writes: Vec<String>| RoleSpec {
        name: name.to_string(),
        grants: std::iter::once(read_all.clone())
            .chain(
                writes
                    .into_iter()
                    .map(|p| Grant::prefix(Access::ReadWrite, p)),
            )
            .collect(),
    };
    vec![
        role(VIEWER, Vec::new()),
        role(
            OPERATOR,
            vec![
                keys.units(),
                keys.jobs(),
                keys.drains(),
                keys.tokens(),
                keys.machines(),
            ],
        ),
        role(
            ENGINE,
            vec![
                keys.schedules(),
                keys.unplaced_all(),
                format!("{}/", keys.leader()),
            ],
        ),
    ]
}

/// One machine's role: its record and its states, and reading the cluster.
pub fn machine_role(keys: &Keys, m: &MachineId) -> RoleSpec {
    RoleSpec {
        name: machine_user(m),
        grants: [
            Grant::prefix(Access::Read, keys.prefix().to_string()),
            Grant::key(Access::ReadWrite, keys.machine(m)),
            Grant::prefix(Access::ReadWrite, keys.machine_states(m)),
        ]
        .into_iter()
        .collect(),
    }
}

/// The roles a machine's user holds.
pub fn machine_user_roles(m: &MachineId, engine: bool, api: bool) -> BTreeSet<String> {
    let mut roles = BTreeSet::from([machine_user(m)]);
    if engine {
        roles.insert(ENGINE.to_string());
    }
    if api {
        roles.insert(OPERATOR.to_string());
    }
    roles
}

/// The class of keys a write was refused on, and the role that would allow it: what
/// fleetd and fleetctl name when etcd says "permission denied".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyClass {
    /// `machine/<id>`: the machine's own record.
    MachineRecord(MachineId),
    /// `machine-state/<id>/`: the machine's own states.
    MachineStates(MachineId),
    /// `schedule/` and `unplaced/`.
    Schedule,
    /// `leader/`: the engine election.
    Election,
    /// `unit/` and `job/`.
    Units,
    /// `drain/`.
    Drain,
    /// `machine/<id>/metadata/`.
    Metadata,
    /// `token/`.
    Tokens,
}

impl KeyClass {
    /// What the keys are, as the refusal names them.
    pub fn describe(&self) -> String {
        match self {
            KeyClass::MachineRecord(m) => format!("its machine record (machine/{m})"),
            KeyClass::MachineStates(m) => format!("its unit states (machine-state/{m}/)"),
            KeyClass::Schedule => "the schedule (schedule/, unplaced/)".into(),
            KeyClass::Election => "the engine election (leader/)".into(),
            KeyClass::Units => "units and targets (unit/, job/)".into(),
            KeyClass::Drain => "drains (drain/)".into(),
            KeyClass::Metadata => "machine metadata (machine/<id>/metadata/)".into(),
            KeyClass::Tokens => "API tokens (token/)".into(),
        }
    }

    /// The fleet role that may write these keys.
    pub fn role(&self) -> String {
        match self {
            KeyClass::MachineRecord(m) | KeyClass::MachineStates(m) => machine_user(m),
            KeyClass::Schedule | KeyClass::Election => ENGINE.into(),
            KeyClass::Units | KeyClass::Drain | KeyClass::Metadata | KeyClass::Tokens => {
                OPERATOR.into()
            }
        }
    }
}

impl RegistryError {
    /// `self`, or, when it is etcd's "permission denied", the one line naming `class`
    /// and the role the caller's etcd user lacks.
    pub(crate) fn denied(self, class: KeyClass) -> RegistryError {
        match &self {
            RegistryError::Etcd {
                source: etcd_client::Error::GRpcStatus(s),
                ..
            } if s.message().contains("permission denied") => RegistryError::PermissionDenied {
                keys: class.describe(),
                role: class.role(),
            },
            _ => self,
        }
    }
}

/// Whether etcd `version` enforces key permissions inside transactions: releases
/// before 3.4.44, 3.5.30 and 3.6.11 let any authenticated user write any key with a
/// nested txn (GHSA-rfx7-8w68-q57q) or read through a txn put's `prev_kv`
/// (CVE-2026-44283), so roles there do not confine a machine. `None`: not a version.
pub fn version_confines_users(version: &str) -> Option<bool> {
    let mut parts = version
        .trim()
        .trim_start_matches('v')
        .split(['.', '-', '+']);
    let mut num = || parts.next()?.parse::<u32>().ok();
    let (major, minor, patch) = (num()?, num()?, num()?);
    Some(match (major, minor) {
        (3, 4) => patch >= 44,
        (3, 5) => patch >= 30,
        (3, 6) => patch >= 11,
        (3, m) => m > 6,
        (m, _) => m > 3,
    })
}

/// Registry calls that change etcd's users and roles; each returns what it changed, as
/// lines for the operator (empty: nothing to do).
impl Registry {
    /// Creates `spec`'s role if missing and makes its permissions exactly `grants`
    /// (grants missing ones, revokes others).
    pub async fn apply_role(&self, spec: &RoleSpec) -> Result<Vec<String>, RegistryError> {
        let mut changes = Vec::new();
        let exists = self
            .call("list etcd roles", |mut c| async move {
                c.client.role_list().await
            })
            .await?
            .roles()
            .contains(&spec.name);
        let have: BTreeSet<Grant> = if exists {
            let name = spec.name.clone();
            self.call("get etcd role", |mut c| {
                let name = name.clone();
                async move { c.client.role_get(name).await }
            })
            .await?
            .permissions()
            .iter()
            .filter_map(|p| {
                Some(Grant {
                    access: Access::from_etcd(p.get_type())?,
                    key: p.key().to_vec(),
                    range_end: p.range_end().to_vec(),
                })
            })
            .collect()
        } else {
            let name = spec.name.clone();
            self.call("add etcd role", |mut c| {
                let name = name.clone();
                async move { c.client.role_add(name).await }
            })
            .await?;
            changes.push(format!("role {}: created", spec.name));
            BTreeSet::new()
        };
        for g in have.difference(&spec.grants) {
            let (name, key) = (spec.name.clone(), g.key.clone());
            let end = g.range_end.clone();
            self.call("revoke etcd role permission", |mut c| {
                let (name, key) = (name.clone(), key.clone());
                let opts = RoleRevokePermissionOptions::new().with_range_end(end.clone());
                async move { c.client.role_revoke_permission(name, key, Some(opts)).await }
            })
            .await?;
            changes.push(format!("role {}: revoked {g}", spec.name));
        }
        for g in spec.grants.difference(&have) {
            let name = spec.name.clone();
            let mut perm = Permission::new(g.access.etcd(), g.key.clone());
            if !g.range_end.is_empty() {
                perm = perm.with_range_end(g.range_end.clone());
            }
            self.call("grant etcd role permission", |mut c| {
                let (name, perm) = (name.clone(), perm.clone());
                async move { c.client.role_grant_permission(name, perm).await }
            })
            .await?;
            changes.push(format!("role {}: granted {g}", spec.name));
        }
        Ok(changes)
    }

    /// Whether this registry's etcd identity may write units and targets (`unit/`,
    /// `job/`): false on a worker, whose user holds only its machine role. Asked
    /// without writing anything: etcd checks the permission of every operation of a
    /// txn whether or not its comparison holds, and this one's never does. An etcd
    /// without authentication allows everything.
    pub async fn may_write_units(&self) -> Result<bool, RegistryError> {
        let k = &self.keys;
        let never = Compare::version(k.units(), CompareOp::Less, 0);
        let probe = |prefix: String| TxnOp::put(format!("{prefix}.write-probe"), "", None);
        let txn = Txn::new()
            .when([never])
            .and_then([probe(k.units()), probe(k.jobs())]);
        match self
            .txn("check permission to write units", txn)
            .await
            .map_err(|e| e.denied(KeyClass::Units))
        {
            Ok(_) => Ok(true),
            Err(RegistryError::PermissionDenied { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The version of the etcd member that answers.
    pub async fn etcd_version(&self) -> Result<String, RegistryError> {
        Ok(self
            .call(
                "get etcd status",
                |mut c| async move { c.client.status().await },
            )
            .await?
            .version()
            .to_string())
    }

    /// The etcd users that exist.
    pub async fn etcd_users(&self) -> Result<BTreeSet<String>, RegistryError> {
        Ok(self
            .call("list etcd users", |mut c| async move {
                c.client.user_list().await
            })
            .await?
            .users()
            .iter()
            .cloned()
            .collect())
    }

    /// Creates user `name` with `password`.
    pub async fn add_etcd_user(&self, name: &str, password: &Secret) -> Result<(), RegistryError> {
        let (name, pw) = (name.to_string(), password.clone());
        self.call("add etcd user", |mut c| {
            let (name, pw) = (name.clone(), pw.expose().to_string());
            async move { c.client.user_add(name, pw, None).await }
        })
        .await?;
        Ok(())
    }

    /// Sets user `name`'s password.
    pub async fn set_etcd_password(
        &self,
        name: &str,
        password: &Secret,
    ) -> Result<(), RegistryError> {
        let (name, pw) = (name.to_string(), password.clone());
        self.call("change etcd user password", |mut c| {
            let (name, pw) = (name.clone(), pw.expose().to_string());
            async move { c.client.user_change_password(name, pw).await }
        })
        .await?;
        Ok(())
    }

    /// Makes user `name`'s roles exactly `roles` (grants missing ones, revokes others).
    pub async fn apply_user_roles(
        &self,
        name: &str,
        roles: &BTreeSet<String>,
    ) -> Result<Vec<String>, RegistryError> {
        let user = name.to_string();
        let have: BTreeSet<String> = self
            .call("get etcd user", |mut c| {
                let user = user.clone();
                async move { c.client.user_get(user).await }
            })
            .await?
            .roles()
            .iter()
            .cloned()
            .collect();
        let mut changes = Vec::new();
        for r in have.difference(roles) {
            let (user, role) = (user.clone(), r.clone());
            self.call("revoke etcd user role", |mut c| {
                let (user, role) = (user.clone(), role.clone());
                async move { c.client.user_revoke_role(user, role).await }
            })
            .await?;
            changes.push(format!("user {name}: revoked role {r}"));
        }
        for r in roles.difference(&have) {
            let (user, role) = (user.clone(), r.clone());
            self.call("grant etcd user role", |mut c| {
                let (user, role) = (user.clone(), role.clone());
                async move { c.client.user_grant_role(user, role).await }
            })
            .await?;
            changes.push(format!("user {name}: granted role {r}"));
        }
        Ok(changes)
    }

    /// Turns etcd's authentication on (a `root` user with the `root` role must exist).
    pub async fn enable_etcd_auth(&self) -> Result<(), RegistryError> {
        self.call("enable etcd authentication", |mut c| async move {
            c.client.auth_enable().await
        })
        .await?;
        Ok(())
    }

    /// Moves states written by earlier versions (`state/<unit>/<machine>`) to their
    /// machine's prefix (`machine-state/<machine>/<unit>`), keeping their lease so they
    /// still vanish with their agent. Each key moves in its own txn, guarded by its
    /// revision, so a concurrent writer or an expiring lease loses nothing: such a key
    /// is left for the next run. A state the machine already reports in the new layout
    /// wins over the old one, which is deleted. Returns how many keys were moved or
    /// deleted; a second run finds none.
    pub async fn migrate_legacy_states(&self) -> Result<usize, RegistryError> {
        let k = &self.keys;
        let old = self
            .get_prefix("list old states", k.legacy_states())
            .await?;
        let mut done = 0;
        for kv in old.kvs() {
            let Some((unit, machine)) = k.parse_legacy_state(kv.key()) else {
                tracing::warn!(key = %crate::error::visible(&String::from_utf8_lossy(kv.key())), "left a key under state/ that is not a state of an earlier version");
                continue;
            };
            let new = k.state(&unit, &machine);
            let unchanged = Compare::mod_revision(kv.key(), CompareOp::Equal, kv.mod_revision());
            let absent = Compare::create_revision(new.clone(), CompareOp::Equal, 0);
            let mut put_opts = PutOptions::new();
            if kv.lease() != 0 {
                put_opts = put_opts.with_lease(kv.lease());
            }
            let txn = Txn::new()
                .when([unchanged.clone(), absent])
                .and_then([
                    TxnOp::put(new.clone(), kv.value().to_vec(), Some(put_opts)),
                    TxnOp::delete(kv.key().to_vec(), None),
                ])
                .or_else([TxnOp::txn(
                    Txn::new()
                        .when([unchanged])
                        .and_then([TxnOp::delete(kv.key().to_vec(), None)]),
                )]);
            match self.txn("move an old state", txn).await {
                Ok(r) => {
                    let deleted_old = r.succeeded()
                        || r.op_responses()
                            .iter()
                            .any(|o| matches!(o, TxnOpResponse::Txn(t) if t.succeeded()));
                    done += usize::from(deleted_old);
                }
                // The lease expired since the read: etcd deleted the old key with it.
                Err(e) if e.is_lease_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_machine_role_covers_its_own_keys_only() {
        let k = Keys::new("/fleet/").unwrap();
        let a = MachineId::new("aaaa").unwrap();
        let role = machine_role(&k, &a);
        let writes: Vec<String> = role
            .grants
            .iter()
            .filter(|g| g.access != Access::Read)
            .map(|g| g.to_string())
            .collect();
        assert_eq!(
            writes,
            [
                "readwrite /fleet/machine-state/aaaa/*",
                "readwrite /fleet/machine/aaaa"
            ]
        );
        assert_eq!(prefix_end(b"/fleet/"), b"/fleet0");
        assert_eq!(version_confines_users("3.4.23"), Some(false));
        assert_eq!(version_confines_users("3.4.44"), Some(true));
        assert_eq!(version_confines_users("3.5.29"), Some(false));
        assert_eq!(version_confines_users("3.6.11"), Some(true));
        assert_eq!(version_confines_users("3.7.0"), Some(true));
        assert_eq!(version_confines_users("junk"), None);
        assert_eq!(
            machine_user_roles(&a, true, false),
            BTreeSet::from([ENGINE.to_string(), "fleet-machine-aaaa".to_string()])
        );
    }
}
