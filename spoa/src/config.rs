//! axon-spoa's configuration: TOML → raw serde structs → [`Config`], validated.
//!
//! Every default lives in this file. Every error names the file, the field, the value and what
//! would be accepted (see [`axon_core::config`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axon_core::config::{Checker, ConfigError, load_toml, parse_toml, quoted};
use axon_core::status::RawStatus;
use axon_core::zk::{RawZookeeper, ZkSettings};
use serde::Deserialize;

use crate::haproxy::RuntimeAddress;
use crate::model::{DeclaredSelector, Endpoint, LabelFilter, OnEmpty, ServiceConfig};
use crate::spoe::route::RouteConfig;

pub const DEFAULT_DRAIN: Duration = Duration::from_secs(5);
pub const DEFAULT_RESYNC_INTERVAL: Duration = Duration::from_secs(10);
pub const DEFAULT_RELOAD_CHECK_INTERVAL: Duration = Duration::from_millis(250);
/// What `add server` is given when a backend outgrows its template: the shipped snippet's
/// `default-server` line, which `add server` does not inherit.
pub const DEFAULT_SERVER_OPTIONS: &str = "check inter 1s fall 2 rise 2 observe layer4 error-limit 5 on-error mark-down";
pub const DEFAULT_SPOE_MAX_CONNECTIONS: usize = 1000;
/// HAProxy's own default (`tune.bufsize` − 4).
pub const DEFAULT_SPOE_MAX_FRAME_SIZE: u32 = 16380;
/// Longer than the shipped SPOE file's `timeout idle 30s`: HAProxy closes its idle connections
/// first, so the agent never closes one as HAProxy sends on it.
pub const DEFAULT_SPOE_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Reads in flight at most, per axon-spoa (see benches/fleet.rs for how it was chosen).
pub const DEFAULT_MAX_READS_IN_FLIGHT: usize = 64;
/// A re-read after a reconnection or a new session starts within this, at random.
pub const DEFAULT_REREAD_JITTER: Duration = Duration::from_secs(1);
/// A cache older than this is not trusted at a start.
pub const DEFAULT_CACHE_MAX_AGE: Duration = Duration::from_secs(3600);

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub file: PathBuf,
    pub zookeeper: ZkSettings,
    pub haproxy: HaproxyConfig,
    /// Where the discovered state is kept, so a start can use it as the previous state (and
    /// publish it with ZooKeeper down).
    pub cache_file: Option<PathBuf>,
    pub discovery: DiscoveryConfig,
    pub status_listen: Option<SocketAddr>,
    /// How request hosts and paths name services: for the SPOE agent and the host map.
    pub routing: RoutingConfig,
    /// The SPOE agent, if one should listen.
    pub spoe: Option<SpoeConfig>,
    pub services: Vec<ServiceConfig>,
}

/// The SPOE agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoeConfig {
    pub listen: SocketAddr,
    pub max_connections: usize,
    pub max_frame_size: u32,
    /// A connection with nothing to say for this long is closed (status 2).
    pub idle_timeout: Duration,
}

/// How discovery reads ZooKeeper (`[discovery]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiscoveryConfig {
    /// Persistent recursive watches (ZooKeeper 3.6+; falls back by itself), or one-shot ones.
    pub persistent_watches: bool,
    pub max_reads_in_flight: usize,
    pub reread_jitter: Duration,
    pub cache_max_age: Duration,
}

impl Default for DiscoveryConfig {
    fn default() -> DiscoveryConfig {
        DiscoveryConfig {
            persistent_watches: true,
            max_reads_in_flight: DEFAULT_MAX_READS_IN_FLIGHT,
            reread_jitter: DEFAULT_REREAD_JITTER,
            cache_max_age: DEFAULT_CACHE_MAX_AGE,
        }
    }
}

/// How request hosts and paths name services (`[routing]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutingConfig {
    /// A host `<service><suffix>` routes to `<service>`.
    pub host_suffixes: Vec<String>,
    /// The route table, consulted first.
    pub routes: Vec<RouteConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaproxyConfig {
    pub socket: RuntimeAddress,
    /// Written (as `show servers state` prints it) after changes, for `server-state-file`.
    pub state_file: Option<PathBuf>,
    /// HAProxy's host map (the file its configuration names in `map(…)`): kept through the
    /// runtime API, and the file rewritten after changes so that a reload starts with it.
    pub host_map: Option<PathBuf>,
    /// The slots file (`setenv` lines sizing each backend's server-template), loaded before
    /// the backends, so a reload declares every server axon-spoa added.
    pub slots_file: Option<PathBuf>,
    /// How often the whole state is read and repaired even without a change.
    pub resync_interval: Duration,
    /// How often HAProxy's pid is read to notice a reload or restart.
    pub reload_check_interval: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    zookeeper: RawZookeeper,
    haproxy: RawHaproxy,
    cache_file: Option<PathBuf>,
    discovery: Option<RawDiscovery>,
    status: Option<RawStatus>,
    routing: Option<RawRouting>,
    spoe: Option<RawSpoe>,
    #[serde(default)]
    service: Vec<RawService>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpoe {
    listen: String,
    max_connections: Option<usize>,
    max_frame_size: Option<u32>,
    idle_timeout: Option<String>,
    /// Moved to `[routing]`: refused with a message saying so.
    host_suffixes: Option<toml::Value>,
    route: Option<toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDiscovery {
    watches: Option<String>,
    max_reads_in_flight: Option<usize>,
    reread_jitter: Option<String>,
    cache_max_age: Option<String>,
}

impl RawDiscovery {
    fn validate(self, check: &Checker<'_>) -> Result<DiscoveryConfig, ConfigError> {
        let defaults = DiscoveryConfig::default();
        let persistent_watches = match self.watches.as_deref() {
            None | Some("persistent") => true,
            Some("oneshot") => false,
            Some(other) => {
                return Err(check.invalid("discovery.watches", quoted(other), "\"persistent\" or \"oneshot\""));
            }
        };
        let max_reads_in_flight = match self.max_reads_in_flight {
            Some(n) => check.range("discovery.max_reads_in_flight", n, 1, 10_000)?,
            None => defaults.max_reads_in_flight,
        };
        let reread_jitter = check.duration_or(
            "discovery.reread_jitter",
            self.reread_jitter.as_deref(),
            Duration::ZERO..=Duration::from_secs(600),
            defaults.reread_jitter,
        )?;
        let cache_max_age = check.duration_or(
            "discovery.cache_max_age",
            self.cache_max_age.as_deref(),
            Duration::ZERO..=Duration::from_secs(30 * 86_400),
            defaults.cache_max_age,
        )?;
        Ok(DiscoveryConfig { persistent_watches, max_reads_in_flight, reread_jitter, cache_max_age })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRouting {
    #[serde(default)]
    host_suffixes: Vec<String>,
    #[serde(default)]
    route: Vec<RawRoute>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    host: Option<String>,
    path_prefix: Option<String>,
    service: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHaproxy {
    socket: String,
    state_file: Option<PathBuf>,
    host_map: Option<String>,
    slots_file: Option<PathBuf>,
    resync_interval: Option<String>,
    reload_check_interval: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    name: String,
    zk_path: String,
    backend: Option<String>,
    slot_prefix: Option<String>,
    #[serde(default)]
    label_filters: Vec<RawLabelFilter>,
    #[serde(default)]
    default_servers: Vec<String>,
    keep_default_servers: Option<bool>,
    on_empty: Option<String>,
    drain: Option<String>,
    server_options: Option<String>,
    selector_of: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLabelFilter {
    label: String,
    value: String,
    condition: Option<String>,
}

impl Config {
    pub fn load(file: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = load_toml(file)?;
        raw.validate(file)
    }

    pub fn parse(file: &Path, text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = parse_toml(file, text)?;
        raw.validate(file)
    }

    pub fn service(&self, name: &str) -> Option<&ServiceConfig> {
        self.services.iter().find(|s| s.name == name)
    }
}

/// Whether a server named `<long><number>` could also be `<short><number>`: `long` is `short`
/// followed by digits only (or the same).
fn prefixes_clash(short: &str, long: &str) -> bool {
    long.strip_prefix(short).is_some_and(|rest| rest.bytes().all(|b| b.is_ascii_digit()))
}

impl Config {
    /// What is allowed but worth a warning, at start and by `--check`: listeners and the
    /// runtime API reachable from beyond this host.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut outside = |what: &str, addr: SocketAddr| {
            if !addr.ip().is_loopback() {
                out.push(format!(
                    "{}: {what} {addr} is not on loopback: reachable from other hosts",
                    self.file.display()
                ));
            }
        };
        if let RuntimeAddress::Tcp(addr) = &self.haproxy.socket {
            outside("haproxy.socket (HAProxy's runtime API, level admin)", *addr);
        }
        if let Some(spoe) = &self.spoe {
            outside("spoe.listen (the SPOE agent)", spoe.listen);
        }
        if let Some(addr) = self.status_listen {
            outside("status.listen (status and metrics)", addr);
        }
        out
    }
}

/// Lowercase host-name characters: what a request's host can be matched against, and what the
/// host map's keys may hold.
fn host_chars(host: &str) -> bool {
    host.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_'))
}

/// A name HAProxy accepts for a proxy or server, and that fits Axon's variables.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

impl RawConfig {
    fn validate(self, file: &Path) -> Result<Config, ConfigError> {
        let check = Checker::new(file);
        let zookeeper = self.zookeeper.validate(&check, "zookeeper")?;
        let haproxy = self.haproxy.validate(&check)?;
        let status_listen = self.status.as_ref().map(|s| s.validate(&check)).transpose()?;
        let mut services = Vec::with_capacity(self.service.len());
        // Lowercased, as hosts are matched: two names differing only in case would be one.
        let mut names = BTreeMap::new();
        let mut slots = BTreeSet::new();
        for (i, raw) in self.service.into_iter().enumerate() {
            let service = raw.validate(&check, &format!("service[{i}]"))?;
            if let Some(other) = names.insert(service.name.to_ascii_lowercase(), i) {
                return Err(check.invalid(
                    format!("service[{i}].name"),
                    quoted(&service.name),
                    format!("a name no other service has, ignoring case (service[{other}] has it)"),
                ));
            }
            if let Some(backend) = &service.backend {
                // `web` and `web1` in one backend would both claim `web12`.
                let clash = slots.iter().find(|(b, p): &&(String, String)| {
                    b == backend && (prefixes_clash(p, &service.slot_prefix) || prefixes_clash(&service.slot_prefix, p))
                });
                if let Some((_, other)) = clash {
                    return Err(check.invalid(
                        format!("service[{i}].slot_prefix"),
                        quoted(&service.slot_prefix),
                        format!(
                            "a slot prefix whose server names no other service's can match in backend {backend:?} (it clashes with {other:?})"
                        ),
                    ));
                }
                slots.insert((backend.clone(), service.slot_prefix.clone()));
            }
            services.push(service);
        }
        check_selectors(&check, &services)?;
        // A service declaring a selector is reached through it only.
        let routable = services.iter().filter(|s| s.selector_of.is_none()).map(|s| s.name.clone()).collect();
        let routing = self.routing.unwrap_or_default().validate(&check, &routable)?;
        let discovery = self.discovery.unwrap_or_default().validate(&check)?;
        let spoe = self.spoe.map(|raw| raw.validate(&check)).transpose()?;
        Ok(Config {
            file: file.to_owned(),
            zookeeper,
            haproxy,
            cache_file: self.cache_file,
            discovery,
            status_listen,
            routing,
            spoe,
            services,
        })
    }
}

impl RawSpoe {
    fn validate(self, check: &Checker<'_>) -> Result<SpoeConfig, ConfigError> {
        for (field, value) in [("host_suffixes", &self.host_suffixes), ("route", &self.route)] {
            if let Some(value) = value {
                return Err(check.invalid(
                    format!("spoe.{field}"),
                    value,
                    format!("it under [routing] (`routing.{field}`): the host map uses it too"),
                ));
            }
        }
        let listen = self
            .listen
            .parse()
            .map_err(|_| check.invalid("spoe.listen", quoted(&self.listen), "an address such as \"127.0.0.1:9103\""))?;
        let max_connections = match self.max_connections {
            Some(n) => check.range("spoe.max_connections", n, 1, 100_000)?,
            None => DEFAULT_SPOE_MAX_CONNECTIONS,
        };
        let max_frame_size = match self.max_frame_size {
            Some(n) => check.range("spoe.max_frame_size", n, crate::spoe::codec::MIN_FRAME_SIZE, 1024 * 1024)?,
            None => DEFAULT_SPOE_MAX_FRAME_SIZE,
        };
        let idle_timeout = check.duration_or(
            "spoe.idle_timeout",
            self.idle_timeout.as_deref(),
            Duration::from_millis(100)..=Duration::from_secs(3600),
            DEFAULT_SPOE_IDLE_TIMEOUT,
        )?;
        Ok(SpoeConfig { listen, max_connections, max_frame_size, idle_timeout })
    }
}

impl RawRouting {
    fn validate(self, check: &Checker<'_>, services: &BTreeSet<String>) -> Result<RoutingConfig, ConfigError> {
        for (i, suffix) in self.host_suffixes.iter().enumerate() {
            if !suffix.starts_with('.') || suffix.len() < 2 || !host_chars(suffix) {
                return Err(check.invalid(
                    format!("routing.host_suffixes[{i}]"),
                    quoted(suffix),
                    "a lowercase domain suffix starting with '.', such as \".example\"",
                ));
            }
        }
        let routes = self
            .route
            .into_iter()
            .enumerate()
            .map(|(i, raw)| {
                if !services.contains(&raw.service) {
                    return Err(check.invalid(
                        format!("routing.route[{i}].service"),
                        quoted(&raw.service),
                        "the name of a configured service without `selector_of` (one with it is reached through its selector)",
                    ));
                }
                let path_prefix = raw.path_prefix.unwrap_or_else(|| "/".to_owned());
                if !path_prefix.starts_with('/') {
                    return Err(check.invalid(
                        format!("routing.route[{i}].path_prefix"),
                        quoted(&path_prefix),
                        "a path starting with '/'",
                    ));
                }
                let host = match raw.host.as_deref() {
                    None | Some("*") => None,
                    Some(h) if !h.is_empty() && host_chars(h) && !h.ends_with('.') => Some(h.to_owned()),
                    Some(h) => {
                        return Err(check.invalid(
                            format!("routing.route[{i}].host"),
                            quoted(h),
                            "a lowercase host name without port or trailing dot, or \"*\"",
                        ));
                    }
                };
                Ok(RouteConfig { host, path_prefix, service: raw.service })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RoutingConfig { host_suffixes: self.host_suffixes, routes })
    }
}

impl RawHaproxy {
    fn validate(&self, check: &Checker<'_>) -> Result<HaproxyConfig, ConfigError> {
        let socket = if let Some(addr) = self.socket.strip_prefix("tcp:") {
            RuntimeAddress::Tcp(addr.parse().map_err(|_| {
                check.invalid("haproxy.socket", quoted(&self.socket), "a unix socket path or \"tcp:127.0.0.1:9999\"")
            })?)
        } else {
            let path = self.socket.strip_prefix("unix:").unwrap_or(&self.socket);
            if path.is_empty() {
                return Err(check.invalid(
                    "haproxy.socket",
                    quoted(&self.socket),
                    "a unix socket path or \"tcp:127.0.0.1:9999\"",
                ));
            }
            RuntimeAddress::Unix(PathBuf::from(path))
        };
        let resync_interval = check.duration_or(
            "haproxy.resync_interval",
            self.resync_interval.as_deref(),
            Duration::from_millis(100)..=Duration::from_secs(3600),
            DEFAULT_RESYNC_INTERVAL,
        )?;
        let reload_check_interval = check.duration_or(
            "haproxy.reload_check_interval",
            self.reload_check_interval.as_deref(),
            Duration::from_millis(10)..=Duration::from_secs(60),
            DEFAULT_RELOAD_CHECK_INTERVAL,
        )?;
        let host_map = match &self.host_map {
            // The runtime API names a map by its file, on a command line split at spaces.
            Some(path)
                if path.starts_with('/')
                    && !path.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, ';' | '\\' | '#')) =>
            {
                Some(PathBuf::from(path))
            }
            Some(path) => {
                return Err(check.invalid(
                    "haproxy.host_map",
                    quoted(path),
                    "an absolute path without spaces, ';', '\\' or '#', as HAProxy's configuration names it",
                ));
            }
            None => None,
        };
        Ok(HaproxyConfig {
            socket,
            state_file: self.state_file.clone(),
            host_map,
            slots_file: self.slots_file.clone(),
            resync_interval,
            reload_check_interval,
        })
    }
}

impl RawService {
    fn validate(self, check: &Checker<'_>, at: &str) -> Result<ServiceConfig, ConfigError> {
        let names = "letters, digits, '_', '-' or '.' (at most 64)";
        if !valid_name(&self.name) {
            return Err(check.invalid(format!("{at}.name"), quoted(&self.name), names));
        }
        let zk_path = check.zk_path(&format!("{at}.zk_path"), &self.zk_path)?;
        if let Some(backend) = &self.backend
            && !valid_name(backend)
        {
            return Err(check.invalid(format!("{at}.backend"), quoted(backend), names));
        }
        let slot_prefix = self.slot_prefix.unwrap_or_else(|| self.name.clone());
        if !valid_name(&slot_prefix) {
            return Err(check.invalid(format!("{at}.slot_prefix"), quoted(&slot_prefix), names));
        }
        // What a service with `selector_of` takes from the one it names instead.
        let own_sources = [
            ("default_servers", !self.default_servers.is_empty()),
            ("keep_default_servers", self.keep_default_servers.is_some()),
            ("on_empty", self.on_empty.is_some()),
        ];
        let label_filters = self
            .label_filters
            .into_iter()
            .enumerate()
            .map(|(j, f)| {
                let equals = match f.condition.as_deref() {
                    None | Some("equals") => true,
                    Some("not_equals") => false,
                    Some(other) => {
                        return Err(check.invalid(
                            format!("{at}.label_filters[{j}].condition"),
                            quoted(other),
                            "\"equals\" or \"not_equals\"",
                        ));
                    }
                };
                Ok(LabelFilter { label: f.label, value: f.value, equals })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let default_servers = self
            .default_servers
            .iter()
            .enumerate()
            .map(|(j, text)| {
                text.parse::<SocketAddr>().map(Endpoint::from).map_err(|_| {
                    check.invalid(
                        format!("{at}.default_servers[{j}]"),
                        quoted(text),
                        "an IP address and port such as \"10.0.0.1:80\"",
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let on_empty = match self.on_empty.as_deref() {
            None | Some("keep") => OnEmpty::Keep,
            Some("empty") => OnEmpty::Empty,
            Some(other) => return Err(check.invalid(format!("{at}.on_empty"), quoted(other), "\"keep\" or \"empty\"")),
        };
        let drain = check.duration_or(
            &format!("{at}.drain"),
            self.drain.as_deref(),
            Duration::ZERO..=Duration::from_secs(3600),
            DEFAULT_DRAIN,
        )?;
        let selector_of = match self.selector_of {
            Some(of) => Some(declared_selector(check, at, of, self.backend.is_some(), own_sources, &label_filters)?),
            None => None,
        };
        let server_options = self.server_options.unwrap_or_else(|| DEFAULT_SERVER_OPTIONS.to_owned());
        if server_options.contains([';', '\n', '\r', '\\']) {
            return Err(check.invalid(
                format!("{at}.server_options"),
                quoted(&server_options),
                "`add server` keywords without ';', '\\\\' or line breaks",
            ));
        }
        Ok(ServiceConfig {
            name: self.name,
            zk_path,
            backend: self.backend,
            slot_prefix,
            label_filters,
            default_servers,
            keep_default_servers: self.keep_default_servers.unwrap_or(false),
            on_empty,
            drain,
            server_options,
            selector_of,
        })
    }
}

/// A service's `selector_of`: it has a backend, and label filters a request's label selector
/// can name exactly (equality, one per label, characters a map key and a header can carry). Its
/// instances are the named service's that match them, so it takes none of its own sources.
fn declared_selector(
    check: &Checker<'_>,
    at: &str,
    of: String,
    has_backend: bool,
    own_sources: [(&str, bool); 3],
    filters: &[LabelFilter],
) -> Result<DeclaredSelector, ConfigError> {
    if !has_backend {
        return Err(check.invalid(
            format!("{at}.backend"),
            "none",
            "a backend: `selector_of` routes requests to this service's slots",
        ));
    }
    if let Some((field, _)) = own_sources.iter().find(|(_, set)| *set) {
        return Err(check.invalid(
            format!("{at}.{field}"),
            "set",
            format!("it unset with `selector_of`: the instances are {of:?}'s, with its `{field}`"),
        ));
    }
    if filters.is_empty() {
        return Err(check.invalid(
            format!("{at}.label_filters"),
            "[]",
            "at least one filter: they are the selector requests name",
        ));
    }
    let selector_chars = |text: &str| {
        !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ':'))
    };
    for (j, filter) in filters.iter().enumerate() {
        let field = format!("{at}.label_filters[{j}]");
        if !filter.equals {
            return Err(check.invalid(
                format!("{field}.condition"),
                quoted("not_equals"),
                "\"equals\" in a service with `selector_of`: a request's selector names labels it has",
            ));
        }
        for (name, text) in [("label", &filter.label), ("value", &filter.value)] {
            if !selector_chars(text) {
                return Err(check.invalid(
                    format!("{field}.{name}"),
                    quoted(text),
                    "letters, digits, '_', '-', '.', '/' or ':' in a service with `selector_of`",
                ));
            }
        }
        if filters[..j].iter().any(|f| f.label == filter.label) {
            return Err(check.invalid(
                format!("{field}.label"),
                quoted(&filter.label),
                "a label no other filter of this service names, in a service with `selector_of`",
            ));
        }
    }
    let mut parts: Vec<String> = filters.iter().map(|f| format!("{}={}", f.label, f.value)).collect();
    parts.sort();
    Ok(DeclaredSelector { of, selector: parts.join(",") })
}

/// Checks each `selector_of` against the service it names: another service, not itself
/// declaring one, on the same path, whose own filters leave the selector's labels free (a
/// selector `canary=true` under a filter on `canary` would match nothing, or everything). No
/// two services declare one selector for a service.
fn check_selectors(check: &Checker<'_>, services: &[ServiceConfig]) -> Result<(), ConfigError> {
    let mut declared = BTreeSet::new();
    for (i, service) in services.iter().enumerate() {
        let Some(DeclaredSelector { of, selector }) = &service.selector_of else { continue };
        let at = format!("service[{i}]");
        let parent = services.iter().find(|s| &s.name == of && s.name != service.name && s.selector_of.is_none());
        let Some(parent) = parent else {
            return Err(check.invalid(
                format!("{at}.selector_of"),
                quoted(of),
                "the name of another configured service, without `selector_of` itself",
            ));
        };
        if parent.zk_path != service.zk_path {
            return Err(check.invalid(
                format!("{at}.zk_path"),
                quoted(&service.zk_path),
                format!("{of:?}'s zk_path, {:?}: the selector picks among its instances", parent.zk_path),
            ));
        }
        if let Some(other) = services.iter().find(|s| s.name != service.name && s.backend == service.backend) {
            return Err(check.invalid(
                format!("{at}.backend"),
                quoted(service.backend.as_deref().unwrap_or_default()),
                format!(
                    "a backend no other service uses, in a service with `selector_of` ({:?} uses it): its slots are the selector's alone",
                    other.name
                ),
            ));
        }
        if let Some(filter) =
            parent.label_filters.iter().find(|p| service.label_filters.iter().any(|f| f.label == p.label))
        {
            return Err(check.invalid(
                format!("{at}.label_filters"),
                quoted(selector),
                format!("labels {of:?} does not filter on itself (it has {filter})"),
            ));
        }
        if !declared.insert((of, selector)) {
            return Err(check.invalid(
                format!("{at}.label_filters"),
                quoted(selector),
                format!("a selector no other service declares for {of:?}"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[zookeeper]
connect = "127.0.0.1:2181"
[haproxy]
socket = "/run/haproxy/axon.sock"
[[service]]
name = "web"
zk_path = "/nerve/services/web/services"
backend = "web"
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("spoa.toml"), text)
    }

    /// Each case: `base` with `from` replaced by `to` is refused, the error naming `expected`.
    fn assert_refused(base: &str, cases: &[(&str, &str, &str)]) {
        for (from, to, expected) in cases {
            let text = base.replacen(from, to, 1);
            assert_ne!(text, base, "{from}");
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.starts_with("spoa.toml: ") && err.contains(expected), "expected {expected:?} in:\n{err}");
        }
    }

    #[test]
    fn minimal_config_gets_the_defaults() {
        let config = parse(MINIMAL).unwrap();
        let web = &config.services[0];
        assert_eq!(config.haproxy.socket, RuntimeAddress::Unix("/run/haproxy/axon.sock".into()));
        assert_eq!(web.slot_prefix, "web");
        assert_eq!(web.on_empty, OnEmpty::Keep);
        assert_eq!(web.drain, DEFAULT_DRAIN);
        assert_eq!(web.server_options, DEFAULT_SERVER_OPTIONS);
    }

    #[test]
    fn full_service() {
        let text = MINIMAL.replace(
            "backend = \"web\"",
            r#"backend = "be_web"
slot_prefix = "w"
label_filters = [{ label = "az", value = "a" }, { label = "canary", value = "true", condition = "not_equals" }]
default_servers = ["10.0.0.1:80", "[::1]:8080"]
keep_default_servers = true
on_empty = "empty"
drain = "0s""#,
        );
        let config = parse(&text).unwrap();
        let web = &config.services[0];
        assert_eq!(web.backend.as_deref(), Some("be_web"));
        assert_eq!(web.default_servers[1].to_string(), "[::1]:8080");
        assert_eq!(web.on_empty, OnEmpty::Empty);
        let labels = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert!(web.label_filters.iter().all(|f| f.matches(&labels(&[("az", "a")]))));
        assert!(!web.label_filters.iter().all(|f| f.matches(&labels(&[("az", "a"), ("canary", "true")]))));
    }

    #[test]
    fn bad_configurations_name_field_and_value() {
        let cases: &[(&str, &str, &str)] = &[
            ("socket = \"/run/haproxy/axon.sock\"", "socket = \"tcp:nowhere\"", "`haproxy.socket` = \"tcp:nowhere\""),
            ("backend = \"web\"", "backend = \"web site\"", "`service[0].backend` = \"web site\""),
            (
                "backend = \"web\"",
                "backend = \"web\"\non_empty = \"drop\"",
                "`service[0].on_empty` = \"drop\": expected \"keep\" or \"empty\"",
            ),
            (
                "backend = \"web\"",
                "backend = \"web\"\ndefault_servers = [\"db:80\"]",
                "`service[0].default_servers[0]` = \"db:80\"",
            ),
            ("backend = \"web\"", "backend = \"web\"\ndrain = \"forever\"", "`service[0].drain` = \"forever\""),
            (
                "backend = \"web\"",
                "backend = \"web\"\nserver_options = \"check; shutdown sessions\"",
                "`service[0].server_options`",
            ),
            (
                "backend = \"web\"",
                "backend = \"web\"\nlabel_filters = [{ label = \"a\", value = \"b\", condition = \"like\" }]",
                "`service[0].label_filters[0].condition` = \"like\"",
            ),
            ("zk_path = \"/nerve/services/web/services\"", "zk_path = \"nerve\"", "`service[0].zk_path` = \"nerve\""),
            ("[haproxy]", "[haproxy]\nresync_interval = \"1ms\"", "`haproxy.resync_interval` = \"1ms\""),
            ("[haproxy]", "[haproxy]\nhost_map = \"hosts.map\"", "`haproxy.host_map` = \"hosts.map\""),
            ("[haproxy]", "[discovery]\nwatches = \"polling\"\n[haproxy]", "`discovery.watches` = \"polling\""),
            ("[haproxy]", "[discovery]\nmax_reads_in_flight = 0\n[haproxy]", "`discovery.max_reads_in_flight` = 0"),
            (
                "[haproxy]",
                "[spoe]\nlisten = \"127.0.0.1:1\"\nhost_suffixes = [\".example\"]\n[haproxy]",
                "`spoe.host_suffixes` = [\".example\"]: expected it under [routing]",
            ),
            (
                "[haproxy]",
                "[[routing.route]]\nhost = \"shop.example.\"\nservice = \"web\"\n[haproxy]",
                "`routing.route[0].host` = \"shop.example.\"",
            ),
            ("[haproxy]", "[haproxy]\nhost_map = \"/a b.map\"", "`haproxy.host_map` = \"/a b.map\""),
            (
                "[haproxy]",
                "[routing]\nhost_suffixes = [\".ex;ample\"]\n[haproxy]",
                "`routing.host_suffixes[0]` = \".ex;ample\"",
            ),
            (
                "[haproxy]",
                "[[routing.route]]\nhost = \"a\\\\b\"\nservice = \"web\"\n[haproxy]",
                "`routing.route[0].host`",
            ),
        ];
        assert_refused(MINIMAL, cases);
    }

    #[test]
    fn slot_prefixes_that_could_match_the_same_server_are_refused() {
        let clashing = format!(
            "{MINIMAL}[[service]]\nname = \"web1\"\nzk_path = \"/x\"\nbackend = \"web\"\nslot_prefix = \"web1\"\n"
        );
        let err = parse(&clashing).unwrap_err().to_string();
        assert!(err.contains("`service[1].slot_prefix` = \"web1\"") && err.contains("clashes with \"web\""), "{err}");
        // Another letter, or another backend: fine.
        let fine = clashing.replace("slot_prefix = \"web1\"", "slot_prefix = \"webx\"");
        assert!(parse(&fine).is_ok());
        let elsewhere = clashing
            .replace("backend = \"web\"\nslot_prefix = \"web1\"", "backend = \"other\"\nslot_prefix = \"web1\"");
        assert!(parse(&elsewhere).is_ok());
    }

    #[test]
    fn listeners_beyond_loopback_are_warned_about() {
        let text = MINIMAL.replace("socket = \"/run/haproxy/axon.sock\"", "socket = \"tcp:10.0.0.1:9999\"")
            + "[spoe]\nlisten = \"0.0.0.0:9103\"\n";
        let warnings = parse(&text).unwrap().warnings();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("haproxy.socket") && warnings[1].contains("spoe.listen"));
        assert!(parse(MINIMAL).unwrap().warnings().is_empty());
    }

    #[test]
    fn a_declared_selector_is_checked_against_the_service_it_names() {
        let canary = |extra: &str| {
            format!(
                "{MINIMAL}[[service]]\nname = \"web-canary\"\nzk_path = \"/nerve/services/web/services\"\n\
                 backend = \"web-canary\"\nlabel_filters = [{{ label = \"canary\", value = \"true\" }}]\n\
                 selector_of = \"web\"\n{extra}"
            )
        };
        let config = parse(&canary("")).unwrap();
        let declared = config.services[1].selector_of.as_ref().unwrap();
        assert_eq!((declared.of.as_str(), declared.selector.as_str()), ("web", "canary=true"));
        let cases: &[(&str, &str, &str)] = &[
            ("selector_of = \"web\"", "selector_of = \"shop\"", "`service[1].selector_of` = \"shop\""),
            ("selector_of = \"web\"", "selector_of = \"web-canary\"", "`service[1].selector_of` = \"web-canary\""),
            (
                "zk_path = \"/nerve/services/web/services\"\nbackend = \"web-canary\"",
                "zk_path = \"/other\"\nbackend = \"web-canary\"",
                "`service[1].zk_path` = \"/other\": expected \"web\"'s zk_path",
            ),
            ("backend = \"web-canary\"\n", "", "`service[1].backend` = none"),
            ("label_filters = [{ label = \"canary\", value = \"true\" }]", "", "`service[1].label_filters` = []"),
            (
                "value = \"true\" }",
                "value = \"true\", condition = \"not_equals\" }",
                "`service[1].label_filters[0].condition` = \"not_equals\"",
            ),
            ("value = \"true\"", "value = \"t rue\"", "`service[1].label_filters[0].value` = \"t rue\""),
            ("label = \"canary\"", "label = \"can,ary\"", "`service[1].label_filters[0].label` = \"can,ary\""),
            (
                "value = \"true\" }]",
                "value = \"true\" }, { label = \"canary\", value = \"yes\" }]",
                "`service[1].label_filters[1].label` = \"canary\"",
            ),
            // Its instances are the named service's: no sources of its own.
            ("selector_of = \"web\"", "selector_of = \"web\"\non_empty = \"empty\"", "`service[1].on_empty` = set"),
            (
                "selector_of = \"web\"",
                "selector_of = \"web\"\ndefault_servers = [\"10.0.0.1:80\"]",
                "`service[1].default_servers` = set",
            ),
            (
                "selector_of = \"web\"",
                "selector_of = \"web\"\nkeep_default_servers = false",
                "`service[1].keep_default_servers` = set",
            ),
            // The named service filtering on the selector's label: it would match nothing.
            (
                "backend = \"web\"\n",
                "backend = \"web\"\nlabel_filters = [{ label = \"canary\", value = \"true\", condition = \"not_equals\" }]\n",
                "`service[1].label_filters` = \"canary=true\": expected labels \"web\" does not filter on itself (it has canary!=true)",
            ),
            // A backend of its own.
            (
                "backend = \"web-canary\"",
                "backend = \"web\"",
                "`service[1].backend` = \"web\": expected a backend no other",
            ),
            // Reached through its selector only: no route names it.
            (
                "[haproxy]",
                "[[routing.route]]\nhost = \"c.example\"\nservice = \"web-canary\"\n[haproxy]",
                "`routing.route[0].service` = \"web-canary\"",
            ),
        ];
        assert_refused(&canary(""), cases);
        // The named service's filters on other labels are its own: the selector is the
        // declaring service's filters.
        let filtered = canary("").replacen(
            "backend = \"web\"\n",
            "backend = \"web\"\nlabel_filters = [{ label = \"az\", value = \"a\", condition = \"not_equals\" }]\n",
            1,
        );
        assert_eq!(parse(&filtered).unwrap().services[1].selector_of.as_ref().unwrap().selector, "canary=true");
        let sorted = canary("").replace(
            "[{ label = \"canary\", value = \"true\" }]",
            "[{ label = \"zone\", value = \"a\" }, { label = \"canary\", value = \"true\" }]",
        );
        assert_eq!(parse(&sorted).unwrap().services[1].selector_of.as_ref().unwrap().selector, "canary=true,zone=a");
        let twice = canary(
            "[[service]]\nname = \"web-canary2\"\nzk_path = \"/nerve/services/web/services\"\n\
             backend = \"web-canary2\"\nlabel_filters = [{ label = \"canary\", value = \"true\" }]\n\
             selector_of = \"web\"\n",
        );
        let err = parse(&twice).unwrap_err().to_string();
        assert!(err.contains("`service[2].label_filters` = \"canary=true\": expected a selector no other"), "{err}");
    }

    #[test]
    fn two_services_cannot_share_slots() {
        let twice = format!(
            "{MINIMAL}[[service]]\nname = \"web2\"\nzk_path = \"/x\"\nbackend = \"web\"\nslot_prefix = \"web\"\n"
        );
        let err = parse(&twice).unwrap_err().to_string();
        assert!(err.contains("`service[1].slot_prefix` = \"web\""), "{err}");
        let renamed = format!("{MINIMAL}[[service]]\nname = \"web\"\nzk_path = \"/x\"\n");
        let err = parse(&renamed).unwrap_err().to_string();
        assert!(err.contains("`service[1].name` = \"web\""), "{err}");
        // Hosts are matched lowercased: `WEB` would be `web.example` too.
        let shouted = format!("{MINIMAL}[[service]]\nname = \"WEB\"\nzk_path = \"/x\"\n");
        let err = parse(&shouted).unwrap_err().to_string();
        assert!(
            err.contains("`service[1].name` = \"WEB\"") && err.contains("ignoring case (service[0] has it)"),
            "{err}"
        );
    }
}
