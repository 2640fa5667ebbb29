//! Discovery: one ZooKeeper session, a watch on every service path and on every child's data,
//! and a [`Snapshot`] published after every change.
//!
//! - Every watch event is followed by a re-read of what it is about; events that arrive while
//!   a batch is read are handled together in the next batch, so a burst is coalesced without
//!   delaying a single change.
//! - A reconnection within the same session re-lists every path (ZooKeeper re-arms one-shot
//!   watches itself and fires those whose node changed meanwhile); a new session, after an
//!   expiry, re-reads everything. A snapshot is published only once a whole read is done, so
//!   the proxy never sees half a state.
//! - While ZooKeeper is unreachable or the session is being replaced, the last snapshot stays:
//!   HAProxy keeps its servers. At a cold start with ZooKeeper down, the cached snapshot (see
//!   [`cache`]) is published instead.
//! - Host names in records are resolved to IP literals (cached for a minute); a record that
//!   cannot be used is skipped and reported in the service's `problems`.
//!
//! Lifecycle: `Connecting` → `Reading` → `Watching` ⇄ `Disconnected`; `Expired` → `Connecting`.

pub mod cache;
pub mod policy;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axon_core::record::child_path;
use axon_core::zk::ZkSettings;
use futures_util::future::join_all;
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use zookeeper_client::{Client, Error as ZkError, OneshotWatcher, SessionState};

use crate::config::{Config, ServiceConfig};
use crate::metrics::Metrics;
use crate::model::{ServiceView, Snapshot, Source};
use policy::{Child, Found};

/// How long a resolved host name is trusted.
const RESOLVE_TTL: Duration = Duration::from_secs(60);

/// What discovery reports, for the status endpoint.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DiscoveryStatus {
    /// `connecting`, `reading`, `watching`, `disconnected`, `expired`, `stopped`.
    pub state: &'static str,
    pub session_id: Option<String>,
    pub last_error: Option<String>,
}

/// What a watch reports.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Event {
    /// A service path's children changed, or the path appeared or vanished.
    Children(usize),
    /// A child's data changed or the child vanished.
    Data(usize, String),
}

/// One service's state within the current session.
#[derive(Debug, Default)]
struct Watched {
    exists: bool,
    children: BTreeMap<String, Child>,
    /// A children (or existence) watch is pending.
    path_armed: bool,
    /// Children with a pending data watch.
    data_armed: BTreeSet<String>,
}

enum SessionEnd {
    Stopped,
    Expired,
}

pub struct Discovery {
    config: Arc<Config>,
    snapshots: watch::Sender<Arc<Snapshot>>,
    status: watch::Sender<DiscoveryStatus>,
    metrics: Metrics,
    shutdown: CancellationToken,
    watched: Vec<Watched>,
    views: Vec<Option<ServiceView>>,
    /// Whether this process published a snapshot read from ZooKeeper yet.
    published: bool,
    version: u64,
    resolved: HashMap<String, (IpAddr, Instant)>,
}

impl Discovery {
    pub fn new(
        config: Arc<Config>,
        snapshots: watch::Sender<Arc<Snapshot>>,
        status: watch::Sender<DiscoveryStatus>,
        metrics: Metrics,
        shutdown: CancellationToken,
    ) -> Discovery {
        let count = config.services.len();
        Discovery {
            config,
            snapshots,
            status,
            metrics,
            shutdown,
            watched: (0..count).map(|_| Watched::default()).collect(),
            views: vec![None; count],
            published: false,
            version: 0,
            resolved: HashMap::new(),
        }
    }

    /// Runs until `shutdown` is cancelled.
    pub async fn run(mut self) {
        let settings = self.config.zookeeper.clone();
        loop {
            let Some(client) = self.open(&settings).await else { break };
            self.watched.iter_mut().for_each(|w| *w = Watched::default());
            match self.serve(&client).await {
                SessionEnd::Stopped => break,
                SessionEnd::Expired => {
                    self.metrics.zk.expiries.inc();
                    self.set_state("expired", None);
                }
            }
        }
        self.set_state("stopped", None);
    }

    async fn open(&mut self, settings: &ZkSettings) -> Option<Client> {
        self.set_state("connecting", None);
        let (status, snapshots, config) = (&self.status, &self.snapshots, &self.config);
        let mut cache_used = false;
        let client = axon_core::zk::open_session(settings, &self.shutdown, |err, delay| {
            warn!(%err, hosts = %settings.hosts, retry_in = ?delay, "cannot open a ZooKeeper session");
            status.send_modify(|s| s.last_error = Some(format!("open session: {err}")));
            // Cold start with ZooKeeper down: the cached state is better than none.
            if !cache_used && snapshots.borrow().version == 0 {
                cache_used = true;
                if let Some(snapshot) = config.cache_file.as_deref().and_then(cache::load) {
                    info!(services = snapshot.services.len(), "ZooKeeper unreachable at start: using the cached state");
                    snapshots.send_replace(Arc::new(snapshot));
                }
            }
        })
        .await?;
        if !self.published {
            // After a cached snapshot: continue its numbering, and let "keep the previous
            // instances" see what it held.
            let cached = self.snapshots.borrow().clone();
            self.version = self.version.max(cached.version);
            for (view, service) in self.views.iter_mut().zip(&self.config.services) {
                if view.is_none() {
                    *view = cached.services.get(&service.name).cloned();
                }
            }
        }
        info!(session = %client.session_id(), hosts = %settings.hosts, "ZooKeeper session opened");
        self.metrics.zk.sessions.inc();
        Some(client)
    }

    async fn serve(&mut self, client: &Client) -> SessionEnd {
        let session = client.session_id().0;
        let mut states = client.state_watcher();
        let (events_tx, mut events_rx) = mpsc::unbounded_channel::<Event>();
        let mut connected = true;
        // Whether a whole read is owed: at the start of a session, and after a failed batch.
        let mut full_read = true;
        let mut retry = axon_core::backoff::Backoff::new(Duration::from_millis(50), Duration::from_secs(1));
        let mut retry_at: Option<tokio::time::Instant> = None;
        self.set_state("reading", Some(session));
        loop {
            if connected && full_read && retry_at.is_none_or(|at| at <= tokio::time::Instant::now()) {
                let all: BTreeSet<Event> = (0..self.watched.len()).map(Event::Children).collect();
                match self.read(client, all, &events_tx).await {
                    Ok(()) => {
                        full_read = false;
                        retry_at = None;
                        retry.reset();
                        self.publish();
                        self.set_state("watching", Some(session));
                    }
                    Err(ZkError::SessionExpired) => return SessionEnd::Expired,
                    Err(err) => {
                        let delay = retry.next_delay();
                        warn!(%err, retry_in = ?delay, "reading ZooKeeper failed");
                        self.status.send_modify(|s| s.last_error = Some(err.to_string()));
                        retry_at = Some(tokio::time::Instant::now() + delay);
                    }
                }
            }
            let wait_retry = async {
                match retry_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.shutdown.cancelled() => return SessionEnd::Stopped,
                Some(event) = events_rx.recv() => {
                    self.metrics.zk_events.inc();
                    let mut batch = BTreeSet::from([event]);
                    while let Ok(more) = events_rx.try_recv() {
                        self.metrics.zk_events.inc();
                        batch.insert(more);
                    }
                    self.disarm(&batch);
                    if full_read || !connected {
                        continue;
                    }
                    match self.read(client, batch, &events_tx).await {
                        Ok(()) => self.publish(),
                        Err(ZkError::SessionExpired) => return SessionEnd::Expired,
                        Err(err) => {
                            debug!(%err, "reading after an event failed; reading everything again");
                            full_read = true;
                        }
                    }
                }
                state = states.changed() => match state {
                    SessionState::SyncConnected | SessionState::ConnectedReadOnly => {
                        if !connected {
                            info!(session = %client.session_id(), "ZooKeeper connection restored, same session: reading again");
                            self.metrics.zk.reconnects.inc();
                            full_read = true;
                        }
                        connected = true;
                    }
                    SessionState::Disconnected => {
                        warn!(session = %client.session_id(), "ZooKeeper connection lost; keeping the last state");
                        connected = false;
                        self.set_state("disconnected", Some(session));
                    }
                    terminal => {
                        warn!(session = %client.session_id(), state = %terminal, "ZooKeeper session ended; keeping the last state");
                        return SessionEnd::Expired;
                    }
                },
                _ = wait_retry => {}
            }
        }
    }

    /// Watches that fired are no longer pending.
    fn disarm(&mut self, events: &BTreeSet<Event>) {
        for event in events {
            match event {
                Event::Children(i) => self.watched[*i].path_armed = false,
                Event::Data(i, child) => {
                    self.watched[*i].data_armed.remove(child);
                }
            }
        }
    }

    /// Reads what `events` are about: the children of paths (and the data of new children),
    /// and the data of children. Arms a watch wherever none is pending.
    async fn read(
        &mut self,
        client: &Client,
        events: BTreeSet<Event>,
        events_tx: &mpsc::UnboundedSender<Event>,
    ) -> Result<(), ZkError> {
        let config = self.config.clone();
        let mut to_fetch: BTreeSet<(usize, String)> = BTreeSet::new();
        let paths: Vec<usize> =
            events.iter().filter_map(|e| if let Event::Children(i) = e { Some(*i) } else { None }).collect();
        let listings = join_all(paths.iter().map(|&i| self.list(client, i, &config.services[i], events_tx))).await;
        for (&i, listing) in paths.iter().zip(listings) {
            let Some(children) = listing? else {
                let watched = &mut self.watched[i];
                watched.exists = false;
                watched.children.clear();
                continue;
            };
            let watched = &mut self.watched[i];
            watched.exists = true;
            watched.children.retain(|name, _| children.contains(name));
            watched.data_armed.retain(|name| children.contains(name));
            for child in children {
                if !watched.children.contains_key(&child) {
                    to_fetch.insert((i, child));
                }
            }
        }
        for event in &events {
            if let Event::Data(i, child) = event
                && self.watched[*i].children.contains_key(child)
            {
                to_fetch.insert((*i, child.clone()));
            }
        }
        let fetched = join_all(to_fetch.iter().map(|(i, child)| self.fetch(client, *i, child))).await;
        for ((i, child), result) in to_fetch.into_iter().zip(fetched) {
            match result? {
                Fetched::Gone => {
                    self.watched[i].children.remove(&child);
                }
                Fetched::Record { record, watcher } => {
                    if let Some(watcher) = watcher {
                        self.watched[i].data_armed.insert(child.clone());
                        forward(watcher, events_tx.clone(), Event::Data(i, child.clone()));
                    }
                    let parsed = match record {
                        Ok(record) => match self.resolve(&record.host).await {
                            Ok(ip) => policy::instance_of(&child, &record, ip),
                            Err(err) => Child::Skipped(format!("cannot resolve host {:?}: {err}", record.host)),
                        },
                        Err(reason) => Child::Skipped(reason),
                    };
                    self.watched[i].children.insert(child, parsed);
                }
            }
        }
        Ok(())
    }

    /// Lists a path's children, arming a children watch (or, when the path is missing, an
    /// existence watch) unless one is pending. `None` when the path does not exist.
    async fn list(
        &self,
        client: &Client,
        i: usize,
        service: &ServiceConfig,
        events_tx: &mpsc::UnboundedSender<Event>,
    ) -> Result<Option<BTreeSet<String>>, ZkError> {
        self.metrics.zk_reads.inc();
        let armed = self.watched[i].path_armed;
        let listed = if armed {
            client.list_children(&service.zk_path).await.map(|c| (c, None))
        } else {
            client.list_and_watch_children(&service.zk_path).await.map(|(c, w)| (c, Some(w)))
        };
        match listed {
            Ok((children, watcher)) => {
                if let Some(watcher) = watcher {
                    forward(watcher, events_tx.clone(), Event::Children(i));
                }
                Ok(Some(children.into_iter().collect()))
            }
            Err(ZkError::NoNode) if !armed => {
                // Watch for the path to appear; if it appeared meanwhile, that fires at once.
                let (stat, watcher) = client.check_and_watch_stat(&service.zk_path).await?;
                forward(watcher, events_tx.clone(), Event::Children(i));
                if stat.is_some() {
                    debug!(path = %service.zk_path, "path appeared while being watched");
                }
                Ok(None)
            }
            Err(ZkError::NoNode) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Reads one child's record (from its name when it carries one), arming a data watch unless
    /// one is pending.
    async fn fetch(&self, client: &Client, i: usize, child: &str) -> Result<Fetched, ZkError> {
        if policy::encoded_in_name(child)
            && let Ok(record) = policy::record_of(child, None)
        {
            return Ok(Fetched::Record { record: Ok(record), watcher: None });
        }
        self.metrics.zk_reads.inc();
        let path = child_path(&self.config.services[i].zk_path, child);
        let result = if self.watched[i].data_armed.contains(child) {
            client.get_data(&path).await.map(|(data, _)| (data, None))
        } else {
            client.get_and_watch_data(&path).await.map(|(data, _, watcher)| (data, Some(watcher)))
        };
        match result {
            Ok((data, watcher)) => Ok(Fetched::Record { record: policy::record_of(child, Some(&data)), watcher }),
            Err(ZkError::NoNode) => Ok(Fetched::Gone),
            Err(err) => Err(err),
        }
    }

    async fn resolve(&mut self, host: &str) -> Result<IpAddr, String> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(ip);
        }
        if let Some((ip, at)) = self.resolved.get(host)
            && at.elapsed() < RESOLVE_TTL
        {
            return Ok(*ip);
        }
        let resolved = tokio::time::timeout(Duration::from_secs(2), tokio::net::lookup_host((host, 0)))
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| e.to_string())?
            .map(|addr| addr.ip())
            .next()
            .ok_or_else(|| "no address".to_owned())?;
        self.resolved.insert(host.to_owned(), (resolved, Instant::now()));
        Ok(resolved)
    }

    /// Publishes a new snapshot if any service's view changed.
    fn publish(&mut self) {
        let mut changed = false;
        for (i, service) in self.config.services.iter().enumerate() {
            let watched = &self.watched[i];
            let found = if watched.exists {
                Found::Children(watched.children.iter().map(|(name, child)| (name.as_str(), child)).collect())
            } else {
                Found::Missing
            };
            let view = policy::view(service, &found, self.views[i].as_ref());
            if self.views[i].as_ref() != Some(&view) {
                report_new_problems(service, self.views[i].as_ref(), &view);
                if view.source != Source::Discovered {
                    info!(service = %service.name, source = ?view.source, instances = view.instances.len(), "no instance discovered");
                }
                self.metrics.set_discovered(&service.name, view.instances.len(), view.problems.len());
                self.views[i] = Some(view);
                changed = true;
            }
        }
        if !changed && self.published {
            return;
        }
        self.published = true;
        self.version += 1;
        let services = self
            .config
            .services
            .iter()
            .zip(&self.views)
            .filter_map(|(s, v)| v.clone().map(|v| (s.name.clone(), v)))
            .collect();
        let snapshot = Snapshot { services, version: self.version, taken: Some(SystemTime::now()) };
        self.snapshots.send_replace(Arc::new(snapshot));
    }

    fn set_state(&self, state: &'static str, session: Option<i64>) {
        self.metrics.zk.connected.set(i64::from(matches!(state, "reading" | "watching")));
        self.status.send_modify(|s| {
            s.state = state;
            if session.is_some() || matches!(state, "connecting" | "expired" | "stopped") {
                s.session_id = session.map(|id| format!("{id:#x}"));
            }
        });
    }
}

enum Fetched {
    Gone,
    Record { record: Result<axon_core::record::Record, String>, watcher: Option<OneshotWatcher> },
}

/// Sends `event` when `watcher` fires. The task holds no client, so it never keeps a session
/// open; it ends when the watch fires or its session ends.
fn forward(watcher: OneshotWatcher, events: mpsc::UnboundedSender<Event>, event: Event) {
    tokio::spawn(async move {
        watcher.changed().await;
        let _ = events.send(event);
    });
}

/// Logs the problems a view has that the previous one had not (each is reported once).
fn report_new_problems(service: &ServiceConfig, previous: Option<&ServiceView>, view: &ServiceView) {
    for problem in &view.problems {
        if previous.is_none_or(|p| !p.problems.contains(problem)) {
            warn!(service = %service.name, %problem, "znode skipped or changed");
        }
    }
}
