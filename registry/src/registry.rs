//! The connection to etcd and the timeout discipline every call goes through.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{GetResponse, Txn, TxnOpResponse, TxnResponse};

use crate::config::RegistryConfig;
use crate::endpoints::{Conn, Pool};
use crate::error::RegistryError;
use crate::keys::Keys;
use crate::paged::{Consistency, PAGE, Range};

/// Chunked txns of one operation sent at once, at most.
pub(crate) const PIPELINE: usize = 8;

/// The client handle on fleet's registry (fleetctl, the API, tools): units, targets,
/// reads and watches. It cannot write `schedule/`, `unplaced/`, `machine/` or `machine-state/`:
/// those belong to [`crate::Leadership`] (the engine) and [`crate::AgentRegistry`].
/// Cheap to clone; clones share the connections, which never leave this crate.
#[derive(Clone)]
pub struct Registry {
    pub(crate) pool: Arc<Pool>,
    /// Connections of their own for lease keep-alives, so a renewal never waits behind
    /// bulk writes and large reads in the same HTTP/2 connection (a leader or agent
    /// lease lost under load is what this prevents).
    pub(crate) lease_pool: Arc<Pool>,
    pub(crate) keys: Keys,
    pub(crate) timeout: Duration,
    pub(crate) endpoints: Arc<str>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.keys.prefix())
            .finish()
    }
}

impl Registry {
    /// Prepares the connections, one per member, each established on first use, so an
    /// unreachable etcd shows up as an error from the first call, within the timeout.
    /// Calls go to a live member (see `endpoints`).
    pub async fn connect(cfg: RegistryConfig) -> Result<Registry, RegistryError> {
        let keys = Keys::new(&cfg.key_prefix)?;
        let opts = cfg.connect_options()?;
        let endpoints: Arc<str> = cfg.endpoints_label().into();
        let timeout = cfg.request_timeout;
        Ok(Registry {
            pool: Pool::new(&cfg.endpoints, opts.clone(), timeout),
            lease_pool: Pool::new(&cfg.endpoints, opts, timeout),
            keys,
            timeout,
            endpoints,
        })
    }

    /// The key layout in use (for tools that print or watch keys).
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The etcd endpoints, as errors and debug logs name them.
    pub fn endpoints(&self) -> &str {
        &self.endpoints
    }

    /// The bound on each call.
    pub fn request_timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs one etcd call on a live member under the request timeout, re-sending it
    /// to another member if that one fails (see `endpoints`), and maps failures to
    /// errors that name the endpoints. `f` makes the request for a member's client.
    pub(crate) async fn call<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, RegistryError>
    where
        F: Fn(Conn) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        Ok(fleet_metrics::etcd_request(op, self.pool.call_on(op, f))
            .await?
            .1)
    }

    pub(crate) async fn txn(
        &self,
        op: &'static str,
        txn: Txn,
    ) -> Result<TxnResponse, RegistryError> {
        self.call(op, |mut c| {
            let txn = txn.clone();
            async move { c.kv.txn(txn).await }
        })
        .await
    }

    /// Sends `txns` with up to [`PIPELINE`] in flight (etcd commits concurrent
    /// proposals in one raft round), answers in the order given. The first error wins;
    /// txns already sent may have applied, exactly as when sending them one by one
    /// and failing half-way.
    pub(crate) async fn txns(
        &self,
        op: &'static str,
        txns: Vec<Txn>,
    ) -> Result<Vec<TxnResponse>, RegistryError> {
        use futures_util::{StreamExt, TryStreamExt};
        futures_util::stream::iter(txns)
            .map(|t| self.txn(op, t))
            .buffered(PIPELINE)
            .try_collect()
            .await
    }

    /// A whole prefix, read in bounded pages at one revision (see `paged`).
    pub(crate) async fn get_prefix(
        &self,
        op: &'static str,
        prefix: String,
    ) -> Result<Range, RegistryError> {
        self.read_prefix(op, prefix, Consistency::Linearizable)
            .await
    }

    /// [`Registry::get_prefix`] served by the member asked without a round of
    /// consensus: for a read that a watch from its revision then follows.
    pub(crate) async fn get_prefix_serializable(
        &self,
        op: &'static str,
        prefix: String,
    ) -> Result<Range, RegistryError> {
        self.read_prefix(op, prefix, Consistency::Serializable)
            .await
    }

    /// Reads several prefixes at one revision: their first pages in one txn, the rest
    /// in pages pinned to that revision (see `paged`).
    pub(crate) async fn get_prefixes(
        &self,
        op: &'static str,
        prefixes: Vec<String>,
    ) -> Result<(i64, Vec<Range>), RegistryError> {
        self.read_prefixes(op, &prefixes, PAGE, Consistency::Linearizable)
            .await
    }
}

/// The revision a response was served at.
pub(crate) fn revision(h: Option<&etcd_client::ResponseHeader>) -> i64 {
    h.map_or(0, |h| h.revision())
}

/// The range results of a txn, in op order.
pub(crate) fn gets(resp: &TxnResponse) -> Vec<GetResponse> {
    resp.op_responses()
        .into_iter()
        .filter_map(|r| match r {
            TxnOpResponse::Get(g) => Some(g),
            _ => None,
        })
        .collect()
}
