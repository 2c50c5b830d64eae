//! TLS on the TCP listeners, accepted here rather than inside tonic so the handshake
//! offers `http/1.1` beside `h2` in ALPN: clients of fleet's HTTP API that negotiate
//! HTTP/1.1 (Python's, `curl --http1.1`) work over TLS as gRPC clients do. With a
//! client CA, a presented certificate must be one it signed (mTLS); a client with none
//! is refused by `auth::check` with a message.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::{ApiError, ServerTls};

/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn tls_err(path: &Path) -> impl Fn(String) -> ApiError + '_ {
    move |reason| ApiError::Tls {
        path: path.to_path_buf(),
        reason,
    }
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ApiError> {
    let err = tls_err(path);
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no PEM certificate in the file".into()));
    }
    Ok(certs)
}

/// The acceptor for `tls`: its certificate and key, the client CA when set, and ALPN
/// `h2` then `http/1.1`.
pub(crate) fn acceptor(tls: &ServerTls) -> Result<TlsAcceptor, ApiError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certs(&tls.cert)?;
    let key =
        PrivateKeyDer::from_pem_file(&tls.key).map_err(|e| tls_err(&tls.key)(e.to_string()))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(&tls.cert)(e.to_string()))?;
    let builder = match &tls.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certs(ca)? {
                roots.add(cert).map_err(|e| tls_err(ca)(e.to_string()))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            // A client without a certificate completes the handshake so that it can
            // be told "certificate required" (auth::check refuses it) rather than see
            // a bare TLS alert; a certificate the CA did not sign still fails here.
            .allow_unauthenticated()
            .build()
            .map_err(|e| tls_err(ca)(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| tls_err(&tls.key)(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The TLS connections of `listener` until `stop`; handshakes run concurrently, so a
/// slow or silent client does not hold up the others.
pub(crate) fn incoming(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    stop: CancellationToken,
) -> ReceiverStream<Result<TlsStream<TcpStream>, std::io::Error>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = stop.cancelled() => return,
                _ = tx.closed() => return,
                a = listener.accept() => a,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // E.g. out of file descriptors: back off instead of spinning.
                    tracing::warn!(error = %e, "fleet API: accepting a TCP connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(tls)).await;
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "fleet API: TLS handshake failed")
                    }
                    Err(_) => tracing::debug!(%peer, "fleet API: TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}
