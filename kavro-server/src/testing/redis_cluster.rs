//! A private three-master Redis Cluster on free loopback ports, for tests
//! that run the relay on a cluster and restart one of its masters. Every
//! process and the temporary directory (the nodes' cluster config files)
//! go when the guard is dropped, also when the test fails.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{skip, spawn_redis_with};

/// How fast the survivors declare a killed master failed (and the cluster
/// down); short, so a test sees the outage within seconds.
const NODE_TIMEOUT_MS: &str = "1000";

struct Node {
    port: u16,
    bus_port: u16,
    child: Option<Child>,
}

pub struct PrivateRedisCluster {
    nodes: Vec<Node>,
    dir: PathBuf,
}

impl PrivateRedisCluster {
    /// Starts three masters and joins them (`redis-cli --cluster create`);
    /// `None` (the test skips, or fails under `KAVRO_REQUIRE_SERVICES=1`)
    /// when `redis-server` or `redis-cli` cannot run.
    pub fn start() -> Option<Self> {
        let started = Self::try_start();
        if started.is_none() {
            skip("cannot start a Redis Cluster (redis-server and redis-cli)");
        }
        started
    }

    fn try_start() -> Option<Self> {
        let dir = std::env::temp_dir().join(format!(
            "kavro-redis-cluster-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).ok()?;
        let ports = free_ports(6)?;
        // Built first, so an early return below still cleans up (Drop).
        let mut cluster = Self {
            nodes: ports
                .chunks(2)
                .map(|pair| Node {
                    port: pair[0],
                    bus_port: pair[1],
                    child: None,
                })
                .collect(),
            dir,
        };
        for i in 0..cluster.nodes.len() {
            cluster.nodes[i].child = Some(spawn_redis_with(
                cluster.nodes[i].port,
                &cluster.node_args(i),
            )?);
        }
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(
                cluster
                    .nodes
                    .iter()
                    .map(|n| format!("127.0.0.1:{}", n.port)),
            )
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .ok()?;
        (created.success() && cluster.wait_for_state("ok")).then_some(cluster)
    }

    fn node_args(&self, i: usize) -> Vec<String> {
        let node = &self.nodes[i];
        let config = self.dir.join(format!("nodes-{}.conf", node.port));
        vec![
            "--cluster-enabled".into(),
            "yes".into(),
            "--cluster-config-file".into(),
            config.display().to_string(),
            "--cluster-port".into(),
            node.bus_port.to_string(),
            "--cluster-node-timeout".into(),
            NODE_TIMEOUT_MS.into(),
            "--dir".into(),
            self.dir.display().to_string(),
        ]
    }

    /// The seed URLs of every master.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port))
            .collect()
    }

    /// Kills master `i` (as a crash would: SIGKILL).
    pub fn stop(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts master `i` again with its cluster config file: it rejoins
    /// with its slots, empty (no persistence).
    pub fn restart(&mut self, i: usize) {
        self.stop(i);
        let child = spawn_redis_with(self.nodes[i].port, &self.node_args(i))
            .expect("restart a cluster node on its port");
        self.nodes[i].child = Some(child);
    }

    /// Waits (at most 20 s) until every running node reports
    /// `cluster_state:<state>` (`ok`, or `fail` once a master is missing).
    pub fn wait_for_state(&self, state: &str) -> bool {
        let want = format!("cluster_state:{state}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let running = self.nodes.iter().filter(|n| n.child.is_some());
            if running
                .map(|n| cluster_info(n.port))
                .all(|info| info.is_some_and(|info| info.contains(&want)))
            {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for PrivateRedisCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.stop(i);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `CLUSTER INFO` of one node, if it answers within a second.
fn cluster_info(port: u16) -> Option<String> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
    let mut conn = client
        .get_connection_with_timeout(Duration::from_secs(1))
        .ok()?;
    redis::cmd("CLUSTER").arg("INFO").query(&mut conn).ok()
}

/// `n` distinct free loopback ports (held together while picked, so none repeats).
fn free_ports(n: usize) -> Option<Vec<u16>> {
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").ok())
        .collect::<Option<_>>()?;
    listeners
        .iter()
        .map(|l| l.local_addr().ok().map(|a| a.port()))
        .collect()
}
