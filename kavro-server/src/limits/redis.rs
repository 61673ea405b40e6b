//! Counters in Redis, shared by every relay instance. Each check is one
//! atomic round trip (a Lua script or a single command). Every script touches
//! only keys with the same hash tag (`{…}`), so it runs on a Redis Cluster
//! (one slot per script; `script_keys_share_a_slot` checks it), and no
//! pipeline spans two slots.
//!
//! Times come from the caller's clock (scores and stored deadlines), and Redis
//! expiry is only used to clean up, so the logic is testable with an injected
//! clock and does not depend on the Redis host's time.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redis::{AsyncCommands, Script};

use kavro_proto::UserId;

use super::{CounterBackend, CounterError, Counters, Decision, TokenState, wait_ms};
use crate::config::{Lockout, Window};
use crate::redis_link::{RedisConn, RedisTarget, Timeouts};
use crate::store::TokenGeneration;

/// Sliding-window log in a sorted set: drop entries older than the window,
/// add this hit if there is room, else answer how long until the oldest leaves.
const HIT: &str = r"
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local max = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < max then
  redis.call('ZADD', KEYS[1], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[1], window)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window - now)
";

/// Records a failed login; at the threshold, counts a strike, stores the lock
/// deadline (the base lock doubled per earlier strike, at most the cap) and
/// forgets the failures. The strikes are forgotten once the subject stayed
/// unlocked for the cap (a deadline kept as data, from the caller's clock).
/// KEYS[1] = failures, KEYS[2] = lock deadline, KEYS[3] = strikes (a hash).
const FAIL: &str = r"
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local max = tonumber(ARGV[3])
local base = tonumber(ARGV[4])
local cap = tonumber(ARGV[6])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZADD', KEYS[1], now, ARGV[5])
redis.call('PEXPIRE', KEYS[1], window)
if redis.call('ZCARD', KEYS[1]) >= max then
  local strikes = 0
  local forget = tonumber(redis.call('HGET', KEYS[3], 'forget') or '0')
  if forget > now then
    strikes = tonumber(redis.call('HGET', KEYS[3], 'n') or '0')
  end
  strikes = strikes + 1
  local lock = base
  for _ = 2, strikes do
    lock = lock * 2
    if lock >= cap then break end
  end
  lock = math.min(lock, cap)
  redis.call('HSET', KEYS[3], 'n', strikes, 'forget', now + lock + cap)
  redis.call('PEXPIRE', KEYS[3], lock + cap)
  redis.call('SET', KEYS[2], now + lock, 'PX', lock)
  redis.call('DEL', KEYS[1])
  return lock
end
return 0
";

/// Raises the lowest accepted token generation of an account, never lowers
/// it, and keeps it until the last older token has expired anyway.
/// KEYS[1] = generation; ARGV = generation, milliseconds to keep it.
const GENERATION: &str = r"
local current = tonumber(redis.call('GET', KEYS[1]) or '-1')
local wanted = tonumber(ARGV[1])
if wanted > current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
elseif wanted == current and redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

pub struct RedisCounters {
    conn: RedisConn,
    prefix: String,
    hit: Script,
    fail: Script,
    generation: Script,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A member unique per hit, so two hits in the same millisecond both count.
fn member(now: i64) -> String {
    format!("{now}-{:016x}", rand::random::<u64>())
}

impl RedisCounters {
    /// Connects (failing fast when Redis is unreachable). Commands time out
    /// after two seconds, so a stalled Redis turns into an error, not a hang.
    pub async fn connect(target: &RedisTarget, prefix: &str) -> Result<Self, redis::RedisError> {
        let timeouts = Timeouts {
            connect: Duration::from_secs(1),
            response: Duration::from_secs(2),
        };
        let conn = RedisConn::connect(target, timeouts).await?;
        Ok(Self {
            conn,
            prefix: prefix.to_owned(),
            hit: Script::new(HIT),
            fail: Script::new(FAIL),
            generation: Script::new(GENERATION),
        })
    }

    fn window_key(&self, key: &str) -> String {
        format!("{}:{{{key}}}", self.prefix)
    }

    /// Failures, lock deadline and strikes of one subject (one hash tag).
    fn lock_keys(&self, subject: &str) -> [String; 3] {
        ["failures", "until", "strikes"]
            .map(|part| format!("{}:{{lock:{subject}}}:{part}", self.prefix))
    }

    fn generation_key(&self, user: UserId) -> String {
        format!("{}:{{generation:{}}}", self.prefix, user.0)
    }

    fn revoked_key(&self, jti: &str) -> String {
        format!("{}:{{revoked:{jti}}}", self.prefix)
    }
}

#[async_trait]
impl Counters for RedisCounters {
    async fn hit(
        &self,
        key: &str,
        window: Window,
        now: DateTime<Utc>,
    ) -> Result<Decision, CounterError> {
        let now = now.timestamp_millis();
        let wait: i64 = self
            .hit
            .key(self.window_key(key))
            .arg(now)
            .arg(millis(window.per))
            .arg(window.max)
            .arg(member(now))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(CounterError::Redis)?;
        Ok(if wait == 0 {
            Decision::Allowed
        } else {
            Decision::Limited {
                retry_after: wait_ms(wait),
            }
        })
    }

    async fn lock_remaining(
        &self,
        subject: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Duration>, CounterError> {
        let [_, until_key, _] = self.lock_keys(subject);
        let until: Option<i64> = self
            .conn
            .clone()
            .get(until_key)
            .await
            .map_err(CounterError::Redis)?;
        let now = now.timestamp_millis();
        Ok(until.filter(|&u| u > now).map(|u| wait_ms(u - now)))
    }

    async fn record_failure(
        &self,
        subject: &str,
        policy: &Lockout,
        now: DateTime<Utc>,
    ) -> Result<Option<Duration>, CounterError> {
        let [failures, until, strikes] = self.lock_keys(subject);
        let now = now.timestamp_millis();
        let locked: i64 = self
            .fail
            .key(failures)
            .key(until)
            .key(strikes)
            .arg(now)
            .arg(millis(policy.window))
            .arg(policy.failures)
            .arg(millis(policy.duration))
            .arg(member(now))
            .arg(millis(policy.max_duration))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(CounterError::Redis)?;
        Ok((locked > 0).then(|| wait_ms(locked)))
    }

    async fn clear_failures(&self, subject: &str) -> Result<(), CounterError> {
        let [failures, _, strikes] = self.lock_keys(subject);
        let _: () = self
            .conn
            .clone()
            .del(&[failures, strikes])
            .await
            .map_err(CounterError::Redis)?;
        Ok(())
    }

    async fn revoke(
        &self,
        jti: &str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), CounterError> {
        let ttl = (until - now).num_milliseconds().max(1);
        let _: () = self
            .conn
            .clone()
            .pset_ex(self.revoked_key(jti), 1, ttl as u64)
            .await
            .map_err(CounterError::Redis)?;
        Ok(())
    }

    async fn is_revoked(&self, jti: &str, _now: DateTime<Utc>) -> Result<bool, CounterError> {
        self.conn
            .clone()
            .exists(self.revoked_key(jti))
            .await
            .map_err(CounterError::Redis)
    }

    async fn revoke_generation(
        &self,
        user: UserId,
        generation: TokenGeneration,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), CounterError> {
        let keep = (until - now).num_milliseconds().max(1);
        let _: i64 = self
            .generation
            .key(self.generation_key(user))
            .arg(generation.0)
            .arg(keep)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(CounterError::Redis)?;
        Ok(())
    }

    async fn token_state(
        &self,
        jti: &str,
        user: UserId,
        _now: DateTime<Utc>,
    ) -> Result<TokenState, CounterError> {
        // Two commands side by side (one round trip on a single server,
        // multiplexed): the two keys may live in different cluster slots, where
        // one pipeline would be refused as cross-slot.
        let (mut a, mut b) = (self.conn.clone(), self.conn.clone());
        let (revoked, generation): (bool, Option<u64>) = tokio::try_join!(
            a.exists(self.revoked_key(jti)),
            b.get(self.generation_key(user)),
        )
        .map_err(CounterError::Redis)?;
        Ok(TokenState {
            revoked,
            min_generation: TokenGeneration(generation.unwrap_or_default()),
        })
    }

    async fn ping(&self) -> Result<(), CounterError> {
        let mut conn = self.conn.clone();
        let _: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(CounterError::Redis)?;
        if matches!(conn, RedisConn::Cluster(_)) {
            // A cluster that lost a master may still answer PING; its state
            // says whether every slot is served.
            let info: String = redis::cmd("CLUSTER")
                .arg("INFO")
                .query_async(&mut conn)
                .await
                .map_err(CounterError::Redis)?;
            if !info.lines().any(|line| line.trim() == "cluster_state:ok") {
                return Err(CounterError::Redis(redis::RedisError::from((
                    redis::ErrorKind::Client,
                    "the Redis Cluster reports a state other than ok",
                ))));
            }
        }
        Ok(())
    }

    fn backend(&self) -> CounterBackend {
        CounterBackend::Redis
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestRedisPrefix;

    #[tokio::test]
    async fn contract_holds_on_redis() {
        let Some(redis) = TestRedisPrefix::create("kavro-test") else {
            return;
        };
        let counters =
            RedisCounters::connect(&RedisTarget::Single(redis.url.clone()), &redis.prefix)
                .await
                .unwrap();
        super::super::contract::run(&counters, "redis").await;
    }

    /// The same contract on a three-master cluster: every script's keys in
    /// one slot (else Redis answers CROSSSLOT), the token check's two keys in
    /// any slots, subjects spread over all masters.
    #[tokio::test]
    async fn contract_holds_on_a_redis_cluster() {
        let Some(cluster) = crate::testing::PrivateRedisCluster::start() else {
            return;
        };
        let counters = RedisCounters::connect(&RedisTarget::Cluster(cluster.urls()), "kavro-test")
            .await
            .unwrap();
        for round in 0..4 {
            super::super::contract::run(&counters, &format!("cluster-{round}")).await;
        }
    }

    /// The part of a key Redis Cluster hashes: the text between the first
    /// `{` and the next `}`, if not empty; else the whole key.
    fn hash_tag(key: &str) -> &str {
        key.find('{')
            .and_then(|open| {
                let rest = &key[open + 1..];
                rest.find('}')
                    .filter(|&close| close > 0)
                    .map(|close| &rest[..close])
            })
            .unwrap_or(key)
    }

    /// Redis Cluster refuses a script whose keys hash to different slots:
    /// the three keys of the lockout script share one tag for any subject,
    /// also one that contains braces (a username cannot, a network could in
    /// principle carry anything).
    #[tokio::test]
    async fn script_keys_share_a_slot() {
        let Some(redis) = TestRedisPrefix::create("kavro-test") else {
            return;
        };
        let counters =
            RedisCounters::connect(&RedisTarget::Single(redis.url.clone()), &redis.prefix)
                .await
                .unwrap();
        for subject in ["alice|10.0.0.0/24", "}{x}", "{a}b", "", "{}"] {
            let keys = counters.lock_keys(subject);
            let tags: Vec<&str> = keys.iter().map(|k| hash_tag(k)).collect();
            assert!(tags.iter().all(|t| *t == tags[0]), "{subject:?}: {keys:?}");
            assert!(
                !tags[0].starts_with(&redis.prefix),
                "the tag is the subject's, so subjects spread over the cluster: {keys:?}"
            );
        }
        assert_eq!(hash_tag("p:{user:1}:x"), "user:1");
        assert_eq!(hash_tag("p:{}:x"), "p:{}:x");
    }

    #[test]
    fn counter_errors_keep_redis_error_as_source() {
        let err = CounterError::Redis(redis::RedisError::from((
            redis::ErrorKind::Io,
            "connection refused",
        )));
        let source = std::error::Error::source(&err).expect("the Redis error is the source");
        assert!(
            source.to_string().contains("connection refused"),
            "{source}"
        );
        assert_eq!(
            crate::error::error_chain(&err),
            format!("Redis counters unavailable: {source}")
        );
    }

    #[tokio::test]
    async fn unreachable_redis_fails_fast() {
        // Nothing listens on port 1: connecting is an error the caller can report.
        assert!(
            RedisCounters::connect(&RedisTarget::Single("redis://127.0.0.1:1".into()), "x")
                .await
                .is_err()
        );
    }
}
