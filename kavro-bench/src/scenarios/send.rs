//! `send`: C tasks `POST /messages` (a ~200-byte random ciphertext) from
//! random users to random other users, as fast as the relay answers (or at
//! `--rate`). With `--pending N`, every inbox holds N undelivered messages
//! first (filled before the clock starts), so the sends go to full queues.

use std::time::Instant;

use crate::client::{authed, exchange};
use crate::payload::SendTemplate;
use crate::scenarios::{Ctx, Outcome, Pacer, back_off};
use crate::setup::other_than;
use crate::stats::Recorder;

pub const SEND: &str = "send";

pub async fn run(ctx: Ctx) -> Outcome {
    let templates = SendTemplate::for_users(&ctx.users, ctx.message_bytes);
    let tasks: Vec<_> = (0..ctx.concurrency)
        .map(|task| {
            let ctx = ctx.clone();
            let templates = templates.clone();
            tokio::spawn(async move {
                let mut recorder = Recorder::with_ops(&[SEND]);
                let mut pacer = Pacer::new(ctx.rate, ctx.concurrency, task);
                let mut rng = super::task_rng();
                let n = ctx.users.len();
                let mut turn = task;
                loop {
                    pacer.wait().await;
                    if !ctx.window.open() {
                        break;
                    }
                    let sender = rand::Rng::random_range(&mut rng, 0..n);
                    let recipient = other_than(&mut rng, n, sender);
                    let instance = &ctx.instances[turn % ctx.instances.len()];
                    turn += 1;
                    let request = authed(
                        instance.post(instance.routes.send.clone(), templates[recipient].body()),
                        &ctx.users[sender].auth,
                    );
                    let started = Instant::now();
                    let result = exchange(request, 201).await;
                    recorder.op(SEND).outcome(&ctx.window, started, &result);
                    if let Err(failure) = &result {
                        back_off(failure).await;
                    }
                }
                (recorder, Instant::now())
            })
        })
        .collect();
    Outcome::merge(&super::join(tasks).await, &[SEND])
}
