//! What a session operation can fail with, sorted by what the user can do
//! about it. Messages state facts; each front end phrases its own advice
//! (the CLI names commands, the chat app keys) and the CLI maps each
//! variant to an exit code (`cli::exit`).

use std::time::Duration;

use crate::config::ConfigError;
use crate::history::HistoryError;
use crate::keystore::KeystoreError;
use crate::relay::RelayError;

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// No account, no token, or no key here: log in.
    #[error(transparent)]
    NotLoggedIn(#[from] NotLoggedIn),
    /// The relay refused the password (`relogin: None`) or the session
    /// token of account `relogin`.
    #[error("{message}")]
    AuthRefused {
        message: String,
        relogin: Option<String>,
    },
    /// The contact's key differs from the pinned one: nothing was sent.
    #[error(
        "{username}'s identity key has changed since you pinned it, so nothing was sent. This \
         happens when {username} sets up a new device, or when someone intercepts your \
         messages."
    )]
    KeyChanged { username: String },
    /// `trust` was given a safety number or key fingerprint that is not the
    /// one of the key it would accept now: nothing was trusted.
    #[error(
        "the key {username} has now is not the one whose safety number or fingerprint you \
         compared (the relay showed another key since), so it was not trusted"
    )]
    NotTheKeyCompared { username: String },
    /// The contact has no usable key.
    #[error("cannot encrypt to {username}: {reason}")]
    NoUsableKey { username: String, reason: String },
    #[error("there is no user named {0:?} on this relay; check the spelling")]
    NoSuchUser(String),
    #[error("cannot reach the Kavro relay at {server} ({detail})")]
    Unreachable { server: String, detail: String },
    /// The relay's TLS certificate is not trusted here: the relay is
    /// reachable, the trust is what is missing.
    #[error(
        "the Kavro relay at {server} presented a TLS certificate this device does not trust ({detail})"
    )]
    Certificate { server: String, detail: String },
    #[error("{}", rate_limited_text(*.retry_after))]
    RateLimited { retry_after: Option<Duration> },
    /// A bad argument (username syntax, weak password, empty message).
    #[error("{0}")]
    InvalidInput(String),
    /// The username is taken on the relay (`register`).
    #[error("{message}")]
    UsernameTaken { username: String, message: String },
    /// The profile already belongs to another account.
    #[error("profile `{profile}` is already set up for {username} on {server}")]
    ProfileInUse {
        profile: String,
        username: String,
        server: String,
    },
    /// A send that failed for a transient reason and stays in the outbox.
    #[error(
        "{cause}. The message is queued and goes out with a later sync (once: the relay drops a \
         retried copy), so do not send it again."
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
    /// An attachment over v1 goes only to a contact known to run a Kavro
    /// client: one whose authenticated envelope reached this history. A
    /// legacy client cannot open it. Nothing was uploaded.
    #[error(
        "{username} has not sent you an authenticated Kavro message here, so their client may be          a legacy one that cannot receive files; nothing was uploaded"
    )]
    FilesNotReceivable { username: String },
    /// The attachment could not be read, sealed, uploaded or saved.
    #[error("{0}")]
    Attachment(String),
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

/// Why this device has no usable session: facts, for the front ends to
/// turn into advice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotLoggedIn {
    #[error("not logged in (profile `{profile}`)")]
    NoAccount { profile: String },
    #[error("profile `{profile}` is set up for {username} on {account_server}, not for {server}")]
    OtherServer {
        profile: String,
        username: String,
        account_server: String,
        server: String,
    },
    #[error("no identity key for {username} was found in {store}")]
    NoKey { username: String, store: String },
    #[error(
        "the identity key in {store} is not the one profile `{profile}` published ({fingerprint})"
    )]
    KeyNotPublished {
        username: String,
        store: String,
        profile: String,
        fingerprint: String,
    },
    #[error("{username} is logged out")]
    LoggedOut { username: String },
    #[error(
        "the relay says this session belongs to user #{relay_user_id} ({relay_username}), but \
         profile `{profile}` is {username} (user #{user_id})"
    )]
    OtherAccount {
        profile: String,
        username: String,
        user_id: i64,
        relay_username: String,
        relay_user_id: i64,
    },
}

impl NotLoggedIn {
    /// The account to log in again as, when the profile has one.
    pub fn username(&self) -> Option<&str> {
        match self {
            Self::NoAccount { .. } => None,
            Self::OtherServer { username, .. }
            | Self::NoKey { username, .. }
            | Self::KeyNotPublished { username, .. }
            | Self::LoggedOut { username }
            | Self::OtherAccount { username, .. } => Some(username),
        }
    }
}

impl SessionError {
    /// The error a relay refusal becomes; a refused token belongs to
    /// account `username` (when known).
    pub(crate) fn from_relay(err: RelayError, username: Option<&str>) -> Self {
        match err {
            RelayError::Unreachable { server, detail } => Self::Unreachable { server, detail },
            RelayError::Certificate { server, detail } => Self::Certificate { server, detail },
            RelayError::RateLimited { retry_after, .. } => Self::RateLimited { retry_after },
            RelayError::Unauthorized(message) => Self::AuthRefused {
                message: format!("the relay refused this session ({message})"),
                relogin: Some(username.unwrap_or("<username>").to_owned()),
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
