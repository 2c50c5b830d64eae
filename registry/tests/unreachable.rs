//! A dead etcd is a clear error within the request timeout, never a hang.

mod common;

use std::time::{Duration, Instant};

use common::name;
use fleet_registry::{Registry, RegistryConfig, RegistryError};
use fleet_testkit::EtcdServer;

const TIMEOUT: Duration = Duration::from_secs(1);
const MARGIN: Duration = Duration::from_millis(500);

fn assert_unavailable(err: &RegistryError, url: &str) {
    assert!(err.is_unavailable(), "{err:?}");
    assert!(err.to_string().contains(url), "{err}");
}

#[tokio::test]
async fn killed_etcd_errors_within_the_timeout() {
    let mut etcd = EtcdServer::start().unwrap();
    let url = etcd.client_url();
    let reg = Registry::connect(RegistryConfig::new(&url).with_timeout(TIMEOUT))
        .await
        .unwrap();
    assert!(reg.list_units().await.unwrap().is_empty());
    etcd.kill();

    for _ in 0..2 {
        let t = Instant::now();
        let err = reg.list_units().await.unwrap_err();
        assert!(t.elapsed() < TIMEOUT + MARGIN, "took {:?}", t.elapsed());
        assert_unavailable(&err, &url);
    }
    let t = Instant::now();
    let err = reg.get_unit(&name("a.service")).await.unwrap_err();
    assert!(t.elapsed() < TIMEOUT + MARGIN, "took {:?}", t.elapsed());
    assert_unavailable(&err, &url);

    let t = Instant::now();
    let mut w = reg.watch_prefix(reg.keys().prefix(), 0);
    let err = w.next().await.unwrap_err();
    assert!(t.elapsed() < TIMEOUT + MARGIN, "took {:?}", t.elapsed());
    assert_unavailable(&err, &url);
}

#[tokio::test]
async fn never_started_etcd_errors_within_the_timeout() {
    // a port where nothing listens: bind, note, release
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let t = Instant::now();
    let reg = Registry::connect(RegistryConfig::new(&url).with_timeout(TIMEOUT)).await;
    let err = match reg {
        Err(e) => e,
        Ok(reg) => reg.snapshot().await.unwrap_err(),
    };
    assert!(t.elapsed() < TIMEOUT + MARGIN, "took {:?}", t.elapsed());
    assert_unavailable(&err, &url);
    assert!(err.to_string().contains(&url), "{err}");
}

#[tokio::test]
async fn silent_etcd_times_out() {
    // accepts TCP connections (kernel backlog) but never speaks: a hung etcd
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let t = Instant::now();
    let err = match Registry::connect(RegistryConfig::new(&url).with_timeout(TIMEOUT)).await {
        Err(e) => e,
        Ok(reg) => reg.list_machines().await.unwrap_err(),
    };
    assert!(t.elapsed() < TIMEOUT + MARGIN, "took {:?}", t.elapsed());
    assert_unavailable(&err, &url);
    drop(listener);
}

#[tokio::test]
async fn bad_config_is_refused() {
    let err = Registry::connect(RegistryConfig::new("http://127.0.0.1:1").with_prefix(""))
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Config(_)), "{err}");
    let mut cfg = RegistryConfig::new("http://127.0.0.1:1");
    cfg.endpoints.clear();
    assert!(matches!(
        Registry::connect(cfg).await,
        Err(RegistryError::Config(_))
    ));
}
