//! Attachments end to end in one process against the real relay (SQLite,
//! local blob store): a file sealed, uploaded in chunks, announced over MLS,
//! downloaded and checked by the other member; a lying sender's file (its
//! hash does not match) is refused and nothing is saved under its name.
#![allow(clippy::unwrap_used)]

use super::payload::{Body, Payload};
use super::tests::{relay, root};
use crate::attach::transfer::Quiet;
use crate::mls::attachments::AttachmentState;

fn sample(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 253) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_goes_through_sealed_and_a_lying_one_is_refused() {
    let Some(s) = relay().await else { return };
    let mut alice = root(&s, "alice").await;
    let mut bob = root(&s, "bob").await;
    let team = alice
        .create_group(Some("team"), &["bob".into()])
        .await
        .unwrap();
    bob.sync().await.unwrap();

    let files = tempfile::tempdir().unwrap();
    let plain = sample(3 * kavro_proto::attachment::SEGMENT + 5);
    let path = files.path().join("report.pdf");
    std::fs::write(&path, &plain).unwrap();
    alice
        .send_file(&team, &path, Some("the numbers"), &Quiet)
        .await
        .unwrap();
    let sent = alice.attachments().await.unwrap();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (sent[0].state, sent[0].file.name.as_str(), sent[0].file.size),
        (AttachmentState::Sent, "report.pdf", plain.len() as u64)
    );
    assert_eq!(sent[0].file.media_type, "application/pdf");

    // A second message with the same blob but a hash that does not match.
    let mut lie = sent[0].file.clone();
    lie.sha256 = "00".repeat(32);
    lie.name = "lie.pdf".into();
    alice
        .send_payload(
            &team,
            &Payload::new(Body::File {
                file: lie,
                caption: None,
            }),
        )
        .await
        .unwrap();

    let report = bob.sync().await.unwrap();
    let texts: Vec<_> = report.received.iter().map(|r| r.text.clone()).collect();
    assert!(
        texts
            .iter()
            .any(|t| t.starts_with("[file] report.pdf (192.0 KiB)") && t.ends_with("the numbers")),
        "{texts:?}"
    );
    let downloads = tempfile::tempdir().unwrap();
    std::fs::write(downloads.path().join("report.pdf"), b"already here").unwrap();
    let saved = bob.save_pending(downloads.path(), &Quiet).await.unwrap();
    assert_eq!(saved.len(), 2);
    let good = saved[0].result.as_ref().unwrap();
    assert_eq!(
        good,
        &downloads.path().join("report (1).pdf"),
        "never over a file"
    );
    assert_eq!(std::fs::read(good).unwrap(), plain);
    assert_eq!(
        std::fs::read(downloads.path().join("report.pdf")).unwrap(),
        b"already here"
    );
    let refused = saved[1].result.as_ref().unwrap_err();
    assert!(refused.contains("SHA-256"), "{refused}");
    let mut names: Vec<_> = std::fs::read_dir(downloads.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec!["report (1).pdf", "report.pdf"],
        "no part file, no lie.pdf"
    );
    let states: Vec<_> = bob
        .attachments()
        .await
        .unwrap()
        .iter()
        .map(|a| a.state)
        .collect();
    assert_eq!(
        states,
        vec![AttachmentState::Saved, AttachmentState::Failed]
    );
    // Nothing left to save.
    assert!(
        bob.save_pending(downloads.path(), &Quiet)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_over_the_cap_or_unreadable_is_refused_before_upload() {
    let Some(s) = relay().await else { return };
    let mut alice = root(&s, "alice").await;
    let _bob = root(&s, "bob").await;
    let team = alice
        .create_group(Some("team"), &["bob".into()])
        .await
        .unwrap();
    let files = tempfile::tempdir().unwrap();
    let missing = files.path().join("nope.txt");
    let err = alice
        .send_file(&team, &missing, None, &Quiet)
        .await
        .unwrap_err();
    assert!(matches!(err, super::V2Error::File(_)), "{err:?}");
    assert_eq!(crate::cli::exit::for_v2(&err), crate::cli::exit::USAGE);
    let err = alice
        .send_file(&team, files.path(), None, &Quiet)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");

    // Over the relay's cap (101 MiB as a sparse file: no disk used).
    let big = files.path().join("big.iso");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(101 * 1024 * 1024)
        .unwrap();
    let err = alice
        .send_file(&team, &big, None, &Quiet)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("100 MiB"), "{err}");
    assert!(alice.attachments().await.unwrap().is_empty());
}
