//! What a service on this host is, as the registrar works with it: its endpoint, the record
//! it publishes, how its child is named, its checks — and what a change of its configuration
//! means for its health. Validated from the configuration file by [`crate::config`]. No I/O.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use axon_record::Record;

/// One service on this host.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceConfig {
    pub name: String,
    /// The address proxies connect to, and that checks target unless they name their own.
    pub host: String,
    pub port: u16,
    /// The ZooKeeper path under which this instance's znode is created.
    pub zk_path: String,
    pub weight: Option<u32>,
    pub labels: Option<BTreeMap<String, String>>,
    /// Written into the record for Nerve compatibility; Axon's proxy side never applies it.
    pub haproxy_server_options: Option<String>,
    pub check_interval: Duration,
    pub checks: Vec<CheckConfig>,
    /// A file whose existence takes this service out of rotation.
    pub maintenance_file: Option<PathBuf>,
    /// Nerve's `use_path_encoding`: the record also goes into the child's name, so readers
    /// need no data read (a record change then replaces the znode, make before break).
    pub path_encoding: PathEncoding,
}

/// How a service's child znode is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PathEncoding {
    /// `<instance_id>_<sequence>`.
    #[default]
    None,
    /// `base64_<len>_<urlsafe-base64(record)>_<sequence>`, as Nerve's `use_path_encoding`.
    Base64,
}

impl ServiceConfig {
    /// The record this service publishes for `instance_id`.
    pub fn record(&self, instance_id: &str) -> Record {
        Record {
            host: self.host.clone(),
            port: self.port,
            name: instance_id.to_owned(),
            weight: self.weight,
            haproxy_server_options: self.haproxy_server_options.clone(),
            labels: self.labels.clone(),
        }
    }

    /// What changing this service's configuration to `new` means for its health.
    pub fn change_to(&self, new: &ServiceConfig) -> Change {
        if self.host != new.host || self.port != new.port {
            Change::Endpoint
        } else if self.checks.len() != new.checks.len()
            || self.checks.iter().zip(&new.checks).any(|(old, new)| old.kind != new.kind)
        {
            Change::Checks
        } else if self != new {
            Change::Settings
        } else {
            Change::None
        }
    }
}

/// What a reload changes of one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    None,
    /// Only the record, the path, the timing or the thresholds: health is kept.
    Settings,
    /// What is checked changed (a check added, removed or altered): the new checks start
    /// from the service's current health, so a healthy instance stays registered until a new
    /// check has failed `fall` times.
    Checks,
    /// Another host or port: another instance, whose health is learnt from scratch.
    Endpoint,
}

/// One check; all of a service's checks must be up for it to be registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckConfig {
    pub kind: CheckKind,
    pub timeout: Duration,
    /// Consecutive passes that bring a down check up.
    pub rise: NonZeroU32,
    /// Consecutive failures that bring an up check down.
    pub fall: NonZeroU32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    Tcp { host: String, port: u16 },
    Http(HttpCheck),
    Exec { command: String },
    Redis { host: String, port: u16, username: Option<String>, password: Option<axon_core::config::Secret> },
}

impl CheckKind {
    pub fn name(&self) -> &'static str {
        match self {
            CheckKind::Tcp { .. } => "tcp",
            CheckKind::Http(_) => "http",
            CheckKind::Exec { .. } => "exec",
            CheckKind::Redis { .. } => "redis",
        }
    }

    /// What the check targets, as shown to operators: an address, a URL or a command (never a
    /// password).
    pub fn target(&self) -> String {
        match self {
            CheckKind::Tcp { host, port } | CheckKind::Redis { host, port, .. } => format!("{host}:{port}"),
            CheckKind::Http(http) => http.url(),
            CheckKind::Exec { command } => command.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCheck {
    pub host: String,
    pub port: u16,
    pub uri: String,
    pub https: bool,
    pub headers: Vec<(String, String)>,
    pub status: RangeInclusive<u16>,
    pub body_contains: Option<String>,
    /// Reuse one connection across runs, renewed every [`KEEPALIVE_MAX_USES`] runs (the
    /// default, as Envoy's `reuse_connection`); `false` opens one per run.
    pub keepalive: bool,
}

/// How many runs one kept-alive check connection serves before a fresh one is opened, so
/// that a listener that stopped accepting is still noticed.
pub const KEEPALIVE_MAX_USES: u32 = 30;

impl HttpCheck {
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        format!("{scheme}://{host}:{}{}", self.port, self.uri)
    }
}
