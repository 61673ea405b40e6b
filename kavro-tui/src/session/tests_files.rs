//! Attachments over the v1 envelope in one process, against the real relay
//! (SQLite, local blob store), with two accounts that have no v2 device:
//! refused to a contact that never sent an authenticated envelope; then
//! sealed, uploaded with the account token, announced in a file envelope,
//! saved by the recipient (never over an existing file); a lying sender's
//! file (its hash does not match) is refused and nothing is saved under its
//! name; both sides list their files; history shows them.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use kavro_proto::crypto::Payload;

use super::testing::{file_store, password};
use super::{Session, SessionError, SyncOptions};
use crate::attach::transfer::Quiet;
use crate::config::{Profile, ServerUrl};
use crate::mls::attachments::AttachmentState;
use crate::paths::Dirs;
use crate::relay::{HttpRelay, http_client};
use crate::v2::relay::V2Relay;
use crate::v2::test_relay::{Counters, Db, TestServer};

struct Account {
    session: Session,
    _dir: tempfile::TempDir,
}

async fn account(s: &TestServer, name: &str) -> Account {
    let dir = tempfile::tempdir().unwrap();
    let dirs = Dirs::new(dir.path().join("config"), dir.path().join("data"));
    let profile = Profile::load(&dirs, "default", Some(&s.base)).unwrap();
    let server = ServerUrl::parse(&s.base).unwrap();
    let relay = HttpRelay::with_client(&server, http_client(&s.base, &[]).unwrap());
    let mut session = Session::open(profile, Arc::new(relay), file_store(dir.path()))
        .await
        .unwrap();
    session.register(name, &password(), None).await.unwrap();
    Account { session, _dir: dir }
}

fn sample(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 11 % 251) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v1_file_goes_to_a_kavro_contact_and_a_lying_one_is_refused() {
    let Some(s) = TestServer::start(Db::Sqlite, Counters::Memory, |_| {}).await else {
        return;
    };
    let blobs = V2Relay::for_tests(&s.base);
    let alice = account(&s, "alice").await;
    let bob = account(&s, "bob").await;
    let files = tempfile::tempdir().unwrap();
    let plain = sample(2 * kavro_proto::attachment::SEGMENT + 9);
    let path = files.path().join("report.pdf");
    std::fs::write(&path, &plain).unwrap();

    // bob never sent alice an authenticated envelope: refused, nothing uploaded.
    let refused = alice
        .session
        .send_file(&blobs, "bob", &path, None, &Quiet)
        .await;
    assert!(
        matches!(&refused, Err(SessionError::FilesNotReceivable { username }) if username == "bob"),
        "{refused:?}"
    );
    assert!(alice.session.files().await.unwrap().is_empty());

    // Once bob's envelope reached alice (verified), files go.
    bob.session.send("alice", "hi").await.unwrap();
    alice
        .session
        .sync_inbox(SyncOptions::default())
        .await
        .unwrap();
    alice
        .session
        .send_file(&blobs, "bob", &path, Some("the numbers"), &Quiet)
        .await
        .unwrap();
    // A second file envelope naming the same blob, whose hash lies.
    let sent = alice.session.files().await.unwrap();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (sent[0].state, sent[0].outgoing, sent[0].peer.as_str()),
        (AttachmentState::Sent, true, "bob")
    );
    let mut lie = sent[0].file.clone();
    lie.sha256 = "00".repeat(32);
    lie.name = "lie.pdf".into();
    {
        let session = &alice.session;
        let unlocked = session.unlock().unwrap();
        let (contact, _) = session.recipient(&unlocked, "bob").await.unwrap();
        let payload = Payload::with_file("alice", "bob", lie.clone(), None);
        let flushed = super::FlushReport::default();
        session
            .send_sealed(&unlocked, contact, payload, None, None, flushed)
            .await
            .unwrap();
    }

    let batch = bob
        .session
        .sync_inbox(SyncOptions::default())
        .await
        .unwrap();
    let texts: Vec<_> = batch
        .messages
        .iter()
        .map(|r| r.message.text.clone().unwrap_or_default())
        .collect();
    assert!(
        texts
            .iter()
            .any(|t| t.starts_with("[file] report.pdf (128.0 KiB)") && t.ends_with("the numbers")),
        "{texts:?}"
    );
    let downloads = tempfile::tempdir().unwrap();
    std::fs::write(downloads.path().join("report.pdf"), b"already here").unwrap();
    let saved = bob
        .session
        .save_files(&blobs, downloads.path(), &Quiet)
        .await
        .unwrap();
    assert_eq!(saved.len(), 2);
    let good = saved[0].result.as_ref().unwrap();
    assert_eq!(good, &downloads.path().join("report (1).pdf"));
    assert_eq!(std::fs::read(good).unwrap(), plain);
    assert_eq!(
        std::fs::read(downloads.path().join("report.pdf")).unwrap(),
        b"already here",
        "never over a file"
    );
    let refused = saved[1].result.as_ref().unwrap_err();
    assert!(refused.contains("SHA-256"), "{refused}");
    let names: Vec<_> = std::fs::read_dir(downloads.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "no lie.pdf, no part file left: {names:?}");

    let listed = bob.session.files().await.unwrap();
    assert_eq!(
        listed.iter().map(|r| r.state).collect::<Vec<_>>(),
        [AttachmentState::Saved, AttachmentState::Failed]
    );
    assert_eq!(listed[0].caption.as_deref(), Some("the numbers"));
    assert_eq!(listed[0].peer, "alice");
    // Nothing is pending any more: a second run saves nothing.
    let again = bob
        .session
        .save_files(&blobs, downloads.path(), &Quiet)
        .await
        .unwrap();
    assert!(again.is_empty());
    let history = bob.session.history("alice", 10).await.unwrap();
    assert!(
        history.iter().any(|m| m
            .text
            .as_deref()
            .is_some_and(|t| t.starts_with("[file] report.pdf"))),
        "{history:?}"
    );
}
