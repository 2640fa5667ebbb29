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
//!
//! The host map ([`crate::hostmap`]), when configured, is part of the same passes: read back
//! with `show map` in every full pass (and whenever what HAProxy holds is unknown), its
//! differences sent after the slots' commands, and its file rewritten whenever what it should
//! hold changes, so a reload starts with it.

pub mod plan;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::haproxy::command::Command;
use crate::haproxy::runtime::{Runtime, RuntimeError};
use crate::haproxy::state::{MapError, StateError, parse_map, parse_servers_state};
use crate::hostmap::{self, Entries, HostMap};
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
    /// The host map, when configured.
    pub host_map: Option<HostMapStatus>,
}

/// The host map as of the last pass that planned it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HostMapStatus {
    pub file: String,
    /// Host → `<service>/<backend>`, as wanted.
    pub entries: BTreeMap<String, String>,
    /// Whether HAProxy holds exactly these entries.
    pub applied: bool,
    /// Why not, when it does not.
    pub problem: Option<String>,
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
    /// Why the service's backend cannot be synced (HAProxy lacks it, say).
    pub problem: Option<String>,
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
    /// Backends whose state could not be read (HAProxy lacks them, or answered nonsense), with
    /// why: their services wait for the next full pass; every other service goes on.
    broken: BTreeMap<String, String>,
    pid: Option<u32>,
    state_file_due: Option<Instant>,
    state_file_written: Option<Instant>,
    host_map: Option<MapSync>,
}

/// The host map's side of the sync.
struct MapSync {
    /// As HAProxy's configuration and the runtime API name it.
    name: String,
    hosts: HostMap,
    /// What HAProxy holds, as far as known (`None`: read it back before changing it).
    applied: Option<Entries>,
    /// What the file holds, as last written.
    written: Option<Entries>,
    /// What the map could not be made to hold (not configured in HAProxy, say): tried again in
    /// the next full pass, or when what it should hold changes.
    failed: Option<Entries>,
    /// Why, as last reported.
    problem: Option<String>,
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
        let host_map = config.haproxy.host_map.as_ref().map(|path| MapSync {
            name: path.display().to_string(),
            hosts: HostMap::new(&crate::route::Routes::new(&config)),
            applied: None,
            written: None,
            failed: None,
            problem: None,
        });
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
            broken: BTreeMap::new(),
            pid: None,
            state_file_due: None,
            state_file_written: None,
            host_map,
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
                if !due.is_empty() || self.map_due(&snapshot, full) {
                    if let Full::Because(reason) = full {
                        self.metrics.resync(reason);
                    }
                    match self.pass(&snapshot, &due, full != Full::No).await {
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
            .filter(|(_, s)| s.backend.as_ref().is_some_and(|b| full != Full::No || !self.broken.contains_key(b)))
            .filter(|(i, s)| {
                let Some(view) = snapshot.service(&s.name) else { return false };
                full != Full::No
                    || self.applied[*i].as_ref() != Some(&wanted(view))
                    || self.wakes[*i].is_some_and(|at| at <= now)
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// What the host map should hold now.
    fn map_wanted(&self, snapshot: &Snapshot) -> Option<Entries> {
        let map = self.host_map.as_ref()?;
        Some(map.hosts.wanted(snapshot, |backend| !self.broken.contains_key(backend)))
    }

    /// Whether the host map needs a pass: a full one, or what it should hold changed (and did
    /// not just fail).
    fn map_due(&self, snapshot: &Snapshot, full: Full) -> bool {
        let Some(map) = &self.host_map else { return false };
        let wanted = self.map_wanted(snapshot);
        full != Full::No || (map.applied.as_ref() != wanted.as_ref() && map.failed.as_ref() != wanted.as_ref())
    }

    /// Reads, plans and applies the given services (and the host map, when due); returns how
    /// many commands were refused.
    async fn pass(&mut self, snapshot: &Snapshot, services: &[usize], full: bool) -> Result<usize, RuntimeError> {
        let config = self.config.clone();
        let backends: BTreeSet<&str> = services.iter().filter_map(|&i| config.services[i].backend.as_deref()).collect();
        let mut reads: Vec<Command> =
            backends.iter().map(|b| Command::ShowServersState { backend: (*b).to_owned() }).collect();
        let map_wanted = self.map_wanted(snapshot).filter(|_| self.map_due(snapshot, Full::No) || full);
        let read_map = match (&self.host_map, &map_wanted) {
            (Some(map), Some(_)) if full || map.applied.is_none() => {
                reads.push(Command::ShowMap { map: map.name.clone() });
                true
            }
            _ => false,
        };
        let mut replies = if reads.is_empty() { Vec::new() } else { self.runtime.execute(&reads).await? };
        let map_reply = if read_map { replies.pop() } else { None };
        let mut servers = Vec::new();
        for (backend, reply) in backends.iter().zip(&replies) {
            match parse_servers_state(reply) {
                Ok(state) => {
                    servers.extend(state);
                    if let Some(was) = self.broken.remove(*backend) {
                        info!(backend, was, "HAProxy's backend is readable again: its services sync");
                    }
                }
                Err(err) => {
                    let problem = match err {
                        StateError::UnknownBackend => format!("HAProxy has no backend {backend:?}"),
                        other => other.to_string(),
                    };
                    if self.broken.get(*backend) != Some(&problem) {
                        warn!(backend, %problem, "backend skipped until the next full pass; other services go on");
                    }
                    self.broken.insert((*backend).to_owned(), problem);
                }
            }
        }
        // The map leaves out backends found broken just now.
        let map_wanted = map_wanted.map(|_| self.map_wanted(snapshot)).unwrap_or_default();
        let now = Instant::now();
        let mut commands = Vec::new();
        let mut plans = Vec::with_capacity(services.len());
        for &i in services {
            let service = &config.services[i];
            let Some(view) = snapshot.service(&service.name) else { continue };
            let backend = service.backend.as_deref().unwrap_or_default();
            if let Some(problem) = self.broken.get(backend) {
                self.applied[i] = None;
                self.metrics.backend_problem(&service.name, true);
                let problem = problem.clone();
                self.status.send_modify(|s| {
                    let entry = s.services.entry(service.name.clone()).or_default();
                    entry.backend = backend.to_owned();
                    entry.problem = Some(problem);
                });
                continue;
            }
            self.metrics.backend_problem(&service.name, false);
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
        // The host map's differences, after the slots they send requests to.
        let map_first = commands.len();
        let mut map_problem = None;
        if let (Some(map), Some(wanted)) = (&self.host_map, &map_wanted) {
            // What HAProxy holds: read back just now, or else as last applied (a map not read
            // back is always one whose content is known: see `read_map`).
            let actual: Result<Vec<(String, String)>, MapError> = match map_reply {
                Some(reply) => parse_map(&reply),
                None => Ok(map.applied.iter().flatten().map(|(k, v)| (k.clone(), v.clone())).collect()),
            };
            match actual {
                Ok(actual) => commands.extend(hostmap::plan(&map.name, &actual, wanted)),
                Err(err) => map_problem = Some(err.to_string()),
            }
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
                        problem: None,
                    },
                );
            });
            self.drains[i] = plan.drains;
            self.wakes[i] = plan.wake;
        }
        if let (Some(map), Some(wanted)) = (self.host_map.as_mut(), map_wanted) {
            let mut refusals = Vec::new();
            for (command, reply) in commands[map_first..].iter().zip(&replies[map_first..]) {
                if !command.accepted(reply) {
                    warn!(command = %command, reply = %reply.trim(), "HAProxy refused a host map command");
                    refusals.push(format!("{command}: {}", reply.trim()));
                }
            }
            refused += refusals.len();
            if map_first < commands.len() {
                info!(commands = commands.len() - map_first, hosts = wanted.len(), "host map updated");
            }
            if map_problem.is_none() && !refusals.is_empty() {
                map_problem = Some(refusals.join("; "));
            }
            if let Some(problem) = &map_problem {
                // Logged once per problem, not at every full pass.
                if map.problem.as_ref() != Some(problem) {
                    warn!(map = %map.name, %problem, "the host map cannot be kept; tried again at every full pass");
                }
                map.applied = None;
                map.failed = Some(wanted.clone());
            } else {
                if map.problem.is_some() {
                    info!(map = %map.name, "the host map is kept again");
                }
                map.applied = Some(wanted.clone());
                map.failed = None;
            }
            map.problem = map_problem.clone();
            self.metrics.host_map_entries.set(i64::try_from(wanted.len()).unwrap_or(i64::MAX));
            self.metrics.host_map_applied.set(i64::from(map_problem.is_none()));
            // The file too: what a reload or restart starts with. A full pass also repairs it
            // if someone edited it.
            if full {
                map.written = None;
            }
            if map.written.as_ref() != Some(&wanted) {
                let text = hostmap::file_text(&wanted);
                let path = Path::new(&map.name);
                let same = tokio::fs::read_to_string(path).await.is_ok_and(|current| current == text);
                match if same { Ok(()) } else { write_atomically(path, text).await } {
                    Ok(()) => map.written = Some(wanted.clone()),
                    Err(err) => warn!(file = %map.name, %err, "cannot write the host map's file"),
                }
            }
            let status = HostMapStatus {
                file: map.name.clone(),
                applied: map_problem.is_none(),
                entries: wanted,
                problem: map_problem,
            };
            self.status.send_modify(|s| s.host_map = Some(status));
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
        if let Err(err) = write_atomically(&path, text).await {
            warn!(path = %path.display(), %err, "cannot write the state file");
        }
    }
}

/// Replaces `path` with `text` as one step (a file beside it, written out and renamed over
/// it), off this thread, so HAProxy starting meanwhile reads the old file or the new one, never
/// half of one. The file is readable by all (mode 0644, whatever the umask): HAProxy reads it
/// as its own user.
async fn write_atomically(path: &Path, text: String) -> std::io::Result<()> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        use std::os::unix::fs::PermissionsExt as _;
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = std::path::PathBuf::from(tmp);
        let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o644).open(&tmp)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)
    })
    .await
    .unwrap_or_else(|err| Err(std::io::Error::other(err)))
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
