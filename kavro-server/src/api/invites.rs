//! The registration policy (`registration` in the config) as `POST
//! /auth/register` applies it: which requests may create an account, and
//! taking one use of an invite code. Every refusal is a `403` in the
//! contract's error shape; a bad, used-up, expired or revoked code gets one
//! answer, so the answer does not tell which codes exist.

use crate::config::Registration;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::ops::{InviteHash, InviteId};

/// Longer codes are refused unhashed (ours are 26 characters).
const MAX_CODE_CHARS: usize = 128;

const CLOSED: &str = "Registration is closed on this relay.";
const NEEDED: &str = "This relay registers new accounts only with an invite code.";
const NOT_VALID: &str = "This invite code is not valid: unknown, used up, expired or revoked.";

/// What the policy asks of this registration: `None` (go ahead), the code
/// to take a use of, or a refusal.
pub(super) fn required(
    state: &AppState,
    code: Option<&str>,
) -> Result<Option<InviteHash>, ApiError> {
    match state.settings.registration {
        Registration::Open => Ok(None),
        Registration::Closed => Err(ApiError::forbidden(CLOSED)),
        Registration::Invite => {
            let code = code.map(str::trim).unwrap_or_default();
            if code.is_empty() {
                return Err(ApiError::forbidden(NEEDED));
            }
            if code.chars().count() > MAX_CODE_CHARS {
                return Err(ApiError::forbidden(NOT_VALID));
            }
            Ok(Some(InviteHash::of(code)))
        }
    }
}

/// Takes one use of the code, or refuses.
pub(super) async fn take(state: &AppState, code: &InviteHash) -> Result<InviteId, ApiError> {
    state
        .ops
        .use_invite(code, state.clock.now())
        .await?
        .ok_or_else(|| ApiError::forbidden(NOT_VALID))
}

/// Gives the use back after the registration failed (the name was taken).
pub(super) async fn give_back(state: &AppState, id: InviteId) {
    if let Err(err) = state.ops.release_invite(id).await {
        tracing::warn!(error = %crate::error::error_chain(&err), invite = id.0, "could not give back an invite use");
    }
}
