//! The Redis side of the wake-ups: one channel (`<prefix>:wake`) that every
//! instance publishes to and subscribes to, on a single server or a cluster.
//!
//! On a cluster, a plain `PUBLISH` reaches the subscribers of every node
//! (Redis Cluster forwards it over the cluster bus), so subscribing once, on
//! any node, is enough; the cluster client picks the node owning the
//! channel's slot and subscribes again after a reconnect (it needs RESP3 for
//! that: messages arrive as push frames). Either way, whenever the link may
//! have missed messages, every local waiter is woken to re-read its inbox:
//! a wake-up may be late, never lost.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use redis::{PushInfo, PushKind, RedisResult};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Waiters, WakeKey};
use crate::redis_link::{RedisConn, RedisTarget, Timeouts};

const TIMEOUTS: Timeouts = Timeouts {
    connect: Duration::from_secs(1),
    response: Duration::from_secs(1),
};

/// Connects a publisher and a subscription for `channel` and spawns the task
/// that forwards wake-ups to `waiters`; subscribed before it returns, so no
/// wake-up published after start-up is missed.
pub(super) async fn link(
    target: &RedisTarget,
    channel: &str,
    waiters: Arc<Waiters>,
    shutdown: CancellationToken,
) -> RedisResult<RedisConn> {
    match target {
        RedisTarget::Single(url) => {
            let publisher = RedisConn::connect(target, TIMEOUTS).await?;
            let client = redis::Client::open(url.as_str())?;
            let pubsub = subscribe(&client, channel).await?;
            tokio::spawn(listen(
                client,
                channel.to_owned(),
                pubsub,
                waiters,
                shutdown,
            ));
            Ok(publisher)
        }
        RedisTarget::Cluster(nodes) => {
            let (tx, rx) = mpsc::unbounded_channel();
            let mut conn = crate::redis_link::cluster_builder(nodes, TIMEOUTS)
                .use_protocol(redis::ProtocolVersion::RESP3)
                .push_sender(tx)
                .build()?
                .get_async_connection()
                .await?;
            conn.subscribe(channel).await?;
            tokio::spawn(listen_pushes(rx, waiters, shutdown));
            // The same connection publishes: RESP3 lets one connection do both.
            Ok(RedisConn::Cluster(conn))
        }
    }
}

fn forward(waiters: &Waiters, payload: &str) {
    for key in WakeKey::parse_payload(payload) {
        waiters.wake(key);
    }
}

/// Forwards the cluster connection's push frames: messages to their waiters;
/// a lost node or a (re-)subscription to everyone, as a re-check.
async fn listen_pushes(
    mut pushes: mpsc::UnboundedReceiver<PushInfo>,
    waiters: Arc<Waiters>,
    shutdown: CancellationToken,
) {
    loop {
        let push = tokio::select! {
            () = shutdown.cancelled() => return,
            push = pushes.recv() => match push {
                Some(push) => push,
                None => return,
            },
        };
        match push.kind {
            PushKind::Message => {
                // [channel, payload]
                if let Some(payload) = push.data.get(1)
                    && let Ok(payload) = redis::from_redis_value_ref::<String>(payload)
                {
                    forward(&waiters, &payload);
                }
            }
            PushKind::Disconnection => {
                tracing::warn!("a Redis Cluster node dropped; long-polls re-check their inboxes");
                waiters.wake_all();
            }
            // The client subscribes again after a reconnect: what was
            // published in between is lost, so everyone re-checks.
            PushKind::Subscribe => waiters.wake_all(),
            _ => {}
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
                            if let Ok(payload) = message.get_payload::<String>() {
                                forward(&waiters, &payload);
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
