//! Abuse controls (docs/API.md part 3): request rate limits, the login lockout, and
//! token revocation, all kept in [`Counters`] with two backends: [`redis`]
//! (shared by every instance, one atomic round trip per check) and [`memory`]
//! (this process only).
//!
//! When Redis stops answering, the [`Limiter`] decides per control:
//! - request rate limits fall back to this instance's memory counters (the
//!   limit then holds per instance rather than globally) and a warning is logged;
//! - the login lockout and token revocation **fail closed**: login and
//!   authenticated requests answer `503` until Redis is back, because a lockout
//!   that silently turns off, or a revoked token that works again, is worse
//!   than a short outage.

pub mod memory;
pub mod redis;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use kavro_proto::UserId;

use crate::clock::Clock;
use crate::config::{Lockout, RateLimits, Window};
use crate::error::error_chain;
use crate::store::TokenGeneration;

/// The outcome of a rate-limit check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// Refused; the caller may retry after this long.
    Limited {
        retry_after: Duration,
    },
}

/// The shared counters did not answer. Only the Redis backend can fail; the
/// source keeps Redis's own error for the log.
#[derive(Debug, thiserror::Error)]
pub enum CounterError {
    #[error("Redis counters unavailable")]
    Redis(#[source] ::redis::RedisError),
}

/// Where the counters live, which decides what an outage means (see the
/// module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterBackend {
    /// This process only: cannot fail, not shared with other instances.
    Memory,
    /// Shared by every instance; can be unreachable.
    Redis,
}

/// Storage of the counters. Every method is one atomic step, whatever the
/// number of instances sharing the backend.
#[async_trait]
pub trait Counters: Send + Sync + 'static {
    /// Sliding window: records a hit for `key` at `now` if fewer than
    /// `window.max` hits fall within the last `window.per`.
    async fn hit(
        &self,
        key: &str,
        window: Window,
        now: DateTime<Utc>,
    ) -> Result<Decision, CounterError>;
    /// How long `subject` stays locked, if it is.
    async fn lock_remaining(
        &self,
        subject: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Duration>, CounterError>;
    /// Records a failed login for `subject`; when `policy.failures` fall within
    /// `policy.window`, locks it and returns for how long: `policy.duration`
    /// the first time, twice the previous lock each time after (at most
    /// `policy.max_duration`), until `subject` stays unlocked for
    /// `policy.max_duration` or [`Counters::clear_failures`] forgets it.
    async fn record_failure(
        &self,
        subject: &str,
        policy: &Lockout,
        now: DateTime<Utc>,
    ) -> Result<Option<Duration>, CounterError>;
    /// Forgets the failures and earlier locks of `subject` (after a successful login).
    async fn clear_failures(&self, subject: &str) -> Result<(), CounterError>;
    /// Marks a token id as revoked until `until` (its expiry).
    async fn revoke(
        &self,
        jti: &str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), CounterError>;
    async fn is_revoked(&self, jti: &str, now: DateTime<Utc>) -> Result<bool, CounterError>;
    /// Refuses every token of `user` below `generation` until `until` (when
    /// the last of them has expired anyway). Never lowers a stored generation.
    async fn revoke_generation(
        &self,
        user: UserId,
        generation: TokenGeneration,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), CounterError>;
    /// Whether token `jti` was revoked, and the lowest generation of `user`'s
    /// tokens still accepted: one round trip for every authenticated request.
    async fn token_state(
        &self,
        jti: &str,
        user: UserId,
        now: DateTime<Utc>,
    ) -> Result<TokenState, CounterError>;
    /// A cheap round trip, for `/ready`.
    async fn ping(&self) -> Result<(), CounterError>;
    fn backend(&self) -> CounterBackend;
}

/// What the counters know about one presented token.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenState {
    /// Its `jti` was revoked (logout).
    pub revoked: bool,
    /// Tokens of the account below this generation are refused.
    pub min_generation: TokenGeneration,
}

/// The rate-limited operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Register,
    Login,
    Send,
    Publish,
    Lookup,
    Inbox,
    Ack,
}

impl Route {
    pub fn name(self) -> &'static str {
        match self {
            Self::Register => "register",
            Self::Login => "login",
            Self::Send => "send",
            Self::Publish => "publish",
            Self::Lookup => "lookup",
            Self::Inbox => "inbox",
            Self::Ack => "ack",
        }
    }

    fn window(self, limits: &RateLimits) -> Option<Window> {
        match self {
            Self::Register => limits.register.0,
            Self::Login => limits.login.0,
            Self::Send => limits.send.0,
            Self::Publish => limits.publish.0,
            Self::Lookup => limits.lookup.0,
            Self::Inbox => limits.inbox.0,
            Self::Ack => limits.ack.0,
        }
    }
}

/// Why a controlled operation may not go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Over a limit or locked out: `429` with `Retry-After`.
    Limited { retry_after: Duration },
    /// The shared counters are down and this control fails closed: `503`.
    Unavailable,
}

/// Applies the configured policy on top of [`Counters`].
pub struct Limiter {
    counters: Arc<dyn Counters>,
    /// Used for rate limits while the shared counters are down.
    fallback: Option<memory::MemoryCounters>,
    limits: RateLimits,
    enabled: bool,
    lockout: Lockout,
    clock: Arc<dyn Clock>,
}

impl Limiter {
    pub fn new(
        counters: Arc<dyn Counters>,
        limits: RateLimits,
        enabled: bool,
        lockout: Lockout,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let fallback =
            (counters.backend() != CounterBackend::Memory).then(memory::MemoryCounters::default);
        Self {
            counters,
            fallback,
            limits,
            enabled,
            lockout,
            clock,
        }
    }

    pub fn counters(&self) -> &dyn Counters {
        self.counters.as_ref()
    }

    /// Counts one request of `route` by `subject` (a client IP or a user id).
    pub async fn check(&self, route: Route, subject: &str) -> Result<(), Refusal> {
        if !self.enabled {
            return Ok(());
        }
        let Some(window) = route.window(&self.limits) else {
            return Ok(());
        };
        let key = format!("rl:{}:{subject}", route.name());
        let now = self.clock.now();
        let decision = match self.counters.hit(&key, window, now).await {
            Ok(decision) => decision,
            Err(err) => {
                metrics::counter!("kavro_limiter_fallback_total").increment(1);
                tracing::warn!(error = %error_chain(&err), route = route.name(), "rate limit counters unavailable; using this instance's memory");
                match &self.fallback {
                    Some(fallback) => fallback
                        .hit(&key, window, now)
                        .await
                        .unwrap_or(Decision::Allowed),
                    None => Decision::Allowed,
                }
            }
        };
        match decision {
            Decision::Allowed => Ok(()),
            Decision::Limited { retry_after } => {
                metrics::counter!("kavro_rate_limited_total", "route" => route.name()).increment(1);
                Err(Refusal::Limited { retry_after })
            }
        }
    }

    /// Refuses a login to `username` from client `network` while that pair
    /// is locked, whatever the password.
    pub async fn check_lockout(&self, username: &str, network: &str) -> Result<(), Refusal> {
        match self
            .counters
            .lock_remaining(&lock_subject(username, network), self.clock.now())
            .await
        {
            Ok(None) => Ok(()),
            Ok(Some(retry_after)) => Err(Refusal::Limited { retry_after }),
            Err(err) => {
                tracing::error!(error = %error_chain(&err), "lockout counters unavailable; refusing logins");
                Err(Refusal::Unavailable)
            }
        }
    }

    /// Records a failed login (or password check) for `username` from client
    /// `network`; returns the lock duration if this failure locked the pair.
    pub async fn login_failed(
        &self,
        username: &str,
        network: &str,
    ) -> Result<Option<Duration>, Refusal> {
        self.counters
            .record_failure(
                &lock_subject(username, network),
                &self.lockout,
                self.clock.now(),
            )
            .await
            .map_err(|err| {
                tracing::error!(error = %error_chain(&err), "lockout counters unavailable");
                Refusal::Unavailable
            })
    }

    /// A successful login from `network` resets that pair's failures and back-off.
    pub async fn login_succeeded(&self, username: &str, network: &str) {
        if let Err(err) = self
            .counters
            .clear_failures(&lock_subject(username, network))
            .await
        {
            tracing::warn!(error = %error_chain(&err), "could not reset failed-login count");
        }
    }

    pub async fn revoke(&self, jti: &str, until: DateTime<Utc>) -> Result<(), Refusal> {
        self.counters
            .revoke(jti, until, self.clock.now())
            .await
            .map_err(|err| {
                tracing::error!(error = %error_chain(&err), "cannot record token revocation");
                Refusal::Unavailable
            })
    }

    /// Refuses every token of `user` below `generation` on every instance.
    pub async fn revoke_generation(
        &self,
        user: UserId,
        generation: TokenGeneration,
        until: DateTime<Utc>,
    ) -> Result<(), Refusal> {
        self.counters
            .revoke_generation(user, generation, until, self.clock.now())
            .await
            .map_err(|err| {
                tracing::error!(error = %err, "cannot record session revocation");
                Refusal::Unavailable
            })
    }

    /// Whether a token is revoked, by its id or by its account's generation.
    pub async fn token_state(&self, jti: &str, user: UserId) -> Result<TokenState, Refusal> {
        self.counters
            .token_state(jti, user, self.clock.now())
            .await
            .map_err(|err| {
                tracing::error!(error = %error_chain(&err), "cannot check token revocation; refusing");
                Refusal::Unavailable
            })
    }
}

/// Lockouts are per (account, client network), keyed by the normalized
/// username (unknown names included, so a lockout does not reveal whether an
/// account exists) and the client's prefix ([`crate::http::client_ip`]).
/// Failures from one network therefore lock only that network out, and the
/// owner logging in from another one is not refused.
fn lock_subject(username: &str, network: &str) -> String {
    format!(
        "{}|{network}",
        kavro_proto::validate::normalize_username(username)
    )
}

/// The lock after `strikes` locks of one subject (1 for the first):
/// `base`, doubled for each earlier one, at most `max`.
pub(crate) fn backed_off(base: Duration, max: Duration, strikes: u32) -> Duration {
    let factor = 1u32
        .checked_shl(strikes.saturating_sub(1))
        .unwrap_or(u32::MAX);
    base.saturating_mul(factor).min(max)
}

/// Milliseconds, at least 1, so `Retry-After` is never zero.
pub(crate) fn wait_ms(ms: i64) -> Duration {
    Duration::from_millis(ms.max(1) as u64)
}

#[cfg(test)]
pub(crate) mod contract;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_up_to_the_cap() {
        let base = Duration::from_secs(300);
        let max = Duration::from_secs(3600);
        let locks: Vec<u64> = (1..=6)
            .map(|n| backed_off(base, max, n).as_secs())
            .collect();
        assert_eq!(locks, [300, 600, 1200, 2400, 3600, 3600]);
        assert_eq!(backed_off(base, max, 0), base);
        assert_eq!(backed_off(base, max, u32::MAX), max, "no overflow");
    }
}
