//! `/health`, `/ready`, `/metrics`: for load balancers, orchestrators and Prometheus.

use std::sync::Arc;
use std::time::Duration;

use kavro_proto::api::{Health, Ready, SERVICE_NAME};
use poem::Request;
use poem_openapi::payload::{Json, PlainText};
use poem_openapi::{ApiResponse, OpenApi};
use subtle::ConstantTimeEq as _;

use super::{ApiTags, client_ip};
use crate::error::ApiError;
use crate::limits::CounterBackend;
use crate::state::AppState;

pub struct HealthApi {
    state: Arc<AppState>,
}

impl HealthApi {
    pub fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }
}

#[derive(ApiResponse)]
enum HealthResponse {
    #[oai(status = 200)]
    Ok(Json<Health>),
}

#[derive(ApiResponse)]
enum ReadyResponse {
    /// The database (and Redis, when configured) answer.
    #[oai(status = 200)]
    Ready(Json<Ready>),
    /// A dependency does not answer; take this instance out of rotation.
    #[oai(status = 503)]
    Unavailable(Json<Ready>),
}

#[derive(ApiResponse)]
enum MetricsResponse {
    #[oai(status = 200)]
    Ok(PlainText<String>),
}

const OK: &str = "ok";
const DOWN: &str = "unavailable";

/// Headers a proxy adds: a request carrying one did not come straight from
/// the client that opened the connection, so its peer address says nothing.
const PROXY_HEADERS: [&str; 3] = ["x-forwarded-for", "forwarded", "x-real-ip"];

/// Whether `req` may read `/metrics`: with the configured token, or from an
/// allowed address without passing through a proxy.
fn metrics_allowed(state: &AppState, req: &Request) -> Result<(), ApiError> {
    let access = &state.settings.metrics;
    if let Some(token) = &access.token {
        let presented = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if bool::from(presented.as_bytes().ct_eq(token.expose().as_bytes())) {
            return Ok(());
        }
    }
    let proxied = PROXY_HEADERS
        .iter()
        .any(|name| req.headers().contains_key(*name));
    let ip = client_ip(state, req);
    if !proxied && ip.is_some_and(|ip| access.allow.iter().any(|net| net.contains(&ip))) {
        return Ok(());
    }
    Err(if access.token.is_some() {
        ApiError::unauthorized("Metrics need the configured bearer token")
    } else {
        ApiError::forbidden("Metrics are served only to the addresses in metrics_allow")
    })
}

#[OpenApi(tag = "ApiTags::Operations")]
impl HealthApi {
    /// Liveness: the process answers
    #[oai(path = "/health", method = "get", operation_id = "health")]
    #[allow(clippy::unused_async)] // poem-openapi handlers are async
    async fn health(&self) -> HealthResponse {
        HealthResponse::Ok(Json(Health {
            status: OK.to_owned(),
            service: SERVICE_NAME.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }))
    }

    /// Readiness: the database and Redis answer
    #[oai(path = "/ready", method = "get", operation_id = "ready")]
    async fn ready(&self) -> ReadyResponse {
        let database_ok = self.state.store.ping().await.is_ok();
        let counters = self.state.limiter.counters();
        let redis = match counters.backend() {
            CounterBackend::Redis if counters.ping().await.is_ok() => OK,
            CounterBackend::Redis => DOWN,
            CounterBackend::Memory => "not configured",
        };
        let ready = database_ok && redis != DOWN;
        let long_poll_max_wait = long_poll_seconds(self.state.settings.max_wait);
        let body = Ready {
            status: if ready { "ready" } else { DOWN }.to_owned(),
            database: if database_ok { OK } else { DOWN }.to_owned(),
            redis: redis.to_owned(),
            long_poll: long_poll_max_wait > 0,
            long_poll_max_wait,
        };
        if ready {
            ReadyResponse::Ready(Json(body))
        } else {
            ReadyResponse::Unavailable(Json(body))
        }
    }

    /// Prometheus metrics (text format)
    ///
    /// Requests by operation and status with latency histograms; messages
    /// stored, delivered and expired; pending messages and the age of the
    /// oldest; open long-polls; rate-limit rejections; database pool use. Restricted: by default only
    /// loopback clients that did not come through a proxy (`metrics_allow`),
    /// or anyone with `metrics_token` as a bearer token (`401`/`403` otherwise).
    #[oai(path = "/metrics", method = "get", operation_id = "metrics")]
    async fn metrics(&self, req: &Request) -> Result<MetricsResponse, ApiError> {
        let state = &self.state;
        metrics_allowed(state, req)?;
        let now = state.clock.now();
        if let Ok(pending) = state.store.pending_total(now).await {
            metrics::gauge!("kavro_messages_pending").set(pending as f64);
        }
        if let Ok(oldest) = state.ops.oldest_pending(now).await {
            // 0 with an empty queue, so an alert on the age clears.
            let age = oldest.map_or(0.0, |t| (now - t).as_seconds_f64().max(0.0));
            metrics::gauge!("kavro_messages_oldest_pending_age_seconds").set(age);
        }
        let pool = state.store.pool_status();
        metrics::gauge!("kavro_db_pool_connections").set(f64::from(pool.size));
        metrics::gauge!("kavro_db_pool_idle").set(f64::from(pool.idle));
        metrics::gauge!("kavro_db_pool_max").set(f64::from(pool.max));
        metrics::gauge!("kavro_long_polls_open").set(state.wake.open_waiters() as f64);
        Ok(MetricsResponse::Ok(PlainText(
            crate::http::metrics::handle().render(),
        )))
    }
}

/// The longest long-poll `max_wait` allows, as `/ready` reports it: whole
/// seconds rounded up (a sub-second wait is still a long-poll), at most the
/// API's 60, and 0 only when long-poll is off.
fn long_poll_seconds(max_wait: Duration) -> u32 {
    let secs = max_wait.as_secs() + u64::from(max_wait.subsec_nanos() > 0);
    secs.min(u64::from(kavro_proto::validate::INBOX_WAIT_MAX)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_poll_seconds_round_up_and_cap() {
        assert_eq!(long_poll_seconds(Duration::ZERO), 0);
        assert_eq!(long_poll_seconds(Duration::from_millis(300)), 1);
        assert_eq!(long_poll_seconds(Duration::from_secs(25)), 25);
        assert_eq!(long_poll_seconds(Duration::from_millis(25_001)), 26);
        assert_eq!(long_poll_seconds(Duration::from_secs(3600)), 60);
    }
}
