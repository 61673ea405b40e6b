//! The v2 store "story": every [`V2Store`] operation, generic over the trait,
//! run on SQLite always and on PostgreSQL when `KAVRO_TEST_DATABASE_URL` is
//! set. Both backends must tell the same story, including under concurrency
//! (one winner per epoch, no key package handed out twice).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kavro_proto::UserId;
use kavro_proto::v2::api::QueueKind;
use kavro_proto::v2::suites::{CLASSIC, POST_QUANTUM};
use kavro_proto::v2::{GroupId, MlsDeviceId, QueueSeq};
use uuid::Uuid;

use super::{
    NewCommit, NewDevice, NewGroupMessage, NewKeyPackage, NewLinkRequest, QueueRead, V2Error,
    V2Store,
};
use crate::clock::after;
use crate::store::Store;
use crate::store::fixtures::{options, sqlite_options, user};

fn kp(tag: u8, not_after: DateTime<Utc>) -> NewKeyPackage {
    NewKeyPackage {
        bytes: vec![tag; 40],
        not_after,
    }
}

fn message<'a>(
    group: &'a GroupId,
    sender: MlsDeviceId,
    epoch: u64,
    body: &'a [u8],
    now: DateTime<Utc>,
) -> NewGroupMessage<'a> {
    NewGroupMessage {
        group,
        sender,
        kind: QueueKind::Application,
        epoch,
        body,
        client_msg_id: None,
        now,
        expires_at: after(now, Duration::from_secs(3600)),
        max_pending: 100,
        blob_ids: &[],
    }
}

fn commit<'a>(
    group: &'a GroupId,
    sender: MlsDeviceId,
    epoch: u64,
    body: &'a [u8],
    added: &'a [MlsDeviceId],
    removed: &'a [MlsDeviceId],
    now: DateTime<Utc>,
) -> NewCommit<'a> {
    NewCommit {
        group,
        sender,
        epoch,
        commit: body,
        added,
        removed,
        welcome: (!added.is_empty()).then_some(b"welcome".as_slice()),
        client_msg_id: None,
        now,
        expires_at: after(now, Duration::from_secs(3600)),
        max_members: 1000,
    }
}

async fn root(v2: &dyn V2Store, user: UserId, key: u8, now: DateTime<Utc>) -> MlsDeviceId {
    v2.add_device(NewDevice {
        user,
        signature_key: &[key; 32],
        link: None,
        now,
    })
    .await
    .unwrap()
}

/// Reads `device`'s queue as its owner does.
async fn read_queue(
    v2: &dyn V2Store,
    device: MlsDeviceId,
    after: QueueSeq,
    limit: u32,
    now: DateTime<Utc>,
) -> Result<QueueRead, V2Error> {
    let owner = v2.device(device).await.unwrap().unwrap().user_id;
    v2.queue(owner, device, after, limit, now).await
}

async fn bodies(
    v2: &dyn V2Store,
    device: MlsDeviceId,
    now: DateTime<Utc>,
) -> Vec<(QueueKind, Vec<u8>)> {
    read_queue(v2, device, QueueSeq(0), 500, now)
        .await
        .unwrap()
        .entries
        .into_iter()
        .map(|e| (e.kind, e.body))
        .collect()
}

pub async fn story(store: &dyn Store, v2: &dyn V2Store) {
    let t0 = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap();
    let at = |secs: i64| t0 + chrono::Duration::seconds(secs);
    let alice = user(store, "alice", t0).await;
    let bob = user(store, "bob", t0).await;

    // Devices: one root per account, links only by an active device of the
    // same account, a key belongs to one device.
    let a1 = root(v2, alice, 1, t0).await;
    assert!(matches!(
        v2.add_device(NewDevice {
            user: alice,
            signature_key: &[9; 32],
            link: None,
            now: t0
        })
        .await,
        Err(V2Error::RootExists)
    ));
    let a2 = v2
        .add_device(NewDevice {
            user: alice,
            signature_key: &[2; 32],
            link: Some((a1, &[7; 64])),
            now: at(1),
        })
        .await
        .unwrap();
    assert!(matches!(
        v2.add_device(NewDevice {
            user: bob,
            signature_key: &[1; 32],
            link: None,
            now: t0
        })
        .await,
        Err(V2Error::KeyTaken)
    ));
    let b1 = root(v2, bob, 11, t0).await;
    assert!(matches!(
        v2.add_device(NewDevice {
            user: alice,
            signature_key: &[3; 32],
            link: Some((b1, &[7; 64])),
            now: t0
        })
        .await,
        Err(V2Error::SignerInvalid)
    ));
    assert!(matches!(
        v2.add_device(NewDevice {
            user: alice,
            signature_key: &[3; 32],
            link: Some((MlsDeviceId(i64::MAX), &[7; 64])),
            now: t0
        })
        .await,
        Err(V2Error::SignerInvalid)
    ));
    let listed = v2.devices_of(alice).await.unwrap();
    assert_eq!(
        listed.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![a1, a2]
    );
    assert_eq!(listed[0].link, None);
    assert_eq!(listed[1].link, Some((a1, vec![7; 64])));
    assert_eq!(listed[1].signature_key, vec![2; 32]);
    assert_eq!(listed[1].created_at, at(1));
    assert!(v2.device(MlsDeviceId(i64::MAX)).await.unwrap().is_none());

    // Link requests: bounded per account, found by code within the account
    // only, locked after failures, approved once.
    let request = Uuid::new_v4();
    v2.create_link_request(NewLinkRequest {
        id: request,
        user: alice,
        code_hash: &[5; 32],
        signature_key: &[4; 32],
        now: t0,
        expires_at: at(600),
        max_open: 2,
    })
    .await
    .unwrap();
    let found = v2
        .link_request_by_code(alice, &[5; 32], at(1), 3)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (found.id, found.signature_key.clone(), found.device_id),
        (request, vec![4; 32], None)
    );
    assert!(
        v2.link_request_by_code(bob, &[5; 32], at(1), 3)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        v2.link_request_by_code(alice, &[5; 32], at(600), 3)
            .await
            .unwrap()
            .is_none(),
        "expired"
    );
    v2.link_failed(request).await.unwrap();
    assert_eq!(v2.link_request(request).await.unwrap().unwrap().failures, 1);
    assert!(
        v2.link_request_by_code(alice, &[5; 32], at(1), 1)
            .await
            .unwrap()
            .is_none(),
        "locked"
    );
    let a3 = v2
        .approve_link(request, a2, &[8; 64], at(2), 3)
        .await
        .unwrap();
    assert_eq!(
        v2.link_request(request).await.unwrap().unwrap().device_id,
        Some(a3)
    );
    assert!(matches!(
        v2.approve_link(request, a2, &[8; 64], at(2), 3).await,
        Err(V2Error::LinkGone)
    ));
    for i in 0..2u8 {
        v2.create_link_request(NewLinkRequest {
            id: Uuid::new_v4(),
            user: alice,
            code_hash: &[20 + i; 32],
            signature_key: &[30 + i; 32],
            now: t0,
            expires_at: at(600),
            max_open: 2,
        })
        .await
        .unwrap();
    }
    assert!(matches!(
        v2.create_link_request(NewLinkRequest {
            id: Uuid::new_v4(),
            user: alice,
            code_hash: &[29; 32],
            signature_key: &[39; 32],
            now: t0,
            expires_at: at(600),
            max_open: 2,
        })
        .await,
        Err(V2Error::TooManyOpenLinks)
    ));

    // Key packages: bounded, claimed one per active device and consumed; the
    // last-resort one only when nothing else is left, and kept.
    let far = at(86_400);
    let tally = v2
        .add_key_packages(
            a1,
            CLASSIC,
            &[kp(1, far), kp(2, far), kp(3, at(10))],
            Some(&kp(0, far)),
            4,
            t0,
        )
        .await
        .unwrap();
    assert_eq!((tally.remaining, tally.last_resort), (3, true));
    assert!(matches!(
        v2.add_key_packages(a1, CLASSIC, &[kp(4, far), kp(5, far)], None, 4, t0)
            .await,
        Err(V2Error::TooManyKeyPackages { have: 3, max: 4 })
    ));
    assert_eq!(
        v2.key_package_tally(a1, CLASSIC, t0)
            .await
            .unwrap()
            .remaining,
        3,
        "nothing half-stored"
    );
    // One device's package only (adding one new device): the others keep theirs.
    v2.add_key_packages(a2, CLASSIC, &[kp(22, far)], None, 4, t0)
        .await
        .unwrap();
    let only = v2
        .claim_key_packages(alice, CLASSIC, Some(a2), at(20))
        .await
        .unwrap();
    assert_eq!(
        (only.packages, only.missing),
        (vec![(a2, vec![22; 40], false)], vec![])
    );
    let none = v2
        .claim_key_packages(alice, CLASSIC, Some(MlsDeviceId(i64::MAX)), at(20))
        .await
        .unwrap();
    assert!(
        none.packages.is_empty() && none.missing.is_empty(),
        "not alice's device"
    );
    v2.add_key_packages(a2, CLASSIC, &[kp(21, far)], None, 4, t0)
        .await
        .unwrap();
    let claimed = v2
        .claim_key_packages(alice, CLASSIC, None, at(20))
        .await
        .unwrap();
    assert_eq!(
        claimed.packages,
        vec![(a1, vec![1; 40], false), (a2, vec![21; 40], false)]
    );
    assert_eq!(claimed.missing, vec![a3]);
    // kp 3 expired at 10 s: skipped; then a1 is down to its last resort.
    let claimed = v2
        .claim_key_packages(alice, CLASSIC, None, at(20))
        .await
        .unwrap();
    assert_eq!(claimed.packages, vec![(a1, vec![2; 40], false)]);
    assert_eq!(claimed.missing, vec![a2, a3]);
    for _ in 0..2 {
        let claimed = v2
            .claim_key_packages(alice, CLASSIC, None, at(20))
            .await
            .unwrap();
        assert_eq!(claimed.packages, vec![(a1, vec![0; 40], true)]);
    }
    let tally = v2.key_package_tally(a1, CLASSIC, at(20)).await.unwrap();
    assert_eq!((tally.remaining, tally.last_resort), (0, true));
    // Post-quantum packages are a separate stock: counted, bounded, claimed
    // and kept as last resort per ciphersuite.
    let tally = v2
        .add_key_packages(a1, POST_QUANTUM, &[kp(31, far)], Some(&kp(30, far)), 4, t0)
        .await
        .unwrap();
    assert_eq!((tally.remaining, tally.last_resort), (1, true));
    let tally = v2.key_package_tally(a1, CLASSIC, at(20)).await.unwrap();
    assert_eq!(
        (tally.remaining, tally.last_resort),
        (0, true),
        "classic untouched"
    );
    let claimed = v2
        .claim_key_packages(alice, POST_QUANTUM, None, at(20))
        .await
        .unwrap();
    assert_eq!(claimed.packages, vec![(a1, vec![31; 40], false)]);
    assert_eq!(claimed.missing, vec![a2, a3]);
    let claimed = v2
        .claim_key_packages(alice, POST_QUANTUM, None, at(20))
        .await
        .unwrap();
    assert_eq!(claimed.packages, vec![(a1, vec![30; 40], true)]);
    let claimed = v2
        .claim_key_packages(alice, CLASSIC, None, at(20))
        .await
        .unwrap();
    assert_eq!(
        claimed.packages,
        vec![(a1, vec![0; 40], true)],
        "classic last resort kept"
    );
    assert!(
        v2.claim_key_packages(UserId(i64::MAX), CLASSIC, None, t0)
            .await
            .unwrap()
            .packages
            .is_empty()
    );

    // Groups: create, membership, one order per group.
    let group = GroupId::from_bytes(b"group-1").unwrap();
    v2.create_group(&group, a1, t0).await.unwrap();
    assert!(matches!(
        v2.create_group(&group, b1, t0).await,
        Err(V2Error::GroupExists)
    ));
    let other = GroupId::from_bytes(b"nowhere").unwrap();
    assert!(matches!(
        v2.post_message(message(&other, a1, 0, b"x", t0)).await,
        Err(V2Error::UnknownGroup)
    ));
    assert!(matches!(
        v2.post_message(message(&group, b1, 0, b"x", t0)).await,
        Err(V2Error::NotMember)
    ));
    assert!(matches!(
        v2.post_commit(commit(&group, b1, 0, b"c", &[], &[], t0))
            .await,
        Err(V2Error::NotMember)
    ));
    // Bad membership changes are refused whole.
    assert!(matches!(
        v2.post_commit(commit(
            &group,
            a1,
            0,
            b"c",
            &[MlsDeviceId(i64::MAX)],
            &[],
            t0
        ))
        .await,
        Err(V2Error::CannotAdd(_))
    ));
    assert!(matches!(
        v2.post_commit(commit(&group, a1, 0, b"c", &[a1], &[], t0)).await,
        Err(V2Error::CannotAdd(d)) if d == a1
    ));
    assert!(matches!(
        v2.post_commit(commit(&group, a1, 0, b"c", &[], &[b1], t0)).await,
        Err(V2Error::CannotRemove(d)) if d == b1
    ));
    assert_eq!(
        v2.group(&group).await.unwrap().unwrap().epoch,
        0,
        "nothing half-stored"
    );

    // Epoch 0 -> 1: a1 adds a2 and b1; they get the welcome.
    let posted = v2
        .post_commit(commit(&group, a1, 0, b"c0", &[b1, a2], &[], at(1)))
        .await
        .unwrap();
    assert_eq!(
        (posted.epoch, posted.recipients, posted.created),
        (1, 2, true)
    );
    assert_eq!(posted.woken, vec![a2, b1]);
    assert!(matches!(
        v2.post_commit(commit(&group, a2, 0, b"late", &[], &[], at(1)))
            .await,
        Err(V2Error::WrongEpoch { current: 1 })
    ));
    assert!(matches!(
        v2.post_message(message(&group, a2, 0, b"old", at(1))).await,
        Err(V2Error::WrongEpoch { current: 1 })
    ));
    let state = v2.group(&group).await.unwrap().unwrap();
    assert_eq!((state.epoch, state.members.clone()), (1, vec![a1, a2, b1]));
    assert_eq!(
        bodies(v2, b1, at(1)).await,
        vec![(QueueKind::Welcome, b"welcome".to_vec())]
    );
    assert!(
        bodies(v2, a1, at(1)).await.is_empty(),
        "the committer gets nothing back"
    );

    // Application messages go to every other member, once (idempotent).
    let id = Uuid::new_v4();
    let mut hello = message(&group, a1, 1, b"hello", at(2));
    hello.client_msg_id = Some(id);
    let first = v2.post_message(hello.clone()).await.unwrap();
    let again = v2.post_message(hello).await.unwrap();
    assert_eq!(
        (again.id, again.created, again.recipients),
        (first.id, false, 2)
    );
    let read = read_queue(v2, b1, QueueSeq(0), 10, at(2)).await.unwrap();
    assert_eq!(
        read.entries.iter().map(|e| e.seq.0).collect::<Vec<_>>(),
        vec![1, 2]
    );
    let hello = &read.entries[1];
    assert_eq!(hello.id, first.id, "the entry names the stored message");
    assert_eq!(
        (hello.kind, hello.epoch, hello.sender, hello.group.clone()),
        (QueueKind::Application, 1, a1, group.clone())
    );
    assert_eq!(hello.created_at, at(2));
    let page = read_queue(v2, b1, QueueSeq(1), 10, at(2)).await.unwrap();
    assert_eq!(page.entries.len(), 1);
    assert_eq!(
        read_queue(v2, b1, QueueSeq(0), 1, at(2))
            .await
            .unwrap()
            .entries
            .len(),
        1,
        "limit"
    );
    // Nothing past the device's last seq: no entries, the acked position.
    let idle = read_queue(v2, b1, QueueSeq(2), 10, at(2)).await.unwrap();
    assert_eq!((idle.entries.len(), idle.acked), (0, QueueSeq(0)));
    // Only the device's owner reads it, and only a known device.
    for (owner, device) in [(alice, b1), (bob, MlsDeviceId(i64::MAX))] {
        assert!(
            matches!(
                v2.queue(owner, device, QueueSeq(0), 10, at(2)).await,
                Err(V2Error::DeviceInactive)
            ),
            "{owner:?} {device:?}"
        );
    }

    // Cumulative ack: up to 1 leaves 2; acking past the end stops at the end.
    assert_eq!(v2.ack_queue(b1, QueueSeq(1)).await.unwrap(), QueueSeq(1));
    assert_eq!(
        bodies(v2, b1, at(2)).await,
        vec![(QueueKind::Application, b"hello".to_vec())]
    );
    assert_eq!(v2.ack_queue(b1, QueueSeq(99)).await.unwrap(), QueueSeq(2));
    assert_eq!(
        read_queue(v2, b1, QueueSeq(0), 10, at(2))
            .await
            .unwrap()
            .acked,
        QueueSeq(2)
    );
    assert_eq!(
        v2.ack_queue(b1, QueueSeq(1)).await.unwrap(),
        QueueSeq(2),
        "never moves back"
    );

    // Quota: an application message is refused when a recipient is full; a
    // commit never is (a full device must stay removable).
    assert_eq!(v2.ack_queue(a2, QueueSeq(2)).await.unwrap(), QueueSeq(2));
    let mut full = message(&group, a1, 1, b"full", at(3));
    full.max_pending = 1;
    v2.post_message(full.clone()).await.unwrap();
    assert!(matches!(
        v2.post_message(full).await,
        Err(V2Error::QuotaExceeded)
    ));

    // Epoch 1 -> 2: a1 removes b1: b1 gets the commit, then nothing more.
    let posted = v2
        .post_commit(commit(&group, a1, 1, b"c1", &[], &[b1], at(4)))
        .await
        .unwrap();
    assert_eq!((posted.epoch, posted.recipients), (2, 2));
    v2.post_message(message(&group, a1, 2, b"after", at(5)))
        .await
        .unwrap();
    assert_eq!(
        bodies(v2, b1, at(5)).await,
        vec![
            (QueueKind::Application, b"full".to_vec()),
            (QueueKind::Commit, b"c1".to_vec())
        ]
    );
    assert!(matches!(
        v2.post_message(message(&group, b1, 2, b"x", at(5))).await,
        Err(V2Error::NotMember)
    ));
    assert_eq!(
        bodies(v2, a2, at(5))
            .await
            .into_iter()
            .map(|(_, b)| b)
            .collect::<Vec<_>>(),
        vec![b"full".to_vec(), b"c1".to_vec(), b"after".to_vec()]
    );

    // Revoking a2: refused everywhere from now on, its queue is gone.
    assert!(
        !read_queue(v2, a2, QueueSeq(0), 10, at(6))
            .await
            .unwrap()
            .entries
            .is_empty(),
        "positive control: a2 has entries before its revocation"
    );
    assert!(v2.revoke_device(a2, at(6)).await.unwrap());
    assert!(!v2.revoke_device(a2, at(6)).await.unwrap());
    assert!(
        matches!(
            read_queue(v2, a2, QueueSeq(0), 10, at(6)).await,
            Err(V2Error::DeviceInactive)
        ),
        "a revoked device's queue read is refused"
    );
    assert_eq!(
        v2.device(a2).await.unwrap().unwrap().revoked_at,
        Some(at(6))
    );
    assert!(matches!(
        v2.add_device(NewDevice {
            user: alice,
            signature_key: &[6; 32],
            link: Some((a2, &[7; 64])),
            now: at(6)
        })
        .await,
        Err(V2Error::SignerInvalid)
    ));
    let posted = v2
        .post_message(message(&group, a1, 2, b"no a2", at(7)))
        .await
        .unwrap();
    assert_eq!(posted.recipients, 0, "a revoked member is skipped");
    assert_eq!(
        v2.key_package_tally(a2, CLASSIC, at(7))
            .await
            .unwrap()
            .remaining,
        0
    );

    // Retention: expired messages go, with their entries; the device's acked
    // position moves past them, so its pending count (the quota) drops.
    let swept = v2.sweep_v2(at(7200)).await.unwrap();
    assert!(swept.expired_messages >= 3, "{swept:?}");
    assert_eq!(swept.expired_link_requests, 3);
    assert!(swept.expired_key_packages >= 1);
    let read = read_queue(v2, b1, QueueSeq(0), 10, at(7200)).await.unwrap();
    assert!(read.entries.is_empty());
    assert_eq!(read.acked, QueueSeq(4));
}

/// Many committers at one epoch: exactly one wins, every loser is told the
/// new epoch, and each member's queue holds the winner's commit once.
pub async fn concurrent_commits(v2: Arc<dyn V2Store>, store: &dyn Store) {
    let now = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap();
    let owner = user(store, "racer", now).await;
    let first = root(v2.as_ref(), owner, 100, now).await;
    let mut devices = vec![first];
    for key in 101..110u8 {
        devices.push(
            v2.add_device(NewDevice {
                user: owner,
                signature_key: &[key; 32],
                link: Some((first, &[1; 64])),
                now,
            })
            .await
            .unwrap(),
        );
    }
    let group = GroupId::from_bytes(b"race").unwrap();
    v2.create_group(&group, first, now).await.unwrap();
    v2.post_commit(commit(&group, first, 0, b"add", &devices[1..], &[], now))
        .await
        .unwrap();
    for epoch in 1..=5u64 {
        let mut tasks = Vec::new();
        for (i, device) in devices.iter().enumerate() {
            let v2 = v2.clone();
            let group = group.clone();
            let device = *device;
            tasks.push(tokio::spawn(async move {
                let body = format!("{epoch}:{i}").into_bytes();
                v2.post_commit(commit(&group, device, epoch, &body, &[], &[], now))
                    .await
            }));
        }
        let mut winners = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(posted) => {
                    winners += 1;
                    assert_eq!(posted.epoch, epoch + 1);
                }
                Err(V2Error::WrongEpoch { current }) => assert_eq!(current, epoch + 1),
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(winners, 1, "epoch {epoch}");
    }
    // Every member saw the same handshake order (minus its own commits).
    let mut orders = Vec::new();
    for device in &devices {
        let read = read_queue(v2.as_ref(), *device, QueueSeq(0), 500, now)
            .await
            .unwrap();
        let seqs: Vec<i64> = read.entries.iter().map(|e| e.seq.0).collect();
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "gap-free: {seqs:?}"
        );
        orders.push(
            read.entries
                .into_iter()
                .filter(|e| e.kind == QueueKind::Commit)
                .map(|e| (e.epoch, e.body))
                .collect::<Vec<_>>(),
        );
    }
    let epochs: BTreeSet<u64> = orders.iter().flatten().map(|(e, _)| *e).collect();
    assert_eq!(epochs, (1..=5).collect());
    for epoch in 1..=5 {
        let bodies: BTreeSet<&Vec<u8>> = orders
            .iter()
            .flatten()
            .filter(|(e, _)| *e == epoch)
            .map(|(_, b)| b)
            .collect();
        assert_eq!(bodies.len(), 1, "one commit per epoch");
    }
}

/// Concurrent claimers never get the same package.
pub async fn concurrent_claims(v2: Arc<dyn V2Store>, store: &dyn Store) {
    let now = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap();
    let owner = user(store, "popular", now).await;
    let device = root(v2.as_ref(), owner, 200, now).await;
    let far = after(now, Duration::from_secs(86_400));
    let packages: Vec<NewKeyPackage> = (0..40u8).map(|i| kp(i, far)).collect();
    v2.add_key_packages(device, CLASSIC, &packages, Some(&kp(255, far)), 100, now)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..60 {
        let v2 = v2.clone();
        tasks.push(tokio::spawn(async move {
            v2.claim_key_packages(owner, CLASSIC, None, now).await
        }));
    }
    let mut seen = BTreeSet::new();
    let mut last_resort = 0;
    for task in tasks {
        let claimed = task.await.unwrap().unwrap();
        assert_eq!(claimed.packages.len(), 1);
        let (_, bytes, is_last) = &claimed.packages[0];
        if *is_last {
            last_resort += 1;
        } else {
            assert!(seen.insert(bytes.clone()), "handed out twice");
        }
    }
    assert_eq!((seen.len(), last_resort), (40, 20));
}

#[tokio::test]
async fn v2_story_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let (store, v2) = crate::store::connect_all(&sqlite_options(dir.path(), "kavro.db"))
        .await
        .unwrap();
    story(store.as_ref(), v2.as_ref()).await;
    concurrent_commits(v2.clone(), store.as_ref()).await;
    concurrent_claims(v2, store.as_ref()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn v2_story_on_postgres() {
    let Some(db) = crate::testing::TestDatabase::create().await else {
        return;
    };
    let (store, v2) = crate::store::connect_all(&options(db.url.clone(), 16))
        .await
        .unwrap();
    story(store.as_ref(), v2.as_ref()).await;
    concurrent_commits(v2.clone(), store.as_ref()).await;
    concurrent_claims(v2, store.as_ref()).await;
}

/// PostgreSQL deletes a message body once its last recipient acknowledged
/// it, without counting recipients down on the message's row (every
/// recipient locked it: `postgres::v2::ack_in`); a body two last
/// recipients left behind at the same moment goes at the next sweep, and a
/// message posted to nobody stays until its TTL (it answers a repeated
/// post).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_bodies_go_on_postgres() {
    let Some(db) = crate::testing::TestDatabase::create().await else {
        return;
    };
    let (store, v2) = crate::store::connect_all(&options(db.url.clone(), 4))
        .await
        .unwrap();
    let sql = sqlx::PgPool::connect(&db.url).await.unwrap();
    let bodies = || async {
        sqlx::query_scalar::<_, Vec<u8>>("SELECT body FROM v2_messages ORDER BY id")
            .fetch_all(&sql)
            .await
            .unwrap()
            .into_iter()
            .map(|b| String::from_utf8(b).unwrap())
            .collect::<Vec<_>>()
    };
    let t0 = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap();
    let (a, b, c) = (
        root(v2.as_ref(), user(store.as_ref(), "alice", t0).await, 1, t0).await,
        root(v2.as_ref(), user(store.as_ref(), "bob", t0).await, 2, t0).await,
        root(v2.as_ref(), user(store.as_ref(), "carol", t0).await, 3, t0).await,
    );
    let alone = GroupId::from_bytes(b"alone").unwrap();
    v2.create_group(&alone, a, t0).await.unwrap();
    v2.post_message(message(&alone, a, 0, b"to nobody", t0))
        .await
        .unwrap();
    let group = GroupId::from_bytes(b"three").unwrap();
    v2.create_group(&group, a, t0).await.unwrap();
    // The commit goes to no one (bob and carol join by their welcome).
    v2.post_commit(commit(&group, a, 0, b"add", &[b, c], &[], t0))
        .await
        .unwrap();
    v2.post_message(message(&group, a, 1, b"hello", t0))
        .await
        .unwrap();
    assert_eq!(v2.ack_queue(b, QueueSeq(2)).await.unwrap(), QueueSeq(2));
    assert_eq!(
        bodies().await,
        ["to nobody", "add", "welcome", "hello"],
        "carol has not acknowledged it yet"
    );
    assert_eq!(v2.ack_queue(c, QueueSeq(2)).await.unwrap(), QueueSeq(2));
    assert_eq!(
        bodies().await,
        ["to nobody", "add"],
        "gone after the last ack"
    );

    // As if the last two acks had each still seen the other's entry.
    v2.post_message(message(&group, a, 1, b"raced", t0))
        .await
        .unwrap();
    sqlx::query("DELETE FROM v2_queue")
        .execute(&sql)
        .await
        .unwrap();
    v2.sweep_v2(t0).await.unwrap();
    assert_eq!(
        bodies().await,
        ["to nobody", "add"],
        "the sweep took the body left behind, and only that one"
    );
    sql.close().await;
}
