//! Assembles the HTTP application and serves it until shutdown.
//!
//! Like mini-redis's `server::run`, [`serve`] takes its listener and its
//! shutdown signal from the caller, so tests bind port 0 and stop it cleanly.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use poem::listener::AcceptorExt as _;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::middleware::{Cors, NormalizePath, TrailingSlash};
use poem::{EndpointExt, Route};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::http::allow::{AllowHeader, AllowedMethods};
use crate::http::body_limit::BodyLimit;
use crate::http::conn_guard::GuardedAcceptor;
use crate::http::headers::SecurityHeaders;
use crate::http::metrics::RequestMetrics;
use crate::state::AppState;

/// The whole HTTP application for `state`.
pub fn app(
    state: &Arc<AppState>,
    cors_origins: &[String],
    body_timeout: Duration,
) -> poem::endpoint::BoxEndpoint<'static> {
    // Install the metrics recorder before the first request is counted.
    crate::http::metrics::handle();
    // The root document also serves the v2 (MLS) routes under /v2; /api/v1 is v1 only.
    let root = crate::api::root_service(state);
    let allowed = AllowedMethods::from_spec(&root.spec());
    let docs = root.swagger_ui();
    let spec = root.spec_endpoint();
    let v1 = crate::api::service(state, "/api/v1");
    let v1_docs = v1.swagger_ui();
    let v1_spec = v1.spec_endpoint();
    let routes = Route::new()
        .nest("/api/v1/docs", v1_docs)
        .at("/api/v1/openapi.json", v1_spec)
        .nest("/api/v1", v1)
        .nest("/docs", docs)
        .at("/openapi.json", spec)
        .nest("/", root);
    // Outermost last; the order is the one ARCHITECTURE.md lists. The request
    // metrics wrap everything, so the body limit's 400/408/413 are counted
    // too; the security headers go on CORS preflight answers as well.
    let app = routes
        .catch_all_error(crate::http::errors::render)
        .with(AllowHeader(allowed))
        .with(NormalizePath::new(TrailingSlash::Trim))
        .with(BodyLimit {
            max: kavro_proto::validate::MAX_BODY_BYTES,
            timeout: body_timeout,
            blob_chunk_max: state.v2.blobs.limits.chunk_max as usize,
        })
        .data(state.clone());
    let app = if cors_origins.is_empty() {
        app.boxed()
    } else {
        let cors = cors_origins
            .iter()
            .fold(Cors::new(), |cors, origin| {
                cors.allow_origin(origin.as_str())
            })
            .allow_credentials(false);
        app.with(cors).boxed()
    };
    app.with(SecurityHeaders {
        hsts: state.settings.tls,
    })
    .with(RequestMetrics)
    .boxed()
}

/// Serves `state` on `acceptor` until `shutdown` resolves, then lets in-flight
/// requests finish (up to `grace`), and answers open long-polls at once.
pub async fn serve<A, F>(
    acceptor: A,
    state: Arc<AppState>,
    config: &Config,
    shutdown: F,
) -> std::io::Result<()>
where
    A: Acceptor + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let stop = CancellationToken::new();
    let sweeper = tokio::spawn(crate::retention::run(
        state.clone(),
        config.sweep_interval,
        stop.clone(),
    ));
    let revocations = tokio::spawn(crate::revocations::run(state.clone(), stop.clone()));
    let blob_collector = tokio::spawn(crate::blobs::run_collector(state.clone(), stop.clone()));
    let app = app(&state, &config.cors_origins, config.body_timeout);
    let wake = state.wake.clone();
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: finishing in-flight requests");
        wake.shutdown();
    };
    let acceptor = GuardedAcceptor::new(acceptor, config.max_connections, config.header_timeout);
    let result = poem::Server::new_with_acceptor(acceptor)
        .idle_timeout(Duration::from_secs(75))
        .run_with_graceful_shutdown(app, signal, Some(config.shutdown_grace))
        .await;
    stop.cancel();
    let _ = sweeper.await;
    let _ = revocations.await;
    let _ = blob_collector.await;
    result
}

/// Binds the configured address (with TLS when configured).
pub async fn bind(config: &Config) -> anyhow::Result<poem::listener::BoxAcceptor> {
    use anyhow::Context as _;
    let acceptor = TcpListener::bind(config.bind)
        .into_acceptor()
        .await
        .with_context(|| format!("cannot listen on {}", config.bind))?;
    match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => {
            let tls = crate::tls::TlsAcceptor::new(acceptor, cert, key)?;
            Ok(tls.boxed())
        }
        _ => Ok(poem::listener::AcceptorExt::boxed(acceptor)),
    }
}
