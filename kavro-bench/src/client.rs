//! The relay instances under test: one shared reqwest client (one connection
//! pool) per instance URL, the route URLs parsed once, and the one function
//! that turns a request into a status and a body or a [`Failure`].

use std::time::Duration;

use bytes::Bytes;
use kavro_proto::api::ErrorBody;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use reqwest::{Client, Method, RequestBuilder, Url};

use crate::stats::{Failure, FailureKind};

/// Timeout of an ordinary request. A relay that takes this long is failing.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Added to a long-poll's `wait` for its timeout.
pub const LONG_POLL_SLACK: Duration = Duration::from_secs(15);

/// The routes a benchmark uses on one instance.
#[derive(Debug, Clone)]
pub struct Routes {
    pub health: Url,
    pub register: Url,
    pub login: Url,
    pub me: Url,
    pub publish: Url,
    pub send: Url,
    pub ack_batch: Url,
    pub metrics: Url,
    inbox: Url,
}

impl Routes {
    fn new(base: &Url) -> anyhow::Result<Self> {
        let at = |path: &str| base.join(path);
        Ok(Self {
            health: at("health")?,
            register: at("auth/register")?,
            login: at("auth/login")?,
            me: at("auth/me")?,
            publish: at("keys/publish")?,
            send: at("messages")?,
            ack_batch: at("messages/ack")?,
            metrics: at("metrics")?,
            inbox: at("messages/inbox")?,
        })
    }

    /// `GET /messages/inbox` with these query parameters (built once per task).
    pub fn inbox(&self, limit: u32, wait: u32, oldest_first: bool) -> Url {
        let mut url = self.inbox.clone();
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("limit", &limit.to_string());
            if wait > 0 {
                query.append_pair("wait", &wait.to_string());
            }
            if oldest_first {
                query.append_pair("order", "asc");
            }
        }
        url
    }
}

/// One relay instance: its URL, its connection pool and its routes.
#[derive(Debug, Clone)]
pub struct Instance {
    pub url: String,
    pub client: Client,
    pub routes: Routes,
}

impl Instance {
    /// `pool` is how many connections the benchmark keeps open to this
    /// instance at most when idle; it should cover the concurrency, so no
    /// request pays for a new TCP connection after the warmup.
    pub fn new(url: &str, pool: usize, http2: bool) -> anyhow::Result<Self> {
        let mut base =
            Url::parse(url).map_err(|e| anyhow::anyhow!("--url {url:?} is not a URL: {e}"))?;
        // `join` treats a base without a trailing slash as a file name.
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        // reqwest is built without a TLS provider and panics without one,
        // even for plain http; installing twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = Client::builder()
            .pool_max_idle_per_host(pool)
            // Below the relay's 75 s idle timeout, so we never reuse a
            // connection the server is closing.
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5))
            // Loopback traffic must not wander to a proxy named in the environment.
            .no_proxy()
            .user_agent(concat!("kavro-bench/", env!("CARGO_PKG_VERSION")));
        if http2 {
            builder = builder.http2_prior_knowledge();
        }
        let client = builder.build()?;
        Ok(Self {
            url: url.trim_end_matches('/').to_owned(),
            client,
            routes: Routes::new(&base)?,
        })
    }

    pub fn get(&self, url: Url) -> RequestBuilder {
        self.client
            .request(Method::GET, url)
            .timeout(REQUEST_TIMEOUT)
    }

    /// `POST /messages/ack` of `ids`, as the user `auth`.
    pub fn ack_batch(
        &self,
        ids: Vec<kavro_proto::MessageId>,
        auth: &HeaderValue,
    ) -> RequestBuilder {
        let body = json_body(&kavro_proto::api::BatchAck { ids });
        authed(self.post(self.routes.ack_batch.clone(), body), auth)
    }

    /// A JSON `POST` of a prepared body.
    pub fn post(&self, url: Url, body: Bytes) -> RequestBuilder {
        self.client
            .request(Method::POST, url)
            .timeout(REQUEST_TIMEOUT)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(body)
    }
}

/// `Authorization: Bearer <token>`, built once per user.
/// A wire type as a JSON request body. The wire types are plain structs of
/// strings, numbers and lists: serialising them cannot fail.
pub fn json_body<T: serde::Serialize>(value: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(value).expect("the wire types always serialise"))
}

pub fn bearer(token: &str) -> anyhow::Result<HeaderValue> {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}"))?;
    value.set_sensitive(true);
    Ok(value)
}

/// Adds a prepared `Authorization` header (a cheap reference-counted clone).
pub fn authed(request: RequestBuilder, auth: &HeaderValue) -> RequestBuilder {
    request.header(AUTHORIZATION, auth.clone())
}

/// Sends `request` and reads the whole body. A status other than `expect` is
/// a [`Failure`] carrying the relay's error message.
pub async fn exchange(request: RequestBuilder, expect: u16) -> Result<Bytes, Failure> {
    let response = request.send().await.map_err(|e| client_failure(&e))?;
    let status = response.status().as_u16();
    let body = response.bytes().await.map_err(|e| client_failure(&e))?;
    if status == expect {
        Ok(body)
    } else {
        Err(Failure::new(FailureKind::Status(status), error_text(&body)))
    }
}

/// The `error` of the relay's JSON error body, or the start of whatever came.
pub fn error_text(body: &[u8]) -> String {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(err) => match err.details {
            Some(details) if !details.is_empty() => {
                let fields: Vec<String> = details
                    .iter()
                    .map(|d| format!("{}: {}", d.field, d.message))
                    .collect();
                format!("{} ({})", err.error, fields.join("; "))
            }
            _ => err.error,
        },
        Err(_) => String::from_utf8_lossy(&body[..body.len().min(160)]).into_owned(),
    }
}

fn client_failure(err: &reqwest::Error) -> Failure {
    let kind = if err.is_timeout() {
        FailureKind::Timeout
    } else if err.is_connect() {
        FailureKind::Connect
    } else {
        FailureKind::Transport
    };
    // The source chain says why (e.g. "Too many open files").
    let mut detail = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(inner) = source {
        detail.push_str(": ");
        detail.push_str(&inner.to_string());
        source = inner.source();
    }
    Failure::new(kind, detail)
}

/// Whether `url`'s host is on this machine (127.0.0.0/8, ::1 or localhost).
pub fn is_loopback(url: &str) -> bool {
    let Ok(url) = Url::parse(url) else {
        return false;
    };
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_join_with_and_without_prefix() {
        let a = Instance::new("http://127.0.0.1:8000", 4, false).unwrap();
        assert_eq!(a.routes.send.as_str(), "http://127.0.0.1:8000/messages");
        assert_eq!(
            a.routes.inbox(50, 30, true).as_str(),
            "http://127.0.0.1:8000/messages/inbox?limit=50&wait=30&order=asc"
        );
        assert_eq!(
            a.routes.inbox(50, 0, false).as_str(),
            "http://127.0.0.1:8000/messages/inbox?limit=50"
        );
        let b = Instance::new("http://127.0.0.1:8000/api/v1/", 4, false).unwrap();
        assert_eq!(
            b.routes.ack_batch.as_str(),
            "http://127.0.0.1:8000/api/v1/messages/ack"
        );
        assert_eq!(b.url, "http://127.0.0.1:8000/api/v1");
    }

    #[test]
    fn error_text_reads_the_contract_body() {
        let body = br#"{"error":"Validation failed","details":[{"field":"limit","message":"too big"}],"status_code":422}"#;
        assert_eq!(error_text(body), "Validation failed (limit: too big)");
        assert_eq!(
            error_text(br#"{"error":"Recipient not found","status_code":404}"#),
            "Recipient not found"
        );
        assert_eq!(error_text(b"plain"), "plain");
    }

    #[test]
    fn only_loopback_hosts_are_local() {
        assert!(is_loopback("http://127.0.0.1:8000"));
        assert!(is_loopback("http://127.3.4.5:1/"));
        assert!(is_loopback("http://[::1]:8000"));
        assert!(is_loopback("http://LOCALHOST:8000"));
        assert!(!is_loopback("http://10.0.0.1:8000"));
        assert!(!is_loopback("http://example.com"));
        assert!(!is_loopback("not a url"));
    }
}
