//! Keeping HAProxy in agreement with the snapshot, through the runtime API only.
//!
//! One task owns the sync state. A pass reads `show servers state` for the backends it plans,
//! plans each service ([`plan`]), sends every command of the pass over one connection, and
//! checks every reply. The same pass serves the first sync, every change, drain ends, the
//! periodic repair of drift made by hand, and the resync after HAProxy reloads or restarts:
//!
//! - a service is planned when what it wants differs from what was last applied, when one of
//!   its drains ends, and in every full pass;
//! - a full pass (every backend) runs at start, every `resync_interval`, after a refused
//!   command or a failed pass (with backoff), and when HAProxy's pid changes or its socket
//!   comes back (polled every `reload_check_interval`);
//! - with HAProxy unreachable nothing is lost: the wanted state waits for it;
//! - nothing is planned before the first snapshot, so a start with ZooKeeper down and no
//!   cache leaves HAProxy's servers as they are.
//!
//! After applied changes the whole `show servers state` is written to `state_file` (at most
//! once a second), so an operator's reload with `load-server-state-from-file` keeps the slots.

pub mod plan;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::haproxy::runtime::{Runtime, RuntimeError};
use crate::metrics::Metrics;
use crate::model::{Endpoint, Snapshot};

/// The longest a runtime API exchange may take.
const RUNTIME_TIMEOUT: Duration = Duration::from_secs(5);
/// The least time between two writes of the state file.
const STATE_FILE_INTERVAL: Duration = Duration::from_secs(1);

/// What the sync reports, for the status endpoint.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncStatus {
    /// `unknown`, `up` or `unreachable`.
    pub haproxy: &'static str,
    pub pid: Option<u32>,
    /// The snapshot version last applied in full.
    pub applied_version: u64,
    pub last_pass_unix_ms: Option<u64>,
    pub last_error: Option<String>,
    pub services: BTreeMap<String, ServiceSync>,
}

/// One service's slots, as of the last pass that planned it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServiceSync {
    pub backend: String,
    /// Slot → endpoint, for every ready slot.
    pub slots: BTreeMap<String, String>,
    /// Slots draining.
    pub draining: Vec<String>,
    /// When HAProxy last accepted commands for this service.
    pub last_change_unix_ms: Option<u64>,
    /// The commands HAProxy refused in the last pass, with its replies.
    pub refused: Vec<String>,
}

pub struct Syncer {
    config: Arc<Config>,
    runtime: Runtime,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    status: watch::Sender<SyncStatus>,
    metrics: Metrics,
    shutdown: CancellationToken,
    /// Per service (configuration order): what was last applied, its drains, its next wake.
    applied: Vec<Option<BTreeMap<Endpoint, u16>>>,
    drains: Vec<BTreeMap<String, Instant>>,
    wakes: Vec<Option<Instant>>,
    pid: Option<u32>,
    state_file_due: Option<Instant>,
    state_file_written: Option<Instant>,
}

/// Why a full pass is owed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Full {
    No,
    Because(&'static str),
}

impl Syncer {
    pub fn new(
        config: Arc<Config>,
        snapshots: watch::Receiver<Arc<Snapshot>>,
        status: watch::Sender<SyncStatus>,
        metrics: Metrics,
        shutdown: CancellationToken,
    ) -> Syncer {
        let count = config.services.len();
        let runtime = Runtime::new(config.haproxy.socket.clone(), RUNTIME_TIMEOUT);
        Syncer {
            config,
            runtime,
            snapshots,
            status,
            metrics,
            shutdown,
            applied: vec![None; count],
            drains: vec![BTreeMap::new(); count],
            wakes: vec![None; count],
            pid: None,
            state_file_due: None,
            state_file_written: None,
        }
    }

    /// Runs until `shutdown` is cancelled.
    pub async fn run(mut self) {
        let mut reload_tick = tokio::time::interval(self.config.haproxy.reload_check_interval);
        reload_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut resync_tick = tokio::time::interval(self.config.haproxy.resync_interval);
        resync_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        resync_tick.tick().await;
        let mut full = Full::Because("start");
        let mut backoff = axon_core::backoff::Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
        let mut retry_at: Option<Instant> = None;
        self.status.send_modify(|s| s.haproxy = "unknown");

        loop {
            let snapshot = self.snapshots.borrow_and_update().clone();
            let now = Instant::now();
            let ready = snapshot.version > 0 && self.pid.is_some() && retry_at.is_none_or(|at| at <= now);
            if ready {
                let due = self.due_services(&snapshot, full, now);
                if !due.is_empty() {
                    if let Full::Because(reason) = full {
                        self.metrics.resync(reason);
                    }
                    match self.pass(&snapshot, &due).await {
                        Ok(0) => {
                            full = Full::No;
                            retry_at = None;
                            backoff.reset();
                        }
                        Ok(refused) => {
                            let delay = backoff.next_delay();
                            warn!(refused, retry_in = ?delay, "HAProxy refused commands: reading its state again");
                            full = Full::Because("refused");
                            retry_at = Some(Instant::now() + delay);
                        }
                        Err(err) => {
                            let delay = backoff.next_delay();
                            warn!(%err, retry_in = ?delay, "sync pass failed");
                            self.status.send_modify(|s| s.last_error = Some(err.to_string()));
                            if err.is_unreachable() {
                                self.haproxy_gone();
                            }
                            full = Full::Because("error");
                            retry_at = Some(Instant::now() + delay);
                        }
                    }
                }
            }
            let next = [retry_at, self.state_file_due].into_iter().chain(self.wakes.iter().copied()).flatten().min();
            let timer = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                changed = self.snapshots.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                _ = reload_tick.tick() => {
                    if let Some(reason) = self.check_haproxy().await {
                        full = Full::Because(reason);
                        retry_at = None;
                    }
                }
                _ = resync_tick.tick() => {
                    if full == Full::No {
                        full = Full::Because("periodic");
                    }
                }
                _ = timer => self.write_state_file_if_due().await,
            }
        }
        if self.state_file_due.is_some() {
            self.state_file_due = Some(Instant::now());
            self.write_state_file_if_due().await;
        }
    }

    /// The services a pass should plan now (indexes), each with a backend and a view.
    fn due_services(&self, snapshot: &Snapshot, full: Full, now: Instant) -> Vec<usize> {
        self.config
            .services
            .iter()
            .enumerate()
            .filter(|(_, s)| s.backend.is_some())
            .filter(|(i, s)| {
                let Some(view) = snapshot.service(&s.name) else { return false };
                full != Full::No
                    || self.applied[*i].as_ref() != Some(&wanted(view))
                    || self.wakes[*i].is_some_and(|at| at <= now)
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// Reads, plans and applies the given services; returns how many commands were refused.
    async fn pass(&mut self, snapshot: &Snapshot, services: &[usize]) -> Result<usize, RuntimeError> {
        let config = self.config.clone();
        let backends: BTreeSet<&str> = services.iter().filter_map(|&i| config.services[i].backend.as_deref()).collect();
        let backends: Vec<&str> = backends.into_iter().collect();
        let servers = self.runtime.servers_state(&backends).await?;
        let now = Instant::now();
        let mut commands = Vec::new();
        let mut plans = Vec::with_capacity(services.len());
        for &i in services {
            let service = &config.services[i];
            let Some(view) = snapshot.service(&service.name) else { continue };
            let wanted = wanted(view);
            let plan = plan::plan(&plan::Input {
                backend: service.backend.as_deref().unwrap_or_default(),
                prefix: &service.slot_prefix,
                servers: &servers,
                wanted: &wanted,
                drains: &self.drains[i],
                drain: service.drain,
                server_options: &service.server_options,
                now,
            });
            let first = commands.len();
            commands.extend(plan.commands.iter().cloned());
            plans.push((i, wanted, plan, first..commands.len()));
        }
        let replies = if commands.is_empty() { Vec::new() } else { self.runtime.execute(&commands).await? };
        self.metrics.commands.inc_by(commands.len() as u64);
        let mut refused = 0;
        let now_ms = unix_ms();
        for (i, wanted, plan, range) in plans {
            let service = &config.services[i];
            let mut refusals = Vec::new();
            for (command, reply) in commands[range.clone()].iter().zip(&replies[range]) {
                if !command.accepted(reply) {
                    warn!(service = %service.name, command = %command, reply = %reply.trim(), "HAProxy refused a command");
                    refusals.push(format!("{command}: {}", reply.trim()));
                }
            }
            refused += refusals.len();
            let ok = refusals.is_empty();
            if !plan.commands.is_empty() {
                info!(service = %service.name, commands = plan.commands.len(), instances = wanted.len(), "HAProxy updated");
                for command in &plan.commands {
                    debug!(service = %service.name, %command, "sent");
                }
            }
            self.applied[i] = ok.then_some(wanted);
            let changed = !plan.commands.is_empty();
            self.status.send_modify(|s| {
                let last_change = s.services.get(&service.name).and_then(|p| p.last_change_unix_ms);
                s.services.insert(
                    service.name.clone(),
                    ServiceSync {
                        backend: service.backend.clone().unwrap_or_default(),
                        slots: plan.assignment.iter().map(|(slot, e)| (slot.clone(), e.to_string())).collect(),
                        draining: plan.drains.keys().cloned().collect(),
                        last_change_unix_ms: if changed { now_ms } else { last_change },
                        refused: refusals,
                    },
                );
            });
            self.drains[i] = plan.drains;
            self.wakes[i] = plan.wake;
        }
        self.metrics.refused_commands.inc_by(refused as u64);
        if !commands.is_empty() {
            if let Some(taken) = snapshot.taken {
                let seconds = SystemTime::now().duration_since(taken).unwrap_or_default().as_secs_f64();
                self.metrics.propagation.observe(seconds);
            }
            if self.config.haproxy.state_file.is_some() && self.state_file_due.is_none() {
                let earliest = self.state_file_written.map_or(now, |at| at + STATE_FILE_INTERVAL);
                self.state_file_due = Some(earliest.max(now));
            }
        }
        let all_applied =
            config.services.iter().enumerate().filter(|(_, s)| s.backend.is_some()).all(|(i, s)| {
                snapshot.service(&s.name).is_none_or(|view| self.applied[i].as_ref() == Some(&wanted(view)))
            });
        self.status.send_modify(|s| {
            if all_applied {
                s.applied_version = snapshot.version;
            }
            s.last_pass_unix_ms = now_ms;
            if refused == 0 {
                s.last_error = None;
            } else {
                s.last_error = Some(format!("{refused} command(s) refused"));
            }
        });
        Ok(refused)
    }

    /// Reads HAProxy's pid; returns why a full pass is owed when it changed or came back.
    async fn check_haproxy(&mut self) -> Option<&'static str> {
        match self.runtime.pid().await {
            Ok(pid) if self.pid == Some(pid) => None,
            Ok(pid) => {
                let reason = match self.pid {
                    None => "haproxy up",
                    Some(old) => {
                        info!(old, new = pid, "HAProxy reloaded or restarted: applying the full state");
                        "haproxy reloaded"
                    }
                };
                if self.pid.is_none() {
                    info!(pid, socket = %self.config.haproxy.socket, "HAProxy's runtime API answers");
                }
                self.pid = Some(pid);
                self.metrics.haproxy_up.set(1);
                self.status.send_modify(|s| {
                    s.haproxy = "up";
                    s.pid = Some(pid);
                });
                Some(reason)
            }
            Err(err) => {
                if self.pid.is_some() {
                    warn!(%err, "HAProxy's runtime API does not answer; its servers are applied when it is back");
                }
                self.haproxy_gone();
                None
            }
        }
    }

    fn haproxy_gone(&mut self) {
        self.pid = None;
        self.metrics.haproxy_up.set(0);
        self.status.send_modify(|s| {
            s.haproxy = "unreachable";
            s.pid = None;
        });
    }

    async fn write_state_file_if_due(&mut self) {
        let (Some(due), Some(path)) = (self.state_file_due, self.config.haproxy.state_file.clone()) else { return };
        if due > Instant::now() {
            return;
        }
        self.state_file_due = None;
        self.state_file_written = Some(Instant::now());
        let text = match self.runtime.servers_state_text().await {
            Ok(text) => text,
            Err(err) => {
                warn!(%err, "cannot read the state for the state file");
                return;
            }
        };
        let tmp = path.with_extension("tmp");
        let written = tokio::fs::write(&tmp, text.as_bytes()).await;
        if let Err(err) = match written {
            Ok(()) => tokio::fs::rename(&tmp, &path).await,
            Err(err) => Err(err),
        } {
            warn!(path = %path.display(), %err, "cannot write the state file");
        }
    }
}

fn unix_ms() -> Option<u64> {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .ok()
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What a service wants in its backend: endpoint → weight.
fn wanted(view: &crate::model::ServiceView) -> BTreeMap<Endpoint, u16> {
    view.instances.iter().map(|i| (i.endpoint, i.weight)).collect()
}
