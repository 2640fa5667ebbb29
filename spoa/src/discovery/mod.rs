//! Discovery: one ZooKeeper session, one watch per service path, and a [`Snapshot`] published
//! whenever a service's view changes.
//!
//! The decisions are in [`core`] (what to read, what a result or an event means, when a path's
//! state can be given out), [`dns`] (names to look up) and [`policy`] (from what was found to
//! what the proxy uses); this shell runs them: it opens the session
//! ([`axon_core::zk::Session`], as a reader: it never writes), performs the reads the core asks
//! for, forwards watch events and link changes to it, runs the lookups, and publishes.
//!
//! - While ZooKeeper is unreachable, disconnected, or the session is being replaced, the last
//!   snapshot stays: HAProxy keeps its servers. Each service's view changes only once its path
//!   was read consistently again.
//! - At a start, the cache (if younger than `cache_max_age`) is the previous view: a service
//!   whose path turns out empty keeps its cached instances (`on_empty = "keep"`), and with
//!   ZooKeeper down the cache is published as is.
//! - Nothing here waits for a time in the past: the loop sleeps until the core's or the
//!   lookups' next due time, or until something happens.

pub mod cache;
pub mod core;
pub mod dns;
pub mod policy;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axon_core::zk::{Refusal, Role, Session, Transition, Verdict, verdict};
use axon_record::child_path;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt as _, StreamExt as _};
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, debug, info, warn};
use zookeeper_client::{AddWatchMode, Client, EventType, PersistentWatcher, SessionState};

use self::core::{Core, Event, Failure, Found, Limits, Mode, Outcome, PathView, Read};
use self::dns::Dns;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::model::{ServiceConfig, ServiceView, Snapshot, Source};
use policy::Built;

/// The longest a lookup may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// Where discovery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DiscoveryState {
    /// Opening a session.
    #[default]
    Connecting,
    /// Connected, reading what it owes.
    Reading,
    /// Connected, every path read: following the watches.
    Watching,
    /// The session lives, the connection does not: the last state serves.
    Disconnected,
    /// The session ended; a new one is being opened.
    Expired,
    Stopped,
}

/// What discovery reports, for the status endpoint.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DiscoveryStatus {
    pub state: DiscoveryState,
    pub session_id: Option<String>,
    /// `persistent` (one recursive watch per path) or `oneshot`.
    pub watches: Option<&'static str>,
    pub reads_in_flight: usize,
    pub last_error: Option<String>,
}

enum SessionEnd {
    Stopped,
    Ended,
}

/// What the watch forwarders send the loop.
#[derive(Debug)]
enum Signal {
    Event(Event),
    /// A persistent watcher saw the connection go (`false`) or come back (`true`). Its session
    /// events are queued one by one, where the client's state watcher keeps only the latest
    /// (a quick reconnection would be missed, and with it the watches it dropped).
    Link(bool),
}

type Pending<T> = FuturesUnordered<Pin<Box<dyn Future<Output = T> + Send>>>;

pub struct Discovery {
    config: Arc<Config>,
    snapshots: watch::Sender<Arc<Snapshot>>,
    status: watch::Sender<DiscoveryStatus>,
    metrics: Metrics,
    shutdown: CancellationToken,
    core: Core,
    dns: Dns,
    /// Per service (configuration order): its path in the core.
    service_path: Vec<usize>,
    /// Per service: for one declaring a selector, the service it names (its view is a part of
    /// that one's).
    selector_of: Vec<Option<usize>>,
    /// The services in the order their views are computed: those declaring a selector last,
    /// after the services they name.
    order: Vec<usize>,
    /// Per service: its name, shared by every snapshot.
    names: Vec<Arc<str>>,
    views: Vec<Option<Arc<ServiceView>>>,
    /// Whether this process published a snapshot read from ZooKeeper yet.
    published: bool,
    version: u64,
    /// Per path: the task forwarding its persistent watch's events (replaced when re-added).
    forwarders: Vec<Option<AbortHandle>>,
    /// Per path: its view as last taken from the core.
    path_views: Vec<PathView>,
    /// Per path: its children as last turned into instances.
    built: Vec<Built>,
    /// Something changed since the views were last computed.
    dirty: bool,
    /// A name's answer changed since the views were last computed: every service is computed
    /// again (otherwise only those whose path changed).
    dns_changed: bool,
}

impl Discovery {
    pub fn new(
        config: Arc<Config>,
        snapshots: watch::Sender<Arc<Snapshot>>,
        status: watch::Sender<DiscoveryStatus>,
        metrics: Metrics,
        shutdown: CancellationToken,
    ) -> Discovery {
        // One watch per distinct path, however many services read it.
        let mut paths: Vec<String> = Vec::new();
        let service_path = config
            .services
            .iter()
            .map(|s| {
                paths.iter().position(|p| *p == s.zk_path).unwrap_or_else(|| {
                    paths.push(s.zk_path.clone());
                    paths.len() - 1
                })
            })
            .collect();
        let selector_of = config
            .services
            .iter()
            .map(|s| s.selector_of.as_ref().and_then(|d| config.services.iter().position(|p| p.name == d.of)))
            .collect();
        let order = (0..config.services.len())
            .filter(|&i| config.services[i].selector_of.is_none())
            .chain((0..config.services.len()).filter(|&i| config.services[i].selector_of.is_some()))
            .collect();
        let d = config.discovery;
        let mode = if d.persistent_watches { Mode::Persistent } else { Mode::Oneshot };
        let limits = Limits { max_in_flight: d.max_reads_in_flight, jitter: d.reread_jitter, ..Limits::default() };
        let core = Core::new(&paths, mode, limits);
        let count = config.services.len();
        let names = config.services.iter().map(|s| Arc::from(s.name.as_str())).collect();
        Discovery {
            names,
            forwarders: vec![None; paths.len()],
            config,
            snapshots,
            status,
            metrics,
            shutdown,
            core,
            dns: Dns::default(),
            service_path,
            selector_of,
            order,
            views: vec![None; count],
            published: false,
            version: 0,
            path_views: vec![PathView { found: None, problem: None }; paths.len()],
            built: paths.iter().map(|_| Built::default()).collect(),
            dirty: true,
            dns_changed: false,
        }
    }

    /// Runs until `shutdown` is cancelled.
    pub async fn run(mut self) {
        let cached =
            self.config.cache_file.as_deref().and_then(|p| cache::load(p, self.config.discovery.cache_max_age));
        if let Some(cached) = &cached {
            // The previous view of each service, until ZooKeeper says otherwise.
            self.version = cached.version;
            for (view, service) in self.views.iter_mut().zip(&self.config.services) {
                *view = cached.services.get(service.name.as_str()).cloned();
            }
        }
        let settings = self.config.zookeeper.clone();
        loop {
            self.set_state(DiscoveryState::Connecting, None);
            let (status, snapshots, metrics) = (&self.status, &self.snapshots, &self.metrics);
            let mut cache_used = false;
            let session = Session::open(&settings, Role::Reader, &metrics.zk, &self.shutdown, |err, delay| {
                warn!(%err, hosts = %settings.hosts, retry_in = ?delay, "cannot open a ZooKeeper session");
                status.send_modify(|s| s.last_error = Some(format!("open session: {err}")));
                // A cold start with ZooKeeper down: the cached state is better than none.
                if !cache_used && snapshots.borrow().version == 0 {
                    cache_used = true;
                    if let Some(snapshot) = cached.clone() {
                        info!(
                            services = snapshot.services.len(),
                            "ZooKeeper unreachable at start: using the cached state"
                        );
                        snapshots.send_replace(Arc::new(snapshot));
                    }
                }
            })
            .await;
            let Some(mut session) = session else { break };
            let span = session.span().clone();
            let end = self.serve(&mut session).instrument(span).await;
            // Its lookups went with it.
            self.dns.abandon_lookups();
            match end {
                SessionEnd::Stopped => break,
                SessionEnd::Ended => {
                    self.core.expired();
                    self.set_state(DiscoveryState::Expired, None);
                }
            }
        }
        self.set_state(DiscoveryState::Stopped, None);
    }

    async fn serve(&mut self, session: &mut Session) -> SessionEnd {
        let client = session.client().clone();
        let id = session.id();
        let (events_tx, mut events_rx) = mpsc::unbounded_channel::<Signal>();
        let mut reads: Pending<(Read, Outcome, Option<PersistentWatcher>)> = FuturesUnordered::new();
        let mut lookups: Pending<(String, Result<IpAddr, String>)> = FuturesUnordered::new();
        // The first session of this process reads at once (it has nothing to serve yet); later
        // ones, after an expiry that may have hit a whole fleet, within the jitter.
        let draw = if self.published { rand::random() } else { 0.0 };
        self.core.connected(id, Instant::now(), draw);
        let mut connected = true;
        loop {
            let now = Instant::now();
            for read in self.core.reads(now) {
                debug!(?read, "read");
                self.metrics.zk_reads.inc();
                reads.push(Box::pin(perform(
                    client.clone(),
                    self.core_path(&read).to_owned(),
                    read,
                    events_tx.clone(),
                )));
            }
            if self.core.take_fell_back() {
                warn!("ZooKeeper refused a persistent watch (a server before 3.6): one-shot watches from now on");
            }
            self.publish_if_changed(now);
            for host in self.dns.due(now) {
                lookups.push(Box::pin(lookup(host)));
            }
            let state = match (connected, self.core.quiet()) {
                (false, _) => DiscoveryState::Disconnected,
                (true, true) => DiscoveryState::Watching,
                (true, false) => DiscoveryState::Reading,
            };
            self.set_state(state, Some(id));
            let wake = [self.core.next_wake(now), self.dns.next_wake(now)].into_iter().flatten().min();
            let timer = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            // The link as the state watcher or a persistent watcher saw it change, once each way.
            let mut link = |up: bool, core: &mut Core| {
                if up && !connected {
                    core.connected(id, Instant::now(), rand::random());
                } else if !up && connected {
                    core.disconnected();
                }
                connected = up;
            };
            tokio::select! {
                _ = self.shutdown.cancelled() => return SessionEnd::Stopped,
                transition = session.transition() => match transition {
                    Transition::Disconnected => link(false, &mut self.core),
                    Transition::Reconnected => link(true, &mut self.core),
                    Transition::Ended(_) => return SessionEnd::Ended,
                },
                Some(signal) = events_rx.recv() => {
                    let mut signals = vec![signal];
                    while let Ok(more) = events_rx.try_recv() {
                        signals.push(more);
                    }
                    for signal in signals {
                        match signal {
                            Signal::Event(event) => {
                                debug!(?event, "event");
                                self.metrics.zk_events.inc();
                                self.core.event(event);
                            }
                            Signal::Link(up) => link(up, &mut self.core),
                        }
                    }
                    self.dirty = true;
                }
                Some(done) = reads.next(), if !reads.is_empty() => {
                    // Every read answered by now, in one turn: the snapshot is built once for
                    // them all, not once per read.
                    let mut done = Some(done);
                    while let Some((read, outcome, watcher)) = done {
                        self.read_done(read, outcome, watcher, &events_tx);
                        done = reads.next().now_or_never().flatten();
                    }
                    self.dirty = true;
                }
                Some(resolved) = lookups.next(), if !lookups.is_empty() => {
                    let mut resolved = Some(resolved);
                    while let Some((host, result)) = resolved {
                        if let Err(err) = &result {
                            debug!(%host, %err, "cannot resolve a host name; trying again later");
                        }
                        self.dns_changed |= self.dns.resolved(&host, result, Instant::now());
                        resolved = lookups.next().now_or_never().flatten();
                    }
                    self.dirty = true;
                }
                _ = timer => {}
            }
        }
    }

    fn read_done(
        &mut self,
        read: Read,
        outcome: Outcome,
        watcher: Option<PersistentWatcher>,
        events: &mpsc::UnboundedSender<Signal>,
    ) {
        if let Outcome::Failed(Failure::Lost(err)) = &outcome {
            self.metrics.zk_read_failures.inc();
            debug!(?read, %err, "a read failed; it is read again");
            self.status.send_modify(|s| s.last_error = Some(err.clone()));
        }
        // Only a watch of the current connection forwards events (an earlier one's is gone).
        if let (Read::Watch { path, link }, Some(watcher)) = (&read, watcher)
            && *link == self.core.link()
        {
            self.forward_persistent(*path, watcher, events);
        }
        debug!(?read, ?outcome, "done");
        self.core.done(read, outcome, Instant::now());
    }

    fn core_path(&self, read: &Read) -> &str {
        let index = match read {
            Read::Watch { path, .. } | Read::List { path, .. } | Read::Data { path, .. } => *path,
        };
        self.core.paths().nth(index).unwrap_or_default()
    }

    /// Forwards a path's persistent watch events to the core, replacing the previous watcher
    /// (which, after a reconnection, receives nothing any more: see core's rule 3). The new one
    /// is registered before the old one goes, so the client sends no `RemoveWatches`.
    fn forward_persistent(
        &mut self,
        path: usize,
        mut watcher: PersistentWatcher,
        events: &mpsc::UnboundedSender<Signal>,
    ) {
        let events = events.clone();
        let task = tokio::spawn(async move {
            loop {
                let event = watcher.changed().await;
                let forwarded = match event.event_type {
                    EventType::Session => match event.session_state {
                        // After a terminal state the watcher must not be polled again.
                        state if state.is_terminated() => return,
                        SessionState::Disconnected => Signal::Link(false),
                        _ => Signal::Link(true),
                    },
                    EventType::NodeCreated => Signal::Event(Event::Created(event.path)),
                    EventType::NodeDeleted => Signal::Event(Event::Deleted(event.path)),
                    EventType::NodeDataChanged => Signal::Event(Event::DataChanged(event.path)),
                    EventType::NodeChildrenChanged => continue,
                };
                if events.send(forwarded).is_err() {
                    return;
                }
            }
        });
        if let Some(old) = self.forwarders.get_mut(path).and_then(|f| f.replace(task.abort_handle())) {
            old.abort();
        }
        self.metrics.zk_watches.set(i64::try_from(self.forwarders.iter().flatten().count()).unwrap_or(i64::MAX));
    }

    /// Publishes a new snapshot if any service's view changed.
    fn publish_if_changed(&mut self, now: Instant) {
        if !std::mem::take(&mut self.dirty) {
            return;
        }
        // Only the paths something touched are copied out of the core, and only their
        // services computed again (all of them when a name's answer changed).
        let mut touched = BTreeSet::new();
        for (i, view) in self.core.changed_views() {
            match &view.found {
                Some(Found::Children(children)) => {
                    let hosts = children.iter().filter_map(|(_, r)| (**r).as_ref().ok()).map(|r| r.host.as_str());
                    self.dns.keep(i, hosts, now);
                }
                Some(Found::Missing) => self.dns.keep(i, [], now),
                // Being read again: its names, and their answers, stay until it is settled.
                None => {}
            }
            if self.path_views[i] != view {
                self.path_views[i] = view;
                touched.insert(i);
            }
        }
        let every = std::mem::take(&mut self.dns_changed);
        let mut changed = false;
        for &i in &self.order {
            let service = &self.config.services[i];
            if !every && !touched.contains(&self.service_path[i]) {
                continue;
            }
            let p = self.service_path[i];
            let view = match self.selector_of[i] {
                Some(parent) => self.views[parent].as_deref().map(|parent| policy::selected(service, parent)),
                None => view_of(service, &self.path_views[p], self.views[i].as_deref(), &mut self.built[p], &self.dns),
            };
            let Some(view) = view else { continue };
            if self.views[i].as_deref() != Some(&view) {
                if self.selector_of[i].is_some() {
                    self.metrics.set_selected(&service.name, view.instances.len());
                } else {
                    report_new_problems(service, self.views[i].as_deref(), &view);
                    if view.source != Source::Discovered {
                        info!(service = %service.name, source = ?view.source, instances = view.instances.len(), "no instance discovered");
                    }
                    self.metrics.set_discovered(&service.name, view.instances.len(), view.problems.len());
                }
                self.views[i] = Some(Arc::new(view));
                changed = true;
            }
        }
        let all_read = self.path_views.iter().all(|p| p.found.is_some() || p.problem.is_some());
        if !changed && (self.published || !all_read) {
            return;
        }
        // The first snapshot waits for every path (a partial first state would empty the
        // services not read yet); later ones go out as each service settles.
        if !self.published && !all_read {
            return;
        }
        self.published = true;
        self.version += 1;
        let services =
            self.names.iter().zip(&self.views).filter_map(|(name, v)| v.clone().map(|v| (name.clone(), v))).collect();
        let snapshot = Snapshot { services, version: self.version, taken: Some(SystemTime::now()) };
        self.snapshots.send_replace(Arc::new(snapshot));
    }

    fn set_state(&self, state: DiscoveryState, session: Option<i64>) {
        self.metrics.zk.connected.set(i64::from(matches!(state, DiscoveryState::Reading | DiscoveryState::Watching)));
        let watches = match self.core.mode() {
            Mode::Persistent => "persistent",
            Mode::Oneshot => "oneshot",
        };
        let in_flight = self.core.in_flight();
        self.status.send_if_modified(|s| {
            let before = (s.state, s.session_id.clone(), s.watches, s.reads_in_flight);
            s.state = state;
            s.watches = Some(watches);
            s.reads_in_flight = in_flight;
            if session.is_some()
                || matches!(state, DiscoveryState::Connecting | DiscoveryState::Expired | DiscoveryState::Stopped)
            {
                s.session_id = session.map(|id| format!("{id:#x}"));
            }
            before != (s.state, s.session_id.clone(), s.watches, s.reads_in_flight)
        });
    }
}

/// A service's view from its path's state: `None` to keep the previous one as it is.
fn view_of(
    service: &ServiceConfig,
    path: &PathView,
    previous: Option<&ServiceView>,
    built: &mut Built,
    dns: &Dns,
) -> Option<ServiceView> {
    let Some(found) = &path.found else {
        // Not settled: the previous view stands, with the reason if the path cannot be read.
        let problem = path.problem.as_deref()?;
        let mut view = previous.cloned().unwrap_or_default();
        let problem = format!("{}: {problem}", service.zk_path);
        if !view.problems.contains(&problem) {
            view.problems.push(problem);
        }
        return Some(view);
    };
    let found = match found {
        Found::Missing => {
            *built = Built::default();
            policy::Found::Missing
        }
        // In name order (the core's list), as the policy needs.
        Found::Children(children) => policy::Found::Children(built.children(children, |host| dns.lookup(host))),
    };
    Some(policy::view(service, found, previous))
}

/// Performs one read; returns its outcome (and, for a persistent watch, the watcher).
async fn perform(
    client: Client,
    path: String,
    read: Read,
    events: mpsc::UnboundedSender<Signal>,
) -> (Read, Outcome, Option<PersistentWatcher>) {
    let failed = |err: zookeeper_client::Error| Outcome::Failed(failure(&err));
    let (outcome, watcher) = match &read {
        Read::Watch { .. } => match client.watch(&path, AddWatchMode::PersistentRecursive).await {
            Ok(watcher) => (Outcome::Watching, Some(watcher)),
            Err(err) => (failed(err), None),
        },
        Read::List { watch: false, .. } => match client.list_children(&path).await {
            Ok(children) => (Outcome::Listed(children), None),
            Err(err) => (failed(err), None),
        },
        Read::List { path: index, watch: true } => {
            let index = *index;
            match client.list_and_watch_children(&path).await {
                Ok((children, watcher)) => {
                    forward_oneshot(watcher, events, Event::ChildrenChanged { path: index });
                    (Outcome::Listed(children), None)
                }
                Err(zookeeper_client::Error::NoNode) => match client.check_and_watch_stat(&path).await {
                    // Watch for the path to appear; if it appeared between the two calls, an
                    // existence watch would never fire for its children: list it again.
                    Ok((stat, watcher)) => {
                        forward_oneshot(watcher, events, Event::ChildrenChanged { path: index });
                        (Outcome::Missing { appeared: stat.is_some() }, None)
                    }
                    Err(err) => (failed(err), None),
                },
                Err(err) => (failed(err), None),
            }
        }
        Read::Data { child, watch: false, .. } => match client.get_data(&child_path(&path, child)).await {
            Ok((data, _)) => (Outcome::Data(data), None),
            Err(err) => (failed(err), None),
        },
        Read::Data { path: index, child, watch: true, .. } => {
            match client.get_and_watch_data(&child_path(&path, child)).await {
                Ok((data, _, watcher)) => {
                    forward_oneshot(watcher, events, Event::ChildChanged { path: *index, child: child.clone() });
                    (Outcome::Data(data), None)
                }
                Err(err) => (failed(err), None),
            }
        }
    };
    (read, outcome, watcher)
}

/// What a failed read's error means for the core.
fn failure(err: &zookeeper_client::Error) -> Failure {
    match verdict(err) {
        Verdict::Refused(Refusal::NoNode) => Failure::NoNode,
        Verdict::Refused(Refusal::NoAuth) => Failure::NoAuth,
        Verdict::Refused(Refusal::Unimplemented) => Failure::Unimplemented,
        Verdict::Refused(_) | Verdict::SessionOver | Verdict::Unknown => Failure::Lost(err.to_string()),
    }
}

/// Sends `event` when a one-shot watch fires. The task holds no client, so it never keeps a
/// session open; it ends when the watch fires or its session ends.
fn forward_oneshot(watcher: zookeeper_client::OneshotWatcher, events: mpsc::UnboundedSender<Signal>, event: Event) {
    tokio::spawn(async move {
        let fired = watcher.changed().await;
        if fired.event_type != EventType::Session {
            let _ = events.send(Signal::Event(event));
        }
    });
}

/// Looks a host name up, within [`LOOKUP_TIMEOUT`].
async fn lookup(host: String) -> (String, Result<IpAddr, String>) {
    let result = match tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((host.as_str(), 0))).await {
        Err(_) => Err("timed out".to_owned()),
        Ok(Err(err)) => Err(err.to_string()),
        Ok(Ok(mut addrs)) => addrs.next().map(|a| a.ip()).ok_or_else(|| "no address".to_owned()),
    };
    (host, result)
}

/// Logs the problems a view has that the previous one had not (each is reported once).
fn report_new_problems(service: &ServiceConfig, previous: Option<&ServiceView>, view: &ServiceView) {
    for problem in &view.problems {
        if previous.is_none_or(|p| !p.problems.contains(problem)) {
            warn!(service = %service.name, %problem, "znode skipped or changed");
        }
    }
}
