//! The HTTP API (JSON), on a unix socket by default and optionally on TCP with a bearer
//! token. Handlers parse, hand the work to the agent (tracker work on a blocking thread, one
//! transaction at a time), and turn the answer or the error into a response; every error is
//! a JSON object `{"error": "..."}` that names the problem.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;

use super::agent::Agent;
use crate::ops::{self, ClaimRequest, DevicesQuery, InstanceRequest, OpError};

/// An error answer.
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

impl From<OpError> for ApiError {
    fn from(e: OpError) -> Self {
        let status = match e {
            OpError::BadRequest(_) => StatusCode::BAD_REQUEST,
            OpError::Refused(_) | OpError::OverAllocated(_) => StatusCode::CONFLICT,
            OpError::NotFound(_) => StatusCode::NOT_FOUND,
            OpError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        ApiError(e.status(), format!("request body: {}", e.body_text()))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        ApiError(e.status(), format!("query: {}", e.body_text()))
    }
}

type Answer<T> = Result<Json<T>, ApiError>;

/// Runs blocking agent work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the operation failed: {e}"),
        )
    })?
}

/// The routes; `token` (for TCP) guards every one of them.
pub fn router(agent: Arc<Agent>, token: Option<String>) -> Router {
    let routes = Router::new()
        .route("/v1/health", get(health))
        .route("/v1/devices", get(devices))
        .route("/v1/verdicts", get(verdicts))
        .route("/v1/pools", get(pools))
        .route("/v1/claim", post(claim))
        .route("/v1/allocate", post(allocate))
        .route("/v1/free", post(free))
        .route("/v1/release", post(release))
        .route("/v1/policies", get(policies))
        .route("/v1/reconcile", post(reconcile))
        .route("/v1/placement", get(placement))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            ApiError(
                StatusCode::NOT_FOUND,
                "no such endpoint; see the README's API section".into(),
            )
        })
        .with_state(agent);
    match token {
        Some(token) => routes.layer(axum::middleware::from_fn(move |req, next| {
            let token = token.clone();
            async move { bearer(token, req, next).await }
        })),
        None => routes,
    }
}

/// Refuses a request without the configured bearer token.
async fn bearer(token: String, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Compare without an early exit, so timing says nothing about the token.
    let ok = given.is_some_and(|g| {
        g.len() == token.len()
            && g.bytes()
                .zip(token.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    });
    if ok {
        next.run(req).await
    } else {
        ApiError(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token (Authorization: Bearer <[api] token>)".into(),
        )
        .into_response()
    }
}

async fn health(State(agent): State<Arc<Agent>>) -> Json<serde_json::Value> {
    Json(agent.health())
}

async fn devices(
    State(agent): State<Arc<Agent>>,
    query: Result<Query<DevicesQuery>, QueryRejection>,
) -> Answer<Vec<ops::DeviceRow>> {
    let Query(query) = query?;
    blocking(move || Ok(agent.with_tracker(|t| ops::devices(t, &query))?))
        .await
        .map(Json)
}

async fn verdicts(State(agent): State<Arc<Agent>>) -> Json<Shared<super::agent::Verdicts>> {
    Json(Shared(agent.verdicts()))
}

/// What the agent shares behind an `Arc` (the last reconcile's verdict rows), serialised
/// where it is: straight into the response body, with no copy and no `serde_json::Value`.
pub struct Shared<T>(Arc<T>);

impl<T: Serialize> Serialize for Shared<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

async fn pools(State(agent): State<Arc<Agent>>) -> Answer<Vec<ops::PoolRow>> {
    blocking(move || Ok(agent.with_tracker(ops::pools)?))
        .await
        .map(Json)
}

async fn claim(
    State(agent): State<Arc<Agent>>,
    body: Result<Json<ClaimRequest>, JsonRejection>,
) -> Answer<Vec<pcitrack_tracker::ClaimedDevice>> {
    let Json(req) = body?;
    if let Some(consumer) = ops::consumer_of(&req)? {
        // Placement is read on the blocking thread, outside the tracker's lock: a slow
        // Placement delays this claim only, never the local API.
        return blocking(move || {
            let placement = agent.placement().ok_or_else(|| {
                ApiError::from(OpError::Refused(format!(
                    "placement_consumer {consumer}: this agent does not report to Placement \
                     ([pci] report_in_placement is false), so it has no allocation to claim"
                )))
            })?;
            Ok(ops::claim_by_consumer(placement, consumer, |allocated| {
                agent.with_tracker(|t| ops::claim_allocated(t, &req, consumer, allocated))
            })?)
        })
        .await
        .map(Json);
    }
    // The aliases parsed when the configuration loaded, and the topology read at the last
    // start or rescan (for the `socket` policy).
    let config = agent.config();
    let cells = agent.host_cells();
    blocking(move || Ok(agent.with_tracker(|t| ops::claim(t, &req, config.aliases(), &cells))?))
        .await
        .map(Json)
}

async fn allocate(
    State(agent): State<Arc<Agent>>,
    body: Result<Json<InstanceRequest>, JsonRejection>,
) -> Answer<Vec<String>> {
    let Json(req) = body?;
    blocking(move || {
        let allocated = agent.with_tracker(|t| ops::allocate(t, &req))?;
        // A one-time-use device is reserved from its allocation on (Placement: reserved = total).
        agent.report_placement();
        Ok(allocated)
    })
    .await
    .map(Json)
}

async fn free(
    State(agent): State<Arc<Agent>>,
    body: Result<Json<InstanceRequest>, JsonRejection>,
) -> Answer<pcitrack_tracker::FreeReport> {
    let Json(req) = body?;
    blocking(move || {
        let freed = agent.with_tracker(|t| ops::free(t, &req))?;
        // Devices unreported while in use go with their free.
        agent.report_placement();
        Ok(freed)
    })
    .await
    .map(Json)
}

async fn release(
    State(agent): State<Arc<Agent>>,
    body: Result<Json<ops::ReleaseRequest>, JsonRejection>,
) -> Answer<ops::DeviceRow> {
    let Json(req) = body?;
    blocking(move || {
        let released = agent.with_tracker(|t| ops::release(t, &req))?;
        // Released: back in the pools, and no longer reserved in Placement.
        agent.report_placement();
        Ok(released)
    })
    .await
    .map(Json)
}

async fn policies(State(agent): State<Arc<Agent>>) -> Json<impl Serialize> {
    Json(agent.policies_report())
}

async fn reconcile(State(agent): State<Arc<Agent>>) -> Answer<super::agent::ReconcileSummary> {
    blocking(move || {
        agent
            .reconcile("api")
            .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}")))
    })
    .await
    .map(Json)
}

/// What the agent reports to Placement, what Placement holds now, and the differences
/// (`enabled: false` when the agent does not report); an unreachable Placement is
/// `placement_error`, not a failed request. Placement is read on a thread of its own, not
/// on the capped blocking pool: a slow Placement (up to `[placement] timeout_secs`) must
/// never hold up the claims and reconciles queued there.
async fn placement(State(agent): State<Arc<Agent>>) -> Answer<super::placement::PlacementShow> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("pcitrack-placement-show".into())
        .spawn(move || {
            let _ = tx.send(agent.placement_show());
        })
        .map_err(|e| {
            ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot start a thread to read Placement: {e}"),
            )
        })?;
    rx.await.map(Json).map_err(|_| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "reading Placement failed (its thread panicked; see the log)".into(),
        )
    })
}

/// What `/metrics` serves: prometheus-client's `encode` writes the OpenMetrics text format
/// (`_total` counters, `# EOF` at the end), so that is the type declared; Prometheus
/// negotiates it like its own text format.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

async fn metrics(State(agent): State<Arc<Agent>>) -> Response {
    let text = tokio::task::spawn_blocking(move || {
        agent.metrics.render(
            &agent.devices_by_status(),
            agent.reserved_devices(),
            &agent.policies_report(),
            agent.placement().map(|p| p.status()).as_ref(),
        )
    })
    .await
    .unwrap_or_default();
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(METRICS_CONTENT_TYPE),
    );
    (headers, text).into_response()
}
