//! What every request handler shares: the store, the limiter, the secrets in
//! their usable form, the clock, and the settings handlers need.

use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

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
    pub trusted_proxies: Vec<IpNet>,
    pub max_long_polls_per_user: u32,
    /// Longest long-poll this relay holds (shorter than the client asks, if set so).
    pub max_wait: Duration,
    pub tls: bool,
}

pub struct AppState {
    pub store: Arc<dyn Store>,
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
