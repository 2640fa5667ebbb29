//! What axon-spoa knows: instances of services, and the snapshot that discovery publishes and
//! both the HAProxy sync and the SPOE agent read (swapped atomically, never waited on).

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// An IP literal and a port: what HAProxy's `set server addr` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Endpoint {
    pub ip: IpAddr,
    pub port: u16,
}

impl Endpoint {
    pub fn new(ip: IpAddr, port: u16) -> Endpoint {
        Endpoint { ip, port }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        SocketAddr::new(self.ip, self.port).fmt(f)
    }
}

impl From<SocketAddr> for Endpoint {
    fn from(addr: SocketAddr) -> Endpoint {
        Endpoint { ip: addr.ip(), port: addr.port() }
    }
}

/// HAProxy's weight range.
pub const MAX_WEIGHT: u16 = 256;
/// The weight of an instance whose record has none (HAProxy's own default).
pub const DEFAULT_WEIGHT: u16 = 1;

/// One usable instance of a service. Cheap to copy: each view of a service that did not change
/// shares the instance's names and labels with the one before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    pub endpoint: Endpoint,
    /// 0–256 (clamped).
    pub weight: u16,
    #[serde(default, skip_serializing_if = "no_labels")]
    pub labels: Arc<BTreeMap<String, String>>,
    /// The record's `name` (the registering host's instance id).
    #[serde(default)]
    pub name: Arc<str>,
    /// The child znode it came from (empty for default servers).
    #[serde(default)]
    pub znode: Arc<str>,
}

fn no_labels(labels: &Arc<BTreeMap<String, String>>) -> bool {
    labels.is_empty()
}

impl Instance {
    /// An instance that no znode names: a configured default server, or one built by a test.
    pub fn unnamed(endpoint: Endpoint, weight: u16, labels: &[(&str, &str)]) -> Self {
        Instance {
            endpoint,
            weight,
            labels: Arc::new(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            name: Arc::default(),
            znode: Arc::default(),
        }
    }
}

/// Where a service's instances came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Read from ZooKeeper now.
    Discovered,
    /// ZooKeeper has none; the last discovered ones are kept (`on_empty = "keep"`).
    Previous,
    /// ZooKeeper has none; the configured default servers.
    Defaults,
    /// Read from the on-disk cache at start, ZooKeeper not (yet) read.
    Cache,
    /// Nothing known.
    #[default]
    Empty,
}

/// One service as the proxy should see it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceView {
    /// Sorted by endpoint, one per endpoint.
    pub instances: Vec<Instance>,
    pub source: Source,
    /// Znodes skipped, with the reason (malformed, vanished, unresolvable, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// Every configured service, as of one moment.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Snapshot {
    /// Shared between snapshots: a new snapshot copies only the views that changed.
    pub services: BTreeMap<Arc<str>, Arc<ServiceView>>,
    /// Increases with every snapshot published by this process.
    pub version: u64,
    /// When the information was read.
    pub taken: Option<SystemTime>,
}

impl Snapshot {
    pub fn service(&self, name: &str) -> Option<&ServiceView> {
        self.services.get(name).map(Arc::as_ref)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_print_as_haproxy_reads_them() {
        let v4 = Endpoint::new("10.0.0.5".parse().unwrap(), 80);
        let v6 = Endpoint::new("::1".parse().unwrap(), 8080);
        assert_eq!(v4.to_string(), "10.0.0.5:80");
        assert_eq!(v6.to_string(), "[::1]:8080");
    }
}

/// What to do when a service's path has no instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnEmpty {
    /// Keep the last instances discovered (Synapse's `use_previous_backends`).
    Keep,
    /// Take every instance out.
    Empty,
}

/// A label condition an instance must meet to be used (Synapse's `label_filters`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelFilter {
    pub label: String,
    pub value: String,
    pub equals: bool,
}

impl LabelFilter {
    pub fn matches(&self, labels: &std::collections::BTreeMap<String, String>) -> bool {
        (labels.get(&self.label) == Some(&self.value)) == self.equals
    }
}

impl fmt::Display for LabelFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.label, if self.equals { "=" } else { "!=" }, self.value)
    }
}

/// One service.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceConfig {
    pub name: String,
    pub zk_path: String,
    /// The HAProxy backend holding its slots; none for a service only routed through SPOE.
    pub backend: Option<String>,
    /// Slots are `<slot_prefix>1 … <slot_prefix>N` (the `server-template` prefix).
    pub slot_prefix: String,
    pub label_filters: Vec<LabelFilter>,
    pub default_servers: Vec<Endpoint>,
    /// Use the default servers alongside discovered instances, not only instead of them.
    pub keep_default_servers: bool,
    pub on_empty: OnEmpty,
    /// How long a removed instance drains before its slot goes to maintenance.
    pub drain: Duration,
    /// Options for `add server` when the backend outgrows its slots.
    pub server_options: String,
    /// A declared label selector: requests for the named service's hosts carrying exactly this
    /// selector as their label go to this service's backend, routed by HAProxy through the
    /// host map. Its instances are then the named service's that match `label_filters`.
    pub selector_of: Option<DeclaredSelector>,
}

/// A label selector a service declares for another (`selector_of`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredSelector {
    /// The service whose hosts' requests name it.
    pub of: String,
    /// The declaring service's label filters as `key=value`, sorted by key, comma-separated:
    /// what a request's label must be, exactly.
    pub selector: String,
}
