//! The load scenarios and what they share: the run's context, send pacing,
//! and a lean view of an inbox page.

pub mod delivery;
pub mod groups;
pub mod idle;
pub mod inbox;
pub mod login_timing;
pub mod mixed;
pub mod send;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kavro_proto::MessageId;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::client::Instance;
use crate::setup::BenchUser;
use crate::stats::{Failure, FailureKind, Recorder, Window};

/// Everything a scenario needs, shared by its tasks.
#[derive(Clone)]
pub struct Ctx {
    pub instances: Arc<Vec<Instance>>,
    pub users: Arc<Vec<BenchUser>>,
    pub window: Window,
    pub concurrency: usize,
    /// Sends per second across all tasks; 0 for no cap.
    pub rate: f64,
    pub message_bytes: usize,
}

/// What a scenario hands back: merged figures, scenario-specific numbers, and
/// when its last task finished (the end of the measured time).
pub struct Outcome {
    pub recorder: Recorder,
    pub figures: Map<String, Value>,
    pub finished: Instant,
}

impl Outcome {
    /// Merges the recorders of the tasks and takes the latest finish.
    pub fn merge(parts: &[(Recorder, Instant)], names: &[&'static str]) -> Self {
        let mut recorder = Recorder::with_ops(names);
        let mut finished = None::<Instant>;
        for (part, end) in parts {
            recorder.merge(part);
            finished = Some(finished.map_or(*end, |f| f.max(*end)));
        }
        Self {
            recorder,
            figures: Map::new(),
            finished: finished.unwrap_or_else(Instant::now),
        }
    }
}

/// Seconds from the start of measurement to the last task's finish.
pub fn measured_seconds(window: &Window, finished: Instant) -> f64 {
    finished
        .saturating_duration_since(window.measure_from)
        .as_secs_f64()
}

/// `count / seconds`, 0 when nothing was measured.
pub fn per_second(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

/// Spaces one task's sends so that all tasks together send `rate` per second.
/// When the relay falls behind, missed slots are skipped, not bunched up.
pub struct Pacer {
    interval: Option<tokio::time::Interval>,
}

impl Pacer {
    pub fn new(rate: f64, tasks: usize, task: usize) -> Self {
        if rate <= 0.0 {
            return Self { interval: None };
        }
        let period = Duration::from_secs_f64(tasks as f64 / rate);
        // Stagger the tasks over one period so their sends interleave.
        let offset = period.mul_f64(task as f64 / tasks as f64);
        let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        Self {
            interval: Some(interval),
        }
    }

    pub async fn wait(&mut self) {
        if let Some(interval) = &mut self.interval {
            interval.tick().await;
        }
    }
}

/// The parts of an inbox page a benchmark reads. Borrowed and partial on
/// purpose: the full [`kavro_proto::api::Inbox`] parses timestamps and
/// metadata and allocates every string, which would make the generator, not
/// the relay, the slow side.
#[derive(Debug, Deserialize)]
pub struct InboxView<'a> {
    #[serde(borrow)]
    pub messages: Vec<MessageView<'a>>,
}

#[derive(Debug, Deserialize)]
pub struct MessageView<'a> {
    pub id: MessageId,
    #[serde(borrow)]
    pub ciphertext: Cow<'a, str>,
}

/// Only the number of messages in a page (nothing kept).
#[derive(Debug, Deserialize)]
pub struct InboxCount {
    pub messages: Vec<serde::de::IgnoredAny>,
}

pub fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, Failure> {
    serde_json::from_slice(body).map_err(|e| Failure::new(FailureKind::BadBody, e.to_string()))
}

/// Waits for every task. A task that panicked is a bug in the benchmark: say so.
pub async fn join<T>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        match task.await {
            Ok(value) => out.push(value),
            Err(err) => eprintln!("kavro-bench: a load task failed: {err}"),
        }
    }
    out
}

/// A fast random generator a task can keep across `await`s.
pub fn task_rng() -> rand::rngs::StdRng {
    rand::SeedableRng::from_rng(&mut rand::rng())
}

/// A pause after a transport failure, so a dead relay is not hammered in a
/// tight loop (the failure is still counted).
pub async fn back_off(failure: &Failure) {
    if !matches!(failure.kind, FailureKind::Status(_)) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kavro_proto::UserId;
    use kavro_proto::api::{Inbox, InboxMessage};

    #[test]
    fn the_lean_view_reads_the_relays_inbox() {
        let page = Inbox {
            messages: vec![InboxMessage {
                id: MessageId(7),
                sender_id: UserId(1),
                recipient_id: UserId(2),
                ciphertext: "S1ZCMQAAAAAAAAAA".into(),
                ephemeral_pubkey: "00".repeat(32),
                metadata: Some(serde_json::json!({"a": [1, "x"]})),
                created_at: chrono_now(),
            }],
        };
        let json = serde_json::to_vec(&page).unwrap();
        let view: InboxView<'_> = parse(&json).unwrap();
        assert_eq!(view.messages.len(), 1);
        assert_eq!(view.messages[0].id, MessageId(7));
        assert_eq!(view.messages[0].ciphertext, "S1ZCMQAAAAAAAAAA");
        assert!(matches!(view.messages[0].ciphertext, Cow::Borrowed(_)));
        let count: InboxCount = parse(&json).unwrap();
        assert_eq!(count.messages.len(), 1);
        assert!(parse::<InboxCount>(b"{}").is_err());
    }

    fn chrono_now() -> chrono::DateTime<chrono::Utc> {
        serde_json::from_value(serde_json::json!("2026-01-02T03:04:05Z")).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn pacer_spaces_sends() {
        let mut pacer = Pacer::new(100.0, 4, 0);
        let start = tokio::time::Instant::now();
        for _ in 0..5 {
            pacer.wait().await;
        }
        // Four tasks at 100/s: each sends every 40 ms; five sends span 160 ms.
        assert_eq!(start.elapsed(), Duration::from_millis(160));
        let mut free = Pacer::new(0.0, 4, 0);
        free.wait().await;
    }
}
