//! Dependencies failing under load: a private PostgreSQL (`initdb` + `pg_ctl`
//! in a temporary directory) and a private Redis (`redis-server` on a free
//! port) are stopped and restarted while clients keep sending. While one is
//! down the relay answers `503` promptly (no hang, no `500`); afterwards it
//! recovers by itself. The machine's shared services are never touched.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kavro_e2e::{Http, Server, ServerOptions, skip_unless};
use serde_json::json;

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

struct PrivateRedis {
    child: Option<Child>,
    port: u16,
}

impl PrivateRedis {
    fn start_on(port: u16) -> Option<Self> {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Some(Self {
            child: Some(child),
            port,
        })
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Senders that keep sending and record every status they get.
struct Load {
    stop: Arc<AtomicBool>,
    statuses: Arc<Mutex<Vec<(u16, Duration)>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(url: &str, token: &str, recipient: i64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let statuses = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..3)
            .map(|_| {
                let (url, token, stop, statuses) = (url.to_owned(), token.to_owned(), stop.clone(), statuses.clone());
                std::thread::spawn(move || {
                    let http = Http::new(&url);
                    let body = json!({"recipient_id": recipient, "ciphertext": "bG9hZCBsb2FkIGxvYWQgbG9hZA==", "ephemeral_pubkey": "ab".repeat(32)});
                    while !stop.load(Ordering::SeqCst) {
                        let started = Instant::now();
                        let status = http.try_post("/messages", Some(&token), &body).map_or(0, |(s, _)| s);
                        statuses.lock().expect("lock").push((status, started.elapsed()));
                        std::thread::sleep(Duration::from_millis(5));
                    }
                })
            })
            .collect();
        Self {
            stop,
            statuses,
            threads,
        }
    }

    fn finish(self) -> Vec<(u16, Duration)> {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads {
            let _ = thread.join();
        }
        Arc::try_unwrap(self.statuses).map_or_else(
            |s| s.lock().expect("lock").clone(),
            |m| m.into_inner().expect("lock"),
        )
    }
}

/// Polls until `check` holds (recovery takes a reconnect or two).
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn assert_no_server_errors(statuses: &[(u16, Duration)], log: &str) {
    let bad: Vec<_> = statuses
        .iter()
        .filter(|(s, _)| *s == 0 || (*s >= 500 && *s != 503))
        .collect();
    assert!(
        bad.is_empty(),
        "answers other than 201/503 while a dependency was down: {bad:?}\n{log}"
    );
    let slowest = statuses.iter().map(|(_, d)| *d).max().unwrap_or_default();
    assert!(
        slowest < Duration::from_secs(15),
        "a request hung for {slowest:?}"
    );
    assert!(
        statuses.iter().any(|(s, _)| *s == 503),
        "the outage was observed"
    );
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
    });
    let http = Http::new(&server.url);
    let (alice, _) = http.register("alice", "Passw0rd-a");
    let (bob, bob_id) = http.register("bob", "Passw0rd-b");
    let load = Load::start(&server.url, &alice, bob_id);
    std::thread::sleep(Duration::from_millis(300));

    pg.stop();
    eventually("503 while PostgreSQL is down", || {
        http.get("/auth/me", Some(&bob)).0 == 503
    });
    assert_eq!(http.get("/ready", None).0, 503);
    std::thread::sleep(Duration::from_millis(500));
    pg.start();
    eventually("recovery after PostgreSQL is back", || {
        http.post("/messages", Some(&alice), &json!({"recipient_id": bob_id, "ciphertext": "aGVsbG8gYWdhaW4gYWdhaW4=", "ephemeral_pubkey": "ab".repeat(32)})).0 == 201
    });
    assert_eq!(http.get("/ready", None).0, 200);
    let statuses = load.finish();
    assert_no_server_errors(&statuses, &server.log());
}

#[test]
fn redis_restart_under_load() {
    let port = free_port();
    let redis = PrivateRedis::start_on(port);
    if skip_unless(redis.is_some(), "redis-server") {
        return;
    }
    let mut redis = redis.expect("redis");
    let server = Server::start_with(&ServerOptions {
        env: vec![(
            "KAVRO_REDIS_URL".to_owned(),
            format!("redis://127.0.0.1:{port}"),
        )],
        rate_limits: true,
    });
    let http = Http::new(&server.url);
    let (alice, _) = http.register("alice", "Passw0rd-a");
    let (bob, bob_id) = http.register("bob", "Passw0rd-b");
    let load = Load::start(&server.url, &alice, bob_id);
    std::thread::sleep(Duration::from_millis(300));

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
    let _redis = PrivateRedis::start_on(redis.port).expect("restart redis");
    eventually("recovery after Redis is back", || {
        http.get("/auth/me", Some(&bob)).0 == 200
    });
    let (status, _) = http.post(
        "/auth/login",
        None,
        &json!({"username": "bob", "password": "Passw0rd-b"}),
    );
    assert_eq!(status, 200);
    let statuses = load.finish();
    assert_no_server_errors(&statuses, &server.log());
    // Sends went on being limited per instance while Redis was away; the send
    // limit (30 per minute) still held, so some were refused with 429.
    assert!(
        statuses.iter().all(|(s, _)| matches!(s, 201 | 429 | 503)),
        "{statuses:?}"
    );
}
