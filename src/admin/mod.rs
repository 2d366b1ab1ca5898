//! The admin REST API under `/api/v1/admin`, described by the OpenAPI document at
//! `/api/v1/openapi.json` (generated from these handlers, so it cannot drift from the
//! routes). Every admin route requires the admin token, compared in constant time;
//! every change is audited by the layer that makes it.

mod clients;
mod connections;
mod directory;
mod system;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::web::ApiError;

/// The actor recorded in the audit log for admin-token requests.
pub const ACTOR: &str = "admin";

#[derive(OpenApi)]
#[openapi(
    info(title = "ssogate API", description = "Admin API of the ssogate identity federation gateway. Admin routes need `Authorization: Bearer <admin token>`."),
    modifiers(&BearerAuth),
    components(schemas(crate::web::error::ErrorBody)),
    tags(
        (name = "connections", description = "Upstream identity provider connections"),
        (name = "presets", description = "Provider presets"),
        (name = "users", description = "Users of the directory"),
        (name = "groups", description = "Groups and memberships"),
        (name = "invitations", description = "Invitations by email"),
        (name = "audit", description = "Audit log"),
        (name = "keys", description = "The gateway's signing keys"),
        (name = "admin", description = "The admin token"),
        (name = "clients", description = "Applications that sign in through ssogate (OpenID Provider)"),
        (name = "public", description = "Unauthenticated routes"),
    )
)]
struct ApiDoc;

struct BearerAuth;

/// Adds the answers the shared layers give to every operation they cover: 401 from the
/// admin token check; 400, 413, 415 and 422 from the JSON body reader.
struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let error = |d: &str| {
            ResponseBuilder::new()
                .description(d)
                .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build())
                .build()
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            let admin = path.starts_with("/api/v1/admin/");
            for op in [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete].into_iter().flatten() {
                let r = &mut op.responses.responses;
                if admin {
                    r.entry("401".into()).or_insert_with(|| error("The admin token is missing or wrong").into());
                }
                if op.request_body.is_some() {
                    r.entry("400".into()).or_insert_with(|| error("The body is not valid JSON").into());
                    r.entry("413".into()).or_insert_with(|| error("The body is too large").into());
                    r.entry("415".into()).or_insert_with(|| error("The body is not application/json").into());
                    r.entry("422".into()).or_insert_with(|| error("A field is missing, unknown or invalid").into());
                }
            }
        }
    }
}

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some("The admin token")).build()),
        );
    }
}

/// The API routes with their OpenAPI description.
pub fn api_router(state: AppState) -> OpenApiRouter<AppState> {
    let admin = OpenApiRouter::new()
        .routes(routes!(connections::list_connections, connections::create_connection))
        .routes(routes!(connections::get_connection, connections::update_connection, connections::delete_connection))
        .routes(routes!(connections::activate_connection))
        .routes(routes!(connections::deactivate_connection))
        .routes(routes!(connections::generate_sp_keypair))
        .routes(routes!(connections::sp_certificate))
        .routes(routes!(connections::discover))
        .routes(routes!(connections::start_test))
        .routes(routes!(connections::test_result))
        .routes(routes!(system::list_presets))
        .routes(routes!(directory::list_users, directory::create_user))
        .routes(routes!(directory::get_user, directory::update_user, directory::delete_user))
        .routes(routes!(directory::list_user_sessions, directory::end_user_sessions))
        .routes(routes!(directory::end_user_session))
        .routes(routes!(directory::list_connection_sessions))
        .routes(routes!(directory::link_user, directory::unlink_user))
        .routes(routes!(directory::list_groups, directory::create_group))
        .routes(routes!(directory::get_group, directory::update_group, directory::delete_group))
        .routes(routes!(directory::list_members))
        .routes(routes!(directory::add_member, directory::remove_member))
        .routes(routes!(directory::list_invitations, directory::create_invitation))
        .routes(routes!(directory::delete_invitation))
        .routes(routes!(system::list_audit))
        .routes(routes!(system::list_keys, system::rotate_key))
        .routes(routes!(system::rotate_admin_token))
        .routes(routes!(clients::list_clients, clients::create_client))
        .routes(routes!(clients::get_client, clients::update_client, clients::delete_client))
        .route_layer(axum::middleware::from_fn_with_state(state, require_admin));
    OpenApiRouter::with_openapi(ApiDoc::openapi()).routes(routes!(crate::web::public::list_providers)).nest("/api/v1/admin", admin)
}

/// The OpenAPI document, with the answers of the shared layers added.
pub fn finish_openapi(mut doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    CommonResponses.modify(&mut doc);
    doc
}

/// Refuses a request without the admin token (401, with `WWW-Authenticate`).
async fn require_admin(State(app): State<AppState>, req: Request, next: Next) -> Result<Response, ApiError> {
    authorized(&app, &req).await?;
    Ok(next.run(req).await)
}

/// The same check on every path under `/api/v1/admin`, before routing: without the
/// token, an unknown path or a wrong method is a 401 too, so nothing of the API's
/// shape shows before the token does.
pub async fn gate(State(app): State<AppState>, req: Request, next: Next) -> Result<Response, ApiError> {
    let path = req.uri().path();
    if path == "/api/v1/admin" || path.starts_with("/api/v1/admin/") {
        authorized(&app, &req).await?;
    }
    Ok(next.run(req).await)
}

fn authorized(app: &AppState, req: &Request) -> impl std::future::Future<Output = Result<(), ApiError>> + Send + 'static {
    // Owned before the await: the request itself is not `Sync`.
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(|t| t.trim().to_string());
    let app = app.clone();
    async move { check_token(&app, presented).await }
}

async fn check_token(app: &AppState, presented: Option<String>) -> Result<(), ApiError> {
    let ok = match presented {
        Some(t) => app.admin_token.accepts(app.store.as_ref(), &t).await?,
        None => false,
    };
    if !ok {
        let mut e = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "admin routes need Authorization: Bearer <admin token> (printed at first start, or SSOGATE_ADMIN_TOKEN)",
        );
        e.www_authenticate = Some("Bearer realm=\"ssogate-admin\"");
        return Err(e);
    }
    Ok(())
}
