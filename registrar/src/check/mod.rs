//! Running one check against a local service: `tcp`, `http`, `exec` or `redis`, each bounded
//! by the check's timeout. A result is a pass or a failure with a reason a person can act on.
//!
//! Checks are the registrar's hot path (hundreds per second on a busy host), so they stay
//! lean: a fresh connection per check closed with a reset (no TIME_WAIT pile-up, as HAProxy's
//! own checks do), a hand-written HTTP/1.1 GET, and no allocation for a passing TCP check.

mod exec;
mod http;
mod redis;
mod tcp;
mod tls;

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::service::{CheckConfig, CheckKind};

/// The result of one check run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub passed: bool,
    /// What was seen: "HTTP 200", "connect to …: Connection refused", "timed out after 1s", …
    pub detail: Cow<'static, str>,
    pub elapsed: Duration,
}

type CheckResult = Result<Cow<'static, str>, String>;

/// One configured check and what it keeps between runs (a kept-alive HTTP connection).
pub struct Check {
    pub config: CheckConfig,
    idle: Mutex<Option<http::Idle>>,
}

impl Check {
    pub fn new(config: CheckConfig) -> Check {
        Check { config, idle: Mutex::new(None) }
    }
}

/// Runs checks; holds what is worth building once (the TLS configuration).
#[derive(Debug, Clone)]
pub struct Prober {
    tls: Arc<rustls::ClientConfig>,
}

impl Prober {
    pub fn new() -> Result<Prober, rustls::Error> {
        Ok(Prober { tls: tls::client_config()? })
    }

    /// Runs one check to completion or timeout.
    pub async fn run(&self, check: &Check) -> Outcome {
        let start = Instant::now();
        let timeout = check.config.timeout;
        let result = match &check.config.kind {
            CheckKind::Tcp { host, port } => bounded(timeout, tcp::check(host, *port)).await,
            CheckKind::Http(http) => bounded(timeout, http::check(&self.tls, http, &check.idle)).await,
            // Bounds itself, to kill the command's whole process group on timeout.
            CheckKind::Exec { command } => exec::check(command, timeout).await,
            CheckKind::Redis { host, port, username, password } => {
                bounded(timeout, redis::check(host, *port, username.as_deref(), password.as_ref())).await
            }
        };
        let (passed, detail) = match result {
            Ok(detail) => (true, detail),
            Err(detail) => (false, Cow::Owned(detail)),
        };
        Outcome { passed, detail, elapsed: start.elapsed() }
    }
}

async fn bounded(timeout: Duration, check: impl Future<Output = CheckResult>) -> CheckResult {
    tokio::time::timeout(timeout, check).await.unwrap_or_else(|_| Err(timed_out(timeout)))
}

fn timed_out(timeout: Duration) -> String {
    if timeout.subsec_millis() == 0 {
        format!("timed out after {}s", timeout.as_secs())
    } else {
        format!("timed out after {}ms", timeout.as_millis())
    }
}
