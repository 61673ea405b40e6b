//! The local store: de-duplication, the outbox, contacts, conversations.

use chrono::DateTime;
use kavro_proto::crypto::IdentityPublic;
use kavro_proto::{MessageId, UserId};
use uuid::Uuid;

use super::*;
use crate::pinning::{Contact, KeyState, PendingKey};

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_780_000_000 + secs, 0).unwrap()
}

/// How many messages are stored (both directions).
async fn message_count(history: &History) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM messages")
        .fetch_one(&history.pool)
        .await
        .unwrap()
}

async fn open() -> (tempfile::TempDir, History) {
    let dir = tempfile::tempdir().unwrap();
    let history = History::open(&dir.path().join("history.sqlite3"))
        .await
        .unwrap();
    (dir, history)
}

fn envelope(uuid: u128, relay: i64, text: &str) -> NewIncoming {
    NewIncoming {
        msg_uuid: Some(Uuid::from_u128(uuid)),
        relay_id: MessageId(relay),
        peer: Some("Alice".into()),
        peer_user_id: Some(UserId(1)),
        sent_at: at(0),
        text: Some(text.into()),
        verified: true,
        state: IncomingState::Ok,
        legacy: false,
        error: None,
        sender_key: Some(IdentityPublic::from_bytes([1; 32])),
        ciphertext: format!("cipher-{relay}"),
        ephemeral_pubkey: "ab".repeat(32),
        file: None,
    }
}

fn broken(relay: i64, ciphertext: &str) -> NewIncoming {
    NewIncoming {
        msg_uuid: None,
        relay_id: MessageId(relay),
        peer: None,
        peer_user_id: Some(UserId(1)),
        sent_at: at(0),
        text: None,
        verified: false,
        state: IncomingState::Undecryptable,
        legacy: false,
        error: Some("tampered".into()),
        sender_key: None,
        ciphertext: ciphertext.into(),
        ephemeral_pubkey: "cd".repeat(32),
        file: None,
    }
}

#[tokio::test]
async fn a_message_id_seen_twice_is_stored_once() {
    let (_dir, history) = open().await;
    let first = history
        .insert_incoming(&envelope(7, 100, "hi"), None, at(1))
        .await
        .unwrap();
    let Inserted::New(id) = first else {
        panic!("{first:?}")
    };
    // The same relay message fetched again (not acknowledged in between).
    assert_eq!(
        history
            .insert_incoming(&envelope(7, 100, "hi"), None, at(2))
            .await
            .unwrap(),
        Inserted::Duplicate {
            existing: id,
            same_delivery: true
        }
    );
    // A replay under a new relay id, even with another text claimed.
    assert_eq!(
        history
            .insert_incoming(&envelope(7, 101, "changed"), None, at(3))
            .await
            .unwrap(),
        Inserted::Duplicate {
            existing: id,
            same_delivery: false
        }
    );
    assert_eq!(message_count(&history).await, 1);
    let stored = history.message(id).await.unwrap().unwrap();
    assert_eq!(stored.text.as_deref(), Some("hi"));
    assert_eq!(stored.state, MessageState::In(IncomingState::Ok));
    assert!(stored.verified);
    assert_eq!(stored.received_at, at(1));
    assert_eq!(stored.ciphertext, None, "an ok message keeps no ciphertext");
}

#[tokio::test]
async fn broken_messages_keep_their_ciphertext_and_dedupe_by_content() {
    let (_dir, history) = open().await;
    let Inserted::New(id) = history
        .insert_incoming(&broken(5, "AAAA"), None, at(1))
        .await
        .unwrap()
    else {
        panic!()
    };
    let stored = history.message(id).await.unwrap().unwrap();
    assert_eq!(stored.ciphertext.as_deref(), Some("AAAA"));
    assert_eq!(stored.ephemeral_pubkey, Some("cd".repeat(32)));
    assert_eq!(stored.error.as_deref(), Some("tampered"));
    assert_eq!(stored.text, None);
    assert!(matches!(
        history
            .insert_incoming(&broken(6, "AAAA"), None, at(2))
            .await
            .unwrap(),
        Inserted::Duplicate {
            same_delivery: false,
            ..
        }
    ));
    assert!(matches!(
        history
            .insert_incoming(&broken(7, "BBBB"), None, at(2))
            .await
            .unwrap(),
        Inserted::New(_)
    ));
}

#[tokio::test]
async fn contacts_round_trip_and_change_with_a_message() {
    let (_dir, history) = open().await;
    let mut bob = Contact {
        username: "Bob".into(),
        user_id: UserId(2),
        key: IdentityPublic::from_bytes([2; 32]),
        state: KeyState::Pinned,
        pending: None,
        first_seen: at(0),
        updated_at: at(0),
    };
    history.save_contact(&bob).await.unwrap();
    assert_eq!(history.contact("BOB").await.unwrap(), Some(bob.clone()));
    assert_eq!(
        history.contact_by_user_id(UserId(2)).await.unwrap(),
        Some(bob.clone())
    );
    assert!(history.changed_contacts().await.unwrap().is_empty());

    // A message that changes the contact stores both, together.
    bob.state = KeyState::Changed;
    bob.pending = Some(PendingKey {
        key: IdentityPublic::from_bytes([3; 32]),
        user_id: UserId(2),
    });
    bob.updated_at = at(5);
    history
        .insert_incoming(&envelope(1, 1, "x"), Some(&bob), at(5))
        .await
        .unwrap();
    assert_eq!(history.contact("bob").await.unwrap(), Some(bob.clone()));
    assert_eq!(history.changed_contacts().await.unwrap(), vec![bob.clone()]);
    assert_eq!(history.contacts().await.unwrap().len(), 1);
    // A duplicate does not apply its contact change.
    let mut other = bob.clone();
    other.pending = None;
    other.state = KeyState::Verified;
    history
        .insert_incoming(&envelope(1, 1, "x"), Some(&other), at(6))
        .await
        .unwrap();
    assert_eq!(history.contact("bob").await.unwrap(), Some(bob));
}

fn outgoing(uuid: u128, text: &str) -> NewOutgoing {
    NewOutgoing {
        msg_uuid: Uuid::from_u128(uuid),
        client_msg_id: Uuid::from_u128(uuid + 1000),
        peer: "Bob".into(),
        peer_user_id: UserId(2),
        sent_at: at(0),
        text: text.into(),
        ciphertext: "CT==".into(),
        ephemeral_pubkey: "ef".repeat(32),
        file: None,
    }
}

#[tokio::test]
async fn outbox_lifecycle() {
    let (_dir, history) = open().await;
    let a = history
        .queue_outgoing(&outgoing(1, "one"), at(1))
        .await
        .unwrap();
    let b = history
        .queue_outgoing(&outgoing(2, "two"), at(2))
        .await
        .unwrap();
    let c = history
        .queue_outgoing(&outgoing(3, "three"), at(3))
        .await
        .unwrap();
    let queued = history.outbox().await.unwrap();
    assert_eq!(
        queued.iter().map(|e| e.local_id).collect::<Vec<_>>(),
        vec![a, b, c]
    );
    assert_eq!(queued[0].client_msg_id, Uuid::from_u128(1001));
    assert_eq!(queued[0].recipient_id, UserId(2));
    assert_eq!(
        history.message(a).await.unwrap().unwrap().state,
        MessageState::Out(OutgoingState::Pending)
    );

    history.note_attempt(a, "connection refused").await.unwrap();
    history.note_attempt(a, "connection refused").await.unwrap();
    assert_eq!(history.outbox().await.unwrap()[0].attempts, 2);

    history.mark_stored(a, MessageId(50)).await.unwrap();
    history.mark_failed(b, "recipient gone").await.unwrap();
    history.mark_stored(c, MessageId(51)).await.unwrap();
    history.mark_delivered(c, Some(at(9))).await.unwrap();
    assert!(history.outbox().await.unwrap().is_empty());

    let a = history.message(a).await.unwrap().unwrap();
    assert_eq!(a.state, MessageState::Out(OutgoingState::Stored));
    assert_eq!(a.relay_id, Some(MessageId(50)));
    let b = history.message(b).await.unwrap().unwrap();
    assert_eq!(b.state, MessageState::Out(OutgoingState::Failed));
    assert_eq!(b.error.as_deref(), Some("recipient gone"));
    let c = history.message(c).await.unwrap().unwrap();
    assert_eq!(c.state, MessageState::Out(OutgoingState::Delivered));
    assert_eq!(c.delivered_at, Some(at(9)));
}

#[tokio::test]
async fn a_note_to_self_is_stored_in_both_directions() {
    let (_dir, history) = open().await;
    history
        .queue_outgoing(&outgoing(9, "memo"), at(1))
        .await
        .unwrap();
    let inserted = history
        .insert_incoming(&envelope(9, 3, "memo"), None, at(2))
        .await
        .unwrap();
    assert!(matches!(inserted, Inserted::New(_)));
    assert_eq!(message_count(&history).await, 2);
}

#[tokio::test]
async fn conversations_are_per_peer_oldest_first_and_limited() {
    let (_dir, history) = open().await;
    history
        .queue_outgoing(&outgoing(1, "to bob 1"), at(1))
        .await
        .unwrap();
    for i in 0..5 {
        history
            .insert_incoming(
                &envelope(100 + i, 10 + i as i64, &format!("from alice {i}")),
                None,
                at(2),
            )
            .await
            .unwrap();
    }
    // From Bob's account, with no name known (a legacy message, say).
    let mut anonymous = broken(30, "ZZZZ");
    anonymous.peer_user_id = Some(UserId(2));
    history
        .insert_incoming(&anonymous, None, at(3))
        .await
        .unwrap();
    history
        .queue_outgoing(&outgoing(2, "to bob 2"), at(4))
        .await
        .unwrap();

    let bob = history
        .conversation("bob", Some(UserId(2)), 10)
        .await
        .unwrap();
    assert_eq!(bob.len(), 3);
    assert_eq!(bob[0].text.as_deref(), Some("to bob 1"));
    assert_eq!(bob[1].ciphertext.as_deref(), Some("ZZZZ"));
    assert_eq!(bob[2].text.as_deref(), Some("to bob 2"));
    let bob_by_name_only = history.conversation("BOB", None, 10).await.unwrap();
    assert_eq!(bob_by_name_only.len(), 2);

    let alice = history
        .conversation("alice", Some(UserId(1)), 2)
        .await
        .unwrap();
    let texts: Vec<_> = alice.iter().filter_map(|m| m.text.as_deref()).collect();
    assert_eq!(
        texts,
        vec!["from alice 3", "from alice 4"],
        "the last two, oldest first"
    );
}

#[tokio::test]
async fn reopening_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.sqlite3");
    let history = History::open(&path).await.unwrap();
    history
        .insert_incoming(&envelope(1, 1, "persisted"), None, at(0))
        .await
        .unwrap();
    history.close().await;
    let again = History::open(&path).await.unwrap();
    assert_eq!(message_count(&again).await, 1);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}

/// The database and its -wal and -shm files are private from the start
/// (with a umask of 022 SQLite would create them 0644).
#[cfg(unix)]
#[tokio::test]
async fn files_are_private_from_the_start() {
    use std::os::unix::fs::PermissionsExt as _;
    let (dir, history) = open().await;
    history
        .insert_incoming(&envelope(1, 1, "hi"), None, at(1))
        .await
        .unwrap();
    let mode = |name: &str| {
        std::fs::metadata(dir.path().join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    for name in [
        "history.sqlite3",
        "history.sqlite3-wal",
        "history.sqlite3-shm",
    ] {
        assert_eq!(mode(name), 0o600, "{name}");
    }
    history.close().await;
    // An existing database made readable by others is made private again.
    let path = dir.path().join("history.sqlite3");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let again = History::open(&path).await.unwrap();
    assert_eq!(mode("history.sqlite3"), 0o600);
    again.close().await;
}
