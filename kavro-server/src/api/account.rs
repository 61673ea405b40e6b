//! The account's own lifecycle: change the password, log out everywhere,
//! delete the account. Each ends every session of the account on every
//! instance by raising its token generation (see [`crate::store::TokenGeneration`]).
//!
//! Checking the current password counts toward the login lockout of (account,
//! client network), exactly like a failed login: a stolen token must not turn
//! these routes into an unlimited password oracle.

use std::sync::Arc;
use std::time::Duration;

use kavro_proto::api::{ChangePassword, DeleteAccount, StatusResponse, TokenResponse};
use kavro_proto::strings::Password;
use kavro_proto::{UserId, validate};
use poem::Request;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};

use super::auth::{issue, locked};
use super::{ApiTags, BearerAuth, client_ip, ip_subject};
use crate::audit;
use crate::clock::after;
use crate::error::ApiError;
use crate::limits::{Refusal, Route};
use crate::state::AppState;
use crate::store::{StoreError, TokenGeneration, UserRecord};

pub struct AccountApi {
    state: Arc<AppState>,
}

#[derive(ApiResponse)]
enum PasswordChanged {
    /// A fresh token; every other token of the account is refused from now on.
    #[oai(status = 200)]
    Ok(Json<TokenResponse>),
}

#[derive(ApiResponse)]
enum LoggedOutEverywhere {
    /// Every token of the account issued so far, this one included, is refused.
    #[oai(status = 200)]
    Ok(Json<StatusResponse>),
}

#[derive(ApiResponse)]
enum Deleted {
    #[oai(status = 200)]
    Ok(Json<StatusResponse>),
}

/// How often, at most, a revocation that Redis refused is tried again.
const RETRY_EVERY: Duration = Duration::from_secs(2);

impl AccountApi {
    pub fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }

    /// The caller's live account (a deleted one's tokens are refused anyway).
    async fn account(&self, user: UserId) -> Result<UserRecord, ApiError> {
        self.state
            .store
            .user_by_id(user)
            .await?
            .ok_or_else(|| ApiError::unauthorized("Account no longer exists"))
    }

    /// Checks `password` against the account, under the login lockout of
    /// (account, client network): `429` while locked, `401` when wrong (which
    /// counts as a failed login).
    async fn check_password(
        &self,
        user: &UserRecord,
        password: Password,
        network: &str,
        ip: Option<std::net::IpAddr>,
    ) -> Result<(), ApiError> {
        let limiter = &self.state.limiter;
        limiter.check(Route::Login, network).await?;
        if let Err(refusal) = limiter.check_lockout(&user.username, network).await {
            return Err(match refusal {
                Refusal::Limited { retry_after } => locked(retry_after),
                Refusal::Unavailable => refusal.into(),
            });
        }
        let matches = self
            .state
            .passwords
            .verify(password.into_inner(), Some(user.password_hash.clone()))
            .await
            .map_err(|e| ApiError::internal(&e))?;
        if matches {
            limiter.login_succeeded(&user.username, network).await;
            return Ok(());
        }
        audit::password_check_failed(user.id, ip);
        if let Some(locked_for) = limiter.login_failed(&user.username, network).await? {
            audit::locked_out(&user.username, ip, locked_for.as_secs());
        }
        Err(ApiError::unauthorized("Incorrect password."))
    }

    /// Makes every instance refuse `user`'s tokens below `generation`. The
    /// database already holds the new generation; if the shared counters do
    /// not take it now, it is retried in the background until they do (and
    /// every authenticated request fails closed while they are down), and a
    /// relay that starts reloads it from the database.
    async fn revoke_everywhere(&self, user: UserId, generation: TokenGeneration) {
        let until = after(self.state.clock.now(), self.state.settings.token_ttl);
        if self
            .state
            .limiter
            .revoke_generation(user, generation, until)
            .await
            .is_ok()
        {
            return;
        }
        let state = self.state.clone();
        tokio::spawn(async move {
            while state.clock.now() < until {
                tokio::time::sleep(RETRY_EVERY).await;
                if state
                    .limiter
                    .revoke_generation(user, generation, until)
                    .await
                    .is_ok()
                {
                    tracing::info!(user = user.0, "session revocation recorded after a retry");
                    return;
                }
            }
        });
    }
}

#[OpenApi(tag = "ApiTags::Auth")]
impl AccountApi {
    /// Change your password
    ///
    /// Answers a fresh token; every other token of the account, including the
    /// one presented, is refused afterwards on every instance. A wrong
    /// `current_password` counts as a failed login (`401`, and the lockout's
    /// `429`). `new_password` follows the registration rules (`422`).
    #[oai(
        path = "/auth/password",
        method = "post",
        operation_id = "change_password"
    )]
    async fn change_password(
        &self,
        req: &Request,
        auth: BearerAuth,
        body: Json<ChangePassword>,
    ) -> Result<PasswordChanged, ApiError> {
        let ip = client_ip(&self.state, req);
        let network = ip_subject(&self.state, ip);
        let ChangePassword {
            current_password,
            new_password,
        } = body.0;
        validate::password(new_password.as_str())
            .map_err(|m| ApiError::invalid_field("new_password", m))?;
        let user = self.account(auth.0.user_id).await?;
        self.check_password(&user, current_password, &network, ip)
            .await?;
        let hash = self
            .state
            .passwords
            .hash(new_password.into_inner())
            .await
            .map_err(|e| ApiError::internal(&e))?;
        let generation = self
            .state
            .store
            .change_password(user.id, &hash, self.state.clock.now())
            .await
            .map_err(gone)?;
        self.revoke_everywhere(user.id, generation).await;
        audit::password_changed(user.id, ip);
        Ok(PasswordChanged::Ok(Json(issue(
            &self.state,
            user.id,
            generation,
        )?)))
    }

    /// Log out everywhere
    ///
    /// Every token of the account issued so far, including the one presented,
    /// is refused afterwards, on every instance.
    #[oai(
        path = "/auth/logout-all",
        method = "post",
        operation_id = "logout_all"
    )]
    async fn logout_all(
        &self,
        req: &Request,
        auth: BearerAuth,
    ) -> Result<LoggedOutEverywhere, ApiError> {
        let user = auth.0.user_id;
        let generation = self
            .state
            .store
            .revoke_tokens(user, self.state.clock.now())
            .await
            .map_err(gone)?;
        self.revoke_everywhere(user, generation).await;
        audit::logged_out_everywhere(user, client_ip(&self.state, req));
        Ok(LoggedOutEverywhere::Ok(Json(StatusResponse {
            status: "logged out everywhere".to_owned(),
        })))
    }

    /// Delete your account
    ///
    /// Needs the password. The account's keys, the messages addressed to it
    /// (queued, and their receipts) and its sessions go at once; messages it
    /// sent that still wait for their recipients stay until delivered or
    /// expired (their receipts go). The username stays reserved for the
    /// configured period (`username_reservation`, 30 days by default), so
    /// nobody can take it over at once.
    #[oai(path = "/auth/me", method = "delete", operation_id = "delete_account")]
    async fn delete_account(
        &self,
        req: &Request,
        auth: BearerAuth,
        body: Json<DeleteAccount>,
    ) -> Result<Deleted, ApiError> {
        let ip = client_ip(&self.state, req);
        let network = ip_subject(&self.state, ip);
        let user = self.account(auth.0.user_id).await?;
        self.check_password(&user, body.0.password, &network, ip)
            .await?;
        let deleted = self
            .state
            .store
            .delete_account(user.id, self.state.clock.now())
            .await
            .map_err(gone)?;
        self.revoke_everywhere(user.id, deleted.generation).await;
        audit::account_deleted(user.id, &user.username, ip);
        Ok(Deleted::Ok(Json(StatusResponse {
            status: "account deleted".to_owned(),
        })))
    }
}

/// The account went away between the token check and the change.
fn gone(err: StoreError) -> ApiError {
    match err {
        StoreError::NotFound => ApiError::unauthorized("Account no longer exists"),
        other => other.into(),
    }
}
