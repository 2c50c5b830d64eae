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
