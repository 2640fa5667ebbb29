//! ZooKeeper settings shared by both daemons, the one session machine they follow, and what
//! an error answering a request means — classified once, here.
//!
//! Each daemon holds one [`Session`]. Opening fails fast when no server answers, and is retried
//! with [`crate::backoff::Backoff`] (never at once: every wait is the backoff's); once open, the
//! client itself moves between ensemble members and the session reports each change of its
//! link as a [`Transition`]: disconnected, reconnected, or ended (expired, closed), which is
//! terminal and needs a new session. Lifecycle ([`Link`]): `Connecting` → `Connected` ⇄
//! `Disconnected`; `Expired` → `Connecting`; `Stopped` at the end.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use tracing::{Instrument as _, info, warn};
use zookeeper_client::{Acl, Acls, Client, CreateMode, Permission, SessionState};

use crate::config::{Checker, ConfigError, quoted};

/// The `[zookeeper]` table as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawZookeeper {
    /// `host:port[,host:port…][/chroot]`.
    pub connect: String,
    pub chroot: Option<String>,
    pub session_timeout: Option<String>,
    pub connection_timeout: Option<String>,
    pub reconnect_backoff_max: Option<String>,
    pub digest: Option<RawDigest>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDigest {
    pub user: String,
    pub password: crate::config::Secret,
}

/// Validated ZooKeeper settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkSettings {
    /// `host:port,host:port`, without a chroot.
    pub hosts: String,
    /// Everything the daemon reads and writes lives below this path, created when missing.
    pub chroot: Option<String>,
    pub session_timeout: Duration,
    pub connection_timeout: Option<Duration>,
    /// The longest wait between two attempts to open a session.
    pub reconnect_backoff_max: Duration,
    pub digest: Option<Digest>,
}

#[derive(Clone, PartialEq, Eq)]
pub struct Digest {
    pub user: String,
    pub password: crate::config::Secret,
}

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Digest").field("user", &self.user).finish_non_exhaustive()
    }
}

pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(1);

impl RawZookeeper {
    /// Validates the table found at `field` (normally `zookeeper`).
    pub fn validate(&self, check: &Checker<'_>, field: &str) -> Result<ZkSettings, ConfigError> {
        let (hosts, inline_chroot) = match self.connect.split_once('/') {
            Some((hosts, chroot)) => (hosts, Some(format!("/{chroot}"))),
            None => (self.connect.as_str(), None),
        };
        let hosts = hosts.trim();
        let expected = "comma-separated host:port pairs, such as \"zk1:2181,zk2:2181\"";
        let mut parts = Vec::new();
        for part in hosts.split(',') {
            let part = part.trim();
            let ok = part
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0));
            if !ok {
                return Err(check.invalid(format!("{field}.connect"), quoted(&self.connect), expected));
            }
            parts.push(part);
        }
        let chroot = match (&self.chroot, inline_chroot) {
            (Some(_), Some(_)) => {
                return Err(check.invalid(
                    format!("{field}.chroot"),
                    quoted(self.chroot.as_deref().unwrap_or_default()),
                    "no chroot here when `connect` already ends in one",
                ));
            }
            (Some(c), None) => Some(check.zk_path(&format!("{field}.chroot"), c)?),
            (None, Some(c)) => Some(check.zk_path(&format!("{field}.connect"), &c)?),
            (None, None) => None,
        }
        .filter(|c| c != "/");
        let session_timeout = check.duration_or(
            &format!("{field}.session_timeout"),
            self.session_timeout.as_deref(),
            Duration::from_secs(1)..=Duration::from_secs(600),
            DEFAULT_SESSION_TIMEOUT,
        )?;
        let connection_timeout = match &self.connection_timeout {
            Some(t) => Some(check.duration(
                &format!("{field}.connection_timeout"),
                t,
                Duration::from_millis(100),
                session_timeout,
            )?),
            None => None,
        };
        let reconnect_backoff_max = check.duration_or(
            &format!("{field}.reconnect_backoff_max"),
            self.reconnect_backoff_max.as_deref(),
            Duration::from_millis(100)..=Duration::from_secs(300),
            DEFAULT_RECONNECT_BACKOFF_MAX,
        )?;
        let digest = match &self.digest {
            Some(d) if d.user.is_empty() || d.user.contains(':') => {
                return Err(check.invalid(
                    format!("{field}.digest.user"),
                    quoted(&d.user),
                    "a non-empty name without ':'",
                ));
            }
            Some(d) => Some(Digest { user: d.user.clone(), password: d.password.clone() }),
            None => None,
        };
        Ok(ZkSettings {
            hosts: parts.join(","),
            chroot,
            session_timeout,
            connection_timeout,
            reconnect_backoff_max,
            digest,
        })
    }
}

impl ZkSettings {
    /// Settings for a plain connection, as tests and tools use.
    pub fn new(hosts: impl Into<String>) -> ZkSettings {
        ZkSettings {
            hosts: hosts.into(),
            chroot: None,
            session_timeout: DEFAULT_SESSION_TIMEOUT,
            connection_timeout: None,
            reconnect_backoff_max: DEFAULT_RECONNECT_BACKOFF_MAX,
            digest: None,
        }
    }

    /// The ACL for nodes this daemon creates: open without credentials; with digest
    /// credentials, full rights for the creator and read for everyone (so proxies can read).
    pub fn acls(&self) -> Acls<'static> {
        static OWNED_WORLD_READABLE: [Acl; 2] =
            [Acl::new_const(Permission::ALL, "auth", ""), Acl::new_const(Permission::READ, "world", "anyone")];
        if self.digest.is_some() { Acls::new(&OWNED_WORLD_READABLE) } else { Acls::anyone_all() }
    }

    /// Opens a session: fails fast with [`zookeeper_client::Error::NoHosts`] when no server
    /// serves, so the caller decides how long to wait before the next attempt. A writer creates
    /// the chroot when it is missing; a reader never writes: it only checks that the chroot
    /// exists (creating it needs the right to create in its parent, which ZooKeeper checks
    /// before it sees that the node exists, so a read-only identity would be refused).
    pub async fn connect_as(&self, role: Role) -> Result<Client, zookeeper_client::Error> {
        let mut connector = Client::connector().with_session_timeout(self.session_timeout).with_fail_eagerly();
        if let Some(timeout) = self.connection_timeout {
            connector = connector.with_connection_timeout(timeout);
        }
        if let Some(digest) = &self.digest {
            connector =
                connector.with_auth("digest", format!("{}:{}", digest.user, digest.password.expose()).as_bytes());
        }
        let client = connector.connect(&self.hosts).await?;
        let Some(chroot) = &self.chroot else { return Ok(client) };
        match role {
            Role::Writer => client.mkdir(chroot, &CreateMode::Persistent.with_acls(self.acls())).await?,
            Role::Reader => match client.check_stat(chroot).await {
                Ok(Some(_)) | Err(zookeeper_client::Error::NoAuth) => {}
                Ok(None) => warn!(%chroot, "the chroot does not exist (yet): every path below it reads as missing"),
                Err(err) => return Err(err),
            },
        }
        client.chroot(chroot.as_str()).map_err(|_| zookeeper_client::Error::BadArguments(&"invalid chroot"))
    }

    /// [`ZkSettings::connect_as`] a writer.
    pub async fn connect(&self) -> Result<Client, zookeeper_client::Error> {
        self.connect_as(Role::Writer).await
    }
}

/// The shortest wait between two attempts to open a session.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(50);

/// Opens a session as a writer, retrying with exponential backoff and jitter until it
/// succeeds or `shutdown` is cancelled (`None`). `failed` hears of every failed attempt and the
/// wait before the next one.
pub async fn open_session(
    settings: &ZkSettings,
    shutdown: &tokio_util::sync::CancellationToken,
    failed: impl FnMut(&zookeeper_client::Error, Duration),
) -> Option<Client> {
    open_session_as(settings, Role::Writer, shutdown, failed).await
}

/// [`open_session`] as `role`.
pub async fn open_session_as(
    settings: &ZkSettings,
    role: Role,
    shutdown: &tokio_util::sync::CancellationToken,
    mut failed: impl FnMut(&zookeeper_client::Error, Duration),
) -> Option<Client> {
    let mut backoff = crate::backoff::Backoff::new(INITIAL_BACKOFF, settings.reconnect_backoff_max);
    loop {
        let attempt = tokio::select! {
            _ = shutdown.cancelled() => return None,
            attempt = settings.connect_as(role) => attempt,
        };
        match attempt {
            Ok(client) => return Some(client),
            Err(err) => {
                let delay = backoff.next_delay();
                failed(&err, delay);
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// Whether a daemon writes to ZooKeeper (the registrar) or only reads (axon-spoa).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Writer,
    Reader,
}

/// Where a daemon's session stands, as its status shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Link {
    /// Opening a session (none yet, or the last one ended).
    #[default]
    Connecting,
    Connected,
    /// The session lives, the connection does not (the client is looking for a server).
    Disconnected,
    /// The session ended; a new one is being opened.
    Expired,
    Stopped,
}

/// A change of a session's link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Disconnected,
    /// Connected again, same session.
    Reconnected,
    /// The session is over (expired, closed, authentication failed): open a new one.
    Ended(SessionState),
}

/// One open session: its client, its id, the span its work is traced in, and its link's
/// transitions, counted in [`SessionMetrics`].
pub struct Session {
    client: Client,
    id: i64,
    states: zookeeper_client::StateWatcher,
    metrics: SessionMetrics,
    span: tracing::Span,
    connected: bool,
}

impl Session {
    /// Opens a session as `role`, retrying with backoff (see [`open_session`]) until it
    /// succeeds or `shutdown` is cancelled (`None`).
    pub async fn open(
        settings: &ZkSettings,
        role: Role,
        metrics: &SessionMetrics,
        shutdown: &tokio_util::sync::CancellationToken,
        failed: impl FnMut(&zookeeper_client::Error, Duration),
    ) -> Option<Session> {
        let client = open_session_as(settings, role, shutdown, failed).await?;
        let id = client.session_id().0;
        let span = tracing::info_span!("zookeeper", session = %format!("{id:#x}"));
        span.in_scope(|| info!(hosts = %settings.hosts, "ZooKeeper session opened"));
        metrics.sessions.inc();
        metrics.connected.set(1);
        let states = client.state_watcher();
        Some(Session { client, id, states, metrics: metrics.clone(), span, connected: true })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn id(&self) -> i64 {
        self.id
    }

    /// The span this session's work is traced in (it carries the session id).
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// The next change of the link (after an [`Transition::Ended`], it is the only answer).
    pub async fn transition(&mut self) -> Transition {
        let span = self.span.clone();
        async {
            loop {
                let state = self.states.changed().await;
                match state {
                    SessionState::SyncConnected | SessionState::ConnectedReadOnly if !self.connected => {
                        self.connected = true;
                        self.metrics.connected.set(1);
                        self.metrics.reconnects.inc();
                        info!("ZooKeeper connection restored, same session");
                        return Transition::Reconnected;
                    }
                    SessionState::SyncConnected | SessionState::ConnectedReadOnly => {}
                    SessionState::Disconnected => {
                        if self.connected {
                            self.connected = false;
                            self.metrics.connected.set(0);
                            warn!("ZooKeeper connection lost");
                            return Transition::Disconnected;
                        }
                    }
                    terminal => {
                        self.connected = false;
                        self.metrics.connected.set(0);
                        if terminal == SessionState::Expired {
                            self.metrics.expiries.inc();
                        }
                        warn!(state = %terminal, "ZooKeeper session ended");
                        return Transition::Ended(terminal);
                    }
                }
            }
        }
        .instrument(span)
        .await
    }
}

/// What an error answering a request says about that request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// ZooKeeper answered with a result code: the request was not carried out, for this
    /// reason.
    Refused(Refusal),
    /// The session is over (expired, closed, moved, or its authentication failed): nothing
    /// more is answered in it.
    SessionOver,
    /// Anything else — the connection lost or reset, no answer in time, a reply that could not
    /// be read: the request may or may not have been carried out. (zookeeper-client 0.11.2
    /// reports a reset or an unresponsive server as `Error::Custom`, not `ConnectionLoss`.)
    Unknown,
}

/// A ZooKeeper result code that refuses a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NoNode,
    NodeExists,
    NoAuth,
    BadVersion,
    NotEmpty,
    /// The server does not know the operation (`addWatch` before 3.6).
    Unimplemented,
    /// Another code (bad arguments, invalid ACL, quota, …).
    Other,
}

/// Classifies an error answering a request — the one place that decides which errors are
/// definitive.
pub fn verdict(err: &zookeeper_client::Error) -> Verdict {
    use zookeeper_client::Error as E;
    match err {
        E::NoNode => Verdict::Refused(Refusal::NoNode),
        E::NodeExists => Verdict::Refused(Refusal::NodeExists),
        E::NoAuth => Verdict::Refused(Refusal::NoAuth),
        E::BadVersion => Verdict::Refused(Refusal::BadVersion),
        E::NotEmpty => Verdict::Refused(Refusal::NotEmpty),
        E::Unimplemented => Verdict::Refused(Refusal::Unimplemented),
        E::BadArguments(_)
        | E::NoChildrenForEphemerals
        | E::InvalidAcl
        | E::NotReadOnly
        | E::NoWatcher
        | E::QuotaExceeded
        | E::ReconfigDisabled
        | E::MarshallingError => Verdict::Refused(Refusal::Other),
        E::SessionExpired | E::SessionMoved | E::AuthFailed | E::ClientClosed => Verdict::SessionOver,
        // ConnectionLoss, Custom (reset, no answer), Timeout, Throttled, unmarshalling
        // trouble, unknown codes, and whatever a later version adds.
        _ => Verdict::Unknown,
    }
}

/// A short lowercase name for a session state, as shown in status output and metrics.
pub fn state_name(state: SessionState) -> &'static str {
    match state {
        SessionState::Disconnected => "disconnected",
        SessionState::SyncConnected => "connected",
        SessionState::ConnectedReadOnly => "connected_read_only",
        SessionState::Expired => "expired",
        SessionState::AuthFailed => "auth_failed",
        SessionState::Closed => "closed",
    }
}

/// What both daemons report of their ZooKeeper session, under the same names: `zk_sessions`,
/// `zk_reconnects`, `zk_expiries`, `zk_connected`.
#[derive(Debug, Clone, Default)]
pub struct SessionMetrics {
    pub sessions: Counter,
    pub reconnects: Counter,
    pub expiries: Counter,
    pub connected: Gauge,
}

impl SessionMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register("zk_sessions", "ZooKeeper sessions opened", self.sessions.clone());
        registry.register("zk_reconnects", "Reconnections within a ZooKeeper session", self.reconnects.clone());
        registry.register("zk_expiries", "ZooKeeper sessions expired", self.expiries.clone());
        registry.register("zk_connected", "1 while connected to ZooKeeper", self.connected.clone());
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn raw(connect: &str) -> RawZookeeper {
        RawZookeeper {
            connect: connect.into(),
            chroot: None,
            session_timeout: None,
            connection_timeout: None,
            reconnect_backoff_max: None,
            digest: None,
        }
    }

    fn validate(raw: &RawZookeeper) -> Result<ZkSettings, ConfigError> {
        raw.validate(&Checker::new(Path::new("c.toml")), "zookeeper")
    }

    #[test]
    fn accepts_ensembles_and_inline_chroots() {
        let s = validate(&raw("zk1:2181, zk2:2182/axon/")).unwrap();
        assert_eq!(s.hosts, "zk1:2181,zk2:2182");
        assert_eq!(s.chroot.as_deref(), Some("/axon"));
        assert_eq!(s.session_timeout, DEFAULT_SESSION_TIMEOUT);
    }

    #[test]
    fn rejects_bad_connect_strings() {
        for bad in ["", "zk1", "zk1:0", "zk1:99999", ":2181", "zk1:2181,,zk2:2181", "zk1:2181/a//b"] {
            let err = validate(&raw(bad)).unwrap_err();
            assert_eq!(err.field(), Some("zookeeper.connect"), "{bad}: {err}");
        }
    }

    #[test]
    fn result_codes_are_definitive_and_everything_else_is_unknown() {
        use zookeeper_client::Error as E;
        let cases = [
            (E::NoNode, Verdict::Refused(Refusal::NoNode)),
            (E::NodeExists, Verdict::Refused(Refusal::NodeExists)),
            (E::NoAuth, Verdict::Refused(Refusal::NoAuth)),
            (E::BadVersion, Verdict::Refused(Refusal::BadVersion)),
            (E::NotEmpty, Verdict::Refused(Refusal::NotEmpty)),
            (E::Unimplemented, Verdict::Refused(Refusal::Unimplemented)),
            (E::InvalidAcl, Verdict::Refused(Refusal::Other)),
            (E::QuotaExceeded, Verdict::Refused(Refusal::Other)),
            (E::SessionExpired, Verdict::SessionOver),
            (E::SessionMoved, Verdict::SessionOver),
            (E::AuthFailed, Verdict::SessionOver),
            (E::ClientClosed, Verdict::SessionOver),
            (E::ConnectionLoss, Verdict::Unknown),
            (E::Timeout, Verdict::Unknown),
            (E::Throttled, Verdict::Unknown),
            (E::UnexpectedErrorCode(-7), Verdict::Unknown),
            (E::UnexpectedError("x".into()), Verdict::Unknown),
        ];
        for (err, expected) in cases {
            assert_eq!(verdict(&err), expected, "{err:?}");
        }
        // (`Error::Custom`, what a reset or a silent server gives, cannot be built outside the
        // client: the end-to-end tests cut real connections for it.)
    }

    #[test]
    fn rejects_timeouts_out_of_range() {
        let mut r = raw("zk:2181");
        r.session_timeout = Some("10ms".into());
        assert_eq!(validate(&r).unwrap_err().field(), Some("zookeeper.session_timeout"));
        r.session_timeout = Some("4s".into());
        r.connection_timeout = Some("5s".into());
        assert_eq!(validate(&r).unwrap_err().field(), Some("zookeeper.connection_timeout"));
    }
}
