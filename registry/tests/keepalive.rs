//! The HTTP/2 keep-alive to etcd stays within etcd's ping policy: a watch left idle
//! for longer than etcd tolerates too frequent pings keeps its one stream. (With pings
//! at the request timeout, 1 s here, etcd answered GOAWAY `too_many_pings` after three
//! and every watch on the connection broke and had to be re-opened.)

mod common;

use std::time::Duration;

use fleet_registry::{Registry, RegistryConfig, WatchEvent};
use fleet_testkit::EtcdServer;

#[tokio::test]
async fn an_idle_watch_is_not_cut_by_etcd_for_pinging_too_often() {
    let etcd = EtcdServer::start().unwrap();
    let reg = Registry::connect(
        RegistryConfig::new(etcd.client_url())
            .with_prefix("/keepalive/")
            .with_timeout(Duration::from_secs(1)),
    )
    .await
    .unwrap();
    let (rev, _) = reg.current_leader().await.unwrap();
    let mut watch = reg.watch_prefix(reg.keys().units(), rev + 1);
    let idle = Duration::from_secs(16);
    let writer = {
        let reg = reg.clone();
        tokio::spawn(async move {
            tokio::time::sleep(idle).await;
            reg.create_unit(&common::name("late.service"), &common::unit("true"))
                .await
                .unwrap();
        })
    };
    let batch = tokio::time::timeout(idle + Duration::from_secs(5), watch.next())
        .await
        .expect("the watch delivers the late unit")
        .unwrap();
    writer.await.unwrap();
    assert!(
        matches!(batch.events.first(), Some(WatchEvent::Put { .. })),
        "{batch:?}"
    );
    println!("watch re-opened {} times in {idle:?}", watch.resumes());
    assert_eq!(watch.resumes(), 0, "the watch stream broke while idle");
}
