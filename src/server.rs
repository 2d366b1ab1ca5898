//! The HTTP server: `router` composes the routes each feature module exposes, [`Front`]
//! answers the ingress check before routing, and `serve` runs on a bound listener until
//! the shutdown future resolves, so tests bind port 0 and run many gateways side by side.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::app::AppState;
use crate::web::ApiError;

/// Every route of the gateway.
pub fn router(state: AppState) -> Router {
    let max_body = state.config.http.max_body_bytes;
    let timeout = Duration::from_secs(state.config.http.request_timeout_seconds);
    let (api, openapi) = crate::admin::api_router(state.clone()).split_for_parts();
    let openapi = Arc::new(crate::admin::finish_openapi(openapi));
    let metrics = state.config.metrics.enabled && state.config.metrics.listen.is_none();
    let metrics = if metrics { Router::new().route("/metrics", get(crate::metrics::handler)) } else { Router::new() };
    Router::new()
        .merge(metrics)
        .merge(crate::login::routes(&state))
        .merge(crate::ingress::routes(&state))
        .merge(crate::op::routes())
        .merge(crate::web::public::routes())
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let doc = openapi.clone();
                async move { axum::Json(doc.as_ref().clone()) }
            }),
        )
        .merge(api.with_state(state.clone()))
        .merge(crate::console::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Before routing: an admin path without the token is a 401, never a 404 or 405.
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::admin::gate))
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::web::page::security_headers))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, timeout))
        // Inside the request-id layer, so a panic's 500 still carries the request id.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            tracing::error!("handler panicked");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error").into_response()
        }))
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::web::request_id::layer))
        .merge(ingress_routes())
        .with_state(state)
}

/// The ingress check, asked on every request of every protected app: outside the
/// request-id, logging and timeout layers (the ingress logs its own requests; the
/// handler logs its failures), so it costs little more than a hello world.
fn ingress_routes() -> Router<AppState> {
    Router::new()
        .route("/auth", get(crate::ingress::forward_auth))
        .route("/auth/{*path}", get(crate::ingress::forward_auth_envoy))
        .route("/oauth2/auth", get(crate::ingress::forward_auth))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            tracing::error!("auth handler panicked");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }))
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route; the API is described at /api/v1/openapi.json")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this route does not take that method; see /api/v1/openapi.json")
}

/// What `serve` runs: the ingress check (`GET /auth`, `/oauth2/auth`), asked on every
/// request of every protected app, is answered here before the router, so it pays for
/// no route matching, no per-request service clone and no extensions; everything else
/// goes to [`router`] (which also has the check, for callers that use it directly).
#[derive(Clone)]
pub struct Front {
    state: AppState,
    router: Router,
    /// The connection's peer, given to routed requests as `ConnectInfo`.
    peer: Option<std::net::SocketAddr>,
    /// The connection's requests, for its idle timeout.
    activity: Option<Arc<crate::listen::Activity>>,
}

impl Front {
    /// The front of `state`'s gateway.
    pub fn new(state: AppState) -> Self {
        Self { router: router(state.clone()), state, peer: None, activity: None }
    }

    /// This front for one connection from `peer`, whose requests `activity` counts.
    pub fn for_connection(&self, peer: std::net::SocketAddr, activity: Arc<crate::listen::Activity>) -> Self {
        Self { peer: Some(peer), activity: Some(activity), ..self.clone() }
    }
}

type Answer = std::pin::Pin<Box<dyn Future<Output = Result<axum::response::Response, std::convert::Infallible>> + Send>>;

impl tower::Service<axum::extract::Request> for Front {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: axum::extract::Request) -> Self::Future {
        use futures_util::FutureExt;
        // The connection is busy until the answer is ready (its idle clock stops).
        let busy = self.activity.as_ref().map(crate::listen::Activity::begin);
        if !crate::ingress::is_check(&req) {
            if let Some(peer) = self.peer {
                req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
            }
            let routed = tower::Service::call(&mut self.router, req);
            return Box::pin(async move {
                let _busy = busy;
                routed.await
            });
        }
        let state = self.state.clone();
        // The check reads no body.
        let (parts, _) = req.into_parts();
        let check = async move {
            let _busy = busy;
            crate::ingress::answer(&state, &parts).await
        };
        Box::pin(std::panic::AssertUnwindSafe(check).catch_unwind().map(|r| {
            Ok(r.unwrap_or_else(|_| {
                tracing::error!("auth handler panicked");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }))
        }))
    }
}

/// Serves until `shutdown` resolves, then finishes the requests in flight.
pub async fn serve(listener: TcpListener, state: AppState, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    // What the configuration file declares is in the store before the first request.
    crate::declare::reconcile(&state, &state.config.declared).await;
    let refresh = background_refresh(state.clone());
    let recorder = background_flush(state.clone());
    let backchannel = crate::op::backchannel::spawn(state.clone());
    crate::listen::check_fd_limit(state.config.http.max_connections);
    let served = crate::listen::run(listener, Front::new(state.clone()), &state.config.http, shutdown).await;
    refresh.abort();
    recorder.abort();
    backchannel.abort();
    // What was counted and not yet written (refusals of the current minute, the latest
    // logins) is written before the process goes.
    crate::login::record::flush(&state, true).await;
    served
}

/// Writes counted refusals and pending health every few seconds (see `login::record`).
fn background_flush(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            crate::login::record::flush(&state, false).await;
        }
    })
}

/// Serves `/metrics` alone on a listener of its own (`metrics.listen`) until `shutdown`.
pub async fn serve_metrics(listener: TcpListener, state: AppState, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    let app = Router::new().route("/metrics", get(crate::metrics::handler)).fallback(not_found).with_state(state);
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

/// Re-reads SAML IdP metadata by URL every `login.saml_metadata_refresh_seconds`.
fn background_refresh(state: AppState) -> tokio::task::JoinHandle<()> {
    let every = state.config.login.saml_metadata_refresh_seconds;
    tokio::spawn(async move {
        if every == 0 {
            return;
        }
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(every));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the first tick is immediate: the metadata was just read at save
        loop {
            tick.tick().await;
            for (_, result) in state.registry.refresh_saml_metadata().await {
                state.metrics.saml_metadata_refresh(result.is_ok());
            }
        }
    })
}
