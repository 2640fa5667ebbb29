//! The registrar daemon: one task that owns the state, runs checks on schedule, applies
//! results and reloads, and hands the wanted registrations to the publisher.
//!
//! Everything that changes state arrives on this task: due check runs, their results,
//! SIGHUP, and status requests. Checks run in spawned tasks (at most one run per service at a
//! time, so the number in flight is bounded by the number of services). Stop order: stop
//! scheduling, let the publisher delete every znode (bounded by `shutdown_grace`), then return.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_util::future::join_all;
use prometheus_client::metrics::counter::Counter;
use serde_json::{Value, json};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::check::{Check, Outcome, Prober};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::publish::{Desired, Publisher, PublisherStatus};
use crate::schedule::{Schedule, Ticket};
use crate::state::{Phase, State, check_state_name};

/// Why the registrar could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Status(#[from] axon_core::status::BindError),
    #[error("cannot set up TLS for https checks: {0}")]
    Tls(#[from] rustls::Error),
    #[error("cannot install a signal handler: {0}")]
    Signal(#[source] std::io::Error),
}

/// One finished run of a service's checks.
struct RunResult {
    ticket: Ticket,
    maintenance: bool,
    outcomes: Vec<Outcome>,
}

type StatusRequest = oneshot::Sender<Value>;

/// Runs the registrar until `shutdown` is cancelled, then deregisters and returns.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), StartError> {
    let prober = Prober::new()?;
    let (metrics, registry) = Metrics::new();
    let mut hangups = signal(SignalKind::hangup()).map_err(StartError::Signal)?;
    let (status_tx, mut status_rx) = mpsc::channel::<StatusRequest>(16);
    if let Some(addr) = config.status_listen {
        let router = axon_core::status::router(status_provider(status_tx.clone()), Arc::new(registry));
        axon_core::status::start(addr, router, shutdown.clone()).await?;
    }

    let mut daemon = Daemon::new(config, prober, metrics);
    let (desired_tx, desired_rx) = watch::channel(daemon.desired());
    let (publisher_tx, publisher_rx) = watch::channel(PublisherStatus::default());
    let publisher_stop = CancellationToken::new();
    let publisher = Publisher::new(
        desired_rx,
        publisher_tx,
        daemon.metrics.clone(),
        daemon.config.shutdown_grace,
        publisher_stop.clone(),
    );
    let publisher = tokio::spawn(publisher.run());
    // One run per service is in flight, plus any a reload made stale (their results are
    // dropped); a full channel only makes a run's task wait for this loop to read.
    let (results_tx, mut results_rx) = mpsc::channel::<RunResult>(daemon.config.services.len().max(16));
    info!(
        instance_id = %daemon.config.instance_id,
        services = daemon.config.services.len(),
        zookeeper = %daemon.config.zookeeper.hosts,
        "axon-registrar started"
    );

    let timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(timer);
    loop {
        let next = daemon.schedule.next_wake();
        if let Some(at) = next {
            timer.as_mut().reset(tokio::time::Instant::from_std(at));
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = &mut timer, if next.is_some() => daemon.start_due(&results_tx),
            Some(result) = results_rx.recv() => {
                if daemon.finish(result) {
                    desired_tx.send_replace(daemon.desired());
                }
            }
            Some(_) = hangups.recv() => {
                if daemon.reload() {
                    desired_tx.send_replace(daemon.desired());
                }
            }
            Some(reply) = status_rx.recv() => {
                let _ = reply.send(daemon.status(&publisher_rx.borrow()));
            }
        }
    }

    info!("stopping: deregistering every service first");
    publisher_stop.cancel();
    if let Err(err) = publisher.await {
        warn!(%err, "publisher task failed");
    }
    info!("axon-registrar stopped");
    Ok(())
}

/// The status endpoint asks the daemon task for a fresh document on each request.
fn status_provider(
    requests: mpsc::Sender<StatusRequest>,
) -> impl Fn() -> std::pin::Pin<Box<dyn Future<Output = Value> + Send>> + Clone + Send + Sync + 'static {
    move || {
        let requests = requests.clone();
        Box::pin(async move {
            let (tx, rx) = oneshot::channel();
            if requests.send(tx).await.is_err() {
                return json!({"error": "stopping"});
            }
            rx.await.unwrap_or_else(|_| json!({"error": "stopping"}))
        })
    }
}

/// What a run of one service's checks needs, prepared once per configuration so that a run
/// costs no lookup or copy.
struct ServiceRun {
    checks: Vec<Check>,
    maintenance_file: Option<PathBuf>,
    /// Per check: (runs, failures).
    counters: Vec<(Counter, Counter)>,
}

struct Daemon {
    config: Config,
    state: State,
    schedule: Schedule,
    runs: HashMap<String, Arc<ServiceRun>>,
    prober: Prober,
    metrics: Metrics,
}

impl Daemon {
    fn new(config: Config, prober: Prober, metrics: Metrics) -> Daemon {
        let state = State::new(&config);
        let now = Instant::now();
        let mut schedule = Schedule::new(now, crate::schedule::TICK);
        let count = config.services.len();
        for (i, service) in config.services.iter().enumerate() {
            schedule.insert(
                &service.name,
                service.check_interval,
                Schedule::spread(now, service.check_interval, i, count),
            );
            metrics.set_service_up(&service.name, false);
        }
        let runs = service_runs(&config, &metrics);
        Daemon { config, state, schedule, runs, prober, metrics }
    }

    fn desired(&self) -> Desired {
        Desired {
            zookeeper: self.config.zookeeper.clone(),
            instance_id: self.config.instance_id.clone(),
            registrations: self.state.registrations(),
        }
    }

    /// Spawns a run for every service that is due.
    fn start_due(&mut self, results: &mpsc::Sender<RunResult>) {
        for ticket in self.schedule.start_due(Instant::now()) {
            let Some(run) = self.runs.get(&*ticket.service).cloned() else { continue };
            let prober = self.prober.clone();
            let results = results.clone();
            tokio::spawn(async move {
                let maintenance = run.maintenance_file.as_ref().is_some_and(|f| f.exists());
                let outcomes = join_all(run.checks.iter().map(|c| prober.run(c))).await;
                for ((runs, failures), outcome) in run.counters.iter().zip(&outcomes) {
                    runs.inc();
                    if !outcome.passed {
                        failures.inc();
                    }
                }
                let _ = results.send(RunResult { ticket, maintenance, outcomes }).await;
            });
        }
    }

    /// Applies a finished run; returns whether the wanted registrations changed.
    fn finish(&mut self, result: RunResult) -> bool {
        if !self.schedule.finish(&result.ticket, Instant::now()) {
            return false;
        }
        let name = &*result.ticket.service;
        let failed: Vec<String> = result.outcomes.iter().filter(|o| !o.passed).map(|o| o.detail.to_string()).collect();
        let Some((before, after)) = self.state.record(name, result.maintenance, result.outcomes, SystemTime::now())
        else {
            return false;
        };
        if before == after {
            return false;
        }
        self.metrics.set_service_up(name, after == Phase::Up);
        match after {
            Phase::Up => info!(service = %name, "up: registering"),
            Phase::Down => warn!(service = %name, failed = ?failed, "down: deregistering"),
            Phase::Maintenance => info!(service = %name, "maintenance: deregistering"),
        }
        true
    }

    /// Reloads the configuration file; keeps the running one if the new one is invalid.
    fn reload(&mut self) -> bool {
        let file: PathBuf = self.config.file.clone();
        let config = match Config::load(&file) {
            Ok(config) => config,
            Err(err) => {
                warn!(%err, "SIGHUP: configuration not reloaded, keeping the running one");
                return false;
            }
        };
        let reload = self.state.reload(&config);
        let now = Instant::now();
        for name in reload.removed.iter() {
            self.schedule.remove(name);
            self.metrics.forget_service(name);
        }
        for name in reload.added.iter().chain(&reload.replaced) {
            if let Some(service) = config.service(name) {
                self.schedule.insert(name, service.check_interval, now);
                self.metrics.set_service_up(name, false);
            }
        }
        // New checks run at once; a run of the old ones still in progress is stale.
        for name in &reload.rechecked {
            if let Some(service) = config.service(name) {
                self.schedule.insert(name, service.check_interval, now);
            }
        }
        for name in &reload.updated {
            if let Some(service) = config.service(name) {
                self.schedule.set_interval(name, service.check_interval);
            }
        }
        let settings_changed =
            config.zookeeper != self.config.zookeeper || config.instance_id != self.config.instance_id;
        if config.status_listen != self.config.status_listen {
            warn!("SIGHUP: a change of status.listen takes effect on restart");
        }
        if config.shutdown_grace != self.config.shutdown_grace {
            warn!("SIGHUP: a change of shutdown_grace takes effect on restart");
        }
        info!(
            added = ?reload.added,
            removed = ?reload.removed,
            replaced = ?reload.replaced,
            rechecked = ?reload.rechecked,
            updated = ?reload.updated,
            zookeeper_changed = settings_changed,
            "SIGHUP: configuration reloaded"
        );
        self.runs = service_runs(&config, &self.metrics);
        self.config = config;
        !reload.is_empty() || settings_changed
    }

    fn status(&self, publisher: &PublisherStatus) -> Value {
        let services: Vec<Value> = self
            .state
            .services()
            .map(|s| {
                let checks: Vec<Value> = s
                    .config
                    .checks
                    .iter()
                    .zip(s.health.checks())
                    .zip(&s.last)
                    .map(|((config, health), last)| {
                        let (state, streak) = check_state_name(health.state());
                        json!({
                            "type": config.kind.name(),
                            "target": config.kind.target(),
                            "state": state,
                            "streak": streak,
                            "rise": config.rise.get(),
                            "fall": config.fall.get(),
                            "last": last.as_ref().map(|o| json!({
                                "passed": o.passed,
                                "detail": o.detail,
                                "elapsed_ms": o.elapsed.as_secs_f64() * 1000.0,
                            })),
                        })
                    })
                    .collect();
                json!({
                    "name": s.config.name,
                    "host": s.config.host,
                    "port": s.config.port,
                    "zk_path": s.config.zk_path,
                    "state": s.phase(),
                    "maintenance_file": self.config.maintenance_file(&s.config),
                    "znode": publisher.znodes.get(&s.config.name),
                    "zk_error": publisher.errors.get(&s.config.name),
                    "last_run_unix_ms": s.last_run.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()).map(|d| d.as_millis() as u64),
                    "checks": checks,
                })
            })
            .collect();
        json!({
            "instance_id": self.state.instance_id(),
            "zookeeper": {
                "hosts": self.config.zookeeper.hosts,
                "state": publisher.state,
                "session_id": publisher.session_id,
                "last_error": publisher.last_error,
                "errors": publisher.errors,
            },
            "services": services,
        })
    }
}

fn service_runs(config: &Config, metrics: &Metrics) -> HashMap<String, Arc<ServiceRun>> {
    config
        .services
        .iter()
        .map(|service| {
            let counters =
                service.checks.iter().map(|c| metrics.check_counters(&service.name, c.kind.name())).collect();
            let run = ServiceRun {
                checks: service.checks.iter().cloned().map(Check::new).collect(),
                maintenance_file: config.maintenance_file(service),
                counters,
            };
            (service.name.clone(), Arc::new(run))
        })
        .collect()
}
