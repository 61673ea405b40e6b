//! `/keys/*`: publish an identity key, read a user's keys.

use std::sync::Arc;

use kavro_proto::api::{Device, Devices, PublishKey, StatusResponse};
use kavro_proto::{UserId, validate};
use poem::Request;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};

use super::{ApiTags, BearerAuth, client_ip, ip_subject};
use crate::audit;
use crate::error::ApiError;
use crate::limits::Route;
use crate::state::AppState;
use crate::store::DeviceRecord;

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

/// The user's devices, with their names decrypted.
pub(super) async fn devices(state: &AppState, user: UserId) -> Result<Vec<Device>, ApiError> {
    let records = state.store.devices(user).await?;
    Ok(records.into_iter().map(|r| device_view(state, r)).collect())
}

fn device_view(state: &AppState, record: DeviceRecord) -> Device {
    let device_name = record.device_name.and_then(|stored| {
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
    /// Publishing a key you already published changes nothing.
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
        self.state
            .store
            .add_device(user, &key_hex, encrypted_name, self.state.clock.now())
            .await?;
        audit::key_published(user, &key_hex, client_ip(&self.state, req));
        Ok(Published::Created(Json(StatusResponse {
            status: "public key stored".to_owned(),
        })))
    }

    /// A user's published keys, oldest first
    ///
    /// An unknown user has no keys (`{"devices": []}`).
    #[oai(path = "/keys/:user_id", method = "get", operation_id = "get_keys")]
    async fn get(
        &self,
        req: &Request,
        #[oai(name = "user_id")] user_id: Path<i64>,
    ) -> Result<DevicesResponse, ApiError> {
        let ip = client_ip(&self.state, req);
        self.state
            .limiter
            .check(Route::Lookup, &ip_subject(ip))
            .await?;
        let devices = devices(&self.state, UserId(user_id.0)).await?;
        Ok(DevicesResponse::Ok(Json(Devices { devices })))
    }
}
