//! Units and their desired states: what fleetctl submits, starts, stops and destroys.

use std::collections::BTreeMap;

use etcd_client::{Compare, CompareOp, DeleteOptions, Txn, TxnOp, TxnOpResponse};
use fleet_core::{TargetState, UnitFile, UnitName};

use crate::MAX_TXN_OPS;
use crate::codec;
use crate::decode;
use crate::error::RegistryError;
use crate::model::{CreateOutcome, Skipped, UnitRecord};
use crate::registry::{Registry, gets};

/// Unit bytes per `create_units` txn: below etcd's default `--max-request-bytes`
/// (1.5 MiB), so several units of up to 1 MiB each go in several txns.
const TXN_BYTES: usize = 1024 * 1024;

/// What `set_targets` did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetTargetsOutcome {
    /// Units that did not exist: their target was not written.
    pub missing: Vec<UnitName>,
    /// How many txns it took (⌈units / 127⌉), for tests and benchmarks; `None` where
    /// the caller cannot know (through the API, fleetd writes).
    pub txns: Option<usize>,
}

impl Registry {
    /// One unit with its target, read in one txn.
    pub async fn get_unit(&self, name: &UnitName) -> Result<Option<UnitRecord>, RegistryError> {
        let k = &self.keys;
        let txn = Txn::new().and_then([
            TxnOp::get(k.unit(name), None),
            TxnOp::get(k.job_target(name), None),
        ]);
        let resp = self.txn("get unit", txn).await?;
        let g = gets(&resp);
        let (Some(unit), Some(job)) = (g.first(), g.get(1)) else {
            return Ok(None);
        };
        decode::one_unit(k, unit.kvs(), job.kvs())
    }

    /// Submits a unit, fleet's create-only way: `unit/<n>` and `job/<n>/target =
    /// inactive` are written together iff the unit is absent; otherwise nothing is
    /// written and the outcome says whether the stored copy is the same.
    pub async fn create_unit(
        &self,
        name: &UnitName,
        file: &UnitFile,
    ) -> Result<CreateOutcome, RegistryError> {
        let units = [(name.clone(), file.clone())];
        let outcome = self.create_units(&units).await?.into_iter().next();
        outcome.ok_or_else(|| {
            RegistryError::corrupt(name.as_str().as_bytes(), "no outcome for the unit created")
        })
    }

    /// Many units with their targets in few round trips (64 units per txn), in the
    /// order asked; `None` for units that do not exist. fleetctl's batch path.
    pub async fn get_units(
        &self,
        names: &[UnitName],
    ) -> Result<Vec<Option<UnitRecord>>, RegistryError> {
        let (units, skipped) = self.get_units_skipping(names).await?;
        match skipped.into_iter().next() {
            Some(s) => Err(RegistryError::Corrupt {
                key: crate::error::visible(&s.key),
                reason: s.reason,
            }),
            None => Ok(units),
        }
    }

    /// [`Registry::get_units`] where a unit that cannot be decoded is `None` and named
    /// in the skipped list, so it does not hold up the others (the agent's loads).
    pub(crate) async fn get_units_skipping(
        &self,
        names: &[UnitName],
    ) -> Result<(Vec<Option<UnitRecord>>, Vec<Skipped>), RegistryError> {
        let k = &self.keys;
        let txns = names
            .chunks(MAX_TXN_OPS / 2)
            .map(|chunk| {
                Txn::new().and_then(
                    chunk
                        .iter()
                        .flat_map(|n| {
                            [
                                TxnOp::get(k.unit(n), None),
                                TxnOp::get(k.job_target(n), None),
                            ]
                        })
                        .collect::<Vec<_>>(),
                )
            })
            .collect();
        let mut out = Vec::with_capacity(names.len());
        let mut skipped = Vec::new();
        for resp in self.txns("get units", txns).await? {
            let g = gets(&resp);
            for pair in g.chunks(2) {
                let [unit, job] = pair else {
                    return Err(RegistryError::corrupt(b"get units", "short txn response"));
                };
                out.push(
                    decode::units(k, unit.kvs(), job.kvs(), &mut skipped)
                        .into_iter()
                        .next(),
                );
            }
        }
        Ok((out, skipped))
    }

    /// [`Registry::create_unit`] for many units in few txns: each unit is created by its
    /// own nested, guarded txn (63 per request), so one existing unit does not stop the
    /// others. Outcomes are in the order given; a name given twice is created once.
    pub async fn create_units(
        &self,
        units: &[(UnitName, UnitFile)],
    ) -> Result<Vec<CreateOutcome>, RegistryError> {
        self.create_units_with_target(units, TargetState::Inactive)
            .await
    }

    /// [`Registry::create_units`] with the units' first target `target`: `fleetctl
    /// start` of units not yet submitted writes each unit and its `launched` target in
    /// one guarded op, instead of creating it `inactive` and writing the target again.
    /// A unit that already exists is left alone (its target too): the caller sets the
    /// targets of those not [`CreateOutcome::Created`].
    pub async fn create_units_with_target(
        &self,
        units: &[(UnitName, UnitFile)],
        target: TargetState,
    ) -> Result<Vec<CreateOutcome>, RegistryError> {
        let k = &self.keys;
        let mut first: BTreeMap<&UnitName, usize> = BTreeMap::new();
        for (i, (n, _)) in units.iter().enumerate() {
            first.entry(n).or_insert(i);
        }
        let unique: Vec<usize> = first.values().copied().collect();
        let mut outcomes: BTreeMap<usize, CreateOutcome> = BTreeMap::new();
        // Every unit is checked before anything is written.
        let mut encoded = unique
            .iter()
            .map(|&i| codec::encode_unit_checked(&units[i].0, &units[i].1))
            .collect::<Result<Vec<_>, _>>()?;
        let hashes: Vec<_> = encoded.iter().map(|(_, h)| *h).collect();
        // Each nested txn writes two keys; keep every level within max-txn-ops, and each
        // request within etcd's request size limit (a unit may be 1 MiB).
        let mut chunks: Vec<&[usize]> = Vec::new();
        let (mut start, mut bytes) = (0, 0);
        for (j, (value, _)) in encoded.iter().enumerate() {
            if j > start && (j - start >= MAX_TXN_OPS / 2 - 1 || bytes + value.len() > TXN_BYTES) {
                chunks.push(&unique[start..j]);
                (start, bytes) = (j, 0);
            }
            bytes += value.len();
        }
        if start < unique.len() {
            chunks.push(&unique[start..]);
        }
        let mut values = encoded.iter_mut().map(|(v, _)| std::mem::take(v));
        let txns = chunks
            .iter()
            .map(|chunk| {
                let ops: Vec<TxnOp> = chunk
                    .iter()
                    .map(|&i| {
                        let name = &units[i].0;
                        let value = values.next().unwrap_or_default();
                        let unit_key = k.unit(name);
                        TxnOp::txn(
                            Txn::new()
                                .when([Compare::create_revision(
                                    unit_key.clone(),
                                    CompareOp::Equal,
                                    0,
                                )])
                                .and_then([
                                    TxnOp::put(unit_key.clone(), value, None),
                                    TxnOp::put(
                                        k.job_target(name),
                                        codec::encode_target(target),
                                        None,
                                    ),
                                ])
                                .or_else([TxnOp::get(unit_key, None)]),
                        )
                    })
                    .collect();
                Txn::new().and_then(ops)
            })
            .collect();
        let responses = self
            .txns("create units", txns)
            .await
            .map_err(|e| e.denied(crate::roles::KeyClass::Units))?;
        let nested = responses.iter().flat_map(|resp| resp.op_responses());
        for ((&i, hash), r) in unique.iter().zip(hashes).zip(nested) {
            let TxnOpResponse::Txn(r) = r else {
                return Err(RegistryError::corrupt(
                    b"create units",
                    "unexpected txn response",
                ));
            };
            let outcome = if r.succeeded() {
                CreateOutcome::Created
            } else {
                let existing = gets(&r)
                    .first()
                    .and_then(|g| g.kvs().first())
                    .map(|kv| codec::decode_unit_hash(kv.key(), kv.value()))
                    .transpose()?;
                match existing {
                    Some(existing) if existing != hash => CreateOutcome::Differs { existing },
                    _ => CreateOutcome::Identical,
                }
            };
            outcomes.insert(i, outcome);
        }
        Ok(units
            .iter()
            .map(|(n, _)| {
                first
                    .get(n)
                    .and_then(|i| outcomes.get(i))
                    .copied()
                    .unwrap_or(CreateOutcome::Identical)
            })
            .collect())
    }

    /// Overwrites a unit's text (creating it if absent) and resets its target to
    /// `inactive`, in one txn, so a changed unit is never started with a stale target.
    pub async fn replace_unit(
        &self,
        name: &UnitName,
        file: &UnitFile,
    ) -> Result<(), RegistryError> {
        let k = &self.keys;
        let (value, _) = codec::encode_unit_checked(name, file)?;
        let txn = Txn::new().and_then([
            TxnOp::put(k.unit(name), value, None),
            TxnOp::put(
                k.job_target(name),
                codec::encode_target(TargetState::Inactive),
                None,
            ),
        ]);
        self.txn("replace unit", txn)
            .await
            .map_err(|e| e.denied(crate::roles::KeyClass::Units))?;
        Ok(())
    }

    /// Sets desired states in txns of at most 127 guarded ops. Each op applies only if
    /// its unit exists (a nested txn comparing the unit's create revision), so a unit
    /// destroyed meanwhile never gets an orphan target. Later duplicates win.
    pub async fn set_targets(
        &self,
        targets: &[(UnitName, TargetState)],
    ) -> Result<SetTargetsOutcome, RegistryError> {
        let k = &self.keys;
        // etcd rejects a txn that writes one key twice.
        let dedup: BTreeMap<&UnitName, TargetState> =
            targets.iter().map(|(n, t)| (n, *t)).collect();
        let all: Vec<(&UnitName, TargetState)> = dedup.into_iter().collect();
        let mut out = SetTargetsOutcome::default();
        // etcd gives nested txns the outer txn's unused op budget: n nested txns of
        // one op each fit iff n + 1 <= max-txn-ops.
        let chunks: Vec<&[(&UnitName, TargetState)]> = all.chunks(MAX_TXN_OPS - 1).collect();
        let txns = chunks
            .iter()
            .map(|chunk| {
                let ops: Vec<TxnOp> = chunk
                    .iter()
                    .map(|(n, t)| {
                        TxnOp::txn(
                            Txn::new()
                                .when([Compare::create_revision(k.unit(n), CompareOp::Greater, 0)])
                                .and_then([TxnOp::put(
                                    k.job_target(n),
                                    codec::encode_target(*t),
                                    None,
                                )]),
                        )
                    })
                    .collect();
                Txn::new().and_then(ops)
            })
            .collect();
        let responses = self
            .txns("set targets", txns)
            .await
            .map_err(|e| e.denied(crate::roles::KeyClass::Units))?;
        out.txns = Some(responses.len());
        for (chunk, resp) in chunks.iter().zip(&responses) {
            for ((n, _), r) in chunk.iter().zip(resp.op_responses()) {
                if let TxnOpResponse::Txn(r) = r
                    && !r.succeeded()
                {
                    out.missing.push((*n).clone());
                }
            }
        }
        Ok(out)
    }

    /// Deletes a unit and its `job/<n>/` keys in one txn; returns whether the unit
    /// existed. The engine removes its placement and unplaced note when it sees this
    /// (only the engine writes those, fenced).
    pub async fn destroy_unit(&self, name: &UnitName) -> Result<bool, RegistryError> {
        let k = &self.keys;
        let txn = Txn::new().and_then([
            TxnOp::delete(k.unit(name), None),
            TxnOp::delete(k.job_dir(name), Some(DeleteOptions::new().with_prefix())),
        ]);
        let resp = self
            .txn("destroy unit", txn)
            .await
            .map_err(|e| e.denied(crate::roles::KeyClass::Units))?;
        Ok(matches!(
            resp.op_responses().first(),
            Some(TxnOpResponse::Delete(d)) if d.deleted() > 0
        ))
    }

    /// All units with their targets, sorted by name, read at one revision.
    pub async fn list_units(&self) -> Result<Vec<UnitRecord>, RegistryError> {
        let k = &self.keys;
        let (_, g) = self
            .get_prefixes("list units", vec![k.units(), k.jobs()])
            .await?;
        match (g.first(), g.get(1)) {
            (Some(u), Some(j)) => Ok(decode::units(k, u.kvs(), j.kvs(), &mut Vec::new())),
            _ => Ok(Vec::new()),
        }
    }
}
