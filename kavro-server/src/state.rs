//! What every request handler shares: the store, the limiter, the secrets in
//! their usable form, the clock, and the settings handlers need.

use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use crate::http::client_ip::ClientPrefixes;
use crate::secret::SecretString;

use crate::auth::password::Passwords;
use crate::auth::tokens::Tokens;
use crate::clock::Clock;
use crate::fieldcrypt::FieldCrypt;
use crate::limits::Limiter;
use crate::store::Store;
use crate::wake::WakeHub;

/// Settings the handlers read on every request.
#[derive(Debug, Clone)]
pub struct Settings {
    pub token_ttl: Duration,
    pub message_ttl: Duration,
    pub receipt_ttl: Duration,
    pub max_pending_per_recipient: u32,
    pub max_pending_per_sender: u32,
    /// How long a deleted account's name stays reserved.
    pub username_reservation: Duration,
    pub trusted_proxies: Vec<IpNet>,
    /// How per-IP limits and the lockout group client addresses.
    pub prefixes: ClientPrefixes,
    /// Who may read `/metrics`.
    pub metrics: MetricsAccess,
    pub max_long_polls_per_user: u32,
    /// Longest long-poll this relay holds (shorter than the client asks, if set so).
    pub max_wait: Duration,
    pub tls: bool,
    /// Who may create an account.
    pub registration: crate::config::Registration,
}

/// `/metrics` is served to clients in `allow` that came straight to the
/// relay (no proxy header), and to anyone with `token`.
#[derive(Debug, Clone, Default)]
pub struct MetricsAccess {
    pub allow: Vec<IpNet>,
    pub token: Option<SecretString>,
}

pub struct AppState {
    pub store: Arc<dyn Store>,
    /// Accounts and invites as the operator manages them.
    pub ops: Arc<dyn crate::store::ops::OpsStore>,
    pub limiter: Limiter,
    pub tokens: Tokens,
    pub passwords: Passwords,
    pub fields: FieldCrypt,
    pub clock: Arc<dyn Clock>,
    pub wake: Arc<WakeHub>,
    pub settings: Settings,
    /// Kavro v2 (MLS): its store and device tokens.
    pub v2: crate::v2::V2State,
}
