//! `mixed`: each task acts as one user and repeats send (to a random other
//! user), fetch (its own inbox) and batch ack (`POST /messages/ack` with the
//! ids it got): the life of a chatty client, per-operation figures.

use std::time::Instant;

use kavro_proto::MessageId;
use serde_json::json;

use crate::client::{authed, exchange};
use crate::payload::SendTemplate;
use crate::scenarios::{Ctx, InboxView, Outcome, Pacer, back_off, parse};
use crate::setup::other_than;
use crate::stats::Recorder;

pub const SEND: &str = "send";
pub const FETCH: &str = "fetch";
pub const ACK: &str = "ack";

pub async fn run(ctx: Ctx, limit: u32) -> Outcome {
    let templates = SendTemplate::for_users(&ctx.users, ctx.message_bytes);
    let tasks: Vec<_> = (0..ctx.concurrency)
        .map(|task| {
            let ctx = ctx.clone();
            let templates = templates.clone();
            tokio::spawn(async move {
                let mut recorder = Recorder::with_ops(&[SEND, FETCH, ACK]);
                let mut rng = super::task_rng();
                let mut pacer = Pacer::new(ctx.rate, ctx.concurrency, task);
                let n = ctx.users.len();
                let me = task % n;
                let auth = &ctx.users[me].auth;
                let inbox_urls: Vec<_> = ctx
                    .instances
                    .iter()
                    .map(|i| i.routes.inbox(limit, 0, false))
                    .collect();
                let mut ids: Vec<MessageId> = Vec::with_capacity(limit as usize);
                let (mut acked, mut empty) = (0u64, 0u64);
                let mut turn = task;
                loop {
                    pacer.wait().await;
                    if !ctx.window.open() {
                        break;
                    }
                    let which = turn % ctx.instances.len();
                    turn += 1;
                    let instance = &ctx.instances[which];

                    let to = other_than(&mut rng, n, me);
                    let request = authed(
                        instance.post(instance.routes.send.clone(), templates[to].body()),
                        auth,
                    );
                    let started = Instant::now();
                    let result = exchange(request, 201).await;
                    recorder.op(SEND).outcome(&ctx.window, started, &result);
                    if let Err(failure) = &result {
                        back_off(failure).await;
                    }

                    let request = authed(instance.get(inbox_urls[which].clone()), auth);
                    let started = Instant::now();
                    ids.clear();
                    let result = exchange(request, 200).await.and_then(|body| {
                        parse::<InboxView<'_>>(&body)
                            .map(|page| ids.extend(page.messages.iter().map(|m| m.id)))
                    });
                    recorder.op(FETCH).outcome(&ctx.window, started, &result);
                    if let Err(failure) = &result {
                        back_off(failure).await;
                        continue;
                    }
                    if ids.is_empty() {
                        empty += 1;
                        continue;
                    }

                    let request = instance.ack_batch(ids.clone(), auth);
                    let started = Instant::now();
                    let result = exchange(request, 200).await;
                    recorder.op(ACK).outcome(&ctx.window, started, &result);
                    match &result {
                        Ok(_) if ctx.window.measured(started) => acked += ids.len() as u64,
                        Ok(_) => {}
                        Err(failure) => back_off(failure).await,
                    }
                }
                ((recorder, Instant::now()), (acked, empty))
            })
        })
        .collect();
    let results = super::join(tasks).await;
    let (acked, empty) = results
        .iter()
        .fold((0, 0), |(a, e), (_, (acked, empty))| (a + acked, e + empty));
    let mut outcome = Outcome::merge(
        &results.into_iter().map(|(r, _)| r).collect::<Vec<_>>(),
        &[SEND, FETCH, ACK],
    );
    let fetches = outcome
        .recorder
        .get(ACK)
        .map_or(0, crate::stats::OpStats::count);
    outcome
        .figures
        .insert("messages_acked".into(), json!(acked));
    outcome.figures.insert(
        "messages_per_ack".into(),
        json!(if fetches > 0 {
            acked as f64 / fetches as f64
        } else {
            0.0
        }),
    );
    outcome.figures.insert("empty_fetches".into(), json!(empty));
    outcome
}
