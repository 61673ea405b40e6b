//! Sending and receiving: application messages go through the outbox (kept
//! with the ratchet state before they are posted, re-encrypted after a
//! `409`); the device's queue is applied in `seq` order, each entry in one
//! local transaction with the queue position, and acknowledged on the relay
//! only after that transaction committed.

use chrono::Utc;
use kavro_proto::v2::GroupId;
use kavro_proto::v2::api::{PostCommit, PostGroupMessage, QueueEntry, QueueKind};
use kavro_proto::validate::{base64_encode, base64_strict};
use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::{
    MlsMessageBodyIn, MlsMessageIn, ProcessedMessageContent, ProtocolMessage, StagedWelcome,
};
use openmls_traits::OpenMlsProvider as _;
use uuid::Uuid;

use super::groups::join_config;
use super::payload::{Body, MAX_TEXT_BYTES, Payload};
use super::{Posted, V2Error, V2Session, credential_name, mls_err};
use crate::mls::MlsStoreError;
use crate::mls::rows::{self, LineKind, MessageRow, OutboxKind, OutboxRow};

/// Queue entries read per request.
const PAGE: u32 = 100;
/// Attempts to send one message while other members keep committing.
const SEND_ATTEMPTS: usize = 5;

/// What applying one queue entry writes besides the MLS state.
enum Effect {
    /// A history line.
    Line(MessageRow),
    /// A history line, and the conversation's (new) name (`None`: a 1:1 chat).
    Named(MessageRow, Option<String>),
}

/// What applying one entry did to a group.
struct Step {
    group: GroupId,
    /// A Welcome: this device joined the group.
    joined: bool,
    /// A Welcome or a commit: the members may have changed.
    membership: bool,
}

/// A text that arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub group_id: GroupId,
    pub sender: String,
    pub text: String,
}

/// What one [`V2Session::sync`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// Texts received, in queue order.
    pub received: Vec<Received>,
    /// Queue entries applied (welcomes, commits, proposals, messages).
    pub applied: usize,
    /// Entries that could not be applied (not for this device, corrupt, from
    /// an epoch this device no longer has); acknowledged all the same.
    pub skipped: usize,
}

impl V2Session {
    /// Sends `text` to the conversation; returns the message id.
    pub async fn send(&mut self, group: &GroupId, text: &str) -> Result<Uuid, V2Error> {
        if text.len() > MAX_TEXT_BYTES {
            return Err(V2Error::TooLong(text.len()));
        }
        let payload = Payload::new(Body::Text {
            text: text.to_owned(),
        });
        self.send_payload(group, &payload).await?;
        Ok(payload.id)
    }

    /// Encrypts, keeps in the outbox, posts; after a `409`, applies the
    /// queue and encrypts again in the new epoch.
    pub(crate) async fn send_payload(
        &mut self,
        group_id: &GroupId,
        payload: &Payload,
    ) -> Result<(), V2Error> {
        for _ in 0..SEND_ATTEMPTS {
            let mut group = self
                .load_group(group_id)?
                .ok_or_else(|| V2Error::UnknownConversation(group_id.to_text()))?;
            if !group.is_active() {
                return Err(V2Error::Refused(
                    "this device is no longer in the conversation".to_owned(),
                ));
            }
            let message = group
                .create_message(self.store.provider(), &self.signer, &payload.to_bytes())
                .map_err(|e| mls_err("encrypting")(&e))?;
            let bytes = message
                .tls_serialize_detached()
                .map_err(|e| mls_err("encoding")(&e))?;
            let client_msg_id = Uuid::new_v4();
            let request = PostGroupMessage {
                message: base64_encode(&bytes).into(),
                client_msg_id: Some(client_msg_id),
                blob_ids: Vec::new(),
            };
            let line = String::from_utf8_lossy(&payload.to_bytes()).into_owned();
            match self
                .keep_and_post(group_id, OutboxKind::Message, client_msg_id, &request, line)
                .await
            {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                // Kept in the outbox before the post: the next sync posts it.
                Err(V2Error::Relay(err)) if err.is_transient() => {
                    return Err(V2Error::Queued(Box::new(V2Error::Relay(err))));
                }
                Err(err) => return Err(err),
            }
            self.sync_queue().await?;
        }
        Err(V2Error::Contended)
    }

    /// Keeps `request` in the outbox (durably, before it is posted, so a
    /// crash retries it under the same `client_msg_id`), then posts and
    /// settles it like [`Self::post_outbox`]. `line` is the history line
    /// written when the relay takes it (empty: none).
    pub(crate) async fn keep_and_post(
        &mut self,
        group_id: &GroupId,
        kind: OutboxKind,
        client_msg_id: Uuid,
        request: &impl serde::Serialize,
        line: String,
    ) -> Result<bool, V2Error> {
        let row = OutboxRow {
            client_msg_id: client_msg_id.to_string(),
            group_id: group_id.clone(),
            kind,
            request: serde_json::to_string(request).map_err(|e| mls_err("encoding")(&e))?,
            line,
        };
        let mut tx = self.store.begin().await?;
        rows::push_outbox(&mut tx, &row)
            .await
            .map_err(MlsStoreError::from)?;
        self.store.commit(tx).await?;
        self.post_outbox(&row).await
    }

    /// Posts one outbox row and settles it: accepted (merged or recorded,
    /// `true`) or refused for its epoch (dropped, `false`). Transport and
    /// relay errors leave it for the next [`V2Session::sync`].
    pub(crate) async fn post_outbox(&mut self, row: &OutboxRow) -> Result<bool, V2Error> {
        let bad = |e: &dyn std::fmt::Display| mls_err("reading the outbox")(e);
        let posted = match row.kind {
            OutboxKind::Commit => {
                let request: PostCommit =
                    serde_json::from_str(&row.request).map_err(|e| bad(&e))?;
                self.relay
                    .post_commit(&self.token, &row.group_id, &request)
                    .await?
            }
            OutboxKind::Message => {
                let request: PostGroupMessage =
                    serde_json::from_str(&row.request).map_err(|e| bad(&e))?;
                self.relay
                    .post_message(&self.token, &row.group_id, &request)
                    .await?
            }
        };
        let mut group = self
            .load_group(&row.group_id)?
            .ok_or_else(|| V2Error::UnknownConversation(row.group_id.to_text()))?;
        let accepted = matches!(posted, Posted::Accepted(_));
        let mut line = None;
        match (row.kind, accepted) {
            (OutboxKind::Commit, true) => {
                group
                    .merge_pending_commit(self.store.provider())
                    .map_err(|e| mls_err("merging the commit")(&e))?;
                line = Some((LineKind::System, row.line.clone()));
            }
            (OutboxKind::Commit, false) => {
                group
                    .clear_pending_commit(self.store.provider().storage())
                    .map_err(|e| mls_err("dropping the commit")(&e))?;
            }
            (OutboxKind::Message, true) => {
                if let Some(Payload {
                    body: Body::Text { text },
                    ..
                }) = Payload::parse(row.line.as_bytes())
                {
                    line = Some((LineKind::Text, text));
                }
            }
            (OutboxKind::Message, false) => {}
        }
        let mut tx = self.store.begin().await?;
        rows::drop_outbox(&mut tx, &row.client_msg_id)
            .await
            .map_err(MlsStoreError::from)?;
        if let Some((kind, body)) = line {
            let entry = MessageRow {
                epoch: group.epoch().as_u64(),
                kind,
                sender: self.device.username.clone(),
                outgoing: true,
                body,
                at: Utc::now(),
            };
            rows::add_line(&mut tx, &row.group_id, &entry)
                .await
                .map_err(MlsStoreError::from)?;
        }
        self.store.commit(tx).await?;
        Ok(accepted)
    }

    /// Posts what the outbox still holds (after a crash or a failed post),
    /// applies the queue, and tops up key packages.
    pub async fn sync(&mut self) -> Result<SyncReport, V2Error> {
        match self.sync_once().await {
            Err(err) if self.renewed_after(&err).await? => self.sync_once().await,
            done => done,
        }
    }

    /// [`V2Session::sync`] with the device token at hand (every step can be
    /// run again: the outbox and the queue position are durable).
    async fn sync_once(&mut self) -> Result<SyncReport, V2Error> {
        let pending = {
            let mut conn = self.store.begin().await?;
            rows::outbox(&mut conn).await.map_err(MlsStoreError::from)?
        };
        let mut resend = Vec::new();
        for row in pending {
            if !self.post_outbox(&row).await? && row.kind == OutboxKind::Message {
                resend.push(row);
            }
        }
        let mut report = self.sync_queue().await?;
        self.commit_departures().await?;
        for row in resend {
            if let Some(payload) = Payload::parse(row.line.as_bytes()) {
                self.send_payload(&row.group_id, &payload).await?;
            }
        }
        report
            .received
            .append(&mut std::mem::take(&mut self.unread));
        self.top_up_when_due().await?;
        Ok(report)
    }

    /// Reads and applies the whole queue (without waiting), acknowledging
    /// page by page. Texts go to the session's unread list.
    pub(crate) async fn sync_queue(&mut self) -> Result<SyncReport, V2Error> {
        let mut report = SyncReport::default();
        loop {
            let page = self
                .relay
                .queue(
                    &self.token,
                    self.device.device_id,
                    self.device.queue_after,
                    PAGE,
                    0,
                )
                .await?;
            let Some(last) = page.messages.last().map(|e| e.seq) else {
                break;
            };
            for entry in &page.messages {
                // Applied before a crash that came before the ack.
                if entry.seq <= self.device.queue_after {
                    continue;
                }
                if entry.kind == QueueKind::Welcome {
                    self.welcomes_since_count += 1;
                }
                if self.apply(entry).await? {
                    report.applied += 1;
                } else {
                    report.skipped += 1;
                }
            }
            self.relay
                .ack(&self.token, self.device.device_id, last)
                .await?;
        }
        Ok(report)
    }

    /// Applies one entry in one transaction with the queue position.
    /// `false` when it could not be applied (and is skipped).
    async fn apply(&mut self, entry: &QueueEntry) -> Result<bool, V2Error> {
        let mut lines = Vec::new();
        let outcome = self.apply_mls(entry, &mut lines);
        let group = match outcome {
            Ok(Some(Step {
                group,
                joined,
                membership: true,
            })) => self.check_members(group, joined, &mut lines).await?,
            Ok(Some(step)) => Some((step.group, step.joined)),
            Ok(None) => None,
            Err(_) => {
                // Forget whatever openmls changed before it failed.
                self.store.reload().await?;
                None
            }
        };
        let mut tx = self.store.begin().await?;
        if let Some((id, joined)) = &group {
            if *joined {
                rows::add_conversation(&mut tx, id, None, Utc::now())
                    .await
                    .map_err(MlsStoreError::from)?;
            }
            for effect in &lines {
                let line = match effect {
                    Effect::Line(line) => line,
                    Effect::Named(line, name) => {
                        rows::rename_conversation(&mut tx, id, name.as_deref())
                            .await
                            .map_err(MlsStoreError::from)?;
                        line
                    }
                };
                rows::add_line(&mut tx, id, line)
                    .await
                    .map_err(MlsStoreError::from)?;
            }
        }
        rows::set_queue_after(&mut tx, entry.seq)
            .await
            .map_err(MlsStoreError::from)?;
        self.store.commit(tx).await?;
        self.device.queue_after = entry.seq;
        for effect in &lines {
            if let (Effect::Line(line), Some((id, _))) = (effect, &group)
                && line.kind == LineKind::Text
            {
                self.unread.push(Received {
                    group_id: id.clone(),
                    sender: line.sender.clone(),
                    text: line.body.clone(),
                });
            }
        }
        Ok(group.is_some())
    }

    /// A group step whose membership may have changed (a Welcome or a
    /// commit) is checked against the members' chains of device links: if a
    /// member is outside its account's chain, the step is undone (this
    /// device stays in the epoch before it) and a system line says why.
    /// Returns the group and whether it was joined, `None` if refused.
    async fn check_members(
        &mut self,
        group: GroupId,
        joined: bool,
        lines: &mut Vec<Effect>,
    ) -> Result<Option<(GroupId, bool)>, V2Error> {
        let outsiders = match self.outsiders(&group).await {
            Ok(outsiders) => outsiders,
            Err(err) => {
                self.store.reload().await?;
                return Err(err);
            }
        };
        if outsiders.is_empty() {
            return Ok(Some((group, joined)));
        }
        self.store.reload().await?;
        lines.clear();
        if joined {
            // Never joined: nothing to write to.
            return Ok(None);
        }
        let epoch = self.load_group(&group)?.map_or(0, |g| g.epoch().as_u64());
        lines.push(Effect::Line(MessageRow {
            epoch,
            kind: LineKind::System,
            sender: String::new(),
            outgoing: false,
            body: format!(
                "refused a change that would add a device outside its account's chain ({}); this device does not follow the conversation past it",
                outsiders.join("; ")
            ),
            at: Utc::now(),
        }));
        Ok(Some((group, false)))
    }

    /// The MLS half of [`Self::apply`]: the group step and the lines to
    /// write (with a rename), or `None` for an entry of an unknown group.
    fn apply_mls(
        &self,
        entry: &QueueEntry,
        lines: &mut Vec<Effect>,
    ) -> Result<Option<Step>, V2Error> {
        let provider = self.store.provider();
        let bytes = base64_strict(entry.message.as_str())
            .ok_or_else(|| mls_err("reading the queue")(&"not base64"))?;
        let message = MlsMessageIn::tls_deserialize_exact(&bytes)
            .map_err(|e| mls_err("reading the queue")(&e))?;
        let me = self.device.username.to_ascii_lowercase();
        let line = |epoch: u64, kind, sender: &str, body: String| MessageRow {
            epoch,
            kind,
            sender: sender.to_owned(),
            outgoing: sender.eq_ignore_ascii_case(&me),
            body,
            at: entry.created_at,
        };
        let protocol = match message.extract() {
            MlsMessageBodyIn::Welcome(welcome) => {
                let group =
                    StagedWelcome::new_from_welcome(provider, &join_config(), welcome, None)
                        .map_err(|e| mls_err("joining")(&e))?
                        .into_group(provider)
                        .map_err(|e| mls_err("joining")(&e))?;
                let id = GroupId::from_bytes(group.group_id().as_slice())
                    .map_err(|e| mls_err("joining")(&e))?;
                let adder = group
                    .members()
                    .find(|m| {
                        m.index != group.own_leaf_index() && m.signature_key != self.signer.public()
                    })
                    .and_then(|m| credential_name(&m.credential))
                    .unwrap_or_default();
                lines.push(Effect::Line(line(
                    group.epoch().as_u64(),
                    LineKind::System,
                    &adder,
                    format!("this device joined (added by {adder})"),
                )));
                return Ok(Some(Step {
                    group: id,
                    joined: true,
                    membership: true,
                }));
            }
            MlsMessageBodyIn::PrivateMessage(m) => ProtocolMessage::from(m),
            MlsMessageBodyIn::PublicMessage(m) => ProtocolMessage::from(m),
            _ => return Err(mls_err("reading the queue")(&"unexpected message type")),
        };
        let id = GroupId::from_bytes(protocol.group_id().as_slice())
            .map_err(|e| mls_err("reading the queue")(&e))?;
        let Some(mut group) = self.load_group(&id)? else {
            return Ok(None);
        };
        let processed = group
            .process_message(provider, protocol)
            .map_err(|e| mls_err("decrypting")(&e))?;
        let sender = credential_name(processed.credential()).unwrap_or_default();
        let epoch = processed.epoch().as_u64();
        let mut membership = false;
        match processed.into_content() {
            ProcessedMessageContent::ApplicationMessage(app) => {
                match Payload::parse(&app.into_bytes()) {
                    Some(Payload {
                        body: Body::Text { text },
                        ..
                    }) => lines.push(Effect::Line(line(epoch, LineKind::Text, &sender, text))),
                    Some(Payload {
                        body: Body::Meta { name },
                        ..
                    }) => {
                        let text = match &name {
                            Some(name) => format!("{sender} named the conversation #{name}"),
                            None => format!("{sender} made this a 1:1 chat"),
                        };
                        lines.push(Effect::Named(
                            line(epoch, LineKind::System, &sender, text),
                            name,
                        ));
                    }
                    None => return Err(mls_err("reading a message")(&"unknown payload")),
                }
            }
            ProcessedMessageContent::StagedCommitMessage(staged) => {
                membership = true;
                for add in staged.add_proposals() {
                    let leaf = add.add_proposal().key_package().leaf_node();
                    let name = credential_name(leaf.credential()).unwrap_or_default();
                    let text = if name == sender {
                        format!(
                            "{sender} added their device {} to the conversation",
                            super::fingerprint(leaf.signature_key().as_slice())
                        )
                    } else {
                        format!("{sender} added {name}")
                    };
                    lines.push(Effect::Line(line(
                        epoch + 1,
                        LineKind::System,
                        &sender,
                        text,
                    )));
                }
                for remove in staged.remove_proposals() {
                    let name = group
                        .member(remove.remove_proposal().removed())
                        .and_then(credential_name)
                        .unwrap_or_default();
                    let text = if remove.remove_proposal().removed() == group.own_leaf_index() {
                        format!("{sender} removed this device")
                    } else if name == sender {
                        format!("{sender} removed a device")
                    } else {
                        format!("{sender} removed {name}")
                    };
                    lines.push(Effect::Line(line(
                        epoch + 1,
                        LineKind::System,
                        &sender,
                        text,
                    )));
                }
                group
                    .merge_staged_commit(provider, *staged)
                    .map_err(|e| mls_err("merging a commit")(&e))?;
            }
            ProcessedMessageContent::ProposalMessage(proposal) => {
                group
                    .store_pending_proposal(provider.storage(), *proposal)
                    .map_err(|e| mls_err("storing a proposal")(&e))?;
            }
            // External joins are not used; own messages never come back (the
            // relay queues a message for the other members only).
            _ => {}
        }
        Ok(Some(Step {
            group: id,
            joined: false,
            membership,
        }))
    }

    /// The last `limit` lines of a conversation, oldest first.
    pub async fn history(&self, group: &GroupId, limit: u32) -> Result<Vec<MessageRow>, V2Error> {
        let mut conn = self.store.begin().await?;
        Ok(rows::lines(&mut conn, group, limit)
            .await
            .map_err(MlsStoreError::from)?)
    }
}
