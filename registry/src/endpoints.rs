//! The connections to etcd's members and the failover every call goes through.
//!
//! etcd-client's own channel balances over all endpoints and keeps sending requests
//! to a dead one (its balancer does not evict a member that refuses connections), so a
//! 3-member cluster with one member down failed a share of all calls. Instead there is
//! one client per member, made on first use. A call goes to the first healthy member in
//! configuration order (CoreOS lists its local member first); a member that fails at the
//! connection level, or does not answer within the attempt timeout while another does,
//! is marked unhealthy and probed in the background (a cheap Status call, with
//! backoff), never on a caller's time. Calls skip unhealthy members while a healthy one
//! is left, and try them as a last resort.
//!
//! Retries: a call that is safe to repeat is re-sent to the next member when its
//! member fails, and hedged (also sent to the next member, first answer wins) when its
//! member has not answered within the attempt timeout, round after round, all within
//! the caller's request timeout. Every registry write is safe to repeat (puts of the same value, deletes,
//! guarded creates and fenced schedule writes) except destroying a unit, whose answer
//! ("existed") would be wrong the second time: that one is re-sent only when the
//! failure proves it never left this host (connection refused).
//!
//! Overload: a request etcd refuses as "too many requests" was never proposed, so any
//! call, that one included, is sent again to the same member after a backoff.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, KvClient, WatchClient};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::error::{RegistryError, is_connection_error};

/// Responses larger than tonic's 4 MiB default occur with thousands of units; etcd
/// itself sends up to 2 GiB.
const MAX_RESPONSE_BYTES: usize = 512 * 1024 * 1024;

/// Probes of an unhealthy member: 200 ms doubling up to 5 s.
const PROBE_BACKOFF: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));

/// Pauses between rounds over all members: 50 ms doubling up to 500 ms.
const ROUND_BACKOFF: Backoff = Backoff::new(Duration::from_millis(50), Duration::from_millis(500));

/// Pauses before sending again a request etcd refused as "too many requests": 100 ms
/// doubling up to 1 s. etcd refuses before proposing, when its apply is 5,000 entries
/// behind its commits, so any call may be sent again; the pause sheds load at its
/// source rather than failing the caller (a submission of thousands of units).
const OVERLOAD_BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));

/// Operations not safe to send twice (see the module documentation).
const AT_MOST_ONCE: &[&str] = &[
    "destroy unit",
    "destroy units",
    "drain machine",
    "undrain machine",
    "revoke token",
];

/// One member's client (a lazily connecting channel to that member only).
#[derive(Clone)]
pub(crate) struct Conn {
    pub(crate) client: Client,
    pub(crate) kv: KvClient,
    /// Watches, whose responses grow as large as reads when a watcher catches up.
    pub(crate) watch: WatchClient,
}

struct Member {
    url: String,
    conn: OnceCell<Conn>,
    healthy: AtomicBool,
    probing: AtomicBool,
    /// When a call on this member last succeeded (milliseconds since the pool's
    /// epoch; 0: never): a member still serving calls is slow, not gone.
    last_answer: AtomicU64,
}

/// Every member of the cluster, with its health.
pub(crate) struct Pool {
    members: Vec<Member>,
    epoch: Instant,
    opts: ConnectOptions,
    /// Bound on the whole call (the caller's request timeout).
    pub(crate) timeout: Duration,
    /// After this long without an answer a safe call is also sent to the next member.
    pub(crate) attempt_timeout: Duration,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field(
                "members",
                &self.members.iter().map(|m| &m.url).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Pool {
    pub(crate) fn new(urls: &[String], opts: ConnectOptions, timeout: Duration) -> Arc<Pool> {
        Arc::new(Pool {
            members: urls
                .iter()
                .map(|u| Member {
                    url: u.clone(),
                    conn: OnceCell::new(),
                    healthy: AtomicBool::new(true),
                    probing: AtomicBool::new(false),
                    last_answer: AtomicU64::new(0),
                })
                .collect(),
            epoch: Instant::now(),
            opts,
            timeout,
            attempt_timeout: attempt_timeout(timeout, urls.len()),
        })
    }

    pub(crate) fn url(&self, idx: usize) -> &str {
        self.members.get(idx).map_or("", |m| m.url.as_str())
    }

    /// Whether member `idx` is currently considered reachable.
    pub(crate) fn is_healthy(&self, idx: usize) -> bool {
        self.members
            .get(idx)
            .is_some_and(|m| m.healthy.load(Ordering::Relaxed))
    }

    /// Whether a stream on member `idx` should move: that member failed and another
    /// is healthy. (With no healthy alternative a stream stays until it breaks, or it
    /// would be re-opened on the same member over and over.)
    pub(crate) fn should_leave(&self, idx: usize) -> bool {
        !self.is_healthy(idx) && (0..self.members.len()).any(|i| i != idx && self.is_healthy(i))
    }

    /// The client of member `idx`, made on first use (with authentication, that first
    /// use fetches a token).
    pub(crate) async fn conn(&self, idx: usize) -> Result<Conn, etcd_client::Error> {
        let Some(m) = self.members.get(idx) else {
            return Err(etcd_client::Error::InvalidArgs(format!(
                "no etcd member {idx}"
            )));
        };
        m.conn
            .get_or_try_init(|| async {
                let client = Client::connect([m.url.as_str()], Some(self.opts.clone())).await?;
                let kv = client
                    .kv_client()
                    .max_decoding_message_size(MAX_RESPONSE_BYTES);
                let watch = client
                    .watch_client()
                    .max_decoding_message_size(MAX_RESPONSE_BYTES);
                Ok(Conn { client, kv, watch })
            })
            .await
            .cloned()
    }

    /// A call on member `idx` succeeded (or a lease renewal on its stream).
    pub(crate) fn answered(&self, idx: usize) {
        if let Some(m) = self.members.get(idx) {
            let ms = self.epoch.elapsed().as_millis().max(1) as u64;
            m.last_answer.fetch_max(ms, Ordering::Relaxed);
        }
    }

    /// Whether member `idx` served some call within the attempt timeout. Such a
    /// member is busy, not gone: a call waiting on it is left there (not hedged to
    /// another member, and the member not marked failed), because under load a
    /// hedge doubles the work of a member that is already behind and moves every
    /// stream off it, while a member stalled behind a dead raft leader or cut off
    /// serves nothing and is still left after the attempt timeout.
    pub(crate) fn progressing(&self, idx: usize) -> bool {
        let Some(m) = self.members.get(idx) else {
            return false;
        };
        let last = m.last_answer.load(Ordering::Relaxed);
        let now = self.epoch.elapsed().as_millis() as u64;
        last != 0 && now.saturating_sub(last) <= self.attempt_timeout.as_millis() as u64
    }

    /// Whether member `idx` served some call after `since` (this call's start).
    fn answered_since(&self, idx: usize, since: Instant) -> bool {
        let Some(m) = self.members.get(idx) else {
            return false;
        };
        let since = since.saturating_duration_since(self.epoch).as_millis() as u64;
        m.last_answer.load(Ordering::Relaxed) > since
    }

    /// Members in the order to try: healthy ones in configuration order, then the
    /// unhealthy ones (a last resort, e.g. when every member was restarted).
    pub(crate) fn order(&self) -> Vec<usize> {
        let (mut up, down): (Vec<usize>, Vec<usize>) =
            (0..self.members.len()).partition(|&i| self.is_healthy(i));
        up.extend(down);
        up
    }

    /// Member `idx` failed: take it out of rotation and probe it in the background.
    pub(crate) fn mark_failed(self: &Arc<Self>, idx: usize, why: &dyn std::fmt::Display) {
        let Some(m) = self.members.get(idx) else {
            return;
        };
        if m.healthy.swap(false, Ordering::Relaxed) {
            tracing::info!(member = %m.url, error = %why, "etcd member unreachable; using the others until it answers again");
        }
        if m.probing.swap(true, Ordering::Relaxed) {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(probe(Arc::downgrade(self), idx));
            }
            // No runtime (cannot happen inside a call): try it again on the next call.
            Err(_) => {
                m.healthy.store(true, Ordering::Relaxed);
                m.probing.store(false, Ordering::Relaxed);
            }
        }
    }

    /// Runs `f` against members until one answers, within the request timeout (see the
    /// module documentation for which calls are re-sent). Returns the member that
    /// answered, for streams that must be re-opened elsewhere when it fails.
    pub(crate) async fn call_on<T, F, Fut>(
        self: &Arc<Self>,
        op: &'static str,
        f: F,
    ) -> Result<(usize, T), RegistryError>
    where
        F: Fn(Conn) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let once = AT_MOST_ONCE.contains(&op);
        let began = Instant::now();
        let mut deadline = began + self.timeout;
        let mut order = self.order();
        let mut rounds = 0;
        let attempt = |idx: usize, after: Duration| {
            let f = &f;
            async move {
                if !after.is_zero() {
                    tokio::time::sleep(after).await;
                }
                let r = match self.conn(idx).await {
                    Ok(c) => f(c).await,
                    Err(e) => Err(e),
                };
                (idx, r)
            }
        };
        // Whether some member answered during this call (etcd's own "no leader" or
        // "leader changed", or a status probe): then etcd is up and electing a leader
        // or slow to commit, not unreachable, and the call gets a second request
        // timeout once (see `election_grace`).
        let mut alive = false;
        let mut extended = false;
        let mut probes = FuturesUnordered::new();
        let check = tokio::time::sleep_until(deadline - self.liveness_window());
        tokio::pin!(check);
        let mut checked = false;
        let mut inflight = FuturesUnordered::new();
        // Members with an attempt in flight, and when it started.
        let mut pending: Vec<(usize, Instant)> = Vec::new();
        let mut next = 0;
        let mut last_error: Option<etcd_client::Error> = None;
        let mut resend = false;
        let mut overloads = 0;
        // Hedge interval: the attempt timeout in the first round, shorter after.
        let mut rehedge = self.attempt_timeout;
        let hedge = tokio::time::sleep(self.attempt_timeout);
        tokio::pin!(hedge);
        let expired = tokio::time::sleep_until(deadline);
        tokio::pin!(expired);
        loop {
            if pending.is_empty() && next >= order.len() {
                // Every member failed (during a raft election all answer "no leader"):
                // start another round while the caller's time lasts.
                let Some(source) = last_error.take() else {
                    return Err(RegistryError::Config("no etcd endpoints".into()));
                };
                rounds += 1;
                let pause = ROUND_BACKOFF.delay(rounds);
                if Instant::now() + pause >= deadline {
                    if !alive || extended {
                        return Err(RegistryError::Unreachable {
                            endpoints: self.label(),
                            source,
                        });
                    }
                    extended = true;
                    deadline += election_grace(self.timeout);
                    expired.as_mut().reset(deadline);
                }
                tokio::time::sleep(pause).await;
                order = self.order();
                next = 0;
                last_error = Some(source);
            }
            if pending.is_empty() || (resend && next < order.len()) {
                resend = false;
                let idx = order[next];
                next += 1;
                pending.push((idx, Instant::now()));
                inflight.push(attempt(idx, Duration::ZERO));
                hedge.as_mut().reset(Instant::now() + rehedge);
            }
            tokio::select! {
                Some((idx, r)) = inflight.next() => {
                    let started = pending
                        .iter()
                        .position(|(i, _)| *i == idx)
                        .map(|p| pending.swap_remove(p).1);
                    match r {
                        Ok(v) => {
                            self.answered(idx);
                            // Members asked earlier that have not answered yet, and
                            // serve nothing else either, are stalled or gone: let the
                            // probe decide.
                            for (i, t) in &pending {
                                if started.is_some_and(|s| *t < s) && !self.progressing(*i) {
                                    self.mark_failed(*i, &"no answer while another member answered");
                                }
                            }
                            return Ok((idx, v));
                        }
                        Err(e) if is_connection_error(&e) => {
                            alive |= is_etcd_answer(&e);
                            self.mark_failed(idx, &e);
                            let retry = !once || never_sent(&e);
                            if !retry && pending.is_empty() {
                                return Err(RegistryError::Unreachable {
                                    endpoints: self.label(),
                                    source: e,
                                });
                            }
                            last_error = Some(e);
                            resend = retry;
                        }
                        Err(e) if is_overload(&e) => {
                            // etcd is up and behind: the same member, after a pause.
                            alive = true;
                            self.answered(idx);
                            overloads += 1;
                            let pause = OVERLOAD_BACKOFF.delay(overloads);
                            if Instant::now() + pause >= deadline {
                                return Err(RegistryError::from_etcd(op, &self.label(), e));
                            }
                            fleet_metrics::etcd_overload(op);
                            tracing::debug!(op, ?pause, "etcd refused the request as too many; sending it again after a pause");
                            pending.push((idx, Instant::now()));
                            inflight.push(attempt(idx, pause));
                        }
                        Err(e) => return Err(RegistryError::from_etcd(op, &self.label(), e)),
                    }
                }
                () = &mut hedge, if !once => {
                    if pending.iter().any(|(i, _)| self.progressing(*i)) {
                        // Busy, not stalled: wait on it rather than load another.
                        hedge.as_mut().reset(Instant::now() + rehedge);
                        continue;
                    }
                    if next >= order.len() {
                        // Every member has been asked and none answered: ask again,
                        // more often (a request stalled behind a dead raft leader
                        // never completes, while a new one goes to the next leader,
                        // elected within 1-2 election timeouts).
                        order = self.order();
                        next = 0;
                        rehedge = (self.attempt_timeout / 3).max(Duration::from_millis(100));
                    }
                    let idx = order[next];
                    next += 1;
                    pending.push((idx, Instant::now()));
                    inflight.push(attempt(idx, Duration::ZERO));
                    hedge.as_mut().reset(Instant::now() + rehedge);
                }
                () = &mut check, if !checked => {
                    // Ask every member whether it answers at all, in time to know by
                    // the deadline.
                    checked = true;
                    // A member that served other calls meanwhile answers.
                    if (0..self.members.len()).any(|i| self.answered_since(i, began)) {
                        alive = true;
                    } else {
                        for i in 0..self.members.len() {
                            probes.push(self.answers(i));
                        }
                    }
                }
                Some(answered) = probes.next(), if !probes.is_empty() => {
                    alive |= answered;
                }
                () = &mut expired => {
                    if alive && !extended {
                        extended = true;
                        let grace = election_grace(self.timeout);
                        tracing::debug!(op, ?grace, "etcd answers but has not served the call yet; waiting for its next leader");
                        deadline += grace;
                        expired.as_mut().reset(deadline);
                        continue;
                    }
                    for (i, _) in &pending {
                        if !self.progressing(*i) {
                            self.mark_failed(*i, &"no answer within the request timeout");
                        }
                    }
                    return Err(RegistryError::Timeout {
                        endpoints: self.label(),
                        timeout: if extended {
                            self.timeout + election_grace(self.timeout)
                        } else {
                            self.timeout
                        },
                    });
                }
            }
        }
    }

    /// The endpoints as errors name them.
    pub(crate) fn label(&self) -> String {
        self.members
            .iter()
            .map(|m| m.url.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// How long before a call's deadline the members are asked whether they answer
    /// at all: long enough for a status round trip on a slow link, short enough that
    /// a call that is served in time costs no probe.
    fn liveness_window(&self) -> Duration {
        self.attempt_timeout.min(self.timeout / 2)
    }

    /// Whether member `idx` answers a status request, even with an error of its own
    /// ("no leader"), as opposed to not at all. Dropped unfinished when the call ends.
    async fn answers(&self, idx: usize) -> bool {
        let Ok(c) = self.conn(idx).await else {
            return false;
        };
        let mut client = c.client;
        match client.status().await {
            Ok(_) => true,
            Err(e) => is_etcd_answer(&e),
        }
    }

    async fn probe_once(&self, idx: usize) -> Result<(), etcd_client::Error> {
        let mut c = self.conn(idx).await?.client;
        match tokio::time::timeout(self.timeout, c.status()).await {
            Ok(r) => r.map(|_| ()),
            Err(_) => Err(etcd_client::Error::InvalidArgs(
                "no answer to a status probe".into(),
            )),
        }
    }
}

/// How long a safe call waits for one member before also asking the next: a third of
/// the request timeout (at least 300 ms), so that a stopped or partitioned member costs
/// a call at most that, and two more members can still be asked.
fn attempt_timeout(timeout: Duration, members: usize) -> Duration {
    if members <= 1 {
        return timeout;
    }
    (timeout / 3).max(Duration::from_millis(300)).min(timeout)
}

/// Extra time a call gets, once, when its deadline passes while etcd answers but has
/// not served it: a raft election after the leader's death takes one to two election
/// timeouts (1-2 s with etcd's default), and a split vote as much again, which one
/// request timeout alone (3 s by default) did not always cover (a call made as the
/// leader died failed after 3.0 s). A machine cut off from etcd gets no answer and
/// still fails after the request timeout.
fn election_grace(timeout: Duration) -> Duration {
    timeout
}

/// Whether the error is etcd's own answer (e.g. "no leader", "leader changed"), so the
/// member is up even though it could not serve the request.
fn is_etcd_answer(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(s) => {
            std::error::Error::source(s).is_none()
                && s.message() != "transport error"
                && i32::from(s.code()) != 4
        }
        _ => false,
    }
}

/// Whether etcd refused the request as "too many requests". etcd 3.4 sends it with
/// gRPC code 2 (Unknown: its server does not map that error), later versions with 8
/// (ResourceExhausted, which also means "database space exceeded"): the message tells.
/// Such a request was never proposed.
fn is_overload(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(s)
        if matches!(i32::from(s.code()), 2 | 8)
            && s.message() == "etcdserver: too many requests")
}

/// Whether the error proves the request never reached etcd (the connection was
/// refused or could not be made), so even a call not safe to repeat may be re-sent.
fn never_sent(e: &etcd_client::Error) -> bool {
    let mut msgs = vec![e.to_string()];
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msgs.push(s.to_string());
        src = s.source();
    }
    msgs.iter().any(|m| {
        let m = m.to_ascii_lowercase();
        m.contains("connection refused") || m.contains("tcp connect error")
    })
}

/// Probes member `idx` with backoff until it answers, then returns it to rotation.
/// Ends early when the registry is dropped.
async fn probe(pool: Weak<Pool>, idx: usize) {
    let mut failures = 0;
    loop {
        failures += 1;
        tokio::time::sleep(PROBE_BACKOFF.delay(failures)).await;
        let Some(pool) = pool.upgrade() else { return };
        match pool.probe_once(idx).await {
            Ok(()) => {
                if let Some(m) = pool.members.get(idx) {
                    tracing::info!(member = %m.url, "etcd member answers again");
                    m.healthy.store(true, Ordering::Relaxed);
                    m.probing.store(false, Ordering::Relaxed);
                }
                return;
            }
            Err(e) => {
                tracing::debug!(member = pool.url(idx), error = %e, failures, "etcd member still unreachable");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_too_many_requests_is_an_overload() {
        use tonic::{Code, Status};
        let err = |code, msg: &str| etcd_client::Error::GRpcStatus(Status::new(code, msg));
        // As etcd 3.4 sends it (seen at 10,000 machines), and as later versions do.
        assert!(is_overload(&err(
            Code::Unknown,
            "etcdserver: too many requests"
        )));
        assert!(is_overload(&err(
            Code::ResourceExhausted,
            "etcdserver: too many requests"
        )));
        // Same code, a full database: sending again cannot help.
        assert!(!is_overload(&err(
            Code::ResourceExhausted,
            "etcdserver: mvcc: database space exceeded"
        )));
        assert!(!is_overload(&err(
            Code::Unavailable,
            "etcdserver: too many requests"
        )));
    }

    #[test]
    fn attempts_leave_room_for_other_members() {
        let s = Duration::from_secs;
        assert_eq!(attempt_timeout(s(3), 3), s(1));
        assert_eq!(attempt_timeout(s(3), 1), s(3));
        assert_eq!(
            attempt_timeout(Duration::from_millis(200), 3),
            Duration::from_millis(200)
        );
    }
}
