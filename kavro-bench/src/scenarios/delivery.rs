//! `delivery`: R receivers each hold a long-poll (`GET /messages/inbox?wait=S`)
//! for their own user and batch-ack what arrives; C senders send them
//! messages whose ciphertext starts with the send time (see
//! [`crate::payload`]). On arrival the receiver subtracts: that is the
//! send-to-delivery latency, measured on one clock (this process's).
//!
//! With two or more instances, sends go through the first and the long-polls
//! through the others, so every delivery crosses instances (Redis pub/sub).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use kavro_proto::MessageId;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::client::{LONG_POLL_SLACK, authed, exchange};
use crate::payload::{SendTemplate, read_stamp};
use crate::scenarios::{Ctx, InboxView, Outcome, Pacer, back_off, parse};
use crate::stats::{Recorder, micros};

pub const SEND: &str = "send";
pub const DELIVERY: &str = "delivery";
pub const POLL: &str = "long-poll";
pub const ACK: &str = "ack";
const OPS: [&str; 4] = [SEND, DELIVERY, POLL, ACK];

/// How long receivers may take, after the last send, to collect what is in flight.
const DRAIN: Duration = Duration::from_secs(10);
/// Messages per long-poll answer (the relay's maximum page).
const PAGE: u32 = kavro_proto::validate::INBOX_LIMIT_MAX;

#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    delivered: AtomicU64,
    duplicates: AtomicU64,
    unstamped: AtomicU64,
    /// Set after the drain: receivers leave after their next answer.
    stopping: AtomicBool,
}

/// Which instance the `i`-th receiver polls: with one instance that one,
/// otherwise any but the first (which takes the sends).
pub fn poll_instance(i: usize, instances: usize) -> usize {
    if instances <= 1 {
        0
    } else {
        1 + i % (instances - 1)
    }
}

pub async fn run(ctx: Ctx, receivers: usize, wait: u32) -> Outcome {
    let counts = Arc::new(Counts::default());
    let stop = CancellationToken::new();
    // Receivers record into one shared recorder, once per answer: there may
    // be many of them, and each answer is rare next to a send.
    let shared = Arc::new(Mutex::new(Recorder::with_ops(&OPS)));
    let receiving: Vec<_> = (0..receivers)
        .map(|i| {
            let (ctx, counts, stop, shared) =
                (ctx.clone(), counts.clone(), stop.clone(), shared.clone());
            tokio::spawn(receive(ctx, i, wait, counts, stop, shared))
        })
        .collect();
    // Let every receiver get its long-poll in before the first send.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let templates = SendTemplate::for_users(&ctx.users[..receivers], ctx.message_bytes);
    let sending: Vec<_> = (0..ctx.concurrency)
        .map(|task| {
            let (ctx, counts, templates) = (ctx.clone(), counts.clone(), templates.clone());
            tokio::spawn(send(ctx, task, receivers, templates, counts))
        })
        .collect();
    let parts = super::join(sending).await;

    let drain_started = Instant::now();
    while counts.delivered.load(Ordering::Relaxed) < counts.sent.load(Ordering::Relaxed)
        && drain_started.elapsed() < DRAIN
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let drained_in = drain_started.elapsed();
    stop_receivers(&ctx, receivers, &templates, &counts, &stop, receiving).await;

    let mut outcome = Outcome::merge(&parts, &OPS);
    let received = std::mem::take(&mut *shared.lock().unwrap_or_else(PoisonError::into_inner));
    outcome.recorder.merge(&received);
    let sent = counts.sent.load(Ordering::Relaxed);
    let delivered = counts.delivered.load(Ordering::Relaxed);
    let f = &mut outcome.figures;
    f.insert("receivers".into(), json!(receivers));
    f.insert("messages_sent".into(), json!(sent));
    f.insert("messages_delivered".into(), json!(delivered));
    f.insert(
        "undelivered_at_end".into(),
        json!(sent.saturating_sub(delivered)),
    );
    f.insert(
        "duplicate_deliveries".into(),
        json!(counts.duplicates.load(Ordering::Relaxed)),
    );
    f.insert(
        "foreign_messages".into(),
        json!(counts.unstamped.load(Ordering::Relaxed)),
    );
    f.insert("drain_seconds".into(), json!(drained_in.as_secs_f64()));
    outcome
}

/// Ends the receivers without abandoning their long-polls on the relay: one
/// unstamped message per receiver answers its open poll, and the receiver
/// leaves after acknowledging it. (A poll dropped mid-wait would stay open on
/// the relay until its `wait` runs out, counting against that user's
/// long-poll cap.) Receivers that do not finish in time are cancelled.
async fn stop_receivers(
    ctx: &Ctx,
    receivers: usize,
    templates: &[SendTemplate],
    counts: &Counts,
    stop: &CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
) {
    counts.stopping.store(true, Ordering::Relaxed);
    let instance = &ctx.instances[0];
    let waker = &ctx.users[receivers].auth;
    futures_util::stream::iter(templates)
        .for_each_concurrent(ctx.concurrency.max(1), |template| async move {
            let request = authed(
                instance.post(instance.routes.send.clone(), template.body()),
                waker,
            );
            let _ = exchange(request, 201).await;
        })
        .await;
    let mut all = std::pin::pin!(super::join(tasks));
    if tokio::time::timeout(Duration::from_secs(5), &mut all)
        .await
        .is_err()
    {
        stop.cancel();
        all.await;
    }
}

async fn send(
    ctx: Ctx,
    task: usize,
    receivers: usize,
    templates: Arc<Vec<SendTemplate>>,
    counts: Arc<Counts>,
) -> (Recorder, Instant) {
    let mut recorder = Recorder::with_ops(&[SEND]);
    let mut rng = super::task_rng();
    let mut pacer = Pacer::new(ctx.rate, ctx.concurrency, task);
    let n = ctx.users.len();
    let instance = &ctx.instances[0];
    loop {
        pacer.wait().await;
        if !ctx.window.open() {
            break;
        }
        let sender = rand::Rng::random_range(&mut rng, receivers..n);
        let recipient = rand::Rng::random_range(&mut rng, 0..receivers);
        let started = Instant::now();
        let body = templates[recipient].stamped(micros(started - ctx.window.start));
        let request = authed(
            instance.post(instance.routes.send.clone(), body),
            &ctx.users[sender].auth,
        );
        let result = exchange(request, 201).await;
        recorder.op(SEND).outcome(&ctx.window, started, &result);
        match &result {
            Ok(_) => {
                counts.sent.fetch_add(1, Ordering::Relaxed);
            }
            Err(failure) => back_off(failure).await,
        }
    }
    (recorder, Instant::now())
}

async fn receive(
    ctx: Ctx,
    i: usize,
    wait: u32,
    counts: Arc<Counts>,
    stop: CancellationToken,
    shared: Arc<Mutex<Recorder>>,
) {
    let instance = &ctx.instances[poll_instance(i, ctx.instances.len())];
    let auth = &ctx.users[i].auth;
    let url = instance.routes.inbox(PAGE, wait, true);
    let timeout = Duration::from_secs(u64::from(wait)) + LONG_POLL_SLACK;
    let measured_from = micros(ctx.window.measure_from - ctx.window.start);
    let mut seen: HashSet<MessageId> = HashSet::new();
    let mut ids: Vec<MessageId> = Vec::with_capacity(PAGE as usize);
    let mut latencies: Vec<u64> = Vec::with_capacity(PAGE as usize);
    let record = |f: &mut dyn FnMut(&mut Recorder)| {
        f(&mut shared.lock().unwrap_or_else(PoisonError::into_inner));
    };
    while !stop.is_cancelled() {
        let request = authed(instance.get(url.clone()).timeout(timeout), auth);
        let started = Instant::now();
        let result = tokio::select! {
            result = exchange(request, 200) => result,
            () = stop.cancelled() => break,
        };
        let arrived = micros(ctx.window.start.elapsed());
        let measured = ctx.window.measured(started);
        let body = match result {
            Ok(body) => body,
            Err(failure) => {
                record(&mut |r| r.op(POLL).fail(&failure, measured));
                back_off(&failure).await;
                continue;
            }
        };
        let page = match parse::<InboxView<'_>>(&body) {
            Ok(page) => page,
            Err(failure) => {
                record(&mut |r| r.op(POLL).fail(&failure, measured));
                continue;
            }
        };
        ids.clear();
        latencies.clear();
        let mut fresh = 0;
        for message in &page.messages {
            ids.push(message.id);
            if !seen.insert(message.id) {
                counts.duplicates.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            match read_stamp(&message.ciphertext) {
                Some(sent_at) => {
                    fresh += 1;
                    if sent_at >= measured_from {
                        latencies.push(arrived.saturating_sub(sent_at));
                    }
                }
                None if counts.stopping.load(Ordering::Relaxed) => {}
                None => {
                    counts.unstamped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        counts.delivered.fetch_add(fresh, Ordering::Relaxed);
        let polled = started.elapsed();
        record(&mut |r| {
            if measured {
                r.op(POLL).record(polled);
            }
            let delivery = r.op(DELIVERY);
            for us in &latencies {
                delivery.record_micros(*us);
            }
        });
        if ids.is_empty() {
            if counts.stopping.load(Ordering::Relaxed) {
                break;
            }
            continue;
        }
        let request = instance.ack_batch(ids.clone(), auth);
        let started = Instant::now();
        let result = exchange(request, 200).await;
        record(&mut |r| r.op(ACK).outcome(&ctx.window, started, &result));
        if let Err(failure) = &result {
            back_off(failure).await;
        }
        if counts.stopping.load(Ordering::Relaxed) {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_avoid_the_sending_instance() {
        assert_eq!(poll_instance(0, 1), 0);
        assert_eq!(poll_instance(5, 1), 0);
        assert_eq!(poll_instance(0, 2), 1);
        assert_eq!(poll_instance(1, 2), 1);
        assert_eq!(
            (0..4).map(|i| poll_instance(i, 3)).collect::<Vec<_>>(),
            [1, 2, 1, 2]
        );
    }
}
