//! `/v2/groups`: MLS groups with one order per group. The relay reads only
//! each message's framing (group id, epoch, content type); a commit is
//! accepted only for the group's current epoch and advances it atomically
//! (`409` with the current epoch otherwise), and its declared membership
//! changes decide the fan-out.

use std::collections::BTreeSet;
use std::sync::Arc;

use kavro_proto::v2::api::{
    Accepted, CreateGroup, EpochConflict, GroupState, PostCommit, PostGroupMessage, QueueKind,
};
use kavro_proto::v2::limits::{MAX_GROUP_MEMBERS, MAX_MEMBERS_CHANGED_PER_COMMIT};
use kavro_proto::v2::mls::{Framing, check_welcome, group_message_framing};
use kavro_proto::v2::{GroupId, GroupIdText, MlsDeviceId};
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};

use super::{V2Auth, V2Tags, mls_message, v2_error};
use crate::clock::after;
use crate::error::ApiError;
use crate::limits::Route;
use crate::state::AppState;
use crate::store::v2::{NewCommit, NewGroupMessage, Posted, V2Error};

pub struct GroupsApi {
    state: Arc<AppState>,
}

impl GroupsApi {
    pub fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }
}

#[derive(ApiResponse)]
enum CreatedAnswer {
    #[oai(status = 201)]
    Created(Json<GroupState>),
}

#[derive(ApiResponse)]
enum GroupAnswer {
    #[oai(status = 200)]
    Ok(Json<GroupState>),
}

#[derive(ApiResponse)]
enum PostAnswer {
    /// Queued for every other member (or, for a retried `client_msg_id`, queued before).
    #[oai(status = 201)]
    Created(Json<Accepted>),
    /// Not for the group's current epoch: process your queue up to `epoch`, then retry.
    #[oai(status = 409)]
    EpochConflict(Json<EpochConflict>),
}

fn group_id(text: &str) -> Result<GroupId, ApiError> {
    GroupId::parse(text).map_err(|e| ApiError::invalid_field("group_id", e.to_string()))
}

/// A path's group id: a malformed one names no group (`404`).
fn path_group(text: &str) -> Result<GroupId, ApiError> {
    GroupId::parse(text).map_err(|_| ApiError::not_found("Unknown group"))
}

fn answer(state: &AppState, result: Result<Posted, V2Error>) -> Result<PostAnswer, ApiError> {
    match result {
        Ok(posted) => {
            if posted.created {
                metrics::counter!("kavro_v2_messages_stored_total").increment(1);
                state.wake.notify_devices(&posted.woken);
            }
            Ok(PostAnswer::Created(Json(Accepted {
                id: posted.id,
                epoch: posted.epoch,
                recipients: posted.recipients,
            })))
        }
        Err(V2Error::WrongEpoch { current }) => {
            Ok(PostAnswer::EpochConflict(Json(EpochConflict {
                error: format!("The group is at epoch {current}; re-sync and retry"),
                status_code: 409,
                epoch: current,
            })))
        }
        Err(other) => Err(v2_error(other)),
    }
}

/// Most blobs one message may refer to.
const MAX_BLOBS_PER_MESSAGE: usize = 100;

/// Distinct ids, or `422` naming the field.
fn distinct(field: &str, ids: &[MlsDeviceId]) -> Result<(), ApiError> {
    if ids.len() > MAX_MEMBERS_CHANGED_PER_COMMIT {
        return Err(ApiError::invalid_field(
            field,
            format!("at most {MAX_MEMBERS_CHANGED_PER_COMMIT} devices per commit"),
        ));
    }
    let set: BTreeSet<_> = ids.iter().collect();
    if set.len() != ids.len() {
        return Err(ApiError::invalid_field(field, "names a device twice"));
    }
    Ok(())
}

#[OpenApi(tag = "V2Tags::V2Groups")]
impl GroupsApi {
    /// Create a group
    ///
    /// With a device token; the id is the MLS group id the creator chose.
    /// The group starts at epoch 0 with the creator's device as its only member.
    #[oai(path = "/v2/groups", method = "post", operation_id = "v2_create_group")]
    async fn create(
        &self,
        auth: V2Auth,
        body: Json<CreateGroup>,
    ) -> Result<CreatedAnswer, ApiError> {
        let state = &self.state;
        let device = auth.0.device_spending(state, Route::Publish).await?;
        let group = group_id(body.0.group_id.as_str())?;
        state
            .v2
            .store
            .create_group(&group, device.device_id, state.clock.now())
            .await
            .map_err(v2_error)?;
        Ok(CreatedAnswer::Created(Json(GroupState {
            group_id: GroupIdText::from(group.to_text()),
            epoch: 0,
            members: vec![device.device_id],
        })))
    }

    /// A group's epoch and members
    ///
    /// For member devices only (to re-sync after a `409`).
    #[oai(
        path = "/v2/groups/:group_id",
        method = "get",
        operation_id = "v2_get_group"
    )]
    async fn get(
        &self,
        auth: V2Auth,
        #[oai(name = "group_id")] group: Path<String>,
    ) -> Result<GroupAnswer, ApiError> {
        let state = &self.state;
        let device = auth.0.device_spending(state, Route::Lookup).await?;
        let group = path_group(&group.0)?;
        let row = state
            .v2
            .store
            .group(&group)
            .await
            .map_err(v2_error)?
            .ok_or_else(|| ApiError::not_found("Unknown group"))?;
        if !row.members.contains(&device.device_id) {
            return Err(v2_error(V2Error::NotMember));
        }
        Ok(GroupAnswer::Ok(Json(GroupState {
            group_id: GroupIdText::from(group.to_text()),
            epoch: row.epoch,
            members: row.members,
        })))
    }

    /// Post a commit
    ///
    /// Accepted only for the group's current epoch (first come, first
    /// served); the epoch advances with it. The commit goes to every other
    /// member of the old epoch (removed ones included: it tells them), the
    /// welcome to the added devices. A removed device receives nothing after.
    #[oai(
        path = "/v2/groups/:group_id/commits",
        method = "post",
        operation_id = "v2_post_commit"
    )]
    async fn commit(
        &self,
        auth: V2Auth,
        #[oai(name = "group_id")] group: Path<String>,
        body: Json<PostCommit>,
    ) -> Result<PostAnswer, ApiError> {
        let state = &self.state;
        let device = auth.0.device_spending(state, Route::Send).await?;
        let group = path_group(&group.0)?;
        let body = body.0;
        let (commit, framing) = framed_for_group("commit", body.commit.as_str(), &group)?;
        if framing.kind != QueueKind::Commit {
            return Err(ApiError::invalid_field("commit", "is not a commit"));
        }
        if framing.epoch != body.epoch {
            return Err(ApiError::invalid_field(
                "epoch",
                "differs from the commit's own epoch",
            ));
        }
        distinct("added", &body.added)?;
        distinct("removed", &body.removed)?;
        let welcome = match (&body.welcome, body.added.is_empty()) {
            (Some(welcome), false) => {
                let bytes = mls_message("welcome", welcome.as_str())?;
                check_welcome(&bytes)
                    .map_err(|e| ApiError::invalid_field("welcome", e.to_string()))?;
                Some(bytes)
            }
            (None, false) => {
                return Err(ApiError::invalid_field(
                    "welcome",
                    "is required when `added` is not empty",
                ));
            }
            (Some(_), true) => {
                return Err(ApiError::invalid_field(
                    "welcome",
                    "is only for added devices",
                ));
            }
            (None, true) => None,
        };
        let now = state.clock.now();
        let result = state
            .v2
            .store
            .post_commit(NewCommit {
                group: &group,
                sender: device.device_id,
                epoch: body.epoch,
                commit: &commit,
                added: &body.added,
                removed: &body.removed,
                welcome: welcome.as_deref(),
                client_msg_id: body.client_msg_id,
                now,
                expires_at: after(now, state.settings.message_ttl),
                max_members: MAX_GROUP_MEMBERS,
            })
            .await;
        answer(state, result)
    }

    /// Post an application message or a proposal
    ///
    /// For the group's current epoch, from a member; queued for every other
    /// member. `429` when a recipient device's queue is full.
    #[oai(
        path = "/v2/groups/:group_id/messages",
        method = "post",
        operation_id = "v2_post_group_message"
    )]
    async fn message(
        &self,
        auth: V2Auth,
        #[oai(name = "group_id")] group: Path<String>,
        body: Json<PostGroupMessage>,
    ) -> Result<PostAnswer, ApiError> {
        let state = &self.state;
        let device = auth.0.device_spending(state, Route::Send).await?;
        let group = path_group(&group.0)?;
        let body = body.0;
        let (bytes, framing) = framed_for_group("message", body.message.as_str(), &group)?;
        if framing.kind == QueueKind::Commit {
            return Err(ApiError::invalid_field(
                "message",
                "is a commit: post it to /commits",
            ));
        }
        if body.blob_ids.len() > MAX_BLOBS_PER_MESSAGE {
            return Err(ApiError::invalid_field(
                "blob_ids",
                format!("at most {MAX_BLOBS_PER_MESSAGE} blobs per message"),
            ));
        }
        let now = state.clock.now();
        let result = state
            .v2
            .store
            .post_message(NewGroupMessage {
                group: &group,
                sender: device.device_id,
                kind: framing.kind,
                epoch: framing.epoch,
                body: &bytes,
                client_msg_id: body.client_msg_id,
                now,
                expires_at: after(now, state.settings.message_ttl),
                max_pending: state.settings.max_pending_per_recipient,
                blob_ids: &body.blob_ids,
            })
            .await;
        answer(state, result)
    }
}

/// The MLS message in body field `field` (base64), with its framing, when it
/// parses and belongs to `group`; a `422` naming the field otherwise.
fn framed_for_group(
    field: &str,
    text: &str,
    group: &GroupId,
) -> Result<(Vec<u8>, Framing), ApiError> {
    let bytes = mls_message(field, text)?;
    let framing =
        group_message_framing(&bytes).map_err(|e| ApiError::invalid_field(field, e.to_string()))?;
    if framing.group_id != *group {
        return Err(ApiError::invalid_field(field, "is for another group"));
    }
    Ok((bytes, framing))
}
