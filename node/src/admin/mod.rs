//! The admin API: an axum [`Router`] over an [`AdminBackend`].
//!
//! [`router`] builds the API, [`serve`] runs it on a listener (loopback by
//! default, chosen by the config). Tests drive the router directly with
//! `tower::ServiceExt::oneshot`, without a server.
//!
//! | Route                 | Auth  | Success                                                         | Errors |
//! |-----------------------|-------|-----------------------------------------------------------------|--------|
//! | `GET /health`         | none  | 200 `{"status":"ok"}` while the process answers                 | |
//! | `GET /ready`          | none  | 200 `Readiness` `{"ready":true,"checks":[{"name","ok","detail"}]}` | 503 `Readiness` when any check fails |
//! | `GET /v1/status`      | admin | 200 `NodeStatus` (node id, network, mode `dev`/`tdx`, uptime, version) | 401, 403 |
//! | `GET /v1/peers`       | admin | 200 `{"peers":[PeerView]}` with each peer's verdict (measurements, TCB status, matched entry), ticket expiry and services (`{kind, id, role}`) | 401, 403 |
//! | `GET /v1/attestation` | admin | 200 `AttestationView` (own quote hex, certificate PEM, measurements) | 401, 403 |
//! | `POST /v1/collateral` | admin | 201 `CollateralAccepted` if stored, 200 if the node already had it | 400 (bundle refused, code from the verifier), 401, 403, 413 `payload_too_large` (over 1 MiB) |
//! | `POST /v1/ticket`     | admin | 200 `TicketInstalled` (node id, expiry): this node's own ticket, validated for its id and network | 400 (ticket refused, code from the ticket error), 401, 403, 413 |
//! | `POST /v1/revoke`     | admin | 200 `Revoked` (id, closed sessions): body `{"id": jti or node id}`; sessions relying on matching tickets close with `TicketRevoked` and such tickets no longer admit | 400, 401, 403, 507 `revocations_full` |
//! | `GET /metrics`        | admin (see below) | 200 Prometheus text, `text/plain; version=0.0.4`      | 401, 403 |
//! | anything else         | none  |                                                                 | 404 `not_found`; 405 `method_not_allowed` with `Allow` |
//!
//! **Auth.** "admin" means `Authorization: Bearer <ticket>`: a JWT from a
//! trusted issuer, for this node's network (`aud`), currently valid, with
//! `"admin": true`. Its `sub` is the operator's id and may be any node-id
//! shaped value. No or malformed header: 401 `unauthenticated`; a refused
//! ticket: 401 with the ticket error's code (`malformed`, `expired`,
//! `not_yet_valid`, `wrong_audience`, `unknown_issuer`, `bad_signature`, ...);
//! both with `WWW-Authenticate: Bearer`. A valid ticket without the admin
//! permission: 403 `forbidden`. Tokens in headers rather than cookies mean a
//! browser never sends one on its own, so cross-site requests cannot act as
//! an admin.
//!
//! **`/metrics` needs an admin ticket too** by default: the metrics name
//! peers, refusal reasons and traffic volumes, which is reconnaissance for
//! anyone who can reach the port. Prometheus sends one with
//! `authorization: {credentials_file: ...}` in its scrape config;
//! [`AdminAuth::insecure_public_metrics`] turns the check off.
//!
//! **Errors** are always JSON: `{"error": {"code": "...", "message": "..."}}`
//! ([`ErrorBody`]). Codes are stable; messages are for people and never carry
//! internals (the node's log has the detail). Every refused call is logged on
//! one line (method, path, status, code, detail; never the token) and counted
//! in `tessella_admin_refused_total{code}`.
//!
//! Response bodies are the types in [`types`]: [`NodeStatus`], [`Readiness`],
//! [`PeersResponse`], [`AttestationView`], [`CollateralAccepted`].

mod auth;
mod backend;
mod error;
pub mod types;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use tokio::net::TcpListener;

pub use auth::{AdminAuth, AdminCaller};
pub use backend::AdminBackend;
pub use error::ApiError;
pub use types::{
    AttestationView, CollateralAccepted, CollateralRejected, ErrorBody, ErrorDetail, NodeMode,
    NodeStatus, PeerView, PeersResponse, Readiness, ReadinessCheck, RevokeRequest, Revoked,
    ServiceView, TicketInstalled, VerdictView,
};

use error::Refusal;

/// Largest `POST /v1/collateral` body, in bytes. A QuoteCollateralV3 bundle
/// is 16 to 25 KB of certificates and signed JSON (a little more as hex).
pub const MAX_COLLATERAL_BODY: usize = 1024 * 1024;

/// Largest `POST /v1/ticket` body (a JWT), in bytes.
pub const MAX_TICKET_BODY: usize = 8 * 1024;

/// `Content-Type` of `/metrics` (Prometheus text exposition format 0.0.4).
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How much of a request path a log line keeps.
const MAX_LOGGED_PATH: usize = 128;

type Backend = Arc<dyn AdminBackend>;

/// What `GET /v1/peers` lists (discovery's catalog joined with the
/// transport's sessions).
pub type PeerSource = Arc<dyn Fn() -> Vec<PeerView> + Send + Sync>;

/// Discovery's sub-router: `GET /v1/peers`.
pub fn peers_router(source: PeerSource) -> Router {
    Router::new()
        .route("/v1/peers", get(peers))
        .with_state(source)
}

/// The admin API over `backend` (the node itself) and one sub-router per
/// subsystem (discovery's [`peers_router`], later streams, groups and
/// collections), merged; every sub-router's routes need an admin ticket like
/// the node's. Callers are checked with `auth`. See the module documentation
/// for the routes.
pub fn router(
    backend: Arc<dyn AdminBackend>,
    auth: AdminAuth,
    subsystems: impl IntoIterator<Item = Router>,
) -> Router {
    router_with_scoped(backend, auth, subsystems, [])
}

/// [`router`] plus sub-routers that check their callers themselves (with
/// [`AdminAuth::authenticate`] and their own per-resource grants, as the
/// collections' key-value routes do): they are merged without the admin
/// requirement.
pub fn router_with_scoped(
    backend: Arc<dyn AdminBackend>,
    auth: AdminAuth,
    subsystems: impl IntoIterator<Item = Router>,
    scoped: impl IntoIterator<Item = Router>,
) -> Router {
    let require_admin = middleware::from_fn_with_state(auth.clone(), auth::require_admin);

    let mut admin = Router::new()
        .route("/v1/status", get(status))
        .route("/v1/attestation", get(attestation))
        .route(
            "/v1/collateral",
            post(upload_collateral).layer(DefaultBodyLimit::max(MAX_COLLATERAL_BODY)),
        )
        .route(
            "/v1/ticket",
            post(install_ticket).layer(DefaultBodyLimit::max(MAX_TICKET_BODY)),
        )
        .route(
            "/v1/revoke",
            post(revoke).layer(DefaultBodyLimit::max(MAX_TICKET_BODY)),
        );
    let mut open = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready));
    if auth.metrics_public() {
        tracing::warn!(
            "admin API serves /metrics without authentication (insecure_public_metrics); \
             anyone who reaches the admin port can read peer and refusal metrics"
        );
        open = open.route("/metrics", get(metrics));
    } else {
        admin = admin.route("/metrics", get(metrics));
    }

    let mut admin: Router = admin.with_state(backend.clone());
    for sub in subsystems {
        admin = admin.merge(sub);
    }
    // route_layer: authentication runs only for matched routes, so unknown
    // paths get 404 rather than 401, and before the body is read, so an
    // unauthenticated caller cannot make the node buffer an upload.
    let mut open = open.with_state(backend);
    for sub in scoped {
        open = open.merge(sub);
    }
    open.merge(admin.route_layer(require_admin))
        .fallback(not_found)
        // After every route is added: it only applies to existing routes.
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(log_refusals))
}

/// Serves `router` on `listener` until `shutdown` completes, then stops
/// accepting connections and waits for in-flight requests to finish.
pub async fn serve<F>(listener: TcpListener, router: Router, shutdown: F) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    match listener.local_addr() {
        Ok(addr) if !addr.ip().is_loopback() => tracing::warn!(
            %addr,
            "admin API listening on a non-loopback address; every /v1 call still needs an admin ticket"
        ),
        Ok(addr) => tracing::info!(%addr, "admin API listening"),
        Err(error) => tracing::warn!(%error, "admin API listening on an unknown address"),
    }
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn ready(State(backend): State<Backend>) -> Response {
    let mut readiness = backend.ready();
    readiness.ready = readiness.ready && readiness.checks.iter().all(|check| check.ok);
    let status = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(readiness)).into_response()
}

async fn status(State(backend): State<Backend>) -> Json<NodeStatus> {
    Json(backend.status())
}

async fn peers(State(source): State<PeerSource>) -> Json<PeersResponse> {
    Json(PeersResponse { peers: source() })
}

async fn attestation(State(backend): State<Backend>) -> Json<AttestationView> {
    Json(backend.attestation())
}

async fn revoke(
    State(backend): State<Backend>,
    Extension(AdminCaller(caller)): Extension<AdminCaller>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Revoked>, ApiError> {
    let body = body.map_err(|rejection| ApiError::BadBody(rejection.body_text()))?;
    let request: RevokeRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadBody(format!("expected {{\"id\": \"...\"}}: {e}")))?;
    let id = request.id.trim();
    if id.is_empty() || id.len() > 128 {
        return Err(ApiError::BadBody("id must be 1 to 128 characters".into()));
    }
    let closed_sessions = backend.revoke(id).ok_or(ApiError::RevocationsFull)?;
    tracing::warn!(operator = %caller.sub, id, closed_sessions, "ticket revoked through the admin API");
    Ok(Json(Revoked {
        id: id.to_string(),
        closed_sessions,
    }))
}

async fn install_ticket(
    State(backend): State<Backend>,
    Extension(AdminCaller(caller)): Extension<AdminCaller>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<TicketInstalled>, ApiError> {
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge {
                limit: MAX_TICKET_BODY,
            }
        } else {
            ApiError::BadBody(rejection.body_text())
        }
    })?;
    let token = std::str::from_utf8(&body)
        .map_err(|_| ApiError::BadBody("the ticket is not UTF-8 text".into()))?;
    let installed = backend
        .install_ticket(token)
        .map_err(ApiError::TicketRejected)?;
    tracing::info!(operator = %caller.sub, expires = installed.expires, "node ticket installed through the admin API");
    Ok(Json(installed))
}

async fn upload_collateral(
    State(backend): State<Backend>,
    Extension(AdminCaller(caller)): Extension<AdminCaller>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<CollateralAccepted>), ApiError> {
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge {
                limit: MAX_COLLATERAL_BODY,
            }
        } else {
            ApiError::BadBody(rejection.body_text())
        }
    })?;
    let len = body.len();
    // Verification checks signature chains: keep it off the async workers.
    let accepted = tokio::task::spawn_blocking(move || backend.upload_collateral(&body))
        .await
        .map_err(|error| ApiError::Internal(format!("collateral upload task failed: {error}")))??;
    tracing::info!(
        operator = %caller.sub,
        fmspc = %accepted.fmspc,
        valid_until = accepted.valid_until,
        stored = accepted.stored,
        bytes = len,
        "collateral uploaded through the admin API"
    );
    let status = if accepted.stored {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(accepted)))
}

async fn metrics(State(backend): State<Backend>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(METRICS_CONTENT_TYPE),
        )],
        backend.metrics_text(),
    )
        .into_response()
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Writes one log line per refused call, from the [`Refusal`] that every
/// [`ApiError`] response carries, and counts it.
async fn log_refusals(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path: String = request.uri().path().chars().take(MAX_LOGGED_PATH).collect();
    let mut response = next.run(request).await;
    let Some(Refusal { code, detail }) = response.extensions_mut().remove::<Refusal>() else {
        return response;
    };
    let status = response.status().as_u16();
    metrics::counter!("tessella_admin_refused_total", "code" => code).increment(1);
    match response.status() {
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => {
            tracing::debug!(%method, %path, status, code, %detail, "admin call refused")
        }
        s if s.is_server_error() => {
            tracing::error!(%method, %path, status, code, %detail, "admin call failed")
        }
        _ => tracing::warn!(%method, %path, status, code, %detail, "admin call refused"),
    }
    response
}
