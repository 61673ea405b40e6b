//! [`Relay`] over HTTP with reqwest (rustls with the ring provider, the
//! platform's certificate verifier). Connect timeout 5 s, request timeout
//! 30 s; a long-poll gets its `wait` plus 15 s, so the relay answers first.

use std::time::Duration;

use async_trait::async_trait;
use kavro_proto::api::{
    BatchAck, BatchAckResponse, ChangePassword, Credentials, DeleteAccount, DeliveryStatus, Device,
    Devices, ErrorBody, Inbox, InboxMessage, InboxOrder, Me, NewAccount, PublishKey, SendMessage,
    SendResponse, TokenResponse, UserInfo,
};
use kavro_proto::strings::Password;
use kavro_proto::{DeviceId, MessageId, UserId, validate};
use reqwest::header::RETRY_AFTER;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;

use super::{InboxQuery, LongPoll, Relay, RelayError};
use crate::config::ServerUrl;
use crate::keystore::AccessToken;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Added to a long-poll's `wait` for the request timeout.
const LONG_POLL_GRACE: Duration = Duration::from_secs(15);

/// The HTTP client every relay call of this process uses (v1 and v2): the
/// platform's roots plus `extra_roots` (`--ca-cert`), Kavro's timeouts and
/// user agent.
pub(crate) fn http_client(
    server: &str,
    extra_roots: &[reqwest::Certificate],
) -> Result<reqwest::Client, RelayError> {
    // reqwest is built without a default crypto provider: without this,
    // building the client panics. Installing twice is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .tls_certs_merge(extra_roots.iter().cloned())
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("kavro/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| RelayError::Unreachable {
            server: server.to_owned(),
            detail: format!("cannot set up HTTP: {}", innermost(&e)),
        })
}

/// A relay reached over HTTP(S).
#[derive(Clone)]
pub struct HttpRelay {
    client: reqwest::Client,
    base: String,
}

impl HttpRelay {
    /// A relay client over an [`http_client`] built before (one per
    /// process: building one reads and parses every platform root).
    pub fn with_client(server: &ServerUrl, client: reqwest::Client) -> Self {
        Self {
            client,
            base: server.as_str().to_owned(),
        }
    }

    fn request(&self, method: Method, path: &str, token: Option<&AccessToken>) -> RequestBuilder {
        let builder = self.client.request(method, format!("{}{path}", self.base));
        match token {
            Some(token) => builder.bearer_auth(token.expose()),
            None => builder,
        }
    }

    async fn call<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T, RelayError> {
        let response = request.send().await.map_err(|e| self.transport(&e))?;
        let status = response.status();
        if status.is_success() {
            let bytes = response.bytes().await.map_err(|e| self.transport(&e))?;
            serde_json::from_slice(&bytes).map_err(|e| RelayError::InvalidResponse(e.to_string()))
        } else {
            Err(error_from(response).await)
        }
    }

    fn transport(&self, err: &reqwest::Error) -> RelayError {
        if let Some(detail) = certificate_problem(err) {
            return RelayError::Certificate {
                server: self.base.clone(),
                detail,
            };
        }
        let detail = if err.is_timeout() {
            "no answer in time (timed out)".to_owned()
        } else {
            innermost(err)
        };
        RelayError::Unreachable {
            server: self.base.clone(),
            detail,
        }
    }
}

/// The long-poll fields of `GET /ready`, read leniently: a relay older than
/// `long_poll_max_wait` does not send it (and the other fields of the body
/// do not matter here).
#[derive(serde::Deserialize)]
struct ReadyLongPoll {
    long_poll: bool,
    #[serde(default)]
    long_poll_max_wait: Option<u32>,
}

impl ReadyLongPoll {
    fn long_poll(&self) -> LongPoll {
        LongPoll::from_ready(self.long_poll, self.long_poll_max_wait)
    }
}

/// The certificate error in `err`'s chain, if the TLS handshake failed on
/// the relay's certificate. rustls's error sits inside an `io::Error`, whose
/// `source()` skips it, so each `io::Error` is opened too.
fn certificate_problem(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut current = Some(err);
    while let Some(cause) = current {
        let tls = cause.downcast_ref::<rustls::Error>().or_else(|| {
            cause
                .downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::get_ref)
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(
            tls @ (rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented),
        ) = tls
        {
            return Some(tls.to_string());
        }
        current = cause.source();
    }
    // Connectors box and re-wrap errors; rustls's own text is what is left.
    let text = innermost(err);
    text.starts_with("invalid peer certificate").then_some(text)
}

/// The most specific message in an error's chain ("Connection refused
/// (os error 111)" rather than "error sending request").
pub(crate) fn innermost(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current = err;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

fn retry_after(response: &Response) -> Option<Duration> {
    response
        .headers()
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// Maps a non-2xx answer, reading the contract's `{"error", "status_code"}` body.
pub(crate) async fn error_from(response: Response) -> RelayError {
    let status = response.status();
    let retry = retry_after(&response);
    let body: Option<ErrorBody> = response
        .bytes()
        .await
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    let (message, details) = match body {
        Some(body) => (body.error, body.details.unwrap_or_default()),
        None => (
            status
                .canonical_reason()
                .unwrap_or("unexpected answer")
                .to_owned(),
            Vec::new(),
        ),
    };
    match status {
        StatusCode::UNAUTHORIZED => RelayError::Unauthorized(message),
        StatusCode::FORBIDDEN => RelayError::Forbidden(message),
        StatusCode::NOT_FOUND => RelayError::NotFound(message),
        StatusCode::TOO_MANY_REQUESTS => RelayError::RateLimited {
            retry_after: retry,
            message,
        },
        s if s.is_server_error() => RelayError::Server {
            status: s.as_u16(),
            message,
            retry_after: retry,
        },
        s => RelayError::Rejected {
            status: s.as_u16(),
            message,
            details,
        },
    }
}

#[async_trait]
impl Relay for HttpRelay {
    async fn long_poll(&self) -> Result<LongPoll, RelayError> {
        let ready: ReadyLongPoll = self.call(self.request(Method::GET, "/ready", None)).await?;
        Ok(ready.long_poll())
    }

    async fn register(&self, account: &NewAccount) -> Result<AccessToken, RelayError> {
        let body: TokenResponse = self
            .call(
                self.request(Method::POST, "/auth/register", None)
                    .json(account),
            )
            .await?;
        Ok(AccessToken::new(body.access_token))
    }

    async fn login(&self, credentials: &Credentials) -> Result<AccessToken, RelayError> {
        let body: TokenResponse = self
            .call(
                self.request(Method::POST, "/auth/login", None)
                    .json(credentials),
            )
            .await?;
        Ok(AccessToken::new(body.access_token))
    }

    async fn logout(&self, token: &AccessToken) -> Result<(), RelayError> {
        let _: serde_json::Value = self
            .call(self.request(Method::POST, "/auth/logout", Some(token)))
            .await?;
        Ok(())
    }

    async fn me(&self, token: &AccessToken) -> Result<Me, RelayError> {
        self.call(self.request(Method::GET, "/auth/me", Some(token)))
            .await
    }

    async fn change_password(
        &self,
        token: &AccessToken,
        current: &Password,
        new: &Password,
    ) -> Result<AccessToken, RelayError> {
        let body: TokenResponse = self
            .call(
                self.request(Method::POST, "/auth/password", Some(token))
                    .json(&ChangePassword {
                        current_password: current.clone(),
                        new_password: new.clone(),
                    }),
            )
            .await?;
        Ok(AccessToken::new(body.access_token))
    }

    async fn logout_all(&self, token: &AccessToken) -> Result<(), RelayError> {
        let _: serde_json::Value = self
            .call(self.request(Method::POST, "/auth/logout-all", Some(token)))
            .await?;
        Ok(())
    }

    async fn delete_account(
        &self,
        token: &AccessToken,
        password: &Password,
    ) -> Result<(), RelayError> {
        let _: serde_json::Value = self
            .call(
                self.request(Method::DELETE, "/auth/me", Some(token))
                    .json(&DeleteAccount {
                        password: password.clone(),
                    }),
            )
            .await?;
        Ok(())
    }

    async fn keys(&self, token: &AccessToken, user: UserId) -> Result<Vec<Device>, RelayError> {
        let body: Devices = self
            .call(self.request(Method::GET, &format!("/keys/{user}"), Some(token)))
            .await?;
        Ok(body.devices)
    }

    async fn retire_key(&self, token: &AccessToken, key: DeviceId) -> Result<(), RelayError> {
        let _: serde_json::Value = self
            .call(self.request(Method::DELETE, &format!("/keys/{key}"), Some(token)))
            .await?;
        Ok(())
    }

    async fn publish_key(&self, token: &AccessToken, key: &PublishKey) -> Result<(), RelayError> {
        let _: serde_json::Value = self
            .call(
                self.request(Method::POST, "/keys/publish", Some(token))
                    .json(key),
            )
            .await?;
        Ok(())
    }

    async fn user_by_name(
        &self,
        token: &AccessToken,
        username: &str,
    ) -> Result<UserInfo, RelayError> {
        // Only valid usernames go into the path: they need no escaping.
        if validate::username(username).is_err() {
            return Err(RelayError::NotFound("No such user".to_owned()));
        }
        self.call(self.request(Method::GET, &format!("/users/{username}"), Some(token)))
            .await
    }

    async fn send(
        &self,
        token: &AccessToken,
        message: &SendMessage,
    ) -> Result<MessageId, RelayError> {
        let body: SendResponse = self
            .call(
                self.request(Method::POST, "/messages/", Some(token))
                    .json(message),
            )
            .await?;
        Ok(body.id)
    }

    async fn inbox(
        &self,
        token: &AccessToken,
        query: InboxQuery,
    ) -> Result<Vec<InboxMessage>, RelayError> {
        let order = match query.order {
            InboxOrder::Asc => "asc",
            InboxOrder::Desc => "desc",
        };
        // Numbers and a fixed word only: nothing to escape.
        let path = format!(
            "/messages/inbox?limit={}&order={order}&wait={}",
            query.limit, query.wait
        );
        let mut request = self.request(Method::GET, &path, Some(token));
        if query.wait > 0 {
            request = request.timeout(Duration::from_secs(u64::from(query.wait)) + LONG_POLL_GRACE);
        }
        let body: Inbox = self.call(request).await?;
        Ok(body.messages)
    }

    async fn ack_many(&self, token: &AccessToken, ids: &[MessageId]) -> Result<u64, RelayError> {
        let body: BatchAckResponse = self
            .call(
                self.request(Method::POST, "/messages/ack", Some(token))
                    .json(&BatchAck { ids: ids.to_vec() }),
            )
            .await?;
        Ok(body.acknowledged)
    }

    async fn message_status(
        &self,
        token: &AccessToken,
        id: MessageId,
    ) -> Result<DeliveryStatus, RelayError> {
        self.call(self.request(Method::GET, &format!("/messages/{id}/status"), Some(token)))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unreachable_relay_is_reported_as_such() {
        // Bind and drop a listener: nothing listens on that port afterwards.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = ServerUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let relay = HttpRelay::with_client(&server, http_client(server.as_str(), &[]).unwrap());
        let err = relay.long_poll().await.unwrap_err();
        match &err {
            RelayError::Unreachable { server: s, detail } => {
                assert_eq!(s, server.as_str());
                assert!(detail.to_lowercase().contains("refused"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
        assert!(err.is_transient());
    }

    #[test]
    fn ready_is_read_from_old_and_new_relays() {
        let parse = |body: &str| {
            serde_json::from_str::<ReadyLongPoll>(body)
                .unwrap()
                .long_poll()
        };
        let old = r#"{"status":"ready","database":"ok","redis":"not configured","long_poll":true}"#;
        assert_eq!(parse(old), LongPoll::UpTo(25));
        let off = r#"{"status":"ready","database":"ok","redis":"ok","long_poll":false,"long_poll_max_wait":0}"#;
        assert_eq!(parse(off), LongPoll::Off);
        let short = r#"{"status":"ready","database":"ok","redis":"ok","long_poll":true,"long_poll_max_wait":8}"#;
        assert_eq!(parse(short), LongPoll::UpTo(8));
    }
}
