//! Namespaces in etcd's own permissions: the etcd roles that confine a person who uses
//! the etcd driver (`fleetctl --driver=etcd --namespace NS`) to one namespace, as the
//! API confines a registered person (see `namespaces`). Applied with
//! `fleetctl etcd-roles --namespace-user NAME=NS:ROLE`.
//!
//! | role | may write | may read |
//! |---|---|---|
//! | `fleet-ns-<ns>-viewer` | nothing | the namespace's units, targets and unplaced notes; machines, schedule, states, drains, namespaces |
//! | `fleet-ns-<ns>-user` | targets (`job/<ns>:`): start, stop, load, unload | as viewer |
//! | `fleet-ns-<ns>-admin` | units and targets (`unit/<ns>:`, `job/<ns>:`): also create and destroy | as viewer |
//!
//! Other namespaces' unit files and targets are neither readable nor writable. States
//! and the schedule are keyed by machine first (`machine-state/<id>/<ns>:...`), which
//! etcd cannot grant per namespace without a grant per machine: a namespace's people
//! read every namespace's unit states and placements (names, machine and active
//! state), never their unit files. `default` has no namespace roles: its units are
//! the whole `unit/` range (the cluster roles `fleet-operator`/`fleet-viewer`).

use std::collections::BTreeSet;

use fleet_core::Namespace;

use crate::keys::Keys;
use crate::namespaces::NsRole;
use crate::roles::{Access, Grant, RoleSpec};

/// The etcd role holding `role`'s rights in `ns`.
pub fn role_name(ns: &Namespace, role: NsRole) -> String {
    format!("fleet-ns-{ns}-{role}")
}

/// Whether `ns` can have etcd roles: every namespace but `default`.
pub fn has_roles(ns: &Namespace) -> bool {
    !ns.is_default()
}

/// The role for `role` in `ns` (`None` for `default`, see the module doc).
pub fn ns_role(keys: &Keys, ns: &Namespace, role: NsRole) -> Option<RoleSpec> {
    if !has_roles(ns) {
        return None;
    }
    let [units, jobs, unplaced] = keys.ns_prefixes(ns);
    let read = |p: String| Grant::prefix(Access::Read, p);
    let mut grants: BTreeSet<Grant> = [
        keys.machines(),
        keys.schedules(),
        keys.states(),
        keys.drains(),
        keys.namespaces(),
        unplaced,
    ]
    .into_iter()
    .map(read)
    .collect();
    let (units_access, jobs_access) = match role {
        NsRole::Viewer => (Access::Read, Access::Read),
        NsRole::User => (Access::Read, Access::ReadWrite),
        NsRole::Admin => (Access::ReadWrite, Access::ReadWrite),
    };
    grants.insert(Grant::prefix(units_access, units));
    grants.insert(Grant::prefix(jobs_access, jobs));
    Some(RoleSpec {
        name: role_name(ns, role),
        grants,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_cover_their_namespace_only() {
        let k = Keys::new("/fleet").unwrap();
        let a = Namespace::parse("a").unwrap();
        assert!(ns_role(&k, &Namespace::parse("default").unwrap(), NsRole::Admin).is_none());
        let writes = |r: NsRole| -> Vec<String> {
            ns_role(&k, &a, r)
                .unwrap()
                .grants
                .iter()
                .filter(|g| g.access != Access::Read)
                .map(|g| g.to_string())
                .collect()
        };
        assert!(writes(NsRole::Viewer).is_empty());
        assert_eq!(writes(NsRole::User), ["readwrite /fleet/job/a:*"]);
        assert_eq!(
            writes(NsRole::Admin),
            ["readwrite /fleet/job/a:*", "readwrite /fleet/unit/a:*"]
        );
        let admin = ns_role(&k, &a, NsRole::Admin).unwrap();
        assert_eq!(admin.name, "fleet-ns-a-admin");
        // Nothing reads all units: another namespace's files stay out of reach.
        assert!(
            admin.grants.iter().all(|g| g.key != b"/fleet/unit/"
                && g.key != b"/fleet/job/"
                && g.key != b"/fleet/")
        );
    }
}
