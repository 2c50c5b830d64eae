//! `fleetctl etcd-roles --namespace-user NAME=NS:ROLE`: etcd users confined to
//! namespaces (see `fleet_registry::ns_roles`), for people who use the etcd driver
//! with `--namespace`. Declarative like the rest of `etcd-roles`: a user named here
//! gets exactly the namespace roles given for it in this run (repeat the flag for
//! each namespace), plus `fleet-operator`/`fleet-viewer` when also named by
//! `--operator`/`--viewer`.

use std::collections::{BTreeMap, BTreeSet};

use clap::Args;
use fleet_core::Namespace;
use fleet_registry::ns_roles;
use fleet_registry::roles::RoleSpec;
use fleet_registry::{Keys, NsRole};

use crate::context::fail;

/// The `etcd-roles` flags for namespaces.
#[derive(Debug, Clone, Default, Args)]
pub struct NsRolesArgs {
    /// A person's etcd user with a role in one namespace (admin, user or viewer), as
    /// NAME=NAMESPACE:ROLE; repeat for more namespaces or people.
    #[arg(long = "namespace-user", value_name = "NAME=NS:ROLE")]
    pub namespace_user: Vec<String>,
}

/// The validated `--namespace-user` grants: each user's role per namespace.
#[derive(Debug, Default)]
pub struct NsPlan {
    users: BTreeMap<String, BTreeMap<Namespace, NsRole>>,
}

impl NsPlan {
    /// Parses every grant; bad input is refused before anything is changed.
    pub fn from_args(args: &NsRolesArgs) -> anyhow::Result<NsPlan> {
        let mut users: BTreeMap<String, BTreeMap<Namespace, NsRole>> = BTreeMap::new();
        for g in &args.namespace_user {
            let bad = || {
                fail(format!(
                    "invalid --namespace-user {g:?}: expected NAME=NAMESPACE:ROLE (admin, user or viewer)"
                ))
            };
            let (name, grant) = g.split_once('=').ok_or_else(bad)?;
            let (ns, role) = grant.split_once(':').ok_or_else(bad)?;
            let name = person(name.trim())?;
            let ns = Namespace::parse(ns.trim()).map_err(|e| fail(e.to_string()))?;
            if !ns_roles::has_roles(&ns) {
                return Err(fail(
                    "namespace default has no namespace roles: use --operator or --viewer",
                ));
            }
            let role = role.trim().parse::<NsRole>().map_err(fail)?;
            let earlier = users
                .entry(name.clone())
                .or_default()
                .insert(ns.clone(), role);
            if earlier.is_some_and(|r| r != role) {
                return Err(fail(format!(
                    "--namespace-user gives {name} two roles in namespace {ns}"
                )));
            }
        }
        Ok(NsPlan { users })
    }

    /// The namespace roles the named users need (each namespace's three roles, so
    /// that granting another role later finds it defined).
    pub fn role_specs(&self, keys: &Keys) -> Vec<RoleSpec> {
        let namespaces: BTreeSet<&Namespace> = self.users.values().flat_map(|g| g.keys()).collect();
        namespaces
            .into_iter()
            .flat_map(|ns| {
                [NsRole::Viewer, NsRole::User, NsRole::Admin]
                    .into_iter()
                    .filter_map(|r| ns_roles::ns_role(keys, ns, r))
            })
            .collect()
    }

    /// Adds each named user's namespace roles to `users` (name → exactly its roles).
    pub fn add_users(&self, users: &mut Vec<(String, BTreeSet<String>)>) {
        for (name, grants) in &self.users {
            let roles = grants.iter().map(|(ns, r)| ns_roles::role_name(ns, *r));
            match users.iter_mut().find(|(n, _)| n == name) {
                Some((_, have)) => have.extend(roles),
                None => users.push((name.clone(), roles.collect())),
            }
        }
    }
}

/// A person's etcd user name, as `--operator` takes it.
pub(super) fn person(n: &str) -> anyhow::Result<String> {
    let ok = !n.is_empty()
        && n.len() <= 64
        && !n.starts_with(['.', '-'])
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        && !n.starts_with("fleet-")
        && n != fleet_registry::roles::ROOT;
    if ok {
        Ok(n.to_string())
    } else {
        Err(fail(format!(
            "invalid user name {n:?}: use letters, digits, '.', '_' and '-', not root or fleet-*"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(grants: &[&str]) -> anyhow::Result<NsPlan> {
        NsPlan::from_args(&NsRolesArgs {
            namespace_user: grants.iter().map(|g| g.to_string()).collect(),
        })
    }

    #[test]
    fn grants_are_parsed_and_merged_per_user() {
        let p = plan(&["alice=a:admin", "alice=b:viewer", "bob=a:user"]).unwrap();
        let mut users = vec![(
            "alice".to_string(),
            BTreeSet::from(["fleet-viewer".to_string()]),
        )];
        p.add_users(&mut users);
        assert_eq!(
            users,
            [
                (
                    "alice".to_string(),
                    BTreeSet::from([
                        "fleet-ns-a-admin".to_string(),
                        "fleet-ns-b-viewer".to_string(),
                        "fleet-viewer".to_string()
                    ])
                ),
                (
                    "bob".to_string(),
                    BTreeSet::from(["fleet-ns-a-user".to_string()])
                )
            ]
        );
        let keys = Keys::new("/fleet").unwrap();
        assert_eq!(p.role_specs(&keys).len(), 6);
        for bad in [
            "alice",
            "alice=a",
            "alice=a:owner",
            "alice=default:admin",
            "root=a:admin",
            "alice=A:admin",
        ] {
            assert!(plan(&[bad]).is_err(), "{bad}");
        }
        assert!(plan(&["alice=a:admin", "alice=a:user"]).is_err());
    }
}
