//! Bearer tokens: stored as hashes, found by the token, gone when revoked or expired.

mod common;

use std::time::Duration;

use common::{raw, setup};
use etcd_client::GetOptions;

#[tokio::test]
async fn tokens_are_hashed_revocable_and_expire() {
    let (etcd, reg) = setup("/t/tokens").await;
    let (token, info) = reg
        .create_token("alice", "viewer", Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(info.record.user, "alice");
    let found = reg.lookup_token(&token).await.unwrap().expect("live token");
    assert_eq!(found.role, "viewer");
    assert_eq!(reg.lookup_token("fleet_nope").await.unwrap(), None);

    // etcd holds the hash, never the token.
    let mut kv = raw(&etcd).await;
    let stored = kv
        .get("/t/tokens/token/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(stored.kvs().len(), 1);
    let key = stored.kvs()[0].key_str().unwrap().to_string();
    assert!(!key.contains(&token) && !stored.kvs()[0].value_str().unwrap().contains(&token));
    assert!(key.contains(&info.id), "{key} is not named by its id");

    let listed = reg.list_tokens().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, info.id);

    // Revoked: refused at once.
    assert!(reg.revoke_token("xyz").await.is_err(), "bad id refused");
    assert_eq!(reg.revoke_token(&info.id).await.unwrap(), 1);
    assert_eq!(reg.lookup_token(&token).await.unwrap(), None);

    // Expired: its lease deletes the key.
    let (short, _) = reg
        .create_token("bob", "operator", Duration::from_secs(1))
        .await
        .unwrap();
    assert!(reg.lookup_token(&short).await.unwrap().is_some());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !reg.list_tokens().await.unwrap().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "token outlived its TTL"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(reg.lookup_token(&short).await.unwrap(), None);
}
