//! The chat app worker's attachments (`app::v2side`) against a real relay
//! in this process (SQLite, local blob store): a file sent from the prompt
//! reports its upload and shows as an attachment line; the other app saves
//! it into its downloads directory (same bytes) and shows where; a missing
//! file, a directory, one over the relay's cap and a v1-only person are
//! refused with the reason, and nothing is sent.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;

use kavro_proto::v2::GroupId;
use tokio::sync::mpsc;

use super::V2Session;
use super::tests::{Device, relay, root};
use crate::app::action::{Action, NetEvent, V2Event};
use crate::app::attachments::FileToSend;
use crate::app::state::{AttachmentStatus, MessageView};
use crate::app::v2side::V2Side;
use crate::relay::MemoryRelay;

/// The app's v2 side around `v2`, saving into `downloads`.
async fn side(
    v2: V2Session,
    downloads: PathBuf,
) -> (
    Arc<V2Side>,
    mpsc::UnboundedReceiver<Action>,
    tempfile::TempDir,
) {
    let crate::session::testing::Device { dir, session } =
        crate::session::testing::device(&Arc::new(MemoryRelay::new())).await;
    let (actions, reports) = mpsc::unbounded_channel();
    (
        V2Side::for_tests_saving_to(session, v2, actions, downloads),
        reports,
        dir,
    )
}

fn drain(reports: &mut mpsc::UnboundedReceiver<Action>) -> Vec<V2Event> {
    let mut out = Vec::new();
    while let Ok(action) = reports.try_recv() {
        if let Action::Net(NetEvent::V2(event)) = action {
            out.push(event);
        }
    }
    out
}

/// The outcome of send `pending` among `events`.
fn outcome(events: &[V2Event], pending: u64) -> Option<Result<Vec<MessageView>, String>> {
    events.iter().find_map(|e| match e {
        V2Event::Sent {
            pending: p,
            outcome,
            ..
        } if *p == pending => Some(outcome.clone()),
        _ => None,
    })
}

fn sample(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 13 % 251) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_sent_from_the_app_is_saved_by_the_other_app() {
    let Some(s) = relay().await else { return };
    let Device {
        session: mut alice,
        dir: _alice_dir,
    } = root(&s, "alice").await;
    let Device {
        session: mut bob,
        dir: _bob_dir,
    } = root(&s, "bob").await;
    let team = alice
        .create_group(Some("team"), &["bob".into()])
        .await
        .unwrap();
    let files = tempfile::tempdir().unwrap();
    let plain = sample(2 * kavro_proto::attachment::SEGMENT + 17);
    let path = files.path().join("report.pdf");
    std::fs::write(&path, &plain).unwrap();
    let alice_downloads = tempfile::tempdir().unwrap();
    let (alice, mut alice_reports, _a) = side(alice, alice_downloads.path().into()).await;

    alice
        .clone()
        .send_file(
            7,
            Some(team.clone()),
            "#team".into(),
            FileToSend {
                path: path.clone(),
                caption: Some("the numbers".into()),
            },
        )
        .await;
    let events = drain(&mut alice_reports);
    let percents: Vec<u8> = events
        .iter()
        .filter_map(|e| match e {
            V2Event::Upload {
                pending: 7,
                percent,
                size,
                ..
            } => {
                assert_eq!(*size, plain.len() as u64);
                Some(*percent)
            }
            _ => None,
        })
        .collect();
    assert_eq!(percents.first(), Some(&0), "{events:?}");
    assert_eq!(percents.last(), Some(&100), "{events:?}");
    let lines = outcome(&events, 7).expect("an answer").unwrap();
    let sent = lines.last().unwrap().attachment.as_deref().unwrap();
    assert_eq!(
        (sent.name.as_str(), sent.size, sent.outgoing, &sent.status),
        (
            "report.pdf",
            plain.len() as u64,
            true,
            &AttachmentStatus::OnRelay
        )
    );
    assert_eq!(sent.caption.as_deref(), Some("the numbers"));

    // Bob's device applies the message; his app then saves the file into
    // its downloads directory and shows the line as saved there.
    bob.sync().await.unwrap();
    let bob_downloads = tempfile::tempdir().unwrap();
    let (bob, mut bob_reports, _b) = side(bob, bob_downloads.path().into()).await;
    bob.save_received().await.unwrap();
    let after = drain(&mut bob_reports);
    let saved = after
        .iter()
        .rev()
        .find_map(|e| match e {
            V2Event::History { label, messages } if label == "#team" => {
                messages.last().and_then(|m| m.attachment.clone())
            }
            _ => None,
        })
        .unwrap();
    let AttachmentStatus::Saved(at) = &saved.status else {
        panic!("{saved:?}");
    };
    assert_eq!(PathBuf::from(at), bob_downloads.path().join("report.pdf"));
    assert_eq!(std::fs::read(at).unwrap(), plain);
    assert!(
        after
            .iter()
            .any(|e| matches!(e, V2Event::Saved(t) if t.contains("Saved report.pdf from alice"))),
        "{after:?}"
    );
    // Nothing left to save: a second run says nothing.
    bob.save_received().await.unwrap();
    assert!(drain(&mut bob_reports).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_files_and_a_v1_only_person_are_refused_with_the_reason() {
    let Some(s) = relay().await else { return };
    let Device {
        session: mut alice,
        dir: _alice_dir,
    } = root(&s, "alice").await;
    let _bob = root(&s, "bob").await;
    s.register("carol").await; // v1 only: no v2 device
    let team = alice
        .create_group(Some("team"), &["bob".into()])
        .await
        .unwrap();
    let files = tempfile::tempdir().unwrap();
    let big = files.path().join("big.iso");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(101 * 1024 * 1024)
        .unwrap();
    std::fs::write(files.path().join("note.txt"), b"hi").unwrap();
    let downloads = tempfile::tempdir().unwrap();
    let (alice, mut reports, _a) = side(alice, downloads.path().into()).await;

    let cases: [(Option<GroupId>, &str, PathBuf, &str); 4] = [
        (
            Some(team.clone()),
            "#team",
            files.path().join("nope.txt"),
            "cannot read",
        ),
        (
            Some(team.clone()),
            "#team",
            files.path().into(),
            "is a directory",
        ),
        (Some(team.clone()), "#team", big, "100 MiB"),
        (
            None,
            "carol",
            files.path().join("note.txt"),
            "carol has no Kavro v2 device: their client speaks only v1",
        ),
    ];
    for (pending, (group, label, path, reason)) in (1u64..).zip(cases) {
        alice
            .clone()
            .send_file(
                pending,
                group,
                label.into(),
                FileToSend {
                    path,
                    caption: None,
                },
            )
            .await;
        let events = drain(&mut reports);
        let refused = outcome(&events, pending).expect("an answer").unwrap_err();
        assert!(refused.contains(reason), "{refused}");
    }
    assert!(alice.attachments_for_tests().await.is_empty());
}
