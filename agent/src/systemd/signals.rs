//! systemd's signals turned into [`StateChanged`] hints.
//!
//! One task per subscription drains every signal stream continuously: zbus stops reading
//! the connection when a stream's queue is full, which would hang later method calls.
//! Hints are coalesced per unit while the receiver is slow, so draining never waits on it.

use std::collections::{BTreeSet, HashSet};
use std::num::NonZeroUsize;
use std::sync::PoisonError;
use std::time::Duration;

use fleet_core::UnitName;
use futures_util::StreamExt;
use futures_util::stream;
use tokio::sync::mpsc;

use super::proxy::ManagerProxy;

/// The set of units fleet owns on this machine (those in the units directory): signal
/// hints are filtered to it.
pub(crate) type KnownUnits = std::sync::Arc<std::sync::Mutex<HashSet<UnitName>>>;
use super::{StateChanged, SystemdError};

/// Capacity of the hint channel; beyond it hints wait (coalesced) in the task.
const HINT_CHANNEL: usize = 256;
/// Queue of the PropertiesChanged stream inside zbus (the task drains it continuously).
const PROPERTIES_QUEUE: usize = 1024;
/// Prefix of unit object paths.
const UNIT_PATH_PREFIX: &str = "/org/freedesktop/systemd1/unit/";

/// What a signal tells us.
enum Signal {
    /// Something about this unit (by name) changed.
    Unit(String),
    /// A daemon-reload finished: load states of all units may have changed.
    Reloaded,
    /// Nothing of interest.
    Ignored,
}

/// Subscribes to JobRemoved, Reloading and PropertiesChanged on unit objects, and spawns
/// the task feeding the returned channel. The task ends when the receiver is dropped or
/// the connection closes (the channel then closes too).
pub(crate) async fn spawn(
    conn: &zbus::Connection,
    manager: &ManagerProxy<'static>,
    known: KnownUnits,
    timeout: Duration,
) -> Result<mpsc::Receiver<StateChanged>, SystemdError> {
    let fail = |what: &str, e: String| SystemdError::Manager {
        op: "subscribe",
        message: format!("{what}: {e}"),
    };
    let timed_out = |what: &str| fail(what, format!("timed out after {timeout:?}"));

    let jobs = tokio::time::timeout(timeout, manager.receive_job_removed())
        .await
        .map_err(|_| timed_out("JobRemoved"))?
        .map_err(|e| fail("JobRemoved", e.to_string()))?
        .map(|signal| match signal.args() {
            Ok(args) => Signal::Unit(args.unit().clone()),
            Err(_) => Signal::Ignored,
        });
    let reloads = tokio::time::timeout(timeout, manager.receive_reloading())
        .await
        .map_err(|_| timed_out("Reloading"))?
        .map_err(|e| fail("Reloading", e.to_string()))?
        .map(|signal| match signal.args() {
            Ok(args) if !*args.active() => Signal::Reloaded,
            _ => Signal::Ignored,
        });
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .interface("org.freedesktop.DBus.Properties")
        .member("PropertiesChanged")
        .path_namespace("/org/freedesktop/systemd1/unit")
        .arg(0, "org.freedesktop.systemd1.Unit")
        .build()
        .map_err(|e| fail("PropertiesChanged match rule", e.to_string()))?;
    let properties = tokio::time::timeout(
        timeout,
        zbus::MessageStream::for_match_rule(rule, conn, NonZeroUsize::new(PROPERTIES_QUEUE)),
    )
    .await
    .map_err(|_| timed_out("PropertiesChanged"))?
    .map_err(|e| fail("PropertiesChanged", e.to_string()))?
    .map(|message| {
        let Ok(message) = message else {
            return Signal::Ignored;
        };
        let header = message.header();
        match header.path().and_then(|p| unit_name_from_path(p.as_str())) {
            Some(name) => Signal::Unit(name),
            None => Signal::Ignored,
        }
    });

    let signals = stream::select(jobs, stream::select(reloads, properties));
    let (tx, rx) = mpsc::channel(HINT_CHANNEL);
    tokio::spawn(forward(signals, known, tx));
    Ok(rx)
}

/// Drains `signals`, turning them into hints for fleet's units.
async fn forward(
    signals: impl stream::Stream<Item = Signal> + Send + 'static,
    known: KnownUnits,
    tx: mpsc::Sender<StateChanged>,
) {
    let mut signals = std::pin::pin!(signals);
    let mut pending: BTreeSet<UnitName> = BTreeSet::new();
    loop {
        tokio::select! {
            signal = signals.next() => {
                let Some(signal) = signal else {
                    tracing::warn!("systemd signal streams ended; no more state hints");
                    break;
                };
                let known = known.lock().unwrap_or_else(PoisonError::into_inner);
                collect(signal, &known, &mut pending);
            }
            permit = tx.reserve(), if !pending.is_empty() => {
                let Ok(permit) = permit else { break };
                if let Some(unit) = pending.pop_first() {
                    permit.send(StateChanged(unit));
                }
            }
            () = tx.closed(), if pending.is_empty() => break,
        }
    }
}

fn collect(signal: Signal, known: &HashSet<UnitName>, pending: &mut BTreeSet<UnitName>) {
    match signal {
        Signal::Unit(name) => {
            if let Ok(unit) = UnitName::parse(&name)
                && known.contains(&unit)
            {
                pending.insert(unit);
            }
        }
        Signal::Reloaded => pending.extend(known.iter().cloned()),
        Signal::Ignored => {}
    }
}

/// The unit name in a unit's object path: systemd escapes every byte that is not
/// `[A-Za-z0-9]` as `_xx` (lowercase hex), e.g. `foo_2eservice` is `foo.service`.
pub(crate) fn unit_name_from_path(path: &str) -> Option<String> {
    let escaped = path.strip_prefix(UNIT_PATH_PREFIX)?;
    let bytes = escaped.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'_' {
            let hex = escaped.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_unit_paths() {
        assert_eq!(
            unit_name_from_path("/org/freedesktop/systemd1/unit/foo_2eservice").as_deref(),
            Some("foo.service")
        );
        assert_eq!(
            unit_name_from_path("/org/freedesktop/systemd1/unit/web_40a_2d1_2eservice").as_deref(),
            Some("web@a-1.service")
        );
        assert_eq!(
            unit_name_from_path("/org/freedesktop/systemd1/unit/bad_2"),
            None
        );
        assert_eq!(unit_name_from_path("/org/freedesktop/systemd1/job/1"), None);
    }

    #[test]
    fn hints_only_fleet_units_and_all_after_reload() {
        let a = UnitName::parse("a.service").unwrap();
        let b = UnitName::parse("b.service").unwrap();
        let known: HashSet<UnitName> = [a.clone(), b.clone()].into_iter().collect();
        let mut pending = BTreeSet::new();
        collect(Signal::Unit("other.service".into()), &known, &mut pending);
        collect(Signal::Unit("a.service".into()), &known, &mut pending);
        collect(Signal::Unit("a.service".into()), &known, &mut pending);
        assert_eq!(pending.iter().collect::<Vec<_>>(), vec![&a]);
        collect(Signal::Reloaded, &known, &mut pending);
        assert_eq!(pending.len(), 2);
    }
}
