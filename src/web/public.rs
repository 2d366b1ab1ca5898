//! Unauthenticated routes: health, readiness, and the list of active connections that
//! login pages render as buttons.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ApiError;
use crate::app::AppState;
use crate::connection::Protocol;
use crate::store::ConnectionSort;

/// A login button.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProviderButton {
    /// Connection id.
    pub id: String,
    /// Display name.
    pub display_name: String,
    /// Protocol.
    pub protocol: Protocol,
    /// Provider preset (for the icon).
    pub provider: String,
    /// Where the button goes.
    pub login_url: String,
}

/// Active connections for login buttons: no secrets, no inactive ones.
#[utoipa::path(get, path = "/api/v1/providers", tag = "public",
    responses((status = 200, description = "Active connections, by name", body = [ProviderButton])))]
pub async fn list_providers(State(app): State<AppState>) -> Result<Json<Vec<ProviderButton>>, ApiError> {
    let base = app.config.public_base();
    let all = app.store.connection_list(ConnectionSort::Name, false).await?;
    Ok(Json(
        all.into_iter()
            .filter(|c| c.active)
            .filter_map(|c| {
                Some(ProviderButton {
                    login_url: format!("{base}/login/{}", c.id),
                    protocol: Protocol::parse(&c.protocol)?,
                    id: c.id,
                    display_name: c.display_name,
                    provider: c.provider,
                })
            })
            .collect(),
    ))
}

/// The health checks, also under oauth2-proxy's names (`/ping`, `/ready`) so probes and
/// load-balancer checks written for it keep working.
pub fn routes() -> axum::Router<AppState> {
    use axum::routing::get;
    axum::Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).route("/ping", get(ping)).route("/ready", get(readyz))
}

/// oauth2-proxy's liveness check: `OK`.
pub async fn ping() -> &'static str {
    "OK"
}

/// The process is up.
pub async fn healthz() -> &'static str {
    "ok"
}

/// The store and the state store answer, and the state store takes writes; 503 naming
/// what does not (a state store that answers pings but is full, read-only or out of
/// memory stops every login just the same).
pub async fn readyz(State(app): State<AppState>) -> (StatusCode, String) {
    let wait = std::time::Duration::from_secs(2);
    let (store, state) = tokio::join!(tokio::time::timeout(wait, app.store.ping()), tokio::time::timeout(wait, app.ephemeral.ping()));
    let redis = app.config.state.url.is_some();
    let state_name = if redis { "redis (state store) unreachable" } else { "state store unreachable" };
    let unavailable = |why: &str| (StatusCode::SERVICE_UNAVAILABLE, why.to_string());
    match (store, state) {
        (Ok(Ok(())), Ok(Ok(()))) => {}
        (Ok(Ok(())), _) => return unavailable(state_name),
        (_, Ok(Ok(()))) => return unavailable("store unreachable"),
        _ if redis => return unavailable("store and redis (state store) unreachable"),
        _ => return unavailable("store and state store unreachable"),
    }
    let probe = format!("readyz:{}", crate::id::token(16));
    match tokio::time::timeout(wait, app.ephemeral.put_new(&probe, "1", 5_000)).await {
        Ok(Ok(_)) => {
            let _ = app.ephemeral.take(&probe).await;
            (StatusCode::OK, "ready".into())
        }
        Ok(Err(e)) => {
            super::outage::STATE.failed(&e);
            unavailable(&format!("the state store refuses writes: {e}"))
        }
        Err(_) => unavailable("the state store did not answer a write in time"),
    }
}
