//! The pending-quota story: the per-recipient and per-(recipient, sender)
//! counters that replace counting the queue on every send, through every
//! operation that changes what is pending (send, idempotent retry, ack, batch
//! ack, expiry, account deletion), on SQLite always and on PostgreSQL when
//! `KAVRO_TEST_DATABASE_URL` is set. After each step the counters must equal
//! what a count over the rows gives.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use chrono::{DateTime, Utc};
use kavro_proto::UserId;
use kavro_proto::api::InboxOrder;
use uuid::Uuid;

use super::fixtures::{self, options, sqlite_options, user};
use super::{NewMessage, PendingCounts, Quota, Store, StoreError, StoreOptions, SweepCutoffs};

/// A message with a quota of 5 pending per recipient and 3 per sender.
fn message(from: UserId, to: UserId, now: DateTime<Utc>) -> NewMessage {
    NewMessage {
        max_pending: 5,
        max_pending_per_sender: 3,
        ..fixtures::message(from, to, "c", now)
    }
}

/// Asserts the counters of `to` (and of `from` towards them), and that the
/// recipient's total equals the messages its inbox lists at `now`.
async fn assert_counts(
    store: &dyn Store,
    to: UserId,
    from: UserId,
    expected: (u64, u64),
    now: DateTime<Utc>,
) {
    let counts = store.pending_counts(to, from).await.unwrap();
    assert_eq!(
        counts,
        PendingCounts {
            recipient: expected.0,
            from_sender: expected.1
        }
    );
    let listed = store.inbox(to, 200, InboxOrder::Asc, now).await.unwrap();
    assert_eq!(
        listed.len() as u64,
        counts.recipient,
        "counter equals the rows"
    );
}

async fn send(store: &dyn Store, m: NewMessage) -> Result<kavro_proto::MessageId, StoreError> {
    store.store_message(m).await.map(|stored| stored.id)
}

pub async fn story(store: &dyn Store) {
    let t0 = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap();
    let at = |secs: i64| t0 + chrono::Duration::seconds(secs);
    let bob = user(store, "q_bob", t0).await;
    let ann = user(store, "q_ann", t0).await;
    let cat = user(store, "q_cat", t0).await;
    assert_counts(store, bob, ann, (0, 0), at(1)).await;

    // One sender: 3 of the 5 places, then the pair quota refuses it.
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(send(store, message(ann, bob, at(1))).await.unwrap());
    }
    assert!(matches!(
        send(store, message(ann, bob, at(1))).await,
        Err(StoreError::QuotaExceeded(Quota::Sender))
    ));
    assert_counts(store, bob, ann, (3, 3), at(1)).await;
    // Another sender takes the remaining 2; then the recipient's quota refuses
    // everyone, exactly at 5.
    for _ in 0..2 {
        send(store, message(cat, bob, at(2))).await.unwrap();
    }
    assert!(matches!(
        send(store, message(cat, bob, at(2))).await,
        Err(StoreError::QuotaExceeded(Quota::Recipient))
    ));
    assert_counts(store, bob, cat, (5, 2), at(2)).await;
    // Refusals changed nothing; an idempotent retry neither.
    let mut idem = message(ann, cat, at(3));
    idem.client_msg_id = Some(Uuid::new_v4());
    let first = store.store_message(idem.clone()).await.unwrap();
    let again = store.store_message(idem.clone()).await.unwrap();
    assert!(first.created && !again.created && first.id == again.id);
    assert_counts(store, cat, ann, (1, 1), at(3)).await;

    // An ack frees one place of the recipient and one of that sender.
    store.ack(bob, ids[0], at(4)).await.unwrap();
    assert_counts(store, bob, ann, (4, 2), at(4)).await;
    // Acking it again frees nothing; so does someone else's ack.
    store.ack(bob, ids[0], at(4)).await.unwrap();
    store.ack(cat, ids[1], at(4)).await.unwrap();
    assert_counts(store, bob, ann, (4, 2), at(4)).await;
    send(store, message(ann, bob, at(5))).await.unwrap();
    assert_counts(store, bob, ann, (5, 3), at(5)).await;

    // A batch ack with others' and acked ids frees exactly its own new ones.
    let count = store
        .ack_many(bob, &[ids[0], ids[1], ids[2], first.id], at(6))
        .await
        .unwrap();
    assert_eq!((count.newly, count.total), (2, 3));
    assert_counts(store, bob, ann, (3, 1), at(6)).await;
    assert_counts(store, bob, cat, (3, 2), at(6)).await;

    // Expiry frees the places at the sweep (not before: an expired message
    // still holds its place until swept, as the count over rows did).
    let mut short = message(ann, bob, at(7));
    short.expires_at = at(100);
    let expired = send(store, short).await.unwrap();
    assert_eq!(
        store.pending_counts(bob, ann).await.unwrap(),
        PendingCounts {
            recipient: 4,
            from_sender: 2
        }
    );
    let cutoffs = SweepCutoffs {
        now: at(101),
        receipts_before: t0,
        names_before: DateTime::<Utc>::UNIX_EPOCH,
    };
    assert_eq!(store.sweep(cutoffs).await.unwrap().expired, 1);
    assert_counts(store, bob, ann, (3, 1), at(101)).await;
    assert_eq!(
        store.sweep(cutoffs).await.unwrap().expired,
        0,
        "nothing twice"
    );
    assert_counts(store, bob, ann, (3, 1), at(101)).await;
    // Acking a message that expired frees nothing more.
    store.ack(bob, expired, at(102)).await.unwrap();
    assert_counts(store, bob, ann, (3, 1), at(102)).await;

    // Deleting the recipient drops their counters with their messages: a
    // send to them is a 404, not a quota refusal.
    store.delete_account(bob, at(103)).await.unwrap();
    assert_eq!(
        store.pending_counts(bob, ann).await.unwrap(),
        PendingCounts::default()
    );
    assert!(matches!(
        send(store, message(ann, bob, at(104))).await,
        Err(StoreError::NotFound)
    ));
    // Deleting a sender keeps what it queued for others, and its counts.
    send(store, message(cat, ann, at(105))).await.unwrap();
    store.delete_account(cat, at(106)).await.unwrap();
    assert_counts(store, ann, cat, (1, 1), at(106)).await;
    assert_counts(store, cat, ann, (0, 0), at(106)).await;
}

/// Sends queued at once share a batch (on PostgreSQL without a savepoint
/// per send): a refusal by the pair quota and retried `client_msg_id`s in
/// the middle of it give back the places they took, and the others stand.
pub async fn refusals_in_one_batch(store: &dyn Store) {
    let now = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap();
    let to = user(store, "rb_to", now).await;
    let (ann, cat) = (
        user(store, "rb_ann", now).await,
        user(store, "rb_cat", now).await,
    );
    let mut retried = message(ann, to, now);
    retried.client_msg_id = Some(Uuid::new_v4());
    // In queue order: stored; a retry while the pair has room; two more
    // stored (the pair is full at 3); refused by the pair quota; a retry
    // once the pair is full; another sender.
    let sends = [
        retried.clone(),
        retried.clone(),
        message(ann, to, now),
        message(ann, to, now),
        message(ann, to, now),
        retried.clone(),
        message(cat, to, now),
    ];
    // join_all queues every send before the lane first runs: one batch.
    let results =
        futures_util::future::join_all(sends.into_iter().map(|m| store.store_message(m))).await;
    let first = results[0].as_ref().unwrap();
    assert!(first.created);
    for retry in [&results[1], &results[5]] {
        let retry = retry.as_ref().unwrap();
        assert_eq!((retry.id, retry.created), (first.id, false));
    }
    assert!(results[2].as_ref().unwrap().created && results[3].as_ref().unwrap().created);
    assert!(
        matches!(results[4], Err(StoreError::QuotaExceeded(Quota::Sender))),
        "{:?}",
        results[4]
    );
    assert!(results[6].as_ref().unwrap().created);
    assert_counts(store, to, ann, (4, 3), now).await;
    assert_counts(store, to, cat, (4, 1), now).await;
    // Once everything is acknowledged (the pair row gone), a retry of the
    // first copy takes a place in a new pair row and gives it back.
    let ids: Vec<_> = results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .filter(|s| s.created)
        .map(|s| s.id)
        .collect();
    store.ack_many(to, &ids, now).await.unwrap();
    assert_counts(store, to, ann, (0, 0), now).await;
    let again = store.store_message(retried).await.unwrap();
    assert_eq!((again.id, again.created), (first.id, false));
    assert_counts(store, to, ann, (0, 0), now).await;
    send(store, message(ann, to, now)).await.unwrap();
    assert_counts(store, to, ann, (1, 1), now).await;
}

/// The exact cut-off under concurrency: one recipient whose quota is `max`
/// gets `max - 50` messages one after the other, then 16 tasks spread over
/// `stores` (separate connection pools, like separate relay instances) make
/// the remaining `attempts` sends at once, from 8 senders; exactly `max` are
/// stored, the rest refused, and the counter says `max`.
pub async fn concurrent_cutoff(stores: &[Arc<dyn Store>], max: u32, attempts: u32) {
    let now = Utc::now();
    let to = user(stores[0].as_ref(), "cc_to", now).await;
    let mut senders = Vec::new();
    for i in 0..8 {
        senders.push(user(stores[0].as_ref(), &format!("cc_from{i}"), now).await);
    }
    let prefill = max.saturating_sub(50);
    for n in 0..prefill {
        let mut m = message(senders[n as usize % senders.len()], to, now);
        m.max_pending = max;
        m.max_pending_per_sender = max;
        stores[0].store_message(m).await.unwrap();
    }
    let next = Arc::new(AtomicU32::new(prefill));
    let tasks: Vec<_> = (0..16)
        .map(|task| {
            let store = stores[task % stores.len()].clone();
            let (next, senders) = (next.clone(), senders.clone());
            tokio::spawn(async move {
                let (mut accepted, mut turned_away) = (0u32, 0u32);
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= attempts {
                        return (accepted, turned_away);
                    }
                    let mut m = message(senders[n as usize % senders.len()], to, now);
                    m.max_pending = max;
                    m.max_pending_per_sender = max;
                    match store.store_message(m).await {
                        Ok(_) => accepted += 1,
                        Err(StoreError::QuotaExceeded(Quota::Recipient)) => turned_away += 1,
                        Err(other) => panic!("send {n}: {other:?}"),
                    }
                }
            })
        })
        .collect();
    let (mut accepted, mut turned_away) = (0, 0);
    for task in tasks {
        let (s, r) = task.await.unwrap();
        accepted += s;
        turned_away += r;
    }
    assert_eq!((prefill + accepted, turned_away), (max, attempts - max));
    let last = stores.last().unwrap();
    assert_eq!(
        last.pending_counts(to, senders[0]).await.unwrap().recipient,
        u64::from(max)
    );
    let listed = last.inbox(to, 200, InboxOrder::Asc, now).await.unwrap();
    assert_eq!(listed.len(), 200.min(max as usize));
}

#[tokio::test]
async fn quota_story_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = super::connect(&sqlite_options(dir.path(), "quota.db"))
        .await
        .unwrap();
    story(store.as_ref()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_cutoff_at_10_000_is_exact_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = super::connect(&sqlite_options(dir.path(), "quota.db"))
        .await
        .unwrap();
    concurrent_cutoff(&[store], 10_000, 10_050).await;
}

#[tokio::test]
async fn quota_story_on_postgres() {
    let Some(db) = crate::testing::TestDatabase::create().await else {
        return;
    };
    let store = super::connect(&options(db.url.clone(), 4)).await.unwrap();
    story(store.as_ref()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_cutoff_at_10_000_is_exact_across_two_pools_on_postgres() {
    let Some(db) = crate::testing::TestDatabase::create().await else {
        return;
    };
    // Commits that do not wait for the WAL flush: the same locks and
    // visibility, without a disk flush per send of this 10,000-send test.
    let options = StoreOptions {
        url: format!(
            "{}{}options=-c%20synchronous_commit%3Doff",
            db.url,
            if db.url.contains('?') { '&' } else { '?' }
        ),
        read_url: None,
        max_connections: 8,
        migrate: true,
    };
    let a = super::connect(&options).await.unwrap();
    let b = super::connect(&options).await.unwrap();
    concurrent_cutoff(&[a, b], 10_000, 10_050).await;
}

#[tokio::test]
async fn refusals_in_one_batch_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = super::connect(&sqlite_options(dir.path(), "quota.db"))
        .await
        .unwrap();
    refusals_in_one_batch(store.as_ref()).await;
}

#[tokio::test]
async fn refusals_in_one_batch_on_postgres() {
    let Some(db) = crate::testing::TestDatabase::create().await else {
        return;
    };
    let store = super::connect(&options(db.url.clone(), 4)).await.unwrap();
    refusals_in_one_batch(store.as_ref()).await;
}
