//! `inbox`: every inbox holds `--prefill` messages (put there before the
//! clock starts); C tasks fetch a page (`GET /messages/inbox?limit=50`) of a
//! random user's inbox, without acknowledging, so every page is full.

use std::time::Instant;

use serde_json::json;

use crate::client::{authed, exchange};
use crate::scenarios::{Ctx, InboxCount, Outcome, back_off, parse};
use crate::stats::Recorder;

pub const FETCH: &str = "fetch";

pub async fn run(ctx: Ctx, limit: u32) -> Outcome {
    let tasks: Vec<_> = (0..ctx.concurrency)
        .map(|task| {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                let mut recorder = Recorder::with_ops(&[FETCH]);
                let mut rng = super::task_rng();
                let urls: Vec<_> = ctx
                    .instances
                    .iter()
                    .map(|i| i.routes.inbox(limit, 0, false))
                    .collect();
                let (mut pages, mut messages) = (0u64, 0u64);
                let mut turn = task;
                while ctx.window.open() {
                    let user = rand::Rng::random_range(&mut rng, 0..ctx.users.len());
                    let which = turn % ctx.instances.len();
                    turn += 1;
                    let instance = &ctx.instances[which];
                    let request = authed(instance.get(urls[which].clone()), &ctx.users[user].auth);
                    let started = Instant::now();
                    let result = exchange(request, 200).await.and_then(|body| {
                        parse::<InboxCount>(&body).map(|page| page.messages.len())
                    });
                    recorder.op(FETCH).outcome(&ctx.window, started, &result);
                    match &result {
                        Ok(n) if ctx.window.measured(started) => {
                            pages += 1;
                            messages += *n as u64;
                        }
                        Ok(_) => {}
                        Err(failure) => back_off(failure).await,
                    }
                }
                ((recorder, Instant::now()), (pages, messages))
            })
        })
        .collect();
    let results = super::join(tasks).await;
    let (pages, messages) = results
        .iter()
        .fold((0, 0), |(p, m), (_, (pages, messages))| {
            (p + pages, m + messages)
        });
    let mut outcome = Outcome::merge(
        &results.into_iter().map(|(r, _)| r).collect::<Vec<_>>(),
        &[FETCH],
    );
    outcome.figures.insert(
        "messages_per_fetch".into(),
        json!(if pages > 0 {
            messages as f64 / pages as f64
        } else {
            0.0
        }),
    );
    outcome.figures.insert(
        "messages_fetched_per_sec".into(),
        json!(super::per_second(
            messages,
            super::measured_seconds(&ctx.window, outcome.finished)
        )),
    );
    outcome
}
