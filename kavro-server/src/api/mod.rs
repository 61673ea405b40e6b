//! The HTTP API (docs/API.md parts 1 and 2): one poem-openapi struct per route
//! group. Handlers stay thin: parse, check limits, call the store, map the
//! result. The same service is mounted at `/` and at `/api/v1`.

mod account;
mod auth;
mod health;
mod invites;
mod keys;
mod messages;
mod users;
pub mod v2;

use std::net::IpAddr;
use std::sync::Arc;

use kavro_proto::UserId;
use poem::Request;
use poem_openapi::auth::Bearer;
use poem_openapi::{OpenApiService, SecurityScheme, Tags};

use crate::auth::tokens::TokenError;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Tags)]
enum ApiTags {
    /// Accounts and access tokens.
    Auth,
    /// The public-key directory.
    Keys,
    /// Looking people up by name.
    Users,
    /// The message queue: send, fetch, acknowledge.
    Messages,
    /// Liveness, readiness and metrics.
    Operations,
}

/// The caller, as proven by a valid, unrevoked bearer token.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: UserId,
    pub jti: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// `Authorization: Bearer <JWT>` from `/auth/register` or `/auth/login`.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "check_bearer")]
pub struct BearerAuth(Caller);

async fn check_bearer(req: &Request, bearer: Bearer) -> poem::Result<Caller> {
    let Some(state) = req.data::<Arc<AppState>>() else {
        return Err(ApiError::internal(&"application state missing").into());
    };
    let claims = state
        .tokens
        .verify(&bearer.token, state.clock.now())
        .map_err(|err| match err {
            TokenError::Expired => ApiError::unauthorized("Token has expired; log in again"),
            TokenError::Invalid => ApiError::unauthorized("Invalid token"),
        })?;
    let revocation = state
        .limiter
        .token_state(&claims.jti, claims.user_id)
        .await
        .map_err(ApiError::from)?;
    if revocation.revoked || claims.generation < revocation.min_generation {
        return Err(ApiError::unauthorized("Token has been revoked; log in again").into());
    }
    Ok(Caller {
        user_id: claims.user_id,
        jti: claims.jti,
        expires_at: claims.expires_at,
    })
}

/// A bearer token if one is presented and valid, else anonymous: for the
/// public key directory, where the token only decides what is shown.
#[derive(SecurityScheme)]
pub enum MaybeBearer {
    Bearer(BearerAuth),
    #[oai(fallback)]
    Anonymous,
}

impl MaybeBearer {
    /// The caller's account, when authenticated.
    pub fn user_id(&self) -> Option<UserId> {
        match self {
            Self::Bearer(auth) => Some(auth.0.user_id),
            Self::Anonymous => None,
        }
    }
}

/// The client address for per-IP limits (see [`crate::http::client_ip`]).
fn client_ip(state: &AppState, req: &Request) -> Option<IpAddr> {
    crate::http::client_ip::client_ip(req, &state.settings.trusted_proxies)
}

/// The per-IP limiter subject: the client's network (see
/// [`crate::http::client_ip::ClientPrefixes`]); requests without a socket
/// address share one bucket.
fn ip_subject(state: &AppState, ip: Option<IpAddr>) -> String {
    state.settings.prefixes.subject(ip)
}

pub type Api = (
    auth::AuthApi,
    account::AccountApi,
    keys::KeysApi,
    users::UsersApi,
    messages::MessagesApi,
    health::HealthApi,
);

/// The root service: every v1 route and the v2 (MLS) routes under `/v2`.
pub fn root_service(state: &Arc<AppState>) -> OpenApiService<(Api, v2::V2Api), ()> {
    let api = (v1_api(state), v2::api(state));
    OpenApiService::new(api, "Kavro relay", env!("CARGO_PKG_VERSION"))
        .description(
            "The Kavro relay stores only opaque ciphertext between end-to-end encrypted \
             clients. Every v1 route is also served under /api/v1; the v2 (MLS) routes \
             are under /v2 only. Errors are {\"error\", \"status_code\"} JSON; validation \
             errors (422) add `details`; a v2 message for a past epoch (409) adds `epoch`.",
        )
        .server("/")
}

fn v1_api(state: &Arc<AppState>) -> Api {
    (
        auth::AuthApi::new(state.clone()),
        account::AccountApi::new(state.clone()),
        keys::KeysApi::new(state.clone()),
        users::UsersApi::new(state.clone()),
        messages::MessagesApi::new(state.clone()),
        health::HealthApi::new(state.clone()),
    )
}

/// The v1 OpenAPI service for `state`, documented as served under `prefix`.
pub fn service(state: &Arc<AppState>, server_url: &str) -> OpenApiService<Api, ()> {
    let api = v1_api(state);
    OpenApiService::new(api, "Kavro relay", env!("CARGO_PKG_VERSION"))
        .description(
            "The Kavro relay stores only opaque ciphertext between end-to-end encrypted \
             clients. Every route is also served under /api/v1. Errors are \
             {\"error\", \"status_code\"} JSON; validation errors (422) add `details`.",
        )
        .server(server_url)
}
