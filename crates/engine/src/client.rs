//! A client of the control API over the engine's UNIX socket.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::Request;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;

use crate::status::{ApiError, DeployReport, EngineStatus, ErrorKind, TeardownReport, TeardownRequest};
use decnet_core::fleet::FleetSpec;

/// Why a call to the engine failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No engine listens on the socket.
    #[error("no engine is running ({path}: {source})")]
    NotRunning {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The engine refused the request as bad input.
    #[error("{0}")]
    Rejected(String),
    /// The engine tried and failed.
    #[error("{0}")]
    Failed(String),
    #[error("talking to the engine: {0}")]
    Transport(String),
}

/// Talks to the engine at one socket path.
#[derive(Debug, Clone)]
pub struct EngineClient {
    socket: PathBuf,
}

impl EngineClient {
    pub fn new(socket: &Path) -> Self {
        Self {
            socket: socket.to_path_buf(),
        }
    }

    pub async fn status(&self) -> Result<EngineStatus, ClientError> {
        self.call("GET", "/v1/status", None::<&()>, Duration::from_secs(30))
            .await
    }

    /// Deploys and waits until every decky serves (or failed); deploying a
    /// thousand deckies takes seconds, so the wait is generous.
    pub async fn deploy(&self, fleet: &FleetSpec) -> Result<DeployReport, ClientError> {
        self.call("POST", "/v1/deploy", Some(fleet), Duration::from_secs(600))
            .await
    }

    pub async fn teardown(&self, request: &TeardownRequest) -> Result<TeardownReport, ClientError> {
        self.call("POST", "/v1/teardown", Some(request), Duration::from_secs(600))
            .await
    }

    /// Asks the engine to stop serving and exit.
    pub async fn shutdown(&self) -> Result<(), ClientError> {
        self.call_raw("POST", "/v1/shutdown", None::<&()>, Duration::from_secs(10))
            .await??;
        Ok(())
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&B>,
        timeout: Duration,
    ) -> Result<T, ClientError> {
        let bytes = self.call_raw(method, path, body, timeout).await??;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Transport(format!("unexpected answer to {path}: {e}")))
    }

    /// Outer error: could not talk; inner error: the engine said no.
    async fn call_raw<B: Serialize>(
        &self,
        method: &str,
        path: &str,
        body: Option<&B>,
        timeout: Duration,
    ) -> Result<Result<Bytes, ClientError>, ClientError> {
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|source| ClientError::NotRunning {
                path: self.socket.clone(),
                source,
            })?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        tokio::spawn(connection);
        let payload = match body {
            Some(b) => serde_json::to_vec(b).map_err(|e| ClientError::Transport(e.to_string()))?,
            None => Vec::new(),
        };
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "engine")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(payload)))
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let response = tokio::time::timeout(timeout, sender.send_request(request))
            .await
            .map_err(|_| ClientError::Transport(format!("{path}: no answer within {}s", timeout.as_secs())))?
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let status = response.status();
        let bytes = read_body(response.into_body()).await?;
        if status.is_success() {
            return Ok(Ok(bytes));
        }
        let error: ApiError = serde_json::from_slice(&bytes).unwrap_or(ApiError {
            error: format!("{path}: HTTP {status}: {}", String::from_utf8_lossy(&bytes)),
            kind: ErrorKind::Runtime,
        });
        Ok(Err(match error.kind {
            ErrorKind::BadInput => ClientError::Rejected(error.error),
            ErrorKind::Runtime => ClientError::Failed(error.error),
        }))
    }
}

async fn read_body(body: Incoming) -> Result<Bytes, ClientError> {
    body.collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| ClientError::Transport(e.to_string()))
}
