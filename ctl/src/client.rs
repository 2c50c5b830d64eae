//! The cluster as fleetctl reaches it. Today only the etcd driver exists (`--driver=etcd`,
//! chosen automatically when the endpoint looks like etcd); the fleetd API driver comes
//! with the API, behind the same methods.

use std::time::Duration;

use anyhow::{Context, bail};
use fleet_registry::{Registry, RegistryConfig};

use crate::cli::GlobalFlags;

/// Default etcd endpoint when `--driver=etcd` is given without `--endpoint`.
const DEFAULT_ETCD_ENDPOINT: &str = "http://127.0.0.1:2379";
const DEFAULT_API_ENDPOINT: &str = "unix:///var/run/fleet.sock";

/// Which backend a command talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    Api,
    Etcd,
}

/// Picks the driver as fleetctl did, plus the auto-detection fleet intended but never
/// shipped: an `http(s)://host:2379` or `:4001` endpoint means etcd.
pub fn choose_driver(driver: &str, endpoint: &str) -> anyhow::Result<Driver> {
    let looks_like_etcd = endpoint.split(',').any(|e| {
        let e = e.trim().trim_end_matches('/');
        (e.starts_with("http://") || e.starts_with("https://"))
            && (e.ends_with(":2379") || e.ends_with(":4001"))
    });
    match driver.to_ascii_lowercase().as_str() {
        "etcd" => Ok(Driver::Etcd),
        "api" if looks_like_etcd => Ok(Driver::Etcd),
        "api" => Ok(Driver::Api),
        _ => bail!("unrecognized driver {driver:?}"),
    }
}

/// A connected client. Cheap to clone (etcd clients share one channel).
#[derive(Clone)]
pub struct Client {
    pub registry: Registry,
}

impl Client {
    pub async fn connect(global: &GlobalFlags) -> anyhow::Result<Client> {
        match choose_driver(&global.driver, &global.endpoint)? {
            Driver::Api => bail!(
                "the fleet API driver is not available yet; use --driver=etcd --endpoint=http://<etcd>:2379 (or set FLEETCTL_DRIVER=etcd)"
            ),
            Driver::Etcd => {
                let endpoint = if global.endpoint == DEFAULT_API_ENDPOINT {
                    DEFAULT_ETCD_ENDPOINT
                } else {
                    global.endpoint.as_str()
                };
                let endpoints: Vec<String> = endpoint
                    .split(',')
                    .map(|e| e.trim().to_string())
                    .filter(|e| !e.is_empty())
                    .collect();
                if endpoints.is_empty() {
                    bail!("no etcd endpoint given");
                }
                if !(global.request_timeout > 0.0 && global.request_timeout.is_finite()) {
                    bail!(
                        "--request-timeout must be a positive number of seconds, got {}",
                        global.request_timeout
                    );
                }
                let mut config = RegistryConfig::new(endpoints[0].clone())
                    .with_prefix(global.etcd_key_prefix.clone())
                    .with_timeout(Duration::from_secs_f64(global.request_timeout));
                config.endpoints = endpoints;
                let registry = Registry::connect(config)
                    .await
                    .context("connecting to etcd")?;
                Ok(Client { registry })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_selection() {
        assert_eq!(
            choose_driver("API", "unix:///var/run/fleet.sock").unwrap(),
            Driver::Api
        );
        assert_eq!(
            choose_driver("API", "http://10.0.0.1:2379").unwrap(),
            Driver::Etcd
        );
        assert_eq!(
            choose_driver("api", "http://a:4001,http://b:4001").unwrap(),
            Driver::Etcd
        );
        assert_eq!(
            choose_driver("etcd", "http://10.0.0.1:12379").unwrap(),
            Driver::Etcd
        );
        assert_eq!(
            choose_driver("x", "").unwrap_err().to_string(),
            "unrecognized driver \"x\""
        );
    }
}
