//! The API's error type, for both the server's setup and the client.

use std::path::PathBuf;

/// Why an API call, connection or listener failed. The display text is the one line
/// fleetctl prints.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The endpoint string cannot be used (fleetctl's "URL scheme undefined" etc.).
    #[error("{0}")]
    Endpoint(String),
    /// Nothing answers at the endpoint.
    #[error("cannot reach fleet API at {endpoint}: {reason}")]
    Connect { endpoint: String, reason: String },
    /// The request was not answered in time.
    #[error("fleet API at {endpoint} did not answer within {timeout:?}")]
    Timeout {
        endpoint: String,
        timeout: std::time::Duration,
    },
    /// The server answered with an error; its message is meant for the user.
    #[error("{}", .0.message())]
    Status(#[from] tonic::Status),
    /// The server sent a value this client cannot decode.
    #[error("fleet API sent {0}")]
    Wire(#[from] crate::convert::WireError),
    /// A state watch started before history etcd has compacted: list again.
    #[error("etcd compacted the history needed by this watch; list again")]
    Compacted,
    /// TLS material could not be read or used.
    #[error("TLS file {path}: {reason}")]
    Tls { path: PathBuf, reason: String },
    /// A listener could not be set up.
    #[error("fleet API listener {what}: {source}")]
    Listen {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The listeners' configuration is unsafe or inconsistent.
    #[error("{0}")]
    Config(String),
    /// The gRPC server failed.
    #[error("fleet API server: {0}")]
    Serve(#[from] tonic::transport::Error),
}

impl ApiError {
    /// The server refused the caller's rights (gRPC `PERMISSION_DENIED`).
    pub fn is_permission_denied(&self) -> bool {
        self.code() == Some(tonic::Code::PermissionDenied)
    }

    /// The gRPC status code, when the server answered.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            ApiError::Status(s) => Some(s.code()),
            _ => None,
        }
    }
}
