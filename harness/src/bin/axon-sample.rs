//! `axon-sample`: a small HTTP service for Axon's sandbox, tests and benchmarks.
//!
//! Answers every request with `<service> <instance>` and `X-Service`/`X-Instance` headers;
//! `/health` answers 200 `OK`, or 503 after `POST /admin/fail` until `POST /admin/recover`;
//! `/admin/connections` tells how many connections it accepted; `/echo/headers` answers with
//! the request's headers, one `name: value` a line (what reached the instance); `/slow/<ms>`
//! answers like `/` after that many milliseconds (at most 10 s), so a load keeps requests in
//! flight. Listens on every `--listen` address given.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt as _;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(about = "A sample HTTP service answering with its service and instance names")]
struct Args {
    #[arg(long)]
    service: String,
    #[arg(long)]
    instance: String,
    /// Address to listen on; repeat for several.
    #[arg(long, required = true)]
    listen: Vec<SocketAddr>,
}

struct Sample {
    service: String,
    instance: String,
    healthy: AtomicBool,
    connections: AtomicU64,
}

type Shared = Arc<Sample>;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(serve(args))
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let sample = Arc::new(Sample {
        service: args.service,
        instance: args.instance,
        healthy: AtomicBool::new(true),
        connections: AtomicU64::new(0),
    });
    let router = Router::new()
        .route("/health", get(health))
        .route("/admin/fail", post(|s: State<Shared>| set_health(s, false)))
        .route("/admin/recover", post(|s: State<Shared>| set_health(s, true)))
        .route(
            "/admin/connections",
            get(|State(s): State<Shared>| async move { s.connections.load(Ordering::Relaxed).to_string() }),
        )
        .route("/echo/headers", get(echo_headers))
        .route("/slow/{ms}", get(slow))
        .fallback(hello)
        .with_state(sample.clone());
    let mut servers = tokio::task::JoinSet::new();
    for addr in args.listen {
        let counter = sample.clone();
        let listener = tokio::net::TcpListener::bind(addr).await?.tap_io(move |_| {
            counter.connections.fetch_add(1, Ordering::Relaxed);
        });
        let router = router.clone();
        servers.spawn(async move { axum::serve(listener, router).await });
    }
    while let Some(result) = servers.join_next().await {
        result??;
    }
    Ok(())
}

fn identify(sample: &Sample, status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    for (name, value) in [("x-service", &sample.service), ("x-instance", &sample.instance)] {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    response
}

async fn hello(State(sample): State<Shared>) -> Response {
    let body = format!("{} {}\n", sample.service, sample.instance);
    identify(&sample, StatusCode::OK, body)
}

async fn slow(state: State<Shared>, axum::extract::Path(ms): axum::extract::Path<u64>) -> Response {
    tokio::time::sleep(std::time::Duration::from_millis(ms.min(10_000))).await;
    hello(state).await
}

async fn echo_headers(State(sample): State<Shared>, headers: axum::http::HeaderMap) -> Response {
    let body: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {}\n", String::from_utf8_lossy(value.as_bytes())))
        .collect();
    identify(&sample, StatusCode::OK, body)
}

async fn health(State(sample): State<Shared>) -> Response {
    if sample.healthy.load(Ordering::Relaxed) {
        identify(&sample, StatusCode::OK, "OK\n".into())
    } else {
        identify(&sample, StatusCode::SERVICE_UNAVAILABLE, "failing\n".into())
    }
}

async fn set_health(State(sample): State<Shared>, healthy: bool) -> Response {
    sample.healthy.store(healthy, Ordering::Relaxed);
    identify(&sample, StatusCode::OK, format!("healthy={healthy}\n"))
}
