//! The SPOE agent's listener: accepts HAProxy's connections up to the configured limit (beyond
//! it, a connection is answered with AGENT-DISCONNECT status 13 and closed), one task each.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::connection::{self, End, Limits};
use super::handler::RouteHandler;
use crate::config::SpoeConfig;
use crate::metrics::Metrics;

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for SPOE on {addr}: {source}")]
pub struct BindError {
    pub addr: std::net::SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// Binds the agent's address (so a start fails at once if it is taken).
pub async fn bind(config: &SpoeConfig) -> Result<TcpListener, BindError> {
    TcpListener::bind(config.listen).await.map_err(|source| BindError { addr: config.listen, source })
}

/// Serves connections until `shutdown` is cancelled.
pub async fn run(
    listener: TcpListener,
    config: SpoeConfig,
    handler: Arc<RouteHandler>,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    info!(addr = %config.listen, max_connections = config.max_connections, "SPOE agent listening");
    let permits = Arc::new(Semaphore::new(config.max_connections));
    let limits = Limits { max_frame_size: config.max_frame_size, idle_timeout: config.idle_timeout };
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                warn!(%err, "SPOE accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            metrics.spoe_disconnect(13);
            tokio::spawn(connection::refuse(stream, config.max_frame_size));
            continue;
        };
        let (handler, metrics, shutdown) = (handler.clone(), metrics.clone(), shutdown.clone());
        tokio::spawn(async move {
            metrics.spoe_connections.inc();
            let end = connection::serve(stream, handler.as_ref(), limits, &shutdown).await;
            metrics.spoe_connections.dec();
            match end {
                End::Closed => {}
                End::Disconnected(status) => {
                    metrics.spoe_disconnect(status.code());
                    warn!(%peer, status = status.code(), "SPOE connection ended by the agent");
                }
                End::Io(err) => debug!(%peer, %err, "SPOE connection failed"),
            }
            drop(permit);
        });
    }
}
