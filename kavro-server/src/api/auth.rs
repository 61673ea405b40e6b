//! `/auth/*`: register, login, who am I, logout.

use std::sync::Arc;

use kavro_proto::api::{
    Credentials, FieldError, Me, NewAccount, StatusResponse, TOKEN_TYPE, TokenResponse,
};
use kavro_proto::strings::InviteCode;
use kavro_proto::validate;
use poem::Request;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};

use super::{ApiTags, BearerAuth, client_ip, invites, ip_subject};
use crate::audit;
use crate::error::ApiError;
use crate::limits::{Refusal, Route};
use crate::state::AppState;
use crate::store::{NewUser, StoreError, TokenGeneration};

pub struct AuthApi {
    state: Arc<AppState>,
}

impl AuthApi {
    pub fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }

    fn issue(
        &self,
        user: kavro_proto::UserId,
        generation: TokenGeneration,
    ) -> Result<TokenResponse, ApiError> {
        issue(&self.state, user, generation)
    }
}

/// A new bearer token for `user` of `generation`.
pub(super) fn issue(
    state: &AppState,
    user: kavro_proto::UserId,
    generation: TokenGeneration,
) -> Result<TokenResponse, ApiError> {
    let token = state
        .tokens
        .issue(
            user,
            generation,
            state.clock.now(),
            state.settings.token_ttl,
        )
        .map_err(|e| ApiError::internal(&e))?;
    Ok(TokenResponse {
        access_token: token,
        token_type: TOKEN_TYPE.to_owned(),
    })
}

/// The answer to a login or password check while (account, client network) is locked.
pub(super) fn locked(retry_after: std::time::Duration) -> ApiError {
    ApiError::too_many(
        "Account temporarily locked after repeated failed logins; try again later.",
        retry_after,
    )
}

#[derive(ApiResponse)]
enum Registered {
    /// The account exists; here is a token for it.
    #[oai(status = 201)]
    Created(Json<TokenResponse>),
}

#[derive(ApiResponse)]
enum LoggedIn {
    #[oai(status = 200)]
    Ok(Json<TokenResponse>),
}

#[derive(ApiResponse)]
enum MeResponse {
    #[oai(status = 200)]
    Ok(Json<Me>),
}

#[derive(ApiResponse)]
enum LoggedOut {
    /// The token is revoked on every instance.
    #[oai(status = 200)]
    Ok(Json<StatusResponse>),
}

const BAD_CREDENTIALS: &str = "Incorrect username or password.";
const DISABLED: &str = "This account is disabled by the relay's operator.";

/// Records a registration or login as the account's last activity; a failure
/// only costs the operator's "last seen" column, never the login.
async fn seen(state: &AppState, user: kavro_proto::UserId) {
    if let Err(err) = state.ops.touch_last_seen(user, state.clock.now()).await {
        tracing::warn!(error = %crate::error::error_chain(&err), "could not record last seen");
    }
}

#[OpenApi(tag = "ApiTags::Auth")]
impl AuthApi {
    /// Create an account
    ///
    /// Username: 3–30 of `A-Z a-z 0-9 _ -`, unique ignoring case. Password:
    /// 8–128 characters with an uppercase letter, a lowercase letter and a digit.
    /// A relay with `registration = "invite"` needs a valid `invite_code`, and
    /// one with `registration = "closed"` creates no accounts (`403`).
    #[oai(path = "/auth/register", method = "post", operation_id = "register")]
    async fn register(
        &self,
        req: &Request,
        body: Json<NewAccount>,
    ) -> Result<Registered, ApiError> {
        let ip = client_ip(&self.state, req);
        self.state
            .limiter
            .check(Route::Register, &ip_subject(&self.state, ip))
            .await?;
        let NewAccount {
            username,
            password,
            invite_code,
        } = body.0;
        let invite = invites::required(&self.state, invite_code.as_ref().map(InviteCode::as_str))?;
        let mut details = Vec::new();
        if let Err(message) = validate::username(username.as_str()) {
            details.push(FieldError {
                field: "username".into(),
                message,
            });
        }
        if let Err(message) = validate::password(password.as_str()) {
            details.push(FieldError {
                field: "password".into(),
                message,
            });
        }
        if !details.is_empty() {
            return Err(ApiError::validation(details));
        }
        let username = username.as_str();
        let normalized = validate::normalize_username(username);
        let taken = || ApiError::bad_request(format!("Username '{username}' is already taken"));
        // Cheap early answer; the unique index settles races.
        if self.state.store.user_by_name(&normalized).await?.is_some() {
            return Err(taken());
        }
        let hash = self
            .state
            .passwords
            .hash(password.into_inner())
            .await
            .map_err(|e| ApiError::internal(&e))?;
        let taken_use = match &invite {
            Some(hash) => Some(invites::take(&self.state, hash).await?),
            None => None,
        };
        let now = self.state.clock.now();
        let created = self
            .state
            .store
            .create_user(NewUser {
                username,
                username_normalized: &normalized,
                password_hash: &hash,
                created_at: now,
            })
            .await;
        let user = match created {
            Ok(user) => user,
            Err(err) => {
                if let Some(id) = taken_use {
                    invites::give_back(&self.state, id).await;
                }
                return Err(match err {
                    StoreError::Conflict => taken(),
                    other => other.into(),
                });
            }
        };
        seen(&self.state, user).await;
        audit::registered(user, username, ip);
        if let Some(id) = taken_use {
            audit::invite_used(id.0, user);
        }
        Ok(Registered::Created(Json(
            self.issue(user, TokenGeneration::default())?,
        )))
    }

    /// Log in
    ///
    /// Unknown user and wrong password get the same answer after the same
    /// work. After repeated failures from one client network the account is
    /// locked for that network for a while (`429`, even with the right
    /// password), longer each time; logins from elsewhere are not affected.
    /// The right password for an account its operator disabled gets `403`.
    #[oai(path = "/auth/login", method = "post", operation_id = "login")]
    async fn login(&self, req: &Request, body: Json<Credentials>) -> Result<LoggedIn, ApiError> {
        let ip = client_ip(&self.state, req);
        let network = ip_subject(&self.state, ip);
        let limiter = &self.state.limiter;
        limiter.check(Route::Login, &network).await?;
        let Credentials { username, password } = body.0;
        let username = username.as_str();
        if let Err(refusal) = limiter.check_lockout(username, &network).await {
            if let Refusal::Limited { retry_after } = refusal {
                audit::login_while_locked(username, ip);
                return Err(locked(retry_after));
            }
            return Err(refusal.into());
        }
        let user = if validate::username(username).is_ok() {
            self.state
                .store
                .user_by_name(&validate::normalize_username(username))
                .await?
        } else {
            None
        };
        let stored_hash = user.as_ref().map(|u| u.password_hash.clone());
        let matches = self
            .state
            .passwords
            .verify(password.into_inner(), stored_hash)
            .await
            .map_err(|e| ApiError::internal(&e))?;
        match user {
            Some(user) if matches => {
                limiter.login_succeeded(username, &network).await;
                // Only someone with the password learns the account is disabled.
                if self.state.ops.is_disabled(user.id).await? {
                    audit::login_refused_disabled(user.id, &user.username, ip);
                    return Err(ApiError::forbidden(DISABLED));
                }
                seen(&self.state, user.id).await;
                audit::login_succeeded(user.id, &user.username, ip);
                Ok(LoggedIn::Ok(Json(
                    self.issue(user.id, user.token_generation)?,
                )))
            }
            _ => {
                audit::login_failed(username, ip);
                if let Some(locked_for) = limiter.login_failed(username, &network).await? {
                    audit::locked_out(username, ip, locked_for.as_secs());
                }
                Err(ApiError::unauthorized(BAD_CREDENTIALS))
            }
        }
    }

    /// Who the token belongs to
    #[oai(path = "/auth/me", method = "get", operation_id = "me")]
    async fn me(&self, auth: BearerAuth) -> Result<MeResponse, ApiError> {
        let user = self
            .state
            .store
            .user_by_id(auth.0.user_id)
            .await?
            .ok_or_else(|| ApiError::unauthorized("Account no longer exists"))?;
        Ok(MeResponse::Ok(Json(Me {
            user_id: user.id,
            username: user.username,
        })))
    }

    /// Log out
    ///
    /// Revokes the presented token on every server instance.
    #[oai(path = "/auth/logout", method = "post", operation_id = "logout")]
    async fn logout(&self, req: &Request, auth: BearerAuth) -> Result<LoggedOut, ApiError> {
        let caller = auth.0;
        self.state
            .limiter
            .revoke(&caller.jti, caller.expires_at)
            .await?;
        audit::logged_out(caller.user_id, client_ip(&self.state, req));
        Ok(LoggedOut::Ok(Json(StatusResponse {
            status: "logged out".to_owned(),
        })))
    }
}
