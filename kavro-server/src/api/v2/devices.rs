//! `/v2/devices`, `/v2/users/{username}/devices`: an account's devices, the
//! links that admitted them, revocation, and device sessions.

use std::sync::Arc;
use std::time::Duration;

use kavro_proto::api::TOKEN_TYPE;
use kavro_proto::v2::api::{
    DeviceLink, DeviceToken, MlsDevice, MlsDeviceList, RegisterDevice, SessionProof,
};
use kavro_proto::v2::limits::{DEVICE_TOKEN_TTL_SECS, SESSION_SKEW_SECS};
use kavro_proto::v2::link::{self, SignatureKey};
use kavro_proto::v2::{MlsDeviceId, SignatureB64, SignatureKeyB64};
use kavro_proto::{UserId, validate};
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};

use super::{Principal, V2Auth, V2Tags, v2_error};
use crate::api::users::user_named;
use crate::error::ApiError;
use crate::limits::Route;
use crate::state::AppState;
use crate::store::v2::{DeviceRow, NewDevice};

pub struct DevicesApi {
    state: Arc<AppState>,
}

impl DevicesApi {
    pub fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }
}

#[derive(ApiResponse)]
enum Registered {
    #[oai(status = 201)]
    Created(Json<MlsDevice>),
}

#[derive(ApiResponse)]
enum DeviceAnswer {
    #[oai(status = 200)]
    Ok(Json<MlsDevice>),
}

#[derive(ApiResponse)]
enum ListAnswer {
    #[oai(status = 200)]
    Ok(Json<MlsDeviceList>),
}

#[derive(ApiResponse)]
enum SessionAnswer {
    #[oai(status = 201)]
    Created(Json<DeviceToken>),
}

pub(super) fn device_view(row: DeviceRow) -> MlsDevice {
    MlsDevice {
        id: row.id,
        user_id: row.user_id,
        signature_key: SignatureKeyB64::from(validate::base64_encode(&row.signature_key)),
        link: row.link.map(|(signer, signature)| DeviceLink {
            signer_device_id: signer,
            signature: SignatureB64::from(validate::base64_encode(&signature)),
        }),
        created_at: row.created_at,
        revoked_at: row.revoked_at,
    }
}

/// Parses a signature key field (`422` when it is not a valid Ed25519 key).
pub(super) fn signature_key(field: &str, text: &str) -> Result<SignatureKey, ApiError> {
    SignatureKey::parse(text).map_err(|m| ApiError::invalid_field(field, m))
}

pub(super) fn signature(field: &str, text: &str) -> Result<[u8; 64], ApiError> {
    link::parse_signature(text).map_err(|m| ApiError::invalid_field(field, m))
}

/// An active device of `user` (its key), for checking a link it signed.
pub(super) async fn active_signer(
    state: &AppState,
    user: UserId,
    signer: MlsDeviceId,
) -> Result<SignatureKey, ApiError> {
    let row = state
        .v2
        .store
        .device(signer)
        .await
        .map_err(v2_error)?
        .filter(|d| d.user_id == user && d.is_active())
        .ok_or_else(|| {
            ApiError::forbidden("The link's signer is not an active device of this account")
        })?;
    SignatureKey::from_bytes(&row.signature_key).map_err(|e| ApiError::internal(&e))
}

/// A device of `user`, or `404` (another account's device is not shown).
async fn own_device(state: &AppState, user: UserId, id: i64) -> Result<DeviceRow, ApiError> {
    state
        .v2
        .store
        .device(MlsDeviceId(id))
        .await
        .map_err(v2_error)?
        .filter(|d| d.user_id == user)
        .ok_or_else(|| ApiError::not_found("No such device in this account"))
}

#[OpenApi(tag = "V2Tags::V2Devices")]
impl DevicesApi {
    /// Register a device
    ///
    /// With the account token. The account's first device needs no `link`
    /// (it becomes the root); every later one needs a `link`: an active
    /// device's signature over the device-link bytes (docs/PROTOCOL.md).
    #[oai(
        path = "/v2/devices",
        method = "post",
        operation_id = "v2_register_device"
    )]
    async fn register(
        &self,
        auth: V2Auth,
        body: Json<RegisterDevice>,
    ) -> Result<Registered, ApiError> {
        let state = &self.state;
        let user = auth
            .0
            .account_spending(state, Route::Publish)
            .await?
            .0
            .user_id;
        let key = signature_key("signature_key", body.0.signature_key.as_str())?;
        let link = match &body.0.link {
            None => None,
            Some(link) => {
                let sig = signature("link.signature", link.signature.as_str())?;
                let signer = active_signer(state, user, link.signer_device_id).await?;
                link::verify_device_link(user, &signer, &key, &sig).map_err(|_| {
                    ApiError::forbidden("The device link signature does not verify")
                })?;
                Some((link.signer_device_id, sig))
            }
        };
        let now = state.clock.now();
        let id = state
            .v2
            .store
            .add_device(NewDevice {
                user,
                signature_key: key.as_bytes(),
                link: link.as_ref().map(|(s, sig)| (*s, sig.as_slice())),
                now,
            })
            .await
            .map_err(v2_error)?;
        tracing::info!(target: "kavro::audit", event = "v2_device_added", user_id = user.0, device_id = id.0, linked = link.is_some());
        let row = own_device(state, user, id.0).await?;
        Ok(Registered::Created(Json(device_view(row))))
    }

    /// An account's devices, with their links
    ///
    /// Revoked devices are listed too (with `revoked_at`): a later device's
    /// chain of links may pass through them. Oldest first.
    #[oai(
        path = "/v2/users/:username/devices",
        method = "get",
        operation_id = "v2_list_devices"
    )]
    async fn list(
        &self,
        auth: V2Auth,
        #[oai(name = "username")] username: Path<String>,
    ) -> Result<ListAnswer, ApiError> {
        let state = &self.state;
        auth.0.spend(state, Route::Lookup).await?;
        let user = user_named(state, &username.0).await?;
        let devices = state.v2.store.devices_of(user.id).await.map_err(v2_error)?;
        Ok(ListAnswer::Ok(Json(MlsDeviceList {
            user_id: user.id,
            username: user.username,
            devices: devices.into_iter().map(device_view).collect(),
        })))
    }

    /// Revoke a device
    ///
    /// By the account (account token) or by another device of the account.
    /// The device is refused everywhere from then on; its key packages and
    /// queue are deleted. Revoking it again changes nothing.
    #[oai(
        path = "/v2/devices/:id/revoke",
        method = "post",
        operation_id = "v2_revoke_device"
    )]
    async fn revoke(
        &self,
        auth: V2Auth,
        #[oai(name = "id")] id: Path<i64>,
    ) -> Result<DeviceAnswer, ApiError> {
        let state = &self.state;
        let user = auth.0.user_id();
        auth.0.spend(state, Route::Publish).await?;
        own_device(state, user, id.0).await?;
        let by = match &auth.0 {
            Principal::Device(device) => Some(device.device_id.0),
            Principal::Account(..) => None,
        };
        let newly = state
            .v2
            .store
            .revoke_device(MlsDeviceId(id.0), state.clock.now())
            .await
            .map_err(v2_error)?;
        if newly {
            tracing::info!(target: "kavro::audit", event = "v2_device_revoked", user_id = user.0, device_id = id.0, by_device = ?by);
        }
        Ok(DeviceAnswer::Ok(Json(device_view(
            own_device(state, user, id.0).await?,
        ))))
    }

    /// Open a device session
    ///
    /// With the account token and a proof of possession of the device key:
    /// a signature over the session bytes (docs/PROTOCOL.md) with a
    /// timestamp within 5 minutes of the relay's clock. Answers a device
    /// token valid for an hour.
    #[oai(
        path = "/v2/devices/:id/session",
        method = "post",
        operation_id = "v2_device_session"
    )]
    async fn session(
        &self,
        auth: V2Auth,
        #[oai(name = "id")] id: Path<i64>,
        body: Json<SessionProof>,
    ) -> Result<SessionAnswer, ApiError> {
        let state = &self.state;
        let (caller, generation) = auth.0.account_spending(state, Route::Publish).await?;
        let user = caller.user_id;
        let device = own_device(state, user, id.0).await?;
        if !device.is_active() {
            return Err(ApiError::forbidden("This device has been revoked"));
        }
        let now = state.clock.now();
        if (body.0.timestamp - now.timestamp()).abs() > SESSION_SKEW_SECS {
            return Err(ApiError::invalid_field(
                "timestamp",
                "must be within 5 minutes of the relay's clock (Unix seconds)",
            ));
        }
        let sig = signature("signature", body.0.signature.as_str())?;
        let key =
            SignatureKey::from_bytes(&device.signature_key).map_err(|e| ApiError::internal(&e))?;
        key.verify(
            &link::session_message(user, device.id, body.0.timestamp),
            &sig,
        )
        .map_err(|_| ApiError::forbidden("The session proof does not verify"))?;
        let (token, expires_at) = state
            .v2
            .tokens
            .issue(
                user,
                device.id,
                generation,
                now,
                Duration::from_secs(DEVICE_TOKEN_TTL_SECS as u64),
            )
            .map_err(|e| ApiError::internal(&e))?;
        Ok(SessionAnswer::Created(Json(DeviceToken {
            access_token: token,
            token_type: TOKEN_TYPE.to_owned(),
            device_id: device.id,
            expires_at,
        })))
    }
}
