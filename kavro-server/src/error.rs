//! Every error the API answers with, in the contract's JSON shape
//! (`{"error", "status_code"}`, plus `details` for `422`).
//!
//! The detail of a `500`/`503` goes to the log; the body stays generic, so no
//! SQL, stack trace or secret reaches a client.

use std::time::Duration;

use kavro_proto::api::{ErrorBody, FieldError};
use poem_openapi::ApiResponse;
use poem_openapi::payload::Json;

use crate::limits::Refusal;
use crate::store::StoreError;

#[derive(Debug, ApiResponse)]
pub enum ApiError {
    /// The request is well-formed but cannot be done (e.g. username taken, invalid base64).
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// Missing, malformed, expired, tampered or revoked token; or wrong credentials.
    #[oai(status = 401)]
    Unauthorized(
        Json<ErrorBody>,
        #[oai(header = "WWW-Authenticate")] Option<String>,
    ),
    /// The caller may not touch this resource.
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The request conflicts with the resource's state (e.g. a retired key).
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    #[oai(status = 405)]
    MethodNotAllowed(Json<ErrorBody>),
    /// The request body did not arrive in time.
    #[oai(status = 408)]
    RequestTimeout(Json<ErrorBody>),
    /// The body is over 1 MiB, or the ciphertext over 64 KiB.
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// The body is not JSON (`Content-Type: application/json`).
    #[oai(status = 415)]
    UnsupportedMediaType(Json<ErrorBody>),
    /// Validation failed; `details` names each field.
    #[oai(status = 422)]
    Validation(Json<ErrorBody>),
    /// Rate limited or locked out; retry after `Retry-After` seconds.
    #[oai(status = 429)]
    TooManyRequests(Json<ErrorBody>, #[oai(header = "Retry-After")] u64),
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// A dependency (database, Redis) is unavailable; retry later.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>, #[oai(header = "Retry-After")] Option<u64>),
}

fn body(status: u16, message: impl Into<String>) -> Json<ErrorBody> {
    Json(ErrorBody {
        error: message.into(),
        details: None,
        status_code: status,
    })
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest(body(400, message))
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::Unauthorized(body(401, message), Some("Bearer".to_owned()))
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::Forbidden(body(403, message))
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound(body(404, message))
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::Conflict(body(409, message))
    }

    pub fn method_not_allowed() -> Self {
        Self::MethodNotAllowed(body(405, "Method not allowed"))
    }

    pub fn request_timeout() -> Self {
        Self::RequestTimeout(body(408, "The request body did not arrive in time"))
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::PayloadTooLarge(body(413, message))
    }

    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::UnsupportedMediaType(body(415, message))
    }

    /// `422 Validation failed` with one entry per offending field.
    pub fn validation(details: Vec<FieldError>) -> Self {
        Self::Validation(Json(ErrorBody {
            error: "Validation failed".to_owned(),
            details: Some(details),
            status_code: 422,
        }))
    }

    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        Self::validation(vec![FieldError {
            field: field.to_owned(),
            message: message.into(),
        }])
    }

    /// `429` with `Retry-After` in whole seconds, rounded up.
    pub fn too_many(message: impl Into<String>, retry_after: Duration) -> Self {
        let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        Self::TooManyRequests(body(429, message), secs.max(1))
    }

    pub fn unavailable() -> Self {
        Self::Unavailable(
            body(503, "Service temporarily unavailable, try again shortly."),
            Some(5),
        )
    }

    /// Logs `detail` and answers a generic `500`.
    pub fn internal(detail: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::Internal(body(500, "Internal server error"))
    }

    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::Unauthorized(..) => 401,
            Self::Forbidden(_) => 403,
            Self::NotFound(_) => 404,
            Self::Conflict(_) => 409,
            Self::MethodNotAllowed(_) => 405,
            Self::RequestTimeout(_) => 408,
            Self::PayloadTooLarge(_) => 413,
            Self::UnsupportedMediaType(_) => 415,
            Self::Validation(_) => 422,
            Self::TooManyRequests(..) => 429,
            Self::Internal(_) => 500,
            Self::Unavailable(..) => 503,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(e) => {
                tracing::error!(error = %e, "database unavailable");
                Self::unavailable()
            }
            other => Self::internal(&error_chain(&other)),
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Limited { retry_after } => {
                Self::too_many("Too many requests, slow down.", retry_after)
            }
            Refusal::Unavailable => Self::unavailable(),
        }
    }
}

/// "outer: inner: innermost", for logs.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
