//! Sending: resolve the recipient, check their key against the pinned one,
//! seal, queue in the outbox, post with a `client_msg_id`, mark stored. A
//! send that fails for a transient reason stays queued and is retried with
//! the same id (the relay stores it once). Also delivery-status polling.

use std::time::Duration;

use chrono::{DateTime, Utc};
use kavro_proto::MessageId;
use kavro_proto::api::{DeliveryState, SendMessage};
use kavro_proto::attachment::FileRef;
use kavro_proto::crypto::{Payload, SafetyNumber, seal};
use uuid::Uuid;

use super::{Session, SessionError, Unlocked, check_username, now};
use crate::history::{LocalId, NewOutgoing, OutboxEntry, OutgoingState};
use crate::pinning::{self, Contact, Observation};
use crate::relay::RelayError;

/// A message handed to the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMessage {
    pub local_id: LocalId,
    /// The envelope's message id (the recipient de-duplicates on it).
    pub msg_uuid: Uuid,
    /// The relay's id (for delivery status).
    pub relay_id: MessageId,
    /// The recipient as the relay spells the name.
    pub to: String,
    pub sent_at: DateTime<Utc>,
    pub state: OutgoingState,
    /// Set when this send pinned the recipient's key (trust on first use):
    /// the safety number to compare.
    pub first_use: Option<SafetyNumber>,
    /// Earlier queued sends retried first.
    pub flushed: FlushReport,
}

/// The result of retrying the outbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlushReport {
    /// Confirmed by the relay now.
    pub sent: usize,
    /// Refused for good (recipient gone, invalid): `(message, reason)`.
    pub failed: Vec<(LocalId, String)>,
    /// Still queued (the relay is unreachable or busy).
    pub remaining: usize,
}

/// How waiting for a delivery receipt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The recipient acknowledged it.
    Delivered(Option<DateTime<Utc>>),
    /// Its time to live ran out on the relay before the recipient fetched it.
    Expired,
    /// Still pending when the timeout ran out.
    TimedOut,
}

/// The reason stored with a send the relay refused for good.
fn refusal_reason(err: &RelayError) -> String {
    match err {
        RelayError::NotFound(_) => "the recipient no longer exists on the relay".to_owned(),
        other => other.describe_details(),
    }
}

impl Session {
    /// Encrypts `text` to `to` and hands it to the relay. Refuses (with
    /// [`SessionError::KeyChanged`]) when the relay shows a key other than
    /// the one pinned for `to`. Returns once the relay stored it.
    pub async fn send(&self, to: &str, text: &str) -> Result<SentMessage, SessionError> {
        check_username(to)?;
        if text.is_empty() {
            return Err(SessionError::InvalidInput(
                "the message is empty; nothing to send".to_owned(),
            ));
        }
        let unlocked = self.unlock()?;
        let flushed = self.flush_first(&unlocked).await?;
        let (contact, first_use) = self.recipient(&unlocked, to).await?;
        let payload = Payload::new(
            unlocked.account.username.clone(),
            contact.username.clone(),
            text,
        );
        self.send_sealed(&unlocked, contact, payload, None, first_use, flushed)
            .await
    }

    /// Retries earlier sends that did not get through, in order, before a
    /// new one; an outage is no reason not to try the new one.
    pub(super) async fn flush_first(
        &self,
        unlocked: &Unlocked,
    ) -> Result<FlushReport, SessionError> {
        match self.flush(unlocked).await {
            Ok(report) => Ok(report),
            Err(err) if err.is_transient() => Ok(FlushReport::default()),
            Err(err) => Err(err),
        }
    }

    /// The contact to send to, their key checked against the pinned one
    /// (pinned now on first use: then with the safety number to compare).
    pub(super) async fn recipient(
        &self,
        unlocked: &Unlocked,
        to: &str,
    ) -> Result<(Contact, Option<SafetyNumber>), SessionError> {
        let (info, server_key) = self.lookup(&unlocked.token, to).await?;
        let existing = self.history.contact(&info.username).await?;
        let observed = pinning::observe(
            existing.as_ref(),
            &info.username,
            info.user_id,
            server_key,
            now(),
        );
        if let Some(contact) = observed.to_save() {
            self.history.save_contact(contact).await?;
        }
        let contact = match (&observed, existing) {
            (Observation::FirstUse(contact), _) => contact.clone(),
            (Observation::Match, Some(contact)) if contact.can_send() => contact,
            _ => {
                return Err(SessionError::KeyChanged {
                    username: info.username,
                });
            }
        };
        let first_use = matches!(observed, Observation::FirstUse(_)).then(|| {
            SafetyNumber::compute(
                &unlocked.account.username,
                unlocked.keypair.public(),
                &contact.username,
                &contact.key,
            )
        });
        Ok((contact, first_use))
    }

    /// Seals `payload` to `contact`, queues it in the outbox (with the
    /// attachment it carries, if any, and its caption) and posts it.
    pub(super) async fn send_sealed(
        &self,
        unlocked: &Unlocked,
        contact: Contact,
        payload: Payload,
        file: Option<(FileRef, String)>,
        first_use: Option<SafetyNumber>,
        flushed: FlushReport,
    ) -> Result<SentMessage, SessionError> {
        let sealed = seal(&unlocked.keypair, &contact.key, &payload)?;
        // History shows a file as its line; the caption is the payload's text.
        let text = match &payload.file {
            Some(file) => crate::v2::payload::Body::file_line(file, Some(payload.text.as_str())),
            None => payload.text.clone(),
        };
        let client_msg_id = Uuid::new_v4();
        let local_id = self
            .history
            .queue_outgoing(
                &NewOutgoing {
                    msg_uuid: payload.message_id,
                    client_msg_id,
                    peer: contact.username.clone(),
                    peer_user_id: contact.user_id,
                    sent_at: payload.sent_at,
                    text,
                    ciphertext: sealed.ciphertext_b64.clone(),
                    ephemeral_pubkey: sealed.ephemeral_pubkey_hex.clone(),
                    file,
                },
                now(),
            )
            .await?;
        let entry = OutboxEntry {
            local_id,
            client_msg_id,
            recipient_id: contact.user_id,
            ciphertext: sealed.ciphertext_b64,
            ephemeral_pubkey: sealed.ephemeral_pubkey_hex,
            attempts: 0,
        };
        let relay_id = match self.post(unlocked, &entry).await {
            Ok(id) => id,
            Err(err) if err.is_transient() => {
                return Err(SessionError::Queued {
                    cause: Box::new(err),
                });
            }
            Err(err) => return Err(err),
        };
        Ok(SentMessage {
            local_id,
            msg_uuid: payload.message_id,
            relay_id,
            to: contact.username,
            sent_at: payload.sent_at,
            state: OutgoingState::Stored,
            first_use,
            flushed,
        })
    }

    /// Posts one queued message and records the outcome: stored, failed for
    /// good (out of the outbox), or still queued (transient errors).
    async fn post(
        &self,
        unlocked: &Unlocked,
        entry: &OutboxEntry,
    ) -> Result<MessageId, SessionError> {
        let message = SendMessage {
            recipient_id: entry.recipient_id,
            ciphertext: entry.ciphertext.clone().into(),
            ephemeral_pubkey: entry.ephemeral_pubkey.clone().into(),
            metadata: None,
            client_msg_id: Some(entry.client_msg_id),
        };
        match self.relay.send(&unlocked.token, &message).await {
            Ok(id) => {
                self.history.mark_stored(entry.local_id, id).await?;
                Ok(id)
            }
            Err(err) if err.is_transient() || matches!(err, RelayError::Unauthorized(_)) => {
                self.history
                    .note_attempt(entry.local_id, &err.to_string())
                    .await?;
                Err(self.relay_error(err))
            }
            Err(err) => {
                self.history
                    .mark_failed(entry.local_id, &refusal_reason(&err))
                    .await?;
                Err(match err {
                    RelayError::NotFound(_) => {
                        SessionError::NoSuchUser(format!("user #{}", entry.recipient_id))
                    }
                    other => self.relay_error(other),
                })
            }
        }
    }

    /// Retries every queued send, oldest first, each with its original id.
    pub async fn flush_outbox(&self) -> Result<FlushReport, SessionError> {
        let unlocked = self.unlock()?;
        self.flush(&unlocked).await
    }

    async fn flush(&self, unlocked: &Unlocked) -> Result<FlushReport, SessionError> {
        let queued = self.history.outbox().await?;
        let mut report = FlushReport::default();
        for (index, entry) in queued.iter().enumerate() {
            match self.post(unlocked, entry).await {
                Ok(_) => report.sent += 1,
                Err(err) if err.is_transient() => {
                    report.remaining = queued.len() - index;
                    return if report.sent == 0 && report.failed.is_empty() {
                        Err(err)
                    } else {
                        Ok(report)
                    };
                }
                Err(err @ SessionError::AuthRefused { .. }) => return Err(err),
                Err(err) => report.failed.push((entry.local_id, err.to_string())),
            }
        }
        Ok(report)
    }

    /// Polls the relay until the recipient acknowledged `relay_id` (our
    /// message `local_id`), it expired, or `timeout` passed. Records the
    /// outcome in the history.
    pub async fn wait_for_delivery(
        &self,
        local_id: LocalId,
        relay_id: MessageId,
        timeout: Duration,
    ) -> Result<DeliveryOutcome, SessionError> {
        let unlocked = self.unlock()?;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut pause = Duration::from_millis(250);
        loop {
            let wait = match self.check_delivery(&unlocked, local_id, relay_id).await {
                Ok(Some(outcome)) => return Ok(outcome),
                Ok(None) => pause,
                Err(SessionError::RateLimited { retry_after }) => {
                    retry_after.unwrap_or(Duration::from_secs(2))
                }
                Err(err) if err.is_transient() => pause,
                Err(err) => return Err(err),
            };
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(DeliveryOutcome::TimedOut);
            }
            tokio::time::sleep(wait.min(deadline - now)).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    /// Asks the relay once about each of our messages still not delivered
    /// (`(local id, relay id)` pairs) and records what changed: the
    /// delivered and expired ones, in the order given. v1 has no route for
    /// several statuses at once, so this is one status request per message;
    /// it stops at the first error (the rest is asked again next time).
    pub async fn check_deliveries(
        &self,
        messages: &[(LocalId, MessageId)],
    ) -> Result<Vec<(LocalId, DeliveryOutcome)>, SessionError> {
        let unlocked = self.unlock()?;
        let mut changed = Vec::new();
        for &(local_id, relay_id) in messages {
            match self.check_delivery(&unlocked, local_id, relay_id).await {
                Ok(Some(outcome)) => changed.push((local_id, outcome)),
                Ok(None) => {}
                Err(err) if changed.is_empty() => return Err(err),
                Err(_) => break,
            }
        }
        Ok(changed)
    }

    /// One status request: `Some` (and recorded) once delivered or expired,
    /// `None` while pending.
    async fn check_delivery(
        &self,
        unlocked: &Unlocked,
        local_id: LocalId,
        relay_id: MessageId,
    ) -> Result<Option<DeliveryOutcome>, SessionError> {
        let status = self
            .relay
            .message_status(&unlocked.token, relay_id)
            .await
            .map_err(|e| self.relay_error(e))?;
        let outcome = match status.status {
            DeliveryState::Delivered => {
                self.history
                    .mark_delivered(local_id, status.delivered_at)
                    .await?;
                DeliveryOutcome::Delivered(status.delivered_at)
            }
            DeliveryState::Expired => {
                self.history
                    .mark_failed(
                        local_id,
                        "expired on the relay before the recipient fetched it",
                    )
                    .await?;
                DeliveryOutcome::Expired
            }
            DeliveryState::Pending => return Ok(None),
        };
        Ok(Some(outcome))
    }
}
