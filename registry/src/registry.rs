//! The connection to etcd and the timeout discipline every call goes through.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, GetOptions, GetResponse, KvClient, Txn, TxnOp, TxnOpResponse, TxnResponse,
};

use crate::config::RegistryConfig;
use crate::error::RegistryError;
use crate::keys::Keys;

/// Responses larger than tonic's 4 MiB default occur with thousands of units; etcd
/// itself sends up to 2 GiB.
const MAX_RESPONSE_BYTES: usize = 512 * 1024 * 1024;

/// Chunked txns of one operation sent at once, at most.
pub(crate) const PIPELINE: usize = 8;

/// The client handle on fleet's registry (fleetctl, the API, tools): units, targets,
/// reads and watches. It cannot write `schedule/`, `unplaced/`, `machine/` or `state/`:
/// those belong to [`crate::Leadership`] (the engine) and [`crate::AgentRegistry`].
/// Cheap to clone; clones share the connection, which never leaves this crate.
#[derive(Clone)]
pub struct Registry {
    pub(crate) client: Client,
    pub(crate) kv: KvClient,
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
    /// Prepares a connection. Without authentication it is established lazily, so an
    /// unreachable etcd shows up as an error from the first call, within the timeout.
    pub async fn connect(cfg: RegistryConfig) -> Result<Registry, RegistryError> {
        let keys = Keys::new(&cfg.key_prefix)?;
        let opts = cfg.connect_options()?;
        let endpoints: Arc<str> = cfg.endpoints_label().into();
        let timeout = cfg.request_timeout;
        let connecting = Client::connect(cfg.endpoints.clone(), Some(opts));
        let client = match tokio::time::timeout(timeout, connecting).await {
            Err(_) => {
                return Err(RegistryError::Timeout {
                    endpoints: endpoints.to_string(),
                    timeout,
                });
            }
            Ok(r) => r.map_err(|e| RegistryError::from_etcd("connect", &endpoints, e))?,
        };
        let kv = client
            .kv_client()
            .max_decoding_message_size(MAX_RESPONSE_BYTES);
        Ok(Registry {
            client,
            kv,
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

    /// Runs one etcd call under the request timeout, mapping failures to errors that
    /// name the endpoints.
    pub(crate) async fn call<T>(
        &self,
        op: &'static str,
        fut: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, RegistryError> {
        match tokio::time::timeout(self.timeout, fleet_metrics::etcd_request(op, fut)).await {
            Err(_) => Err(self.timeout_error()),
            Ok(r) => r.map_err(|e| RegistryError::from_etcd(op, &self.endpoints, e)),
        }
    }

    pub(crate) fn timeout_error(&self) -> RegistryError {
        RegistryError::Timeout {
            endpoints: self.endpoints.to_string(),
            timeout: self.timeout,
        }
    }

    pub(crate) async fn txn(
        &self,
        op: &'static str,
        txn: Txn,
    ) -> Result<TxnResponse, RegistryError> {
        let mut kv = self.kv.clone();
        self.call(op, kv.txn(txn)).await
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

    pub(crate) async fn get_prefix(
        &self,
        op: &'static str,
        prefix: String,
    ) -> Result<GetResponse, RegistryError> {
        let mut kv = self.kv.clone();
        self.call(op, kv.get(prefix, Some(GetOptions::new().with_prefix())))
            .await
    }

    /// Reads several prefixes in one txn: one round trip, one revision.
    pub(crate) async fn get_prefixes(
        &self,
        op: &'static str,
        prefixes: Vec<String>,
    ) -> Result<(i64, Vec<GetResponse>), RegistryError> {
        let ops: Vec<TxnOp> = prefixes
            .into_iter()
            .map(|p| TxnOp::get(p, Some(GetOptions::new().with_prefix())))
            .collect();
        let resp = self.txn(op, Txn::new().and_then(ops)).await?;
        Ok((revision(resp.header()), gets(&resp)))
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
