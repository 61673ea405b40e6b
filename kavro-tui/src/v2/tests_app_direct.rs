//! The chat app worker's 1:1 side (`app::v2side::V2Side`) against a real relay in this process: a send to
//! an account with v2 devices goes over the 1:1 MLS conversation (the other
//! side decrypts it), one to an account without (or an unknown user) is left
//! to v1, and with a 1:1 here an unreachable relay fails the line instead of
//! falling back to v1; Ctrl-F's v2 safety number and `v` on it.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::app::action::{Action, NetEvent, V2Event};
use crate::app::state::Mark;
use crate::app::v2side::V2Side;
use crate::relay::MemoryRelay;
use crate::v2::V2Session;
use crate::v2::test_relay::{Counters, Db, TestServer};

/// `name`'s account and its first v2 device.
async fn device(s: &TestServer, name: &str) -> (V2Session, tempfile::TempDir) {
    let crate::v2::tests::Device { session, dir } = crate::v2::tests::root(s, name).await;
    (session, dir)
}

/// The app's v2 side around `v2`, and what it reports. Its v1 session is
/// never used by a 1:1 send (it only reopens the device after a `401`).
async fn side(
    v2: V2Session,
) -> (
    Arc<V2Side>,
    mpsc::UnboundedReceiver<Action>,
    tempfile::TempDir,
) {
    let crate::session::testing::Device { dir, session } =
        crate::session::testing::device(&Arc::new(MemoryRelay::new())).await;
    let (actions, reports) = mpsc::unbounded_channel();
    (V2Side::for_tests(session, v2, actions), reports, dir)
}

/// The answer to send `pending`, skipping the list it may publish first.
fn sent(
    reports: &mut mpsc::UnboundedReceiver<Action>,
) -> Option<(
    u64,
    String,
    Result<Vec<crate::app::state::MessageView>, String>,
)> {
    while let Ok(action) = reports.try_recv() {
        if let Action::Net(NetEvent::V2(V2Event::Sent {
            pending,
            label,
            outcome,
        })) = action
        {
            return Some((pending, label, outcome));
        }
    }
    None
}

#[tokio::test]
async fn a_person_with_v2_devices_gets_mls_and_one_without_gets_v1() {
    let Some(s) = TestServer::start(Db::Sqlite, Counters::Memory, |_| {}).await else {
        return;
    };
    let (alice, _alice_dir) = device(&s, "alice").await;
    let (mut bob, _bob_dir) = device(&s, "bob").await;
    s.register("carol").await; // a v1-only account: no v2 device
    let (side, mut reports, _v1) = side(alice).await;

    assert!(side.send_direct(1, "bob", "hello over MLS").await);
    let (pending, label, outcome) = sent(&mut reports).expect("a v2 answer");
    assert_eq!((pending, label.as_str()), (1, "bob"));
    let lines = outcome.unwrap();
    let last = lines.last().unwrap();
    assert_eq!(last.text.as_deref(), Some("hello over MLS"));
    assert_eq!(last.mark, Mark::Own);
    // Bob's device decrypts it in the 1:1 of both accounts.
    let report = bob.sync().await.unwrap();
    assert!(
        report.received.iter().any(|r| r.sender == "alice"),
        "{report:?}"
    );
    let chat = bob.find("alice").await.unwrap();
    let rows = bob.history(&chat, 10).await.unwrap();
    assert!(rows.iter().any(|r| r.body == "hello over MLS"), "{rows:?}");

    // No v2 device, or no such user: left to v1, nothing reported.
    assert!(!side.send_direct(2, "carol", "v1 for carol").await);
    assert!(!side.send_direct(3, "nobody", "?").await);
    assert!(sent(&mut reports).is_none());

    // The relay goes away: with a 1:1 here the line fails with the reason
    // (no quiet fallback to v1); without one, v1's outbox keeps it.
    s.stop().await;
    assert!(side.send_direct(4, "bob", "anyone?").await);
    let (_, _, outcome) = sent(&mut reports).expect("a v2 answer");
    assert_eq!(outcome.unwrap_err(), "relay unreachable");
    assert!(!side.send_direct(5, "carol", "queued over v1").await);
}

/// What the app's v2 side reported last that is a notice (done or failed).
fn last_notice(reports: &mut mpsc::UnboundedReceiver<Action>) -> Option<Result<String, String>> {
    let mut last = None;
    while let Ok(action) = reports.try_recv() {
        match action {
            Action::Net(NetEvent::V2(V2Event::Done(text))) => last = Some(Ok(text)),
            Action::Net(NetEvent::V2(V2Event::Failed(text))) => last = Some(Err(text)),
            _ => {}
        }
    }
    last
}

#[tokio::test]
async fn ctrl_f_shows_the_v2_safety_number_and_v_verifies_exactly_it() {
    let Some(s) = TestServer::start(Db::Sqlite, Counters::Memory, |_| {}).await else {
        return;
    };
    let (alice, _alice_dir) = device(&s, "alice").await;
    let (_bob, _bob_dir) = device(&s, "bob").await;
    s.register("carol").await; // v1 only: the view shows the v1 key alone
    let (side, mut reports, _v1) = side(alice).await;

    assert!(side.mls_keys("carol").await.is_none());
    let shown = side.mls_keys("bob").await.expect("bob is a v2 account");
    assert_eq!((shown.devices, shown.verified), (1, false));

    // A number other than the one over both roots is refused.
    let other = kavro_proto::crypto::SafetyNumber::parse(
        "12345 67890 13579 24680 11111 22222 33333 44444 55555 66666 77777 88888",
    )
    .unwrap();
    side.handle(crate::app::command::V2Command::TrustRoot {
        peer: "bob".into(),
        number: other,
    })
    .await;
    assert!(matches!(last_notice(&mut reports), Some(Err(text)) if text.contains("Not verified")),);
    assert!(!side.mls_keys("bob").await.unwrap().verified);

    side.handle(crate::app::command::V2Command::TrustRoot {
        peer: "bob".into(),
        number: shown.number,
    })
    .await;
    assert!(matches!(last_notice(&mut reports), Some(Ok(text)) if text.contains("verified")),);
    assert!(side.mls_keys("bob").await.unwrap().verified);
}
