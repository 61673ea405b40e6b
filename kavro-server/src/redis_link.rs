//! Where the shared counters and wake-ups live: one Redis server
//! (`redis_url`) or a Redis Cluster (`redis_cluster`, seed nodes), and one
//! connection type over both, so the counters and the wake hub are written
//! once.
//!
//! A cluster connection routes each command by its key's hash slot and
//! follows `MOVED`/`ASK`; a Lua script must therefore only touch keys of one
//! slot (limits/redis.rs gives every key of a script one hash tag), and a
//! pipeline must not span slots (the token check issues two commands side by
//! side instead).

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

/// The configured Redis deployment.
#[derive(Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One server (or a proxy in front of several), `redis://…` / `rediss://…`.
    Single(String),
    /// A Redis Cluster, reached through these seed nodes; the client learns
    /// the rest of the topology from them.
    Cluster(Vec<String>),
}

impl RedisTarget {
    /// The URLs for a log line or an error message, passwords hidden.
    pub fn redacted(&self) -> String {
        match self {
            Self::Single(url) => crate::config::redact_url(url),
            Self::Cluster(nodes) => {
                let nodes: Vec<String> =
                    nodes.iter().map(|n| crate::config::redact_url(n)).collect();
                format!("cluster {}", nodes.join(","))
            }
        }
    }
}

impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// How long a connection attempt and a reply may take: a stalled Redis turns
/// into an error (and a `503` or a memory fallback), never into a hang.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub response: Duration,
}

/// A connection to a single server (reconnecting by itself) or to a cluster
/// (routing by slot, reconnecting per node). Cheap to clone; clones share
/// the underlying connections.
#[derive(Clone)]
pub enum RedisConn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl RedisConn {
    /// Connects, failing fast when no node answers.
    pub async fn connect(target: &RedisTarget, timeouts: Timeouts) -> RedisResult<Self> {
        match target {
            RedisTarget::Single(url) => {
                let client = redis::Client::open(url.as_str())?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeouts.connect))
                    .set_response_timeout(Some(timeouts.response))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500));
                Ok(Self::Single(
                    ConnectionManager::new_with_config(client, config).await?,
                ))
            }
            RedisTarget::Cluster(nodes) => Ok(Self::Cluster(
                cluster_builder(nodes, timeouts)
                    .build()?
                    .get_async_connection()
                    .await?,
            )),
        }
    }
}

/// The cluster client settings shared by the counters and the wake hub.
pub fn cluster_builder(nodes: &[String], timeouts: Timeouts) -> ClusterClientBuilder {
    ClusterClientBuilder::new(nodes.to_vec())
        .connection_timeout(timeouts.connect)
        .response_timeout(timeouts.response)
        // One retry after a redirect or a lost node, then the caller decides.
        .retries(1)
        .min_retry_wait(50)
        .max_retry_wait(500)
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(conn) => conn.req_packed_command(cmd),
            Self::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Self::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(conn) => conn.get_db(),
            Self::Cluster(conn) => conn.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_passwords() {
        let single = RedisTarget::Single("redis://:hunter2@cache:6379".into());
        let cluster = RedisTarget::Cluster(vec![
            "redis://:hunter2@a:7000".into(),
            "redis://:hunter2@b:7001".into(),
        ]);
        for target in [single, cluster] {
            let shown = format!("{target:?}");
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("***"), "{shown}");
        }
    }

    #[tokio::test]
    async fn an_unreachable_cluster_fails_fast() {
        let timeouts = Timeouts {
            connect: Duration::from_millis(500),
            response: Duration::from_millis(500),
        };
        let target = RedisTarget::Cluster(vec!["redis://127.0.0.1:1".into()]);
        // A generous guard, not a timing claim: a dead seed list is an error, not a hang.
        let result = tokio::time::timeout(
            Duration::from_secs(30),
            RedisConn::connect(&target, timeouts),
        )
        .await
        .expect("connecting to a dead seed list ends");
        assert!(result.is_err());
    }
}
