//! The optional HTTP endpoint both daemons serve: `/status` (JSON) and `/metrics` (Prometheus
//! text format). Each daemon supplies its own status document and may add routes of its own.

use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

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
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body)
}

/// Serves `router` on `listener` until `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, router: Router, shutdown: CancellationToken) -> std::io::Result<()> {
    axum::serve(listener, router).with_graceful_shutdown(shutdown.cancelled_owned()).await
}
