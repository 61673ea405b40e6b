//! `/v2/blobs`: encrypted attachments, uploaded in chunks with resume
//! (`offset` must equal `received`) and downloaded as a stream with a single
//! `Range`. Every route takes a device token or the account token: a v1
//! client (no v2 device) uploads with its account token and names the
//! recipient account a holder (`/holders`), which downloads and acknowledges
//! with its own account token. Creating a blob counts as a send (rate limit); chunk uploads and
//! downloads are bounded by the blob's size and the account's quota instead,
//! so a 1 GiB transfer is not throttled chunk by chunk.

use std::sync::Arc;

use futures_util::StreamExt as _;
use kavro_proto::v2::{BlobHolder, BlobId, BlobStatus, NewBlob};
use poem::{Body, Request};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::{Binary, Json};
use poem_openapi::{ApiResponse, OpenApi};

use super::{V2Auth, V2Tags};
use crate::blobs::range::{Wanted, wanted};
use crate::blobs::{BlobFailure, Download};
use crate::clock::after;
use crate::error::ApiError;
use crate::limits::Route;
use crate::state::AppState;
use crate::store::blobs::BlobError;
use kavro_proto::api::ErrorBody;

pub struct BlobsApi {
    state: Arc<AppState>,
}

impl BlobsApi {
    pub fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }
}

#[derive(ApiResponse)]
enum CreatedAnswer {
    /// Reserved: upload the bytes with `PUT /v2/blobs/{id}?offset=0`.
    #[oai(status = 201)]
    Created(Json<BlobStatus>),
    /// The relay's storage is out of space; retry later.
    #[oai(status = 507)]
    OutOfSpace(Json<ErrorBody>),
}

#[derive(ApiResponse)]
enum StatusAnswer {
    #[oai(status = 200)]
    Ok(Json<BlobStatus>),
    /// The relay's storage is out of space; retry later (from `received`).
    #[oai(status = 507)]
    OutOfSpace(Json<ErrorBody>),
}

#[derive(ApiResponse)]
enum DownloadAnswer {
    /// The whole blob.
    #[oai(status = 200)]
    Full(
        Binary<Body>,
        #[oai(header = "Accept-Ranges")] String,
        #[oai(header = "Content-Length")] u64,
    ),
    /// The requested range.
    #[oai(status = 206)]
    Part(
        Binary<Body>,
        #[oai(header = "Content-Range")] String,
        #[oai(header = "Content-Length")] u64,
    ),
    /// The range starts past the end.
    #[oai(status = 416)]
    Unsatisfiable(Json<ErrorBody>, #[oai(header = "Content-Range")] String),
}

fn error_body(status: u16, message: String) -> Json<ErrorBody> {
    Json(ErrorBody {
        error: message,
        details: None,
        status_code: status,
    })
}

fn out_of_space() -> Json<ErrorBody> {
    error_body(
        507,
        "The relay's blob storage is out of space; try again later.".to_owned(),
    )
}

/// Every "no" on a blob's existence or access is the same `404`.
fn gone() -> ApiError {
    ApiError::not_found("Unknown blob")
}

/// Maps a blob failure (other than out-of-space, which routes answer as 507).
fn failure(err: BlobFailure) -> ApiError {
    match err {
        BlobFailure::Meta(BlobError::Store(e)) => e.into(),
        BlobFailure::Meta(BlobError::Gone) => gone(),
        BlobFailure::Meta(BlobError::QuotaExceeded { quota }) => ApiError::conflict(format!(
            "This account's blobs would exceed its quota of {} MiB; wait until older attachments are delivered or expire",
            quota / (1024 * 1024)
        )),
        BlobFailure::Meta(BlobError::OffsetMismatch { expected }) => ApiError::conflict(format!(
            "The next chunk starts at offset {expected}; read the status and continue from there"
        )),
        BlobFailure::Meta(BlobError::PastSize) => {
            ApiError::invalid_field("body", "the chunk ends past the blob's size")
        }
        BlobFailure::TooLarge(max) => ApiError::too_large(format!(
            "Blobs are limited to {} MiB on this relay",
            max / (1024 * 1024)
        )),
        BlobFailure::Empty => ApiError::invalid_field("size", "must be at least 1"),
        BlobFailure::Incomplete => {
            ApiError::conflict("The blob is not complete yet; try again once it is uploaded")
        }
        BlobFailure::ChunkTooLarge(max) => {
            ApiError::too_large(format!("A chunk is at most {max} bytes"))
        }
        BlobFailure::EmptyChunk => ApiError::invalid_field("body", "a chunk has at least 1 byte"),
        BlobFailure::Body(e) if e.kind() == std::io::ErrorKind::TimedOut => {
            ApiError::request_timeout()
        }
        BlobFailure::Body(_) => ApiError::bad_request("Could not read the request body"),
        BlobFailure::OutOfSpace => ApiError::unavailable(),
        BlobFailure::Storage(e) => {
            tracing::error!(error = %crate::error::error_chain(&e), "blob storage failed");
            ApiError::unavailable()
        }
    }
}

/// The request's `Content-Length`, when it declares a valid one (the body
/// limit refused an invalid one already).
fn declared_length(req: &Request) -> Option<u64> {
    req.headers()
        .get(poem::http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[OpenApi(tag = "V2Tags::V2Blobs")]
impl BlobsApi {
    /// Reserve a blob
    ///
    /// With a device token or the account token. `413` over the relay's cap, `409` over the
    /// account's quota (uploaded plus reserved), `507` when the relay's
    /// storage is out of space, `422` for size 0. The blob expires after the
    /// message TTL, or earlier once every device a message referencing it
    /// was queued for has acknowledged that message.
    #[oai(path = "/v2/blobs", method = "post", operation_id = "v2_create_blob")]
    async fn create(&self, auth: V2Auth, body: Json<NewBlob>) -> Result<CreatedAnswer, ApiError> {
        let state = &self.state;
        auth.0.spend(state, Route::Send).await?;
        let now = state.clock.now();
        let expires_at = after(now, state.settings.message_ttl);
        match state
            .v2
            .blobs
            .create(auth.0.user_id(), body.0.size, now, expires_at)
            .await
        {
            Ok(row) => Ok(CreatedAnswer::Created(Json(state.v2.blobs.status(&row)))),
            Err(BlobFailure::OutOfSpace) => Ok(CreatedAnswer::OutOfSpace(out_of_space())),
            Err(other) => Err(failure(other)),
        }
    }

    /// Upload a chunk
    ///
    /// The body (1 to `chunk_max` bytes) is stored at `offset`, which must
    /// equal the blob's `received` (`409` naming the expected offset
    /// otherwise: read the status and continue). Only the uploading
    /// account (its account token or its devices). A chunk past `size` is a `422`; the last byte
    /// completes the blob.
    #[oai(
        path = "/v2/blobs/:id",
        method = "put",
        operation_id = "v2_put_blob_chunk"
    )]
    async fn put_chunk(
        &self,
        req: &Request,
        auth: V2Auth,
        id: Path<BlobId>,
        offset: Query<u64>,
        body: Binary<Body>,
    ) -> Result<StatusAnswer, ApiError> {
        let state = &self.state;
        let owner = auth.0.user_id();
        // An empty body is refused before anything is looked up; the body
        // limit refused a declared length over the chunk cap already, and a
        // chunked body is counted as it streams in (`Blobs::put_chunk`).
        if declared_length(req) == Some(0) {
            return Err(failure(BlobFailure::EmptyChunk));
        }
        let chunk = body.0.into_bytes_stream().boxed();
        let now = state.clock.now();
        match state
            .v2
            .blobs
            .put_chunk(id.0, owner, offset.0, chunk, now)
            .await
        {
            Ok(row) => Ok(StatusAnswer::Ok(Json(state.v2.blobs.status(&row)))),
            Err(BlobFailure::OutOfSpace) => Ok(StatusAnswer::OutOfSpace(out_of_space())),
            Err(other) => Err(failure(other)),
        }
    }

    /// A blob's upload status
    ///
    /// For the uploading account, devices a message referencing it was
    /// queued for, and accounts named holders; `404` for anyone else (as for
    /// an unknown blob).
    #[oai(
        path = "/v2/blobs/:id/status",
        method = "get",
        operation_id = "v2_blob_status"
    )]
    async fn status(&self, auth: V2Auth, id: Path<BlobId>) -> Result<StatusAnswer, ApiError> {
        let state = &self.state;
        auth.0.spend(state, Route::Lookup).await?;
        let row = state
            .v2
            .blobs
            .readable(
                id.0,
                auth.0.user_id(),
                auth.0.device_id(),
                state.clock.now(),
            )
            .await
            .map_err(failure)?;
        Ok(StatusAnswer::Ok(Json(state.v2.blobs.status(&row))))
    }

    /// Done with a blob
    ///
    /// This device saved the blob (or refused it for good): it no longer
    /// holds it; with the account token, the account's hold (see
    /// `/holders`) goes. A referenced blob is deleted once every device and
    /// account it was sent to is done with it (else at its `expires_at`).
    /// `404` as for the status.
    #[oai(
        path = "/v2/blobs/:id/ack",
        method = "post",
        operation_id = "v2_ack_blob"
    )]
    async fn ack(&self, auth: V2Auth, id: Path<BlobId>) -> Result<StatusAnswer, ApiError> {
        let state = &self.state;
        auth.0.spend(state, Route::Lookup).await?;
        let row = state
            .v2
            .blobs
            .release(
                id.0,
                auth.0.user_id(),
                auth.0.device_id(),
                state.clock.now(),
            )
            .await
            .map_err(failure)?;
        Ok(StatusAnswer::Ok(Json(state.v2.blobs.status(&row))))
    }

    /// Let an account read a blob
    ///
    /// For attachments in a v1 envelope, which the relay cannot link to a
    /// blob: the uploading account names the recipient account, which may
    /// then read the blob (with its account token or any of its device
    /// tokens) until it acknowledges it with its account token, or the blob
    /// expires. Only for a complete blob (`409` before). `404` for an
    /// unknown blob or one of another account; `422` for an unknown account
    /// (the blob exists: it is the body that names nothing).
    #[oai(
        path = "/v2/blobs/:id/holders",
        method = "post",
        operation_id = "v2_add_blob_holder"
    )]
    async fn add_holder(
        &self,
        auth: V2Auth,
        id: Path<BlobId>,
        body: Json<BlobHolder>,
    ) -> Result<StatusAnswer, ApiError> {
        let state = &self.state;
        auth.0.spend(state, Route::Lookup).await?;
        if state.store.user_by_id(body.0.user_id).await?.is_none() {
            return Err(ApiError::invalid_field("user_id", "Unknown user"));
        }
        let row = state
            .v2
            .blobs
            .add_holder(id.0, auth.0.user_id(), body.0.user_id, state.clock.now())
            .await
            .map_err(failure)?;
        Ok(StatusAnswer::Ok(Json(state.v2.blobs.status(&row))))
    }

    /// Download a blob
    ///
    /// The bytes as a stream, with single-range `Range: bytes=a-b` / `a-` /
    /// `-n` support (`206` with `Content-Range`; `416` past the end). `404`
    /// unknown, expired, deleted or not allowed (never says which); `409`
    /// not complete yet.
    #[oai(path = "/v2/blobs/:id", method = "get", operation_id = "v2_get_blob")]
    async fn download(
        &self,
        auth: V2Auth,
        id: Path<BlobId>,
        req: &poem::Request,
    ) -> Result<DownloadAnswer, ApiError> {
        let state = &self.state;
        let blobs = &state.v2.blobs;
        let row = blobs
            .readable(
                id.0,
                auth.0.user_id(),
                auth.0.device_id(),
                state.clock.now(),
            )
            .await
            .map_err(failure)?;
        if !row.complete() {
            return Err(failure(BlobFailure::Incomplete));
        }
        let header = req
            .headers()
            .get(poem::http::header::RANGE)
            .and_then(|v| v.to_str().ok());
        let (range, partial) = match wanted(header, row.size) {
            Wanted::Full => (None, false),
            Wanted::Part(range) => (Some(range), true),
            Wanted::Unsatisfiable => {
                return Ok(DownloadAnswer::Unsatisfiable(
                    error_body(416, format!("The blob has {} bytes", row.size)),
                    format!("bytes */{}", row.size),
                ));
            }
        };
        let Download { size, range, body } = blobs.download(&row, range).await.map_err(failure)?;
        let length = range.end - range.start;
        let body = Binary(Body::from_bytes_stream(body));
        if partial {
            Ok(DownloadAnswer::Part(
                body,
                format!("bytes {}-{}/{size}", range.start, range.end - 1),
                length,
            ))
        } else {
            Ok(DownloadAnswer::Full(body, "bytes".to_owned(), length))
        }
    }
}
