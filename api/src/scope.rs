//! Namespaces on the API (issue 17): a caller who is a registered person (the CN of a
//! client certificate, or the user of a bearer token, with a `user/<name>` record) acts
//! in one namespace, named by the `fleet-namespace` request header (`default` without
//! it; HTTP API v1 is always `default`). `auth::check` decides whether the person's role
//! there allows the call and attaches a [`Scope`]; the service then touches only that
//! namespace's units: names outside it are refused, listings keep only its units.

use fleet_core::{Namespace, Namespaces, UnitName};
use fleet_registry::ClusterSnapshot;
use tonic::Status;

/// The gRPC metadata key naming the namespace a call acts in.
pub const NAMESPACE_HEADER: &str = "fleet-namespace";

/// The namespace a person's call is confined to.
#[derive(Clone, Debug)]
pub(crate) struct Scope {
    pub ns: Namespace,
    pub known: Namespaces,
    pub user: String,
    /// The person's role in `ns`: HTTP v1's PUT needs admin only when it creates.
    pub role: fleet_registry::NsRole,
}

impl Scope {
    /// The scope `auth::check` attached to a gRPC request, if its caller is a person.
    pub fn of<T>(req: &tonic::Request<T>) -> Option<Scope> {
        req.extensions().get::<Scope>().cloned()
    }

    pub fn keeps(&self, stored: &UnitName) -> bool {
        self.known.split(stored).0 == self.ns
    }

    /// Refuses a call naming a unit of another namespace (a name that is not a valid
    /// unit name is left to the handler's own validation).
    pub fn check<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Result<(), Status> {
        for n in names {
            if let Ok(name) = UnitName::parse(n)
                && !self.keeps(&name)
            {
                return Err(Status::permission_denied(format!(
                    "no access: unit {name} is not in namespace {} (user {})",
                    self.ns, self.user
                )));
            }
        }
        Ok(())
    }

    /// Keeps only the namespace's units (under their stored names).
    pub fn filter(&self, snap: &mut ClusterSnapshot) {
        snap.units.retain(|u| self.keeps(&u.name));
        snap.schedule.retain(|e| self.keeps(&e.unit));
        snap.states.retain(|s| self.keeps(&s.unit));
        snap.unplaced.retain(|u, _| self.keeps(u));
    }
}

/// Refuses names outside the caller's namespace; nothing to check for other callers.
pub(crate) fn confine<'a, T>(
    req: &tonic::Request<T>,
    names: impl IntoIterator<Item = &'a str>,
) -> Result<(), Status> {
    match req.extensions().get::<Scope>() {
        Some(scope) => scope.check(names),
        None => Ok(()),
    }
}

/// [`confine`] for calls that change units, which also holds the rule for callers
/// with a cluster-wide role (a certificate's organization, a token's role, a unix
/// peer) and no person record: below admin they write the `default` namespace only,
/// so a qualified name (`a:web.service`) cannot bypass namespace `a`'s rights. People
/// act in a namespace with its rights (`fleetctl --namespace a`); admin writes any.
pub(crate) async fn confine_write<'a, T>(
    req: &tonic::Request<T>,
    people: &fleet_registry::PeopleView,
    names: impl IntoIterator<Item = &'a str>,
) -> Result<(), Status> {
    if let Some(scope) = req.extensions().get::<Scope>() {
        return scope.check(names);
    }
    let Some(caller) = req.extensions().get::<crate::auth::Caller>() else {
        return Ok(());
    };
    if caller.role >= crate::auth::Role::Admin {
        return Ok(());
    }
    let qualified: Vec<UnitName> = names
        .into_iter()
        .filter(|n| n.contains(fleet_core::namespace::SEPARATOR))
        .filter_map(|n| UnitName::parse(n).ok())
        .collect();
    if qualified.is_empty() {
        return Ok(());
    }
    let known = people
        .namespaces()
        .await
        .map_err(|e| Status::unavailable(format!("cannot read namespaces: {e}")))?;
    for name in qualified {
        let (ns, _) = known.split(&name);
        if !ns.is_default() {
            return Err(Status::permission_denied(format!(
                "no access: unit {name} is in namespace {ns}, and role {} changes units of namespace default only (act in {ns} as a user with a role there, or as admin)",
                caller.role
            )));
        }
    }
    Ok(())
}
