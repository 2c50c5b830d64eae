//! etcd's Prometheus counters (requests by method, bytes, key writes), read over plain
//! HTTP/1.0 from its metrics listener so the benchmark needs no HTTP client crate.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// The counters the benchmark reports, at one moment.
#[derive(Clone, Debug, Default)]
pub struct EtcdCounters {
    /// gRPC requests handled, by method (`Txn`, `Range`, `Watch`, `LeaseKeepAlive`...).
    pub requests: BTreeMap<String, f64>,
    pub received_bytes: f64,
    pub sent_bytes: f64,
    /// Keys written (puts) and deleted by the MVCC store.
    pub puts: f64,
    pub deletes: f64,
    /// Write txns committed by the MVCC store (a txn with writes counts once).
    pub write_txns: f64,
}

impl EtcdCounters {
    /// The difference `self - earlier`.
    pub fn since(&self, earlier: &EtcdCounters) -> EtcdCounters {
        let mut requests = self.requests.clone();
        for (m, v) in &earlier.requests {
            *requests.entry(m.clone()).or_default() -= v;
        }
        requests.retain(|_, v| *v > 0.0);
        EtcdCounters {
            requests,
            received_bytes: self.received_bytes - earlier.received_bytes,
            sent_bytes: self.sent_bytes - earlier.sent_bytes,
            puts: self.puts - earlier.puts,
            deletes: self.deletes - earlier.deletes,
            write_txns: self.write_txns - earlier.write_txns,
        }
    }

    /// Unary requests (everything but the streams' messages).
    pub fn total_requests(&self) -> f64 {
        self.requests.values().sum()
    }
}

/// The counters of every member of one cluster: client requests and bytes summed
/// (each member serves its own clients), key writes from the first member (every
/// member applies the same writes).
pub fn fetch_all(metrics_urls: &[String]) -> Result<EtcdCounters> {
    let mut total = EtcdCounters::default();
    for (i, url) in metrics_urls.iter().enumerate() {
        let c = fetch(url)?;
        for (m, v) in c.requests {
            *total.requests.entry(m).or_default() += v;
        }
        total.received_bytes += c.received_bytes;
        total.sent_bytes += c.sent_bytes;
        if i == 0 {
            (total.puts, total.deletes, total.write_txns) = (c.puts, c.deletes, c.write_txns);
        }
    }
    Ok(total)
}

/// Fetches `<metrics_url>/metrics` (an `http://host:port` URL).
pub fn fetch(metrics_url: &str) -> Result<EtcdCounters> {
    let host = metrics_url
        .strip_prefix("http://")
        .context("the etcd metrics URL must be http://host:port")?
        .trim_end_matches('/');
    let mut s = TcpStream::connect(host).with_context(|| format!("connect to {host}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    if !body.starts_with("HTTP/1.0 200") && !body.starts_with("HTTP/1.1 200") {
        bail!(
            "etcd metrics: {}",
            body.lines().next().unwrap_or("empty answer")
        );
    }
    Ok(parse(&body))
}

fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    let start = labels.find(&format!("{name}=\""))? + name.len() + 2;
    let len = labels.get(start..)?.find('"')?;
    labels.get(start..start + len)
}

fn parse(text: &str) -> EtcdCounters {
    let mut c = EtcdCounters::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name_labels, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match name_labels.split_once('{') {
            Some((n, l)) => (n, l),
            None => (name_labels, ""),
        };
        match name {
            "grpc_server_handled_total" => {
                if let Some(m) = label(labels, "grpc_method") {
                    *c.requests.entry(m.to_string()).or_default() += value;
                }
            }
            "etcd_network_client_grpc_received_bytes_total" => c.received_bytes += value,
            "etcd_network_client_grpc_sent_bytes_total" => c.sent_bytes += value,
            "etcd_mvcc_put_total" => c.puts += value,
            "etcd_mvcc_delete_total" => c.deletes += value,
            "etcd_mvcc_txn_total" => c.write_txns += value,
            _ => {}
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_counters_used() {
        let text = "# HELP x\n\
            grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Txn\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 12\n\
            grpc_server_handled_total{grpc_code=\"Unavailable\",grpc_method=\"Txn\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 3\n\
            etcd_network_client_grpc_sent_bytes_total 1.5e+06\n\
            etcd_mvcc_put_total 7\n";
        let c = parse(text);
        assert_eq!(c.requests["Txn"], 15.0);
        assert_eq!(c.sent_bytes, 1.5e6);
        assert_eq!(c.puts, 7.0);
    }
}
