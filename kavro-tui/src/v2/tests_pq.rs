//! Post-quantum groups (issue #12 point 7): `create_group_in(PQ_SUITE, …)`
//! makes a group whose HPKE runs on X-Wing; members, later additions and a
//! newly linked device all join with post-quantum key packages, and classic
//! groups of the same devices go on beside it.
#![allow(clippy::unwrap_used)]

use super::tests::{linked, relay, root, texts};
use super::{PQ_SUITE, SUITE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_quantum_group_works_like_a_classic_one() {
    let Some(s) = relay().await else { return };
    let mut alice = root(&s, "alice").await;
    let mut bob = root(&s, "bob").await;
    let mut carol = root(&s, "carol").await;

    let pq = alice
        .create_group_in(PQ_SUITE, Some("quantum"), &["bob".into()])
        .await
        .unwrap();
    let classic = alice
        .create_group_in(SUITE, Some("plain"), &["bob".into()])
        .await
        .unwrap();
    bob.sync().await.unwrap();
    assert_eq!(bob.find("#quantum").await.unwrap(), pq);
    assert!(alice.is_post_quantum(&pq).unwrap());
    assert!(
        bob.is_post_quantum(&pq).unwrap(),
        "bob joined the X-Wing group"
    );
    assert!(!bob.is_post_quantum(&classic).unwrap());

    alice.send(&pq, "post-quantum hello").await.unwrap();
    alice.send(&classic, "classic hello").await.unwrap();
    assert_eq!(
        texts(&bob.sync().await.unwrap()),
        vec!["alice: post-quantum hello", "alice: classic hello"]
    );

    // Added later: carol's post-quantum key package is claimed.
    alice.add_members(&pq, &["carol".into()]).await.unwrap();
    carol.sync().await.unwrap();
    assert!(carol.is_post_quantum(&pq).unwrap());
    bob.send(&pq, "welcome carol").await.unwrap();
    assert_eq!(
        texts(&carol.sync().await.unwrap()),
        vec!["bob: welcome carol"]
    );

    // A device linked to bob's account joins both kinds of group.
    let mut phone = linked(&s, &mut bob).await;
    phone.sync().await.unwrap();
    assert!(phone.is_post_quantum(&pq).unwrap());
    assert!(!phone.is_post_quantum(&classic).unwrap());
    carol.sync().await.unwrap();
    carol.send(&pq, "hi bob's phone").await.unwrap();
    assert_eq!(
        texts(&phone.sync().await.unwrap()),
        vec!["carol: hi bob's phone"]
    );
    alice.sync().await.unwrap();
    assert_eq!(
        texts(&alice.sync().await.unwrap()),
        Vec::<String>::new(),
        "nothing left over"
    );
}
