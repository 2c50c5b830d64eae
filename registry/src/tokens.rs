//! Bearer tokens for the API's browser users (the console) and scripts: `fleetctl token
//! create` stores, under `token/<sha256 of the token>`, who the token speaks for and with
//! which role, bound to an etcd lease of the token's TTL, so a token expires with its
//! key and is revoked by deleting it. Only the hash is stored: reading etcd does not
//! yield a usable token.
//!
//! The record is JSON and readers ignore fields they do not know, so later fields
//! (namespaces, users) can be added without breaking older fleetds.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use etcd_client::{DeleteOptions, GetOptions, PutOptions};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::RegistryError;
use crate::registry::Registry;

/// What a token grants. `role` is the API's role name (`viewer`, `operator`, `admin`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub user: String,
    pub role: String,
    /// Seconds since the epoch when the token was created and when it expires.
    pub created: u64,
    pub expires: u64,
}

/// A stored token as listings show it: `id` is the start of its hash, enough to revoke it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: String,
    pub record: TokenRecord,
}

/// Characters of the hash a listing shows as the token's id.
const ID_LEN: usize = 12;

pub(crate) fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Registry {
    fn tokens_dir(&self) -> String {
        self.keys.tokens()
    }

    /// Creates a token for `user` with `role`, valid for `ttl`; the token itself (shown
    /// once, never stored) and its record.
    pub async fn create_token(
        &self,
        user: &str,
        role: &str,
        ttl: Duration,
    ) -> Result<(String, TokenInfo), RegistryError> {
        let token = format!("fleet_{}", hex::encode(rand::random::<[u8; 32]>()));
        let created = now();
        let record = TokenRecord {
            user: user.to_string(),
            role: role.to_string(),
            created,
            expires: created + ttl.as_secs(),
        };
        let lease = self.grant_lease(ttl).await?;
        let h = hash(&token);
        let value =
            serde_json::to_vec(&record).map_err(|e| RegistryError::Config(e.to_string()))?;
        let key = format!("{}{h}", self.tokens_dir());
        self.call("create token", |mut c| {
            let (key, value) = (key.clone(), value.clone());
            async move {
                c.kv.put(key, value, Some(PutOptions::new().with_lease(lease.0)))
                    .await
            }
        })
        .await
        .map_err(|e| e.denied(crate::roles::KeyClass::Tokens))?;
        let info = TokenInfo {
            id: h[..ID_LEN].to_string(),
            record,
        };
        Ok((token, info))
    }

    /// The record of a live token; `None` for an unknown, revoked or expired one.
    pub async fn lookup_token(&self, token: &str) -> Result<Option<TokenRecord>, RegistryError> {
        let key = format!("{}{}", self.tokens_dir(), hash(token));
        let resp = self
            .call("read token", |mut c| {
                let key = key.clone();
                async move { c.kv.get(key, None).await }
            })
            .await?;
        Ok(resp
            .kvs()
            .first()
            .and_then(|kv| serde_json::from_slice::<TokenRecord>(kv.value()).ok())
            .filter(|r| r.expires > now()))
    }

    /// Every live token.
    pub async fn list_tokens(&self) -> Result<Vec<TokenInfo>, RegistryError> {
        let dir = self.tokens_dir();
        let resp = self
            .call("list tokens", |mut c| {
                let dir = dir.clone();
                async move { c.kv.get(dir, Some(GetOptions::new().with_prefix())).await }
            })
            .await?;
        let mut out: Vec<TokenInfo> = resp
            .kvs()
            .iter()
            .filter_map(|kv| {
                let h = kv.key_str().ok()?.strip_prefix(&dir)?;
                let record = serde_json::from_slice(kv.value()).ok()?;
                Some(TokenInfo {
                    id: h.get(..ID_LEN)?.to_string(),
                    record,
                })
            })
            .collect();
        out.sort_by_key(|t| t.record.created);
        Ok(out)
    }

    /// Revokes the tokens whose id (hash prefix, at least 8 characters) is `id`; how
    /// many were deleted.
    pub async fn revoke_token(&self, id: &str) -> Result<i64, RegistryError> {
        if id.len() < 8 || !id.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(RegistryError::Config(format!(
                "invalid token id {id:?}: give at least 8 hex characters as `fleetctl token list` shows"
            )));
        }
        let key = format!("{}{}", self.tokens_dir(), id.to_ascii_lowercase());
        let resp = self
            .call("revoke token", |mut c| {
                let key = key.clone();
                async move {
                    c.kv.delete(key, Some(DeleteOptions::new().with_prefix()))
                        .await
                }
            })
            .await
            .map_err(|e| e.denied(crate::roles::KeyClass::Tokens))?;
        Ok(resp.deleted())
    }
}

/// Token records under `token/` by hash; records that cannot be read are left out
/// (a lookup then misses, as [`Registry::lookup_token`] would).
pub(crate) fn decode_tokens(
    k: &crate::keys::Keys,
    kvs: &[etcd_client::KeyValue],
) -> std::collections::HashMap<String, TokenRecord> {
    let dir = k.tokens();
    kvs.iter()
        .filter_map(|kv| {
            let h = kv.key_str().ok()?.strip_prefix(&dir)?;
            let record = serde_json::from_slice(kv.value()).ok()?;
            Some((h.to_string(), record))
        })
        .collect()
}
