//! A send whose post fails for a transient reason after the message was
//! kept in the outbox is reported as queued (not failed), and the next sync
//! posts it exactly once.
#![allow(clippy::unwrap_used)]

use super::tests::{relay, root};
use super::{V2Error, V2Relay};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_the_relay_could_not_take_is_queued_and_goes_out_once() {
    let Some(s) = relay().await else { return };
    let mut alice = root(&s, "alice").await;
    let mut bob = root(&s, "bob").await;
    let team = alice
        .create_group(Some("team"), &["bob".into()])
        .await
        .unwrap();
    bob.sync().await.unwrap();

    // The relay is away when the message is posted.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    alice.session.relay = V2Relay::for_tests(&dead);
    let err = alice.send(&team, "kept for later").await.unwrap_err();
    assert!(matches!(err, V2Error::Queued(_)), "{err:?}");
    assert!(err.to_string().contains("do not send it again"), "{err}");
    assert_eq!(
        crate::cli::exit::for_v2(&err),
        crate::cli::exit::UNAVAILABLE
    );
    let lines = alice.history(&team, 10).await.unwrap();
    assert!(
        lines.iter().all(|l| l.body != "kept for later"),
        "not in the history before the relay took it"
    );

    // Back: the next sync posts it, once.
    alice.session.relay = V2Relay::for_tests(&s.base);
    alice.sync().await.unwrap();
    alice.sync().await.unwrap();
    let report = bob.sync().await.unwrap();
    let got: Vec<_> = report
        .received
        .iter()
        .filter(|r| r.text == "kept for later")
        .collect();
    assert_eq!(got.len(), 1, "{report:?}");
    let lines = alice.history(&team, 10).await.unwrap();
    assert_eq!(
        lines.iter().filter(|l| l.body == "kept for later").count(),
        1
    );
}
