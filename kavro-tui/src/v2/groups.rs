//! Conversations as MLS groups: create (a named group, or a 1:1 chat = a
//! group of all devices of both people), add and remove people and devices,
//! rename, list. Every membership change is one commit, made after applying
//! the queue, kept in the outbox with the pending commit before it is posted,
//! and rebuilt after a `409` (another member's commit won the epoch).

use std::collections::BTreeSet;

use chrono::Utc;
use kavro_proto::v2::api::PostCommit;
use kavro_proto::v2::{GroupId, MlsDeviceId};
use kavro_proto::validate::{base64_encode, base64_strict};
use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::{
    Ciphersuite, KeyPackage, KeyPackageIn, LeafNodeIndex, LeafNodeParameters, MlsGroup,
    MlsGroupCreateConfig, MlsGroupJoinConfig, Proposal, ProtocolVersion,
};
use openmls_traits::OpenMlsProvider as _;
use uuid::Uuid;

use super::payload::{Body, PADDING, Payload};
use super::{SUITE, V2Error, V2Session, credential, credential_name, mls_err};
use crate::mls::MlsStoreError;
use crate::mls::rows::{self, OutboxKind};

/// How often a commit is rebuilt after losing the epoch to another member.
const COMMIT_ATTEMPTS: usize = 5;
/// Past epochs whose message secrets a member keeps, for application
/// messages that were queued before a commit this device already merged
/// (its own). Each past epoch kept weakens forward secrecy for that epoch's
/// unread messages only; used message keys are deleted either way.
pub(crate) const MAX_PAST_EPOCHS: usize = 2;

/// A conversation as the lists show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationSummary {
    pub group_id: GroupId,
    /// `None` for a 1:1 chat.
    pub name: Option<String>,
    /// `#name` for a group, the other person's username for a 1:1 chat.
    pub label: String,
    /// Usernames of the members, sorted.
    pub members: Vec<String>,
    /// Member devices.
    pub devices: usize,
    pub epoch: u64,
    /// `false` once this device was removed.
    pub active: bool,
}

/// A membership change to commit.
pub(super) enum Change {
    Add(Vec<(MlsDeviceId, KeyPackage)>),
    Remove(Vec<(MlsDeviceId, Vec<u8>)>),
    /// A fresh leaf key for this device (post-compromise security).
    Update,
    /// The remove proposals of members who left.
    Departures,
}

pub(crate) fn join_config() -> MlsGroupJoinConfig {
    MlsGroupJoinConfig::builder()
        .padding_size(PADDING)
        .max_past_epochs(MAX_PAST_EPOCHS)
        .use_ratchet_tree_extension(true)
        .build()
}

impl V2Session {
    pub(crate) fn load_group(&self, group: &GroupId) -> Result<Option<MlsGroup>, V2Error> {
        MlsGroup::load(
            self.store.provider().storage(),
            &openmls::prelude::GroupId::from_slice(group.as_bytes()),
        )
        .map_err(|e| mls_err("loading the group")(&e))
    }

    fn group(&self, group: &GroupId) -> Result<MlsGroup, V2Error> {
        self.load_group(group)?
            .ok_or_else(|| V2Error::UnknownConversation(group.to_text()))
    }

    /// Creates a conversation with `members` (usernames) and all other
    /// devices of this account. `name` `None` with one member is the 1:1
    /// chat ([`V2Session::direct`]).
    pub async fn create_group(
        &mut self,
        name: Option<&str>,
        members: &[String],
    ) -> Result<GroupId, V2Error> {
        self.create_group_in(SUITE, name, members).await
    }

    /// [`Self::create_group`] in `suite` ([`SUITE`], or [`super::PQ_SUITE`]
    /// for `--pq`): every member joins with a key package of that suite. A
    /// 1:1 chat is always classic ([`V2Session::direct`]).
    pub async fn create_group_in(
        &mut self,
        suite: Ciphersuite,
        name: Option<&str>,
        members: &[String],
    ) -> Result<GroupId, V2Error> {
        if let Some(name) = name
            && self.find_named(name).await?.is_some()
        {
            return Err(V2Error::NameTaken(name.to_owned()));
        }
        if let (None, [peer]) = (name, members) {
            // One 1:1 conversation per pair (see `direct`).
            return self.direct(peer).await;
        }
        // Claim first: a user without devices fails before anything exists.
        let mut packages = Vec::new();
        for member in members {
            let claimed = self.claim(member, suite).await?;
            if claimed.is_empty() {
                return Err(V2Error::NoDevices(member.clone()));
            }
            packages.extend(claimed);
        }
        let own = self.device.username.clone();
        packages.extend(self.claim(&own, suite).await?);
        let id = self.new_local_group(None, suite)?;
        if let Err(err) = self.relay.create_group(&self.token, &id).await {
            // The group exists only in memory: forget it.
            self.store.reload().await?;
            return Err(err.into());
        }
        self.populate(&id, name, packages).await?;
        Ok(id)
    }

    /// A new MLS group with this device as its only member, in memory (the
    /// next local commit writes it); `id` `None` lets openmls choose one.
    pub(crate) fn new_local_group(
        &self,
        id: Option<&GroupId>,
        suite: Ciphersuite,
    ) -> Result<GroupId, V2Error> {
        let config = MlsGroupCreateConfig::builder()
            .ciphersuite(suite)
            .capabilities(super::capabilities(false))
            .use_ratchet_tree_extension(true)
            .padding_size(PADDING)
            .max_past_epochs(MAX_PAST_EPOCHS)
            .build();
        let credential = credential(&self.device.username, &self.signer);
        let provider = self.store.provider();
        let group = match id {
            Some(id) => MlsGroup::new_with_group_id(
                provider,
                &self.signer,
                &config,
                openmls::prelude::GroupId::from_slice(id.as_bytes()),
                credential,
            ),
            None => MlsGroup::new(provider, &self.signer, &config, credential),
        }
        .map_err(|e| mls_err("creating the group")(&e))?;
        GroupId::from_bytes(group.group_id().as_slice())
            .map_err(|e| mls_err("creating the group")(&e))
    }

    /// Records a group the relay just created for this device and adds the
    /// devices of `packages` with one commit.
    pub(crate) async fn populate(
        &mut self,
        id: &GroupId,
        name: Option<&str>,
        packages: Vec<(MlsDeviceId, KeyPackage)>,
    ) -> Result<(), V2Error> {
        let mut tx = self.store.begin().await?;
        rows::add_conversation(&mut tx, id, name, Utc::now())
            .await
            .map_err(MlsStoreError::from)?;
        self.store.commit(tx).await?;
        if !packages.is_empty() {
            let line = format!("{} created the conversation", self.device.username);
            self.commit_change(id, Change::Add(packages), line).await?;
            self.send_payload(
                id,
                &Payload::new(Body::Meta {
                    name: name.map(str::to_owned),
                }),
            )
            .await?;
        }
        Ok(())
    }

    /// `#name` (a group) or a username (the 1:1 chat), if it exists.
    pub async fn find(&self, target: &str) -> Result<GroupId, V2Error> {
        let found = match target.strip_prefix('#') {
            Some(name) => self.find_named(name).await?,
            None => self.find_direct(target).await?,
        };
        found.ok_or_else(|| V2Error::UnknownConversation(target.to_owned()))
    }

    async fn find_named(&self, name: &str) -> Result<Option<GroupId>, V2Error> {
        Ok(self
            .conversations()
            .await?
            .into_iter()
            .find(|c| c.name.as_deref() == Some(name))
            .map(|c| c.group_id))
    }

    pub(crate) async fn find_direct(&self, peer: &str) -> Result<Option<GroupId>, V2Error> {
        let peer = peer.to_ascii_lowercase();
        Ok(self
            .conversations()
            .await?
            .into_iter()
            .find(|c| c.name.is_none() && c.active && c.label == peer)
            .map(|c| c.group_id))
    }

    /// Every conversation with its members, oldest first.
    pub async fn conversations(&self) -> Result<Vec<ConversationSummary>, V2Error> {
        let mut conn = self.store.begin().await?;
        let rows = rows::conversations(&mut conn)
            .await
            .map_err(MlsStoreError::from)?;
        drop(conn);
        let me = self.device.username.to_ascii_lowercase();
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let Some(group) = self.load_group(&row.group_id)? else {
                continue;
            };
            let members: BTreeSet<String> = group
                .members()
                .filter_map(|m| credential_name(&m.credential))
                .map(|n| n.to_ascii_lowercase())
                .collect();
            let label = match &row.name {
                Some(name) => format!("#{name}"),
                None => members
                    .iter()
                    .find(|m| **m != me)
                    .cloned()
                    .unwrap_or_else(|| me.clone()),
            };
            out.push(ConversationSummary {
                group_id: row.group_id,
                name: row.name,
                label,
                devices: group.members().count(),
                members: members.into_iter().collect(),
                epoch: group.epoch().as_u64(),
                active: group.is_active(),
            });
        }
        Ok(out)
    }

    /// Whether the conversation runs on the post-quantum ciphersuite.
    pub fn is_post_quantum(&self, group: &GroupId) -> Result<bool, V2Error> {
        Ok(self.group(group)?.ciphersuite() == super::PQ_SUITE)
    }

    /// Adds every device of `usernames` to the conversation.
    pub async fn add_members(
        &mut self,
        group: &GroupId,
        usernames: &[String],
    ) -> Result<(), V2Error> {
        let suite = self.group(group)?.ciphersuite();
        let mut packages = Vec::new();
        for user in usernames {
            let claimed = self.claim(user, suite).await?;
            if claimed.is_empty() {
                return Err(V2Error::NoDevices(user.clone()));
            }
            packages.extend(claimed);
        }
        let line = format!("{} added {}", self.device.username, usernames.join(", "));
        self.commit_change(group, Change::Add(packages), line)
            .await?;
        let name = self.conversation_name(group).await?;
        self.send_payload(group, &Payload::new(Body::Meta { name }))
            .await
    }

    /// Adds the device with `key` (a device of this account, just linked) to
    /// every conversation.
    pub async fn add_own_device(&mut self, device: MlsDeviceId) -> Result<usize, V2Error> {
        let mut added = 0;
        for group in self.conversation_ids().await? {
            let own = self.device.username.clone();
            let mls = self.group(&group)?;
            if !mls.is_active() {
                continue;
            }
            let packages: Vec<_> = self
                .claim_in(&own, mls.ciphersuite(), Some(device))
                .await?
                .into_iter()
                .filter(|(id, _)| *id == device)
                .collect();
            if packages.is_empty() {
                return Err(V2Error::NoDevices(own));
            }
            let line = format!(
                "{own} added their device {} to the conversation",
                super::fingerprint(packages[0].1.leaf_node().signature_key().as_slice())
            );
            self.commit_change(&group, Change::Add(packages), line)
                .await?;
            let name = self.conversation_name(&group).await?;
            self.send_payload(&group, &Payload::new(Body::Meta { name }))
                .await?;
            added += 1;
        }
        Ok(added)
    }

    /// Removes every device of `usernames` from the conversation.
    pub async fn remove_members(
        &mut self,
        group: &GroupId,
        usernames: &[String],
    ) -> Result<(), V2Error> {
        let mut devices = Vec::new();
        for user in usernames {
            for device in self.devices(user).await? {
                if device.id == self.device.device_id {
                    continue;
                }
                if let Some(key) = base64_strict(device.signature_key.as_str()) {
                    devices.push((device.id, key));
                }
            }
        }
        self.remove_devices(group, &devices).await
    }

    /// Removes the given devices (id, signature key) that are members.
    pub(crate) async fn remove_devices(
        &mut self,
        group: &GroupId,
        devices: &[(MlsDeviceId, Vec<u8>)],
    ) -> Result<(), V2Error> {
        let line = format!("{} removed a member", self.device.username);
        self.commit_change(group, Change::Remove(devices.to_vec()), line)
            .await
    }

    /// Leaves the conversation: posts this device's remove proposal; the
    /// next member to sync commits it (this device cannot commit its own
    /// removal in MLS).
    pub async fn leave(&mut self, group_id: &GroupId) -> Result<(), V2Error> {
        for _ in 0..COMMIT_ATTEMPTS {
            self.sync_queue().await?;
            let mut group = self.group(group_id)?;
            if !group.is_active() {
                return Ok(());
            }
            let proposal = group
                .leave_group(self.store.provider(), &self.signer)
                .map_err(|e| mls_err("leaving")(&e))?;
            let bytes = proposal
                .tls_serialize_detached()
                .map_err(|e| mls_err("encoding")(&e))?;
            let client_msg_id = Uuid::new_v4();
            let request = kavro_proto::v2::api::PostGroupMessage {
                message: base64_encode(&bytes).into(),
                client_msg_id: Some(client_msg_id),
                blob_ids: Vec::new(),
            };
            // Not a payload: no history line when the relay takes it.
            if self
                .keep_and_post(
                    group_id,
                    OutboxKind::Message,
                    client_msg_id,
                    &request,
                    String::new(),
                )
                .await?
            {
                return Ok(());
            }
        }
        Err(V2Error::Contended)
    }

    /// Commits the departures other members proposed, in every conversation.
    pub(crate) async fn commit_departures(&mut self) -> Result<(), V2Error> {
        for id in self.conversation_ids().await? {
            let Some(group) = self.load_group(&id)? else {
                continue;
            };
            let me = group.own_leaf_index();
            let pending = group.is_active()
                && group
                    .pending_proposals()
                    .any(|p| matches!(p.proposal(), Proposal::Remove(r) if r.removed() != me));
            if pending {
                let line = format!("{} committed a member's departure", self.device.username);
                self.commit_change(&id, Change::Departures, line).await?;
            }
        }
        Ok(())
    }

    /// Replaces this device's keys in the conversation (one commit): whoever
    /// copied the device's state before can read nothing sent after it.
    pub async fn update_keys(&mut self, group: &GroupId) -> Result<(), V2Error> {
        let line = format!("{} updated a device's keys", self.device.username);
        self.commit_change(group, Change::Update, line).await
    }

    /// The group's epoch and epoch authenticator (equal on every member that
    /// did not fork).
    #[cfg(test)]
    pub fn epoch_state(&self, group: &GroupId) -> (u64, Vec<u8>) {
        let group = self.group(group).expect("a group");
        (
            group.epoch().as_u64(),
            group.epoch_authenticator().as_slice().to_vec(),
        )
    }

    /// Renames a group for every member (a `meta` message).
    pub async fn rename(&mut self, group: &GroupId, name: &str) -> Result<(), V2Error> {
        if self.find_named(name).await?.is_some() {
            return Err(V2Error::NameTaken(name.to_owned()));
        }
        let mut tx = self.store.begin().await?;
        rows::rename_conversation(&mut tx, group, Some(name))
            .await
            .map_err(MlsStoreError::from)?;
        self.store.commit(tx).await?;
        self.send_payload(
            group,
            &Payload::new(Body::Meta {
                name: Some(name.to_owned()),
            }),
        )
        .await
    }

    async fn conversation_name(&self, group: &GroupId) -> Result<Option<String>, V2Error> {
        Ok(self
            .conversations()
            .await?
            .into_iter()
            .find(|c| &c.group_id == group)
            .and_then(|c| c.name))
    }

    /// One key package per active device of `username` (not this device),
    /// each checked: it parses, is signed, names `username`, and is of a
    /// non-revoked device in `username`'s chain of device links, with that
    /// device's key.
    /// Each is of `suite`, the conversation's.
    pub(crate) async fn claim(
        &mut self,
        username: &str,
        suite: Ciphersuite,
    ) -> Result<Vec<(MlsDeviceId, KeyPackage)>, V2Error> {
        self.claim_in(username, suite, None).await
    }

    /// [`Self::claim`], of device `only` alone when given (adding one new
    /// device of the account takes no package of its other devices).
    pub(crate) async fn claim_in(
        &mut self,
        username: &str,
        suite: Ciphersuite,
        only: Option<MlsDeviceId>,
    ) -> Result<Vec<(MlsDeviceId, KeyPackage)>, V2Error> {
        let chain = self.checked_devices(username).await?;
        let claimed = self
            .relay
            .claim_key_packages(&self.token, username, u16::from(suite), only)
            .await?;
        let mut out = Vec::new();
        for package in claimed.key_packages {
            if package.device_id == self.device.device_id {
                continue;
            }
            let refuse = |what: &str| {
                V2Error::Refused(format!(
                    "the key package of {username}'s device {} {what}",
                    package.device_id
                ))
            };
            let bytes = base64_strict(package.key_package.as_str())
                .ok_or_else(|| refuse("is not base64"))?;
            let key_package = KeyPackageIn::tls_deserialize_exact(&bytes)
                .map_err(|_| refuse("does not parse"))?
                .validate(self.store.provider().crypto(), ProtocolVersion::Mls10)
                .map_err(|_| refuse("is not valid"))?;
            if key_package.ciphersuite() != suite {
                return Err(refuse("is of another ciphersuite than the conversation's"));
            }
            let leaf = key_package.leaf_node();
            // Trust failures (exit 4), unlike a malformed package.
            let untrusted = |what: &str| V2Error::Untrusted {
                username: username.to_owned(),
                reason: format!(
                    "the key package of {username}'s device {} {what}",
                    package.device_id
                ),
            };
            let listed = chain.active(package.device_id).ok_or_else(|| {
                untrusted("is not of a device in the account's chain of device links")
            })?;
            if leaf.signature_key().as_slice() != listed.key.as_bytes() {
                return Err(untrusted("is signed by another key than the device's"));
            }
            if credential_name(leaf.credential())
                .is_none_or(|name| !name.eq_ignore_ascii_case(username))
            {
                return Err(refuse("names someone else"));
            }
            out.push((package.device_id, key_package));
        }
        Ok(out)
    }

    /// Applies the queue, builds the change's commit, keeps it in the outbox
    /// with the pending commit, posts it; after a `409`, starts over.
    pub(super) async fn commit_change(
        &mut self,
        group_id: &GroupId,
        change: Change,
        line: String,
    ) -> Result<(), V2Error> {
        for _ in 0..COMMIT_ATTEMPTS {
            self.sync_queue().await?;
            let mut group = self.group(group_id)?;
            if !group.is_active() {
                return Err(V2Error::Refused(
                    "this device is no longer in the conversation".to_owned(),
                ));
            }
            let provider = self.store.provider();
            let present: Vec<Vec<u8>> = group.members().map(|m| m.signature_key).collect();
            let (commit, welcome, added, removed) = match &change {
                Change::Add(packages) => {
                    let new: Vec<_> = packages
                        .iter()
                        .filter(|(_, kp)| {
                            !present.contains(&kp.leaf_node().signature_key().as_slice().to_vec())
                        })
                        .collect();
                    if new.is_empty() {
                        return Ok(());
                    }
                    let kps: Vec<KeyPackage> = new.iter().map(|(_, kp)| kp.clone()).collect();
                    let (commit, welcome, _) = group
                        .add_members(provider, &self.signer, &kps)
                        .map_err(|e| mls_err("adding members")(&e))?;
                    let ids: Vec<MlsDeviceId> = new.iter().map(|(id, _)| *id).collect();
                    (commit, Some(welcome), ids, Vec::new())
                }
                Change::Remove(devices) => {
                    let members: Vec<(LeafNodeIndex, MlsDeviceId)> = group
                        .members()
                        .filter_map(|m| {
                            devices
                                .iter()
                                .find(|(_, key)| *key == m.signature_key)
                                .map(|(id, _)| (m.index, *id))
                        })
                        .filter(|(index, _)| *index != group.own_leaf_index())
                        .collect();
                    if members.is_empty() {
                        return Ok(());
                    }
                    let leaves: Vec<LeafNodeIndex> = members.iter().map(|(l, _)| *l).collect();
                    let (commit, _, _) = group
                        .remove_members(provider, &self.signer, &leaves)
                        .map_err(|e| mls_err("removing members")(&e))?;
                    (
                        commit,
                        None,
                        Vec::new(),
                        members.iter().map(|(_, id)| *id).collect(),
                    )
                }
                Change::Departures => {
                    let me = group.own_leaf_index();
                    let leaving: Vec<LeafNodeIndex> = group
                        .pending_proposals()
                        .filter_map(|p| match p.proposal() {
                            Proposal::Remove(r) if r.removed() != me => Some(r.removed()),
                            _ => None,
                        })
                        .collect();
                    if leaving.is_empty() {
                        return Ok(());
                    }
                    let mut removed = Vec::new();
                    for leaf in leaving {
                        let Some(member) = group.member_at(leaf) else {
                            continue;
                        };
                        let Some(name) = credential_name(&member.credential) else {
                            continue;
                        };
                        let device = self
                            .relay
                            .devices(&self.token, &name)
                            .await?
                            .devices
                            .into_iter()
                            .find(|d| {
                                base64_strict(d.signature_key.as_str()).as_deref()
                                    == Some(member.signature_key.as_slice())
                            });
                        if let Some(device) = device {
                            removed.push(device.id);
                        }
                    }
                    let (commit, welcome, _) = group
                        .commit_to_pending_proposals(provider, &self.signer)
                        .map_err(|e| mls_err("committing departures")(&e))?;
                    (commit, welcome, Vec::new(), removed)
                }
                Change::Update => {
                    let bundle = group
                        .self_update(provider, &self.signer, LeafNodeParameters::default())
                        .map_err(|e| mls_err("updating keys")(&e))?;
                    let (commit, _, _) = bundle.into_contents();
                    (commit, None, Vec::new(), Vec::new())
                }
            };
            let encode = |m: &openmls::prelude::MlsMessageOut| -> Result<kavro_proto::v2::MlsBytes, V2Error> {
                m.tls_serialize_detached()
                    .map(|b| base64_encode(&b).into())
                    .map_err(|e| mls_err("encoding")(&e))
            };
            let client_msg_id = Uuid::new_v4();
            let request = PostCommit {
                epoch: group.epoch().as_u64(),
                commit: encode(&commit)?,
                added,
                removed,
                welcome: welcome.as_ref().map(encode).transpose()?,
                client_msg_id: Some(client_msg_id),
            };
            if self
                .keep_and_post(
                    group_id,
                    OutboxKind::Commit,
                    client_msg_id,
                    &request,
                    line.clone(),
                )
                .await?
            {
                return Ok(());
            }
        }
        Err(V2Error::Contended)
    }
}
