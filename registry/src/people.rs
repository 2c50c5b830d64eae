//! People (`user/`), namespaces (`namespace/`) and API bearer tokens (`token/`, by
//! hash) as etcd has them, kept in memory
//! from a watch for a server that checks them on every call (the API): a lookup costs
//! no etcd round trip, and a grant revoked in etcd applies as soon as its event
//! arrives. While the view is not current (before the first read, after a watch
//! broke, while re-reading after a change) lookups read etcd directly, as without it.
//! A token the view does not know is looked up in etcd too (it may have been created
//! a moment ago): only unknown tokens cost a read.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use fleet_core::Namespaces;

use crate::error::RegistryError;
use crate::namespaces::{UserRecord, decode_namespaces, decode_users};
use crate::registry::Registry;
use crate::tokens::{TokenRecord, decode_tokens};

/// How long to wait before reading again after a failed read or a broken watch.
const RETRY: Duration = Duration::from_secs(1);

#[derive(Default)]
struct People {
    users: HashMap<String, UserRecord>,
    namespaces: Namespaces,
    /// Token records by the hash of the token.
    tokens: HashMap<String, TokenRecord>,
}

struct Inner {
    reg: Registry,
    current: RwLock<Option<Arc<People>>>,
    task: RwLock<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(mut t) = self.task.write()
            && let Some(t) = t.take()
        {
            t.abort();
        }
    }
}

/// A followed view of people and namespaces; clones share it, and the watch ends when
/// the last clone is dropped.
#[derive(Clone)]
pub struct PeopleView {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PeopleView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeopleView")
            .field("current", &self.current().is_some())
            .finish()
    }
}

impl PeopleView {
    /// Starts following `reg`'s people and namespaces (needs a tokio runtime).
    pub fn follow(reg: Registry) -> PeopleView {
        let inner = Arc::new(Inner {
            reg: reg.clone(),
            current: RwLock::new(None),
            task: RwLock::new(None),
        });
        let weak = Arc::downgrade(&inner);
        let task = tokio::spawn(async move {
            loop {
                let Some(inner) = weak.upgrade() else { return };
                let reg = inner.reg.clone();
                drop(inner);
                let next = follow_once(&reg, &weak).await;
                if let Some(inner) = weak.upgrade() {
                    set(&inner, None);
                }
                if next.is_err() {
                    tokio::time::sleep(RETRY).await;
                }
            }
        });
        if let Ok(mut t) = inner.task.write() {
            *t = Some(task);
        }
        PeopleView { inner }
    }

    fn current(&self) -> Option<Arc<People>> {
        self.inner.current.read().ok().and_then(|c| c.clone())
    }

    /// The person `name`, if registered.
    pub async fn user(&self, name: &str) -> Result<Option<UserRecord>, RegistryError> {
        match self.current() {
            Some(p) => Ok(p.users.get(name).cloned()),
            None => self.inner.reg.get_user(name).await,
        }
    }

    /// The namespaces besides `default`.
    pub async fn namespaces(&self) -> Result<Namespaces, RegistryError> {
        match self.current() {
            Some(p) => Ok(p.namespaces.clone()),
            None => self.inner.reg.namespaces().await,
        }
    }
}

impl PeopleView {
    /// The live token `token`'s record (`None`: unknown, revoked or expired).
    pub async fn token(&self, token: &str) -> Result<Option<TokenRecord>, RegistryError> {
        if let Some(p) = self.current()
            && let Some(r) = p.tokens.get(&crate::tokens::hash(token))
            && r.expires > crate::tokens::now()
        {
            return Ok(Some(r.clone()));
        }
        self.inner.reg.lookup_token(token).await
    }
}

fn set(inner: &Inner, people: Option<Arc<People>>) {
    if let Ok(mut c) = inner.current.write() {
        *c = people;
    }
}

/// Reads both prefixes at one revision, publishes them, and waits for the first change
/// after that revision (Ok) or a failure (Err). The caller then drops the view and
/// reads again.
async fn follow_once(reg: &Registry, weak: &std::sync::Weak<Inner>) -> Result<(), RegistryError> {
    let k = reg.keys();
    let (rev, got) = reg
        .get_prefixes("read people", vec![k.users(), k.namespaces(), k.tokens()])
        .await?;
    let [users, namespaces, tokens] = &got[..] else {
        return Err(RegistryError::corrupt(
            k.prefix().as_bytes(),
            "people txn returned an unexpected number of ranges",
        ));
    };
    let people = People {
        users: decode_users(k, users.kvs()).into_iter().collect(),
        namespaces: Namespaces::new(decode_namespaces(k, namespaces.kvs())),
        tokens: decode_tokens(k, tokens.kvs()),
    };
    let mut users_watch = reg.watch_prefix(k.users(), rev + 1);
    let mut ns_watch = reg.watch_prefix(k.namespaces(), rev + 1);
    let mut tokens_watch = reg.watch_prefix(k.tokens(), rev + 1);
    match weak.upgrade() {
        Some(inner) => set(&inner, Some(Arc::new(people))),
        None => return Ok(()),
    }
    tokio::select! {
        r = users_watch.next_raw() => r.map(drop),
        r = ns_watch.next_raw() => r.map(drop),
        r = tokens_watch.next_raw() => r.map(drop),
    }
}
