//! Whole-prefix reads in bounded pages, all at one revision.
//!
//! One range over 100,000 units is 30-40 MB in one response: etcd builds it in one go,
//! the call can outlast the request timeout, and a retry starts over just as large.
//! Here the first page of every prefix comes in one txn (that txn's revision is the
//! read's revision), and each prefix that has more continues from its last key with
//! `limit` pages pinned to that revision, so the result is exactly what one range at
//! that revision would have returned and a watch from `revision + 1` misses nothing.
//! Each page is its own call under the request timeout.
//!
//! If etcd compacts the revision between pages, the read starts over at a new one
//! (a few times at most).

use etcd_client::{GetOptions, KeyValue, Txn, TxnOp};

use crate::error::RegistryError;
use crate::registry::{Registry, gets, revision};

/// Keys in the first page of a prefix: about 1.5-2 MB of unit text, quick to serve.
pub(crate) const PAGE: i64 = 5_000;

/// The bytes a later page aims at, sized by the largest key-value read so far. etcd
/// 3.4 walks its index from a page's first key to the end of the range to serve a
/// `limit`, so n keys in pages of p cost about n²/2p index steps: 100,000 unit states
/// took 20 pages of 5,000, and now take about 7.
const PAGE_BYTES: usize = 4 << 20;

/// ...but no more keys than this in one page.
const MAX_PAGE: i64 = 50_000;

/// The limit of the page after one of `last` keys, `largest` being the largest key
/// and value read so far: [`PAGE_BYTES`] of it, at least `page`, and growing at most
/// 4x a page, so keys much larger than the first ones cannot make one huge response.
fn next_limit(largest: usize, last: i64, page: i64) -> i64 {
    let by_size = i64::try_from(PAGE_BYTES / largest.max(1)).unwrap_or(MAX_PAGE);
    by_size.min(MAX_PAGE).min(last.saturating_mul(4)).max(page)
}

/// How many times a read restarts after etcd compacted its revision mid-read.
const COMPACTED_RESTARTS: usize = 3;

/// How a read is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Consistency {
    /// Confirmed with the raft leader: nothing committed before the read is missed.
    Linearizable,
    /// Served by the member asked from what it has applied, without a round of
    /// consensus: cheap under load, possibly a little behind. Only for reads that a
    /// watch from the revision read then brings up to date.
    Serializable,
}

/// Every key-value under one prefix, read at `revision`.
#[derive(Debug, Default)]
pub(crate) struct Range {
    pub(crate) revision: i64,
    kvs: Vec<KeyValue>,
}

impl Range {
    /// The key-values, sorted by key.
    pub(crate) fn kvs(&self) -> &[KeyValue] {
        &self.kvs
    }
}

/// The first key after every key starting with `prefix` (etcd's prefix range end).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xff (or empty): to the end of the keyspace.
    vec![0]
}

/// Whether etcd refused a read because its revision was compacted away.
fn is_compacted(e: &RegistryError) -> bool {
    matches!(
        e,
        RegistryError::Etcd {
            source: etcd_client::Error::GRpcStatus(s),
            ..
        } if s.message().contains("required revision has been compacted")
    )
}

impl Registry {
    /// Reads whole prefixes in pages at one revision: see the module doc.
    pub(crate) async fn read_prefixes(
        &self,
        op: &'static str,
        prefixes: &[String],
        page: i64,
        consistency: Consistency,
    ) -> Result<(i64, Vec<Range>), RegistryError> {
        let mut restarts = 0;
        loop {
            match self
                .read_prefixes_once(op, prefixes, page, consistency)
                .await
            {
                Err(e) if is_compacted(&e) && restarts < COMPACTED_RESTARTS => {
                    restarts += 1;
                    tracing::debug!(op, restarts, "revision compacted mid-read; reading again");
                }
                r => return r,
            }
        }
    }

    async fn read_prefixes_once(
        &self,
        op: &'static str,
        prefixes: &[String],
        page: i64,
        consistency: Consistency,
    ) -> Result<(i64, Vec<Range>), RegistryError> {
        let served = |o: GetOptions| match consistency {
            Consistency::Linearizable => o,
            Consistency::Serializable => o.with_serializable(),
        };
        let ops: Vec<TxnOp> = prefixes
            .iter()
            .map(|p| {
                TxnOp::get(
                    p.as_str(),
                    Some(served(GetOptions::new().with_prefix().with_limit(page))),
                )
            })
            .collect();
        let resp = self.txn(op, Txn::new().and_then(ops)).await?;
        let rev = revision(resp.header());
        let mut out = Vec::with_capacity(prefixes.len());
        for (prefix, mut first) in prefixes.iter().zip(gets(&resp)) {
            let mut more = first.more();
            let mut kvs = first.take_kvs();
            let end = prefix_end(prefix.as_bytes());
            let mut limit = page;
            let mut largest = 0;
            let mut sized = 0;
            while more {
                largest = kvs[sized..]
                    .iter()
                    .map(|kv| kv.key().len() + kv.value().len())
                    .fold(largest, usize::max);
                sized = kvs.len();
                limit = next_limit(largest, limit, page);
                let Some(last) = kvs.last() else { break };
                let mut from = last.key().to_vec();
                from.push(0);
                let opts = served(
                    GetOptions::new()
                        .with_range(end.clone())
                        .with_limit(limit)
                        .with_revision(rev),
                );
                let mut next = self
                    .call(op, |mut c| {
                        let (from, opts) = (from.clone(), opts.clone());
                        async move { c.kv.get(from, Some(opts)).await }
                    })
                    .await?;
                more = next.more();
                kvs.extend(next.take_kvs());
            }
            out.push(Range { revision: rev, kvs });
        }
        Ok((rev, out))
    }

    /// One prefix, read in pages (see [`Registry::read_prefixes`]).
    pub(crate) async fn read_prefix(
        &self,
        op: &'static str,
        prefix: String,
        consistency: Consistency,
    ) -> Result<Range, RegistryError> {
        let (_, mut g) = self.read_prefixes(op, &[prefix], PAGE, consistency).await?;
        Ok(g.pop().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_PAGE, PAGE, next_limit, prefix_end};

    #[test]
    fn pages_grow_with_small_keys_and_never_past_the_bounds() {
        // 150-byte states: 4x a page at a time, up to what 4 MiB holds.
        assert_eq!(next_limit(150, PAGE, PAGE), 20_000);
        assert_eq!(next_limit(150, 20_000, PAGE), 27_962);
        // Tiny keys: no more than MAX_PAGE.
        assert_eq!(next_limit(10, 40_000, PAGE), MAX_PAGE);
        // Large unit texts (up to 1 MiB): never below the first page's size.
        assert_eq!(next_limit(1 << 20, PAGE, PAGE), PAGE);
        assert_eq!(next_limit(0, PAGE, PAGE), 20_000);
    }

    #[test]
    fn prefix_end_is_the_next_prefix() {
        assert_eq!(prefix_end(b"/fleet/unit/"), b"/fleet/unit0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff"), vec![0]);
    }
}
