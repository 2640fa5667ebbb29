//! `axon-spoa import-synapse`: Synapse's JSON configuration in; axon-spoa's configuration and
//! the HAProxy sections of its services out, and a warning for everything that does not carry
//! over. No I/O: the command line reads the files (the main one, and those of its
//! `service_conf_dir`).
//!
//! The rules (docs/migration.md has the table of every field):
//! 1. Every field is converted or reported, unknown fields too; nothing is dropped silently.
//!    A warning names the file, the field and why.
//! 2. Services with ZooKeeper discovery (`zookeeper`, and `zookeeper_poll` and `zookeeper_dns`,
//!    which read the same znodes) are converted; others (ec2tag, dns, docker, marathon, multi,
//!    base) and leader elections are left out, with the reason.
//! 3. Axon keeps one ZooKeeper session: the first converted service's `hosts` give `[zookeeper]
//!    connect`, and each service with other hosts is named in a warning.
//! 4. Each service with a backend gets the sections Axon's backends are made of (as
//!    haproxy/axon.cfg's example): `backend <name> from axon-http` with a `server-template`
//!    of ten slots sized by `AXON_SLOTS_<BACKEND>_<PREFIX>`, Synapse's `server_options` on it,
//!    and a frontend `<name>-in` on Synapse's port (HAProxy 3.3 refuses a frontend and a backend
//!    of one name). `listen` lines are split between them as Synapse split them, and lines
//!    Synapse discarded are reported. The mode Synapse's sections had (its `defaults`, else
//!    HAProxy's tcp) is written into each section, since `axon-http` is an http defaults.
//! 5. Lines that would break slots are left out or completed, with the reason: `balance
//!    static-rr` (`add server` refuses it), hashing without `hash-type consistent`, a
//!    `use-server` naming Synapse's servers, a `weight` or `id` on every server.
//! 6. `add server` does not inherit `default-server`: a service's `server_options` is the
//!    snippet's default-server options, overridden by the backend's `default-server` lines and
//!    Synapse's `server_options`, so servers added past the template match the slots.
//! 7. The output is validated by axon-spoa's own parser before it is returned: what [`import`]
//!    returns, `--check` accepts.
//!
//! The mechanics of rules 1 and 3 (JSON read so that every field is accounted for, the
//! services' order and `service_conf_dir`, the one ensemble) are [`axon_core::import`]'s,
//! shared with axon-registrar's `import-nerve`; what is Synapse's is here.

mod keywords;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::Path;

pub use axon_core::import::{ImportError, ServiceDir, ServiceFile, Warning, service_conf_dir};
use axon_core::import::{
    Json, Obj, Report, Source, Tool, ZkHosts, at_or_document, clean_name, duration, field, integer, one_ensemble,
    port_of, shown_or_nothing, string, suffixed, take_zk_path, unique_where,
};

use crate::config::{Config, DEFAULT_SERVER_OPTIONS};
use crate::sync::slots;

/// How many slots a converted backend's template declares, as the shipped snippet's does.
pub const TEMPLATE_SLOTS: u32 = 10;
/// What haproxy/axon.cfg declares, for the `[haproxy]` table and the backends' comments.
const SNIPPET_SOCKET: &str = "/run/haproxy/axon.sock";
const SNIPPET_STATE_FILE: &str = "/var/lib/axon/haproxy-server-state";
const SNIPPET_HOST_MAP: &str = "/var/lib/axon/haproxy-hosts.map";
const SNIPPET_SLOTS_FILE: &str = "/var/lib/axon/haproxy-slots.cfg";
/// Where a converted configuration keeps axon-spoa's cache (as spoa/example.toml).
const CACHE_FILE: &str = "/var/lib/axon/spoa-cache.json";
/// Proxy names haproxy/axon.cfg declares (defaults sections included: HAProxy 3.3 refuses a
/// proxy named like one).
const SNIPPET_NAMES: &[&str] = &["axon", "axon-dynamic", "axon-agents", "axon-http", "axon-spop"];
/// The longest name axon-spoa (and HAProxy, for a proxy) accepts, in characters.
const NAME_LIMIT: usize = 64;
/// The frontend Synapse builds from `shared_frontend` lines.
const SHARED_FRONTEND: &str = "shared-frontend";
/// `balance` algorithms that hash; without `hash-type consistent` they are map-based, which
/// `add server` refuses.
const HASHING: &[&str] = &["source", "uri", "url_param", "hdr", "rdp-cookie", "hash"];

/// The converted configuration.
#[derive(Debug, Clone)]
pub struct Imported {
    /// axon-spoa's configuration (TOML).
    pub toml: String,
    /// The HAProxy sections of the services with a backend, to load after haproxy/axon.cfg.
    pub haproxy: String,
    /// How many backends `haproxy` declares.
    pub backends: usize,
    pub warnings: Vec<Warning>,
}

/// Converts Synapse's configuration `text`, read from `file` (named in messages), with the
/// services of its `service_conf_dir` as `dir` found them.
pub fn import(file: &str, text: &str, dir: &ServiceDir) -> Result<Imported, ImportError> {
    let mut out = Report::default();
    let mut top = axon_core::import::open(Tool::Synapse, file, text, &mut out)?;

    let sources = axon_core::import::services(Tool::Synapse, &mut top, dir, &mut out)?;
    let global = match top.take("haproxy") {
        Some(Json::Object(entries)) => Some(Global::convert(Obj::new(file, "haproxy", entries, &mut out), &mut out)),
        Some(other) => {
            out.warn(file, "haproxy", format!("expected an object, found {}: not converted", other.kind()));
            None
        }
        None => None,
    };
    if global.is_none() {
        out.warn(
            file,
            "haproxy",
            format!(
                "missing: Synapse configured no HAProxy, so the services get no backend; axon-spoa needs HAProxy's \
                 runtime API: the socket haproxy/axon.cfg declares ({SNIPPET_SOCKET}) is written"
            ),
        );
    }
    for (key, _) in top.rest() {
        let message = match key.as_str() {
            "statsd" => "no equivalent: axon-spoa serves Prometheus metrics at `[status] listen` (GET /metrics)",
            "file_output" => {
                "no equivalent: axon-spoa writes no file per service; its discovered state is in its status \
                 (`[status] listen`, GET /status) and its `cache_file`"
            }
            _ => "unknown: Synapse would load it as a config generator; axon-spoa drives HAProxy only: not converted",
        };
        out.warn(file, &key, message);
    }
    let global = global.unwrap_or_default();

    let mut names = Names::default();
    let mut services = Vec::new();
    for Source { file, at, name, value } in sources {
        if let Some(service) = convert_service(&file, &at, &name, value, &global, &mut names, &mut out) {
            services.push(service);
        }
    }
    let (first, others) = one_ensemble(file, &services, |s| &s.zk_hosts)?;
    for service in others {
        out.warn(
            &service.file,
            &service.hosts_at,
            format!(
                "{} is not the ensemble of service {:?} ({}), the first one: axon-spoa keeps one ZooKeeper session, \
                 so this service is read from there: its instances must be registered in that ensemble",
                service.zk_hosts.connect(),
                first.name,
                first.zk_hosts.connect()
            ),
        );
    }

    let shared = shared_frontend(&global, &services);
    let toml = render_toml(file, &global, &first.zk_hosts, &services);
    let haproxy = render_haproxy(file, &services, shared.as_ref());
    Config::parse(Path::new("import-synapse output"), &toml)
        .map_err(|source| ImportError::Invalid { file: file.to_owned(), source })?;
    let backends = services.iter().filter(|s| s.backend.is_some()).count();
    Ok(Imported { toml, haproxy, backends, warnings: out.into_warnings() })
}

/// Synapse's top-level `haproxy` section, as far as it concerns axon-spoa.
#[derive(Debug, Clone)]
struct Global {
    /// Whether Synapse configured HAProxy at all (without it, no service has a backend).
    configured: bool,
    socket: String,
    /// The mode of Synapse's sections without a `mode` line: its `defaults`, else HAProxy's.
    mode: String,
    /// Its `defaults`' `log` lines, which every converted section gets.
    log: Vec<String>,
    bind_address: Option<String>,
    shared_frontend: Option<Vec<String>>,
    cache: bool,
    cache_max_age_s: Option<u64>,
}

impl Default for Global {
    fn default() -> Global {
        Global {
            configured: false,
            socket: SNIPPET_SOCKET.to_owned(),
            mode: "tcp".to_owned(),
            log: Vec::new(),
            bind_address: None,
            shared_frontend: None,
            cache: false,
            cache_max_age_s: None,
        }
    }
}

impl Global {
    fn convert(mut obj: Obj, out: &mut Report) -> Global {
        let mut global = Global { configured: true, ..Global::default() };
        let file = obj.file().to_owned();
        match obj.take("socket_file_path") {
            Some(Json::String(path)) if !path.trim().is_empty() => global.socket = path,
            Some(Json::Array(paths)) => {
                let mut paths = paths.into_iter().filter_map(|p| match p {
                    Json::String(p) if !p.trim().is_empty() => Some(p),
                    _ => None,
                });
                if let Some(first) = paths.next() {
                    if paths.next().is_some() {
                        out.warn(
                            &file,
                            &obj.field("socket_file_path"),
                            format!(
                                "several sockets (one per nbproc process): axon-spoa drives one HAProxy process, \
                                 through {first:?}"
                            ),
                        );
                    }
                    global.socket = first;
                } else {
                    out.warn(
                        &file,
                        &obj.field("socket_file_path"),
                        format!("no usable path: the socket haproxy/axon.cfg declares ({SNIPPET_SOCKET}) is written"),
                    );
                }
            }
            None => out.warn(
                &file,
                &obj.field("socket_file_path"),
                format!(
                    "missing: axon-spoa needs HAProxy's runtime API: the socket haproxy/axon.cfg declares \
                     ({SNIPPET_SOCKET}) is written"
                ),
            ),
            Some(other) => out.warn(
                &file,
                &obj.field("socket_file_path"),
                format!(
                    "expected a path, found {}: the socket haproxy/axon.cfg declares ({SNIPPET_SOCKET}) is written",
                    other.shown()
                ),
            ),
        }
        if let Some(Json::Array(lines)) = obj.peek("defaults") {
            for line in lines {
                let Json::String(line) = line else { continue };
                let line = words(line);
                if let Some(mode) = line.strip_prefix("mode ") {
                    global.mode = mode.to_owned();
                } else if is_log(&line) {
                    global.log.push(line);
                }
            }
        }
        match obj.take("bind_address") {
            None => {}
            Some(Json::String(address)) if one_word(&address) => global.bind_address = Some(address.trim().to_owned()),
            Some(other) => out.warn(
                &file,
                &obj.field("bind_address"),
                format!("expected an address, found {}: localhost used", other.shown()),
            ),
        }
        if let Some(value) = obj.take("shared_frontend") {
            let at = obj.field("shared_frontend");
            let lines = lines_of(value, &file, &at, out);
            global.shared_frontend = Some(valid_frontend_lines(lines, &file, &at, out));
        }
        let state_file = obj.take("state_file_path");
        if let Some(state_file) = &state_file {
            global.cache = true;
            out.warn(
                &file,
                &obj.field("state_file_path"),
                format!(
                    "{}: axon-spoa keeps its own cache of what it discovered, in another format: cache_file = \
                     {CACHE_FILE:?} is written (Synapse's file is not read)",
                    state_file.shown()
                ),
            );
        }
        if let Some(ttl) = obj.take("state_file_ttl") {
            match integer(&ttl).filter(|s| (0..=30 * 86_400).contains(s)) {
                Some(s) if state_file.is_some() => global.cache_max_age_s = u64::try_from(s).ok(),
                Some(_) => out.warn(
                    &file,
                    &obj.field("state_file_ttl"),
                    "without state_file_path Synapse keeps no state file: not converted",
                ),
                None => out.warn(
                    &file,
                    &obj.field("state_file_ttl"),
                    format!("expected seconds up to 30 days, found {}: axon-spoa's default (1h) applies", ttl.shown()),
                ),
            }
        }
        for (key, value) in obj.rest() {
            let message = match key.as_str() {
                "do_socket" if value == Json::Bool(false) => {
                    "false: axon-spoa works through the runtime API only: the socket is used".to_owned()
                }
                "do_socket" => continue,
                "do_writes" | "config_file_path" => {
                    "no equivalent: axon-spoa never writes haproxy.cfg: the converted sections are loaded beside it"
                        .to_owned()
                }
                "do_reloads" | "reload_command" | "restart_interval" | "restart_jitter" => {
                    "no equivalent: axon-spoa never reloads HAProxy: servers change through the runtime API".to_owned()
                }
                "do_checks" | "check_command" | "candidate_config_file_path" => {
                    "no equivalent: axon-spoa writes no configuration to check (check yours with `haproxy -c`)"
                        .to_owned()
                }
                "server_order_seed" | "max_server_id" => {
                    "no equivalent: servers are slots <prefix>1…<prefix>N, filled in order; HAProxy numbers them"
                        .to_owned()
                }
                "use_nerve_weights" if value == Json::Bool(true) => continue,
                "use_nerve_weights" => format!(
                    "{}: axon-spoa always sets each server's weight from its record (1 when it has none)",
                    value.shown()
                ),
                "global" => "Synapse wrote these lines into haproxy.cfg; axon-spoa writes no global section: keep \
                             them in your haproxy.cfg (haproxy/axon.cfg adds its runtime socket and state file)"
                    .to_owned(),
                "defaults" => {
                    let rest: Vec<String> = match &value {
                        Json::Array(lines) => lines
                            .iter()
                            .filter_map(|l| if let Json::String(l) = l { Some(words(l)) } else { None })
                            .filter(|l| !l.starts_with("mode ") && !is_log(l))
                            .collect(),
                        _ => Vec::new(),
                    };
                    let mut kept: Vec<String> = global.log.iter().map(|l| format!("`{l}`")).collect();
                    if global.mode != "http" {
                        kept.insert(0, format!("`mode {}`", global.mode));
                    }
                    let kept = if kept.is_empty() {
                        String::new()
                    } else {
                        format!(", with {} written into each", kept.join(" and "))
                    };
                    format!(
                        "the converted sections use haproxy/axon.cfg's `defaults axon-http` instead{kept}; these \
                         lines no longer apply to them: {}",
                        if rest.is_empty() { "none".to_owned() } else { rest.join("; ") }
                    )
                }
                "extra_sections" => {
                    let titles: Vec<String> = match &value {
                        Json::Object(entries) => entries.iter().map(|(k, _)| format!("`{k}`")).collect(),
                        _ => Vec::new(),
                    };
                    format!(
                        "axon-spoa writes no section of its own: keep {} in your haproxy.cfg",
                        if titles.is_empty() { "them".to_owned() } else { titles.join(", ") }
                    )
                }
                _ => "unknown field: not converted".to_owned(),
            };
            out.warn(&file, &obj.field(&key), message);
        }
        global
    }
}

/// One service, converted.
#[derive(Debug, Clone)]
struct Service {
    /// Where it came from, for messages.
    file: String,
    hosts_at: String,
    name: String,
    zk_path: String,
    zk_hosts: ZkHosts,
    label_filters: Vec<(String, String, bool)>,
    default_servers: Vec<String>,
    keep_default_servers: bool,
    on_empty_empty: bool,
    /// `None`: discovered only (no HAProxy section).
    backend: Option<Backend>,
    /// Synapse's `shared_frontend` lines of this service.
    shared_frontend: Vec<String>,
}

/// A service's HAProxy sections.
#[derive(Debug, Clone)]
struct Backend {
    name: String,
    /// The backend's lines, before the template.
    lines: Vec<String>,
    /// Options on the template (Synapse's `server_options`).
    template_options: String,
    /// What `add server` gets, when it differs from axon-spoa's default.
    server_options: Option<String>,
    frontend: Option<Frontend>,
}

#[derive(Debug, Clone)]
struct Frontend {
    name: String,
    lines: Vec<String>,
    bind: String,
}

/// Proxy and service names in use.
#[derive(Debug, Default)]
struct Names {
    /// Lowercased.
    services: BTreeSet<String>,
    proxies: BTreeSet<String>,
}

impl Names {
    /// Whether a proxy of this name exists: converted here, in haproxy/axon.cfg, or the shared
    /// frontend.
    fn proxy_taken(&self, name: &str) -> bool {
        self.proxies.contains(name) || SNIPPET_NAMES.contains(&name) || name == SHARED_FRONTEND
    }
}

fn convert_service(
    file: &str,
    at: &str,
    name: &str,
    value: Json,
    global: &Global,
    names: &mut Names,
    out: &mut Report,
) -> Option<Service> {
    let Json::Object(entries) = value else {
        out.warn(file, at_or_document(at), format!("expected an object, found {}: service left out", value.kind()));
        return None;
    };
    let mut obj = Obj::new(file, at, entries, out);
    if obj.take("discovery_multi").is_some() {
        out.warn(
            file,
            &obj.field("discovery_multi"),
            "several watchers merged by a resolver: axon-spoa reads one ZooKeeper path per service: service left out",
        );
        return None;
    }
    if let Some(leader) = obj.take("leader_election")
        && leader != Json::Bool(false)
    {
        out.warn(
            file,
            &obj.field("leader_election"),
            "axon-spoa has no leader election (Synapse sent traffic to the instance with the lowest sequence \
             number only): service left out, so that traffic does not spread over every instance",
        );
        return None;
    }
    let discovery_at = obj.field("discovery");
    let discovery = match obj.take("discovery") {
        Some(Json::Object(entries)) => Obj::new(file, &discovery_at, entries, out),
        other => {
            let found = other.map_or("nothing".to_owned(), |v| v.kind().to_owned());
            out.warn(file, &discovery_at, format!("expected an object with `method`, found {found}: service left out"));
            return None;
        }
    };
    let (zk_path, zk_hosts, label_filters) = discovery_of(discovery, out)?;
    let hosts_at = field(&discovery_at, "hosts");

    let service_name = clean_name(name, NAME_LIMIT);
    // axon-spoa matches hosts lowercased, so two names may not differ only in case.
    let service_name = unique_where(&service_name, NAME_LIMIT, |n| names.services.contains(&n.to_ascii_lowercase()));
    if service_name != name {
        out.warn(
            file,
            at_or_document(at),
            format!("the name {name:?} is not one axon-spoa accepts, or is taken: named {service_name:?}"),
        );
    }
    names.services.insert(service_name.to_ascii_lowercase());

    let default_servers = match obj.take("default_servers") {
        None => Vec::new(),
        Some(value) => default_servers(value, file, &obj.field("default_servers"), out),
    };
    let keep_default_servers = flag(&mut obj, "keep_default_servers", false, out);
    let on_empty_empty = !flag(&mut obj, "use_previous_backends", true, out);
    for key in ["backend_port_override", "load_test_concurrency"] {
        if let Some(value) = obj.take(key) {
            let why = if key == "backend_port_override" {
                format!(
                    "{}: axon-spoa connects to the port each record gives: register the port clients should reach \
                     (the registrar's `port`)",
                    value.shown()
                )
            } else {
                "no equivalent: axon-spoa follows each service once".to_owned()
            };
            out.warn(file, &obj.field(key), why);
        }
    }
    let (backend, shared) = match obj.take("haproxy") {
        Some(_) if !global.configured => {
            out.warn(
                file,
                &obj.field("haproxy"),
                "the top-level haproxy section is missing, so Synapse configured no HAProxy: no backend",
            );
            (None, Vec::new())
        }
        None if !global.configured => (None, Vec::new()),
        Some(Json::Object(entries)) => {
            let section = Obj::new(file, &obj.field("haproxy"), entries, out);
            haproxy_of(section, &service_name, global, names, out)
        }
        // Synapse gives every service a backend of its own name by default.
        None => haproxy_of(Obj::new(file, &obj.field("haproxy"), Vec::new(), out), &service_name, global, names, out),
        Some(other) => {
            out.warn(file, &obj.field("haproxy"), format!("expected an object, found {}: no backend", other.kind()));
            (None, Vec::new())
        }
    };
    for (key, _) in obj.rest() {
        let message = match key.as_str() {
            "nginx" | "file_output" | "envoy" => "another config generator's section: axon-spoa drives HAProxy only",
            _ => "unknown field: not converted",
        };
        out.warn(file, &obj.field(&key), message);
    }
    Some(Service {
        file: file.to_owned(),
        hosts_at,
        name: service_name,
        zk_path,
        zk_hosts,
        label_filters,
        default_servers,
        keep_default_servers,
        on_empty_empty,
        backend,
        shared_frontend: shared,
    })
}

type Discovered = (String, ZkHosts, Vec<(String, String, bool)>);

/// A ZooKeeper `discovery`: path, hosts and label filters; `None` (with the reason) otherwise.
fn discovery_of(mut d: Obj, out: &mut Report) -> Option<Discovered> {
    let file = d.file().to_owned();
    let method = match d.take("method") {
        Some(Json::String(method)) => method.to_ascii_lowercase(),
        other => {
            let found = shown_or_nothing(other.as_ref());
            out.warn(
                &file,
                &d.field("method"),
                format!("expected a discovery method, found {found}: service left out"),
            );
            return None;
        }
    };
    match method.as_str() {
        "zookeeper" => {}
        "zookeeper_poll" => {
            let every = d.take("polling_interval_sec").map_or("60".to_owned(), |v| v.shown());
            out.warn(
                &file,
                &d.field("method"),
                format!(
                    "\"zookeeper_poll\" (reading the path every {every} s): axon-spoa watches the path instead, so a \
                     change arrives at once"
                ),
            );
        }
        "zookeeper_dns" => {
            d.take("check_interval");
            out.warn(
                &file,
                &d.field("method"),
                "\"zookeeper_dns\": converted as \"zookeeper\": axon-spoa resolves the host names records hold by \
                 itself (each answer kept 60 s), so its HAProxy needs no DNS",
            );
        }
        "base" => {
            out.warn(
                &file,
                &d.field("method"),
                "\"base\" discovers nothing (only default_servers): axon-spoa follows ZooKeeper paths; keep such a \
                 backend with static `server` lines in your haproxy.cfg: service left out",
            );
            return None;
        }
        other => {
            out.warn(
                &file,
                &d.field("method"),
                format!("{other:?}: axon-spoa discovers services in ZooKeeper only: service left out"),
            );
            return None;
        }
    }
    let path = take_zk_path(&mut d, "path", "an absolute ZooKeeper path below the root", out)?;
    let hosts = ZkHosts::take(Tool::Synapse, &mut d, "hosts", out)?;
    let mut filters = Vec::new();
    for key in ["label_filter", "label_filters"] {
        let Some(value) = d.take(key) else { continue };
        let at = d.field(key);
        let items = match value {
            Json::Array(items) => items.into_iter().enumerate().map(|(i, v)| (format!("{at}[{i}]"), v)).collect(),
            Json::Object(_) => vec![(at.clone(), value)],
            Json::Null => Vec::new(),
            other => {
                out.warn(&file, &at, format!("expected a list of filters, found {}: not converted", other.kind()));
                Vec::new()
            }
        };
        for (here, item) in items {
            if let Some(filter) = label_filter(item, &file, &here, out) {
                filters.push(filter);
            }
        }
    }
    match d.take("decode") {
        None => {}
        Some(Json::Object(entries)) => {
            let mut decode = Obj::new(&file, &d.field("decode"), entries, out);
            match decode.take("method") {
                Some(Json::String(m)) if m == "nerve" => {}
                Some(other) => {
                    out.warn(
                        &file,
                        &decode.field("method"),
                        format!("{}: axon-spoa reads Nerve's records only: service left out", other.shown()),
                    );
                    return None;
                }
                None => {}
            }
            for (key, _) in decode.rest() {
                out.warn(
                    &file,
                    &decode.field(&key),
                    "not used with Nerve's records (by Synapse either): not converted",
                );
            }
        }
        Some(other) => {
            out.warn(&file, &d.field("decode"), format!("expected an object, found {}: not converted", other.kind()))
        }
    }
    for (key, value) in d.rest() {
        let message = match key.as_str() {
            "retry_policy" => {
                "no equivalent: axon-spoa retries every read until it succeeds, with backoff, and never gives up"
                    .to_owned()
            }
            "discovery_jitter" => {
                "no equivalent: axon-spoa reads a change at once (it spreads only its re-reads after a \
                 reconnection, over `[discovery] reread_jitter`)"
                    .to_owned()
            }
            "generator_config_path" if value == Json::String("disabled".to_owned()) => continue,
            "generator_config_path" => format!(
                "{}: axon-spoa reads no HAProxy settings from ZooKeeper: put them in the converted backend",
                value.shown()
            ),
            _ => "unknown field: not converted".to_owned(),
        };
        out.warn(&file, &d.field(&key), message);
    }
    Some((path, hosts, filters))
}

fn label_filter(value: Json, file: &str, at: &str, out: &mut Report) -> Option<(String, String, bool)> {
    let Json::Object(entries) = value else {
        out.warn(file, at, format!("expected a filter object, found {}: not converted", value.kind()));
        return None;
    };
    let mut f = Obj::new(file, at, entries, out);
    let label = match f.take("label") {
        Some(Json::String(label)) if !label.is_empty() => label,
        other => {
            let found = shown_or_nothing(other.as_ref());
            out.warn(file, &f.field("label"), format!("expected a label name, found {found}: filter left out"));
            return None;
        }
    };
    let value = match f.take("value") {
        Some(Json::String(value)) => value,
        Some(value @ (Json::Number(_) | Json::Bool(_))) => {
            let text = value.shown();
            out.warn(
                file,
                &f.field("value"),
                format!("{text} is compared as the string {text:?}: axon-spoa reads labels as strings"),
            );
            text
        }
        other => {
            let found = shown_or_nothing(other.as_ref());
            out.warn(file, &f.field("value"), format!("expected a string, found {found}: filter left out"));
            return None;
        }
    };
    let equals = match f.take("condition") {
        Some(Json::String(c)) if c == "equals" => true,
        Some(Json::String(c)) if c == "not-equals" => false,
        other => {
            let found = shown_or_nothing(other.as_ref());
            out.warn(
                file,
                &f.field("condition"),
                format!(
                    "expected \"equals\" or \"not-equals\", found {found} (with which Synapse matched no instance at \
                     all): written as \"equals\""
                ),
            );
            true
        }
    };
    for (key, _) in f.rest() {
        out.warn(file, &f.field(&key), "unknown field: not converted");
    }
    Some((label, value, equals))
}

fn default_servers(value: Json, file: &str, at: &str, out: &mut Report) -> Vec<String> {
    let Json::Array(items) = value else {
        out.warn(file, at, format!("expected a list of servers, found {}: not converted", value.kind()));
        return Vec::new();
    };
    let mut servers = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let here = format!("{at}[{i}]");
        let Json::Object(entries) = item else {
            out.warn(file, &here, format!("expected {{name, host, port}}, found {}: left out", item.kind()));
            continue;
        };
        let mut s = Obj::new(file, &here, entries, out);
        // A server's `name`: slots are named <prefix><n>.
        s.take("name");
        let host = s.take("host");
        let port = s.take("port").as_ref().and_then(port_of);
        for (key, _) in s.rest() {
            out.warn(file, &s.field(&key), "unknown field: not converted");
        }
        let Some(port) = port else {
            out.warn(file, &s.field("port"), "expected a port from 1 to 65535: server left out");
            continue;
        };
        let ip = match &host {
            Some(Json::String(h)) if h == "localhost" => {
                out.warn(
                    file,
                    &s.field("host"),
                    "\"localhost\": axon-spoa's default servers are IP addresses: 127.0.0.1 written",
                );
                IpAddr::from([127, 0, 0, 1])
            }
            Some(Json::String(h)) => {
                match h.trim().trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
                    Ok(ip) => ip,
                    Err(_) => {
                        out.warn(
                        file,
                        &s.field("host"),
                        format!("{h:?}: axon-spoa's default servers are IP addresses: write its address; server left out"),
                    );
                        continue;
                    }
                }
            }
            other => {
                let found = shown_or_nothing(other.as_ref());
                out.warn(file, &s.field("host"), format!("expected an IP address, found {found}: server left out"));
                continue;
            }
        };
        servers.push(std::net::SocketAddr::new(ip, port).to_string());
    }
    servers
}

/// A service's `haproxy` section: its backend (and frontend), and its shared-frontend lines.
fn haproxy_of(
    mut h: Obj,
    service: &str,
    global: &Global,
    names: &mut Names,
    out: &mut Report,
) -> (Option<Backend>, Vec<String>) {
    let file = h.file().to_owned();
    if let Some(disabled) = h.take("disabled")
        && disabled != Json::Bool(false)
    {
        let rest: Vec<String> = h.rest().into_iter().map(|(k, _)| format!("`{k}`")).collect();
        if !rest.is_empty() {
            out.warn(
                &file,
                &h.field("disabled"),
                format!("HAProxy is not configured for this service: {} not converted", rest.join(", ")),
            );
        }
        return (None, Vec::new());
    }
    let backend_name = match h.take("backend_name") {
        None => service.to_owned(),
        Some(Json::String(name)) => name,
        Some(other) => {
            out.warn(
                &file,
                &h.field("backend_name"),
                format!("expected a name, found {}: the service's name used", other.shown()),
            );
            service.to_owned()
        }
    };
    let clean = clean_name(&backend_name, NAME_LIMIT);
    let backend_name = if names.proxy_taken(&clean) {
        let renamed = (2..)
            .map(|n| suffixed(&clean, &format!("-{n}"), NAME_LIMIT))
            .find(|n| !names.proxy_taken(n))
            .unwrap_or(clean.clone());
        out.warn(
            &file,
            &h.field("backend_name"),
            format!("{backend_name:?} is another proxy's name (here or in haproxy/axon.cfg): named {renamed:?}"),
        );
        renamed
    } else {
        if clean != backend_name {
            out.warn(
                &file,
                &h.field("backend_name"),
                format!("{backend_name:?} is not a name axon-spoa accepts: named {clean:?}"),
            );
        }
        clean
    };
    names.proxies.insert(backend_name.clone());

    let lines = |key: &str, h: &mut Obj, out: &mut Report| match h.take(key) {
        None => Vec::new(),
        Some(value) => lines_of(value, &file, &h.field(key), out)
            .into_iter()
            .enumerate()
            .map(|(i, line)| (format!("{}[{i}]", h.field(key)), line))
            .collect::<Vec<_>>(),
    };
    let frontend_given = lines("frontend", &mut h, out);
    let backend_given = lines("backend", &mut h, out);
    let listen = lines("listen", &mut h, out);
    let mut backend_lines = Vec::new();
    for (at, line) in backend_given {
        if !starts_with_any(&line, keywords::BACKEND) {
            out.warn(&file, &at, format!("{line:?} is not a backend keyword Synapse knew: it discarded it too"));
        } else if accepted(&line, &file, &at, out) {
            if logs_only_in_frontends(&line) {
                out.warn(&file, &at, format!("{line:?}: HAProxy ignores it in a backend (and warns): left out"));
            } else {
                backend_lines.push((at, line));
            }
        }
    }
    let mut frontend_lines = Vec::new();
    for (at, line) in frontend_given {
        if !starts_with_any(&line, keywords::FRONTEND) {
            out.warn(&file, &at, format!("{line:?} is not a frontend keyword Synapse knew: it discarded it too"));
        } else if accepted(&line, &file, &at, out) {
            frontend_lines.push(line);
        }
    }
    for (at, line) in listen {
        let (to_frontend, to_backend) =
            (starts_with_any(&line, keywords::FRONTEND), starts_with_any(&line, keywords::BACKEND));
        if !to_frontend && !to_backend {
            out.warn(
                &file,
                &at,
                format!("{line:?} is neither a frontend nor a backend keyword: Synapse dropped it too"),
            );
            continue;
        }
        if !accepted(&line, &file, &at, out) {
            continue;
        }
        if to_frontend {
            frontend_lines.push(line.clone());
        }
        // (Synapse also put a log format into the backend, where HAProxy ignores it.)
        if to_backend && !logs_only_in_frontends(&line) {
            backend_lines.push((at.clone(), line.clone()));
        }
    }

    let (lines, default_server) = backend_lines_for_slots(backend_lines, global, &file, out);
    let mut server_options = String::new();
    match h.take("server_options") {
        None => {}
        Some(Json::String(options)) => {
            server_options = template_options(&options, &file, &h.field("server_options"), out)
        }
        Some(other) => out.warn(
            &file,
            &h.field("server_options"),
            format!("expected a string, found {}: not converted", other.shown()),
        ),
    }
    let overrides = [default_server.as_str(), server_options.as_str()]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    let add_server_options = (!overrides.is_empty()).then(|| merge_server_options(DEFAULT_SERVER_OPTIONS, &overrides));

    let port = h.take("port");
    let bind_address = match h.take("bind_address") {
        None => None,
        Some(Json::String(a)) if one_word(&a) => Some(a.trim().to_owned()),
        Some(other) => {
            out.warn(
                &file,
                &h.field("bind_address"),
                format!("expected an address, found {}: not converted", other.shown()),
            );
            None
        }
    };
    let bind_options = match h.take("bind_options") {
        None | Some(Json::Null) => None,
        Some(Json::String(o)) if !o.chars().any(char::is_control) => Some(o),
        Some(other) => {
            out.warn(
                &file,
                &h.field("bind_options"),
                format!("expected a line's words, found {}: not converted", other.shown()),
            );
            None
        }
    };
    let frontend = match port {
        None => {
            if !frontend_lines.is_empty() || bind_address.is_some() || bind_options.is_some() {
                out.warn(
                    &file,
                    &h.field("port"),
                    "none, so Synapse made no frontend for this service: its frontend and bind lines are not \
                     converted either",
                );
            }
            None
        }
        Some(port) => {
            let port = match &port {
                Json::Null => Some(String::new()),
                other => port_of(other).map(|p| format!(":{p}")),
            };
            match port {
                None => {
                    out.warn(&file, &h.field("port"), "expected a port from 1 to 65535: no frontend");
                    None
                }
                Some(port) => {
                    let address =
                        bind_address.or_else(|| global.bind_address.clone()).unwrap_or_else(|| "localhost".to_owned());
                    let mut bind = format!("bind {address}{port}");
                    if let Some(options) = bind_options.filter(|o| !o.trim().is_empty()) {
                        bind.push(' ');
                        bind.push_str(options.trim());
                    }
                    let mut lines = frontend_lines;
                    with_defaults(&mut lines, global);
                    let base = format!("{service}-in");
                    let name = (1..)
                        .map(|n| if n == 1 { base.clone() } else { format!("{base}-{n}") })
                        .find(|n| !names.proxy_taken(n))
                        .unwrap_or(base);
                    names.proxies.insert(name.clone());
                    Some(Frontend { name, lines, bind })
                }
            }
        }
    };

    let shared = match h.take("shared_frontend") {
        None => Vec::new(),
        Some(value) => {
            let at = h.field("shared_frontend");
            let lines = lines_of(value, &file, &at, out);
            if global.shared_frontend.is_none() {
                out.warn(
                    &file,
                    &at,
                    "the top-level haproxy section has no shared_frontend, so Synapse skipped these lines: not \
                     converted either",
                );
                Vec::new()
            } else {
                valid_frontend_lines(lines, &file, &at, out)
            }
        }
    };
    for (key, value) in h.rest() {
        let message = match key.as_str() {
            "server_port_override" => format!(
                "{}: axon-spoa connects to the port each record gives: register the port clients should reach \
                 (the registrar's `port`)",
                value.shown()
            ),
            "backend_order" => {
                "no equivalent: slots are filled in order and the backend's `balance` spreads requests".to_owned()
            }
            "cookie_value_method" => {
                "no equivalent: Synapse gave each server `cookie <its name>`; slots have no cookie value".to_owned()
            }
            "use_nerve_weights" => {
                "Synapse reads it from the top-level haproxy section only; axon-spoa always sets each server's \
                 weight from its record (1 when it has none)"
                    .to_owned()
            }
            _ => "unknown field: not converted".to_owned(),
        };
        out.warn(&file, &h.field(&key), message);
    }
    let backend = Backend {
        name: backend_name,
        lines,
        template_options: server_options,
        server_options: add_server_options,
        frontend,
    };
    (Some(backend), shared)
}

/// Synapse's `server_options` as a template's: without per-server templates (`%{host}`…), a
/// `weight` (axon-spoa sets each slot's) or an `id` (every slot would get it).
fn template_options(options: &str, file: &str, at: &str, out: &mut Report) -> String {
    if options.contains([';', '\\']) || options.chars().any(char::is_control) {
        out.warn(
            file,
            at,
            format!("{options:?} has ';', '\\' or a control character, which `add server` cannot take: not converted"),
        );
        return String::new();
    }
    let tokens: Vec<&str> = options.split_whitespace().collect();
    let mut kept: Vec<String> = Vec::new();
    let mut dropped: Vec<String> = Vec::new();
    let mut i = 0;
    while let Some(&token) = tokens.get(i) {
        let next = tokens.get(i + 1).copied();
        if (token == "weight" || token == "id") && next.is_some() {
            dropped.push(format!("`{token} {}`", next.unwrap_or_default()));
            i += 2;
            continue;
        }
        if next.is_some_and(|n| n.contains("%{")) {
            dropped.push(format!("`{token} {}`", next.unwrap_or_default()));
            i += 2;
            continue;
        }
        if token.contains("%{") {
            dropped.push(format!("`{token}`"));
        } else {
            kept.push(token.replace("%%", "%"));
        }
        i += 1;
    }
    if !dropped.is_empty() {
        out.warn(
            file,
            at,
            format!(
                "{} left out: every slot gets the same options, and axon-spoa sets each slot's address and weight \
                 from its record",
                dropped.join(", ")
            ),
        );
    }
    kept.join(" ")
}

/// The backend lines as slots need them, and the options of its `default-server` lines.
fn backend_lines_for_slots(
    given: Vec<(String, String)>,
    global: &Global,
    file: &str,
    out: &mut Report,
) -> (Vec<String>, String) {
    let consistent = given.iter().any(|(_, l)| words(l).to_ascii_lowercase().starts_with("hash-type consistent"));
    let mut lines = Vec::new();
    let mut default_server = Vec::new();
    for (at, line) in given {
        let normal = words(&line).to_ascii_lowercase();
        if let Some(algorithm) = normal.strip_prefix("balance ") {
            let name = algorithm.split(['(', ' ']).next().unwrap_or_default();
            if name == "static-rr" {
                out.warn(
                    file,
                    &at,
                    "`balance static-rr` cannot take servers added at run time (`add server`): left out, so \
                     haproxy/axon.cfg's roundrobin applies",
                );
                continue;
            }
            if HASHING.contains(&name) && !consistent {
                lines.push(line);
                out.warn(
                    file,
                    &at,
                    format!(
                        "hashing with `balance {name}` is map-based unless `hash-type consistent`, and `add \
                         server` refuses map-based backends: `hash-type consistent` added"
                    ),
                );
                lines.push("hash-type consistent".to_owned());
                continue;
            }
        } else if normal.starts_with("use-server") {
            out.warn(file, &at, format!("{line:?} names a server of Synapse's; slots are named <prefix><n>: left out"));
            continue;
        } else if normal.starts_with("server-state-file-name")
            || (normal.starts_with("load-server-state-from-file") && normal != "load-server-state-from-file global")
        {
            out.warn(
                file,
                &at,
                format!(
                    "{line:?}: slots are restored from the global server-state-file axon-spoa keeps \
                     (haproxy/axon.cfg): left out"
                ),
            );
            continue;
        } else if normal.starts_with("cookie ") {
            out.warn(
                file,
                &at,
                "kept, but Synapse gave each server `cookie <its name>` and slots have none: persistence by this \
                 cookie no longer works",
            );
        } else if let Some(options) = words(&line).strip_prefix("default-server ") {
            default_server.push(options.to_owned());
        }
        lines.push(line);
    }
    with_defaults(&mut lines, global);
    if mode_of(&lines).is_none_or(|m| m == "http") {
        // As haproxy/axon.cfg's backend: only idempotent requests are replayed at layer 7.
        lines.push("http-request disable-l7-retry if !METH_GET".to_owned());
    }
    (lines, default_server.join(" "))
}

/// `base` (keywords of known arity) with every keyword `overrides` sets taken out, then
/// `overrides`: `check inter 1s fall 2` over `inter 2s` is `check fall 2 inter 2s`.
fn merge_server_options(base: &str, overrides: &str) -> String {
    let arity = |keyword: &str| match keyword {
        "check" | "no-check" | "disabled" | "enabled" | "backup" | "no-backup" => 0,
        _ => 1,
    };
    let set: BTreeSet<&str> = overrides.split_whitespace().collect();
    let tokens: Vec<&str> = base.split_whitespace().collect();
    let mut kept: Vec<&str> = Vec::new();
    let mut i = 0;
    while let Some(&keyword) = tokens.get(i) {
        let n = arity(keyword);
        let overridden = set.contains(keyword) || (keyword == "check" && set.contains("no-check"));
        if !overridden {
            kept.extend(tokens.iter().skip(i).take(n + 1));
        }
        i += n + 1;
    }
    kept.push(overrides);
    kept.join(" ")
}

/// What Synapse's `defaults` gave a section and `axon-http` does not: its mode (unless http,
/// axon-http's) and its `log` lines, unless the section has its own.
fn with_defaults(lines: &mut Vec<String>, global: &Global) {
    let mut head = Vec::new();
    if mode_of(lines).is_none() && global.mode != "http" {
        head.push(format!("mode {}", global.mode));
    }
    if !lines.iter().any(|l| is_log(&words(l))) {
        head.extend(global.log.iter().cloned());
    }
    lines.splice(0..0, head);
}

fn is_log(line: &str) -> bool {
    line.starts_with("log ") || line == "no log"
}

/// The mode the lines set, if any (the last `mode` line wins, as in HAProxy).
fn mode_of(lines: &[String]) -> Option<String> {
    lines.iter().rev().find_map(|l| words(l).to_ascii_lowercase().strip_prefix("mode ").map(str::to_owned))
}

fn valid_frontend_lines(lines: Vec<String>, file: &str, at: &str, out: &mut Report) -> Vec<String> {
    let mut kept = Vec::new();
    for (i, line) in lines.into_iter().enumerate() {
        let here = format!("{at}[{i}]");
        if !starts_with_any(&line, keywords::FRONTEND) {
            out.warn(file, &here, format!("{line:?} is not a frontend keyword Synapse knew: it discarded it too"));
        } else if accepted(&line, file, &here, out) {
            kept.push(line);
        }
    }
    kept
}

/// Whether HAProxy 2.6 and later still take the line; if not, it is reported.
fn accepted(line: &str, file: &str, at: &str, out: &mut Report) -> bool {
    let normal = words(line).to_ascii_lowercase();
    match keywords::REMOVED.iter().find(|(keyword, _)| normal.starts_with(keyword)) {
        None => true,
        Some((keyword, instead)) => {
            out.warn(
                file,
                at,
                format!("{line:?}: HAProxy no longer takes `{keyword}` (Axon needs 2.6 or later): left out; {instead}"),
            );
            false
        }
    }
}

/// `option httplog` and the like: a frontend's log format, which HAProxy ignores in a backend.
fn logs_only_in_frontends(line: &str) -> bool {
    let normal = words(line).to_ascii_lowercase();
    ["option httplog", "option tcplog", "option httpslog"].iter().any(|o| normal.starts_with(o))
}

/// The shared frontend: the top-level lines, then each service's, as Synapse concatenated them.
fn shared_frontend(global: &Global, services: &[Service]) -> Option<Vec<String>> {
    let mut lines = global.shared_frontend.clone()?;
    for service in services {
        lines.extend(service.shared_frontend.iter().cloned());
    }
    with_defaults(&mut lines, global);
    Some(lines)
}

/// Lines of a section: a list of strings, or one string.
fn lines_of(value: Json, file: &str, at: &str, out: &mut Report) -> Vec<String> {
    match value {
        Json::String(line) if !line.chars().any(char::is_control) => vec![line.trim().to_owned()],
        Json::Null => Vec::new(),
        Json::Array(items) => {
            let mut lines = Vec::new();
            for (i, item) in items.into_iter().enumerate() {
                match item {
                    Json::String(line) if !line.chars().any(char::is_control) => lines.push(line.trim().to_owned()),
                    other => out.warn(
                        file,
                        &format!("{at}[{i}]"),
                        format!("expected one line, found {}: left out", other.shown()),
                    ),
                }
            }
            lines
        }
        other => {
            out.warn(file, at, format!("expected a list of lines, found {}: not converted", other.kind()));
            Vec::new()
        }
    }
}

/// Synapse's test of a line against its keyword lists: whitespace squeezed, lower case, prefix.
fn starts_with_any(line: &str, keywords: &[&str]) -> bool {
    let normal = words(line).to_ascii_lowercase();
    keywords.iter().any(|k| normal.starts_with(k))
}

/// A non-empty word without spaces or control characters (an address).
fn one_word(text: &str) -> bool {
    let text = text.trim();
    !text.is_empty() && !text.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// The line with runs of whitespace squeezed to one space, trimmed.
fn words(line: &str) -> String {
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn flag(obj: &mut Obj, key: &str, default: bool, out: &mut Report) -> bool {
    match obj.take(key) {
        None | Some(Json::Null) => default,
        Some(Json::Bool(b)) => b,
        Some(other) => {
            out.warn(
                obj.file(),
                &obj.field(key),
                format!("expected true or false, found {}: {default} (Synapse's default) written", other.shown()),
            );
            default
        }
    }
}

fn render_toml(file: &str, global: &Global, zookeeper: &ZkHosts, services: &[Service]) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "# axon-spoa configuration converted from Synapse's {file} by `axon-spoa import-synapse`.");
    t.push_str("# What did not carry over was printed as warnings; the migration guide has the full mapping.\n");
    t.push_str("# The services' HAProxy sections are written by --haproxy-backends; load them after\n");
    t.push_str("# haproxy/axon.cfg, whose paths the [haproxy] table below follows.\n\n");
    if global.cache {
        let _ = writeln!(t, "cache_file = {}\n", string(CACHE_FILE));
        if let Some(age) = global.cache_max_age_s {
            let _ = writeln!(t, "[discovery]\ncache_max_age = {}\n", string(&duration(age * 1000)));
        }
    }
    let _ = writeln!(t, "[zookeeper]\nconnect = {}\n", string(&zookeeper.connect()));
    let _ = writeln!(t, "[haproxy]\nsocket = {}", string(&global.socket));
    let _ = writeln!(t, "state_file = {}", string(SNIPPET_STATE_FILE));
    let _ = writeln!(t, "host_map = {}", string(SNIPPET_HOST_MAP));
    let _ = writeln!(t, "slots_file = {}", string(SNIPPET_SLOTS_FILE));
    t.push_str(
        "\n# haproxy/axon.cfg's frontend `axon` asks axon-spoa's SPOE agent where the requests its host\n\
         # map cannot route go; uncomment to answer it (see [routing] in docs/configuration.md):\n\
         # [spoe]\n\
         # listen = \"127.0.0.1:9103\"\n",
    );
    for s in services {
        let _ = writeln!(t, "\n[[service]]\nname = {}", string(&s.name));
        let _ = writeln!(t, "zk_path = {}", string(&s.zk_path));
        if let Some(backend) = &s.backend {
            let _ = writeln!(t, "backend = {}", string(&backend.name));
        }
        if !s.label_filters.is_empty() {
            let filters: Vec<String> = s
                .label_filters
                .iter()
                .map(|(label, value, equals)| {
                    let condition = if *equals { String::new() } else { ", condition = \"not_equals\"".to_owned() };
                    format!("{{ label = {}, value = {}{condition} }}", string(label), string(value))
                })
                .collect();
            let _ = writeln!(t, "label_filters = [{}]", filters.join(", "));
        }
        if !s.default_servers.is_empty() {
            let servers: Vec<String> = s.default_servers.iter().map(|d| string(d)).collect();
            let _ = writeln!(t, "default_servers = [{}]", servers.join(", "));
        }
        if s.keep_default_servers {
            t.push_str("keep_default_servers = true\n");
        }
        if s.on_empty_empty {
            t.push_str("on_empty = \"empty\"\n");
        }
        if let Some(options) = s.backend.as_ref().and_then(|b| b.server_options.as_ref()) {
            let _ = writeln!(t, "server_options = {}", string(options));
        }
    }
    t
}

fn render_haproxy(file: &str, services: &[Service], shared: Option<&Vec<String>>) -> String {
    let mut h = String::new();
    let _ = writeln!(h, "# HAProxy sections converted from Synapse's {file} by `axon-spoa import-synapse`.");
    h.push_str(
        "# They use haproxy/axon.cfg's `defaults axon-http`: load them after it, and axon-spoa's slots\n\
         # file before everything, so a reload declares every server axon-spoa added:\n",
    );
    let _ = writeln!(
        h,
        "#     haproxy -W -f {SNIPPET_SLOTS_FILE} -f /etc/haproxy/haproxy.cfg -f /etc/haproxy/axon.cfg -f <this file>"
    );
    for s in services {
        let Some(b) = &s.backend else { continue };
        let _ = writeln!(h, "\n# Service {:?}.", s.name);
        if let Some(f) = &b.frontend {
            let _ = writeln!(h, "frontend {} from axon-http", f.name);
            for line in &f.lines {
                let _ = writeln!(h, "    {line}");
            }
            let _ = writeln!(h, "    {}\n    default_backend {}\n", f.bind, b.name);
        }
        let _ = writeln!(h, "backend {} from axon-http", b.name);
        for line in &b.lines {
            let _ = writeln!(h, "    {line}");
        }
        let mut template = slots::template_line(&b.name, &s.name, TEMPLATE_SLOTS);
        if !b.template_options.is_empty() {
            template.push(' ');
            template.push_str(&b.template_options);
        }
        let _ = writeln!(h, "    {template}");
    }
    if let Some(lines) = shared {
        let _ = writeln!(h, "\n# Synapse's shared frontend.\nfrontend {SHARED_FRONTEND} from axon-http");
        for line in lines {
            let _ = writeln!(h, "    {line}");
        }
    }
    h
}

#[cfg(test)]
mod tests;
