//! `/v2/link-requests`, `/v2/link-codes`: linking a new installation.
//!
//! The new installation (logged in with the account password) posts its
//! signature key and gets a one-time code and a request id. The user types
//! the code on an existing device, which fetches the request (to show the
//! new key's fingerprint), signs the device link and approves. The new
//! installation learns its device id by polling its request. Codes are 10
//! characters of Crockford base32 (50 bits), single use, valid 10 minutes,
//! looked up only within the same account, and dead after 3 bad signatures.
//! The relay keeps only a SHA-256 of each code.

use std::sync::Arc;

use chrono::Duration as ChronoDuration;
use kavro_proto::v2::SignatureKeyB64;
use kavro_proto::v2::api::{
    ApproveLink, LinkRequestCreated, LinkRequestStatus, LinkRequestView, LinkState, MlsDevice,
    NewLinkRequest,
};
use kavro_proto::v2::limits::{
    LINK_CODE_ALPHABET, LINK_CODE_LEN, LINK_CODE_MAX_FAILURES, LINK_CODE_TTL_SECS,
    MAX_OPEN_LINK_REQUESTS,
};
use kavro_proto::v2::link::{self, SignatureKey};
use kavro_proto::validate;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use super::devices::{device_view, signature, signature_key};
use super::{V2Auth, V2Tags, v2_error};
use crate::error::ApiError;
use crate::limits::Route;
use crate::state::AppState;
use crate::store::v2::{NewLinkRequest as StoredRequest, V2Error};

pub struct LinksApi {
    state: Arc<AppState>,
}

impl LinksApi {
    pub fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }
}

#[derive(ApiResponse)]
enum Created {
    #[oai(status = 201)]
    Created(Json<LinkRequestCreated>),
}

#[derive(ApiResponse)]
enum StatusAnswer {
    #[oai(status = 200)]
    Ok(Json<LinkRequestStatus>),
}

#[derive(ApiResponse)]
enum ViewAnswer {
    #[oai(status = 200)]
    Ok(Json<LinkRequestView>),
}

#[derive(ApiResponse)]
enum Approved {
    #[oai(status = 201)]
    Created(Json<MlsDevice>),
}

/// A fresh code: each character uniform over the 32-letter alphabet.
fn new_code() -> String {
    rand::random::<[u8; LINK_CODE_LEN]>()
        .iter()
        .map(|b| char::from(LINK_CODE_ALPHABET[usize::from(b & 31)]))
        .collect()
}

/// The canonical form of a typed code (Crockford: case-insensitive, `-` and
/// spaces ignored, I/L read as 1 and O as 0), or `None` if it cannot be one.
pub fn normalize_code(typed: &str) -> Option<String> {
    let code: String = typed
        .chars()
        .filter(|c| *c != '-' && *c != ' ')
        .map(|c| match c.to_ascii_uppercase() {
            'I' | 'L' => '1',
            'O' => '0',
            other => other,
        })
        .collect();
    (code.len() == LINK_CODE_LEN && code.bytes().all(|b| LINK_CODE_ALPHABET.contains(&b)))
        .then_some(code)
}

fn code_hash(code: &str) -> [u8; 32] {
    Sha256::digest(code.as_bytes()).into()
}

#[OpenApi(tag = "V2Tags::V2Links")]
impl LinksApi {
    /// Ask to link this installation
    ///
    /// With the account token. Answers a one-time code to type on an existing
    /// device, and a request id to poll. At most 5 open requests per account.
    #[oai(
        path = "/v2/link-requests",
        method = "post",
        operation_id = "v2_create_link_request"
    )]
    async fn create(&self, auth: V2Auth, body: Json<NewLinkRequest>) -> Result<Created, ApiError> {
        let state = &self.state;
        let user = auth
            .0
            .account_spending(state, Route::Publish)
            .await?
            .0
            .user_id;
        let key = signature_key("signature_key", body.0.signature_key.as_str())?;
        let now = state.clock.now();
        let expires_at = now + ChronoDuration::seconds(LINK_CODE_TTL_SECS);
        let id = Uuid::new_v4();
        let code = new_code();
        state
            .v2
            .store
            .create_link_request(StoredRequest {
                id,
                user,
                code_hash: &code_hash(&code),
                signature_key: key.as_bytes(),
                now,
                expires_at,
                max_open: MAX_OPEN_LINK_REQUESTS,
            })
            .await
            .map_err(v2_error)?;
        Ok(Created::Created(Json(LinkRequestCreated {
            request_id: id,
            code,
            expires_at,
        })))
    }

    /// Where my link request is
    ///
    /// For the account that made it: `pending`, `approved` (with the new
    /// device's id) or `expired`.
    #[oai(
        path = "/v2/link-requests/:request_id",
        method = "get",
        operation_id = "v2_link_request_status"
    )]
    async fn status(
        &self,
        auth: V2Auth,
        #[oai(name = "request_id")] request_id: Path<Uuid>,
    ) -> Result<StatusAnswer, ApiError> {
        let state = &self.state;
        let user = auth.0.user_id();
        auth.0.spend(state, Route::Inbox).await?;
        let request = state
            .v2
            .store
            .link_request(request_id.0)
            .await
            .map_err(v2_error)?
            .filter(|r| r.user_id == user)
            .ok_or_else(|| ApiError::not_found("No such link request"))?;
        let status = if request.device_id.is_some() {
            LinkState::Approved
        } else if request.expires_at <= state.clock.now()
            || request.failures >= LINK_CODE_MAX_FAILURES
        {
            LinkState::Expired
        } else {
            LinkState::Pending
        };
        Ok(StatusAnswer::Ok(Json(LinkRequestStatus {
            status,
            device_id: request.device_id,
        })))
    }

    /// Look a link code up
    ///
    /// With a device token of the same account: the key asking to be linked,
    /// to show as a fingerprint before approving.
    #[oai(
        path = "/v2/link-codes/:code",
        method = "get",
        operation_id = "v2_link_code"
    )]
    async fn view(
        &self,
        auth: V2Auth,
        #[oai(name = "code")] code: Path<String>,
    ) -> Result<ViewAnswer, ApiError> {
        let state = &self.state;
        let device = auth.0.device_spending(state, Route::Lookup).await?;
        let gone = || v2_error(V2Error::LinkGone);
        let code = normalize_code(&code.0).ok_or_else(gone)?;
        let request = state
            .v2
            .store
            .link_request_by_code(
                device.user_id,
                &code_hash(&code),
                state.clock.now(),
                LINK_CODE_MAX_FAILURES,
            )
            .await
            .map_err(v2_error)?
            .ok_or_else(gone)?;
        Ok(ViewAnswer::Ok(Json(LinkRequestView {
            user_id: request.user_id,
            signature_key: SignatureKeyB64::from(validate::base64_encode(&request.signature_key)),
            created_at: request.created_at,
            expires_at: request.expires_at,
        })))
    }

    /// Approve a link code
    ///
    /// With a device token of the same account and that device's signature
    /// over the device-link bytes for the requested key. A signature that
    /// does not verify counts against the code (3 and it is dead).
    #[oai(
        path = "/v2/link-codes/:code/approve",
        method = "post",
        operation_id = "v2_approve_link"
    )]
    async fn approve(
        &self,
        auth: V2Auth,
        #[oai(name = "code")] code: Path<String>,
        body: Json<ApproveLink>,
    ) -> Result<Approved, ApiError> {
        let state = &self.state;
        let device = auth.0.device_spending(state, Route::Publish).await?;
        let sig = signature("signature", body.0.signature.as_str())?;
        let gone = || v2_error(V2Error::LinkGone);
        let code = normalize_code(&code.0).ok_or_else(gone)?;
        let now = state.clock.now();
        let request = state
            .v2
            .store
            .link_request_by_code(
                device.user_id,
                &code_hash(&code),
                now,
                LINK_CODE_MAX_FAILURES,
            )
            .await
            .map_err(v2_error)?
            .ok_or_else(gone)?;
        let signer =
            SignatureKey::from_bytes(&device.signature_key).map_err(|e| ApiError::internal(&e))?;
        let new =
            SignatureKey::from_bytes(&request.signature_key).map_err(|e| ApiError::internal(&e))?;
        if link::verify_device_link(device.user_id, &signer, &new, &sig).is_err() {
            state
                .v2
                .store
                .link_failed(request.id)
                .await
                .map_err(v2_error)?;
            return Err(ApiError::forbidden(
                "The device link signature does not verify",
            ));
        }
        let id = state
            .v2
            .store
            .approve_link(
                request.id,
                device.device_id,
                &sig,
                now,
                LINK_CODE_MAX_FAILURES,
            )
            .await
            .map_err(v2_error)?;
        tracing::info!(target: "kavro::audit", event = "v2_device_linked", user_id = device.user_id.0, device_id = id.0, by_device = device.device_id.0);
        let row = state
            .v2
            .store
            .device(id)
            .await
            .map_err(v2_error)?
            .ok_or_else(|| ApiError::internal(&"linked device vanished"))?;
        Ok(Approved::Created(Json(device_view(row))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_canonical_and_uniform_alphabet() {
        for _ in 0..100 {
            let code = new_code();
            assert_eq!(normalize_code(&code), Some(code.clone()));
        }
        assert_eq!(
            normalize_code("abcd-efgh-jk").as_deref(),
            Some("ABCDEFGHJK")
        );
        assert_eq!(normalize_code("0o1Il 23456").as_deref(), Some("0011123456"));
        assert_eq!(normalize_code("ABCDEFGHJ"), None, "too short");
        assert_eq!(
            normalize_code("ABCDEFGHJU"),
            None,
            "U is not in the alphabet"
        );
        assert_eq!(normalize_code("ÄBCDEFGHJK"), None);
    }
}
