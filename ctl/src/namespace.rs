//! `fleetctl --namespace NS`: the cluster as seen from one namespace. Names given by the
//! user are qualified (`web.service` → `a:web.service`), names read back are shown as
//! the namespace knows them, and reads of the whole cluster keep only the namespace's
//! units. In `default` with no other namespace, every call passes through unchanged.

use std::collections::BTreeSet;
use std::sync::Arc;

use fleet_core::{Machine, MachineId, Namespace, Namespaces, TargetState, UnitFile, UnitName};
use fleet_registry::{
    Change, ClusterSnapshot, CreateOutcome, Listed, NsRole, RegistryError, RegistryKey,
    SetTargetsOutcome, UnitRecord, UnitView, WatchBatch, WatchEvent,
};
use tokio::sync::OnceCell;

use crate::client::{ClientError, Cluster, ClusterRegistry, Forwarding, Op, StateWatch};
use fleet_api::ApiClient;

/// One namespace's view of the cluster.
pub struct Namespaced {
    inner: ClusterRegistry,
    ns: Namespace,
    /// Read once, on first need.
    known: OnceCell<Namespaces>,
}

/// A refusal worded for users: the namespace does not exist.
pub fn no_such_namespace(ns: &Namespace) -> ClientError {
    ClientError::Namespace(format!(
        "namespace {ns} does not exist (fleetctl namespace list)"
    ))
}

impl Namespaced {
    pub fn new(inner: ClusterRegistry, ns: Namespace) -> Namespaced {
        Namespaced {
            inner,
            ns,
            known: OnceCell::new(),
        }
    }

    /// The namespaces that exist; a namespace other than `default` must be one of them.
    async fn known(&self) -> Result<&Namespaces, ClientError> {
        let known = self
            .known
            .get_or_try_init(|| async {
                match self.inner.namespaces().await {
                    // In `default`, namespaces that cannot be read (an older fleetd, an
                    // etcd role without read on `namespace/`) leave fleet's view as it was.
                    Err(e) if self.ns.is_default() => {
                        tracing::debug!("cannot read namespaces: {e}");
                        Ok(Namespaces::default())
                    }
                    other => other,
                }
            })
            .await?;
        if !known.contains(&self.ns) {
            return Err(no_such_namespace(&self.ns));
        }
        Ok(known)
    }

    /// `read` (of the whole cluster) with only this namespace's units kept, once the
    /// namespace is known to exist.
    fn filtered<'a>(&'a self, read: Op<'a, ClusterSnapshot>) -> Op<'a, ClusterSnapshot> {
        Box::pin(async move {
            let known = self.known().await?.clone();
            let mut snap = read.await.map_err(|e| self.denied(e, NsRole::Viewer))?;
            if !known.is_empty() {
                filter_snapshot(&mut snap, &known, &self.ns);
            }
            Ok(snap)
        })
    }

    /// The stored name of a name in this namespace.
    pub fn qualify(&self, name: &UnitName) -> Result<UnitName, ClientError> {
        self.ns
            .qualify(name)
            .map_err(|e| ClientError::Namespace(e.to_string()))
    }

    async fn qualify_all(&self, names: &[UnitName]) -> Result<Vec<UnitName>, ClientError> {
        // A default name with `:` may belong to a namespace: only then is it looked up.
        if !self.ns.is_default()
            || names
                .iter()
                .any(|n| n.as_str().contains(fleet_core::namespace::SEPARATOR))
        {
            let known = self.known().await?;
            if let Some(n) = names
                .iter()
                .find(|n| self.ns.is_default() && !known.split(n).0.is_default())
            {
                return Err(ClientError::Namespace(format!(
                    "{n} names a unit of namespace {}: use --namespace {}",
                    known.split(n).0,
                    known.split(n).0
                )));
            }
        }
        names.iter().map(|n| self.qualify(n)).collect()
    }

    /// etcd's "permission denied" on this namespace's keys (the etcd driver, a user
    /// confined by `fleet_registry::ns_roles`) as one line naming the role it takes.
    fn denied(&self, e: ClientError, needs: NsRole) -> ClientError {
        let refused = match &e {
            ClientError::Registry(RegistryError::PermissionDenied { .. }) => true,
            ClientError::Registry(r) => {
                fleet_registry::auth_refusal(r).is_some_and(|a| !a.credentials)
            }
            _ => false,
        };
        if !refused || self.ns.is_default() {
            return e;
        }
        ClientError::Namespace(format!(
            "no access to namespace {ns}: etcd denied this user; it takes the etcd role {role} or more (fleetctl etcd-roles --namespace-user NAME={ns}:{needs})",
            ns = self.ns,
            role = fleet_registry::ns_roles::role_name(&self.ns, needs),
        ))
    }

    fn strip_record(&self, mut r: UnitRecord) -> UnitRecord {
        if let Some(local) = self.ns_local_unchecked(&r.name) {
            r.name = local;
        }
        r
    }

    /// The name without this namespace's prefix (for names we qualified ourselves).
    fn ns_local_unchecked(&self, stored: &UnitName) -> Option<UnitName> {
        let prefix = self.ns.name_prefix();
        if prefix.is_empty() {
            return None;
        }
        UnitName::parse(stored.as_str().strip_prefix(&prefix)?).ok()
    }
}

/// Keeps only `ns`'s units in a snapshot, under their names there.
pub fn filter_snapshot(snap: &mut ClusterSnapshot, known: &Namespaces, ns: &Namespace) {
    let local = |n: &UnitName| known.local_in(ns, n);
    snap.units.retain_mut(|u| match local(&u.name) {
        Some(l) => {
            u.name = l;
            true
        }
        None => false,
    });
    snap.schedule.retain_mut(|e| match local(&e.unit) {
        Some(l) => {
            e.unit = l;
            true
        }
        None => false,
    });
    snap.states.retain_mut(|s| match local(&s.unit) {
        Some(l) => {
            s.unit = l;
            true
        }
        None => false,
    });
    snap.unplaced = std::mem::take(&mut snap.unplaced)
        .into_iter()
        .filter_map(|(u, why)| Some((local(&u)?, why)))
        .collect();
}

impl Cluster for Namespaced {
    fn get_unit<'a>(&'a self, name: &'a UnitName) -> Op<'a, Option<UnitRecord>> {
        Box::pin(async move {
            let q = self.qualify_all(std::slice::from_ref(name)).await?;
            let r =
                (self.inner.get_unit(&q[0]).await).map_err(|e| self.denied(e, NsRole::Viewer))?;
            Ok(r.map(|r| self.strip_record(r)))
        })
    }
    fn get_units<'a>(&'a self, names: &'a [UnitName]) -> Op<'a, Vec<Option<UnitRecord>>> {
        Box::pin(async move {
            let q = self.qualify_all(names).await?;
            let rs =
                (self.inner.get_units(&q).await).map_err(|e| self.denied(e, NsRole::Viewer))?;
            Ok(rs
                .into_iter()
                .map(|r| r.map(|r| self.strip_record(r)))
                .collect())
        })
    }
    fn create_units<'a>(
        &'a self,
        units: &'a [(UnitName, UnitFile)],
        target: TargetState,
    ) -> Op<'a, Vec<CreateOutcome>> {
        Box::pin(async move {
            let names: Vec<UnitName> = units.iter().map(|(n, _)| n.clone()).collect();
            let q = self.qualify_all(&names).await?;
            let units: Vec<(UnitName, UnitFile)> = q
                .into_iter()
                .zip(units.iter().map(|(_, f)| f.clone()))
                .collect();
            (self.inner.create_units(&units, target).await)
                .map_err(|e| self.denied(e, NsRole::Admin))
        })
    }
    fn replace_unit<'a>(&'a self, name: &'a UnitName, file: &'a UnitFile) -> Op<'a, ()> {
        Box::pin(async move {
            let q = self.qualify_all(std::slice::from_ref(name)).await?;
            (self.inner.replace_unit(&q[0], file).await).map_err(|e| self.denied(e, NsRole::Admin))
        })
    }
    fn set_targets<'a>(
        &'a self,
        targets: &'a [(UnitName, TargetState)],
    ) -> Op<'a, SetTargetsOutcome> {
        Box::pin(async move {
            let names: Vec<UnitName> = targets.iter().map(|(n, _)| n.clone()).collect();
            let q = self.qualify_all(&names).await?;
            let targets: Vec<(UnitName, TargetState)> =
                q.into_iter().zip(targets.iter().map(|(_, t)| *t)).collect();
            let mut out = (self.inner.set_targets(&targets).await)
                .map_err(|e| self.denied(e, NsRole::User))?;
            for n in &mut out.missing {
                if let Some(l) = self.ns_local_unchecked(n) {
                    *n = l;
                }
            }
            Ok(out)
        })
    }
    fn destroy_units<'a>(&'a self, names: &'a [UnitName]) -> Op<'a, Vec<bool>> {
        Box::pin(async move {
            let q = self.qualify_all(names).await?;
            (self.inner.destroy_units(&q).await).map_err(|e| self.denied(e, NsRole::Admin))
        })
    }
    fn unit_views<'a>(&'a self, names: &'a [UnitName]) -> Op<'a, (i64, Vec<Option<UnitView>>)> {
        Box::pin(async move {
            let q = self.qualify_all(names).await?;
            let (rev, views) =
                (self.inner.unit_views(&q).await).map_err(|e| self.denied(e, NsRole::Viewer))?;
            let views = views
                .into_iter()
                .map(|v| {
                    v.map(|mut v| {
                        v.unit = self.strip_record(v.unit);
                        for s in &mut v.states {
                            if let Some(l) = self.ns_local_unchecked(&s.unit) {
                                s.unit = l;
                            }
                        }
                        v
                    })
                })
                .collect();
            Ok((rev, views))
        })
    }
    fn snapshot(&self) -> Op<'_, ClusterSnapshot> {
        self.filtered(self.inner.snapshot_in(&self.ns))
    }
    fn states_snapshot(&self) -> Op<'_, ClusterSnapshot> {
        self.filtered(self.inner.states_snapshot_in(&self.ns))
    }
    fn list_machines(&self) -> Op<'_, Listed<Machine>> {
        self.inner.list_machines()
    }
    fn watch_states(&self, from_revision: i64) -> Op<'_, StateWatch> {
        Box::pin(async move {
            let known = self.known().await?.clone();
            let inner = self.inner.watch_states(from_revision).await?;
            if known.is_empty() {
                return Ok(inner);
            }
            Ok(StateWatch::Namespaced {
                inner: Box::new(inner),
                known: Arc::new(known),
                ns: self.ns.clone(),
            })
        })
    }
    fn api_for<'a>(&'a self, machine: &'a MachineId, how: &'a Forwarding) -> Op<'a, ApiClient> {
        self.inner.api_for(machine, how)
    }
    fn drain_machine<'a>(&'a self, machine: &'a MachineId) -> Op<'a, bool> {
        self.inner.drain_machine(machine)
    }
    fn undrain_machine<'a>(&'a self, machine: &'a MachineId) -> Op<'a, bool> {
        self.inner.undrain_machine(machine)
    }
    fn drained_machines(&self) -> Op<'_, BTreeSet<MachineId>> {
        self.inner.drained_machines()
    }
    fn namespaces(&self) -> Op<'_, Namespaces> {
        Box::pin(async move { Ok(self.known().await?.clone()) })
    }
}

/// Keeps the events about `ns`'s units, under their names there.
pub fn filter_batch(batch: WatchBatch, known: &Namespaces, ns: &Namespace) -> WatchBatch {
    let local = |n: &UnitName| known.local_in(ns, n);
    let events = batch
        .events
        .into_iter()
        .filter_map(|ev| match ev {
            WatchEvent::Put {
                revision,
                key: RegistryKey::State(u, m),
                change: Change::State(mut s),
            } => {
                let l = local(&u)?;
                s.unit = l.clone();
                Some(WatchEvent::Put {
                    revision,
                    key: RegistryKey::State(l, m),
                    change: Change::State(s),
                })
            }
            WatchEvent::Delete {
                revision,
                key: RegistryKey::State(u, m),
            } => Some(WatchEvent::Delete {
                revision,
                key: RegistryKey::State(local(&u)?, m),
            }),
            other => Some(other),
        })
        .collect();
    WatchBatch {
        revision: batch.revision,
        events,
    }
}
