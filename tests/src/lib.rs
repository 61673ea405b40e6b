//! Helpers for the end-to-end tests: start the real `kavro-server` binary on a
//! free loopback port with a private data directory, and run the real `kavro`
//! client as separate users (each with its own config and data directories).
//!
//! The binaries are the ones `cargo test --workspace` builds next to the test
//! executable (`target/<profile>/`); `KAVRO_SERVER_BIN` / `KAVRO_BIN` override.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod tmux;

/// `target/<profile>/<name>`, found from the running test executable
/// (`target/<profile>/deps/<test>`).
///
/// `cargo test --workspace` builds a package's binaries only for its own
/// integration tests: `kavro-server/tests/` and `kavro-tui/tests/` are what
/// make it build `kavro-server` and `kavro` here.
pub fn binary(name: &str, override_var: &str) -> PathBuf {
    if let Ok(path) = std::env::var(override_var) {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>");
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace`, which builds it",
        path.display()
    );
    path
}

/// A running `kavro-server`; killed when dropped.
pub struct Server {
    child: Child,
    pub url: String,
    pub data_dir: tempfile::TempDir,
    stderr_log: PathBuf,
}

/// How to start a server.
#[derive(Default)]
pub struct ServerOptions {
    /// Extra environment (e.g. `KAVRO_DATABASE_URL`).
    pub env: Vec<(String, String)>,
    /// Keep the default rate limits (off unless asked: tests register many users from one IP).
    pub rate_limits: bool,
    /// Listen here instead of a free port (a relay restored on its old address).
    pub bind: Option<String>,
}

impl Server {
    pub fn start() -> Self {
        Self::start_with(&ServerOptions::default())
    }

    pub fn start_with(options: &ServerOptions) -> Self {
        let data_dir = tempfile::tempdir().expect("temp dir");
        Self::start_in(data_dir, options)
    }

    /// Starts on an existing data directory (to test restarts). The log of
    /// a restart is appended to the previous one's.
    pub fn start_in(data_dir: tempfile::TempDir, options: &ServerOptions) -> Self {
        let stderr_log = data_dir.path().join("server.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stderr_log)
            .expect("server log file");
        let mut command = Command::new(binary("kavro-server", "KAVRO_SERVER_BIN"));
        command
            .args(["--bind", options.bind.as_deref().unwrap_or("127.0.0.1:0")])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", data_dir.path())
            .env("KAVRO_DATA_DIR", data_dir.path())
            .env("KAVRO_LOG_LEVEL", "info")
            .env(
                "KAVRO_RATE_LIMITS",
                if options.rate_limits { "on" } else { "off" },
            )
            .stdout(Stdio::piped())
            .stderr(log);
        for (key, value) in &options.env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("start kavro-server");
        let stdout = child.stdout.take().expect("server stdout");
        // Read stdout on a thread (and keep draining it, so the server never
        // blocks on a full pipe); wait at most 60 s for the listening line.
        let (url_tx, url_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("kavro-server listening on ") {
                    let _ = url_tx.send(url.trim().to_owned());
                }
            }
        });
        let Ok(url) = url_rx.recv_timeout(Duration::from_secs(60)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "kavro-server did not start listening within 60 s:\n{}",
                std::fs::read_to_string(&stderr_log).unwrap_or_default()
            );
        };
        Self {
            child,
            url,
            data_dir,
            stderr_log,
        }
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// Sends SIGTERM (graceful) and waits up to `timeout` for exit.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// `kill -9`: no chance to finish anything.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the process and hands back its data directory.
    pub fn stop(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let placeholder = tempfile::tempdir().expect("temp dir");
        std::mem::replace(&mut self.data_dir, placeholder)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking JSON client for talking to the relay directly.
pub struct Http {
    client: reqwest::blocking::Client,
    base: String,
}

impl Http {
    pub fn new(base: &str) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self {
            client: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client"),
            base: base.to_owned(),
        }
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut request = self.client.get(format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        Self::finish(request)
    }

    pub fn post(&self, path: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
        let mut request = self.client.post(format!("{}{path}", self.base)).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        Self::finish(request)
    }

    /// Like [`Http::post`], but `None` when no answer came (server gone).
    pub fn try_post(&self, path: &str, token: Option<&str>, body: &Value) -> Option<(u16, Value)> {
        let mut request = self.client.post(format!("{}{path}", self.base)).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        Self::try_finish(request)
    }

    /// Like [`Http::get`], but `None` when no answer came.
    pub fn try_get(&self, path: &str, token: Option<&str>) -> Option<(u16, Value)> {
        let mut request = self.client.get(format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        Self::try_finish(request)
    }

    fn try_finish(request: reqwest::blocking::RequestBuilder) -> Option<(u16, Value)> {
        let response = request.send().ok()?;
        let status = response.status().as_u16();
        let text = response.text().ok()?;
        Some((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// A plain-text GET (e.g. `/metrics`).
    pub fn text(&self, path: &str) -> String {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .and_then(reqwest::blocking::Response::text)
            .unwrap_or_default()
    }

    fn finish(request: reqwest::blocking::RequestBuilder) -> (u16, Value) {
        let response = request.send().expect("request");
        let status = response.status().as_u16();
        let body = response.json().unwrap_or(Value::Null);
        (status, body)
    }

    /// Registers and returns (token, user id).
    pub fn register(&self, username: &str, password: &str) -> (String, i64) {
        let (status, body) = self.post(
            "/auth/register",
            None,
            &serde_json::json!({"username": username, "password": password}),
        );
        assert_eq!(status, 201, "register {username}: {body}");
        let token = body["access_token"].as_str().expect("token").to_owned();
        let (_, me) = self.get("/auth/me", Some(&token));
        (token, me["user_id"].as_i64().expect("user id"))
    }
}

/// One person using the `kavro` client: private config and data directories,
/// the file key store, and a password in the environment.
pub struct User {
    pub name: String,
    pub password: String,
    pub config_dir: tempfile::TempDir,
    pub data_dir: tempfile::TempDir,
    pub server: String,
}

impl User {
    pub fn new(name: &str, server: &str) -> Self {
        Self {
            name: name.to_owned(),
            password: "Corr3ct-horse".to_owned(),
            config_dir: tempfile::tempdir().expect("temp dir"),
            data_dir: tempfile::tempdir().expect("temp dir"),
            server: server.to_owned(),
        }
    }

    /// A `kavro` command for this user (not yet run).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(binary("kavro", "KAVRO_BIN"));
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.data_dir.path())
            .env("KAVRO_SERVER", &self.server)
            .env("KAVRO_CONFIG_DIR", self.config_dir.path())
            .env("KAVRO_DATA_DIR", self.data_dir.path())
            .env("KAVRO_KEY_STORE", "file")
            .env("KAVRO_PASSWORD", &self.password)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        command
    }

    /// Runs `kavro <args>` and returns its output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run kavro")
    }

    /// Runs with `stdin` as standard input.
    pub fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        output_with_stdin(self.command(args), stdin)
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "kavro {args:?} failed ({:?}):\nstdout: {}\nstderr: {}",
            output.status.code(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

/// Whether an optional external tool may be skipped: prints the reason, or
/// fails when `KAVRO_REQUIRE_SERVICES=1` (CI).
pub fn skip_unless(available: bool, what: &str) -> bool {
    if available {
        return false;
    }
    assert!(
        std::env::var("KAVRO_REQUIRE_SERVICES").as_deref() != Ok("1"),
        "{what} is not available but KAVRO_REQUIRE_SERVICES=1"
    );
    eprintln!("skipping: {what} is not available");
    true
}

/// Polls `check` every 100 ms until it holds; fails after `limit`.
pub fn eventually(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "{what}: did not happen within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Logging in directly (as an existing client would), for tests that play
/// a second client or a misbehaving relay.
impl Http {
    /// Reads and acknowledges `token`'s whole inbox, oldest first, and
    /// returns every message read (fails after 60 s).
    pub fn drain_inbox(&self, token: &str) -> Vec<Value> {
        let mut all = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(Instant::now() < deadline, "the inbox did not drain in 60 s");
            let (status, page) = self.get("/messages/inbox?limit=200&order=asc", Some(token));
            assert_eq!(status, 200, "{page}");
            let messages = page["messages"].as_array().expect("messages").clone();
            if messages.is_empty() {
                return all;
            }
            let ids: Vec<i64> = messages
                .iter()
                .map(|m| m["id"].as_i64().expect("message id"))
                .collect();
            let (status, body) = self.post(
                "/messages/ack",
                Some(token),
                &serde_json::json!({"ids": ids}),
            );
            assert_eq!(status, 200, "{body}");
            all.extend(messages);
        }
    }

    /// Logs in and returns (token, user id).
    pub fn login(&self, username: &str, password: &str) -> (String, i64) {
        let (status, body) = self.post(
            "/auth/login",
            None,
            &serde_json::json!({"username": username, "password": password}),
        );
        assert_eq!(status, 200, "login {username}: {body}");
        let token = body["access_token"].as_str().expect("token").to_owned();
        let (_, me) = self.get("/auth/me", Some(&token));
        (token, me["user_id"].as_i64().expect("user id"))
    }
}

/// What a `kavro` run printed, and its exit code.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from_output(output: &Output) -> Self {
        Self {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Each stdout line parsed as JSON (for `--json`).
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}\n{self:?}"))
            })
            .collect()
    }
}

impl User {
    /// Runs `kavro <args>` and captures code, stdout and stderr.
    pub fn exec(&self, args: &[&str]) -> Run {
        Run::from_output(&self.run(args))
    }

    /// Runs `kavro --json <args>`, asserts success, parses each stdout line.
    pub fn json(&self, args: &[&str]) -> Vec<Value> {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let run = self.exec(&all);
        assert_eq!(run.code, Some(0), "kavro {all:?}: {run:?}");
        run.json_lines()
    }

    /// The file key store of the default profile (`KAVRO_KEY_STORE=file`).
    /// Format (kavro-tui/src/keystore/file.rs): `{"format": "kavro-secrets-v1",
    /// "accounts": {"<username>@<server>": {"identity_secret": "<64 hex>",
    /// "access_token": "<JWT>" | null}}}`.
    pub fn secrets_file(&self) -> PathBuf {
        self.data_dir
            .path()
            .join("profiles")
            .join("default")
            .join("secrets.json")
    }

    /// This user's stored account record from the key file.
    pub fn stored_secrets(&self) -> Value {
        let text = std::fs::read_to_string(self.secrets_file()).expect("key file");
        let file: Value = serde_json::from_str(&text).expect("key file is JSON");
        assert_eq!(file["format"], "kavro-secrets-v1");
        let key = format!("{}@{}", self.name.to_ascii_lowercase(), self.server);
        file["accounts"][&key].clone()
    }

    /// The identity secret key (64 hex digits) from the key file.
    pub fn identity_secret_hex(&self) -> String {
        self.stored_secrets()["identity_secret"]
            .as_str()
            .expect("identity_secret")
            .to_owned()
    }

    /// The relay access token from the key file.
    pub fn token(&self) -> String {
        self.stored_secrets()["access_token"]
            .as_str()
            .expect("access_token (logged in)")
            .to_owned()
    }
}

/// Runs `command` with `stdin` as its standard input and collects its output.
pub fn output_with_stdin(mut command: Command, stdin: &str) -> Output {
    use std::io::Write as _;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kavro");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("kavro output")
}
