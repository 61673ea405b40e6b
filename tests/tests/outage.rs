//! Dependencies failing under load: a private PostgreSQL (`initdb` + `pg_ctl`
//! in a temporary directory) and a private Redis (`redis-server` on a free
//! port) are stopped and restarted while clients keep sending. While one is
//! down the relay answers `503` promptly (no hang, no `500`); afterwards it
//! recovers by itself. The machine's shared services are never touched.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use kavro_e2e::{Http, Server, ServerOptions, skip_unless};
use kavro_server::testing::PrivateRedis;
use serde_json::{Value, json};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// PostgreSQL's server binaries (`/usr/lib/postgresql/<v>/bin`), if installed.
fn pg_bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop()
}

/// A throw-away PostgreSQL cluster, run as the `postgres` user when we are root
/// (PostgreSQL refuses to run as root).
struct PrivatePostgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

impl PrivatePostgres {
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }

    fn create() -> Option<Self> {
        let bin = pg_bin_dir()?;
        let dir = tempfile::Builder::new()
            .prefix("kavro-pg-")
            .tempdir()
            .ok()?;
        if is_root() {
            Command::new("chown")
                .args(["-R", "postgres"])
                .arg(dir.path())
                .status()
                .ok()?;
        }
        let pg = Self {
            bin,
            dir,
            port: free_port(),
        };
        let data = pg.data();
        let initdb = pg
            .command("initdb")
            .args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .ok()?;
        initdb.success().then_some(pg)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let status = self
            .command("pg_ctl")
            .args(["-w", "-D"])
            .arg(self.data())
            .args(["-o", &options, "-l"])
            .arg(self.dir.path().join("log"))
            .arg("start")
            .stdout(Stdio::null())
            .status()
            .expect("pg_ctl start");
        assert!(status.success(), "private PostgreSQL did not start");
    }

    /// Immediate stop: connections are cut as in a crash.
    fn stop(&self) {
        let _ = self
            .command("pg_ctl")
            .args(["-D"])
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .status();
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One send: what went out and what the relay answered (`0`: no answer).
#[derive(Clone, Debug)]
struct Sent {
    status: u16,
    took: Duration,
    /// Unique per send, so the inbox shows which send each message is.
    ciphertext: String,
    id: Option<i64>,
}

/// Sends one message with unique content and its own `client_msg_id`.
fn send_unique(http: &Http, token: &str, recipient: i64) -> Sent {
    let client_msg_id = uuid::Uuid::new_v4();
    let ciphertext = BASE64.encode(format!("outage test message {client_msg_id}"));
    let body = json!({
        "recipient_id": recipient,
        "ciphertext": ciphertext,
        "ephemeral_pubkey": "ab".repeat(32),
        "client_msg_id": client_msg_id,
    });
    let started = Instant::now();
    let answer = http.try_post("/messages", Some(token), &body);
    Sent {
        status: answer.as_ref().map_or(0, |(status, _)| *status),
        took: started.elapsed(),
        ciphertext,
        id: answer.and_then(|(_, body)| body["id"].as_i64()),
    }
}

/// Senders that keep sending and record every send.
struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<Mutex<Vec<Sent>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(url: &str, token: &str, recipient: i64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..3)
            .map(|_| {
                let (url, token) = (url.to_owned(), token.to_owned());
                let (stop, sent) = (stop.clone(), sent.clone());
                std::thread::spawn(move || {
                    let http = Http::new(&url);
                    while !stop.load(Ordering::SeqCst) {
                        let one = send_unique(&http, &token, recipient);
                        sent.lock().expect("lock").push(one);
                        std::thread::sleep(Duration::from_millis(5));
                    }
                })
            })
            .collect();
        Self {
            stop,
            sent,
            threads,
        }
    }

    /// Waits until `count` sends were answered `status` (e.g. some stored
    /// before the outage starts).
    fn wait_for(&self, status: u16, count: usize) {
        eventually(&format!("{count} sends answered {status}"), || {
            let sent = self.sent.lock().expect("lock");
            sent.iter().filter(|s| s.status == status).count() >= count
        });
    }

    fn finish(self) -> Vec<Sent> {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads {
            let _ = thread.join();
        }
        let sent = self.sent.lock().expect("lock");
        sent.clone()
    }
}

/// Polls until `check` holds (recovery takes a reconnect or two).
fn eventually(what: &str, check: impl FnMut() -> bool) {
    kavro_e2e::eventually(what, Duration::from_secs(30), check);
}

/// Every answer is one of `allowed` (a `401` or a `500` fails the test), none
/// hung, and the outage was seen (some `503`).
fn assert_answers(sent: &[Sent], allowed: &[u16], log: &str) {
    let bad: Vec<_> = sent
        .iter()
        .filter(|s| !allowed.contains(&s.status))
        .map(|s| s.status)
        .collect();
    assert!(
        bad.is_empty(),
        "answers other than {allowed:?} while a dependency was down: {bad:?}\n{log}"
    );
    let slowest = sent.iter().map(|s| s.took).max().unwrap_or_default();
    assert!(
        slowest < Duration::from_secs(15),
        "a request hung for {slowest:?}"
    );
    assert!(
        sent.iter().any(|s| s.status == 503),
        "the outage was observed"
    );
}

/// Every send that got a `201` is in the inbox exactly once, under the id it
/// was given; nothing else is there but sends this test made, each once.
fn assert_delivered_exactly_once(sent: &[Sent], inbox: &[Value]) {
    let mut delivered: HashMap<&str, Vec<i64>> = HashMap::new();
    for message in inbox {
        let ciphertext = message["ciphertext"].as_str().expect("ciphertext");
        let id = message["id"].as_i64().expect("id");
        delivered.entry(ciphertext).or_default().push(id);
    }
    let stored: Vec<&Sent> = sent.iter().filter(|s| s.status == 201).collect();
    assert!(!stored.is_empty(), "some sends were stored");
    for send in &stored {
        let id = send.id.expect("a 201 carries the message id");
        assert_eq!(
            delivered.get(send.ciphertext.as_str()),
            Some(&vec![id]),
            "message {id}, stored with 201, is delivered exactly once"
        );
    }
    let attempted: HashSet<&str> = sent.iter().map(|s| s.ciphertext.as_str()).collect();
    for (ciphertext, ids) in &delivered {
        assert!(
            attempted.contains(ciphertext),
            "{ids:?}: not a send of this test"
        );
        assert_eq!(ids.len(), 1, "{ciphertext} delivered {} times", ids.len());
    }
}

#[test]
fn postgres_restart_under_load() {
    let pg = PrivatePostgres::create();
    if skip_unless(pg.is_some(), "initdb / pg_ctl (PostgreSQL server binaries)") {
        return;
    }
    let pg = pg.expect("postgres");
    pg.start();
    let server = Server::start_with(&ServerOptions {
        env: vec![
            ("KAVRO_DATABASE_URL".to_owned(), pg.url()),
            (
                "KAVRO_JWT_SECRET".to_owned(),
                "outage-test-secret-of-at-least-32-bytes".to_owned(),
            ),
            (
                "KAVRO_FERNET_KEYS".to_owned(),
                kavro_server::fieldcrypt::FieldCrypt::generate_key(),
            ),
        ],
        rate_limits: false,
        ..ServerOptions::default()
    });
    let http = Http::new(&server.url);
    let (alice, _) = http.register("alice", "Passw0rd-a");
    let (bob, bob_id) = http.register("bob", "Passw0rd-b");
    let load = Load::start(&server.url, &alice, bob_id);
    load.wait_for(201, 3);

    pg.stop();
    eventually("503 while PostgreSQL is down", || {
        http.get("/auth/me", Some(&bob)).0 == 503
    });
    assert_eq!(http.get("/ready", None).0, 503);
    pg.start();
    let mut probes = Vec::new();
    eventually("recovery after PostgreSQL is back", || {
        probes.push(send_unique(&http, &alice, bob_id));
        probes.last().is_some_and(|probe| probe.status == 201)
    });
    assert_eq!(http.get("/ready", None).0, 200);
    let mut sent = load.finish();
    assert_answers(&sent, &[201, 503], &server.log());
    sent.extend(probes);
    assert_delivered_exactly_once(&sent, &http.drain_inbox(&bob));
}

#[test]
fn redis_restart_under_load() {
    let Some(mut redis) = PrivateRedis::start() else {
        return;
    };
    let server = Server::start_with(&ServerOptions {
        env: vec![("KAVRO_REDIS_URL".to_owned(), redis.url())],
        rate_limits: true,
        ..ServerOptions::default()
    });
    let http = Http::new(&server.url);
    let (alice, _) = http.register("alice", "Passw0rd-a");
    let (bob, bob_id) = http.register("bob", "Passw0rd-b");
    let load = Load::start(&server.url, &alice, bob_id);
    // The send limit (30 a minute) holds before the outage.
    load.wait_for(429, 1);

    redis.stop();
    // Authenticated requests fail closed (revocation cannot be checked).
    eventually("503 while Redis is down", || {
        http.get("/auth/me", Some(&bob)).0 == 503
    });
    let (status, _) = http.post(
        "/auth/login",
        None,
        &json!({"username": "bob", "password": "Passw0rd-b"}),
    );
    assert_eq!(
        status, 503,
        "the lockout cannot be checked: login refused, not unguarded"
    );
    assert_eq!(
        http.get("/health", None).0,
        200,
        "the process itself is fine"
    );
    assert_eq!(http.get("/ready", None).0, 503);
    redis.restart();
    eventually("recovery after Redis is back", || {
        http.get("/auth/me", Some(&bob)).0 == 200
    });
    let (status, _) = http.post(
        "/auth/login",
        None,
        &json!({"username": "bob", "password": "Passw0rd-b"}),
    );
    assert_eq!(status, 200);
    let sent = load.finish();
    // Sends are authenticated: while Redis was away they failed closed (503)
    // before reaching the send limit.
    assert_answers(&sent, &[201, 429, 503], &server.log());
    assert_delivered_exactly_once(&sent, &http.drain_inbox(&bob));
}
