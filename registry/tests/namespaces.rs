//! Namespaces and people against a real etcd.

mod common;

use common::{name, setup, unit};
use fleet_core::{Namespace, Selector};
use fleet_registry::{AccessError, NsRole};

fn ns(s: &str) -> Namespace {
    Namespace::parse(s).unwrap()
}

#[tokio::test]
async fn create_list_and_delete_namespaces() {
    let (_etcd, reg) = setup("/t/ns").await;
    let a = ns("a");
    assert!(reg.namespaces().await.unwrap().is_empty());
    reg.create_namespace(&a, &Selector::parse("team=a").unwrap())
        .await
        .unwrap();
    assert!(matches!(
        reg.create_namespace(&a, &Selector::default()).await,
        Err(AccessError::NamespaceExists(_))
    ));
    assert!(matches!(
        reg.create_namespace(&Namespace::default_ns(), &Selector::default())
            .await,
        Err(AccessError::DefaultNamespace)
    ));
    let listed = reg.list_namespaces().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].1.to_string(), "team=a");
    let nss = reg.namespaces().await.unwrap();
    assert_eq!(
        nss.split(&name("a:web.service")),
        (a.clone(), name("web.service"))
    );

    // Units in it: deletion refused, nothing changed; with destroy, both go.
    let q = a.qualify(&name("web.service")).unwrap();
    reg.create_unit(&q, &unit("sleep 1")).await.unwrap();
    reg.create_unit(&name("web.service"), &unit("sleep 1"))
        .await
        .unwrap();
    match reg.delete_namespace(&a, false).await {
        Err(e @ AccessError::NotEmpty { .. }) => {
            assert_eq!(
                e.to_string(),
                "namespace a has 1 unit(s): destroy them first or pass --destroy-units"
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(reg.get_unit(&q).await.unwrap().is_some());
    assert_eq!(reg.delete_namespace(&a, true).await.unwrap(), 1);
    assert!(reg.get_unit(&q).await.unwrap().is_none());
    // The default namespace's unit of the same name is untouched.
    assert!(reg.get_unit(&name("web.service")).await.unwrap().is_some());
    assert!(reg.namespaces().await.unwrap().is_empty());
    assert!(matches!(
        reg.delete_namespace(&a, true).await,
        Err(AccessError::NoNamespace(_))
    ));

    // Default units already named a:* would be taken over: creating `a` is refused.
    reg.create_unit(&name("a:old.service"), &unit("sleep 1"))
        .await
        .unwrap();
    assert!(matches!(
        reg.create_namespace(&a, &Selector::default()).await,
        Err(AccessError::NameClash { units: 1, .. })
    ));
}

#[tokio::test]
async fn users_and_grants_per_namespace() {
    let (_etcd, reg) = setup("/t/users").await;
    let (a, b) = (ns("a"), ns("b"));
    reg.create_namespace(&a, &Selector::default())
        .await
        .unwrap();
    reg.create_namespace(&b, &Selector::default())
        .await
        .unwrap();
    reg.add_user("alice", false).await.unwrap();
    reg.add_user("root", true).await.unwrap();
    assert!(matches!(
        reg.add_user("alice", false).await,
        Err(AccessError::UserExists(_))
    ));
    assert!(matches!(
        reg.add_user("bad name", false).await,
        Err(AccessError::BadUserName(_))
    ));
    reg.set_grant("alice", &a, Some(NsRole::Admin))
        .await
        .unwrap();
    reg.set_grant("alice", &b, Some(NsRole::Viewer))
        .await
        .unwrap();
    assert!(matches!(
        reg.set_grant("bob", &a, Some(NsRole::User)).await,
        Err(AccessError::NoUser(_))
    ));
    assert!(matches!(
        reg.set_grant("alice", &ns("c"), Some(NsRole::User)).await,
        Err(AccessError::NoNamespace(_))
    ));
    let alice = reg.get_user("alice").await.unwrap().unwrap();
    assert_eq!(alice.role_in(&a), Some(NsRole::Admin));
    assert_eq!(alice.role_in(&b), Some(NsRole::Viewer));
    assert_eq!(alice.role_in(&Namespace::default_ns()), None);
    let root = reg.get_user("root").await.unwrap().unwrap();
    assert_eq!(root.role_in(&b), Some(NsRole::Admin));

    reg.set_grant("alice", &b, None).await.unwrap();
    let alice = reg.get_user("alice").await.unwrap().unwrap();
    assert_eq!(alice.role_in(&b), None);
    let users: Vec<String> = reg
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(users, ["alice", "root"]);
    assert!(reg.remove_user("alice").await.unwrap());
    assert!(reg.get_user("alice").await.unwrap().is_none());
}

/// The API's followed view of people and namespaces sees a grant, a revoke, a new
/// namespace and a removed person soon after etcd has them.
#[tokio::test]
async fn the_followed_view_tracks_people_and_namespaces() {
    use std::time::{Duration, Instant};
    let (_etcd, reg) = setup("/t/people").await;
    let view = fleet_registry::PeopleView::follow(reg.clone());
    let a = ns("a");
    reg.create_namespace(&a, &Selector::default())
        .await
        .unwrap();
    reg.add_user("ann", false).await.unwrap();
    reg.set_grant("ann", &a, Some(NsRole::Admin)).await.unwrap();
    // Polls the view (no etcd change is made here) until `ok`, within 5 s.
    async fn until<F: AsyncFn() -> bool>(what: &str, ok: F) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !ok().await {
            assert!(Instant::now() < deadline, "view never showed {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    until("ann as admin of a", async || {
        view.user("ann").await.unwrap().and_then(|u| u.role_in(&a)) == Some(NsRole::Admin)
    })
    .await;
    assert!(view.namespaces().await.unwrap().contains(&a));
    reg.set_grant("ann", &a, None).await.unwrap();
    until("the revoke", async || {
        view.user("ann")
            .await
            .unwrap()
            .is_some_and(|u| u.role_in(&a).is_none())
    })
    .await;
    reg.remove_user("ann").await.unwrap();
    until("ann removed", async || {
        view.user("ann").await.unwrap().is_none()
    })
    .await;
    let b = ns("b");
    reg.create_namespace(&b, &Selector::default())
        .await
        .unwrap();
    until("namespace b", async || {
        view.namespaces().await.unwrap().contains(&b)
    })
    .await;
    // Tokens: a new one is accepted at once, a revoked one refused once etcd has the
    // revocation, an unknown one never.
    let (token, info) = reg
        .create_token("ann", "viewer", Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(view.token(&token).await.unwrap().unwrap().user, "ann");
    assert!(view.token("fleet_nosuch").await.unwrap().is_none());
    until("the token in the view", async || {
        view.token(&token).await.unwrap().is_some()
    })
    .await;
    reg.revoke_token(&info.id).await.unwrap();
    until("the token revoked", async || {
        view.token(&token).await.unwrap().is_none()
    })
    .await;
}
