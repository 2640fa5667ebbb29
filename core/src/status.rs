//! The optional HTTP endpoint both daemons serve: `/status` (JSON) and `/metrics` (Prometheus
//! text format). Each daemon supplies its own status document.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{Checker, ConfigError, quoted};

/// The `[status]` table as written.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStatus {
    pub listen: String,
}

impl RawStatus {
    /// The address to listen on.
    pub fn validate(&self, check: &Checker<'_>) -> Result<SocketAddr, ConfigError> {
        self.listen
            .parse()
            .map_err(|_| check.invalid("status.listen", quoted(&self.listen), "an address such as \"127.0.0.1:9101\""))
    }
}

/// The endpoint could not listen.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for status on {addr}: {source}")]
pub struct BindError {
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// A router serving `/status` from what `status()` resolves to, and `/metrics` from `registry`.
pub fn router<F, Fut>(status: F, registry: Arc<Registry>) -> Router
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = serde_json::Value> + Send + 'static,
{
    Router::new()
        .route("/status", get(move || async move { axum::Json(status().await) }))
        .route("/metrics", get(move || std::future::ready(metrics_text(&registry))))
}

fn metrics_text(registry: &Registry) -> impl IntoResponse + use<> {
    let mut body = String::new();
    // Encoding into a String only fails if a metric's own formatting fails.
    if let Err(err) = prometheus_client::encoding::text::encode(&mut body, registry) {
        tracing::warn!(%err, "encoding metrics");
    }
    // prometheus-client writes OpenMetrics text (counters named `_total`, `# EOF`).
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body)
}

/// Listens on `addr` and serves `router` in a task of its own until `shutdown` is cancelled.
pub async fn start(addr: SocketAddr, router: Router, shutdown: CancellationToken) -> Result<(), BindError> {
    let listener = TcpListener::bind(addr).await.map_err(|source| BindError { addr, source })?;
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, router).with_graceful_shutdown(shutdown.cancelled_owned()).await {
            tracing::warn!(%err, "status endpoint stopped");
        }
    });
    tracing::info!(%addr, "status endpoint listening");
    Ok(())
}
