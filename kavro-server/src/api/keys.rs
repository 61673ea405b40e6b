//! `/keys/*`: publish an identity key, retire one, read a user's keys.
//!
//! The key directory stays public (the original's clients fetch keys without
//! a token), but a device's name is shown only to its owner.

use std::sync::Arc;

use kavro_proto::api::{Device, Devices, PublishKey, StatusResponse};
use kavro_proto::{DeviceId, UserId, validate};
use poem::Request;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};

use super::{ApiTags, BearerAuth, MaybeBearer, client_ip, ip_subject};
use crate::audit;
use crate::error::ApiError;
use crate::limits::Route;
use crate::state::AppState;
use crate::store::{DeviceRecord, Published as StorePublished};

pub struct KeysApi {
    state: Arc<AppState>,
}

impl KeysApi {
    pub fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }
}

#[derive(ApiResponse)]
enum Published {
    #[oai(status = 201)]
    Created(Json<StatusResponse>),
}

#[derive(ApiResponse)]
enum DevicesResponse {
    #[oai(status = 200)]
    Ok(Json<Devices>),
}

#[derive(ApiResponse)]
enum Retired {
    /// The key is no longer served and cannot be published again.
    #[oai(status = 200)]
    Ok(Json<StatusResponse>),
}

/// The user's keys that are not retired, as `viewer` may see them: device
/// names only for the owner.
pub(super) async fn devices(
    state: &AppState,
    user: UserId,
    viewer: Option<UserId>,
) -> Result<Vec<Device>, ApiError> {
    let records = state.store.devices(user).await?;
    let owner = viewer == Some(user);
    Ok(records
        .into_iter()
        .map(|r| device_view(state, r, owner))
        .collect())
}

fn device_view(state: &AppState, record: DeviceRecord, owner: bool) -> Device {
    let device_name = record.device_name.filter(|_| owner).and_then(|stored| {
        state
            .fields
            .decrypt_string(&stored)
            .map_err(|e| tracing::warn!(device = record.id.0, error = %e, "device name unreadable"))
            .ok()
    });
    Device {
        id: record.id,
        user_id: record.user_id,
        identity_pubkey: record.identity_pubkey,
        device_name,
        created_at: record.created_at,
    }
}

#[OpenApi(tag = "ApiTags::Keys")]
impl KeysApi {
    /// Publish your identity key
    ///
    /// Publishing a key you already published changes nothing; a key you
    /// retired cannot be published again (`409`).
    #[oai(path = "/keys/publish", method = "post", operation_id = "publish_key")]
    async fn publish(
        &self,
        req: &Request,
        auth: BearerAuth,
        body: Json<PublishKey>,
    ) -> Result<Published, ApiError> {
        let user = auth.0.user_id;
        self.state
            .limiter
            .check(Route::Publish, &user.to_string())
            .await?;
        let PublishKey {
            identity_pubkey,
            device_name,
        } = body.0;
        let key = validate::pubkey_hex(identity_pubkey.as_str())
            .map_err(|m| ApiError::invalid_field("identity_pubkey", m))?;
        let device_name = device_name.map(kavro_proto::strings::DeviceName::into_inner);
        if let Some(name) = &device_name {
            validate::device_name(name).map_err(|m| ApiError::invalid_field("device_name", m))?;
        }
        let key_hex = hex::encode(key);
        let encrypted_name = device_name
            .filter(|n| !n.is_empty())
            .map(|n| self.state.fields.encrypt_str(&n));
        let published = self
            .state
            .store
            .add_device(user, &key_hex, encrypted_name, self.state.clock.now())
            .await?;
        if published == StorePublished::Retired {
            return Err(ApiError::conflict(
                "This key was retired; publish a new key instead",
            ));
        }
        audit::key_published(user, &key_hex, client_ip(&self.state, req));
        Ok(Published::Created(Json(StatusResponse {
            status: "public key stored".to_owned(),
        })))
    }

    /// A user's published keys, oldest first
    ///
    /// Public: no token needed. Retired keys are not listed. `device_name` is
    /// `null` unless the caller is authenticated as that user. An unknown
    /// user has no keys (`{"devices": []}`).
    #[oai(path = "/keys/:id", method = "get", operation_id = "get_keys")]
    async fn get(
        &self,
        req: &Request,
        auth: MaybeBearer,
        /// The user's id (`user_id`).
        #[oai(name = "id")]
        user_id: Path<i64>,
    ) -> Result<DevicesResponse, ApiError> {
        let ip = client_ip(&self.state, req);
        self.state
            .limiter
            .check(Route::Lookup, &ip_subject(&self.state, ip))
            .await?;
        let devices = devices(&self.state, UserId(user_id.0), auth.user_id()).await?;
        Ok(DevicesResponse::Ok(Json(Devices { devices })))
    }

    /// Retire one of your keys
    ///
    /// The path holds the key's `id` in the directory (`key_id`). A retired
    /// key is no longer served (contacts see the change as a key change) and
    /// cannot be published again. `404` when it is not one of your keys.
    #[oai(path = "/keys/:id", method = "delete", operation_id = "retire_key")]
    async fn retire(
        &self,
        req: &Request,
        auth: BearerAuth,
        /// The key's id (`key_id`).
        #[oai(name = "id")]
        key_id: Path<i64>,
    ) -> Result<Retired, ApiError> {
        let user = auth.0.user_id;
        self.state
            .limiter
            .check(Route::Publish, &user.to_string())
            .await?;
        let key = DeviceId(key_id.0);
        if !self
            .state
            .store
            .retire_device(user, key, self.state.clock.now())
            .await?
        {
            return Err(ApiError::not_found("No such key of yours"));
        }
        audit::key_retired(user, key, client_ip(&self.state, req));
        Ok(Retired::Ok(Json(StatusResponse {
            status: "key retired".to_owned(),
        })))
    }
}
