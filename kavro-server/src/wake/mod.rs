//! Long-poll wake-ups: a request waiting on an empty inbox sleeps on a
//! per-user channel here (per-device for v2 queues) and is woken the moment
//! a message for that user or device is stored, without polling the database.
//!
//! With Redis configured (one server or a cluster), every store is also
//! published on one Redis channel that every instance subscribes to, so a
//! message sent through instance A wakes a long-poll held by instance B
//! ([`redis`]). If the subscription drops, every local waiter is woken (it
//! re-reads its inbox, so nothing is missed) and the subscriber reconnects.

mod redis;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ::redis::AsyncCommands as _;
use kavro_proto::UserId;
use kavro_proto::v2::MlsDeviceId;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::redis_link::{RedisConn, RedisTarget};

/// One user's waiters on this instance: a channel that wakes them all, and
/// the open long-polls, oldest first.
struct UserWaiters {
    wake: watch::Sender<u64>,
    open: VecDeque<(u64, CancellationToken)>,
}

/// Whose inbox a long-poll waits on: a v1 user's, or a v2 device's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WakeKey {
    User(UserId),
    Device(MlsDeviceId),
}

impl WakeKey {
    /// Parses a Redis wake-up: a bare number is a user (the v1 form), `d:1,2`
    /// lists devices.
    fn parse_payload(payload: &str) -> Vec<Self> {
        if let Some(devices) = payload.strip_prefix("d:") {
            devices
                .split(',')
                .filter_map(|d| d.parse().ok())
                .map(|d| Self::Device(MlsDeviceId(d)))
                .collect()
        } else {
            payload
                .parse()
                .map(|u| vec![Self::User(UserId(u))])
                .unwrap_or_default()
        }
    }
}

/// Per-user (and per-device) wake-up channels of this instance.
#[derive(Default)]
struct Waiters {
    users: Mutex<HashMap<WakeKey, UserWaiters>>,
    next_id: std::sync::atomic::AtomicU64,
}

impl Waiters {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<WakeKey, UserWaiters>> {
        self.users.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wake(&self, key: WakeKey) {
        if let Some(waiters) = self.lock().get(&key) {
            waiters.wake.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    fn wake_all(&self) {
        for waiters in self.lock().values() {
            waiters.wake.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

pub struct WakeHub {
    waiters: Arc<Waiters>,
    redis: Option<RedisLink>,
    shutdown: CancellationToken,
}

struct RedisLink {
    publisher: RedisConn,
    channel: String,
}

/// Why a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WakeReason {
    /// Something was stored for this user (or the hub lost track and asks for a re-check).
    Woken,
    TimedOut,
    /// The server is shutting down.
    Shutdown,
    /// A newer long-poll of the same user took this one's place.
    Replaced,
}

/// A registered interest in a user's inbox. Register *before* reading the
/// inbox, then [`Subscription::wait`]: a message stored in between is not missed.
pub struct Subscription {
    receiver: watch::Receiver<u64>,
    user: WakeKey,
    id: u64,
    replaced: CancellationToken,
    waiters: Arc<Waiters>,
    shutdown: CancellationToken,
}

impl WakeHub {
    /// Wake-ups within this process only.
    pub fn local() -> Self {
        Self {
            waiters: Arc::new(Waiters::default()),
            redis: None,
            shutdown: CancellationToken::new(),
        }
    }

    /// Wake-ups across every instance sharing this Redis (or cluster).
    pub async fn with_redis(
        target: &RedisTarget,
        prefix: &str,
    ) -> Result<Self, ::redis::RedisError> {
        let waiters = Arc::new(Waiters::default());
        let shutdown = CancellationToken::new();
        let channel = format!("{prefix}:wake");
        let publisher = redis::link(target, &channel, waiters.clone(), shutdown.clone()).await?;
        Ok(Self {
            waiters,
            redis: Some(RedisLink { publisher, channel }),
            shutdown,
        })
    }

    /// Registers interest in `user`'s inbox. At most `max` stay open per
    /// user: past that the oldest is answered at once (its client has most
    /// likely gone: a client that drops a long-poll and reconnects must not
    /// lock itself out while the old one waits out its time).
    pub fn subscribe(&self, user: UserId, max: u32) -> Subscription {
        self.subscribe_key(WakeKey::User(user), max)
    }

    /// Registers interest in a v2 device's queue (same rules as [`Self::subscribe`]).
    pub fn subscribe_device(&self, device: MlsDeviceId, max: u32) -> Subscription {
        self.subscribe_key(WakeKey::Device(device), max)
    }

    fn subscribe_key(&self, user: WakeKey, max: u32) -> Subscription {
        let id = self
            .waiters
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let replaced = CancellationToken::new();
        let mut users = self.waiters.lock();
        let waiters = users.entry(user).or_insert_with(|| UserWaiters {
            wake: watch::channel(0).0,
            open: VecDeque::new(),
        });
        while waiters.open.len() >= max.max(1) as usize {
            if let Some((_, oldest)) = waiters.open.pop_front() {
                oldest.cancel();
            }
        }
        waiters.open.push_back((id, replaced.clone()));
        let receiver = waiters.wake.subscribe();
        drop(users);
        Subscription {
            receiver,
            user,
            id,
            replaced,
            waiters: self.waiters.clone(),
            shutdown: self.shutdown.clone(),
        }
    }

    /// A message for `user` was stored: wake its long-polls here at once and,
    /// without holding up the caller, on every other instance.
    pub fn notify(&self, user: UserId) {
        self.waiters.wake(WakeKey::User(user));
        self.publish(user.0.to_string());
    }

    /// Entries were queued for `devices`: wake their long-polls here and,
    /// with one Redis message, on every other instance.
    pub fn notify_devices(&self, devices: &[MlsDeviceId]) {
        if devices.is_empty() {
            return;
        }
        for device in devices {
            self.waiters.wake(WakeKey::Device(*device));
        }
        let list: Vec<String> = devices.iter().map(|d| d.0.to_string()).collect();
        self.publish(format!("d:{}", list.join(",")));
    }

    fn publish(&self, payload: String) {
        if let Some(link) = &self.redis {
            let mut publisher = link.publisher.clone();
            let channel = link.channel.clone();
            tokio::spawn(async move {
                let result: Result<(), _> = publisher.publish(&channel, payload).await;
                if let Err(err) = result {
                    // Other instances' waiters then find the message on their
                    // next poll; the message itself is safely stored.
                    tracing::warn!(error = %err, "could not publish a long-poll wake-up to Redis");
                }
            });
        }
    }

    /// Answers every open long-poll now (on shutdown).
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Open long-polls on this instance.
    pub fn open_waiters(&self) -> usize {
        self.waiters.lock().values().map(|w| w.open.len()).sum()
    }
}

impl Drop for WakeHub {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Subscription {
    /// Sleeps until a wake-up, the timeout, or shutdown.
    pub async fn wait(&mut self, timeout: Duration) -> WakeReason {
        if self.shutdown.is_cancelled() {
            return WakeReason::Shutdown;
        }
        tokio::select! {
            // A closed channel (cannot happen while we hold the hub) also means "re-check".
            _ = self.receiver.changed() => WakeReason::Woken,
            () = tokio::time::sleep(timeout) => WakeReason::TimedOut,
            () = self.shutdown.cancelled() => WakeReason::Shutdown,
            () = self.replaced.cancelled() => WakeReason::Replaced,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut users = self.waiters.lock();
        if let Some(waiters) = users.get_mut(&self.user) {
            waiters.open.retain(|(id, _)| *id != self.id);
            if waiters.open.is_empty() {
                users.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn wakes_the_right_user() {
        let hub = WakeHub::local();
        let mut alice = hub.subscribe(UserId(1), 4);
        let mut bob = hub.subscribe(UserId(2), 4);
        hub.notify(UserId(1));
        assert_eq!(alice.wait(Duration::from_secs(30)).await, WakeReason::Woken);
        assert_eq!(
            bob.wait(Duration::from_secs(30)).await,
            WakeReason::TimedOut
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_wake_before_waiting_is_not_lost() {
        let hub = WakeHub::local();
        let mut sub = hub.subscribe(UserId(1), 4);
        hub.notify(UserId(1)); // between subscribe and wait: the inbox read
        assert_eq!(sub.wait(Duration::from_secs(30)).await, WakeReason::Woken);
    }

    #[tokio::test(start_paused = true)]
    async fn past_the_cap_the_oldest_long_poll_gives_way() {
        let hub = WakeHub::local();
        let mut a = hub.subscribe(UserId(1), 2);
        let mut b = hub.subscribe(UserId(1), 2);
        let c = hub.subscribe(UserId(1), 2);
        assert_eq!(hub.open_waiters(), 2);
        assert_eq!(a.wait(Duration::from_secs(60)).await, WakeReason::Replaced);
        assert_eq!(b.wait(Duration::from_secs(1)).await, WakeReason::TimedOut);
        drop(a);
        drop(b);
        drop(c);
        assert_eq!(hub.open_waiters(), 0);
        assert!(hub.waiters.lock().is_empty(), "no entry left behind");
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_answers_at_once() {
        let hub = WakeHub::local();
        let mut sub = hub.subscribe(UserId(1), 4);
        hub.shutdown();
        assert_eq!(
            sub.wait(Duration::from_secs(60)).await,
            WakeReason::Shutdown
        );
    }

    #[tokio::test(start_paused = true)]
    async fn devices_and_users_are_apart() {
        let hub = WakeHub::local();
        let mut user = hub.subscribe(UserId(5), 4);
        let mut device = hub.subscribe_device(MlsDeviceId(5), 4);
        let mut other = hub.subscribe_device(MlsDeviceId(6), 4);
        hub.notify_devices(&[MlsDeviceId(5)]);
        assert_eq!(
            device.wait(Duration::from_secs(30)).await,
            WakeReason::Woken
        );
        assert_eq!(
            user.wait(Duration::from_secs(1)).await,
            WakeReason::TimedOut
        );
        assert_eq!(
            other.wait(Duration::from_secs(1)).await,
            WakeReason::TimedOut
        );
        assert_eq!(
            WakeKey::parse_payload("d:1,2,x"),
            vec![
                WakeKey::Device(MlsDeviceId(1)),
                WakeKey::Device(MlsDeviceId(2))
            ]
        );
        assert_eq!(WakeKey::parse_payload("7"), vec![WakeKey::User(UserId(7))]);
        assert!(WakeKey::parse_payload("junk").is_empty());
    }

    #[tokio::test]
    async fn wakes_across_instances_through_redis() {
        let Some(redis) = crate::testing::TestRedisPrefix::create("kavro-test") else {
            return;
        };
        let target = RedisTarget::Single(redis.url.clone());
        let a = WakeHub::with_redis(&target, &redis.prefix).await.unwrap();
        let b = WakeHub::with_redis(&target, &redis.prefix).await.unwrap();
        let mut on_b = b.subscribe(UserId(7), 4);
        let mut device_on_b = b.subscribe_device(MlsDeviceId(8), 4);
        a.notify(UserId(7));
        assert_eq!(on_b.wait(Duration::from_secs(10)).await, WakeReason::Woken);
        a.notify_devices(&[MlsDeviceId(3), MlsDeviceId(8)]);
        assert_eq!(
            device_on_b.wait(Duration::from_secs(10)).await,
            WakeReason::Woken
        );
    }

    /// Across instances on a Redis Cluster: a PUBLISH on one node reaches the
    /// subscriber whichever node each hub talks to, also for a hub that only
    /// knows one seed node.
    #[tokio::test]
    async fn wakes_across_instances_through_a_cluster() {
        let Some(cluster) = crate::testing::PrivateRedisCluster::start() else {
            return;
        };
        let urls = cluster.urls();
        let a = WakeHub::with_redis(&RedisTarget::Cluster(urls.clone()), "kavro-test")
            .await
            .unwrap();
        let b = WakeHub::with_redis(&RedisTarget::Cluster(vec![urls[2].clone()]), "kavro-test")
            .await
            .unwrap();
        for user in 0..20 {
            let mut on_b = b.subscribe(UserId(user), 4);
            a.notify(UserId(user));
            assert_eq!(on_b.wait(Duration::from_secs(10)).await, WakeReason::Woken);
        }
        let mut device_on_a = a.subscribe_device(MlsDeviceId(8), 4);
        b.notify_devices(&[MlsDeviceId(8)]);
        assert_eq!(
            device_on_a.wait(Duration::from_secs(10)).await,
            WakeReason::Woken
        );
    }
}
