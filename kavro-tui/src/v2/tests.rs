//! The v2 core against a real relay in this process (SQLite backend): 1:1
//! chats, a group of three, device link, approve and revoke, and the
//! security properties of issue #12 point 5 (forward secrecy,
//! post-compromise security, removed devices, concurrent commits, 50 epochs
//! offline).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use kavro_proto::UserId;
use kavro_proto::v2::GroupId;
use kavro_proto::validate::base64_strict;
use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::{
    MlsGroup, MlsMessageBodyIn, MlsMessageIn, ProcessedMessageContent, ProtocolMessage,
};
use reqwest::StatusCode;

use super::test_relay::{Counters, Db, TestServer};
use super::{V2Relay, V2Session, new_signer};
use crate::keystore::AccessToken;
use crate::mls::MlsStore;
use crate::mls::rows::LineKind;

/// One installation: its session and its data directory.
pub(super) struct Device {
    pub(super) session: V2Session,
    pub(super) dir: tempfile::TempDir,
}

impl Device {
    pub(super) fn db(&self) -> PathBuf {
        self.dir.path().join("mls.db")
    }
}

impl std::ops::Deref for Device {
    type Target = V2Session;
    fn deref(&self) -> &V2Session {
        &self.session
    }
}

impl std::ops::DerefMut for Device {
    fn deref_mut(&mut self) -> &mut V2Session {
        &mut self.session
    }
}

pub(super) async fn relay() -> Option<TestServer> {
    TestServer::start(Db::Sqlite, Counters::Memory, |_| {}).await
}

/// Registers `name` and its first device.
pub(super) async fn root(s: &TestServer, name: &str) -> Device {
    root_at(s, name, &s.base).await
}

/// [`root`], its session talking to the relay at `base` (e.g. a proxy).
pub(super) async fn root_at(s: &TestServer, name: &str, base: &str) -> Device {
    let (token, user_id) = s.register(name).await;
    let dir = tempfile::tempdir().unwrap();
    let store = MlsStore::open(&dir.path().join("mls.db")).await.unwrap();
    let session = V2Session::register_first(
        V2Relay::for_tests(base),
        store,
        new_signer().unwrap(),
        &AccessToken::new(token),
        name,
        UserId(user_id),
    )
    .await
    .unwrap();
    Device { session, dir }
}

/// A second installation of `existing`'s account, linked and approved.
pub(super) async fn linked(s: &TestServer, existing: &mut Device) -> Device {
    let name = existing.username().to_owned();
    let account = AccessToken::new(s.login(&name).await);
    let relay = V2Relay::for_tests(&s.base);
    let signer = new_signer().unwrap();
    let started = V2Session::start_link(&relay, &account, &signer)
        .await
        .unwrap();
    // Not approved yet: the new installation cannot finish.
    let dir = tempfile::tempdir().unwrap();
    let (new_device, fingerprint) = existing.approve_link(&started.code).await.unwrap();
    assert_eq!(
        fingerprint, started.fingerprint,
        "both sides show the same fingerprint"
    );
    let store = MlsStore::open(&dir.path().join("mls.db")).await.unwrap();
    let session = V2Session::finish_link(
        relay,
        store,
        signer,
        &account,
        started.request_id,
        &name,
        existing.device.user_id,
    )
    .await
    .unwrap();
    assert_eq!(session.device_id(), new_device.id);
    existing.add_own_device(new_device.id).await.unwrap();
    Device { session, dir }
}

pub(super) fn texts(report: &super::SyncReport) -> Vec<String> {
    report
        .received
        .iter()
        .map(|r| format!("{}: {}", r.sender, r.text))
        .collect()
}

/// The raw queue of a device, without acknowledging: what an eavesdropper
/// on the relay (or the relay itself) captures.
pub(super) async fn capture(s: &TestServer, device: &Device) -> Vec<Vec<u8>> {
    let (status, page) = s
        .get(
            &format!(
                "/v2/devices/{}/queue?after={}&limit=500",
                device.device_id(),
                device.device.queue_after
            ),
            Some(device.token.expose()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| base64_strict(e["message"].as_str().unwrap()).unwrap())
        .collect()
}

/// Copies a device's whole state (database and WAL) as an attacker would.
pub(super) fn steal(db: &Path, to: &Path) -> PathBuf {
    let copy = to.join("stolen.db");
    std::fs::copy(db, &copy).unwrap();
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    let mut wal_copy = copy.as_os_str().to_owned();
    wal_copy.push("-wal");
    if Path::new(&wal).exists() {
        std::fs::copy(&wal, &wal_copy).unwrap();
    }
    copy
}

/// Whether the state in `store` reads any application message among the
/// captured messages of `group`, processed in order (commits it can process
/// are merged, as an attacker holding the state would).
pub(super) fn decrypts_any(store: &MlsStore, group: &GroupId, captured: &[Vec<u8>]) -> bool {
    let provider = store.provider();
    let mut mls = MlsGroup::load(
        openmls_traits::OpenMlsProvider::storage(provider),
        &openmls::prelude::GroupId::from_slice(group.as_bytes()),
    )
    .unwrap()
    .unwrap();
    captured.iter().any(|bytes| {
        let message = MlsMessageIn::tls_deserialize_exact(bytes).unwrap();
        let protocol = match message.extract() {
            MlsMessageBodyIn::PrivateMessage(m) => ProtocolMessage::from(m),
            MlsMessageBodyIn::PublicMessage(m) => ProtocolMessage::from(m),
            _ => return false,
        };
        match mls
            .process_message(provider, protocol)
            .map(openmls::prelude::ProcessedMessage::into_content)
        {
            Ok(ProcessedMessageContent::ApplicationMessage(_)) => true,
            Ok(ProcessedMessageContent::StagedCommitMessage(staged)) => {
                let _ = mls.merge_staged_commit(provider, *staged);
                false
            }
            _ => false,
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_chat_one_to_one() {
    let Some(s) = relay().await else { return };
    let mut alice = root(&s, "alice").await;
    let mut bob = root(&s, "bob").await;
    let chat = alice.direct("bob").await.unwrap();
    assert_eq!(
        alice.direct("bob").await.unwrap(),
        chat,
        "one 1:1 chat per peer"
    );
    alice.send(&chat, "hi bob").await.unwrap();
    let report = bob.sync().await.unwrap();
    assert_eq!(texts(&report), vec!["alice: hi bob"]);
    assert_eq!(bob.find("alice").await.unwrap(), chat);
    bob.send(&chat, "hi alice").await.unwrap();
    assert_eq!(texts(&alice.sync().await.unwrap()), vec!["bob: hi alice"]);

    let history = alice.history(&chat, 10).await.unwrap();
    let lines: Vec<(LineKind, bool, &str)> = history
        .iter()
        .map(|l| (l.kind, l.outgoing, l.body.as_str()))
        .collect();
    assert_eq!(
        lines,
        vec![
            (LineKind::System, true, "alice created the conversation"),
            (LineKind::Text, true, "hi bob"),
            (LineKind::Text, false, "hi alice"),
        ]
    );
    let listed = bob.conversations().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].label, "alice");
    assert_eq!(listed[0].members, vec!["alice", "bob"]);
    // Bad input: no such conversation, no such user, too long.
    assert!(matches!(
        bob.find("#nope").await,
        Err(super::V2Error::UnknownConversation(_))
    ));
    assert!(alice.direct("nobody").await.is_err());
    let long = "x".repeat(super::payload::MAX_TEXT_BYTES + 1);
    assert!(matches!(
        alice.send(&chat, &long).await,
        Err(super::V2Error::TooLong(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_of_three_rename_and_remove() {
    let Some(s) = relay().await else { return };
    let mut alice = root(&s, "alice").await;
    let mut bob = root(&s, "bob").await;
    let mut carol = root(&s, "carol").await;
    let team = alice
        .create_group(Some("team"), &["bob".into(), "carol".into()])
        .await
        .unwrap();
    assert!(matches!(
        alice.create_group(Some("team"), &["bob".into()]).await,
        Err(super::V2Error::NameTaken(_))
    ));
    bob.sync().await.unwrap();
    carol.sync().await.unwrap();
    assert_eq!(
        bob.find("#team").await.unwrap(),
        team,
        "the name reached bob"
    );
    alice.send(&team, "one").await.unwrap();
    bob.send(&team, "two").await.unwrap();
    assert_eq!(
        texts(&carol.sync().await.unwrap()),
        vec!["alice: one", "bob: two"]
    );
    let summary = &carol.conversations().await.unwrap()[0];
    assert_eq!((summary.label.as_str(), summary.devices), ("#team", 3));

    bob.rename(&team, "crew").await.unwrap();
    alice.sync().await.unwrap();
    assert_eq!(alice.find("#crew").await.unwrap(), team);

    alice
        .remove_members(&team, &["carol".into()])
        .await
        .unwrap();
    alice.send(&team, "carol is gone").await.unwrap();
    carol.sync().await.unwrap();
    let carol_view = &carol.conversations().await.unwrap()[0];
    assert!(!carol_view.active, "carol sees her removal");
    assert!(carol.send(&team, "late").await.is_err());
    // bob had not read "one" yet (sending and renaming do not read).
    assert_eq!(
        texts(&bob.sync().await.unwrap()),
        vec!["alice: one", "alice: carol is gone"]
    );
    let last = carol.history(&team, 1).await.unwrap();
    assert_eq!(last[0].body, "alice removed this device");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_leaves_and_another_commits_it() {
    let Some(s) = relay().await else { return };
    let mut alice = root(&s, "alice").await;
    let mut bob = root(&s, "bob").await;
    let mut carol = root(&s, "carol").await;
    let team = alice
        .create_group(Some("team"), &["bob".into(), "carol".into()])
        .await
        .unwrap();
    bob.sync().await.unwrap();
    carol.sync().await.unwrap();
    carol.leave(&team).await.unwrap();
    // bob's sync commits carol's departure; alice follows.
    bob.sync().await.unwrap();
    alice.sync().await.unwrap();
    assert_eq!(
        alice.conversations().await.unwrap()[0].members,
        vec!["alice", "bob"]
    );
    alice.send(&team, "without carol").await.unwrap();
    carol.sync().await.unwrap();
    assert!(!carol.conversations().await.unwrap()[0].active);
    assert_eq!(
        texts(&bob.sync().await.unwrap()),
        vec!["alice: without carol"]
    );
    assert!(carol.sync().await.unwrap().received.is_empty());
    assert_eq!(alice.epoch_state(&team), bob.epoch_state(&team));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linked_device_joins_every_conversation_and_revoked_reads_nothing() {
    let Some(s) = relay().await else { return };
    let mut alice = root(&s, "alice").await;
    let mut bob = root(&s, "bob").await;
    let chat = bob.direct("alice").await.unwrap();
    alice.sync().await.unwrap();
    let mut alice2 = linked(&s, &mut alice).await;
    alice2.sync().await.unwrap();
    assert_eq!(
        alice2.find("bob").await.unwrap(),
        chat,
        "the new device is in the chat"
    );
    bob.send(&chat, "to both of you").await.unwrap();
    assert_eq!(
        texts(&alice2.sync().await.unwrap()),
        vec!["bob: to both of you"]
    );
    assert_eq!(
        texts(&alice.sync().await.unwrap()),
        vec!["bob: to both of you"]
    );
    // alice's own message reaches her other device.
    alice.send(&chat, "from phone one").await.unwrap();
    let got = alice2.sync().await.unwrap();
    assert_eq!(texts(&got), vec!["alice: from phone one"]);
    let devices = alice.devices("alice").await.unwrap();
    assert_eq!(devices.len(), 2);
    assert!(
        devices[1].link.is_some(),
        "the second device carries its link"
    );

    // Revoke: the device is removed from the chat and the relay refuses it.
    let stolen_dir = tempfile::tempdir().unwrap();
    let stolen = steal(&alice2.db(), stolen_dir.path());
    alice.revoke_device(alice2.device_id()).await.unwrap();
    bob.sync().await.unwrap();
    bob.send(&chat, "after the revocation").await.unwrap();
    assert!(
        alice2.sync().await.is_err(),
        "the relay refuses a revoked device"
    );
    let captured = capture(&s, &alice).await;
    assert!(!captured.is_empty());
    let state = MlsStore::open(&stolen).await.unwrap();
    assert!(
        !decrypts_any(&state, &chat, &captured),
        "the revoked device's state reads nothing sent after its removal"
    );
    assert_eq!(
        texts(&alice.sync().await.unwrap()),
        vec!["bob: after the revocation"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_secrecy_and_post_compromise_security() {
    let Some(s) = relay().await else { return };
    let mut alice = root(&s, "alice").await;
    let mut bob = root(&s, "bob").await;
    let chat = alice.direct("bob").await.unwrap();
    bob.sync().await.unwrap();

    // Forward secrecy: bob reads a message, the epoch moves on, then his
    // whole state is copied: the copy cannot open the captured ciphertext.
    alice.send(&chat, "secret").await.unwrap();
    let captured = capture(&s, &bob).await;
    assert_eq!(captured.len(), 1);
    assert_eq!(texts(&bob.sync().await.unwrap()), vec!["alice: secret"]);
    alice.update_keys(&chat).await.unwrap();
    bob.sync().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let copy = MlsStore::open(&steal(&bob.db(), dir.path())).await.unwrap();
    assert!(
        !decrypts_any(&copy, &chat, &captured),
        "an old message stays closed"
    );

    // Post-compromise: the attacker holds bob's state; bob updates his keys
    // once; the attacker cannot read what follows (not even with the commit).
    let dir2 = tempfile::tempdir().unwrap();
    let stolen = steal(&bob.db(), dir2.path());
    let attacker = MlsStore::open(&stolen).await.unwrap();
    // Before the update, the stolen state reads new messages.
    alice.send(&chat, "before the update").await.unwrap();
    assert!(decrypts_any(&attacker, &chat, &capture(&s, &bob).await));
    bob.sync().await.unwrap();
    let attacker = MlsStore::open(&steal(&bob.db(), dir2.path()))
        .await
        .unwrap();
    bob.update_keys(&chat).await.unwrap();
    let commit = capture(&s, &alice).await;
    alice.sync().await.unwrap();
    alice.send(&chat, "after the update").await.unwrap();
    let mut captured = commit;
    captured.extend(capture(&s, &bob).await);
    assert!(
        !decrypts_any(&attacker, &chat, &captured),
        "the healed state is out of reach"
    );
    assert_eq!(
        texts(&bob.sync().await.unwrap()),
        vec!["alice: after the update"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_do_not_fork_and_fifty_offline_epochs_arrive_in_order() {
    let Some(s) = relay().await else { return };
    let mut alice = root(&s, "alice").await;
    let mut bob = root(&s, "bob").await;
    let mut carol = root(&s, "carol").await;
    let team = alice
        .create_group(Some("team"), &["bob".into(), "carol".into()])
        .await
        .unwrap();
    bob.sync().await.unwrap();
    carol.sync().await.unwrap();

    // bob and carol commit at once: one wins, the other re-syncs and retries.
    let (b, c) = tokio::join!(bob.update_keys(&team), carol.update_keys(&team));
    b.unwrap();
    c.unwrap();
    alice.sync().await.unwrap();
    bob.sync().await.unwrap();
    carol.sync().await.unwrap();
    let state = alice.epoch_state(&team);
    assert_eq!(state.0, 3, "two commits after the add");
    assert_eq!(bob.epoch_state(&team), state);
    assert_eq!(carol.epoch_state(&team), state);

    // carol is offline for 50 epochs of talk.
    for round in 0..50u32 {
        let speaker = if round.is_multiple_of(2) {
            &mut alice
        } else {
            &mut bob
        };
        speaker.update_keys(&team).await.unwrap();
        speaker
            .send(&team, &format!("message {round}"))
            .await
            .unwrap();
    }
    let report = carol.sync().await.unwrap();
    let expected: Vec<String> = (0..50u32)
        .map(|r| {
            format!(
                "{}: message {r}",
                if r.is_multiple_of(2) { "alice" } else { "bob" }
            )
        })
        .collect();
    assert_eq!(texts(&report), expected, "all 50 arrive, in order");
    alice.sync().await.unwrap();
    assert_eq!(carol.epoch_state(&team), alice.epoch_state(&team));
}

/// A crash after the local commit but before the relay took it: the outbox
/// posts it again and nothing is lost or sent twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_reopening() {
    let Some(s) = relay().await else { return };
    let alice = root(&s, "alice").await;
    let mut bob = root(&s, "bob").await;
    let Device { session, dir } = alice;
    let signer_bytes = crate::mls::device_key::encode(&session.signer);
    session.close().await;
    let store = MlsStore::open(&dir.path().join("mls.db")).await.unwrap();
    let signer = crate::mls::device_key::decode(&signer_bytes).unwrap();
    let account = AccessToken::new(s.login("alice").await);
    let mut alice = V2Session::open(V2Relay::for_tests(&s.base), store, signer, &account)
        .await
        .unwrap();
    let chat = alice.direct("bob").await.unwrap();
    alice.send(&chat, "after reopening").await.unwrap();
    assert_eq!(
        texts(&bob.sync().await.unwrap()),
        vec!["alice: after reopening"]
    );
    // Another key opens nothing.
    let store = MlsStore::open(&dir.path().join("other.db")).await.unwrap();
    assert!(matches!(
        V2Session::open(
            V2Relay::for_tests(&s.base),
            store,
            new_signer().unwrap(),
            &account
        )
        .await,
        Err(super::V2Error::NoDevice)
    ));
}
