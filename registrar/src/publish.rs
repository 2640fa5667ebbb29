//! The ZooKeeper side of the registrar: one session, and exactly the wanted znodes in it.
//!
//! The publisher receives the wanted registrations (latest value only) and makes ZooKeeper
//! agree by diffing them against the znodes it owns in the current session:
//! - a member of the ensemble lost: the client moves to another member with the same session;
//!   ephemeral znodes survive, so nothing is written;
//! - ZooKeeper unreachable: changes wait; the latest wanted state is applied on reconnect;
//! - session expired: a new session is opened (backing off with jitter) and every wanted znode
//!   is created again, and znodes left by this process's earlier sessions are deleted;
//! - a create whose reply was lost: the next pass lists the children and adopts the znode the
//!   session did create, rather than creating a second one;
//! - an owned znode deleted by someone else (an operator, an orphan cleaner): a watch on it
//!   notices and the next pass creates it again;
//! - stop: every owned znode is deleted (within the grace period), then the session is closed.
//!
//! Lifecycle: `Connecting` → `Connected` ⇄ `Disconnected` → (`Expired` → `Connecting`) | `Stopped`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use axon_core::backoff::Backoff;
use axon_core::record::{Record, child_path, sequential_name};
use axon_core::zk::{INITIAL_BACKOFF, ZkSettings, state_name};
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use zookeeper_client::{Client, CreateMode, Error as ZkError, SessionState};

use crate::metrics::Metrics;
use crate::state::Registration;

/// What the publisher is asked to make true.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub zookeeper: ZkSettings,
    pub registrations: BTreeMap<String, Registration>,
}

/// What the publisher reports, for the status endpoint.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PublisherStatus {
    /// `connecting`, `connected`, `disconnected`, `expired` or `stopped`.
    pub state: &'static str,
    pub session_id: Option<String>,
    /// Service name → the znode this session owns for it.
    pub znodes: BTreeMap<String, String>,
    pub last_error: Option<String>,
}

/// Sessions of this process whose leftovers may be deleted; bounded, oldest dropped.
const REMEMBERED_SESSIONS: usize = 8;

/// A znode this session created (or adopted).
#[derive(Debug, Clone)]
struct Owned {
    path: String,
    zk_path: String,
    prefix: String,
    data: Vec<u8>,
}

enum SessionEnd {
    Stopped,
    Expired,
    SettingsChanged,
}

pub struct Publisher {
    desired: watch::Receiver<Desired>,
    status: watch::Sender<PublisherStatus>,
    metrics: Metrics,
    grace: Duration,
    shutdown: CancellationToken,
    previous_sessions: VecDeque<i64>,
}

impl Publisher {
    pub fn new(
        desired: watch::Receiver<Desired>,
        status: watch::Sender<PublisherStatus>,
        metrics: Metrics,
        grace: Duration,
        shutdown: CancellationToken,
    ) -> Publisher {
        Publisher { desired, status, metrics, grace, shutdown, previous_sessions: VecDeque::new() }
    }

    /// Runs until `shutdown` is cancelled and the owned znodes are deleted.
    pub async fn run(mut self) {
        loop {
            let settings = self.desired.borrow().zookeeper.clone();
            let Some(client) = self.open_session(&settings).await else { break };
            match self.serve(&client, &settings).await {
                SessionEnd::Stopped => {
                    close(client).await;
                    break;
                }
                SessionEnd::Expired => {
                    self.metrics.zk.expiries.inc();
                    self.set_state("expired", None);
                }
                SessionEnd::SettingsChanged => {
                    info!("ZooKeeper settings changed: opening a new session");
                    close(client).await;
                }
            }
        }
        self.status.send_modify(|s| {
            s.state = "stopped";
            s.znodes.clear();
        });
    }

    /// Opens a session, retrying with backoff; `None` when stopped first.
    async fn open_session(&mut self, settings: &ZkSettings) -> Option<Client> {
        self.set_state("connecting", None);
        let status = &self.status;
        let client = axon_core::zk::open_session(settings, &self.shutdown, |err, delay| {
            warn!(%err, hosts = %settings.hosts, retry_in = ?delay, "cannot open a ZooKeeper session");
            status.send_modify(|s| s.last_error = Some(format!("open session: {err}")));
        })
        .await?;
        info!(session = %client.session_id(), hosts = %settings.hosts, "ZooKeeper session opened");
        self.metrics.zk.sessions.inc();
        Some(client)
    }

    async fn serve(&mut self, client: &Client, settings: &ZkSettings) -> SessionEnd {
        let session = client.session_id().0;
        let mut states = client.state_watcher();
        let mut owned: BTreeMap<String, Owned> = BTreeMap::new();
        // Services whose znode may exist without our knowing: after a lost reply, or left by
        // an earlier session of this process.
        let mut uncertain: BTreeSet<String> = if self.previous_sessions.is_empty() {
            BTreeSet::new()
        } else {
            self.desired.borrow().registrations.keys().cloned().collect()
        };
        let mut connected = true;
        let (changed_tx, mut changed_rx) = mpsc::unbounded_channel::<String>();
        let mut backoff = Backoff::new(INITIAL_BACKOFF, settings.reconnect_backoff_max);
        let mut retry_at: Option<Instant> = None;
        self.metrics.zk.connected.set(1);
        self.set_state("connected", Some(session));

        let end = loop {
            if connected && retry_at.is_none_or(|at| at <= Instant::now()) {
                let session_ctx =
                    SessionCtx { client, settings, session, previous: &self.previous_sessions, changed: &changed_tx };
                let desired = self.desired.borrow_and_update().registrations.clone();
                let result = reconcile(&session_ctx, &desired, &mut owned, &mut uncertain, &self.metrics).await;
                self.publish_owned(&owned);
                match result {
                    Ok(()) => {
                        retry_at = None;
                        backoff.reset();
                        self.status.send_modify(|s| s.last_error = None);
                    }
                    Err(ZkError::SessionExpired) => break SessionEnd::Expired,
                    Err(err) => {
                        self.metrics.zk_errors.inc();
                        let delay = backoff.next_delay();
                        warn!(%err, retry_in = ?delay, "ZooKeeper update failed");
                        self.status.send_modify(|s| s.last_error = Some(err.to_string()));
                        retry_at = Some(Instant::now() + delay);
                    }
                }
            }
            let retry = async {
                match retry_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.shutdown.cancelled() => break SessionEnd::Stopped,
                changed = self.desired.changed() => {
                    if changed.is_err() {
                        break SessionEnd::Stopped;
                    }
                    if self.desired.borrow().zookeeper != *settings {
                        break SessionEnd::SettingsChanged;
                    }
                }
                state = states.changed() => match state {
                    SessionState::SyncConnected | SessionState::ConnectedReadOnly => {
                        if !connected {
                            info!(session = %client.session_id(), "ZooKeeper connection restored, same session");
                            self.metrics.zk.reconnects.inc();
                            self.metrics.zk.connected.set(1);
                        }
                        connected = true;
                        self.set_state("connected", Some(session));
                    }
                    SessionState::Disconnected => {
                        warn!(session = %client.session_id(), "ZooKeeper connection lost; keeping the session");
                        connected = false;
                        self.metrics.zk.connected.set(0);
                        self.set_state("disconnected", Some(session));
                    }
                    terminal => {
                        warn!(session = %client.session_id(), state = %terminal, "ZooKeeper session ended");
                        break SessionEnd::Expired;
                    }
                },
                Some(path) = changed_rx.recv() => {
                    let session_ctx =
                        SessionCtx { client, settings, session, previous: &self.previous_sessions, changed: &changed_tx };
                    match recheck_owned(&session_ctx, &path, &mut owned).await {
                        Ok(false) => {}
                        Ok(true) => retry_at = Some(Instant::now()),
                        Err(err) => {
                            debug!(%err, znode = %path, "re-checking an owned znode failed; the next pass decides");
                            retry_at.get_or_insert_with(Instant::now);
                        }
                    }
                }
                _ = retry => {}
            }
        };
        self.metrics.zk.connected.set(0);
        match end {
            SessionEnd::Stopped | SessionEnd::SettingsChanged => {
                deregister_all(client, &owned, self.grace, &self.metrics).await;
                owned.clear();
            }
            SessionEnd::Expired => {}
        }
        self.publish_owned(&owned);
        self.previous_sessions.push_back(session);
        if self.previous_sessions.len() > REMEMBERED_SESSIONS {
            self.previous_sessions.pop_front();
        }
        end
    }

    fn set_state(&self, state: &'static str, session: Option<i64>) {
        self.status.send_modify(|s| {
            s.state = state;
            s.session_id = session.map(|id| format!("{id:#x}"));
        });
    }

    fn publish_owned(&self, owned: &BTreeMap<String, Owned>) {
        let znodes = owned.iter().map(|(service, o)| (service.clone(), o.path.clone())).collect();
        self.status.send_modify(|s| s.znodes = znodes);
    }
}

/// What a reconciliation pass needs to know about the session.
struct SessionCtx<'a> {
    client: &'a Client,
    settings: &'a ZkSettings,
    session: i64,
    previous: &'a VecDeque<i64>,
    /// Where the watches on owned znodes report the path that changed.
    changed: &'a mpsc::UnboundedSender<String>,
}

/// Watches an owned znode: its path is sent on `changed` when it is deleted or changed (or
/// when the session ends). The waiting task holds no client, so it never keeps a session open.
async fn watch_owned(ctx: &SessionCtx<'_>, path: &str) -> Result<(), ZkError> {
    let (stat, watcher) = ctx.client.check_and_watch_stat(path).await?;
    let changed = ctx.changed.clone();
    let path = path.to_owned();
    if stat.is_none() {
        let _ = changed.send(path);
        return Ok(());
    }
    tokio::spawn(async move {
        watcher.changed().await;
        let _ = changed.send(path);
    });
    Ok(())
}

/// Makes the owned znodes equal to `desired`: deletes, adopts, creates and updates.
async fn reconcile(
    ctx: &SessionCtx<'_>,
    desired: &BTreeMap<String, Registration>,
    owned: &mut BTreeMap<String, Owned>,
    uncertain: &mut BTreeSet<String>,
    metrics: &Metrics,
) -> Result<(), ZkError> {
    let stale: Vec<String> = owned
        .iter()
        .filter(|(service, o)| desired.get(*service).is_none_or(|r| r.zk_path != o.zk_path || r.prefix != o.prefix))
        .map(|(service, _)| service.clone())
        .collect();
    for service in stale {
        let Some(o) = owned.get(&service) else { continue };
        delete(ctx.client, &o.path).await?;
        info!(%service, znode = %o.path, "deregistered");
        metrics.deregistrations.inc();
        owned.remove(&service);
    }
    for (service, registration) in desired {
        let leftovers =
            if uncertain.contains(service) { adopt(ctx, service, registration, owned).await? } else { Vec::new() };
        match ensure(ctx, service, registration, owned, metrics).await {
            Ok(()) => {}
            Err(err) => {
                if matches!(err, ZkError::ConnectionLoss | ZkError::Timeout) {
                    uncertain.insert(service.clone());
                }
                return Err(err);
            }
        }
        // Make before break: an earlier session's znode goes only once this session's exists,
        // so readers never see the instance missing.
        for path in leftovers {
            delete(ctx.client, &path).await?;
            info!(%service, znode = %path, "deleted the znode of an earlier session");
            metrics.deregistrations.inc();
        }
        uncertain.remove(service);
    }
    Ok(())
}

/// Creates the service's znode if this session owns none, or updates its data if it changed.
async fn ensure(
    ctx: &SessionCtx<'_>,
    service: &str,
    registration: &Registration,
    owned: &mut BTreeMap<String, Owned>,
    metrics: &Metrics,
) -> Result<(), ZkError> {
    match owned.get(service) {
        None => {
            let path = create(ctx, registration).await?;
            info!(%service, znode = %path, "registered");
            metrics.registrations.inc();
            owned.insert(service.to_owned(), owned_for(path.clone(), registration));
            watch_owned(ctx, &path).await
        }
        Some(o) if o.data != registration.data => {
            let path = o.path.clone();
            match ctx.client.set_data(&path, &registration.data, None).await {
                Ok(_) => {
                    info!(%service, znode = %path, "record updated");
                    owned.insert(service.to_owned(), owned_for(path, registration));
                    Ok(())
                }
                Err(ZkError::NoNode) => {
                    // Someone deleted it: the next pass creates it again.
                    warn!(%service, znode = %path, "znode vanished; creating it again");
                    owned.remove(service);
                    Err(ZkError::NoNode)
                }
                Err(err) => Err(err),
            }
        }
        Some(_) => Ok(()),
    }
}

/// A watched znode changed: forget it if it is gone and return true (the next pass creates
/// it again), or watch it again if it is still there.
async fn recheck_owned(ctx: &SessionCtx<'_>, path: &str, owned: &mut BTreeMap<String, Owned>) -> Result<bool, ZkError> {
    let Some(service) = owned.iter().find(|(_, o)| o.path == path).map(|(s, _)| s.clone()) else { return Ok(false) };
    match ctx.client.check_stat(path).await? {
        None => {
            warn!(%service, znode = %path, "owned znode deleted by someone else; registering again");
            owned.remove(&service);
            Ok(true)
        }
        Some(_) => watch_owned(ctx, path).await.map(|()| false),
    }
}

fn owned_for(path: String, registration: &Registration) -> Owned {
    Owned {
        path,
        zk_path: registration.zk_path.clone(),
        prefix: registration.prefix.clone(),
        data: registration.data.clone(),
    }
}

/// Creates the sequential ephemeral znode, creating missing parents once on demand.
async fn create(ctx: &SessionCtx<'_>, registration: &Registration) -> Result<String, ZkError> {
    let acls = ctx.settings.acls();
    let options = CreateMode::EphemeralSequential.with_acls(acls);
    let prefix_path = child_path(&registration.zk_path, &registration.prefix);
    let created = match ctx.client.create(&prefix_path, &registration.data, &options).await {
        Err(ZkError::NoNode) => {
            ctx.client.mkdir(&registration.zk_path, &CreateMode::Persistent.with_acls(acls)).await?;
            ctx.client.create(&prefix_path, &registration.data, &options).await
        }
        other => other,
    };
    let (_, sequence) = created?;
    Ok(child_path(&registration.zk_path, &sequential_name(&registration.prefix, sequence.into_i64())))
}

/// Looks at this instance's children under the registration's path: adopts the one this
/// session made for this endpoint (a create whose reply was lost), deletes duplicates of it,
/// and returns what an earlier session of this process left, for the caller to delete once the
/// new znode exists. Children of other sessions (another registrar) are left alone.
async fn adopt(
    ctx: &SessionCtx<'_>,
    service: &str,
    registration: &Registration,
    owned: &mut BTreeMap<String, Owned>,
) -> Result<Vec<String>, ZkError> {
    let children = match ctx.client.list_children(&registration.zk_path).await {
        Err(ZkError::NoNode) => return Ok(Vec::new()),
        other => other?,
    };
    let mut leftovers = Vec::new();
    for child in children.iter().filter(|c| c.starts_with(&registration.prefix)) {
        let path = child_path(&registration.zk_path, child);
        let (data, stat) = match ctx.client.get_data(&path).await {
            Err(ZkError::NoNode) => continue,
            other => other?,
        };
        let same_endpoint =
            Record::from_json(&data).is_ok_and(|r| r.host == registration.host && r.port == registration.port);
        if stat.ephemeral_owner == ctx.session && same_endpoint {
            if owned.contains_key(service) {
                debug!(%service, znode = %path, "deleting a duplicate made by a lost reply");
                delete(ctx.client, &path).await?;
            } else {
                info!(%service, znode = %path, "adopted a znode whose creation reply was lost");
                owned.insert(service.to_owned(), Owned { data, ..owned_for(path.clone(), registration) });
                watch_owned(ctx, &path).await?;
            }
        } else if ctx.previous.contains(&stat.ephemeral_owner) {
            leftovers.push(path);
        }
    }
    Ok(leftovers)
}

async fn delete(client: &Client, path: &str) -> Result<(), ZkError> {
    match client.delete(path, None).await {
        Ok(()) | Err(ZkError::NoNode) => Ok(()),
        Err(err) => Err(err),
    }
}

/// Deletes every owned znode, concurrently, within `grace`.
async fn deregister_all(client: &Client, owned: &BTreeMap<String, Owned>, grace: Duration, metrics: &Metrics) {
    if owned.is_empty() {
        return;
    }
    let deletions = owned.iter().map(|(service, o)| async move { (service, &o.path, delete(client, &o.path).await) });
    match tokio::time::timeout(grace, futures_util::future::join_all(deletions)).await {
        Ok(results) => {
            for (service, path, result) in results {
                match result {
                    Ok(()) => {
                        info!(%service, znode = %path, "deregistered");
                        metrics.deregistrations.inc();
                    }
                    Err(err) => {
                        warn!(%service, znode = %path, %err, "could not deregister; the znode goes with the session")
                    }
                }
            }
        }
        Err(_) => warn!(?grace, "deregistration did not finish in time; the znodes go with the session"),
    }
}

/// Closes the session: dropping the last client sends the close request; wait for it briefly.
async fn close(client: Client) {
    let mut states = client.state_watcher();
    let id = client.session_id();
    drop(client);
    let closed = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            if states.changed().await.is_terminated() {
                break;
            }
        }
    })
    .await;
    debug!(session = %id, closed = closed.is_ok(), state = state_name(states.peek_state()), "ZooKeeper session closed");
}
