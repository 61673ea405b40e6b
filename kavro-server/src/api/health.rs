//! `/health`, `/ready`, `/metrics`: for load balancers, orchestrators and Prometheus.

use std::sync::Arc;
use std::time::Duration;

use kavro_proto::api::{Health, Ready, SERVICE_NAME};
use poem_openapi::payload::{Json, PlainText};
use poem_openapi::{ApiResponse, OpenApi};

use super::ApiTags;
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
    /// stored, delivered and expired; pending messages; open long-polls;
    /// rate-limit rejections; database pool use.
    #[oai(path = "/metrics", method = "get", operation_id = "metrics")]
    async fn metrics(&self) -> MetricsResponse {
        let state = &self.state;
        if let Ok(pending) = state.store.pending_total(state.clock.now()).await {
            metrics::gauge!("kavro_messages_pending").set(pending as f64);
        }
        let pool = state.store.pool_status();
        metrics::gauge!("kavro_db_pool_connections").set(f64::from(pool.size));
        metrics::gauge!("kavro_db_pool_idle").set(f64::from(pool.idle));
        metrics::gauge!("kavro_db_pool_max").set(f64::from(pool.max));
        metrics::gauge!("kavro_long_polls_open").set(state.wake.open_waiters() as f64);
        MetricsResponse::Ok(PlainText(crate::http::metrics::handle().render()))
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
