//! In-process counters: the embedded default, and the fallback for rate
//! limits while Redis is away. Each map is behind one mutex held only for a
//! few pointer operations, never across an `.await`.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use kavro_proto::UserId;

use super::{CounterBackend, CounterError, Counters, Decision, TokenState, backed_off, wait_ms};
use crate::config::{Lockout, Window};
use crate::store::TokenGeneration;

/// Entries are pruned once a map holds this many keys, so memory stays
/// bounded by the number of recently active clients.
const PRUNE_AT: usize = 10_000;

#[derive(Default)]
pub struct MemoryCounters {
    /// Sliding-window logs: hit times in ms, oldest first, and the window length.
    windows: Mutex<HashMap<String, (VecDeque<i64>, i64)>>,
    /// Failed-login times per subject.
    failures: Mutex<HashMap<String, VecDeque<i64>>>,
    /// Lock expiry per subject, in ms.
    locks: Mutex<HashMap<String, i64>>,
    /// Locks so far per subject, and when they are forgotten, in ms.
    strikes: Mutex<HashMap<String, (u32, i64)>>,
    /// Revoked token ids and when they expire anyway, in ms.
    revoked: Mutex<HashMap<String, i64>>,
    /// Lowest accepted token generation per account, and until when it matters, in ms.
    generations: Mutex<HashMap<UserId, (TokenGeneration, i64)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Drops log entries at or before `cutoff`.
fn trim(log: &mut VecDeque<i64>, cutoff: i64) {
    while log.front().is_some_and(|&t| t <= cutoff) {
        log.pop_front();
    }
}

#[async_trait]
impl Counters for MemoryCounters {
    async fn hit(
        &self,
        key: &str,
        window: Window,
        now: DateTime<Utc>,
    ) -> Result<Decision, CounterError> {
        let now = now.timestamp_millis();
        let per = millis(window.per);
        let mut windows = lock(&self.windows);
        if windows.len() >= PRUNE_AT {
            windows.retain(|_, (log, per)| log.back().is_some_and(|&t| t > now - *per));
        }
        let (log, stored_per) = windows
            .entry(key.to_owned())
            .or_insert_with(|| (VecDeque::new(), per));
        *stored_per = per;
        trim(log, now - per);
        if log.len() < window.max as usize {
            log.push_back(now);
            return Ok(Decision::Allowed);
        }
        let oldest = log.front().copied().unwrap_or(now);
        Ok(Decision::Limited {
            retry_after: wait_ms(oldest + per - now),
        })
    }

    async fn lock_remaining(
        &self,
        subject: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Duration>, CounterError> {
        let now = now.timestamp_millis();
        let mut locks = lock(&self.locks);
        match locks.get(subject) {
            Some(&until) if until > now => Ok(Some(wait_ms(until - now))),
            Some(_) => {
                locks.remove(subject);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn record_failure(
        &self,
        subject: &str,
        policy: &Lockout,
        now: DateTime<Utc>,
    ) -> Result<Option<Duration>, CounterError> {
        let now = now.timestamp_millis();
        let window = millis(policy.window);
        let mut failures = lock(&self.failures);
        if failures.len() >= PRUNE_AT {
            failures.retain(|_, log| log.back().is_some_and(|&t| t > now - window));
        }
        let log = failures.entry(subject.to_owned()).or_default();
        trim(log, now - window);
        log.push_back(now);
        if log.len() < policy.failures as usize {
            return Ok(None);
        }
        failures.remove(subject);
        drop(failures);
        let strikes = {
            let mut strikes = lock(&self.strikes);
            if strikes.len() >= PRUNE_AT {
                strikes.retain(|_, (_, forget_at)| *forget_at > now);
            }
            let entry = strikes.entry(subject.to_owned()).or_insert((0, now));
            if entry.1 <= now {
                entry.0 = 0;
            }
            entry.0 = entry.0.saturating_add(1);
            let duration = backed_off(policy.duration, policy.max_duration, entry.0);
            entry.1 = now + millis(duration) + millis(policy.max_duration);
            duration
        };
        let mut locks = lock(&self.locks);
        if locks.len() >= PRUNE_AT {
            locks.retain(|_, until| *until > now);
        }
        locks.insert(subject.to_owned(), now + millis(strikes));
        Ok(Some(strikes))
    }

    async fn clear_failures(&self, subject: &str) -> Result<(), CounterError> {
        lock(&self.failures).remove(subject);
        lock(&self.strikes).remove(subject);
        Ok(())
    }

    async fn revoke(
        &self,
        jti: &str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), CounterError> {
        let now = now.timestamp_millis();
        let mut revoked = lock(&self.revoked);
        if revoked.len() >= PRUNE_AT {
            revoked.retain(|_, until| *until > now);
        }
        revoked.insert(jti.to_owned(), until.timestamp_millis());
        Ok(())
    }

    async fn is_revoked(&self, jti: &str, _now: DateTime<Utc>) -> Result<bool, CounterError> {
        // An entry past its time is harmless: the token itself has expired.
        Ok(lock(&self.revoked).contains_key(jti))
    }

    async fn revoke_generation(
        &self,
        user: UserId,
        generation: TokenGeneration,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), CounterError> {
        let now = now.timestamp_millis();
        let mut generations = lock(&self.generations);
        if generations.len() >= PRUNE_AT {
            generations.retain(|_, (_, until)| *until > now);
        }
        let entry = generations
            .entry(user)
            .or_insert((generation, until.timestamp_millis()));
        if generation >= entry.0 {
            *entry = (generation, until.timestamp_millis().max(entry.1));
        }
        Ok(())
    }

    async fn token_state(
        &self,
        jti: &str,
        user: UserId,
        now: DateTime<Utc>,
    ) -> Result<TokenState, CounterError> {
        let now = now.timestamp_millis();
        let revoked = lock(&self.revoked).contains_key(jti);
        let min_generation = lock(&self.generations)
            .get(&user)
            .filter(|(_, until)| *until > now)
            .map(|(generation, _)| *generation)
            .unwrap_or_default();
        Ok(TokenState {
            revoked,
            min_generation,
        })
    }

    async fn ping(&self) -> Result<(), CounterError> {
        Ok(())
    }

    fn backend(&self) -> CounterBackend {
        CounterBackend::Memory
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn contract_holds() {
        super::super::contract::run(&MemoryCounters::default(), "mem").await;
    }

    #[tokio::test]
    async fn memory_is_pruned() {
        let counters = MemoryCounters::default();
        let start = Utc::now();
        let window = Window {
            max: 1,
            per: Duration::from_secs(1),
        };
        for i in 0..PRUNE_AT + 5 {
            counters.hit(&format!("k{i}"), window, start).await.unwrap();
        }
        let later = start + chrono::Duration::seconds(10);
        counters.hit("fresh", window, later).await.unwrap();
        assert_eq!(lock(&counters.windows).len(), 1);
    }
}
