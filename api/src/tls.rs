//! TLS material for the TCP listener (server cert, client CA for mTLS) and for clients
//! (CA to verify the server, client identity), read from PEM files.

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use crate::ApiError;

/// The TCP listener's TLS: its certificate and key, and when `client_ca` is set, the CA
/// every client certificate must chain to (mTLS: clients without one are refused).
#[derive(Clone, Debug)]
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// A client's TLS: the CA that signed the server (system roots are not used), and an
/// optional identity for servers that require client certificates.
#[derive(Clone, Debug, Default)]
pub struct ClientTls {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Name to verify the server certificate against instead of the endpoint's host.
    pub domain: Option<String>,
}

fn read(path: &Path) -> Result<Vec<u8>, ApiError> {
    std::fs::read(path).map_err(|e| ApiError::Tls {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

impl ClientTls {
    pub(crate) fn config(&self) -> Result<ClientTlsConfig, ApiError> {
        let mut config = ClientTlsConfig::new();
        if let Some(ca) = &self.ca {
            config = config.ca_certificate(Certificate::from_pem(read(ca)?));
        }
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                config = config.identity(Identity::from_pem(read(cert)?, read(key)?));
            }
            (None, None) => {}
            (Some(p), None) | (None, Some(p)) => {
                return Err(ApiError::Tls {
                    path: p.clone(),
                    reason: "a client certificate needs both --cert-file and --key-file".into(),
                });
            }
        }
        if let Some(domain) = &self.domain {
            config = config.domain_name(domain.clone());
        }
        Ok(config)
    }
}
