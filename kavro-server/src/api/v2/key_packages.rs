//! `/v2/devices/{id}/key-packages`, `/v2/users/{username}/key-packages/claim`:
//! MLS key packages. Uploads are checked (openmls: parses, both signatures
//! verify, the leaf's key is the device's, the lifetime covers now) on the
//! blocking pool, since a full batch is 200 signature checks.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use kavro_proto::v2::api::{
    ClaimedKeyPackage, ClaimedKeyPackages, KeyPackageCount, UploadKeyPackages,
};
use kavro_proto::v2::limits::MAX_KEY_PACKAGES_PER_DEVICE;
use kavro_proto::v2::link::SignatureKey;
use kavro_proto::v2::mls::{KeyPackageError, check_key_package};
use kavro_proto::v2::suites;
use kavro_proto::v2::{MlsBytes, MlsDeviceId};
use kavro_proto::validate;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};

use super::{V2Auth, V2Tags, device_subject, key_package_bytes, v2_error};
use crate::api::users::user_named;
use crate::error::ApiError;
use crate::limits::Route;
use crate::state::AppState;
use crate::store::v2::{KeyPackageTally, NewKeyPackage};

pub struct KeyPackagesApi {
    state: Arc<AppState>,
}

impl KeyPackagesApi {
    pub fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }
}

#[derive(ApiResponse)]
enum Uploaded {
    #[oai(status = 201)]
    Created(Json<KeyPackageCount>),
}

#[derive(ApiResponse)]
enum CountAnswer {
    #[oai(status = 200)]
    Ok(Json<KeyPackageCount>),
}

#[derive(ApiResponse)]
enum ClaimAnswer {
    #[oai(status = 200)]
    Ok(Json<ClaimedKeyPackages>),
}

fn count(tally: KeyPackageTally, suite: u16) -> KeyPackageCount {
    KeyPackageCount {
        remaining: tally.remaining,
        last_resort: tally.last_resort,
        ciphersuite: suite,
    }
}

/// The `ciphersuite` query parameter: one Kavro speaks, 0x0001 when absent.
fn suite_param(suite: Option<u16>) -> Result<u16, ApiError> {
    let suite = suite.unwrap_or(suites::CLASSIC);
    if suites::is_supported(suite) {
        Ok(suite)
    } else {
        Err(ApiError::invalid_field(
            "ciphersuite",
            format!("not a ciphersuite Kavro speaks (one of {:?})", suites::ALL),
        ))
    }
}

/// Checks every package against `key` at `now`, and that all share one
/// ciphersuite (returned); the field of the first bad one is named.
fn check_all(
    packages: Vec<(String, Vec<u8>, bool)>,
    key: SignatureKey,
    now: DateTime<Utc>,
) -> Result<(u16, Vec<(NewKeyPackage, bool)>), ApiError> {
    let now_secs = u64::try_from(now.timestamp()).unwrap_or_default();
    let mut suite = None;
    let checked = packages
        .into_iter()
        .map(|(field, bytes, want_last_resort)| {
            let checked = check_key_package(&bytes, &key, now_secs)
                .map_err(|e: KeyPackageError| ApiError::invalid_field(&field, e.to_string()))?;
            if *suite.get_or_insert(checked.ciphersuite) != checked.ciphersuite {
                return Err(ApiError::invalid_field(
                    &field,
                    "every package of one upload must have the same ciphersuite",
                ));
            }
            if checked.last_resort != want_last_resort {
                return Err(ApiError::invalid_field(
                    &field,
                    if want_last_resort {
                        "the last-resort package must carry the last_resort extension"
                    } else {
                        "a package with the last_resort extension goes in `last_resort`"
                    },
                ));
            }
            let not_after = i64::try_from(checked.not_after)
                .ok()
                .and_then(|s| Utc.timestamp_opt(s, 0).single())
                .unwrap_or(DateTime::<Utc>::MAX_UTC);
            Ok((NewKeyPackage { bytes, not_after }, checked.last_resort))
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok((suite.unwrap_or(suites::CLASSIC), checked))
}

#[OpenApi(tag = "V2Tags::V2KeyPackages")]
impl KeyPackagesApi {
    /// Upload key packages
    ///
    /// With the device's token. TLS-serialised `KeyPackage`s signed by the
    /// device's key, with a lifetime covering now, all of one ciphersuite
    /// Kavro speaks (0x0001, or 0x004F for post-quantum groups); at most 100
    /// outstanding per ciphersuite (`409` past it, nothing stored).
    /// `last_resort` replaces the device's last-resort package of that
    /// ciphersuite.
    #[oai(
        path = "/v2/devices/:id/key-packages",
        method = "post",
        operation_id = "v2_upload_key_packages"
    )]
    async fn upload(
        &self,
        auth: V2Auth,
        #[oai(name = "id")] id: Path<i64>,
        body: Json<UploadKeyPackages>,
    ) -> Result<Uploaded, ApiError> {
        let state = &self.state;
        let device = auth.0.device_is(id.0)?;
        state
            .limiter
            .check(Route::Publish, &device_subject(device.device_id))
            .await?;
        let body = body.0;
        if body.key_packages.len() > MAX_KEY_PACKAGES_PER_DEVICE as usize {
            return Err(ApiError::invalid_field(
                "key_packages",
                format!("at most {MAX_KEY_PACKAGES_PER_DEVICE} per device"),
            ));
        }
        if body.key_packages.is_empty() && body.last_resort.is_none() {
            return Err(ApiError::invalid_field("key_packages", "nothing to upload"));
        }
        let mut raw = Vec::with_capacity(body.key_packages.len() + 1);
        for (i, package) in body.key_packages.iter().enumerate() {
            let field = format!("key_packages[{i}]");
            raw.push((
                field.clone(),
                key_package_bytes(&field, package.as_str())?,
                false,
            ));
        }
        if let Some(package) = &body.last_resort {
            raw.push((
                "last_resort".to_owned(),
                key_package_bytes("last_resort", package.as_str())?,
                true,
            ));
        }
        let key =
            SignatureKey::from_bytes(&device.signature_key).map_err(|e| ApiError::internal(&e))?;
        let now = state.clock.now();
        let (suite, checked) = tokio::task::spawn_blocking(move || check_all(raw, key, now))
            .await
            .map_err(|e| ApiError::internal(&e))??;
        let (last, packages): (Vec<_>, Vec<_>) = checked.into_iter().partition(|(_, last)| *last);
        let packages: Vec<NewKeyPackage> = packages.into_iter().map(|(p, _)| p).collect();
        let last = last.into_iter().next().map(|(p, _)| p);
        let tally = state
            .v2
            .store
            .add_key_packages(
                device.device_id,
                suite,
                &packages,
                last.as_ref(),
                MAX_KEY_PACKAGES_PER_DEVICE,
                now,
            )
            .await
            .map_err(v2_error)?;
        Ok(Uploaded::Created(Json(count(tally, suite))))
    }

    /// How many key packages remain
    ///
    /// In one ciphersuite (`ciphersuite`, 0x0001 when absent).
    #[oai(
        path = "/v2/devices/:id/key-packages",
        method = "get",
        operation_id = "v2_count_key_packages"
    )]
    async fn remaining(
        &self,
        auth: V2Auth,
        #[oai(name = "id")] id: Path<i64>,
        ciphersuite: Query<Option<u16>>,
    ) -> Result<CountAnswer, ApiError> {
        let state = &self.state;
        let device = auth.0.device_is(id.0)?;
        let suite = suite_param(ciphersuite.0)?;
        state
            .limiter
            .check(Route::Lookup, &device_subject(device.device_id))
            .await?;
        let tally = state
            .v2
            .store
            .key_package_tally(device.device_id, suite, state.clock.now())
            .await
            .map_err(v2_error)?;
        Ok(CountAnswer::Ok(Json(count(tally, suite))))
    }

    /// Claim a key package of each of a user's devices
    ///
    /// One per active device, of the ciphersuite asked for (`ciphersuite`,
    /// 0x0001 when absent), consumed at once: a package is never handed out
    /// twice. A device with none left gives its last-resort package (kept);
    /// devices with nothing at all are listed in `missing`. With `device`,
    /// only that device's package (`404` when it is not an active device of
    /// the user): adding one new device needs no package of the others.
    #[oai(
        path = "/v2/users/:username/key-packages/claim",
        method = "post",
        operation_id = "v2_claim_key_packages"
    )]
    async fn claim(
        &self,
        auth: V2Auth,
        #[oai(name = "username")] username: Path<String>,
        ciphersuite: Query<Option<u16>>,
        device: Query<Option<i64>>,
    ) -> Result<ClaimAnswer, ApiError> {
        let state = &self.state;
        let suite = suite_param(ciphersuite.0)?;
        auth.0.spend(state, Route::Lookup).await?;
        let user = user_named(state, &username.0).await?;
        let only = device.0.map(MlsDeviceId);
        let claimed = state
            .v2
            .store
            .claim_key_packages(user.id, suite, only, state.clock.now())
            .await
            .map_err(v2_error)?;
        if let Some(device) = only
            && claimed.packages.is_empty()
            && claimed.missing.is_empty()
        {
            return Err(ApiError::not_found(format!(
                "{} has no active device {device}",
                username.0
            )));
        }
        Ok(ClaimAnswer::Ok(Json(ClaimedKeyPackages {
            key_packages: claimed
                .packages
                .into_iter()
                .map(|(device_id, bytes, last_resort)| ClaimedKeyPackage {
                    device_id,
                    key_package: MlsBytes::from(validate::base64_encode(&bytes)),
                    last_resort,
                })
                .collect(),
            missing: claimed.missing,
        })))
    }
}
