//! The `/v2` routes: Kavro v2 on MLS (docs/PROTOCOL.md, "Kavro v2"). Served
//! only at the root (not under `/api/v1`), in the same OpenAPI document as v1.
//!
//! Two kinds of bearer token are accepted ([`V2Auth`]): the account token of
//! v1 (register / login) for account-level routes, and a device token
//! (`POST /v2/devices/{id}/session`, proof of possession of the device key)
//! for everything a device does: key packages, groups, its queue, approving
//! links. Handlers stay thin: parse, check limits, call the v2 store, map.

mod blobs;
mod devices;
mod groups;
mod key_packages;
mod links;
mod queue;

use std::sync::Arc;

use kavro_proto::UserId;
use kavro_proto::v2::MlsDeviceId;
use kavro_proto::v2::limits::{MAX_KEY_PACKAGE_BYTES, MAX_MLS_MESSAGE_BYTES};
use kavro_proto::validate;
use poem::Request;
use poem_openapi::auth::Bearer;
use poem_openapi::{SecurityScheme, Tags};

use super::Caller;
use crate::auth::tokens::TokenError;
use crate::error::ApiError;
use crate::limits::Route;
use crate::state::AppState;
use crate::store::TokenGeneration;
use crate::store::v2::V2Error;

pub type V2Api = (
    devices::DevicesApi,
    links::LinksApi,
    key_packages::KeyPackagesApi,
    groups::GroupsApi,
    queue::QueueApi,
    blobs::BlobsApi,
);

pub fn api(state: &Arc<AppState>) -> V2Api {
    (
        devices::DevicesApi::new(state.clone()),
        links::LinksApi::new(state.clone()),
        key_packages::KeyPackagesApi::new(state.clone()),
        groups::GroupsApi::new(state.clone()),
        queue::QueueApi::new(state.clone()),
        blobs::BlobsApi::new(state.clone()),
    )
}

// The variants are the tag names in the OpenAPI document shared with v1,
// where the prefix tells the v2 routes apart.
#[allow(clippy::enum_variant_names)]
#[derive(Tags)]
enum V2Tags {
    /// v2: an account's devices, their links and sessions.
    V2Devices,
    /// v2: linking a new installation with a one-time code.
    V2Links,
    /// v2: MLS key packages.
    V2KeyPackages,
    /// v2: MLS groups, commits and messages (one order per group).
    V2Groups,
    /// v2: each device's ordered queue.
    V2Queue,
    /// v2: encrypted attachments (blobs), uploaded in chunks.
    V2Blobs,
}

/// A device proven by a device token.
#[derive(Debug, Clone)]
pub struct DeviceCaller {
    pub user_id: UserId,
    pub device_id: MlsDeviceId,
    pub signature_key: Vec<u8>,
}

/// Who is calling a v2 route.
#[derive(Debug, Clone)]
pub enum Principal {
    /// An account token (v1 register / login), with its token generation.
    Account(Caller, TokenGeneration),
    /// A device token of an active device.
    Device(DeviceCaller),
}

impl Principal {
    pub fn user_id(&self) -> UserId {
        match self {
            Self::Account(caller, _) => caller.user_id,
            Self::Device(device) => device.user_id,
        }
    }

    /// The calling device; `None` for an account token.
    pub fn device_id(&self) -> Option<MlsDeviceId> {
        match self {
            Self::Device(device) => Some(device.device_id),
            Self::Account(..) => None,
        }
    }

    /// The calling device, for device routes.
    pub fn device(&self) -> Result<&DeviceCaller, ApiError> {
        match self {
            Self::Device(device) => Ok(device),
            Self::Account(..) => Err(Self::needs_device_token()),
        }
    }

    fn needs_device_token() -> ApiError {
        ApiError::forbidden("This route needs a device token: POST /v2/devices/{id}/session")
    }

    /// The calling device, which must be `id` (a device's own resources).
    pub fn device_is(&self, id: i64) -> Result<&DeviceCaller, ApiError> {
        let device = self.device()?;
        if device.device_id.0 != id {
            return Err(not_own_device());
        }
        Ok(device)
    }

    /// The account token (and its generation), for account routes.
    pub fn account(&self) -> Result<(&Caller, TokenGeneration), ApiError> {
        match self {
            Self::Account(caller, generation) => Ok((caller, *generation)),
            Self::Device(_) => Err(ApiError::forbidden(
                "This route needs the account token (from /auth/login)",
            )),
        }
    }
}

/// `Authorization: Bearer <JWT>`: an account token or a device token.
#[derive(SecurityScheme)]
#[oai(
    rename = "V2Bearer",
    ty = "bearer",
    bearer_format = "JWT",
    checker = "check_v2_bearer"
)]
pub struct V2Auth(Principal);

async fn check_v2_bearer(req: &Request, bearer: Bearer) -> poem::Result<Principal> {
    let state = app_state(req)?;
    let Some(claimed) = verified_device(state, &bearer.token).await? else {
        let (caller, generation) = verified_account(state, &bearer.token).await?;
        return Ok(Principal::Account(caller, generation));
    };
    let device = state
        .v2
        .store
        .device(claimed.device_id)
        .await
        .map_err(v2_error)?
        .filter(|d| d.user_id == claimed.user_id)
        .ok_or_else(|| ApiError::unauthorized("Invalid token"))?;
    if !device.is_active() {
        return Err(device_revoked().into());
    }
    Ok(Principal::Device(DeviceCaller {
        user_id: device.user_id,
        device_id: device.id,
        signature_key: device.signature_key,
    }))
}

fn app_state(req: &Request) -> Result<&Arc<AppState>, ApiError> {
    req.data::<Arc<AppState>>()
        .ok_or_else(|| ApiError::internal(&"application state missing"))
}

/// A device token whose signature, expiry and revocation (logout, logout
/// everywhere) are checked, but whose device row is not read yet: the route
/// that takes it checks that the device is still active in its own query
/// (see [`V2DeviceAuth`]).
#[derive(Debug, Clone, Copy)]
pub struct ClaimedDevice {
    pub user_id: UserId,
    pub device_id: MlsDeviceId,
}

impl ClaimedDevice {
    /// The claimed device, which must be `id` (a device's own resources).
    pub fn is(self, id: i64) -> Result<Self, ApiError> {
        if self.device_id.0 != id {
            return Err(not_own_device());
        }
        Ok(self)
    }
}

fn not_own_device() -> ApiError {
    ApiError::forbidden("A device may only use its own resources")
}

// The scheme of the hottest device route, the queue read (a long-poll per
// delivered entry): it accepts only device tokens (an account token gets the
// same `403` as under `V2Auth`) and leaves the device lookup to the route's
// own store call, which refuses a revoked, deleted or foreign device in the
// same query that reads the queue, so revocation stays immediate on every
// instance while the read costs one query less (docs/BENCHMARKS.md, "Kavro
// v2"). Same name and doc comment (the scheme's description) in the OpenAPI
// document as `V2Auth`: one scheme, as far as clients can tell.
/// `Authorization: Bearer <JWT>`: an account token or a device token.
#[derive(SecurityScheme)]
#[oai(
    rename = "V2Bearer",
    ty = "bearer",
    bearer_format = "JWT",
    checker = "check_device_bearer"
)]
pub struct V2DeviceAuth(ClaimedDevice);

async fn check_device_bearer(req: &Request, bearer: Bearer) -> poem::Result<ClaimedDevice> {
    let state = app_state(req)?;
    if let Some(claimed) = verified_device(state, &bearer.token).await? {
        return Ok(claimed);
    }
    verified_account(state, &bearer.token).await?;
    Err(Principal::needs_device_token().into())
}

/// A device token checked for signature, expiry and revocation; `None` when
/// the token is not a device token at all (it may be an account token).
async fn verified_device(state: &AppState, token: &str) -> Result<Option<ClaimedDevice>, ApiError> {
    match state.v2.tokens.verify(token, state.clock.now()) {
        Ok(claims) => {
            check_revoked(state, &claims.jti, claims.user_id, claims.generation).await?;
            Ok(Some(ClaimedDevice {
                user_id: claims.user_id,
                device_id: claims.device_id,
            }))
        }
        Err(TokenError::Expired) => Err(ApiError::unauthorized(
            "Token has expired; open a new session",
        )),
        Err(TokenError::Invalid) => Ok(None),
    }
}

/// An account token checked for signature, expiry and revocation.
async fn verified_account(
    state: &AppState,
    token: &str,
) -> Result<(Caller, TokenGeneration), ApiError> {
    let claims = state
        .tokens
        .verify(token, state.clock.now())
        .map_err(|err| match err {
            TokenError::Expired => ApiError::unauthorized("Token has expired; log in again"),
            TokenError::Invalid => ApiError::unauthorized("Invalid token"),
        })?;
    check_revoked(state, &claims.jti, claims.user_id, claims.generation).await?;
    Ok((
        Caller {
            user_id: claims.user_id,
            jti: claims.jti,
            expires_at: claims.expires_at,
        },
        claims.generation,
    ))
}

/// A device token of a device that is revoked (or gone with its account).
pub fn device_revoked() -> ApiError {
    ApiError::unauthorized("This device has been revoked")
}

/// Logout (this token's `jti`) and logout-everywhere (the account's token
/// generation) end account and device tokens alike.
async fn check_revoked(
    state: &AppState,
    jti: &str,
    user: UserId,
    generation: TokenGeneration,
) -> Result<(), ApiError> {
    let revocation = state.limiter.token_state(jti, user).await?;
    if revocation.revoked || generation < revocation.min_generation {
        return Err(ApiError::unauthorized(
            "Token has been revoked; log in again",
        ));
    }
    Ok(())
}

/// Maps a v2 store refusal to the contract's error (a past epoch is mapped by
/// the group routes themselves, with the current epoch in the body).
pub fn v2_error(err: V2Error) -> ApiError {
    match err {
        V2Error::Store(e) => e.into(),
        V2Error::RootExists => ApiError::conflict(
            "This account already has its first device; further devices need a device link",
        ),
        V2Error::KeyTaken => ApiError::conflict("This signature key is already registered"),
        V2Error::SignerInvalid => {
            ApiError::forbidden("The link's signer is not an active device of this account")
        }
        V2Error::DeviceInactive => ApiError::forbidden("This device has been revoked"),
        V2Error::LinkGone => ApiError::not_found("No pending link request with this code"),
        V2Error::TooManyOpenLinks => ApiError::too_many(
            "Too many open link requests for this account; wait for them to expire",
            std::time::Duration::from_secs(60),
        ),
        e @ V2Error::TooManyKeyPackages { .. } => ApiError::conflict(e.to_string()),
        V2Error::UnknownGroup => ApiError::not_found("Unknown group"),
        V2Error::GroupExists => ApiError::conflict("A group with this id already exists"),
        V2Error::NotMember => ApiError::forbidden("This device is not a member of the group"),
        V2Error::WrongEpoch { current } => ApiError::conflict(format!(
            "The group is at epoch {current}; re-sync and retry"
        )),
        V2Error::QuotaExceeded => {
            metrics::counter!("kavro_quota_rejections_total").increment(1);
            ApiError::too_many(
                "A recipient device has too many undelivered messages; try again later.",
                std::time::Duration::from_secs(60),
            )
        }
        e @ (V2Error::CannotAdd(_) | V2Error::GroupFull(_)) => {
            ApiError::invalid_field("added", e.to_string())
        }
        e @ V2Error::CannotRemove(_) => ApiError::invalid_field("removed", e.to_string()),
        e @ V2Error::BlobUnusable(_) => ApiError::invalid_field("blob_ids", e.to_string()),
    }
}

/// Decodes base64 MLS bytes: `400` not base64, `413` too large, `422` empty.
pub fn mls_bytes(field: &str, text: &str, max: usize) -> Result<Vec<u8>, ApiError> {
    if text.len() > max.div_ceil(3) * 4 {
        return Err(ApiError::too_large(format!(
            "{field} is larger than {max} bytes once decoded"
        )));
    }
    let bytes = validate::base64_strict(text).ok_or_else(|| {
        ApiError::bad_request(format!(
            "{field} is not valid base64 (standard alphabet, padded, no whitespace)"
        ))
    })?;
    if bytes.is_empty() {
        return Err(ApiError::invalid_field(field, "must not be empty"));
    }
    if bytes.len() > max {
        return Err(ApiError::too_large(format!(
            "{field} is larger than {max} bytes once decoded"
        )));
    }
    Ok(bytes)
}

/// An MLS message field.
pub fn mls_message(field: &str, text: &str) -> Result<Vec<u8>, ApiError> {
    mls_bytes(field, text, MAX_MLS_MESSAGE_BYTES)
}

/// A key package field.
pub fn key_package_bytes(field: &str, text: &str) -> Result<Vec<u8>, ApiError> {
    mls_bytes(field, text, MAX_KEY_PACKAGE_BYTES)
}

/// The limiter subject of a v2 request made with an account token: the
/// account (the same counters as v1).
pub fn account_subject(user: UserId) -> String {
    user.0.to_string()
}

/// The limiter subject of a v2 request made with a device token: that
/// device. Each device of an account has its own budget, so one busy device
/// does not lock its siblings out; adding devices is itself limited per
/// account (`Publish`).
pub fn device_subject(device: MlsDeviceId) -> String {
    format!("device:{}", device.0)
}

impl Principal {
    /// The limiter subject of this caller: per device for device tokens,
    /// per account for account tokens.
    pub fn limit_subject(&self) -> String {
        match self {
            Self::Account(caller, _) => account_subject(caller.user_id),
            Self::Device(device) => device_subject(device.device_id),
        }
    }

    /// Counts this request against the caller's budget for `route`.
    pub async fn spend(&self, state: &AppState, route: Route) -> Result<(), ApiError> {
        Ok(state.limiter.check(route, &self.limit_subject()).await?)
    }

    /// The calling account (account tokens only) and its token generation,
    /// with this request counted against the account's budget for `route`.
    pub async fn account_spending(
        &self,
        state: &AppState,
        route: Route,
    ) -> Result<(&Caller, TokenGeneration), ApiError> {
        let (caller, generation) = self.account()?;
        state
            .limiter
            .check(route, &account_subject(caller.user_id))
            .await?;
        Ok((caller, generation))
    }

    /// The calling device (device tokens only), with this request counted
    /// against that device's budget for `route`.
    pub async fn device_spending(
        &self,
        state: &AppState,
        route: Route,
    ) -> Result<&DeviceCaller, ApiError> {
        let device = self.device()?;
        state
            .limiter
            .check(route, &device_subject(device.device_id))
            .await?;
        Ok(device)
    }
}
