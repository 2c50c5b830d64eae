//! Bounds on concurrent journal/status streams. Each one runs a `journalctl` or
//! `systemctl` child here (or holds a forwarded stream to another fleetd), so without a
//! bound a client could fork processes on every machine at will (40 `journal -f`, 40
//! children).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;

/// Journal/status streams one client may have open at once on one fleetd. A client is
/// a TCP peer's IP address or a unix-socket peer's uid; a fleetd forwarding for its
/// users counts as one client of the fleetd it forwards to.
pub const MAX_STREAMS_PER_CLIENT: usize = 16;

/// Journal/status streams one fleetd serves at once, over all clients.
pub const MAX_STREAMS: usize = 64;

/// Who opened a stream, for the per-client bound.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Peer {
    Ip(std::net::IpAddr),
    Uid(u32),
    /// Neither is known (should not happen with our listeners): counted together.
    Unknown,
}

impl Peer {
    pub(crate) fn of<T>(req: &tonic::Request<T>) -> Peer {
        if let Some(addr) = req.remote_addr() {
            return Peer::Ip(addr.ip());
        }
        req.extensions()
            .get::<tonic::transport::server::UdsConnectInfo>()
            .and_then(|i| i.peer_cred)
            .map_or(Peer::Unknown, |c| Peer::Uid(c.uid()))
    }
}

/// The open-stream counts: a semaphore for the total, a map for each client.
#[derive(Debug)]
pub(crate) struct StreamLimits {
    total: Arc<Semaphore>,
    per_client: Arc<Mutex<HashMap<Peer, usize>>>,
    max_per_client: usize,
    max_total: usize,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits::new(MAX_STREAMS_PER_CLIENT, MAX_STREAMS)
    }
}

/// One open stream; dropping it (the stream ended or the client went away) frees it.
#[derive(Debug)]
pub(crate) struct StreamPermit {
    _total: OwnedSemaphorePermit,
    peer: Peer,
    per_client: Arc<Mutex<HashMap<Peer, usize>>>,
    _counted: fleet_metrics::JournalStream,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut map = self
            .per_client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.peer);
            }
        }
    }
}

impl StreamLimits {
    pub(crate) fn new(max_per_client: usize, max_total: usize) -> StreamLimits {
        StreamLimits {
            total: Arc::new(Semaphore::new(max_total)),
            per_client: Arc::default(),
            max_per_client,
            max_total,
        }
    }

    /// A permit for one more stream from `peer`, or RESOURCE_EXHAUSTED saying which
    /// bound was hit.
    pub(crate) fn acquire(&self, peer: Peer) -> Result<StreamPermit, Status> {
        let mut map = self
            .per_client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let open = map.get(&peer).copied().unwrap_or(0);
        if open >= self.max_per_client {
            return Err(Status::resource_exhausted(format!(
                "too many journal/status streams (limit {} per client); close some",
                self.max_per_client
            )));
        }
        let total = self.total.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "fleetd is serving too many journal/status streams (limit {} in all); try again later",
                self.max_total
            ))
        })?;
        map.insert(peer.clone(), open + 1);
        Ok(StreamPermit {
            _total: total,
            peer,
            per_client: self.per_client.clone(),
            _counted: fleet_metrics::JournalStream::open(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_each_client_and_the_total_and_frees_on_drop() {
        let limits = StreamLimits::new(2, 3);
        let (a, b, c) = (Peer::Uid(0), Peer::Uid(1), Peer::Ip([10, 0, 0, 1].into()));
        let a1 = limits.acquire(a.clone()).unwrap();
        let _a2 = limits.acquire(a.clone()).unwrap();
        let e = limits.acquire(a.clone()).unwrap_err();
        assert_eq!(e.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            e.message(),
            "too many journal/status streams (limit 2 per client); close some"
        );
        let _b1 = limits.acquire(b.clone()).unwrap();
        let e = limits.acquire(c.clone()).unwrap_err();
        assert_eq!(e.code(), tonic::Code::ResourceExhausted);
        assert!(e.message().contains("limit 3 in all"), "{}", e.message());
        // A refused request took nothing: freeing one lets exactly one more in.
        drop(a1);
        let _c1 = limits.acquire(c.clone()).unwrap();
        assert!(limits.acquire(a).is_err());
        assert!(limits.acquire(b).is_err());
        assert!(limits.acquire(c).is_err());
    }
}
