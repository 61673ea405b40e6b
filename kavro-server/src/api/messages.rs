//! `/messages/*`: the queue of opaque ciphertext. Send, fetch (optionally as a
//! long-poll), acknowledge, and the sender's view of delivery.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use kavro_proto::api::{
    BatchAck, BatchAckResponse, DeliveryStatus, Inbox, InboxMessage, InboxOrder, SendMessage,
    SendResponse, StatusResponse,
};
use kavro_proto::validate::{self, CiphertextError};
use kavro_proto::{MessageId, UserId};
use poem::Request;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};

use super::{ApiTags, BearerAuth, client_ip, ip_subject};
use crate::clock::after;
use crate::error::ApiError;
use crate::limits::Route;
use crate::state::AppState;
use crate::store::{AckOutcome, MessageRecord, NewMessage, Quota, StoreError};
use crate::wake::WakeReason;

pub struct MessagesApi {
    state: Arc<AppState>,
}

#[derive(ApiResponse)]
enum Sent {
    /// Stored (or, for a retried `client_msg_id`, stored before: same id).
    #[oai(status = 201)]
    Created(Json<SendResponse>),
}

#[derive(ApiResponse)]
enum InboxResponse {
    #[oai(status = 200)]
    Ok(Json<Inbox>),
}

#[derive(ApiResponse)]
enum Acked {
    #[oai(status = 200)]
    Ok(Json<StatusResponse>),
}

#[derive(ApiResponse)]
enum BatchAcked {
    #[oai(status = 200)]
    Ok(Json<BatchAckResponse>),
}

#[derive(ApiResponse)]
enum StatusAnswer {
    #[oai(status = 200)]
    Ok(Json<DeliveryStatus>),
}

impl MessagesApi {
    pub fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }

    fn view(&self, record: MessageRecord) -> InboxMessage {
        let metadata = record.metadata.and_then(|stored| {
            self.state
                .fields
                .decrypt_json(&stored)
                .map_err(
                    |e| tracing::warn!(message = record.id.0, error = %e, "metadata unreadable"),
                )
                .ok()
        });
        InboxMessage {
            id: record.id,
            sender_id: record.sender_id,
            recipient_id: record.recipient_id,
            ciphertext: validate::base64_encode(&record.ciphertext),
            ephemeral_pubkey: record.ephemeral_pubkey,
            metadata,
            created_at: record.created_at,
        }
    }

    async fn read_inbox(
        &self,
        user: UserId,
        limit: u32,
        order: InboxOrder,
    ) -> Result<Vec<InboxMessage>, ApiError> {
        let records = self
            .state
            .store
            .inbox(user, limit, order, self.state.clock.now())
            .await?;
        Ok(records.into_iter().map(|r| self.view(r)).collect())
    }
}

#[OpenApi(tag = "ApiTags::Messages")]
impl MessagesApi {
    /// Send a message
    ///
    /// `ciphertext` is opaque to the relay (our clients put base64(nonce ||
    /// crypto_box) there). `metadata` is at most 4 KiB of JSON (`422`). With
    /// `client_msg_id`, a retry returns the first message's id and stores
    /// nothing new. `429` when the recipient has too many undelivered
    /// messages, in all or from you. `POST /messages/` is the same route.
    #[oai(path = "/messages", method = "post", operation_id = "send_message")]
    async fn send(&self, auth: BearerAuth, body: Json<SendMessage>) -> Result<Sent, ApiError> {
        let sender = auth.0.user_id;
        let state = &self.state;
        state
            .limiter
            .check(Route::Send, &sender.to_string())
            .await?;
        let message = body.0;
        let ciphertext =
            validate::ciphertext(message.ciphertext.as_str()).map_err(|e| match e {
                CiphertextError::InvalidBase64 => ApiError::bad_request(e.to_string()),
                CiphertextError::TooLarge => ApiError::too_large(e.to_string()),
                CiphertextError::Empty | CiphertextError::TooLong => {
                    ApiError::invalid_field("ciphertext", e.to_string())
                }
            })?;
        let ephemeral = validate::pubkey_hex(message.ephemeral_pubkey.as_str())
            .map_err(|m| ApiError::invalid_field("ephemeral_pubkey", m))?;
        if let Some(metadata) = &message.metadata {
            validate::metadata(metadata).map_err(|m| ApiError::invalid_field("metadata", m))?;
        }
        let now = state.clock.now();
        let stored = state
            .store
            .store_message(NewMessage {
                sender_id: sender,
                recipient_id: message.recipient_id,
                ciphertext,
                ephemeral_pubkey: hex::encode(ephemeral),
                metadata: message
                    .metadata
                    .as_ref()
                    .map(|m| state.fields.encrypt_json(m)),
                client_msg_id: message.client_msg_id,
                created_at: now,
                expires_at: after(now, state.settings.message_ttl),
                max_pending: state.settings.max_pending_per_recipient,
                max_pending_per_sender: state.settings.max_pending_per_sender,
            })
            .await
            .map_err(|e| match e {
                StoreError::NotFound => ApiError::not_found("Recipient not found"),
                StoreError::QuotaExceeded(quota) => {
                    let (label, message) = match quota {
                        Quota::Recipient => (
                            "recipient",
                            "The recipient has too many undelivered messages; try again later.",
                        ),
                        Quota::Sender => (
                            "sender",
                            "The recipient has too many undelivered messages from you; \
                             try again once they have read some.",
                        ),
                    };
                    metrics::counter!("kavro_quota_rejections_total", "quota" => label)
                        .increment(1);
                    ApiError::too_many(message, Duration::from_secs(60))
                }
                other => other.into(),
            })?;
        if stored.created {
            metrics::counter!("kavro_messages_stored_total").increment(1);
            state.wake.notify(message.recipient_id);
        }
        Ok(Sent::Created(Json(SendResponse {
            status: "stored".to_owned(),
            id: stored.id,
        })))
    }

    /// Fetch undelivered messages
    ///
    /// Newest first by default (`order=asc` for oldest first). Messages stay
    /// until acknowledged. With `wait=S` and nothing pending, the request is
    /// held up to S seconds and answered as soon as a message arrives (a
    /// long-poll counts once against the rate limit).
    #[oai(path = "/messages/inbox", method = "get", operation_id = "inbox")]
    async fn inbox(
        &self,
        auth: BearerAuth,
        /// Most messages to return (1–200).
        #[oai(
            default = "default_limit",
            validator(minimum(value = "1"), maximum(value = "200"))
        )]
        limit: Query<u32>,
        /// `desc` (newest first, default) or `asc` (oldest first).
        #[oai(default)]
        order: Query<InboxOrder>,
        /// Long-poll: seconds to wait when nothing is pending (0–60).
        #[oai(default, validator(minimum(value = "0"), maximum(value = "60")))]
        wait: Query<u32>,
    ) -> Result<InboxResponse, ApiError> {
        let user = auth.0.user_id;
        let state = &self.state;
        state.limiter.check(Route::Inbox, &user.to_string()).await?;
        let (limit, order, wait) = (limit.0, order.0, wait.0);
        if wait == 0 || state.settings.max_wait.is_zero() {
            let messages = self.read_inbox(user, limit, order).await?;
            return Ok(InboxResponse::Ok(Json(Inbox { messages })));
        }
        // Subscribe before reading, so a message stored in between wakes us.
        let mut subscription = state
            .wake
            .subscribe(user, state.settings.max_long_polls_per_user);
        let wait = Duration::from_secs(u64::from(wait)).min(state.settings.max_wait);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let messages = self.read_inbox(user, limit, order).await?;
            if !messages.is_empty() {
                return Ok(InboxResponse::Ok(Json(Inbox { messages })));
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match subscription.wait(left).await {
                // Woken: read again (the message may have been taken by
                // another of this user's polls; then keep waiting).
                WakeReason::Woken if !left.is_zero() => {}
                _ => {
                    return Ok(InboxResponse::Ok(Json(Inbox {
                        messages: Vec::new(),
                    })));
                }
            }
        }
    }

    /// Acknowledge a message
    ///
    /// Deletes its ciphertext from the relay. Idempotent.
    #[oai(
        path = "/messages/:id/ack",
        method = "post",
        operation_id = "ack_message"
    )]
    async fn ack(
        &self,
        auth: BearerAuth,
        #[oai(name = "id")] id: Path<i64>,
    ) -> Result<Acked, ApiError> {
        let user = auth.0.user_id;
        let state = &self.state;
        state.limiter.check(Route::Ack, &user.to_string()).await?;
        match state
            .store
            .ack(user, MessageId(id.0), state.clock.now())
            .await?
        {
            AckOutcome::Acknowledged { newly } => {
                if newly {
                    metrics::counter!("kavro_messages_delivered_total").increment(1);
                }
                Ok(Acked::Ok(Json(StatusResponse {
                    status: "acknowledged".to_owned(),
                })))
            }
            AckOutcome::NotFound => Err(ApiError::not_found("Message not found")),
            AckOutcome::NotRecipient => Err(ApiError::forbidden(
                "Only the recipient can acknowledge a message",
            )),
        }
    }

    /// Acknowledge several messages
    ///
    /// Up to 500 ids. Ids that are not yours, or unknown, are ignored;
    /// `acknowledged` counts your messages among them that are now acknowledged.
    #[oai(path = "/messages/ack", method = "post", operation_id = "ack_messages")]
    async fn ack_many(
        &self,
        auth: BearerAuth,
        body: Json<BatchAck>,
    ) -> Result<BatchAcked, ApiError> {
        let user = auth.0.user_id;
        let state = &self.state;
        state.limiter.check(Route::Ack, &user.to_string()).await?;
        let ids: BTreeSet<MessageId> = body.0.ids.into_iter().collect();
        if ids.len() > validate::BATCH_ACK_MAX {
            return Err(ApiError::invalid_field(
                "ids",
                format!("at most {} ids per request", validate::BATCH_ACK_MAX),
            ));
        }
        let ids: Vec<MessageId> = ids.into_iter().collect();
        let count = state.store.ack_many(user, &ids, state.clock.now()).await?;
        metrics::counter!("kavro_messages_delivered_total").increment(count.newly);
        Ok(BatchAcked::Ok(Json(BatchAckResponse {
            acknowledged: count.total,
        })))
    }

    /// Delivery status of a message you sent
    ///
    /// `pending`, `delivered` (with `delivered_at`) or `expired`. Only the
    /// sender may ask; the receipt is kept for the retention period.
    #[oai(
        path = "/messages/:id/status",
        method = "get",
        operation_id = "message_status"
    )]
    async fn status(
        &self,
        req: &Request,
        auth: BearerAuth,
        #[oai(name = "id")] id: Path<i64>,
    ) -> Result<StatusAnswer, ApiError> {
        let state = &self.state;
        let ip = client_ip(state, req);
        state
            .limiter
            .check(Route::Lookup, &ip_subject(state, ip))
            .await?;
        let receipt = state
            .store
            .receipt(auth.0.user_id, MessageId(id.0), state.clock.now())
            .await?
            .ok_or_else(|| ApiError::not_found("Message not found"))?;
        Ok(StatusAnswer::Ok(Json(DeliveryStatus {
            status: receipt.state,
            delivered_at: receipt.delivered_at,
        })))
    }
}

fn default_limit() -> u32 {
    validate::INBOX_LIMIT_DEFAULT
}
