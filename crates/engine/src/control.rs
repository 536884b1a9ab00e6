//! The control API: HTTP/JSON, served on `<run-dir>/engine.sock` (0660). The
//! same routes will be served over HTTPS with mutual TLS for remote sensors.
//!
//! - `GET  /v1/status`   → [`EngineStatus`]
//! - `POST /v1/deploy`   [`FleetSpec`] → [`DeployReport`] once every decky serves
//! - `POST /v1/teardown` [`TeardownRequest`] → [`TeardownReport`]
//! - `POST /v1/shutdown` → 202; the engine stops serving and exits

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use decnet_core::fleet::FleetSpec;
use tokio_util::sync::CancellationToken;

use crate::engine::{Engine, EngineError};
use crate::status::{ApiError, DeployReport, EngineStatus, ErrorKind, TeardownReport, TeardownRequest};

#[derive(Clone)]
struct Api {
    engine: Arc<Engine>,
    shutdown: CancellationToken,
}

/// The largest deploy request: a fleet of thousands of deckies, each with its
/// services' personas, is far beyond axum's default of 2 MB of JSON.
pub const MAX_DEPLOY_BODY: usize = 64 * 1024 * 1024;

/// The control API's routes.
pub fn router(engine: Arc<Engine>, shutdown: CancellationToken) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/deploy", post(deploy).layer(DefaultBodyLimit::max(MAX_DEPLOY_BODY)))
        .route("/v1/teardown", post(teardown))
        .route("/v1/shutdown", post(shutdown_engine))
        .with_state(Api { engine, shutdown })
}

async fn status(State(api): State<Api>) -> Json<EngineStatus> {
    Json(api.engine.status().await)
}

async fn deploy(State(api): State<Api>, Json(fleet): Json<FleetSpec>) -> Result<Json<DeployReport>, Failure> {
    Ok(Json(api.engine.deploy(fleet).await?))
}

async fn teardown(
    State(api): State<Api>,
    Json(request): Json<TeardownRequest>,
) -> Result<Json<TeardownReport>, Failure> {
    Ok(Json(api.engine.teardown(&request).await?))
}

async fn shutdown_engine(State(api): State<Api>) -> StatusCode {
    api.shutdown.cancel();
    StatusCode::ACCEPTED
}

/// An engine error as an HTTP answer: 422 for bad input, 500 otherwise.
struct Failure(EngineError);

impl From<EngineError> for Failure {
    fn from(e: EngineError) -> Self {
        Self(e)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let (status, kind) = if self.0.is_bad_input() {
            (StatusCode::UNPROCESSABLE_ENTITY, ErrorKind::BadInput)
        } else {
            (StatusCode::INTERNAL_SERVER_ERROR, ErrorKind::Runtime)
        };
        let body = ApiError {
            error: self.0.to_string(),
            kind,
        };
        (status, Json(body)).into_response()
    }
}
