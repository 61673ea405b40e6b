//! Receiving: fetch a page of the inbox, open each message, establish what
//! can be verified about it, store it durably, and only then acknowledge it
//! on the relay. Messages that cannot be opened or verified are stored too,
//! with their ciphertext and an error state, and acknowledged: nothing is
//! dropped silently. A message seen twice is stored once.
//!
//! An envelope is `ok` (verified) only if all of these hold:
//! 1. it is addressed to us (the payload names our username);
//! 2. the sender it names is the account the relay says sent it;
//! 3. it was made with the key pinned for that sender (first contact: the
//!    key must be the newest the relay lists for them, and gets pinned).
//!
//! Otherwise it is `unverified` (1 or 2 fail) or `key_mismatch` (3 fails);
//! a legacy message is `unverified`; anything that does not open is
//! `undecryptable`. An envelope signed before this history's replay horizon
//! (`history::replay`) is `unverified` too: it may be a replay.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use kavro_proto::api::{InboxMessage, UserInfo};
use kavro_proto::crypto::{Opened, open};
use kavro_proto::validate::{BATCH_ACK_MAX, INBOX_LIMIT_MAX};

use super::{Session, SessionError, Unlocked, newest_key, now};
use crate::history::{IncomingState, Inserted, LegacyPolicy, NewIncoming, StoredMessage};
use crate::pinning::{self, Contact};
use crate::relay::{InboxQuery, RelayError};

/// How to fetch one page of the inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncOptions {
    /// Page size, 1–200.
    pub limit: u32,
    /// Long-poll up to this many seconds when nothing is pending (0–60).
    pub wait: u32,
    /// Acknowledge on the relay what was stored (`false`: leave it queued).
    pub ack: bool,
}

impl Default for SyncOptions {
    fn default() -> Self {
        Self {
            limit: 100,
            wait: 0,
            ack: true,
        }
    }
}

/// One message from a fetched page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// As stored (for a duplicate: the copy stored first).
    pub message: StoredMessage,
    /// Stored for the first time now (`false`: fetched again because it
    /// was not acknowledged before).
    pub new: bool,
}

/// What one page brought.
#[derive(Debug, Default)]
pub struct SyncBatch {
    /// Messages to show, in the relay's order (oldest first).
    pub messages: Vec<Received>,
    /// Messages the relay returned.
    pub fetched: usize,
    /// Replays of messages already stored (under another relay id): stored
    /// once, acknowledged, not shown again.
    pub duplicates: usize,
    /// How many the relay now counts as acknowledged.
    pub acked: u64,
    /// Set when processing stopped early (e.g. the relay went away while
    /// looking a sender up). What was stored before is acknowledged and in
    /// `messages`; the rest stays on the relay for the next sync.
    pub interrupted: Option<SessionError>,
}

/// Sender lookups done during one page, by lowercase name (`None`: no such user).
type LookupCache = HashMap<String, Option<UserInfo>>;

impl Session {
    /// Fetches one page of the inbox (oldest first), stores every message,
    /// then acknowledges them (unless `options.ack` is false).
    pub async fn sync_inbox(&self, options: SyncOptions) -> Result<SyncBatch, SessionError> {
        let unlocked = self.unlock()?;
        let query = InboxQuery {
            limit: options.limit.clamp(1, INBOX_LIMIT_MAX),
            order: kavro_proto::api::InboxOrder::Asc,
            wait: options.wait,
        };
        let page = self
            .relay
            .inbox(&unlocked.token, query)
            .await
            .map_err(|e| self.relay_error(e))?;
        let mut batch = SyncBatch {
            fetched: page.len(),
            ..SyncBatch::default()
        };
        let mut cache = LookupCache::new();
        let horizon = self
            .history
            .replay_horizon(unlocked.keypair.public())
            .await?;
        let mut stored_ids = Vec::with_capacity(page.len());
        for message in &page {
            let (incoming, contact) =
                match self.verify(&unlocked, message, horizon, &mut cache).await {
                    Ok(verified) => verified,
                    Err(err) => {
                        batch.interrupted = Some(err);
                        break;
                    }
                };
            match self
                .history
                .insert_incoming(&incoming, contact.as_ref(), now())
                .await?
            {
                Inserted::New(id) => {
                    if let Some(stored) = self.history.message(id).await? {
                        batch.messages.push(Received {
                            message: stored,
                            new: true,
                        });
                    }
                }
                Inserted::Duplicate {
                    existing,
                    same_delivery: true,
                } => {
                    if let Some(stored) = self.history.message(existing).await? {
                        batch.messages.push(Received {
                            message: stored,
                            new: false,
                        });
                    }
                }
                Inserted::Duplicate { .. } => batch.duplicates += 1,
            }
            stored_ids.push(message.id);
        }
        if options.ack {
            for chunk in stored_ids.chunks(BATCH_ACK_MAX) {
                match self.relay.ack_many(&unlocked.token, chunk).await {
                    Ok(count) => batch.acked += count,
                    Err(err) => {
                        // Stored but not acknowledged: the relay hands them
                        // out again, and they are recognised then.
                        batch.interrupted.get_or_insert(self.relay_error(err));
                        break;
                    }
                }
            }
        }
        Ok(batch)
    }

    /// Opens `message` and decides what it is (see the module docs). Fails
    /// only when a sender lookup cannot be done right now.
    async fn verify(
        &self,
        unlocked: &Unlocked,
        message: &InboxMessage,
        horizon: Option<DateTime<Utc>>,
        cache: &mut LookupCache,
    ) -> Result<(NewIncoming, Option<Contact>), SessionError> {
        // Who the relay says sent it, if we know that account by name.
        let relay_sender = self.history.contact_by_user_id(message.sender_id).await?;
        let relay_sender_name = relay_sender.as_ref().map(|c| c.username.clone());
        let who = relay_sender_name
            .clone()
            .unwrap_or_else(|| format!("user #{}", message.sender_id));
        let mut incoming = NewIncoming {
            msg_uuid: None,
            relay_id: message.id,
            peer: relay_sender_name,
            peer_user_id: Some(message.sender_id),
            sent_at: message.created_at,
            text: None,
            verified: false,
            state: IncomingState::Undecryptable,
            legacy: false,
            error: None,
            sender_key: None,
            ciphertext: message.ciphertext.clone(),
            ephemeral_pubkey: message.ephemeral_pubkey.clone(),
            file: None,
        };

        let opened = match open(
            &unlocked.keypair,
            &message.ciphertext,
            &message.ephemeral_pubkey,
        ) {
            Ok(opened) => opened,
            Err(err) => {
                incoming.error = Some(format!("{err} (the relay says {who} sent it)"));
                return Ok((incoming, None));
            }
        };
        let (sender_key, payload) = match opened {
            Opened::Legacy { text } => {
                incoming.state = IncomingState::Unverified;
                incoming.legacy = true;
                let policy = self
                    .history
                    .legacy_policy(relay_sender.as_ref().map(|c| c.username.as_str()))
                    .await?;
                if policy == LegacyPolicy::Refuse {
                    incoming.error = Some(format!(
                        "legacy message without sender authentication, refused: legacy messages from {who} are refused here (its ciphertext is kept, its text is not)"
                    ));
                    return Ok((incoming, None));
                }
                incoming.text = Some(text);
                let mut why = format!(
                    "legacy message without sender authentication; only the relay says {who} sent it"
                );
                if relay_sender.is_some() {
                    why.push_str(
                        ", and Kavro contacts normally send authenticated messages: treat it with suspicion",
                    );
                }
                incoming.error = Some(why);
                return Ok((incoming, None));
            }
            Opened::Envelope {
                sender_key,
                payload,
            } => (sender_key, payload),
        };
        incoming.msg_uuid = Some(payload.message_id);
        incoming.sent_at = payload.sent_at;
        incoming.sender_key = Some(sender_key);
        incoming.text = Some(payload.text.clone());
        if let Some(file) = &payload.file {
            // History shows the file as its line; the file is recorded to
            // be saved only if the envelope verifies (history::files).
            incoming.text = Some(crate::v2::payload::Body::file_line(
                file,
                Some(payload.text.as_str()),
            ));
            incoming.file = Some((file.clone(), payload.text.clone()));
        }
        incoming.state = IncomingState::Unverified;

        if let Some(horizon) = horizon
            && payload.sent_at < horizon
        {
            incoming.error = Some(format!(
                "signed {}, before this device's history began ({}): it may be a replay of a message already read here; not shown as verified",
                payload
                    .sent_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                horizon.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            ));
            return Ok((incoming, None));
        }

        let me = &unlocked.account.username;
        if !payload.is_addressed_to(me) {
            incoming.error = Some(format!(
                "addressed to {:?}, not to you: someone forwarded a message meant for another person",
                payload.recipient
            ));
            return Ok((incoming, None));
        }

        // The account the envelope names as sender: a contact, or a lookup.
        let claimed = self.history.contact(&payload.sender).await?;
        let looked_up = match &claimed {
            Some(_) => None,
            None => self.lookup_cached(unlocked, &payload.sender, cache).await?,
        };
        let (claimed_name, claimed_id) = match (&claimed, &looked_up) {
            (Some(contact), _) => (contact.username.clone(), contact.user_id),
            (None, Some(info)) => (info.username.clone(), info.user_id),
            (None, None) => {
                incoming.error = Some(format!(
                    "claims to be from {:?}, who has no account on this relay (the relay says {who} sent it)",
                    payload.sender
                ));
                return Ok((incoming, None));
            }
        };
        if claimed_id != message.sender_id {
            incoming.error = Some(format!(
                "claims to be from {claimed_name}, but the relay says {who} sent it"
            ));
            return Ok((incoming, None));
        }
        incoming.peer = Some(claimed_name.clone());

        if let Some(info) = &looked_up {
            // First contact: the key must be the newest the relay publishes
            // for them (an older, listed key may be a lost or stolen device's).
            if newest_key(info).ok() != Some(sender_key) {
                incoming.error = Some(format!(
                    "made with a key that is not the newest the relay lists for {claimed_name}; not pinned"
                ));
                return Ok((incoming, None));
            }
        }
        let observed = pinning::observe(
            claimed.as_ref(),
            &claimed_name,
            message.sender_id,
            sender_key,
            now(),
        );
        if observed.trusted() {
            incoming.state = IncomingState::Ok;
            incoming.verified = true;
        } else {
            incoming.state = IncomingState::KeyMismatch;
            incoming.error = Some(format!(
                "made with a key other than the one pinned for {claimed_name}: their key changed, or someone impersonates them"
            ));
        }
        Ok((incoming, observed.to_save().cloned()))
    }

    async fn lookup_cached(
        &self,
        unlocked: &Unlocked,
        username: &str,
        cache: &mut LookupCache,
    ) -> Result<Option<UserInfo>, SessionError> {
        let key = username.to_ascii_lowercase();
        if let Some(found) = cache.get(&key) {
            return Ok(found.clone());
        }
        let found = match self.relay.user_by_name(&unlocked.token, username).await {
            Ok(info) => Some(info),
            Err(RelayError::NotFound(_)) => None,
            Err(err) => return Err(self.relay_error(err)),
        };
        cache.insert(key, found.clone());
        Ok(found)
    }
}
