//! fleetd's etcd connection with TLS (`etcd_cafile`) and authentication
//! (`etcd_username`/`etcd_password`) against a real etcd that requires both, and the
//! one clear line when the credentials are missing or wrong.

use fleet_registry::Secret;
use fleet_testkit::{EtcdConfig, EtcdServer};
use fleetd::config::Config;
use fleetd::server::Setup;

const PASSWORD: &str = "pw-77e0-do-not-print";

fn secure_etcd(dir: &std::path::Path) -> EtcdServer {
    fleet_testkit::make_test_certs(dir);
    let etcd = EtcdConfig {
        client_tls: Some((dir.join("server.crt"), dir.join("server.key"))),
        ..EtcdConfig::default()
    }
    .start()
    .expect("start etcd");
    etcd.enable_auth(
        PASSWORD,
        &[format!("--cacert={}", dir.join("ca.crt").display())],
    );
    etcd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleetd_connects_with_tls_and_password_and_refuses_clearly_without() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = secure_etcd(dir.path());
    let mut config = Config {
        etcd_servers: vec![etcd.client_url()],
        etcd_cafile: Some(dir.path().join("ca.crt")),
        etcd_username: Some("root".into()),
        etcd_password: Some(Secret::from(PASSWORD)),
        machine_id: Some("0123456789abcdef0123456789abcdef".into()),
        public_ip: Some(std::net::Ipv4Addr::LOCALHOST.into()),
        ..Config::default()
    };
    assert!(!format!("{config:?}").contains(PASSWORD));
    let setup = Setup::new(&config)
        .await
        .expect("TLS and password accepted");
    assert!(setup.registry.list_machines().await.unwrap().is_empty());

    config.etcd_password = Some(Secret::from("wrong"));
    let err = Setup::new(&config).await.unwrap_err().to_string();
    assert!(
        err.contains("etcd refused the user name or password"),
        "{err}"
    );

    config.etcd_username = None;
    config.etcd_password = None;
    let err = Setup::new(&config).await.unwrap_err().to_string();
    eprintln!("without credentials: {err}");
    assert!(err.contains("etcd requires authentication"), "{err}");
    assert!(err.contains("etcd_username"), "{err}");
    assert!(
        !err.contains("user name is empty") && !err.contains('\n'),
        "{err}"
    );
}
