//! `/v2/devices/{id}/queue`: each device's ordered stream (welcomes,
//! commits, proposals and application messages of all its groups), read
//! after a position, optionally as a long-poll, and acknowledged cumulatively.

use std::sync::Arc;
use std::time::Duration;

use kavro_proto::v2::api::{AckQueue, QueueAcked, QueueEntry, QueuePage};
use kavro_proto::v2::limits::QUEUE_LIMIT_DEFAULT;
use kavro_proto::v2::{GroupIdText, MlsBytes, QueueSeq};
use kavro_proto::validate;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};

use super::{
    ClaimedDevice, V2Auth, V2DeviceAuth, V2Tags, device_revoked, device_subject, v2_error,
};
use crate::error::ApiError;
use crate::limits::Route;
use crate::state::AppState;
use crate::store::v2::V2Error;
use crate::wake::WakeReason;

pub struct QueueApi {
    state: Arc<AppState>,
}

impl QueueApi {
    pub fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }

    /// Reads the page; this is also where the calling device is checked to
    /// be active (the route's scheme does not look it up): a revoked device
    /// gets the same `401` as under [`super::V2Auth`].
    async fn read(
        &self,
        device: ClaimedDevice,
        after: i64,
        limit: u32,
    ) -> Result<QueuePage, ApiError> {
        let read = self
            .state
            .v2
            .store
            .queue(
                device.user_id,
                device.device_id,
                QueueSeq(after),
                limit,
                self.state.clock.now(),
            )
            .await
            .map_err(|err| match err {
                V2Error::DeviceInactive => device_revoked(),
                other => v2_error(other),
            })?;
        Ok(QueuePage {
            messages: read
                .entries
                .into_iter()
                .map(|e| QueueEntry {
                    seq: e.seq,
                    id: e.id,
                    kind: e.kind,
                    group_id: GroupIdText::from(e.group.to_text()),
                    epoch: e.epoch,
                    sender_device_id: e.sender,
                    message: MlsBytes::from(validate::base64_encode(&e.body)),
                    created_at: e.created_at,
                })
                .collect(),
            acked_up_to: read.acked,
        })
    }
}

#[derive(ApiResponse)]
enum PageAnswer {
    #[oai(status = 200)]
    Ok(Json<QueuePage>),
}

#[derive(ApiResponse)]
enum AckAnswer {
    #[oai(status = 200)]
    Ok(Json<QueueAcked>),
}

fn default_limit() -> u32 {
    QUEUE_LIMIT_DEFAULT
}

#[OpenApi(tag = "V2Tags::V2Queue")]
impl QueueApi {
    /// Read the device's queue
    ///
    /// Entries with `seq > after`, in `seq` order. `seq` is strictly
    /// increasing in the order the relay stored the entries, so a client that
    /// has processed everything up to `n` asks `after=n` and acknowledges `n`.
    /// With `wait=S` and nothing new, the request is held up to S seconds.
    /// With `ack=N`, every entry up to `N` is acknowledged first, exactly as
    /// `POST /v2/devices/{id}/queue/ack` would (so a client that reads with
    /// `after=n&ack=n` needs no separate acknowledgement).
    #[oai(
        path = "/v2/devices/:id/queue",
        method = "get",
        operation_id = "v2_read_queue"
    )]
    async fn read_queue(
        &self,
        auth: V2DeviceAuth,
        #[oai(name = "id")] id: Path<i64>,
        /// Return entries after this `seq` (default 0: from the start).
        #[oai(default, validator(minimum(value = "0")))]
        after: Query<i64>,
        /// Most entries to return (1–500).
        #[oai(
            default = "default_limit",
            validator(minimum(value = "1"), maximum(value = "500"))
        )]
        limit: Query<u32>,
        /// Long-poll: seconds to wait when nothing is new (0–60).
        #[oai(default, validator(minimum(value = "0"), maximum(value = "60")))]
        wait: Query<u32>,
        /// Acknowledge up to this `seq` before reading (cumulative, as the ack route).
        #[oai(validator(minimum(value = "0")))]
        ack: Query<Option<i64>>,
    ) -> Result<PageAnswer, ApiError> {
        let state = &self.state;
        let device = auth.0.is(id.0)?;
        let subject = device_subject(device.device_id);
        state.limiter.check(Route::Inbox, &subject).await?;
        if let Some(up_to) = ack.0 {
            state.limiter.check(Route::Ack, &subject).await?;
            state
                .v2
                .store
                .ack_queue(device.device_id, QueueSeq(up_to))
                .await
                .map_err(v2_error)?;
            state.v2.blobs.acked();
        }
        let (after, limit, wait) = (after.0, limit.0, wait.0);
        if wait == 0 || state.settings.max_wait.is_zero() {
            return Ok(PageAnswer::Ok(Json(self.read(device, after, limit).await?)));
        }
        // Subscribe before reading, so an entry stored in between wakes us.
        let mut subscription = state
            .wake
            .subscribe_device(device.device_id, state.settings.max_long_polls_per_user);
        let wait = Duration::from_secs(u64::from(wait)).min(state.settings.max_wait);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let page = self.read(device, after, limit).await?;
            if !page.messages.is_empty() {
                return Ok(PageAnswer::Ok(Json(page)));
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match subscription.wait(left).await {
                WakeReason::Woken if !left.is_zero() => {}
                _ => return Ok(PageAnswer::Ok(Json(page))),
            }
        }
    }

    /// Acknowledge the queue up to a `seq`
    ///
    /// Cumulative: every entry with `seq <= up_to` is deleted (a body shared
    /// with other devices goes when the last of them acknowledges it).
    /// Idempotent; the acknowledged position never moves back.
    #[oai(
        path = "/v2/devices/:id/queue/ack",
        method = "post",
        operation_id = "v2_ack_queue"
    )]
    async fn ack(
        &self,
        auth: V2Auth,
        #[oai(name = "id")] id: Path<i64>,
        body: Json<AckQueue>,
    ) -> Result<AckAnswer, ApiError> {
        let state = &self.state;
        let device = auth.0.device_is(id.0)?.device_id;
        auth.0.spend(state, Route::Ack).await?;
        if body.0.up_to.0 < 0 {
            return Err(ApiError::invalid_field("up_to", "must not be negative"));
        }
        let acked = state
            .v2
            .store
            .ack_queue(device, body.0.up_to)
            .await
            .map_err(v2_error)?;
        state.v2.blobs.acked();
        Ok(AckAnswer::Ok(Json(QueueAcked { acked_up_to: acked })))
    }
}
