//! `idle-polls N`: open N long-polls on empty inboxes (at most `--per-user`
//! per user, the relay's `max_long_polls_per_user`) and hold them for the
//! duration, to see what idle waiters cost the relay: memory, and whether it
//! holds them all.
//!
//! The polls are opened at a fixed pace, so the end of the hold is known in
//! advance and each poll asks to wait exactly until then: the relay answers
//! them all at the end, and none is abandoned mid-wait.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::client::{LONG_POLL_SLACK, authed, exchange};
use crate::scenarios::{Ctx, Outcome};
use crate::stats::Recorder;
use crate::sysinfo::Monitor;

pub const POLL: &str = "long-poll";

/// The ramp opens polls in steps, one step every 50 ms.
const RAMP_STEP: Duration = Duration::from_millis(50);
/// Time after the ramp for the last polls to reach the relay.
const SETTLE: Duration = Duration::from_secs(1);

/// Polls opened per ramp step for `per_second` polls per second.
pub fn ramp_batch(per_second: u32) -> usize {
    (per_second as usize / 20).max(1)
}

/// How long opening `count` polls takes at the ramp's pace.
pub fn ramp_time(count: usize, per_second: u32) -> Duration {
    RAMP_STEP * u32::try_from(count.div_ceil(ramp_batch(per_second))).unwrap_or(u32::MAX)
}

/// The `wait` (whole seconds, 1–60) for a poll sent `left` before the hold ends.
pub fn wait_for(left: Duration) -> u32 {
    let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    secs.clamp(1, u64::from(kavro_proto::validate::INBOX_WAIT_MAX)) as u32
}

/// The value of an unlabelled gauge in Prometheus text, e.g. `kavro_long_polls_open 12`.
pub fn gauge(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let value = rest.strip_prefix(' ')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

#[derive(Default)]
struct Counts {
    open: AtomicUsize,
    answered: AtomicU64,
    failed: AtomicU64,
}

pub async fn run(
    ctx: Ctx,
    count: usize,
    per_user: usize,
    open_rate: u32,
    monitor: &Monitor,
    hold: Duration,
) -> Outcome {
    let started = Instant::now();
    let hold_from = started + ramp_time(count, open_rate) + SETTLE;
    let batch = ramp_batch(open_rate);
    let hold_until = hold_from + hold;
    let counts = Arc::new(Counts::default());
    let recorder = Arc::new(Mutex::new(Recorder::with_ops(&[POLL])));
    let before = server_gauges(&ctx).await;

    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        if i > 0 && i.is_multiple_of(batch) {
            tokio::time::sleep(RAMP_STEP).await;
        }
        let (ctx, counts, recorder) = (ctx.clone(), counts.clone(), recorder.clone());
        tasks.push(tokio::spawn(async move {
            let instance = &ctx.instances[i % ctx.instances.len()];
            let auth = &ctx.users[i / per_user].auth;
            loop {
                let left = hold_until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                let wait = wait_for(left);
                let request = authed(
                    instance
                        .get(instance.routes.inbox(1, wait, false))
                        .timeout(Duration::from_secs(u64::from(wait)) + LONG_POLL_SLACK),
                    auth,
                );
                counts.open.fetch_add(1, Ordering::Relaxed);
                let polled = Instant::now();
                let result = exchange(request, 200).await;
                counts.open.fetch_sub(1, Ordering::Relaxed);
                let mut recorder = recorder.lock().unwrap_or_else(PoisonError::into_inner);
                match result {
                    Ok(_) => {
                        counts.answered.fetch_add(1, Ordering::Relaxed);
                        recorder.op(POLL).record(polled.elapsed());
                    }
                    Err(failure) => {
                        counts.failed.fetch_add(1, Ordering::Relaxed);
                        recorder.op(POLL).fail(&failure, true);
                        // A refused poll is the figure; do not retry it.
                        break;
                    }
                }
            }
        }));
    }
    let opened_in = started.elapsed();
    // Count in the middle of the hold: on a busy 2-core machine the last
    // polls of the ramp may take a moment to reach the relay.
    tokio::time::sleep_until((hold_from + hold / 2).into()).await;
    let held_at_start = counts.open.load(Ordering::Relaxed);
    let server_at_start = server_gauges(&ctx).await;
    let rss_during = monitor.snapshot().rss_kib;
    eprintln!(
        "holding: {held_at_start} of {count} long-polls open (the relay reports {})",
        show(&server_at_start)
    );
    let check_at = hold_until
        .checked_sub((hold / 4).min(Duration::from_secs(1)))
        .unwrap_or(hold_until);
    tokio::time::sleep_until(check_at.into()).await;
    let held_at_end = counts.open.load(Ordering::Relaxed);
    let server_at_end = server_gauges(&ctx).await;
    super::join(tasks).await;
    let finished = Instant::now();
    // Let the relay drop what it kept for the answered polls.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let server_after = server_gauges(&ctx).await;

    // One operation per answered poll; its latency is (about) the hold.
    let polls = std::mem::take(&mut *recorder.lock().unwrap_or_else(PoisonError::into_inner));
    let answered = counts.answered.load(Ordering::Relaxed);
    let mut outcome = Outcome::merge(&[(polls, finished)], &[POLL]);
    let f = &mut outcome.figures;
    f.insert("requested".into(), json!(count));
    f.insert("per_user".into(), json!(per_user));
    f.insert("users".into(), json!(count.div_ceil(per_user)));
    f.insert("opened_in_seconds".into(), json!(opened_in.as_secs_f64()));
    f.insert("held_mid_hold".into(), json!(held_at_start));
    f.insert("held_at_end".into(), json!(held_at_end));
    f.insert("held".into(), json!(held_at_start.min(held_at_end)));
    f.insert("answered".into(), json!(answered));
    f.insert(
        "failed".into(),
        json!(counts.failed.load(Ordering::Relaxed)),
    );
    f.insert("relay_open_before".into(), gauges_json(&before));
    f.insert("relay_open_mid_hold".into(), gauges_json(&server_at_start));
    f.insert("relay_open_at_end".into(), gauges_json(&server_at_end));
    f.insert("relay_open_after".into(), gauges_json(&server_after));
    if !monitor.is_empty() {
        f.insert("rss_during_kib".into(), json!(rss_during));
    }
    outcome
}

/// `kavro_long_polls_open` of every instance, from its `/metrics`.
async fn server_gauges(ctx: &Ctx) -> Vec<Option<f64>> {
    let mut out = Vec::with_capacity(ctx.instances.len());
    for instance in ctx.instances.iter() {
        let value = exchange(instance.get(instance.routes.metrics.clone()), 200)
            .await
            .ok()
            .and_then(|body| gauge(&String::from_utf8_lossy(&body), "kavro_long_polls_open"));
        out.push(value);
    }
    out
}

fn gauges_json(values: &[Option<f64>]) -> Value {
    json!(
        values
            .iter()
            .map(|v| v.map(|v| v as u64))
            .collect::<Vec<_>>()
    )
}

fn show(values: &[Option<f64>]) -> String {
    values
        .iter()
        .map(|v| v.map_or_else(|| "?".to_owned(), |v| format!("{v:.0}")))
        .collect::<Vec<_>>()
        .join(" + ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_end_with_the_hold() {
        assert_eq!(wait_for(Duration::from_millis(1)), 1);
        assert_eq!(wait_for(Duration::from_secs(30)), 30);
        assert_eq!(wait_for(Duration::from_millis(29_001)), 30);
        assert_eq!(wait_for(Duration::from_secs(600)), 60);
    }

    #[test]
    fn ramp_paces_the_opening() {
        assert_eq!(ramp_time(10_000, 5_000), Duration::from_secs(2));
        assert_eq!(ramp_time(10_000, 1_000), Duration::from_secs(10));
        assert_eq!(ramp_time(1, 1_000), Duration::from_millis(50));
        assert_eq!(ramp_batch(10), 1);
    }

    #[test]
    fn gauges_from_prometheus_text() {
        let text = "# TYPE kavro_long_polls_open gauge\nkavro_long_polls_open 9998\nkavro_long_polls_open_total 3\n";
        assert_eq!(gauge(text, "kavro_long_polls_open"), Some(9998.0));
        assert_eq!(
            gauge("kavro_long_polls_open_x 1\n", "kavro_long_polls_open"),
            None
        );
        assert_eq!(gauge("", "kavro_long_polls_open"), None);
    }
}
