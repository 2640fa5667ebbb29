//! The SPOE agent's listener: accepts HAProxy's connections up to the configured limit (beyond
//! it, a connection is answered with AGENT-DISCONNECT status 13 and closed), one task each.
//!
//! The agent runs on a thread of its own with a single-threaded runtime: answering a NOTIFY is
//! a read, a lookup in the published snapshot and a write, so one thread keeps up with HAProxy
//! (see the benchmark), saves the cross-thread wake-ups of a shared runtime, and is never
//! delayed by the sync's bursts of work on the daemon's runtime.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::connection::{self, End, Limits};
use super::handler::RouteHandler;
use crate::config::SpoeConfig;
use crate::metrics::Metrics;

/// How long shutdown waits for connections to say goodbye.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for SPOE on {addr}: {source}")]
pub struct BindError {
    pub addr: std::net::SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// Binds the agent's address (so a start fails at once if it is taken).
pub fn bind(config: &SpoeConfig) -> Result<std::net::TcpListener, BindError> {
    let error = |source| BindError { addr: config.listen, source };
    let listener = std::net::TcpListener::bind(config.listen).map_err(error)?;
    listener.set_nonblocking(true).map_err(error)?;
    Ok(listener)
}

/// Serves connections on the calling thread, with a runtime of its own, until `shutdown` is
/// cancelled and every connection has said goodbye.
pub fn run_on_this_thread(
    listener: std::net::TcpListener,
    config: SpoeConfig,
    handler: Arc<RouteHandler>,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = TcpListener::from_std(listener)?;
        run(listener, config, handler, metrics, shutdown).await;
        Ok(())
    })
}

/// Serves connections until `shutdown` is cancelled and every connection has ended.
async fn run(
    listener: TcpListener,
    config: SpoeConfig,
    handler: Arc<RouteHandler>,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    info!(addr = %config.listen, max_connections = config.max_connections, "SPOE agent listening");
    let permits = Arc::new(Semaphore::new(config.max_connections));
    let connections = TaskTracker::new();
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
            connections.spawn(connection::refuse(stream, config.max_frame_size));
            continue;
        };
        let (handler, metrics, shutdown) = (handler.clone(), metrics.clone(), shutdown.clone());
        connections.spawn(async move {
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
    // Every connection sends its AGENT-DISCONNECT on shutdown; a peer that reads nothing does
    // not hold the daemon up for long.
    connections.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, connections.wait()).await.is_err() {
        warn!(left = connections.len(), "SPOE connections still open at shutdown");
    }
}
