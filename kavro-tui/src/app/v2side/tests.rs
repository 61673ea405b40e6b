//! Unit tests of the v2 side's pure parts: history rows as the pane shows
//! them, and how conversations go into the list.

use chrono::{TimeZone as _, Utc};

use super::*;

fn row(kind: LineKind, sender: &str, outgoing: bool, body: &str) -> MessageRow {
    MessageRow {
        epoch: 1,
        kind,
        sender: sender.to_owned(),
        outgoing,
        body: body.to_owned(),
        at: Utc.with_ymd_and_hms(2026, 11, 29, 12, 0, 0).unwrap(),
    }
}

#[test]
fn history_rows_become_own_member_and_system_lines() {
    let shown = views(
        &[
            row(
                LineKind::System,
                "alice",
                true,
                "alice created the conversation",
            ),
            row(LineKind::Text, "alice", true, "hello"),
            row(LineKind::Text, "bob", false, "hi"),
            row(LineKind::System, "bob", false, "bob added a device"),
        ],
        "alice",
    );
    let marks: Vec<_> = shown.iter().map(|v| v.mark.clone()).collect();
    assert_eq!(
        marks,
        vec![Mark::System, Mark::Own, Mark::Member, Mark::System]
    );
    assert_eq!(shown[1].status, Some(SendStatus::Stored));
    assert_eq!(shown[0].status, None, "a system line has no send status");
    assert_eq!(shown[2].author, "bob");
    assert_eq!(shown[3].id, ViewId::Line(3));
}

fn summary(name: Option<&str>, label: &str, id: &[u8], active: bool) -> ConversationSummary {
    ConversationSummary {
        group_id: GroupId::from_bytes(id).unwrap(),
        name: name.map(str::to_owned),
        label: label.to_owned(),
        members: vec!["alice".into(), "bob".into()],
        devices: 2,
        epoch: 1,
        active,
    }
}

#[test]
fn a_one_to_one_mls_chat_goes_into_the_persons_entry() {
    let group = entry(&summary(Some("team"), "#team", b"g", true), None);
    assert_eq!(group.name, "#team");
    assert!(group.group.as_ref().is_some_and(|g| g.named));
    assert!(group.direct.is_none());

    let direct = entry(&summary(None, "bob", b"d", true), None);
    assert_eq!(direct.name, "bob", "the person's name, no suffix");
    assert!(direct.group.is_none(), "not a group entry");
    assert!(direct.direct.as_ref().is_some_and(|g| !g.named));
}

#[test]
fn a_left_one_to_one_is_hidden_behind_the_live_one() {
    let old = summary(None, "bob", b"old", false);
    let live = summary(None, "bob", b"new", true);
    let carol = summary(None, "carol", b"c", false);
    let team = summary(Some("team"), "#team", b"t", false);
    let shown = listed(vec![old, live.clone(), carol.clone(), team.clone()]);
    assert_eq!(shown, vec![live, carol, team]);
}
