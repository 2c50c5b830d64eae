//! Watching a key prefix from a revision, as typed events, surviving stream errors.
//!
//! Use: take a snapshot (or list) at revision R, then `watch_prefix(prefix, R + 1)`.
//! [`RegistryWatch::next`] reconnects on stream errors and resumes from the revision
//! after the last event it delivered, so no event is lost or repeated. If etcd has
//! compacted that history, it returns [`RegistryError::Compacted`]: the caller must
//! re-list (snapshot) and start a new watch from the new revision + 1.

use std::time::Duration;

use etcd_client::{EventType, WatchOptions, WatchStream};
use fleet_core::{TargetState, UnitHash};

use crate::backoff::Backoff;
use crate::codec;
use crate::error::RegistryError;
use crate::keys::{Keys, RegistryKey};
use crate::model::{MachineRecord, ScheduleEntry, UnitStateRecord};
use crate::registry::{Registry, revision};

/// Stream errors retried inside one `next()` call before reporting to the caller.
const QUIET_RETRIES: u32 = 3;
/// How often a watch checks that its member is still considered healthy.
const HEALTH_POLL: Duration = Duration::from_millis(100);
/// Reconnects: 100 ms doubling up to 5 s.
const BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));

/// A decoded value from a put event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A unit's text changed; only the hash is decoded (re-read the unit if needed).
    Unit(UnitHash),
    Target(TargetState),
    Machine(MachineRecord),
    /// A dynamic metadata value (empty: removed).
    MachineMetadata(String),
    Schedule(ScheduleEntry),
    State(UnitStateRecord),
    Unplaced(String),
    /// The election's keys changed hands.
    Leader,
    /// A machine was drained (a delete is an undrain).
    Drained,
}

/// One change under the watched prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    Put {
        revision: i64,
        key: RegistryKey,
        change: Change,
    },
    Delete {
        revision: i64,
        key: RegistryKey,
    },
    /// A value (or key) this version cannot decode; reported, not fatal.
    Corrupt {
        revision: i64,
        error: String,
    },
}

/// The events of one etcd watch response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchBatch {
    /// Revision of the response: everything up to it has been delivered.
    pub revision: i64,
    pub events: Vec<WatchEvent>,
}

/// A resumable watch on one prefix. Dropping it cancels the watch.
pub struct RegistryWatch {
    reg: Registry,
    prefix: String,
    next_revision: i64,
    /// The stream and the member it runs on.
    stream: Option<(usize, WatchStream)>,
    failures: u32,
    resumes: u64,
    compacted: Option<i64>,
}

impl std::fmt::Debug for RegistryWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryWatch")
            .field("prefix", &self.prefix)
            .field("next_revision", &self.next_revision)
            .finish()
    }
}

impl Registry {
    /// Watches every key starting with `prefix` (a full key prefix, e.g.
    /// `keys().machine_schedule(id)`), from `from_revision` (0: from now). Nothing is
    /// contacted until the first [`RegistryWatch::next`].
    pub fn watch_prefix(&self, prefix: impl Into<String>, from_revision: i64) -> RegistryWatch {
        RegistryWatch {
            reg: self.clone(),
            prefix: prefix.into(),
            next_revision: from_revision,
            stream: None,
            failures: 0,
            resumes: 0,
            compacted: None,
        }
    }
}

impl RegistryWatch {
    /// The revision the next event will be at or after (where a re-created watch
    /// would start).
    pub fn next_revision(&self) -> i64 {
        self.next_revision
    }

    /// How many times the stream was re-opened after it broke or its member failed
    /// (each time from the revision after the last event delivered).
    pub fn resumes(&self) -> u64 {
        self.resumes
    }

    /// The next batch of events. Cancel-safe: dropping the future loses nothing.
    /// Errors: `Compacted` (permanent: re-list), or `Timeout`/`Unreachable` after a
    /// few reconnect attempts (call again to keep trying, with backoff).
    pub async fn next(&mut self) -> Result<WatchBatch, RegistryError> {
        loop {
            let msg = self.next_response().await?;
            let events: Vec<WatchEvent> = msg
                .events()
                .iter()
                .filter_map(|ev| {
                    let kv = ev.kv()?;
                    decode_event(&self.reg.keys, ev.event_type(), kv)
                })
                .collect();
            if !events.is_empty() {
                return Ok(WatchBatch {
                    revision: revision(msg.header()),
                    events,
                });
            }
        }
    }

    /// The next events as etcd sent them (the engine's view keeps raw values and
    /// decodes them itself). Cancel-safe, errors as [`RegistryWatch::next`].
    pub(crate) async fn next_raw(&mut self) -> Result<Vec<etcd_client::Event>, RegistryError> {
        let msg = self.next_response().await?;
        Ok(msg.events().to_vec())
    }

    /// The next response carrying events; `next_revision` moves past them.
    async fn next_response(&mut self) -> Result<etcd_client::WatchResponse, RegistryError> {
        if let Some(compact_revision) = self.compacted {
            return Err(RegistryError::Compacted { compact_revision });
        }
        let mut quiet = 0;
        loop {
            if self.stream.is_none() {
                if self.failures > 0 {
                    tokio::time::sleep(BACKOFF.delay(self.failures)).await;
                }
                match self.open().await {
                    Ok(s) => self.stream = Some(s),
                    Err(e) => {
                        self.failures += 1;
                        return Err(e);
                    }
                }
            }
            let Some((member, stream)) = self.stream.as_mut() else {
                continue;
            };
            let member = *member;
            let pool = &self.reg.pool;
            // A member found unreachable by other calls (stopped, cut off) may leave
            // this stream silent rather than broken: move as soon as that is known.
            let abandoned = async {
                while !pool.should_leave(member) {
                    tokio::time::sleep(HEALTH_POLL).await;
                }
            };
            let received = tokio::select! {
                r = stream.message() => Some(r),
                () = abandoned => None,
            };
            let msg = match received {
                Some(Ok(Some(msg))) => msg,
                broken => {
                    self.stream = None;
                    self.resumes += 1;
                    let source = match broken {
                        Some(Err(e)) => e,
                        Some(_) => etcd_client::Error::WatchError("watch stream ended".into()),
                        None => {
                            tracing::debug!(prefix = %self.prefix, member = pool.url(member), "watch member unhealthy; resuming on another");
                            continue;
                        }
                    };
                    pool.mark_failed(member, &source);
                    self.failures += 1;
                    quiet += 1;
                    tracing::debug!(prefix = %self.prefix, error = %source, "watch broke; resuming");
                    if quiet > QUIET_RETRIES {
                        return Err(RegistryError::from_etcd(
                            "watch",
                            &self.reg.endpoints,
                            source,
                        ));
                    }
                    continue;
                }
            };
            if msg.compact_revision() > 0 {
                self.stream = None;
                self.compacted = Some(msg.compact_revision());
                return Err(RegistryError::Compacted {
                    compact_revision: msg.compact_revision(),
                });
            }
            if msg.canceled() {
                // Cancelled by the server: a member that lost its raft leader (we
                // require one) goes out of rotation and the watch resumes elsewhere;
                // another reason (e.g. auth) starts over on the same terms.
                let reason = msg.cancel_reason().to_string();
                tracing::debug!(prefix = %self.prefix, reason, "watch cancelled by etcd; resuming");
                let no_leader = reason.contains("no leader");
                if no_leader {
                    self.reg.pool.mark_failed(member, &reason);
                }
                self.stream = None;
                self.resumes += 1;
                self.failures += 1;
                quiet += 1;
                if quiet > QUIET_RETRIES {
                    let source = etcd_client::Error::WatchError(reason);
                    return Err(if no_leader {
                        RegistryError::Unreachable {
                            endpoints: self.reg.endpoints.to_string(),
                            source,
                        }
                    } else {
                        RegistryError::Etcd {
                            op: "watch",
                            source,
                        }
                    });
                }
                continue;
            }
            self.failures = 0;
            let rev = revision(msg.header());
            if msg.events().is_empty() {
                // Created or progress notification: all before `rev` has been seen.
                if !msg.created() && rev > 0 {
                    self.next_revision = self.next_revision.max(rev + 1);
                }
                continue;
            }
            for ev in msg.events() {
                if let Some(kv) = ev.kv() {
                    self.next_revision = self.next_revision.max(kv.mod_revision() + 1);
                }
            }
            return Ok(msg);
        }
    }

    async fn open(&self) -> Result<(usize, WatchStream), RegistryError> {
        let mut opts = WatchOptions::new().with_prefix().with_progress_notify();
        if self.next_revision > 0 {
            opts = opts.with_start_revision(self.next_revision);
        }
        let (member, stream) = self
            .reg
            .pool
            .call_on("watch", |mut c| {
                let (prefix, opts) = (self.prefix.clone(), opts.clone());
                async move { c.watch.watch(prefix, Some(opts)).await }
            })
            .await?;
        Ok((member, stream))
    }
}

fn decode_event(keys: &Keys, ty: EventType, kv: &etcd_client::KeyValue) -> Option<WatchEvent> {
    let revision = kv.mod_revision();
    let corrupt = |e: RegistryError| WatchEvent::Corrupt {
        revision,
        error: e.to_string(),
    };
    let key = match keys.parse(kv.key()) {
        Ok(Some(k)) => k,
        Ok(None) => return None,
        Err(e) => return Some(corrupt(e)),
    };
    if ty == EventType::Delete {
        return Some(WatchEvent::Delete { revision, key });
    }
    let (k, v) = (kv.key(), kv.value());
    let change = match &key {
        RegistryKey::Unit(_) => codec::decode_unit_hash(k, v).map(Change::Unit),
        RegistryKey::JobTarget(_) => codec::decode_target(k, v).map(Change::Target),
        RegistryKey::Machine(id) => codec::decode_machine(k, id.clone(), v).map(Change::Machine),
        RegistryKey::MachineMetadata(..) => {
            codec::decode_metadata(k, v).map(Change::MachineMetadata)
        }
        RegistryKey::Schedule(m, n) => {
            codec::decode_schedule(k, m.clone(), n.clone(), v).map(Change::Schedule)
        }
        RegistryKey::State(n, m) => {
            codec::decode_state(k, n.clone(), m.clone(), v).map(Change::State)
        }
        RegistryKey::Unplaced(_) => Ok(Change::Unplaced(codec::decode_unplaced(v))),
        RegistryKey::Leader => Ok(Change::Leader),
        RegistryKey::Drain(_) => Ok(Change::Drained),
    };
    Some(match change {
        Ok(change) => WatchEvent::Put {
            revision,
            key,
            change,
        },
        Err(e) => corrupt(e),
    })
}
