//! Keeping HAProxy in agreement with the snapshot, through the runtime API only.
//!
//! One task owns the sync state. A pass plans each service concerned ([`plan`]) from
//! HAProxy's servers, sends every command of the pass over one connection, and checks every
//! reply. The same pass serves the first sync, every change, drain ends, the periodic repair
//! of drift made by hand, and the resync after HAProxy reloads or restarts:
//!
//! - a service is planned when what it wants differs from what was last applied, when one of
//!   its drains (or an address it waits on) is due, and in every full pass;
//! - a full pass (every backend, read back with `show servers state`) runs at start, every
//!   `resync_interval`, after a refused command or a failed pass (with backoff), and when
//!   HAProxy's pid changes or its socket comes back (polled every `reload_check_interval`);
//! - between full passes HAProxy's state is kept as last read and changed by the commands it
//!   accepted ([`plan::apply`]), so a change costs HAProxy its commands only, not a read of the
//!   backend; a backend is read again after a refusal, and where addresses are applied late
//!   (HAProxy 2.9+), until the address is seen in place; changes arriving within
//!   [`COALESCE`] go in one pass;
//! - a backend HAProxy does not have (or whose state cannot be read) is that service's problem
//!   alone: reported, left out of the host map, tried again at the next full pass; every other
//!   service syncs;
//! - with HAProxy unreachable nothing is lost (the wanted state waits for it) and nothing
//!   spins: the loop then wakes only to check for HAProxy;
//! - nothing is planned before the first snapshot, so a start with ZooKeeper down and no
//!   cache leaves HAProxy's servers as they are.
//!
//! After applied changes the whole `show servers state` is written to `state_file` (at most
//! once a second; at once when servers were added), and the slots file ([`slots`]) declares
//! every slot in use, so an operator's reload or restart starts with every server, added ones
//! included, each with its address and state. The host map ([`map`]) is part of the same
//! passes.

pub mod map;
pub mod plan;
pub mod slots;

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
use crate::haproxy::state::{ServerState, StateError, parse_servers_state};
use crate::metrics::Metrics;
use crate::model::{Endpoint, Snapshot};
pub use map::HostMapStatus;

/// The longest a runtime API exchange may take.
const RUNTIME_TIMEOUT: Duration = Duration::from_secs(5);
/// The least time between two writes of the state file.
const STATE_FILE_INTERVAL: Duration = Duration::from_secs(1);
/// Changes arriving this close together go to HAProxy in one pass.
pub const COALESCE: Duration = Duration::from_millis(2);

/// What HAProxy's runtime API looks like from here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HaproxyState {
    #[default]
    Unknown,
    Up,
    Unreachable,
}

/// What the sync reports, for the status endpoint.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncStatus {
    pub haproxy: HaproxyState,
    pub pid: Option<u32>,
    pub version: Option<String>,
    /// The snapshot version last applied in full.
    pub applied_version: u64,
    pub last_pass_unix_ms: Option<u64>,
    pub last_error: Option<String>,
    pub services: BTreeMap<String, ServiceSync>,
    /// The host map, when configured.
    pub host_map: Option<HostMapStatus>,
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

/// The HAProxy answering now.
#[derive(Debug, Clone)]
struct Haproxy {
    pid: u32,
    /// 2.9 and later apply `set server … addr` asynchronously (plan's rule 5).
    address_lag: bool,
}

/// Why a full pass is owed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Full {
    No,
    Because(&'static str),
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
    /// HAProxy's servers per backend, as last read and changed since by accepted commands.
    known: BTreeMap<String, Vec<ServerState>>,
    /// The services with a ready server, as of their last plan: the host map sends requests
    /// only to those.
    serving: BTreeSet<String>,
    /// Backends to read back before planning them again.
    stale: BTreeSet<String>,
    haproxy: Option<Haproxy>,
    state_file_due: Option<Instant>,
    state_file_written: Option<Instant>,
    /// The slots file's values (never lowered), and whether they changed since written.
    slots: BTreeMap<String, u32>,
    slots_dirty: bool,
    host_map: Option<map::MapSync>,
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
        let host_map = map::MapSync::new(&config);
        // The slots the last run declared: never fewer.
        let slots = config
            .haproxy
            .slots_file
            .as_ref()
            .and_then(|path| std::fs::read_to_string(path).ok())
            .map(|text| slots::parse(&text))
            .unwrap_or_default();
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
            known: BTreeMap::new(),
            serving: BTreeSet::new(),
            stale: BTreeSet::new(),
            haproxy: None,
            state_file_due: None,
            state_file_written: None,
            slots,
            slots_dirty: false,
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
        let mut coalesce_until: Option<Instant> = None;

        loop {
            let snapshot = self.snapshots.borrow_and_update().clone();
            let now = Instant::now();
            // Passes wait for a retry's backoff and for changes arriving together.
            let gate = [retry_at, coalesce_until].into_iter().flatten().filter(|at| *at > now).max();
            if snapshot.version > 0 && self.haproxy.is_some() && gate.is_none() {
                coalesce_until = None;
                let due = self.due_services(&snapshot, full, now);
                let map_due = self
                    .host_map
                    .as_ref()
                    .is_some_and(|m| m.due(&m.wanted(&snapshot, self.serving()), full != Full::No));
                if !due.is_empty() || map_due {
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
            if self.state_file_due.is_some_and(|at| at <= Instant::now()) && self.haproxy.is_some() {
                self.write_state_file().await;
            }
            // With HAProxy unreachable nothing is due but the check for it (the reload tick):
            // no deadline, past or future, wakes the loop. Otherwise the gate comes first, and
            // only times still ahead count, so a deadline already passed never spins.
            let now = Instant::now();
            let next = match (&self.haproxy, gate) {
                (None, _) => None,
                (Some(_), Some(gate)) => Some(gate),
                (Some(_), None) => [self.state_file_due, coalesce_until]
                    .into_iter()
                    .chain(self.wakes.iter().copied())
                    .flatten()
                    .filter(|at| *at > now)
                    .min(),
            };
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
                    coalesce_until.get_or_insert(Instant::now() + COALESCE);
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
                _ = timer => {}
            }
        }
        if self.state_file_due.is_some() {
            self.write_state_file().await;
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

    /// Reads what must be read, plans and applies the given services (and the host map, when
    /// due); returns how many commands were refused.
    async fn pass(&mut self, snapshot: &Snapshot, services: &[usize], full: bool) -> Result<usize, RuntimeError> {
        let config = self.config.clone();
        let address_lag = self.haproxy.as_ref().is_some_and(|h| h.address_lag);
        let backends: BTreeSet<String> = services.iter().filter_map(|&i| config.services[i].backend.clone()).collect();
        let to_read: Vec<String> = backends
            .iter()
            .filter(|b| full || self.stale.contains(*b) || !self.known.contains_key(*b))
            .cloned()
            .collect();
        let mut reads: Vec<Command> =
            to_read.iter().map(|b| Command::ShowServersState { backend: b.clone() }).collect();
        let map_read = self.host_map.as_ref().and_then(|m| m.read(full));
        let read_map = map_read.is_some();
        reads.extend(map_read);
        let mut replies = if reads.is_empty() { Vec::new() } else { self.runtime.execute(&reads).await? };
        let map_reply = if read_map { replies.pop() } else { None };
        for (backend, reply) in to_read.iter().zip(&replies) {
            match parse_servers_state(reply) {
                Ok(state) => {
                    self.known.insert(backend.clone(), state);
                    self.stale.remove(backend);
                    if let Some(was) = self.broken.remove(backend) {
                        info!(backend, was, "HAProxy's backend is readable again: its services sync");
                    }
                }
                Err(err) => {
                    let problem = match err {
                        StateError::UnknownBackend => format!("HAProxy has no backend {backend:?}"),
                        other => other.to_string(),
                    };
                    if self.broken.get(backend) != Some(&problem) {
                        warn!(backend, %problem, "backend skipped until the next full pass; other services go on");
                    }
                    self.known.remove(backend);
                    self.broken.insert(backend.clone(), problem);
                }
            }
        }
        let now = Instant::now();
        let mut commands = Vec::new();
        let mut plans = Vec::with_capacity(services.len());
        // Whether a change read from ZooKeeper (not a repair) reached HAProxy in this pass.
        let mut propagated = false;
        for &i in services {
            let service = &config.services[i];
            let Some(view) = snapshot.service(&service.name) else { continue };
            let backend = service.backend.as_deref().unwrap_or_default();
            if let Some(problem) = self.broken.get(backend) {
                self.applied[i] = None;
                self.serving.remove(&service.name);
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
            let servers = self.known.get(backend).map(Vec::as_slice).unwrap_or_default();
            let plan = plan::plan(&plan::Input {
                backend,
                prefix: &service.slot_prefix,
                servers,
                wanted: &wanted,
                drains: &self.drains[i],
                drain: service.drain,
                server_options: &service.server_options,
                now,
                address_lag,
            });
            let first = commands.len();
            commands.extend(plan.commands.iter().cloned());
            propagated |= !plan.commands.is_empty() && self.applied[i].as_ref() != Some(&wanted);
            if plan.assignment.is_empty() {
                self.serving.remove(&service.name);
            } else {
                self.serving.insert(service.name.clone());
            }
            plans.push((i, wanted, plan, first..commands.len()));
        }
        // The host map's differences, after the slots they send requests to.
        let map_first = commands.len();
        let mut map_problem = None;
        let map_wanted = self.host_map.as_ref().map(|m| m.wanted(snapshot, self.serving()));
        if let (Some(map), Some(wanted)) = (&self.host_map, &map_wanted) {
            match map.commands(map_reply.as_deref(), wanted) {
                Ok(map_commands) => commands.extend(map_commands),
                Err(err) => map_problem = Some(err.to_string()),
            }
        }
        let replies = if commands.is_empty() { Vec::new() } else { self.runtime.execute(&commands).await? };
        self.metrics.commands.inc_by(commands.len() as u64);
        if full {
            self.metrics.resync_commands.inc_by(commands.len() as u64);
        }
        let mut refused = 0;
        let now_ms = unix_ms();
        let mut added = false;
        for (i, wanted, plan, range) in plans {
            let service = &config.services[i];
            let backend = service.backend.clone().unwrap_or_default();
            let mut refusals = Vec::new();
            for (command, reply) in commands[range.clone()].iter().zip(&replies[range.clone()]) {
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
            // What HAProxy holds now, as far as known: read it back if it refused anything,
            // or if an address must be seen in place.
            if let Some(servers) = self.known.get_mut(&backend) {
                plan::apply(servers, &backend, &plan.commands);
                let highest = slots::highest(servers, &backend, &service.slot_prefix);
                let slot = self.slots.entry(slots::variable(&backend, &service.slot_prefix)).or_insert(0);
                if highest > *slot {
                    *slot = highest;
                    self.slots_dirty = true;
                }
            }
            if !ok || !plan.awaiting_address.is_empty() {
                self.stale.insert(backend.clone());
            }
            added |= plan.commands.iter().any(|c| matches!(c, Command::AddServer { .. }));
            self.applied[i] = ok.then_some(wanted);
            let changed = !plan.commands.is_empty();
            self.status.send_modify(|s| {
                let last_change = s.services.get(&service.name).and_then(|p| p.last_change_unix_ms);
                s.services.insert(
                    service.name.clone(),
                    ServiceSync {
                        backend: backend.clone(),
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
            let (map_refused, status) = map
                .settle(&commands[map_first..], &replies[map_first..], wanted, map_problem, full, &self.metrics)
                .await;
            refused += map_refused;
            self.status.send_modify(|s| s.host_map = Some(status));
        }
        self.metrics.refused_commands.inc_by(refused as u64);
        if !commands.is_empty() {
            // A change read from ZooKeeper reaching HAProxy; repairs are counted apart.
            if propagated && let Some(taken) = snapshot.taken {
                let seconds = SystemTime::now().duration_since(taken).unwrap_or_default().as_secs_f64();
                self.metrics.propagation.observe(seconds);
            }
            if self.config.haproxy.state_file.is_some() && self.state_file_due.is_none() {
                // Added servers are written at once: with the slots file, they are what a
                // reload would otherwise lose.
                let earliest =
                    if added { now } else { self.state_file_written.map_or(now, |at| at + STATE_FILE_INTERVAL) };
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

    /// Whether a service has a server ready in a backend HAProxy has (for the host map).
    fn serving(&self) -> impl Fn(&str, &str) -> bool + '_ {
        |service, backend| self.serving.contains(service) && !self.broken.contains_key(backend)
    }

    /// Reads HAProxy's pid; returns why a full pass is owed when it changed or came back.
    async fn check_haproxy(&mut self) -> Option<&'static str> {
        match self.runtime.info().await {
            Ok(info) if self.haproxy.as_ref().is_some_and(|h| h.pid == info.pid) => None,
            Ok(info) => {
                let reason = match &self.haproxy {
                    None => "haproxy up",
                    Some(old) => {
                        info!(old = old.pid, new = info.pid, "HAProxy reloaded or restarted: applying the full state");
                        "haproxy reloaded"
                    }
                };
                if self.haproxy.is_none() {
                    info!(pid = info.pid, version = %info.version, socket = %self.config.haproxy.socket, "HAProxy's runtime API answers");
                }
                // A new process: nothing known of its servers.
                self.known.clear();
                self.stale.clear();
                let address_lag = info.applies_addresses_late();
                self.haproxy = Some(Haproxy { pid: info.pid, address_lag });
                self.metrics.haproxy_up.set(1);
                self.status.send_modify(|s| {
                    s.haproxy = HaproxyState::Up;
                    s.pid = Some(info.pid);
                    s.version = Some(info.version.clone());
                });
                Some(reason)
            }
            Err(err) => {
                if self.haproxy.is_some() {
                    warn!(%err, "HAProxy's runtime API does not answer; its servers are applied when it is back");
                }
                self.haproxy_gone();
                None
            }
        }
    }

    fn haproxy_gone(&mut self) {
        self.haproxy = None;
        self.known.clear();
        self.metrics.haproxy_up.set(0);
        self.status.send_modify(|s| {
            s.haproxy = HaproxyState::Unreachable;
            s.pid = None;
        });
    }

    /// Writes the slots file (if its values grew) and the state file, in that order: a reload
    /// reading the new state finds every slot it names declared.
    async fn write_state_file(&mut self) {
        self.state_file_due = None;
        self.state_file_written = Some(Instant::now());
        if self.slots_dirty
            && let Some(path) = self.config.haproxy.slots_file.clone()
        {
            match write_atomically(&path, slots::render(&self.slots)).await {
                Ok(()) => self.slots_dirty = false,
                Err(err) => warn!(path = %path.display(), %err, "cannot write the slots file"),
            }
        }
        let Some(path) = self.config.haproxy.state_file.clone() else { return };
        let text = match self.runtime.servers_state_text().await {
            Ok(text) => text,
            Err(err) => {
                warn!(%err, "cannot read the state for the state file");
                return;
            }
        };
        // Servers axon-spoa added are template slots after a reload: see `for_reload`.
        let config = self.config.clone();
        let text = crate::haproxy::state::for_reload(&text, |backend, server| {
            config
                .services
                .iter()
                .any(|s| s.backend.as_deref() == Some(backend) && plan::slot_number(&s.slot_prefix, server).is_some())
        });
        if let Err(err) = write_atomically(&path, text).await {
            warn!(path = %path.display(), %err, "cannot write the state file");
        }
    }
}

/// Replaces `path` with `text` as one step (a file beside it, written out and renamed over
/// it), off this thread, so HAProxy starting meanwhile reads the old file or the new one, never
/// half of one. The file is readable by all (mode 0644, whatever the umask): HAProxy reads it
/// as its own user.
pub(crate) async fn write_atomically(path: &Path, text: String) -> std::io::Result<()> {
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
