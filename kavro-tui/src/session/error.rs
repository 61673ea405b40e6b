//! What a session operation can fail with, sorted by what the user can do
//! about it. Every message says what to do next; the CLI maps each variant
//! to an exit code (`cli::exit`).

use std::time::Duration;

use crate::config::ConfigError;
use crate::history::HistoryError;
use crate::keystore::KeystoreError;
use crate::relay::RelayError;

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// No account, no token, or no key here: log in.
    #[error("{0}")]
    NotLoggedIn(String),
    /// The relay refused the password or the token.
    #[error("{message}{hint}")]
    AuthRefused { message: String, hint: String },
    /// The contact's key differs from the pinned one: nothing was sent.
    #[error(
        "{username}'s identity key has changed since you pinned it, so nothing was sent. This \
         happens when {username} sets up a new device, or when someone intercepts your \
         messages. Compare safety numbers with `kavro fingerprint {username}` (in person or \
         over another channel), then run `kavro trust {username}`."
    )]
    KeyChanged { username: String },
    /// The contact has no usable key.
    #[error("cannot encrypt to {username}: {reason}")]
    NoUsableKey { username: String, reason: String },
    #[error("there is no user named {0:?} on this relay; check the spelling")]
    NoSuchUser(String),
    #[error(
        "cannot reach the Kavro relay at {server} ({detail}); check that it is running and that \
         --server / KAVRO_SERVER points to it, then try again"
    )]
    Unreachable { server: String, detail: String },
    #[error("{}", rate_limited_text(*.retry_after))]
    RateLimited { retry_after: Option<Duration> },
    /// A bad argument (username syntax, weak password, empty message).
    #[error("{0}")]
    InvalidInput(String),
    /// The profile already belongs to another account.
    #[error("{0}")]
    ProfileInUse(String),
    /// A send that failed for a transient reason and stays in the outbox.
    #[error(
        "{cause} The message is queued: your next `kavro send` or `kavro inbox` sends it (once: \
         the relay drops a retried copy), so do not send it again."
    )]
    Queued { cause: Box<SessionError> },
    #[error("the secrets of {account} are unavailable: {source}")]
    Keystore {
        account: String,
        #[source]
        source: KeystoreError,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error(transparent)]
    Seal(#[from] kavro_proto::crypto::SealError),
    /// Any other refusal from the relay.
    #[error("{}", .0.describe_details())]
    Relay(RelayError),
}

fn rate_limited_text(retry_after: Option<Duration>) -> String {
    match retry_after {
        Some(wait) => format!(
            "the relay is rate limiting this client; wait {} s and try again",
            wait.as_secs().max(1)
        ),
        None => "the relay is rate limiting this client; wait a minute and try again".to_owned(),
    }
}

impl SessionError {
    /// The error a relay refusal becomes, with `login_hint` for a refused token.
    pub(crate) fn from_relay(err: RelayError, login_hint: &str) -> Self {
        match err {
            RelayError::Unreachable { server, detail } => Self::Unreachable { server, detail },
            RelayError::RateLimited { retry_after, .. } => Self::RateLimited { retry_after },
            RelayError::Unauthorized(message) => Self::AuthRefused {
                message: format!("the relay refused this session ({message})"),
                hint: login_hint.to_owned(),
            },
            other => Self::Relay(other),
        }
    }

    /// Whether a later retry may succeed (relay down or busy).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable { .. } | Self::RateLimited { .. } => true,
            Self::Queued { cause } => cause.is_transient(),
            Self::Relay(err) => err.is_transient(),
            _ => false,
        }
    }
}
