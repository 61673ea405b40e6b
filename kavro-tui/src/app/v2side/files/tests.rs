//! Pure parts of the worker's attachments: which history line an
//! attachment row belongs to, and the checks before a file is sent. The
//! relay round trips are in `v2/tests_app_files.rs`.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::app::state::AttachmentStatus;

#[test]
fn file_lines_get_their_attachment_rows_in_order() {
    use chrono::Utc;
    use kavro_proto::attachment::FileRef;

    use crate::mls::attachments::AttachmentState;
    use crate::mls::rows::LineKind;

    let file = |name: &str| FileRef {
        blob_id: uuid::Uuid::nil().to_string(),
        key: String::new(),
        nonce: String::new(),
        size: 2048,
        sha256: String::new(),
        name: name.into(),
        media_type: "image/png".into(),
    };
    let group = GroupId::from_bytes(b"g").unwrap();
    let row = |sender: &str, outgoing: bool, body: String| MessageRow {
        epoch: 1,
        kind: LineKind::Text,
        sender: sender.into(),
        outgoing,
        body,
        at: Utc::now(),
    };
    let attachment = |id: i64, sender: &str, name: &str, state, path: Option<&str>| AttachmentRow {
        id,
        group_id: group.clone(),
        sender: sender.into(),
        outgoing: sender == "alice",
        file: file(name),
        caption: None,
        state,
        saved_path: path.map(str::to_owned),
        error: None,
        at: Utc::now(),
    };
    let same = Body::file_line(&file("a.png"), None);
    let rows = vec![
        row("bob", false, same.clone()),
        row("bob", false, "just text".into()),
        row("bob", false, same.clone()),
        row("alice", true, same),
    ];
    let attachments = vec![
        attachment(1, "bob", "a.png", AttachmentState::Saved, Some("/d/a.png")),
        attachment(2, "bob", "a.png", AttachmentState::Pending, None),
        attachment(3, "alice", "a.png", AttachmentState::Sent, None),
    ];
    let shown = with_attachments(&rows, &attachments, "alice");
    let states: Vec<Option<AttachmentStatus>> = shown
        .iter()
        .map(|m| m.attachment.as_ref().map(|a| a.status.clone()))
        .collect();
    assert_eq!(
        states,
        vec![
            Some(AttachmentStatus::Saved("/d/a.png".into())),
            None,
            Some(AttachmentStatus::OnRelay),
            Some(AttachmentStatus::OnRelay),
        ]
    );
    assert!(shown[3].attachment.as_ref().unwrap().outgoing);
    assert!(shown[0].attachment.as_ref().unwrap().is_picture());
}

#[test]
fn check_file_names_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.txt");
    std::fs::write(&file, b"abc").unwrap();
    assert_eq!(check_file(&file), Ok(3));
    assert!(
        check_file(dir.path())
            .unwrap_err()
            .contains("is a directory")
    );
    assert!(
        check_file(&dir.path().join("nope"))
            .unwrap_err()
            .contains("cannot read")
    );
}
