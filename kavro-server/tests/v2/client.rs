//! An openmls client (test code) that talks to the relay's `/v2` routes:
//! an account with one device, its MLS signature key, a device token, and
//! the groups it is in. It processes its queue in `seq` order and acks.

use std::collections::HashMap;

use kavro_proto::UserId;
use kavro_proto::v2::MlsDeviceId;
use kavro_proto::v2::link::{SignatureKey, device_link_message, session_message};
use kavro_proto::validate::{base64_encode, base64_strict};
use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;
use openmls_traits::signatures::Signer as _;
use reqwest::StatusCode;
use serde_json::{Value, json};

use kavro_server::clock::Clock as _;

use crate::common::TestServer;

pub const SUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;

pub struct Client {
    pub name: String,
    pub provider: OpenMlsRustCrypto,
    pub signer: SignatureKeyPair,
    pub credential: CredentialWithKey,
    pub account_token: String,
    pub user_id: i64,
    pub device_id: i64,
    pub token: String,
    /// Everything up to here is processed (and acknowledged).
    pub after: i64,
    pub groups: HashMap<Vec<u8>, MlsGroup>,
    /// Application messages received, in order: (group id, text).
    pub received: Vec<(Vec<u8>, String)>,
}

/// A fresh MLS identity: provider, signer (stored), credential.
pub fn identity(name: &str) -> (OpenMlsRustCrypto, SignatureKeyPair, CredentialWithKey) {
    let provider = OpenMlsRustCrypto::default();
    let signer = SignatureKeyPair::new(SUITE.signature_algorithm()).unwrap();
    signer.store(provider.storage()).unwrap();
    let credential = CredentialWithKey {
        credential: BasicCredential::new(name.as_bytes().to_vec()).into(),
        signature_key: signer.public().into(),
    };
    (provider, signer, credential)
}

pub fn b64(bytes: &[u8]) -> String {
    base64_encode(bytes)
}

impl Client {
    /// Registers `name` and its first (root) device, and opens a session.
    pub async fn root(s: &TestServer, name: &str) -> Self {
        let (account_token, user_id) = s.register(name).await;
        let (provider, signer, credential) = identity(name);
        let (status, body) = s
            .post(
                "/v2/devices",
                Some(&account_token),
                json!({"signature_key": b64(signer.public())}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert!(body["link"].is_null());
        let mut client = Self {
            name: name.to_owned(),
            provider,
            signer,
            credential,
            account_token,
            user_id,
            device_id: body["id"].as_i64().unwrap(),
            token: String::new(),
            after: 0,
            groups: HashMap::new(),
            received: Vec::new(),
        };
        client.open_session(s).await;
        client
    }

    /// A second device of `existing`'s account, linked with a one-time code.
    pub async fn linked(s: &TestServer, existing: &Self) -> Self {
        let account_token = s.login(&existing.name).await;
        let (provider, signer, credential) = identity(&existing.name);
        let (status, request) = s
            .post(
                "/v2/link-requests",
                Some(&account_token),
                json!({"signature_key": b64(signer.public())}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{request}");
        let code = request["code"].as_str().unwrap();
        let (status, view) = s
            .get(&format!("/v2/link-codes/{code}"), Some(&existing.token))
            .await;
        assert_eq!(status, StatusCode::OK, "{view}");
        assert_eq!(
            view["signature_key"],
            b64(signer.public()),
            "the approver sees the key"
        );
        let signature =
            existing.sign_link(&base64_strict(view["signature_key"].as_str().unwrap()).unwrap());
        let (status, device) = s
            .post(
                &format!("/v2/link-codes/{code}/approve"),
                Some(&existing.token),
                json!({"signature": b64(&signature)}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{device}");
        let request_id = request["request_id"].as_str().unwrap();
        let (status, state) = s
            .get(
                &format!("/v2/link-requests/{request_id}"),
                Some(&account_token),
            )
            .await;
        assert_eq!(
            (status, state["status"].as_str()),
            (StatusCode::OK, Some("approved"))
        );
        let mut client = Self {
            name: existing.name.clone(),
            provider,
            signer,
            credential,
            account_token,
            user_id: existing.user_id,
            device_id: state["device_id"].as_i64().unwrap(),
            token: String::new(),
            after: 0,
            groups: HashMap::new(),
            received: Vec::new(),
        };
        assert_eq!(device["id"].as_i64(), Some(client.device_id));
        client.open_session(s).await;
        client
    }

    /// This device's signature over the link bytes admitting `new_key`.
    pub fn sign_link(&self, new_key: &[u8]) -> Vec<u8> {
        let me = SignatureKey::from_bytes(self.signer.public()).unwrap();
        let new = SignatureKey::from_bytes(new_key).unwrap();
        self.signer
            .sign(&device_link_message(UserId(self.user_id), &me, &new))
            .unwrap()
    }

    pub async fn open_session(&mut self, s: &TestServer) {
        let timestamp = s.clock.now().timestamp();
        let proof = self
            .signer
            .sign(&session_message(
                UserId(self.user_id),
                MlsDeviceId(self.device_id),
                timestamp,
            ))
            .unwrap();
        let (status, body) = s
            .post(
                &format!("/v2/devices/{}/session", self.device_id),
                Some(&self.account_token),
                json!({"timestamp": timestamp, "signature": b64(&proof)}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["access_token"]
            .as_str()
            .unwrap()
            .clone_into(&mut self.token);
    }

    pub fn key_package(&self, last_resort: bool) -> Vec<u8> {
        self.key_package_in(SUITE, last_resort)
    }

    pub fn key_package_in(&self, suite: Ciphersuite, last_resort: bool) -> Vec<u8> {
        let mut builder = KeyPackage::builder().key_package_lifetime(Lifetime::new(24 * 3600));
        if last_resort {
            builder = builder.mark_as_last_resort().leaf_node_capabilities(
                Capabilities::builder()
                    .extensions(vec![ExtensionType::LastResort])
                    .build(),
            );
        }
        builder
            .build(suite, &self.provider, &self.signer, self.credential.clone())
            .unwrap()
            .key_package()
            .tls_serialize_detached()
            .unwrap()
    }

    pub async fn upload_key_packages(&self, s: &TestServer, n: usize) -> Value {
        let packages: Vec<String> = (0..n).map(|_| b64(&self.key_package(false))).collect();
        let (status, body) = s
            .post(
                &format!("/v2/devices/{}/key-packages", self.device_id),
                Some(&self.token),
                json!({"key_packages": packages}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }

    /// Claims one key package of each device of `username`: (device id, package).
    pub async fn claim(&self, s: &TestServer, username: &str) -> Vec<(i64, KeyPackage)> {
        let (status, body) = s
            .post(
                &format!("/v2/users/{username}/key-packages/claim"),
                Some(&self.token),
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["key_packages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| {
                let bytes = base64_strict(k["key_package"].as_str().unwrap()).unwrap();
                let package = KeyPackageIn::tls_deserialize_exact(&bytes)
                    .unwrap()
                    .validate(self.provider.crypto(), ProtocolVersion::Mls10)
                    .unwrap();
                (k["device_id"].as_i64().unwrap(), package)
            })
            .collect()
    }

    /// Creates an MLS group and registers it on the relay.
    pub async fn create_group(&mut self, s: &TestServer) -> Vec<u8> {
        let group = MlsGroup::new(
            &self.provider,
            &self.signer,
            &MlsGroupCreateConfig::builder()
                .use_ratchet_tree_extension(true)
                .build(),
            self.credential.clone(),
        )
        .unwrap();
        let id = group.group_id().as_slice().to_vec();
        let (status, body) = s
            .post(
                "/v2/groups",
                Some(&self.token),
                json!({"group_id": group_text(&id)}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        self.groups.insert(id.clone(), group);
        id
    }

    pub fn epoch(&self, group: &[u8]) -> u64 {
        self.groups[group].epoch().as_u64()
    }

    /// Posts a commit; on 201 merges it, on 409 discards it. Returns the status.
    pub async fn post_commit(
        &mut self,
        s: &TestServer,
        group: &[u8],
        commit: &MlsMessageOut,
        welcome: Option<&MlsMessageOut>,
        added: &[i64],
        removed: &[i64],
    ) -> (StatusCode, Value) {
        let epoch = self.epoch(group);
        let mut body = json!({
            "epoch": epoch,
            "commit": b64(&commit.tls_serialize_detached().unwrap()),
            "added": added,
            "removed": removed,
        });
        if let Some(welcome) = welcome {
            body["welcome"] = b64(&welcome.tls_serialize_detached().unwrap()).into();
        }
        let (status, answer) = s
            .post(
                &format!("/v2/groups/{}/commits", group_text(group)),
                Some(&self.token),
                body,
            )
            .await;
        let mls = self.groups.get_mut(group).unwrap();
        if status == StatusCode::CREATED {
            mls.merge_pending_commit(&self.provider).unwrap();
            assert_eq!(answer["epoch"].as_u64(), Some(mls.epoch().as_u64()));
        } else {
            mls.clear_pending_commit(self.provider.storage()).unwrap();
        }
        (status, answer)
    }

    /// Adds the given (device id, key package)s in one commit.
    pub async fn add(
        &mut self,
        s: &TestServer,
        group: &[u8],
        packages: &[(i64, KeyPackage)],
    ) -> StatusCode {
        let kps: Vec<KeyPackage> = packages.iter().map(|(_, k)| k.clone()).collect();
        let (commit, welcome, _) = self
            .groups
            .get_mut(group)
            .unwrap()
            .add_members(&self.provider, &self.signer, &kps)
            .unwrap();
        let ids: Vec<i64> = packages.iter().map(|(d, _)| *d).collect();
        self.post_commit(s, group, &commit, Some(&welcome), &ids, &[])
            .await
            .0
    }

    /// Removes the members whose credentials were created for `devices`
    /// (found by their leaf's signature key).
    pub async fn remove(
        &mut self,
        s: &TestServer,
        group: &[u8],
        devices: &[(i64, Vec<u8>)],
    ) -> StatusCode {
        let mls = self.groups.get_mut(group).unwrap();
        let leaves: Vec<LeafNodeIndex> = mls
            .members()
            .filter(|m| devices.iter().any(|(_, key)| m.signature_key == *key))
            .map(|m| m.index)
            .collect();
        assert_eq!(leaves.len(), devices.len());
        let (commit, _, _) = mls
            .remove_members(&self.provider, &self.signer, &leaves)
            .unwrap();
        let ids: Vec<i64> = devices.iter().map(|(d, _)| *d).collect();
        self.post_commit(s, group, &commit, None, &[], &ids).await.0
    }

    /// An empty commit (key update), for racing and for advancing epochs.
    pub fn update_commit(&mut self, group: &[u8]) -> MlsMessageOut {
        let (commit, _, _) = self
            .groups
            .get_mut(group)
            .unwrap()
            .self_update(&self.provider, &self.signer, LeafNodeParameters::default())
            .unwrap()
            .into_contents();
        commit
    }

    pub async fn send(&mut self, s: &TestServer, group: &[u8], text: &str) -> (StatusCode, Value) {
        self.send_with(s, group, text, json!([])).await
    }

    /// `send` with a `blob_ids` list (attachments).
    pub async fn send_with(
        &mut self,
        s: &TestServer,
        group: &[u8],
        text: &str,
        blob_ids: Value,
    ) -> (StatusCode, Value) {
        let message = self
            .groups
            .get_mut(group)
            .unwrap()
            .create_message(&self.provider, &self.signer, text.as_bytes())
            .unwrap();
        s.post(
            &format!("/v2/groups/{}/messages", group_text(group)),
            Some(&self.token),
            json!({
                "message": b64(&message.tls_serialize_detached().unwrap()),
                "blob_ids": blob_ids,
            }),
        )
        .await
    }

    /// Starts a 30 s long-poll of this device's queue (from `after`) on
    /// `s`; the task answers the page the relay returns.
    pub fn long_poll(&self, s: &TestServer) -> tokio::task::JoinHandle<Value> {
        let url = s.url(&format!(
            "/v2/devices/{}/queue?after={}&wait=30",
            self.device_id, self.after
        ));
        let (http, token) = (s.client.clone(), self.token.clone());
        tokio::spawn(async move {
            http.get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        })
    }

    /// Reads the whole queue from `after`, processes each entry in order,
    /// acknowledges; returns the kinds seen.
    pub async fn sync(&mut self, s: &TestServer) -> Vec<String> {
        let mut kinds = Vec::new();
        loop {
            let (status, page) = s
                .get(
                    &format!(
                        "/v2/devices/{}/queue?after={}&limit=100",
                        self.device_id, self.after
                    ),
                    Some(&self.token),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{page}");
            let entries = page["messages"].as_array().unwrap().clone();
            if entries.is_empty() {
                return kinds;
            }
            for entry in &entries {
                let seq = entry["seq"].as_i64().unwrap();
                assert!(seq > self.after, "seq strictly increases");
                kinds.push(entry["kind"].as_str().unwrap().to_owned());
                self.process(entry);
                self.after = seq;
            }
            let (status, acked) = s
                .post(
                    &format!("/v2/devices/{}/queue/ack", self.device_id),
                    Some(&self.token),
                    json!({"up_to": self.after}),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{acked}");
        }
    }

    fn process(&mut self, entry: &Value) {
        let bytes = base64_strict(entry["message"].as_str().unwrap()).unwrap();
        let message = MlsMessageIn::tls_deserialize_exact(&bytes).unwrap();
        match message.extract() {
            MlsMessageBodyIn::Welcome(welcome) => {
                let group = StagedWelcome::new_from_welcome(
                    &self.provider,
                    &MlsGroupJoinConfig::default(),
                    welcome,
                    None,
                )
                .unwrap()
                .into_group(&self.provider)
                .unwrap();
                self.groups
                    .insert(group.group_id().as_slice().to_vec(), group);
            }
            body => {
                let protocol = match body {
                    MlsMessageBodyIn::PrivateMessage(m) => ProtocolMessage::from(m),
                    MlsMessageBodyIn::PublicMessage(m) => ProtocolMessage::from(m),
                    _ => panic!("unexpected message"),
                };
                let id = protocol.group_id().as_slice().to_vec();
                let group = self.groups.get_mut(&id).unwrap();
                let processed = group.process_message(&self.provider, protocol).unwrap();
                match processed.into_content() {
                    ProcessedMessageContent::ApplicationMessage(app) => {
                        self.received
                            .push((id, String::from_utf8(app.into_bytes()).unwrap()));
                    }
                    ProcessedMessageContent::StagedCommitMessage(staged) => {
                        group.merge_staged_commit(&self.provider, *staged).unwrap();
                    }
                    ProcessedMessageContent::ProposalMessage(proposal) => {
                        group
                            .store_pending_proposal(self.provider.storage(), *proposal)
                            .unwrap();
                    }
                    _ => {}
                }
            }
        }
    }
}

/// The wire form of a group id (unpadded base64url).
pub fn group_text(id: &[u8]) -> String {
    kavro_proto::v2::GroupId::from_bytes(id).unwrap().to_text()
}
