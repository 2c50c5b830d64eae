//! TLS on the TCP listeners, accepted here rather than inside tonic so the handshake
//! offers `http/1.1` beside `h2` in ALPN: clients of fleet's HTTP API that negotiate
//! HTTP/1.1 (Python's, `curl --http1.1`) work over TLS as gRPC clients do. With a
//! client CA, every request must come with a certificate it signed (mTLS): checked by
//! `auth::check`, so that a refused client is told why.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
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

/// Proves that a client holds the key of the certificate it presents (the handshake
/// signature) but leaves the chain check to `auth::check`, which runs it with the same
/// CA verifier before every request: a client whose certificate the CA did not sign is
/// then told so, instead of seeing its connection break with no reason.
#[derive(Debug)]
struct DeferredChain(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for DeferredChain {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Checked per request by auth::check, which refuses the request otherwise.
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The acceptor for `tls`: its certificate and key, the client CA when set, and ALPN
/// `h2` then `http/1.1`; with a client CA, also the verifier `auth::check` must run on
/// every presented certificate chain.
pub(crate) fn acceptor(
    tls: &ServerTls,
) -> Result<(TlsAcceptor, Option<Arc<dyn ClientCertVerifier>>), ApiError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certs(&tls.cert)?;
    let key =
        PrivateKeyDer::from_pem_file(&tls.key).map_err(|e| tls_err(&tls.key)(e.to_string()))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(&tls.cert)(e.to_string()))?;
    let mut client_chain = None;
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
            .build()
            .map_err(|e| tls_err(ca)(e.to_string()))?;
            // A client without a certificate, or with one the CA did not sign, completes
            // the handshake so that auth::check can tell it why it is refused.
            client_chain = Some(verifier.clone());
            builder.with_client_cert_verifier(Arc::new(DeferredChain(verifier)))
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| tls_err(&tls.key)(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((TlsAcceptor::from(Arc::new(config)), client_chain))
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
