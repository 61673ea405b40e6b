//! `/users/{username}`: find someone by name (the client addresses people by name).

use std::sync::Arc;

use kavro_proto::api::UserInfo;
use kavro_proto::validate;
use poem::Request;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};

use super::{ApiTags, BearerAuth, client_ip, ip_subject};
use crate::error::ApiError;
use crate::limits::Route;
use crate::state::AppState;
use crate::store::UserRecord;

pub struct UsersApi {
    state: Arc<AppState>,
}

impl UsersApi {
    pub fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }
}

#[derive(ApiResponse)]
enum UserResponse {
    #[oai(status = 200)]
    Ok(Json<UserInfo>),
}

#[OpenApi(tag = "ApiTags::Users")]
impl UsersApi {
    /// Look a user up by name (ignoring case), with their keys
    ///
    /// Retired keys are not listed; `device_name` is `null` unless you look
    /// yourself up.
    #[oai(path = "/users/:username", method = "get", operation_id = "get_user")]
    async fn get(
        &self,
        req: &Request,
        auth: BearerAuth,
        #[oai(name = "username")] username: Path<String>,
    ) -> Result<UserResponse, ApiError> {
        let ip = client_ip(&self.state, req);
        self.state
            .limiter
            .check(Route::Lookup, &ip_subject(&self.state, ip))
            .await?;
        let user = user_named(&self.state, &username.0).await?;
        let devices = super::keys::devices(&self.state, user.id, Some(auth.0.user_id)).await?;
        Ok(UserResponse::Ok(Json(UserInfo {
            user_id: user.id,
            username: user.username,
            devices,
        })))
    }
}

/// The account named `username`, or `404 No such user` (also for a name
/// that is not a valid username, which no account can have).
pub(crate) async fn user_named(state: &AppState, username: &str) -> Result<UserRecord, ApiError> {
    let not_found = || ApiError::not_found("No such user");
    if validate::username(username).is_err() {
        return Err(not_found());
    }
    state
        .store
        .user_by_name(&validate::normalize_username(username))
        .await?
        .ok_or_else(not_found)
}
