//! The ZooKeeper side of the registrar: one session, and exactly the wanted znodes in it.
//!
//! A thin shell around [`plan::Plan`], which decides every request: this module opens the
//! session (the machine in [`axon_core::zk::Session`]), carries out the plan's requests
//! concurrently (at most one per place), turns each answer into the plan's terms with
//! [`axon_core::zk::verdict`], forwards watch notifications, and reports.
//!
//! - The connection lost: requests stop until it is back (nothing is retried meanwhile, so
//!   nothing spins), then those whose outcome was unknown go again at once.
//! - The session over (expired, closed): a new one is opened with backoff, and the plan starts
//!   every place in doubt.
//! - New ZooKeeper settings (SIGHUP): the new session is opened while the current one goes on
//!   serving (a service that goes down meanwhile is deregistered there; a second change starts
//!   the opening over with the latest settings). Once it opens it takes over, creates its
//!   znodes, and the sessions it replaced are closed when it has every znode (make before
//!   break), or at the latest after its session timeout.
//! - Stop: every znode is deleted (within the grace period), then the session is closed.
//!
//! Lifecycle ([`Link`]): `Connecting` → `Connected` ⇄ `Disconnected`; `Expired` → `Connecting`;
//! `Stopped`.

pub mod plan;

use std::collections::BTreeMap;
use std::time::Duration;

use axon_core::backoff::Backoff;
use axon_core::zk::{INITIAL_BACKOFF, Link, Role, Session, Transition, ZkSettings, state_name, verdict};
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, debug, info, warn};
use zookeeper_client::{Client, CreateMode, Error as ZkError};

use self::plan::{Child, Event, Failure, Op, Ours, Plan, Reply, Request};
use crate::metrics::Metrics;
use crate::state::Registration;

/// What the publisher is asked to make true.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub zookeeper: ZkSettings,
    pub instance_id: String,
    pub registrations: BTreeMap<String, Registration>,
}

/// What the publisher reports, for the status endpoint.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PublisherStatus {
    pub state: Link,
    pub session_id: Option<String>,
    /// Service name → the znode this session publishes for it.
    pub znodes: BTreeMap<String, String>,
    /// Service name → why its znode is not (yet) as wanted.
    pub errors: BTreeMap<String, String>,
    pub last_error: Option<String>,
}

enum SessionEnd {
    Stopped,
    Ended,
}

type Answer = (u64, Result<Reply, ZkError>);
type InFlight = FuturesUnordered<std::pin::Pin<Box<dyn Future<Output = Answer> + Send>>>;
type Opening = std::pin::Pin<Box<dyn Future<Output = Option<Session>> + Send>>;

/// A session replaced by one of new settings: it keeps its znodes until the new session has
/// every znode, or until `close_by`.
struct Retiring {
    session: Session,
    close_by: Instant,
}

pub struct Publisher {
    desired: watch::Receiver<Desired>,
    status: watch::Sender<PublisherStatus>,
    metrics: Metrics,
    grace: Duration,
    shutdown: CancellationToken,
    plan: Plan,
    retiring: Vec<Retiring>,
}

impl Publisher {
    pub fn new(
        desired: watch::Receiver<Desired>,
        status: watch::Sender<PublisherStatus>,
        metrics: Metrics,
        grace: Duration,
        shutdown: CancellationToken,
    ) -> Publisher {
        let plan = Plan::new(&desired.borrow().instance_id, rand::random());
        Publisher { desired, status, metrics, grace, shutdown, plan, retiring: Vec::new() }
    }

    /// Runs until `shutdown` is cancelled and the znodes are deleted.
    pub async fn run(mut self) {
        // Sessions that end as soon as they open (credentials refused, say) are not reopened
        // at once, again and again.
        let mut quick_ends = Backoff::new(INITIAL_BACKOFF, Duration::from_secs(10));
        while let Some((session, settings)) = self.open().await {
            let opened_at = Instant::now();
            let span = session.span().clone();
            let (end, session) = self.serve(session, settings).instrument(span).await;
            match end {
                SessionEnd::Stopped => {
                    close(session).await;
                    break;
                }
                SessionEnd::Ended => {
                    self.set_link(Link::Expired, None);
                    if opened_at.elapsed() < Duration::from_secs(1) {
                        let delay = quick_ends.next_delay();
                        tokio::select! {
                            _ = self.shutdown.cancelled() => break,
                            _ = tokio::time::sleep(delay) => {}
                        }
                    } else {
                        quick_ends.reset();
                    }
                }
            }
        }
        for old in std::mem::take(&mut self.retiring) {
            close(old.session).await;
        }
        self.status.send_modify(|s| {
            s.state = Link::Stopped;
            s.znodes.clear();
        });
    }

    /// Opens a session with the wanted settings, following them if they change meanwhile;
    /// `None` once stopped.
    async fn open(&mut self) -> Option<(Session, ZkSettings)> {
        self.set_link(Link::Connecting, None);
        loop {
            let settings = self.desired.borrow_and_update().zookeeper.clone();
            let mut opening = self.opening(settings.clone());
            tokio::select! {
                opened = &mut opening => {
                    let session = opened?;
                    self.plan.new_session(session.id());
                    self.set_link(Link::Connected, Some(session.id()));
                    return Some((session, settings));
                }
                changed = self.desired.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                }
            }
        }
    }

    /// Opening a session (retrying with backoff, until stopped) as a future of its own, so
    /// that the current session goes on serving meanwhile.
    fn opening(&self, settings: ZkSettings) -> Opening {
        let (metrics, shutdown) = (self.metrics.zk.clone(), self.shutdown.clone());
        let status = self.status.clone();
        Box::pin(async move {
            Session::open(&settings, Role::Writer, &metrics, &shutdown, |err, delay| {
                warn!(%err, hosts = %settings.hosts, retry_in = ?delay, "cannot open a ZooKeeper session");
                status.send_modify(|s| s.last_error = Some(format!("open session with {}: {err}", settings.hosts)));
            })
            .await
        })
    }

    /// Serves one session until it ends or the publisher stops. New ZooKeeper settings are
    /// opened alongside; once their session opens it takes over (returned in its place), and
    /// the one it replaces retires.
    async fn serve(&mut self, mut session: Session, mut settings: ZkSettings) -> (SessionEnd, Session) {
        let (fired_tx, mut fired_rx) = mpsc::unbounded_channel::<String>();
        let mut in_flight: InFlight = FuturesUnordered::new();
        let mut connected = true;
        let mut stopping: Option<Instant> = None;
        // A session of new settings being opened, and those settings.
        let mut opening: Option<(Opening, ZkSettings)> = None;
        self.apply_desired(&settings, &mut opening);

        loop {
            let now = Instant::now();
            if connected {
                let client = session.client();
                for request in self.plan.poll(now.into_std()) {
                    let ours = self.plan.ours();
                    let acls = settings.acls();
                    in_flight.push(Box::pin(carry_out(client.clone(), request, ours, fired_tx.clone(), acls)));
                }
            }
            self.report();
            self.retire(now);
            if let Some(deadline) = stopping
                && (self.plan.is_idle() || now >= deadline)
            {
                if !self.plan.is_idle() {
                    warn!(grace = ?self.grace, "deregistration did not finish in time; the znodes go with the session");
                }
                return (SessionEnd::Stopped, session);
            }
            // Wake for a place whose wait is over (only while connected: nothing is sent
            // otherwise), for the stop deadline, and for a retiring session's.
            let wake = [
                self.plan.next_wake().filter(|_| connected).map(Instant::from_std),
                stopping,
                self.retiring.iter().map(|r| r.close_by).min(),
            ]
            .into_iter()
            .flatten()
            .min();
            let open = async {
                match opening.as_mut() {
                    Some((future, _)) => future.await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.shutdown.cancelled(), if stopping.is_none() => {
                    info!("stopping: deleting every znode");
                    stopping = Some(Instant::now() + self.grace);
                    opening = None;
                    let instance = self.desired.borrow().instance_id.clone();
                    self.plan.set_wanted(&instance, &BTreeMap::new());
                }
                changed = self.desired.changed(), if stopping.is_none() => {
                    if changed.is_err() {
                        self.shutdown.cancel();
                        continue;
                    }
                    self.apply_desired(&settings, &mut opening);
                }
                opened = open => {
                    let Some((_, new_settings)) = opening.take() else { continue };
                    // `None`: stopped while opening; the stop branch takes it from here.
                    let Some(new) = opened else { continue };
                    info!(session = %format!("{:#x}", new.id()), hosts = %new_settings.hosts, "the session of the new ZooKeeper settings takes over");
                    let close_by = Instant::now() + new_settings.session_timeout;
                    self.retiring.push(Retiring { session: std::mem::replace(&mut session, new), close_by });
                    settings = new_settings;
                    in_flight = FuturesUnordered::new();
                    connected = true;
                    self.plan.new_session(session.id());
                    self.set_link(Link::Connected, Some(session.id()));
                }
                transition = session.transition() => match transition {
                    Transition::Disconnected => {
                        connected = false;
                        self.set_link(Link::Disconnected, Some(session.id()));
                    }
                    Transition::Reconnected => {
                        connected = true;
                        self.plan.reconnected();
                        self.set_link(Link::Connected, Some(session.id()));
                    }
                    Transition::Ended(_) => {
                        let end = if stopping.is_some() { SessionEnd::Stopped } else { SessionEnd::Ended };
                        return (end, session);
                    }
                },
                Some((id, result)) = in_flight.next() => {
                    let result = result.map_err(|err| Failure { verdict: verdict(&err), error: err.to_string() });
                    self.plan.answer(id, result, Instant::now().into_std());
                    self.log_events();
                }
                Some(path) = fired_rx.recv() => self.plan.watch_fired(&path),
                _ = sleep_until(wake) => {}
            }
        }
    }

    /// Closes the retiring sessions once the current one has every znode, or at their
    /// deadline.
    fn retire(&mut self, now: Instant) {
        let complete = self.plan.all_registered();
        let (done, keep): (Vec<Retiring>, Vec<Retiring>) =
            std::mem::take(&mut self.retiring).into_iter().partition(|r| complete || now >= r.close_by);
        self.retiring = keep;
        for old in done {
            info!(session = %format!("{:#x}", old.session.id()), complete, "closing the session of the old ZooKeeper settings");
            tokio::spawn(close(old.session));
        }
    }

    /// Hands the wanted registrations to the plan, and starts opening a session when the
    /// wanted ZooKeeper settings are neither the session's nor those being opened (a second
    /// change while opening starts over with the latest).
    fn apply_desired(&mut self, current: &ZkSettings, opening: &mut Option<(Opening, ZkSettings)>) {
        let desired = self.desired.borrow_and_update().clone();
        self.plan.set_wanted(&desired.instance_id, &desired.registrations);
        if desired.zookeeper == *current {
            if opening.take().is_some() {
                info!("ZooKeeper settings back to the session's: no new session");
            }
        } else if opening.as_ref().is_none_or(|(_, settings)| *settings != desired.zookeeper) {
            info!(hosts = %desired.zookeeper.hosts, "ZooKeeper settings changed: opening a new session; this one serves until it opens");
            *opening = Some((self.opening(desired.zookeeper.clone()), desired.zookeeper));
        }
    }

    fn log_events(&mut self) {
        for event in self.plan.drain_events() {
            match event {
                Event::Registered { service, path } => {
                    info!(%service, znode = %path, "registered");
                    self.metrics.registrations.inc();
                }
                Event::Adopted { service, path } => {
                    info!(%service, znode = %path, "adopted a znode whose creation reply was lost")
                }
                Event::Updated { service, path } => info!(%service, znode = %path, "record updated"),
                Event::Deregistered { service, path } => {
                    info!(%service, znode = %path, "deregistered");
                    self.metrics.deregistrations.inc();
                }
                Event::Cleaned { path } => {
                    info!(znode = %path, "deleted a duplicate, replaced or earlier session's znode");
                    self.metrics.deregistrations.inc();
                }
                Event::Vanished { service, path } => {
                    warn!(%service, znode = %path, "znode deleted by someone else; registering again")
                }
                Event::Failed { place, op, error, retry_in } => {
                    self.metrics.zk_errors.inc();
                    warn!(zk_path = %place.zk_path, endpoint = %format!("{}:{}", place.host, place.port), %op, %error, ?retry_in, "ZooKeeper request failed");
                    self.status.send_modify(|s| s.last_error = Some(format!("{op} under {}: {error}", place.zk_path)));
                }
            }
        }
    }

    fn report(&self) {
        let znodes = self.plan.registered();
        let errors = self.plan.errors();
        self.status.send_if_modified(|s| {
            let changed = s.znodes != znodes || s.errors != errors;
            if changed {
                s.znodes = znodes;
                s.errors = errors;
                if s.errors.is_empty() {
                    s.last_error = None;
                }
            }
            changed
        });
    }

    fn set_link(&self, link: Link, session: Option<i64>) {
        self.status.send_modify(|s| {
            s.state = link;
            s.session_id = session.map(|id| format!("{id:#x}"));
            if session.is_none() {
                // No session, no znode of its own (an earlier one's may linger until it ends).
                s.znodes.clear();
            }
        });
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Carries out one request. A watch task holds no client, so it never keeps a session open.
async fn carry_out(
    client: Client,
    request: Request,
    ours: Ours,
    fired: mpsc::UnboundedSender<String>,
    acls: zookeeper_client::Acls<'static>,
) -> Answer {
    let result = match request.op {
        Op::List { zk_path } => list(&client, &zk_path, &ours).await.map(Reply::Listed),
        Op::MakeParent { zk_path } => {
            client.mkdir(&zk_path, &CreateMode::Persistent.with_acls(acls)).await.map(|()| Reply::Done)
        }
        Op::Create { zk_path, prefix, data } => {
            let options = CreateMode::EphemeralSequential.with_acls(acls);
            let prefix_path = axon_record::child_path(&zk_path, &prefix);
            client.create(&prefix_path, &data, &options).await.map(|(_, sequence)| {
                let name = axon_record::sequential_name(&prefix, sequence.into_i64());
                Reply::Created(axon_record::child_path(&zk_path, &name))
            })
        }
        Op::SetData { path, data } => client.set_data(&path, &data, None).await.map(|_| Reply::Done),
        Op::Delete { path } => client.delete(&path, None).await.map(|()| Reply::Done),
        Op::Watch { path } => match client.get_and_watch_data(&path).await {
            Ok((data, _, watcher)) => {
                tokio::spawn(async move {
                    watcher.changed().await;
                    let _ = fired.send(path);
                });
                Ok(Reply::Watched(Some(data)))
            }
            Err(ZkError::NoNode) => Ok(Reply::Watched(None)),
            Err(err) => Err(err),
        },
    };
    (request.id, result)
}

/// Lists a path after `sync` (so a server that lags behind still shows what this session did)
/// and reads the children that may be this process's.
async fn list(client: &Client, zk_path: &str, ours: &Ours) -> Result<Vec<Child>, ZkError> {
    client.sync(zk_path).await?;
    let names = client.list_children(zk_path).await?;
    let reads = names.into_iter().filter(|name| ours.may_be(name)).map(|name| async move {
        let path = axon_record::child_path(zk_path, &name);
        match client.get_data(&path).await {
            Ok((data, stat)) => Ok(Some(Child { name, owner: stat.ephemeral_owner, data })),
            // Gone meanwhile, or unreadable to this identity (then not made by it): not ours.
            Err(ZkError::NoNode | ZkError::NoAuth) => Ok(None),
            Err(err) => Err(err),
        }
    });
    let read: Vec<Result<Option<Child>, ZkError>> = futures_util::future::join_all(reads).await;
    read.into_iter().filter_map(Result::transpose).collect()
}

/// Closes a session: dropping its last client sends the close request; wait for it briefly.
async fn close(session: Session) {
    let client = session.client().clone();
    let mut states = client.state_watcher();
    let id = session.id();
    drop(session);
    drop(client);
    let closed = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            if states.changed().await.is_terminated() {
                break;
            }
        }
    })
    .await;
    debug!(session = %format!("{id:#x}"), closed = closed.is_ok(), state = state_name(states.peek_state()), "ZooKeeper session closed");
}
