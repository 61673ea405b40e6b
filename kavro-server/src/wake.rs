//! Long-poll wake-ups: a request waiting on an empty inbox sleeps on a
//! per-user channel here and is woken the moment a message for that user is
//! stored, without polling the database.
//!
//! With Redis configured, every store is also published on one Redis channel
//! that every instance subscribes to, so a message sent through instance A
//! wakes a long-poll held by instance B. If the subscription drops, every
//! local waiter is woken (it re-reads its inbox, so nothing is missed) and the
//! subscriber reconnects with backoff.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt as _;
use kavro_proto::UserId;
use redis::AsyncCommands as _;
use redis::aio::ConnectionManager;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Per-user wake-up channels of this instance.
#[derive(Default)]
struct Waiters {
    channels: Mutex<HashMap<UserId, watch::Sender<u64>>>,
}

impl Waiters {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<UserId, watch::Sender<u64>>> {
        self.channels.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wake(&self, user: UserId) {
        if let Some(sender) = self.lock().get(&user) {
            sender.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    fn wake_all(&self) {
        for sender in self.lock().values() {
            sender.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

pub struct WakeHub {
    waiters: Arc<Waiters>,
    redis: Option<RedisLink>,
    shutdown: CancellationToken,
}

struct RedisLink {
    publisher: ConnectionManager,
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
}

/// A registered interest in a user's inbox. Register *before* reading the
/// inbox, then [`Subscription::wait`]: a message stored in between is not missed.
pub struct Subscription {
    receiver: watch::Receiver<u64>,
    user: UserId,
    waiters: Arc<Waiters>,
    shutdown: CancellationToken,
}

#[derive(Debug, thiserror::Error)]
#[error("too many open long-polls for this user")]
pub struct TooManyWaiters;

impl WakeHub {
    /// Wake-ups within this process only.
    pub fn local() -> Self {
        Self {
            waiters: Arc::new(Waiters::default()),
            redis: None,
            shutdown: CancellationToken::new(),
        }
    }

    /// Wake-ups across every instance sharing this Redis.
    pub async fn with_redis(url: &str, prefix: &str) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(1)));
        let publisher = ConnectionManager::new_with_config(client.clone(), config).await?;
        let channel = format!("{prefix}:wake");
        let hub = Self {
            waiters: Arc::new(Waiters::default()),
            redis: Some(RedisLink {
                publisher,
                channel: channel.clone(),
            }),
            shutdown: CancellationToken::new(),
        };
        // Subscribe before returning, so no wake-up published after start-up is missed.
        let pubsub = subscribe(&client, &channel).await?;
        tokio::spawn(listen(
            client,
            channel,
            pubsub,
            hub.waiters.clone(),
            hub.shutdown.clone(),
        ));
        Ok(hub)
    }

    /// Registers interest in `user`'s inbox; at most `max` at once per user.
    pub fn subscribe(&self, user: UserId, max: u32) -> Result<Subscription, TooManyWaiters> {
        let mut channels = self.waiters.lock();
        let sender = channels.entry(user).or_insert_with(|| watch::channel(0).0);
        if sender.receiver_count() >= max as usize {
            return Err(TooManyWaiters);
        }
        let receiver = sender.subscribe();
        drop(channels);
        Ok(Subscription {
            receiver,
            user,
            waiters: self.waiters.clone(),
            shutdown: self.shutdown.clone(),
        })
    }

    /// A message for `user` was stored: wake its long-polls here and on every
    /// other instance.
    pub async fn notify(&self, user: UserId) {
        self.waiters.wake(user);
        if let Some(link) = &self.redis {
            let result: Result<(), _> = link.publisher.clone().publish(&link.channel, user.0).await;
            if let Err(err) = result {
                // Other instances' waiters then find the message at their
                // timeout; the message itself is safely stored.
                tracing::warn!(error = %err, "could not publish a long-poll wake-up to Redis");
            }
        }
    }

    /// Answers every open long-poll now (on shutdown).
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Open long-polls on this instance.
    pub fn open_waiters(&self) -> usize {
        self.waiters
            .lock()
            .values()
            .map(watch::Sender::receiver_count)
            .sum()
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
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut channels = self.waiters.lock();
        // This receiver still counts until dropped, hence `<= 1`.
        if channels
            .get(&self.user)
            .is_some_and(|s| s.receiver_count() <= 1)
        {
            channels.remove(&self.user);
        }
    }
}

async fn subscribe(
    client: &redis::Client,
    channel: &str,
) -> Result<redis::aio::PubSub, redis::RedisError> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    Ok(pubsub)
}

/// Forwards Redis wake-ups to local waiters; reconnects when the link drops.
async fn listen(
    client: redis::Client,
    channel: String,
    mut pubsub: redis::aio::PubSub,
    waiters: Arc<Waiters>,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        {
            let mut messages = pubsub.on_message();
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    message = messages.next() => match message {
                        Some(message) => {
                            if let Ok(user) = message.get_payload::<i64>() {
                                waiters.wake(UserId(user));
                            }
                        }
                        None => break,
                    },
                }
            }
        }
        tracing::warn!("lost the Redis wake-up subscription; reconnecting");
        // Wake-ups may have been lost while disconnected: have everyone re-check.
        waiters.wake_all();
        pubsub = loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            match subscribe(&client, &channel).await {
                Ok(pubsub) => {
                    tracing::info!("Redis wake-up subscription restored");
                    waiters.wake_all();
                    backoff = Duration::from_millis(100);
                    break pubsub;
                }
                Err(_) => backoff = (backoff * 2).min(Duration::from_secs(5)),
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn wakes_the_right_user() {
        let hub = WakeHub::local();
        let mut alice = hub.subscribe(UserId(1), 4).unwrap();
        let mut bob = hub.subscribe(UserId(2), 4).unwrap();
        hub.notify(UserId(1)).await;
        assert_eq!(alice.wait(Duration::from_secs(30)).await, WakeReason::Woken);
        assert_eq!(
            bob.wait(Duration::from_secs(30)).await,
            WakeReason::TimedOut
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_wake_before_waiting_is_not_lost() {
        let hub = WakeHub::local();
        let mut sub = hub.subscribe(UserId(1), 4).unwrap();
        hub.notify(UserId(1)).await; // between subscribe and wait: the inbox read
        assert_eq!(sub.wait(Duration::from_secs(30)).await, WakeReason::Woken);
    }

    #[tokio::test(start_paused = true)]
    async fn caps_waiters_and_cleans_up() {
        let hub = WakeHub::local();
        let a = hub.subscribe(UserId(1), 2).unwrap();
        let b = hub.subscribe(UserId(1), 2).unwrap();
        assert!(hub.subscribe(UserId(1), 2).is_err());
        assert_eq!(hub.open_waiters(), 2);
        drop(a);
        drop(b);
        assert_eq!(hub.open_waiters(), 0);
        assert!(hub.waiters.lock().is_empty(), "no entry left behind");
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_answers_at_once() {
        let hub = WakeHub::local();
        let mut sub = hub.subscribe(UserId(1), 4).unwrap();
        hub.shutdown();
        assert_eq!(
            sub.wait(Duration::from_secs(60)).await,
            WakeReason::Shutdown
        );
    }

    #[tokio::test]
    async fn wakes_across_instances_through_redis() {
        let Some(url) = crate::testing::redis_url() else {
            return;
        };
        let prefix = format!("kavro-test-{}", uuid::Uuid::new_v4().simple());
        let a = WakeHub::with_redis(&url, &prefix).await.unwrap();
        let b = WakeHub::with_redis(&url, &prefix).await.unwrap();
        let mut on_b = b.subscribe(UserId(7), 4).unwrap();
        a.notify(UserId(7)).await;
        assert_eq!(on_b.wait(Duration::from_secs(10)).await, WakeReason::Woken);
    }
}
