//! The relay's HTTP API as the client sees it: one async [`Relay`] trait with
//! a method per route the client uses, and [`RelayError`], which keeps what a
//! caller needs to decide (retry later, log in again, no such user, ...).
//!
//! [`HttpRelay`] speaks to a real relay; `MemoryRelay` (compiled for unit
//! tests only, never into the binary) is an in-process relay for tests of code built on the core (the session's tests, the chat
//! app's). Wire types come from `kavro_proto::api`, shared with the server.

mod http;
#[cfg(test)]
mod memory;

use std::time::Duration;

use async_trait::async_trait;
use kavro_proto::api::{
    Credentials, DeliveryStatus, Device, FieldError, InboxMessage, InboxOrder, Me, NewAccount,
    PublishKey, SendMessage, UserInfo,
};
use kavro_proto::strings::Password;
use kavro_proto::{DeviceId, MessageId, UserId};

pub use self::http::HttpRelay;
pub(crate) use self::http::{error_from, http_client, innermost};
#[cfg(test)]
pub use self::memory::MemoryRelay;
use crate::keystore::AccessToken;

/// How the relay, or the way to it, said no.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    /// No answer: connection refused, DNS failure, TLS failure, timeout.
    #[error("cannot reach the Kavro relay at {server}: {detail}")]
    Unreachable { server: String, detail: String },
    /// The relay answered over TLS with a certificate this device does not
    /// trust (unknown authority, wrong name, expired): not a relay that is down.
    #[error("the relay at {server} presented a certificate this device does not trust: {detail}")]
    Certificate { server: String, detail: String },
    /// `429`: wait `retry_after` (when the relay said) and try again.
    #[error("the relay is rate limiting requests ({message})")]
    RateLimited {
        retry_after: Option<Duration>,
        message: String,
    },
    /// `401`: wrong credentials, or the token is expired or revoked.
    #[error("the relay refused the credentials: {0}")]
    Unauthorized(String),
    /// `403`.
    #[error("the relay refused: {0}")]
    Forbidden(String),
    /// `404`: no such user or message.
    #[error("not found on the relay: {0}")]
    NotFound(String),
    /// Another `4xx` (`400`, `413`, `422`): the request was refused as it is.
    #[error("the relay refused the request ({status}): {message}")]
    Rejected {
        status: u16,
        message: String,
        details: Vec<FieldError>,
    },
    /// A `5xx`: the relay is broken or overloaded; try again later.
    #[error("the relay failed ({status}): {message}")]
    Server {
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    /// The answer was not what the API promises.
    #[error("the relay sent an answer this client does not understand: {0}")]
    InvalidResponse(String),
}

impl RelayError {
    /// Worth retrying the same request later (the outbox keeps such sends).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Unreachable { .. } | Self::RateLimited { .. } | Self::Server { .. }
        )
    }

    /// The message text with the field details of a `422`, if any.
    pub fn describe_details(&self) -> String {
        match self {
            Self::Rejected {
                message, details, ..
            } if !details.is_empty() => {
                let fields: Vec<String> = details
                    .iter()
                    .map(|d| format!("{}: {}", d.field, d.message))
                    .collect();
                format!("{message} ({})", fields.join("; "))
            }
            other => other.to_string(),
        }
    }
}

/// Whether, and for how long, the relay holds an inbox request open while
/// nothing is pending: what `GET /ready` says, so the client never guesses
/// from response times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LongPoll {
    /// The relay answers at once (`long_poll: false`, or a maximum of 0):
    /// poll at an interval instead.
    Off,
    /// The relay holds a request up to this many seconds.
    UpTo(u32),
}

impl LongPoll {
    /// What a relay that says `long_poll: true` without `long_poll_max_wait`
    /// (one older than the field) is taken to hold a request for.
    pub const UNSTATED_MAX_WAIT: u32 = 25;

    /// From the fields of `/ready`; `max_wait` is `None` when the relay does
    /// not send it.
    pub fn from_ready(long_poll: bool, max_wait: Option<u32>) -> Self {
        match (long_poll, max_wait) {
            (false, _) | (true, Some(0)) => Self::Off,
            (true, None) => Self::UpTo(Self::UNSTATED_MAX_WAIT),
            (true, Some(seconds)) => Self::UpTo(seconds.min(kavro_proto::validate::INBOX_WAIT_MAX)),
        }
    }

    /// The `wait` to ask for when the client would like `wanted` seconds:
    /// never more than the relay holds, 0 when it does not long-poll.
    pub fn wait(self, wanted: u32) -> u32 {
        match self {
            Self::Off => 0,
            Self::UpTo(max) => wanted.min(max),
        }
    }
}

/// `GET /messages/inbox` parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboxQuery {
    /// 1–200.
    pub limit: u32,
    pub order: InboxOrder,
    /// Long-poll for up to this many seconds (0–60) when nothing is pending.
    pub wait: u32,
}

impl Default for InboxQuery {
    fn default() -> Self {
        Self {
            limit: kavro_proto::validate::INBOX_LIMIT_DEFAULT,
            order: InboxOrder::Asc,
            wait: 0,
        }
    }
}

/// Every relay route the client uses. Tokens are passed per call, so one
/// relay value can serve any account and holds no secret.
#[async_trait]
pub trait Relay: Send + Sync {
    /// `GET /ready`: whether the relay long-polls, and up to how long.
    async fn long_poll(&self) -> Result<LongPoll, RelayError>;
    /// `POST /auth/register`.
    async fn register(&self, account: &NewAccount) -> Result<AccessToken, RelayError>;
    /// `POST /auth/login`.
    async fn login(&self, credentials: &Credentials) -> Result<AccessToken, RelayError>;
    /// `POST /auth/logout`: revokes `token`.
    async fn logout(&self, token: &AccessToken) -> Result<(), RelayError>;
    /// `GET /auth/me`.
    async fn me(&self, token: &AccessToken) -> Result<Me, RelayError>;
    /// `POST /auth/password`: a fresh token; every other token of the
    /// account is revoked. `Unauthorized` for a wrong current password.
    async fn change_password(
        &self,
        token: &AccessToken,
        current: &Password,
        new: &Password,
    ) -> Result<AccessToken, RelayError>;
    /// `POST /auth/logout-all`: revokes every token of the account.
    async fn logout_all(&self, token: &AccessToken) -> Result<(), RelayError>;
    /// `DELETE /auth/me`: deletes the account (`Unauthorized`: wrong password).
    async fn delete_account(
        &self,
        token: &AccessToken,
        password: &Password,
    ) -> Result<(), RelayError>;
    /// `GET /keys/{user_id}` with our token (device names are shown to
    /// their owner only), oldest first.
    async fn keys(&self, token: &AccessToken, user: UserId) -> Result<Vec<Device>, RelayError>;
    /// `DELETE /keys/{key_id}`: retires one of our keys (`NotFound`: not ours).
    async fn retire_key(&self, token: &AccessToken, key: DeviceId) -> Result<(), RelayError>;
    /// `POST /keys/publish` (idempotent).
    async fn publish_key(&self, token: &AccessToken, key: &PublishKey) -> Result<(), RelayError>;
    /// `GET /users/{username}`: `NotFound` for no such user.
    async fn user_by_name(
        &self,
        token: &AccessToken,
        username: &str,
    ) -> Result<UserInfo, RelayError>;
    /// `POST /messages/`; with `client_msg_id` a retry returns the first id.
    async fn send(
        &self,
        token: &AccessToken,
        message: &SendMessage,
    ) -> Result<MessageId, RelayError>;
    /// `GET /messages/inbox`: unacknowledged messages.
    async fn inbox(
        &self,
        token: &AccessToken,
        query: InboxQuery,
    ) -> Result<Vec<InboxMessage>, RelayError>;
    /// `POST /messages/ack` (at most 500 ids): how many are now acknowledged.
    async fn ack_many(&self, token: &AccessToken, ids: &[MessageId]) -> Result<u64, RelayError>;
    /// `GET /messages/{id}/status`, for the sender.
    async fn message_status(
        &self,
        token: &AccessToken,
        id: MessageId,
    ) -> Result<DeliveryStatus, RelayError>;
}

#[cfg(test)]
mod tests {
    use super::LongPoll;

    #[test]
    fn long_poll_comes_from_ready_and_clamps_the_wait() {
        assert_eq!(LongPoll::from_ready(false, None), LongPoll::Off);
        assert_eq!(LongPoll::from_ready(false, Some(30)), LongPoll::Off);
        assert_eq!(LongPoll::from_ready(true, Some(0)), LongPoll::Off);
        // A relay older than `long_poll_max_wait`.
        assert_eq!(LongPoll::from_ready(true, None), LongPoll::UpTo(25));
        assert_eq!(LongPoll::from_ready(true, Some(10)), LongPoll::UpTo(10));
        assert_eq!(LongPoll::from_ready(true, Some(600)), LongPoll::UpTo(60));
        assert_eq!(LongPoll::Off.wait(25), 0);
        assert_eq!(LongPoll::UpTo(10).wait(25), 10);
        assert_eq!(LongPoll::UpTo(60).wait(25), 25);
    }
}
