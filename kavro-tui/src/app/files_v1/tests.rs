//! The chat app worker's v1 attachments against a real relay in this
//! process (SQLite, local blob store), two accounts without v2 devices: a
//! file from the prompt to a person who never sent an authenticated
//! envelope is refused with the CLI's reason; then files go both ways, each
//! upload reports its progress, each conversation shows an attachment line
//! (v1), and each side's save puts the same bytes in its downloads
//! directory, never over an existing file; a missing file is refused.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::mpsc;

use super::{save_received, send_file};
use crate::app::action::{Action, NetEvent, SendOutcome, V2Event};
use crate::app::attachments::{AttachmentStatus, FileProtocol, FileToSend};
use crate::app::state::MessageView;
use crate::config::{Profile, ServerUrl};
use crate::paths::Dirs;
use crate::relay::{HttpRelay, http_client};
use crate::session::testing::{file_store, password};
use crate::session::{Session, SyncOptions};
use crate::v2::test_relay::{Counters, Db, TestServer};

struct Account {
    session: Session,
    actions: mpsc::UnboundedSender<Action>,
    reports: mpsc::UnboundedReceiver<Action>,
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
    let (actions, reports) = mpsc::unbounded_channel();
    Account {
        session,
        actions,
        reports,
        _dir: dir,
    }
}

fn drain(reports: &mut mpsc::UnboundedReceiver<Action>) -> Vec<NetEvent> {
    let mut out = Vec::new();
    while let Ok(Action::Net(event)) = reports.try_recv() {
        out.push(event);
    }
    out
}

fn sent(events: &[NetEvent], pending: u64) -> SendOutcome {
    events
        .iter()
        .find_map(|e| match e {
            NetEvent::Sent {
                pending: p,
                outcome,
                ..
            } if *p == pending => Some(outcome.clone()),
            _ => None,
        })
        .expect("a send outcome")
}

/// The last history `peer`'s conversation was shown with.
fn history(events: &[NetEvent], peer: &str) -> Vec<MessageView> {
    events
        .iter()
        .rev()
        .find_map(|e| match e {
            NetEvent::History { peer: p, messages } if p == peer => Some(messages.clone()),
            _ => None,
        })
        .expect("a history")
}

fn uploads(events: &[NetEvent], pending: u64) -> Vec<u8> {
    events
        .iter()
        .filter_map(|e| match e {
            NetEvent::V2(V2Event::Upload {
                pending: p,
                percent,
                ..
            }) if *p == pending => Some(*percent),
            _ => None,
        })
        .collect()
}

fn file(path: &Path, caption: Option<&str>) -> FileToSend {
    FileToSend {
        path: path.to_path_buf(),
        caption: caption.map(str::to_owned),
    }
}

/// The one attachment line of `messages`: its protocol, status, outgoing.
fn line(messages: &[MessageView]) -> (FileProtocol, AttachmentStatus, bool) {
    let attachments: Vec<_> = messages
        .iter()
        .filter_map(|m| m.attachment.as_deref())
        .collect();
    assert_eq!(attachments.len(), 1, "{messages:?}");
    let a = attachments[0];
    (a.protocol, a.status.clone(), a.outgoing)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_files_go_both_ways_from_the_app_and_are_saved() {
    let Some(s) = TestServer::start(Db::Sqlite, Counters::Memory, |_| {}).await else {
        return;
    };
    let mut alice = account(&s, "alice").await;
    let mut bob = account(&s, "bob").await;
    let files = tempfile::tempdir().unwrap();
    let report: Vec<u8> = (0..70_000).map(|i| (i * 7 % 251) as u8).collect();
    let report_path = files.path().join("report.pdf");
    std::fs::write(&report_path, &report).unwrap();
    let (alice_dl, bob_dl): (PathBuf, PathBuf) =
        (files.path().join("alice-dl"), files.path().join("bob-dl"));

    // bob never sent alice an authenticated envelope: refused as the CLI does.
    send_file(
        &alice.session,
        &alice.actions,
        1,
        "bob".into(),
        file(&report_path, None),
    )
    .await;
    let events = drain(&mut alice.reports);
    match sent(&events, 1) {
        SendOutcome::Refused { reason, .. } => {
            assert!(reason.contains("bob"), "{reason}");
            assert!(
                reason.contains("legacy") || reason.contains("Kavro"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(alice.session.files().await.unwrap().is_empty());

    // A missing file: refused with the path, nothing sent.
    bob.session.send("alice", "hi").await.unwrap();
    alice
        .session
        .sync_inbox(SyncOptions::default())
        .await
        .unwrap();
    let missing = files.path().join("nope.txt");
    send_file(
        &alice.session,
        &alice.actions,
        2,
        "bob".into(),
        file(&missing, None),
    )
    .await;
    match sent(&drain(&mut alice.reports), 2) {
        SendOutcome::Refused { reason, .. } => assert!(reason.contains("nope.txt"), "{reason}"),
        other => panic!("{other:?}"),
    }

    // alice → bob: progress, then a v1 attachment line on the relay.
    send_file(
        &alice.session,
        &alice.actions,
        3,
        "bob".into(),
        file(&report_path, Some("the numbers")),
    )
    .await;
    let events = drain(&mut alice.reports);
    assert!(matches!(sent(&events, 3), SendOutcome::Stored { .. }));
    let percents = uploads(&events, 3);
    assert_eq!(percents.first(), Some(&0));
    assert_eq!(percents.last(), Some(&100));
    assert_eq!(
        line(&history(&events, "bob")),
        (FileProtocol::V1, AttachmentStatus::OnRelay, true)
    );

    // bob's app saves it; a file of that name already there stays.
    std::fs::create_dir_all(&bob_dl).unwrap();
    std::fs::write(bob_dl.join("report.pdf"), b"mine").unwrap();
    bob.session
        .sync_inbox(SyncOptions::default())
        .await
        .unwrap();
    save_received(&bob.session, &bob.actions, &bob_dl).await;
    let events = drain(&mut bob.reports);
    let (protocol, status, outgoing) = line(&history(&events, "alice"));
    assert_eq!((protocol, outgoing), (FileProtocol::V1, false));
    let AttachmentStatus::Saved(saved) = status else {
        panic!("{status:?}")
    };
    assert_eq!(std::fs::read(&saved).unwrap(), report);
    assert_ne!(Path::new(&saved), bob_dl.join("report.pdf"));
    assert_eq!(std::fs::read(bob_dl.join("report.pdf")).unwrap(), b"mine");
    assert!(
        events.iter().any(
            |e| matches!(e, NetEvent::V2(V2Event::Saved(said)) if said.contains("report.pdf"))
        )
    );
    // Nothing left to save: a second run says nothing.
    save_received(&bob.session, &bob.actions, &bob_dl).await;
    assert!(drain(&mut bob.reports).is_empty());

    // bob → alice: the other way.
    let notes = files.path().join("notes.txt");
    std::fs::write(&notes, b"see you at ten").unwrap();
    send_file(
        &bob.session,
        &bob.actions,
        4,
        "alice".into(),
        file(&notes, None),
    )
    .await;
    assert!(matches!(
        sent(&drain(&mut bob.reports), 4),
        SendOutcome::Stored { .. }
    ));
    alice
        .session
        .sync_inbox(SyncOptions::default())
        .await
        .unwrap();
    save_received(&alice.session, &alice.actions, &alice_dl).await;
    let events = drain(&mut alice.reports);
    let messages = history(&events, "bob");
    let received: Vec<_> = messages
        .iter()
        .filter_map(|m| m.attachment.as_deref())
        .filter(|a| !a.outgoing)
        .collect();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].protocol, FileProtocol::V1);
    let saved = received[0].saved_path().unwrap();
    assert_eq!(std::fs::read(saved).unwrap(), b"see you at ten");
    assert_eq!(Path::new(saved), alice_dl.join("notes.txt"));
}
