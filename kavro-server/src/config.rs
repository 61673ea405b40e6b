//! Server configuration, layered: built-in defaults < TOML file (`--config`) <
//! environment (`KAVRO_*`, plus `DATABASE_URL` / `REDIS_URL`) < command-line flags.
//!
//! Every key of [`Config`] is documented in `assets/server.example.toml`, and a
//! test parses that file, so the example cannot drift from the code.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize};

use crate::redis_link::RedisTarget;
use crate::secret::SecretString;

/// The whole configuration of one relay instance.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub bind: SocketAddr,
    /// Where the embedded database and generated secrets live.
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; empty means the embedded SQLite file in `data_dir`.
    pub database_url: String,
    /// Optional read replica (PostgreSQL) for read-only queries.
    pub database_read_url: String,
    /// `redis://…` / `rediss://…`; empty means in-process counters.
    pub redis_url: String,
    /// Seed nodes of a Redis Cluster (`redis://host:port`, comma separated
    /// in the environment); instead of `redis_url`, never with it.
    #[serde(deserialize_with = "list_or_csv")]
    pub redis_cluster: Vec<String>,
    /// Prefix of every Redis key (lets several deployments or tests share a Redis).
    pub redis_prefix: String,
    /// Most database connections this instance opens.
    pub db_max_connections: u32,
    /// HS256 signing secret for access tokens; generated on the embedded default.
    pub jwt_secret: SecretString,
    /// Fernet keys for field encryption, comma separated; the first encrypts,
    /// all decrypt (rotation). Generated on the embedded default.
    pub fernet_keys: SecretString,
    #[serde(with = "humantime_serde")]
    pub token_ttl: Duration,
    /// How long an undelivered message waits for its recipient.
    #[serde(with = "humantime_serde")]
    pub message_ttl: Duration,
    /// How long the small delivery receipt of a message stays for its sender.
    #[serde(with = "humantime_serde")]
    pub receipt_ttl: Duration,
    /// How often the retention sweep runs.
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
    /// Peers whose `X-Forwarded-For` is believed (addresses or CIDR ranges).
    #[serde(deserialize_with = "list_or_csv")]
    pub trusted_proxies: Vec<IpNet>,
    /// Origins allowed by CORS; empty turns CORS off.
    #[serde(deserialize_with = "list_or_csv")]
    pub cors_origins: Vec<String>,
    /// PEM certificate chain; with `tls_key`, the server speaks HTTPS.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub log_format: LogFormat,
    /// A `tracing` filter such as `info` or `kavro_server=debug,info`.
    pub log_level: String,
    /// `off` disables every request rate limit (for benchmarks); the login
    /// lockout and the pending-message quota stay.
    pub rate_limits: Toggle,
    pub limits: RateLimits,
    pub lockout: Lockout,
    /// Most undelivered messages one recipient may have; senders get `429` past it.
    pub max_pending_per_recipient: u32,
    /// Most undelivered messages one recipient may have from one sender, so
    /// one sender cannot fill someone's queue; that sender gets `429` past it.
    pub max_pending_per_sender: u32,
    /// How long the name of a deleted account stays reserved (nobody can
    /// register it and pose as the old owner).
    #[serde(with = "humantime_serde")]
    pub username_reservation: Duration,
    /// Per-IP limits and the login lockout key IPv4 clients by this prefix
    /// length (32: each address).
    pub ip_prefix_v4: u8,
    /// ... and IPv6 clients by this one (64: one subnet, what one host or one
    /// customer usually gets, so rotating addresses within it does not help).
    pub ip_prefix_v6: u8,
    /// Clients allowed to read `/metrics` without a token (addresses or CIDR
    /// ranges). Requests that came through a proxy never count as these.
    #[serde(deserialize_with = "list_or_csv")]
    pub metrics_allow: Vec<IpNet>,
    /// A bearer token that opens `/metrics` from anywhere; empty: none.
    pub metrics_token: SecretString,
    /// How long shutdown waits for in-flight requests.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Read timeout for request headers (slow clients are cut off).
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// Time allowed for a request body to arrive.
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// Connections served at once; further ones wait in the accept queue.
    pub max_connections: usize,
    /// Long-polls one user may hold open at once.
    pub max_long_polls_per_user: u32,
    /// Longest a long-poll is held, whatever the client asks (at most 60 s by
    /// the API; lower it to fit a load balancer's idle timeout).
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
    /// Who may create an account: anyone (`open`), holders of an invite code
    /// (`invite`), or nobody (`closed`).
    pub registration: Registration,
    /// Where attachment blobs live: empty for `<data_dir>/blobs`, or
    /// `s3://bucket/prefix` (with the usual AWS_* environment).
    pub blob_url: String,
    /// `AWS_*` settings for an S3 `blob_url` that override the process
    /// environment. Never read from a file or the environment (`serde`
    /// skips it): it lets a test point one relay at a private S3 server.
    #[serde(skip)]
    pub blob_s3_settings: Vec<(String, String)>,
    /// Largest blob (attachment ciphertext), in bytes.
    pub blob_max_bytes: u64,
    /// Most bytes of live blobs (uploaded and reserved) per account.
    pub blob_quota_bytes: u64,
}

/// Per-route request limits (docs/API.md part 3).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RateLimits {
    pub register: RateSpec,
    pub login: RateSpec,
    pub send: RateSpec,
    pub publish: RateSpec,
    pub lookup: RateSpec,
    pub inbox: RateSpec,
    pub ack: RateSpec,
}

/// Login lockout after repeated failed logins, per (account, client prefix):
/// failures from one network lock that network out of that account, not the
/// owner logging in from elsewhere.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Lockout {
    /// Failed logins within `window` that lock the account for that client prefix.
    pub failures: u32,
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// How long the first lock lasts; each further lock of the same
    /// (account, prefix) lasts twice as long as the one before.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// The longest a lock grows to. The doubling starts over once a client
    /// prefix has stayed unlocked for this long, or logs in correctly.
    #[serde(with = "humantime_serde")]
    pub max_duration: Duration,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// The registration policy (`POST /auth/register`).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Registration {
    /// Anyone who reaches the relay (the embedded default, so `cargo run` works).
    Open,
    /// Only with an invite code from `kavro-server admin invites create`.
    Invite,
    /// Nobody: accounts exist already.
    Closed,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Toggle {
    On,
    Off,
}

/// `N/duration`, e.g. `30/1m`: at most N requests in any sliding window of
/// that length. `off` disables this one limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateSpec(pub Option<Window>);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub max: u32,
    pub per: Duration,
}

impl RateSpec {
    pub const fn new(max: u32, per: Duration) -> Self {
        Self(Some(Window { max, per }))
    }
}

impl FromStr for RateSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("off") {
            return Ok(Self(None));
        }
        let (max, per) = text.split_once('/').ok_or_else(|| {
            format!("rate limit {text:?} is not of the form N/duration (e.g. 30/1m) or off")
        })?;
        let max: u32 = max
            .trim()
            .parse()
            .map_err(|_| format!("rate limit {text:?}: {max:?} is not a whole number"))?;
        let per = humantime::parse_duration(per.trim())
            .map_err(|e| format!("rate limit {text:?}: bad duration: {e}"))?;
        if max == 0 || per.is_zero() {
            return Err(format!(
                "rate limit {text:?}: both the count and the duration must be above zero; use `off` to disable"
            ));
        }
        Ok(Self::new(max, per))
    }
}

impl fmt::Display for RateSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("off"),
            Some(w) => write!(f, "{}/{}", w.max, humantime::format_duration(w.per)),
        }
    }
}

impl Serialize for RateSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RateSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Accepts a TOML list or a comma-separated string (the form env vars take).
fn list_or_csv<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(Vec<String>),
        Csv(String),
    }
    let items = match Raw::deserialize(d)? {
        Raw::List(items) => items,
        Raw::Csv(text) => text.split(',').map(str::to_owned).collect(),
    };
    items
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(|s| parse_list_item(s))
        .collect::<Result<_, String>>()
        .map_err(serde::de::Error::custom)
}

fn parse_list_item<T: FromStr>(text: &str) -> Result<T, String>
where
    T::Err: fmt::Display,
{
    // A bare address in `trusted_proxies` means that one host.
    text.parse::<T>()
        .or_else(|first| {
            let host = if text.contains(':') { "/128" } else { "/32" };
            format!("{text}{host}").parse::<T>().map_err(|_| first)
        })
        .map_err(|e| format!("{text:?}: {e}"))
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8000)),
            data_dir: default_data_dir(),
            database_url: String::new(),
            database_read_url: String::new(),
            redis_url: String::new(),
            redis_cluster: Vec::new(),
            redis_prefix: "kavro".to_owned(),
            db_max_connections: 32,
            jwt_secret: SecretString::default(),
            fernet_keys: SecretString::default(),
            token_ttl: Duration::from_secs(24 * 3600),
            message_ttl: Duration::from_secs(30 * 24 * 3600),
            receipt_ttl: Duration::from_secs(30 * 24 * 3600),
            sweep_interval: Duration::from_secs(60),
            trusted_proxies: Vec::new(),
            cors_origins: Vec::new(),
            tls_cert: None,
            tls_key: None,
            log_format: LogFormat::Text,
            log_level: "info".to_owned(),
            rate_limits: Toggle::On,
            limits: RateLimits::default(),
            lockout: Lockout::default(),
            max_pending_per_recipient: 10_000,
            blob_url: String::new(),
            blob_s3_settings: Vec::new(),
            blob_max_bytes: kavro_proto::v2::limits::DEFAULT_BLOB_MAX_BYTES,
            blob_quota_bytes: 1024 * 1024 * 1024,
            max_pending_per_sender: 1_000,
            username_reservation: Duration::from_secs(30 * 24 * 3600),
            ip_prefix_v4: 32,
            ip_prefix_v6: 64,
            metrics_allow: vec![
                IpNet::from(std::net::IpAddr::from(std::net::Ipv4Addr::LOCALHOST)),
                IpNet::from(std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST)),
            ],
            metrics_token: SecretString::default(),
            shutdown_grace: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            max_long_polls_per_user: 4,
            max_wait: Duration::from_secs(60),
            registration: Registration::Open,
        }
    }
}

impl Default for RateLimits {
    fn default() -> Self {
        const MIN: u64 = 60;
        Self {
            register: RateSpec::new(3, Duration::from_secs(60 * MIN)),
            login: RateSpec::new(5, Duration::from_secs(15 * MIN)),
            send: RateSpec::new(30, Duration::from_secs(MIN)),
            publish: RateSpec::new(20, Duration::from_secs(MIN)),
            lookup: RateSpec::new(30, Duration::from_secs(30)),
            inbox: RateSpec::new(20, Duration::from_secs(30)),
            ack: RateSpec::new(60, Duration::from_secs(MIN)),
        }
    }
}

impl Default for Lockout {
    fn default() -> Self {
        Self {
            failures: 5,
            window: Duration::from_secs(300),
            duration: Duration::from_secs(300),
            max_duration: Duration::from_secs(24 * 3600),
        }
    }
}

/// The platform data directory for the relay (e.g. `~/.local/share/kavro-server`).
fn default_data_dir() -> PathBuf {
    directories::ProjectDirs::from("", "", "kavro-server").map_or_else(
        || PathBuf::from("kavro-data"),
        |d| d.data_dir().to_path_buf(),
    )
}

/// Overrides given on the command line (the top layer).
#[derive(Debug, Default, Serialize)]
pub struct FlagOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blob_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_cluster: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limits: Option<Toggle>,
}

/// Environment variables that name a nested key: `KAVRO_LIMIT_SEND` sets `limits.send`.
fn env_key(key: &str) -> String {
    if let Some(rest) = key.strip_prefix("limit_") {
        format!("limits.{rest}")
    } else if let Some(rest) = key.strip_prefix("lockout_") {
        format!("lockout.{rest}")
    } else {
        key.to_owned()
    }
}

/// Whether `key` (dotted, lowercase) names a setting, e.g. `bind` or `limits.send`.
fn is_known_key(key: &str) -> bool {
    static KEYS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        let mut keys = vec!["tls_cert".to_owned(), "tls_key".to_owned()];
        if let Ok(toml::Value::Table(table)) = toml::Value::try_from(Config::default()) {
            for (key, value) in table {
                if let toml::Value::Table(sub) = value {
                    keys.extend(sub.keys().map(|s| format!("{key}.{s}")));
                } else {
                    keys.push(key);
                }
            }
        }
        keys
    })
    .iter()
    .any(|k| k == key)
}

impl Config {
    /// Builds the layered configuration from a process environment.
    pub fn load(file: Option<&Path>, flags: &FlagOverrides) -> Result<Self, figment::Error> {
        Self::figment(file, flags).extract()
    }

    fn figment(file: Option<&Path>, flags: &FlagOverrides) -> Figment {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            figment = figment.merge(Toml::file_exact(path));
        }
        figment
            // The conventional names, below the KAVRO_ ones.
            .merge(Env::raw().only(&["DATABASE_URL", "REDIS_URL"]))
            .merge(
                Env::prefixed("KAVRO_")
                    .map(|k| env_key(&k.as_str().to_ascii_lowercase()).into())
                    // Other programs' KAVRO_* variables (the client's, the tests') are not ours.
                    .filter_map(|k| is_known_key(k.as_str()).then(|| k.into())),
            )
            .merge(Serialized::defaults(flags))
    }

    /// The database URL in effect: the configured one, or the embedded SQLite file.
    pub fn effective_database_url(&self) -> String {
        if self.database_url.trim().is_empty() {
            format!("sqlite://{}", self.data_dir.join("kavro.db").display())
        } else {
            self.database_url.trim().to_owned()
        }
    }

    pub fn is_embedded_database(&self) -> bool {
        self.effective_database_url().starts_with("sqlite:")
    }

    /// The Redis deployment in effect, if any ([`Config::validate`] refuses
    /// both at once; were both set, the cluster wins).
    pub fn redis(&self) -> Option<RedisTarget> {
        let url = self.redis_url.trim();
        if self.redis_cluster.is_empty() {
            (!url.is_empty()).then(|| RedisTarget::Single(url.to_owned()))
        } else {
            Some(RedisTarget::Cluster(self.redis_cluster.clone()))
        }
    }

    /// Checks what serde cannot: pairs of settings, ranges.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(InvalidConfig::TlsHalfSet);
        }
        if self.lockout.failures == 0 {
            return Err(InvalidConfig::NoLockoutFailures);
        }
        if self.token_ttl < MIN_TOKEN_TTL {
            return Err(InvalidConfig::TokenTtlTooShort);
        }
        if self.db_max_connections == 0 {
            return Err(InvalidConfig::NoDbConnections);
        }
        if self.blob_max_bytes == 0 || self.blob_quota_bytes < self.blob_max_bytes {
            return Err(InvalidConfig::BlobLimits);
        }
        if self.max_pending_per_recipient == 0 {
            return Err(InvalidConfig::NoPendingMessages);
        }
        if self.max_pending_per_sender == 0 {
            return Err(InvalidConfig::NoPendingPerSender);
        }
        if !(1..=32).contains(&self.ip_prefix_v4) || !(1..=128).contains(&self.ip_prefix_v6) {
            return Err(InvalidConfig::IpPrefixOutOfRange);
        }
        if self.lockout.duration.is_zero() || self.lockout.max_duration < self.lockout.duration {
            return Err(InvalidConfig::LockoutDurations);
        }
        if self.header_timeout.is_zero() || self.body_timeout.is_zero() {
            return Err(InvalidConfig::ZeroTimeout);
        }
        if self.sweep_interval.is_zero() {
            return Err(InvalidConfig::ZeroSweepInterval);
        }
        if !self.redis_cluster.is_empty() && !self.redis_url.trim().is_empty() {
            return Err(InvalidConfig::RedisUrlAndCluster);
        }
        if !self
            .redis_cluster
            .iter()
            .all(|node| node.starts_with("redis://") || node.starts_with("rediss://"))
        {
            return Err(InvalidConfig::RedisClusterScheme);
        }
        Ok(())
    }
}

/// The shortest `token_ttl` [`Config::validate`] accepts.
const MIN_TOKEN_TTL: Duration = Duration::from_secs(60);

/// A combination or range of settings that [`Config::validate`] refuses; the
/// message names the setting, for the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidConfig {
    #[error("tls_cert and tls_key must be set together")]
    TlsHalfSet,
    #[error("lockout.failures must be at least 1")]
    NoLockoutFailures,
    #[error("token_ttl must be at least 1 minute")]
    TokenTtlTooShort,
    #[error("db_max_connections must be at least 1")]
    NoDbConnections,
    #[error("blob_max_bytes must be at least 1 and blob_quota_bytes at least blob_max_bytes")]
    BlobLimits,
    #[error("max_pending_per_recipient must be at least 1")]
    NoPendingMessages,
    #[error("max_pending_per_sender must be at least 1")]
    NoPendingPerSender,
    #[error("ip_prefix_v4 must be 1 to 32 and ip_prefix_v6 1 to 128")]
    IpPrefixOutOfRange,
    #[error("lockout.duration must be above zero and lockout.max_duration at least as long")]
    LockoutDurations,
    #[error("header_timeout and body_timeout must be above zero")]
    ZeroTimeout,
    #[error("sweep_interval must be above zero")]
    ZeroSweepInterval,
    #[error("set redis_url (one Redis) or redis_cluster (seed nodes of a cluster), not both")]
    RedisUrlAndCluster,
    #[error("every redis_cluster node must be a redis:// or rediss:// URL")]
    RedisClusterScheme,
}

impl fmt::Debug for Config {
    /// Redacted: secrets and credentials in URLs never reach a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("bind", &self.bind)
            .field("data_dir", &self.data_dir)
            .field("database_url", &redact_url(&self.effective_database_url()))
            .field("redis_url", &redact_url(&self.redis_url))
            .field(
                "redis_cluster",
                &self
                    .redis_cluster
                    .iter()
                    .map(|node| redact_url(node))
                    .collect::<Vec<_>>(),
            )
            .field("jwt_secret", &self.jwt_secret)
            .field("fernet_keys", &self.fernet_keys)
            .field("token_ttl", &self.token_ttl)
            .field("message_ttl", &self.message_ttl)
            .field("blob_url", &redact_url(&self.blob_url))
            .field(
                "blob_s3_settings",
                // Names only: the values include the secret key.
                &self
                    .blob_s3_settings
                    .iter()
                    .map(|(name, _)| name)
                    .collect::<Vec<_>>(),
            )
            .field("blob_max_bytes", &self.blob_max_bytes)
            .field("blob_quota_bytes", &self.blob_quota_bytes)
            .field("rate_limits", &self.rate_limits)
            .field("registration", &self.registration)
            .field("limits", &self.limits)
            .field("lockout", &self.lockout)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("metrics_allow", &self.metrics_allow)
            .field("metrics_token", &self.metrics_token)
            .finish_non_exhaustive()
    }
}

/// Hides the credentials of a URL: the password of
/// `scheme://user:password@host/…`, and the value of every query parameter
/// whose name suggests a secret (`?password=…`, `sslpassword`, `token`, `secret`,
/// `key`, …), as both PostgreSQL and Redis URLs accept them there too.
pub fn redact_url(url: &str) -> String {
    let (before_fragment, fragment) = match url.split_once('#') {
        Some((head, tail)) => (head, Some(tail)),
        None => (url, None),
    };
    let (base, query) = match before_fragment.split_once('?') {
        Some((head, tail)) => (head, Some(tail)),
        None => (before_fragment, None),
    };
    let mut out = redact_userinfo(base);
    if let Some(query) = query {
        out.push('?');
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) if is_secret_parameter(name) => format!("{name}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        out.push_str(&pairs.join("&"));
    }
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

/// `scheme://user:password@host/path` with the password replaced; the `@`
/// is looked for only in the authority (before the path).
fn redact_userinfo(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!(
                "{}{user}:***@{host}{}",
                &url[..scheme_end],
                &rest[authority_end..]
            ),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// Query parameter names that carry secrets in database and Redis URLs.
fn is_secret_parameter(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "pass",
        "pwd",
        "secret",
        "token",
        "key",
        "auth",
        "credential",
    ]
    .iter()
    .any(|word| name.contains(word))
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::Jail;

    #[test]
    fn rate_spec_parsing() {
        assert_eq!(
            "30/1m".parse(),
            Ok(RateSpec::new(30, Duration::from_secs(60)))
        );
        assert_eq!(
            "3 / 1h".parse(),
            Ok(RateSpec::new(3, Duration::from_secs(3600)))
        );
        assert_eq!("off".parse(), Ok(RateSpec(None)));
        assert!("30".parse::<RateSpec>().is_err());
        assert!("0/1m".parse::<RateSpec>().is_err());
        assert!("x/1m".parse::<RateSpec>().is_err());
        assert!("5/soon".parse::<RateSpec>().is_err());
        assert_eq!(
            RateSpec::new(30, Duration::from_secs(60)).to_string(),
            "30/1m"
        );
    }

    /// `KAVRO_REDIS_CLUSTER` is a comma-separated list, the TOML key a list,
    /// the flag a list too; with it, `redis()` names the cluster.
    #[test]
    fn redis_cluster_from_every_layer() {
        Jail::expect_with(|jail| {
            jail.create_file("server.toml", r#"redis_cluster = ["redis://file:7000"]"#)?;
            let config = Config::load(Some(Path::new("server.toml")), &FlagOverrides::default())?;
            assert_eq!(
                config.redis(),
                Some(RedisTarget::Cluster(vec!["redis://file:7000".into()]))
            );
            jail.set_env(
                "KAVRO_REDIS_CLUSTER",
                "redis://127.0.0.1:7000, redis://127.0.0.1:7001,",
            );
            let config = Config::load(Some(Path::new("server.toml")), &FlagOverrides::default())?;
            assert_eq!(
                config.redis_cluster,
                vec!["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"],
                "env over file, blanks dropped"
            );
            let flags = FlagOverrides {
                redis_cluster: Some(vec!["redis://flag:7000".into()]),
                ..FlagOverrides::default()
            };
            let config = Config::load(None, &flags)?;
            assert_eq!(config.redis_cluster, vec!["redis://flag:7000"]);
            config.validate().expect("a cluster alone is valid");
            // Both set: refused by validate (and bootstrap calls validate).
            jail.set_env("KAVRO_REDIS_URL", "redis://one");
            let config = Config::load(None, &FlagOverrides::default())?;
            assert_eq!(config.validate(), Err(InvalidConfig::RedisUrlAndCluster));
            let shown = format!(
                "{:?}",
                Config {
                    redis_cluster: vec!["redis://:hunter2@a:7000".into()],
                    ..Config::default()
                }
            );
            assert!(!shown.contains("hunter2"), "{shown}");
            Ok(())
        });
    }

    #[test]
    fn layers_in_order() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "server.toml",
                r#"
                bind = "127.0.0.1:9000"
                redis_url = "redis://file"
                log_format = "json"
                [limits]
                send = "10/1m"
                "#,
            )?;
            jail.set_env("REDIS_URL", "redis://plain-env");
            jail.set_env("KAVRO_LIMIT_SEND", "12/1m");
            jail.set_env("KAVRO_LOCKOUT_FAILURES", "7");
            jail.set_env("KAVRO_JWT_SECRET", "12345");
            jail.set_env("KAVRO_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1");
            jail.set_env("KAVRO_SERVER", "http://client-setting");
            jail.set_env("KAVRO_REQUIRE_SERVICES", "1");
            let flags = FlagOverrides {
                log_format: Some(LogFormat::Text),
                ..FlagOverrides::default()
            };
            let config = Config::load(Some(Path::new("server.toml")), &flags)?;
            assert_eq!(config.bind.port(), 9000, "file over default");
            assert_eq!(config.redis_url, "redis://plain-env", "env over file");
            assert_eq!(
                config.limits.send,
                RateSpec::new(12, Duration::from_secs(60))
            );
            assert_eq!(config.lockout.failures, 7);
            assert_eq!(config.log_format, LogFormat::Text, "flag over file");
            assert_eq!(
                config.jwt_secret.expose(),
                "12345",
                "numeric-looking secrets stay text"
            );
            assert_eq!(config.trusted_proxies.len(), 2);
            jail.set_env("KAVRO_REDIS_URL", "redis://kavro-env");
            let config = Config::load(Some(Path::new("server.toml")), &flags)?;
            assert_eq!(config.redis_url, "redis://kavro-env", "KAVRO_ over plain");
            Ok(())
        });
    }

    #[test]
    fn bad_values_are_named() {
        Jail::expect_with(|jail| {
            jail.set_env("KAVRO_LIMIT_LOGIN", "lots");
            let err = Config::load(None, &FlagOverrides::default()).unwrap_err();
            assert!(err.to_string().contains("lots"), "{err}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("KAVRO_BIND", "nowhere");
            assert!(Config::load(None, &FlagOverrides::default()).is_err());
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.create_file("server.toml", "bnid = \"127.0.0.1:1\"")?;
            let err = Config::load(Some(Path::new("server.toml")), &FlagOverrides::default())
                .unwrap_err();
            assert!(err.to_string().contains("bnid"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn example_config_documents_every_key() {
        let example = include_str!("../../assets/server.example.toml");
        let parsed: Config = Figment::new()
            .merge(Toml::string(example))
            .extract()
            .expect("assets/server.example.toml parses as a complete Config");
        parsed.validate().expect("example config is valid");
        // Every key of the defaults appears in the example (uncommented).
        let defaults = toml::Value::try_from(Config::default()).expect("serialize defaults");
        let example: toml::Value = toml::from_str(example).expect("toml");
        for (key, value) in defaults.as_table().expect("table") {
            assert!(
                example.get(key).is_some(),
                "server.example.toml lacks `{key}`"
            );
            if let Some(table) = value.as_table() {
                for sub in table.keys() {
                    assert!(
                        example[key].get(sub).is_some(),
                        "server.example.toml lacks `{key}.{sub}`"
                    );
                }
            }
        }
    }

    #[test]
    fn debug_redacts_secrets() {
        let config = Config {
            jwt_secret: SecretString::from("topsecretjwt".to_owned()),
            database_url: "postgres://kavro:hunter2@db/kavro".to_owned(),
            blob_s3_settings: vec![("AWS_SECRET_ACCESS_KEY".to_owned(), "s3secret".to_owned())],
            ..Config::default()
        };
        let text = format!("{config:?}");
        assert!(
            !text.contains("topsecretjwt")
                && !text.contains("hunter2")
                && !text.contains("s3secret"),
            "{text}"
        );
        assert!(text.contains("kavro:***@db"));
        assert!(text.contains("AWS_SECRET_ACCESS_KEY"), "{text}");
    }

    #[test]
    fn redact_url_hides_passwords_everywhere() {
        let cases = [
            (
                "postgres://kavro:hunter2@db/kavro",
                "postgres://kavro:***@db/kavro",
            ),
            (
                "postgres://db/kavro?user=kavro&password=hunter2",
                "postgres://db/kavro?user=kavro&password=***",
            ),
            (
                "postgresql://db/kavro?sslmode=require&sslpassword=hunter2&application_name=relay",
                "postgresql://db/kavro?sslmode=require&sslpassword=***&application_name=relay",
            ),
            (
                "redis://127.0.0.1:6379/0?password=hunter2",
                "redis://127.0.0.1:6379/0?password=***",
            ),
            ("redis://:hunter2@cache:6379", "redis://:***@cache:6379"),
            (
                "rediss://u:hunter2@cache/0?PASSWORD=hunter2&token=hunter2#frag",
                "rediss://u:***@cache/0?PASSWORD=***&token=***#frag",
            ),
            // An `@` after the authority is not a credential separator.
            (
                "postgres://u:hunter2@db/kavro?application_name=a@b",
                "postgres://u:***@db/kavro?application_name=a@b",
            ),
            (
                "postgres://db/k?application_name=x@y:z",
                "postgres://db/k?application_name=x@y:z",
            ),
            (
                "sqlite:///var/lib/kavro/kavro.db",
                "sqlite:///var/lib/kavro/kavro.db",
            ),
            ("postgres://user@db/kavro", "postgres://user@db/kavro"),
            ("", ""),
        ];
        for (url, redacted) in cases {
            assert_eq!(redact_url(url), redacted, "{url}");
            assert!(!redact_url(url).contains("hunter2"), "{url}");
        }
    }

    #[test]
    fn each_bad_combination_is_refused_by_name() {
        type Case = (fn(&mut Config), InvalidConfig);
        let cases: [Case; 16] = [
            (
                |c| c.tls_cert = Some("cert.pem".into()),
                InvalidConfig::TlsHalfSet,
            ),
            (
                |c| c.tls_key = Some("key.pem".into()),
                InvalidConfig::TlsHalfSet,
            ),
            (|c| c.lockout.failures = 0, InvalidConfig::NoLockoutFailures),
            (
                |c| c.token_ttl = Duration::from_secs(59),
                InvalidConfig::TokenTtlTooShort,
            ),
            (|c| c.db_max_connections = 0, InvalidConfig::NoDbConnections),
            (
                |c| c.max_pending_per_recipient = 0,
                InvalidConfig::NoPendingMessages,
            ),
            (
                |c| c.body_timeout = Duration::ZERO,
                InvalidConfig::ZeroTimeout,
            ),
            (
                |c| c.header_timeout = Duration::ZERO,
                InvalidConfig::ZeroTimeout,
            ),
            (
                |c| c.sweep_interval = Duration::ZERO,
                InvalidConfig::ZeroSweepInterval,
            ),
            (
                |c| c.max_pending_per_sender = 0,
                InvalidConfig::NoPendingPerSender,
            ),
            (|c| c.ip_prefix_v4 = 33, InvalidConfig::IpPrefixOutOfRange),
            (|c| c.ip_prefix_v6 = 0, InvalidConfig::IpPrefixOutOfRange),
            (
                |c| c.lockout.duration = Duration::ZERO,
                InvalidConfig::LockoutDurations,
            ),
            (
                |c| c.lockout.max_duration = Duration::from_secs(60),
                InvalidConfig::LockoutDurations,
            ),
            (
                |c| {
                    c.redis_url = "redis://one".into();
                    c.redis_cluster = vec!["redis://a:7000".into()];
                },
                InvalidConfig::RedisUrlAndCluster,
            ),
            (
                |c| c.redis_cluster = vec!["redis://a:7000".into(), "a:7001".into()],
                InvalidConfig::RedisClusterScheme,
            ),
        ];
        assert_eq!(Config::default().validate(), Ok(()));
        for (tweak, expected) in cases {
            let mut config = Config::default();
            tweak(&mut config);
            assert_eq!(config.validate(), Err(expected));
        }
        assert_eq!(
            InvalidConfig::TokenTtlTooShort.to_string(),
            "token_ttl must be at least 1 minute"
        );
    }
}
