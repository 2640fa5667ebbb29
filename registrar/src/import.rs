//! `axon-registrar import-nerve`: Nerve's JSON configuration in, an axon-registrar
//! configuration out, and a warning for everything that does not carry over. No I/O: the
//! command line reads the files (the main one, and those of its `service_conf_dir`).
//!
//! The rules (docs/migration.md has the table of every field):
//! 1. Every field is converted or reported, unknown fields too; nothing is dropped silently.
//!    A warning names the file, the field and why.
//! 2. Nerve's defaults are written out where Axon's differ (`check_interval` 0.5 s, check
//!    `timeout` 0.1 s, `rise` and `fall` 1), so a converted service is checked as Nerve
//!    checked it. An http check's `timeout` is Nerve's connect time plus its read time.
//! 3. Services keep the file's order, then come those of `service_conf_dir` (by file name; a
//!    file replaces a service of the same name, as in Nerve).
//! 4. Axon keeps one ZooKeeper session: the first service's `zk_hosts` give `[zookeeper]
//!    connect`, and each service with other hosts is named in a warning.
//! 5. What Axon cannot do is left out with its reason: a service reporting elsewhere than
//!    ZooKeeper, a check of a type Axon lacks. A `rabbitmq` check becomes a `tcp` check of the
//!    same address (the part of it Axon can do); a `noop` check an `exec` check of `true`. A
//!    service left without any check is left out.
//! 6. The output is validated by the registrar's own parser before it is returned: what
//!    [`import`] returns, `--check` accepts.
//!
//! The mechanics of rules 1, 3 and 4 (JSON read so that every field is accounted for, the
//! services' order and `service_conf_dir`, the one ensemble) are [`axon_core::import`]'s,
//! shared with axon-spoa's `import-synapse`; what is Nerve's is here.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

pub use axon_core::import::{ImportError, ServiceDir, ServiceFile, Warning, service_conf_dir};
use axon_core::import::{
    Json, Obj, Report, Source, Tool, ZkHosts, at_or_document, clean_name, duration, field, inline_table, integer,
    millis, one_ensemble, port_of, seconds, shown_or_nothing, string, take_zk_path, unique,
};

use crate::config::{Config, MAX_WEIGHT, valid_instance_id, valid_label_key};

/// Nerve's `check_interval` when none is given (seconds).
const NERVE_CHECK_INTERVAL: f64 = 0.5;
/// Nerve's check `timeout` when none is given (seconds).
const NERVE_TIMEOUT: f64 = 0.1;
/// Nerve's `rise` and `fall` when none is given.
const NERVE_RISE_FALL: u32 = 1;
/// Nerve's http check `open_timeout` (the connect) when none is given (seconds).
const NERVE_HTTP_OPEN_TIMEOUT: f64 = 0.2;
/// Axon's check interval range, in milliseconds (see `config.rs`).
const INTERVAL_MS: (u64, u64) = (100, 3_600_000);

/// The converted configuration.
#[derive(Debug, Clone)]
pub struct Imported {
    /// An axon-registrar configuration (TOML).
    pub toml: String,
    pub warnings: Vec<Warning>,
}

/// Converts Nerve's configuration `text`, read from `file` (named in messages), with the
/// services of its `service_conf_dir` as `dir` found them.
pub fn import(file: &str, text: &str, dir: &ServiceDir) -> Result<Imported, ImportError> {
    let mut out = Report::default();
    let mut top = axon_core::import::open(Tool::Nerve, file, text, &mut out)?;

    let instance_id = match top.take("instance_id") {
        None => {
            out.warn(
                file,
                "instance_id",
                "not set (Nerve then takes it from --instance_id or NERVE_INSTANCE_ID): Axon uses the host \
                 name; set `instance_id` if the znodes should keep their names",
            );
            None
        }
        Some(Json::String(id)) if valid_instance_id(&id) => Some(id),
        Some(other) => {
            out.warn(
                file,
                "instance_id",
                format!(
                    "{} is not a name Axon can use (no '/', spaces or control characters, not starting with \
                     \"base64_\"): left out, so Axon uses the host name",
                    other.shown()
                ),
            );
            None
        }
    };

    let sources = axon_core::import::services(Tool::Nerve, &mut top, dir, &mut out)?;
    for (key, _) in top.rest() {
        let message = match key.as_str() {
            "heartbeat_path" => "no equivalent: Axon's liveness is its status endpoint (`[status] listen`, \
                                 GET /status), not a file it touches"
                .to_owned(),
            "statsd" => "no equivalent: Axon serves Prometheus metrics at `[status] listen` (GET /metrics)".to_owned(),
            "max_repeated_report_failures" => "no equivalent: Axon never gives up on ZooKeeper: a failed request \
                                               is retried with backoff (100 ms doubling to 10 s) and the session \
                                               is reopened"
                .to_owned(),
            _ => "unknown field: not converted".to_owned(),
        };
        out.warn(file, &key, message);
    }

    let mut services = Vec::new();
    for Source { file, at, name, value } in sources {
        if let Some(service) = convert_service(&file, &at, &name, value, &mut out) {
            services.push(service);
        }
    }
    let services = distinct(services, &mut out);
    let (first, others) = one_ensemble(file, &services, |s| &s.zk_hosts)?;
    for service in others {
        out.warn(
            &service.file,
            &field(&service.at, "zk_hosts"),
            format!(
                "{} is not the ensemble of service {:?} ({}), the first one: Axon keeps one ZooKeeper session, so \
                 this service registers there; run another axon-registrar with a configuration of its own to \
                 register it with {}",
                service.zk_hosts.connect(),
                first.name,
                first.zk_hosts.connect(),
                service.zk_hosts.connect()
            ),
        );
    }

    let toml = render(file, instance_id.as_deref(), &first.zk_hosts, &services);
    Config::parse(Path::new("import-nerve output"), &toml)
        .map_err(|source| ImportError::Invalid { file: file.to_owned(), source })?;
    Ok(Imported { toml, warnings: out.into_warnings() })
}

/// One service, converted.
#[derive(Debug, Clone)]
struct Service {
    /// Where it came from, for messages.
    file: String,
    at: String,
    name: String,
    host: String,
    port: u16,
    zk_hosts: ZkHosts,
    zk_path: String,
    check_interval_ms: u64,
    weight: Option<u32>,
    labels: Option<BTreeMap<String, String>>,
    haproxy_server_options: Option<String>,
    path_encoding: bool,
    checks: Vec<Check>,
}

#[derive(Debug, Clone)]
struct Check {
    kind: CheckKind,
    /// `None` for an exec check (Axon's default, up to the interval, suits a command).
    timeout_ms: Option<u64>,
    rise: u32,
    fall: u32,
}

#[derive(Debug, Clone)]
enum CheckKind {
    Tcp { host: Option<String>, port: Option<u16> },
    Redis { host: Option<String>, port: Option<u16> },
    Http(Http),
    Exec { command: String },
}

#[derive(Debug, Clone)]
struct Http {
    host: Option<String>,
    port: Option<u16>,
    uri: String,
    https: bool,
    headers: BTreeMap<String, String>,
    expect_body: Option<String>,
}

fn convert_service(file: &str, at: &str, name: &str, value: Json, out: &mut Report) -> Option<Service> {
    let Json::Object(entries) = value else {
        out.warn(file, at_or_document(at), format!("expected an object, found {}: service left out", value.kind()));
        return None;
    };
    let mut obj = Obj::new(file, at, entries, out);
    let reporter = match obj.take("reporter_type") {
        None => "zookeeper".to_owned(),
        Some(Json::String(kind)) => kind.to_ascii_lowercase(),
        Some(other) => other.shown(),
    };
    if reporter != "zookeeper" {
        let why = if reporter == "etcd" {
            "Axon registers in ZooKeeper only (its etcd_* fields are not converted)".to_owned()
        } else {
            "Axon registers in ZooKeeper only".to_owned()
        };
        out.warn(file, &obj.field("reporter_type"), format!("{reporter:?}: {why}: service left out"));
        return None;
    }
    let name = service_name(name, &obj, out);
    let host = match obj.take("host") {
        Some(Json::String(host)) if valid_host(&host) => host.trim().to_owned(),
        other => {
            let found = shown_or_nothing(other.as_ref());
            out.warn(
                file,
                &obj.field("host"),
                format!("expected an IP address or host name, found {found}: service left out"),
            );
            return None;
        }
    };
    let port = match obj.take("port").as_ref().and_then(port_of) {
        Some(port) => port,
        None => {
            out.warn(file, &obj.field("port"), "expected a port from 1 to 65535: service left out");
            return None;
        }
    };
    let zk_hosts = ZkHosts::take(Tool::Nerve, &mut obj, "zk_hosts", out)?;
    let zk_path = take_zk_path(
        &mut obj,
        "zk_path",
        "an absolute path below the root, such as \"/nerve/services/web/services\"",
        out,
    )?;

    let mut check_interval_ms = match obj.take("check_interval") {
        None => millis(NERVE_CHECK_INTERVAL),
        Some(value) => match seconds(&value) {
            Some(s) => {
                let ms = millis(s);
                let clamped = ms.clamp(INTERVAL_MS.0, INTERVAL_MS.1);
                if clamped != ms {
                    out.warn(
                        file,
                        &obj.field("check_interval"),
                        format!("{} is outside Axon's range (100ms to 1h): {} used", value.shown(), duration(clamped)),
                    );
                }
                clamped
            }
            None => {
                out.warn(
                    file,
                    &obj.field("check_interval"),
                    format!("expected seconds, found {}: Nerve's default 500ms used", value.shown()),
                );
                millis(NERVE_CHECK_INTERVAL)
            }
        },
    };

    let weight = match obj.take("weight") {
        None => None,
        Some(value) => match integer(&value) {
            Some(w) if w >= 0 => {
                let clamped = w.min(i64::from(MAX_WEIGHT));
                if clamped != w {
                    out.warn(
                        file,
                        &obj.field("weight"),
                        format!("{w} is above HAProxy's maximum: {MAX_WEIGHT} written"),
                    );
                }
                u32::try_from(clamped).ok()
            }
            _ => {
                out.warn(
                    file,
                    &obj.field("weight"),
                    format!(
                        "expected a whole number from 0 (Nerve refuses anything else), found {}: left out",
                        value.shown()
                    ),
                );
                None
            }
        },
    };
    let haproxy_server_options = match obj.take("haproxy_server_options") {
        None => None,
        Some(Json::String(options)) => Some(options),
        Some(other) => {
            out.warn(
                file,
                &obj.field("haproxy_server_options"),
                format!("expected a string, found {}: left out", other.shown()),
            );
            None
        }
    };
    let labels = obj.take("labels").and_then(|value| labels(value, &obj, out));
    let path_encoding = match obj.take("use_path_encoding") {
        None | Some(Json::Bool(false)) => false,
        Some(Json::Bool(true)) => true,
        Some(other) => {
            out.warn(
                file,
                &obj.field("use_path_encoding"),
                format!("{}: Nerve encodes only with `true`: not encoded", other.shown()),
            );
            false
        }
    };
    if let Some(node_type) = obj.take("node_type") {
        match &node_type {
            Json::String(kind) if kind == "ephemeral_sequential" => {}
            other => out.warn(
                file,
                &obj.field("node_type"),
                format!(
                    "{}: Axon creates ephemeral sequential znodes only (Nerve's default), which go with the session; \
                     znodes Nerve created persistent stay after it stops: delete them",
                    other.shown()
                ),
            ),
        }
    }
    if obj.take("ttl_seconds").is_some() {
        out.warn(
            file,
            &obj.field("ttl_seconds"),
            "no equivalent: Axon's znodes are ephemeral and need no refresh (Nerve touches only persistent ones)",
        );
    }
    if obj.take("rate_limiting").is_some() {
        out.warn(
            file,
            &obj.field("rate_limiting"),
            "no equivalent: Axon writes only on a change of health, with at most one request in flight per \
             znode and a backoff after a failure",
        );
    }
    if let Some(Json::Bool(true)) = obj.take("check_mocked") {
        out.warn(
            file,
            &obj.field("check_mocked"),
            "no equivalent: Axon always runs the checks (they are converted below)",
        );
    }
    for key in ["load_test_concurrency", "max_repeated_report_failures", "name", "instance_id"] {
        if obj.take(key).is_some() {
            let why = match key {
                "load_test_concurrency" => "no equivalent: Axon registers each service once",
                "max_repeated_report_failures" => {
                    "ignored by Nerve here (the top-level one applies); Axon never gives up on ZooKeeper"
                }
                _ => "ignored by Nerve (the service's key and the top-level instance_id are used): not converted",
            };
            out.warn(file, &obj.field(key), why);
        }
    }

    let checks_at = obj.field("checks");
    let mut checks = Vec::new();
    let mut given = 0;
    match obj.take("checks") {
        None => {}
        Some(Json::Array(items)) => {
            given = items.len();
            for (i, item) in items.into_iter().enumerate() {
                if let Some(check) = convert_check(file, &format!("{checks_at}[{i}]"), item, out) {
                    checks.push(check);
                }
            }
        }
        Some(other) => {
            given = 1;
            out.warn(file, &checks_at, format!("expected a list of checks, found {}", other.kind()));
        }
    }
    if checks.is_empty() {
        if given > 0 {
            out.warn(file, &checks_at, "no check could be converted: service left out (write an `exec` check for it)");
            return None;
        }
        out.warn(
            file,
            &checks_at,
            "none: Nerve registers such a service while it runs; Axon needs a check, so an `exec` check of \
             `true` is written",
        );
        checks.push(Check {
            kind: CheckKind::Exec { command: "true".to_owned() },
            timeout_ms: None,
            rise: NERVE_RISE_FALL,
            fall: NERVE_RISE_FALL,
        });
    }
    // Axon refuses a timeout longer than the interval; Nerve waits for the check, then sleeps
    // the interval. The slowest check keeps its time, so a slow but healthy service stays up.
    if let Some(slowest) = checks.iter().filter_map(|c| c.timeout_ms).max()
        && slowest > check_interval_ms
    {
        out.warn(
            file,
            &obj.field("check_interval"),
            format!(
                "{} is shorter than the longest check timeout ({}): Axon runs checks at a fixed rate and wants \
                 each to end within the interval, so check_interval = {} is written",
                duration(check_interval_ms),
                duration(slowest),
                duration(slowest)
            ),
        );
        check_interval_ms = slowest;
    }

    for (key, _) in obj.rest() {
        let message = match key.as_str() {
            "etcd_host" | "etcd_port" | "etcd_path" => {
                "an etcd reporter's field on a ZooKeeper service: ignored by Nerve, not converted".to_owned()
            }
            _ => "unknown field: not converted".to_owned(),
        };
        out.warn(file, &obj.field(&key), message);
    }
    Some(Service {
        file: file.to_owned(),
        at: at.to_owned(),
        name,
        host,
        port,
        zk_hosts,
        zk_path,
        check_interval_ms,
        weight,
        labels,
        haproxy_server_options,
        path_encoding,
        checks,
    })
}

/// The service's name as Axon accepts it (letters, digits, '_', '-', '.').
fn service_name(name: &str, obj: &Obj, out: &mut Report) -> String {
    // axon-registrar's names have no length limit.
    let clean = clean_name(name, usize::MAX);
    if clean != name {
        out.warn(
            obj.file(),
            at_or_document(obj.at()),
            format!("the name {name:?} has characters Axon's names cannot: named {clean:?}"),
        );
    }
    clean
}

/// Services whose names or endpoints clash with an earlier one: renamed, or left out.
fn distinct(services: Vec<Service>, out: &mut Report) -> Vec<Service> {
    let mut names = BTreeSet::new();
    let mut endpoints = BTreeSet::new();
    let mut kept = Vec::with_capacity(services.len());
    for mut service in services {
        if !endpoints.insert((service.zk_path.clone(), service.host.clone(), service.port)) {
            out.warn(
                &service.file,
                at_or_document(&service.at),
                format!(
                    "registers {}:{} under {} as an earlier service does: Axon registers an endpoint once per path, \
                     service left out",
                    service.host, service.port, service.zk_path
                ),
            );
            continue;
        }
        if names.contains(&service.name) {
            let base = service.name.clone();
            let renamed = unique(&base, &names, usize::MAX);
            out.warn(
                &service.file,
                at_or_document(&service.at),
                format!("the name {base:?} is taken by an earlier service: named {renamed:?}"),
            );
            service.name = renamed;
        }
        names.insert(service.name.clone());
        kept.push(service);
    }
    kept
}

fn labels(value: Json, obj: &Obj, out: &mut Report) -> Option<BTreeMap<String, String>> {
    let at = obj.field("labels");
    let Json::Object(entries) = value else {
        out.warn(obj.file(), &at, format!("expected an object of labels, found {}: left out", value.kind()));
        return None;
    };
    let mut map = BTreeMap::new();
    for (key, value) in Obj::new(obj.file(), &at, entries, out).rest() {
        let here = field(&at, &key);
        if !valid_label_key(&key) {
            out.warn(obj.file(), &here, "a label name of letters, digits, '_', '-', '.' or '/' is needed: left out");
            continue;
        }
        let text = match value {
            Json::String(text) => text,
            Json::Bool(_) | Json::Number(_) => {
                let text = value.shown();
                out.warn(
                    obj.file(),
                    &here,
                    format!(
                        "{text} is written as the string {text:?}: Axon's labels are strings (a reader comparing \
                         it with {} no longer matches)",
                        value.kind()
                    ),
                );
                text
            }
            other => {
                out.warn(obj.file(), &here, format!("expected a string, found {}: left out", other.kind()));
                continue;
            }
        };
        if text.chars().any(|c| c.is_control() || c == ',') {
            out.warn(
                obj.file(),
                &here,
                format!("{text:?} has a ',' or a control character, which Axon refuses: left out"),
            );
            continue;
        }
        map.insert(key, text);
    }
    Some(map)
}

fn convert_check(file: &str, at: &str, value: Json, out: &mut Report) -> Option<Check> {
    let Json::Object(entries) = value else {
        out.warn(file, at, format!("expected a check object, found {}: left out", value.kind()));
        return None;
    };
    let mut obj = Obj::new(file, at, entries, out);
    let nerve_type = match obj.take("type") {
        Some(Json::String(kind)) => kind,
        other => {
            let found = shown_or_nothing(other.as_ref());
            out.warn(file, &obj.field("type"), format!("expected a check type, found {found}: check left out"));
            return None;
        }
    };
    // A check's descriptive name: Axon names checks by type and target.
    obj.take("name");
    let host = match obj.take("host") {
        None => None,
        Some(Json::String(host)) if valid_host(&host) => Some(host.trim().to_owned()),
        Some(other) => {
            out.warn(
                file,
                &obj.field("host"),
                format!("expected a host, found {}: the service's host is checked", other.shown()),
            );
            None
        }
    };
    let port = match obj.take("port") {
        None => None,
        Some(value) => {
            let port = port_of(&value);
            if port.is_none() {
                out.warn(
                    file,
                    &obj.field("port"),
                    format!("expected a port, found {}: the service's port is checked", value.shown()),
                );
            }
            port
        }
    };
    let timeout = match obj.take("timeout") {
        None => NERVE_TIMEOUT,
        Some(value) => match seconds(&value).filter(|s| *s > 0.0) {
            Some(s) => s,
            None => {
                out.warn(
                    file,
                    &obj.field("timeout"),
                    format!("expected positive seconds, found {}: Nerve's default 100ms used", value.shown()),
                );
                NERVE_TIMEOUT
            }
        },
    };
    let rise = count(&mut obj, "rise", out);
    let fall = count(&mut obj, "fall", out);
    let module = obj.take("module");
    let (kind, timeout_ms) = match nerve_type.as_str() {
        "tcp" => (CheckKind::Tcp { host, port }, Some(millis_at_least_one(timeout))),
        "redis" => (CheckKind::Redis { host, port }, Some(millis_at_least_one(timeout))),
        "http" => {
            let (http, total) = http_check(&mut obj, host, port, timeout, out);
            (CheckKind::Http(http), Some(millis_at_least_one(total)))
        }
        "rabbitmq" => {
            obj.take("username");
            obj.take("password");
            out.warn(
                file,
                &obj.field("type"),
                "\"rabbitmq\": Axon has no AMQP check: converted to a tcp check of the same address (Nerve's \
                 check also published and consumed a message; an `exec` check running a client that does so \
                 would match it)",
            );
            (CheckKind::Tcp { host, port }, Some(millis_at_least_one(timeout)))
        }
        "noop" => {
            for (key, given) in [("host", host.is_some()), ("port", port.is_some())] {
                if given {
                    out.warn(file, &obj.field(key), "a noop check connects nowhere: not converted");
                }
            }
            (CheckKind::Exec { command: "true".to_owned() }, None)
        }
        other => {
            let how = if module.is_some() { "an external check (its `module`)" } else { "a check type" };
            out.warn(
                file,
                &obj.field("type"),
                format!(
                    "{other:?} is {how} Axon does not have: check left out (an `exec` check can run a command doing it)"
                ),
            );
            return None;
        }
    };
    if let Some(module) = module {
        out.warn(
            file,
            &obj.field("module"),
            format!(
                "{}: Nerve loads a module only for a type it lacks; this type is built in: not converted",
                module.shown()
            ),
        );
    }
    // Values unknown fields hold are not shown: one may be a password.
    for (key, _) in obj.rest() {
        out.warn(file, &obj.field(&key), format!("unknown field for a {nerve_type} check: not converted"));
    }
    Some(Check { kind, timeout_ms, rise, fall })
}

/// An http check, and its whole time in seconds: Nerve's `open_timeout` (the connect, TLS
/// included) plus its `read_timeout` (which defaults to `timeout`).
fn http_check(obj: &mut Obj, host: Option<String>, port: Option<u16>, timeout: f64, out: &mut Report) -> (Http, f64) {
    let file = obj.file().to_owned();
    let uri = match obj.take("uri") {
        Some(Json::String(uri))
            if uri.starts_with('/') && !uri.chars().any(|c| c.is_whitespace() || c.is_control()) =>
        {
            uri
        }
        Some(Json::String(uri)) if !uri.is_empty() && !uri.chars().any(|c| c.is_whitespace() || c.is_control()) => {
            let fixed = format!("/{uri}");
            out.warn(&file, &obj.field("uri"), format!("{uri:?} does not start with '/': {fixed:?} written"));
            fixed
        }
        other => {
            let found = shown_or_nothing(other.as_ref());
            out.warn(
                &file,
                &obj.field("uri"),
                format!("expected a path such as \"/health\" (Nerve requires one), found {found}: \"/\" written"),
            );
            "/".to_owned()
        }
    };
    let https = match obj.take("ssl") {
        None | Some(Json::Bool(false)) | Some(Json::Null) => false,
        Some(Json::Bool(true)) => true,
        Some(other) => {
            out.warn(&file, &obj.field("ssl"), format!("expected true or false, found {}: https used", other.shown()));
            true
        }
    };
    let time = |key: &str, default: f64, obj: &mut Obj, out: &mut Report| match obj.take(key) {
        None => default,
        Some(value) => seconds(&value).filter(|s| *s > 0.0).unwrap_or_else(|| {
            out.warn(
                &file,
                &obj.field(key),
                format!("expected positive seconds, found {}: {} used", value.shown(), duration(millis(default))),
            );
            default
        }),
    };
    let read = time("read_timeout", timeout, obj, out);
    let open = time("open_timeout", NERVE_HTTP_OPEN_TIMEOUT, obj, out);
    if obj.take("ssl_timeout").is_some() {
        out.warn(
            &file,
            &obj.field("ssl_timeout"),
            "no equivalent: it sets Ruby's TLS session lifetime, which does not limit the check (the \
             handshake counts in open_timeout, so in Axon's timeout)",
        );
    }
    let mut headers = BTreeMap::new();
    match obj.take("headers") {
        None => {}
        Some(Json::Object(entries)) => {
            let at = obj.field("headers");
            for (name, value) in Obj::new(&file, &at, entries, out).rest() {
                let here = field(&at, &name);
                let good_name = !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
                match value {
                    Json::String(value) if good_name && !value.chars().any(|c| c.is_control()) => {
                        headers.insert(name, value);
                    }
                    other => out.warn(
                        &file,
                        &here,
                        format!(
                            "expected a header name and a string without control characters, found {}: left out",
                            other.shown()
                        ),
                    ),
                }
            }
        }
        Some(other) => out.warn(
            &file,
            &obj.field("headers"),
            format!("expected an object of headers, found {}: left out", other.kind()),
        ),
    }
    let expect_body = match obj.take("expect") {
        None | Some(Json::Null) => None,
        Some(Json::String(text)) => Some(text),
        Some(other) => {
            out.warn(&file, &obj.field("expect"), format!("expected a string, found {}: left out", other.shown()));
            None
        }
    };
    (Http { host, port, uri, https, headers, expect_body }, open + read)
}

/// `rise` or `fall`: Nerve's default 1, within Axon's 1–1000.
fn count(obj: &mut Obj, key: &str, out: &mut Report) -> u32 {
    let Some(value) = obj.take(key) else {
        return NERVE_RISE_FALL;
    };
    match integer(&value) {
        Some(n) if (1..=1000).contains(&n) => u32::try_from(n).unwrap_or(NERVE_RISE_FALL),
        Some(n) if n > 1000 => {
            out.warn(obj.file(), &obj.field(key), format!("{n} is above Axon's maximum: 1000 written"));
            1000
        }
        _ => {
            out.warn(
                obj.file(),
                &obj.field(key),
                format!("expected a whole number from 1, found {}: Nerve's default 1 written", value.shown()),
            );
            NERVE_RISE_FALL
        }
    }
}

fn render(file: &str, instance_id: Option<&str>, zookeeper: &ZkHosts, services: &[Service]) -> String {
    let mut t = String::new();
    let _ =
        writeln!(t, "# axon-registrar configuration converted from Nerve's {file} by `axon-registrar import-nerve`.");
    t.push_str("# What did not carry over was printed as warnings; the migration guide has the full mapping.\n\n");
    if let Some(id) = instance_id {
        let _ = writeln!(t, "instance_id = {}\n", string(id));
    }
    let _ = writeln!(t, "[zookeeper]\nconnect = {}", string(&zookeeper.connect()));
    for s in services {
        let _ = writeln!(t, "\n[[service]]");
        let _ = writeln!(t, "name = {}", string(&s.name));
        let _ = writeln!(t, "host = {}", string(&s.host));
        let _ = writeln!(t, "port = {}", s.port);
        let _ = writeln!(t, "zk_path = {}", string(&s.zk_path));
        let _ = writeln!(t, "check_interval = {}", string(&duration(s.check_interval_ms)));
        if let Some(weight) = s.weight {
            let _ = writeln!(t, "weight = {weight}");
        }
        if let Some(labels) = &s.labels {
            let _ = writeln!(t, "labels = {}", inline_table(labels));
        }
        if let Some(options) = &s.haproxy_server_options {
            let _ = writeln!(t, "haproxy_server_options = {}", string(options));
        }
        if s.path_encoding {
            t.push_str("path_encoding = \"base64\"\n");
        }
        for check in &s.checks {
            t.push_str("\n[[service.checks]]\n");
            let target = |t: &mut String, host: &Option<String>, port: &Option<u16>| {
                if let Some(host) = host {
                    let _ = writeln!(t, "host = {}", string(host));
                }
                if let Some(port) = port {
                    let _ = writeln!(t, "port = {port}");
                }
            };
            match &check.kind {
                CheckKind::Tcp { host, port } => {
                    t.push_str("type = \"tcp\"\n");
                    target(&mut t, host, port);
                }
                CheckKind::Redis { host, port } => {
                    t.push_str("type = \"redis\"\n");
                    target(&mut t, host, port);
                }
                CheckKind::Http(http) => {
                    t.push_str("type = \"http\"\n");
                    target(&mut t, &http.host, &http.port);
                    let _ = writeln!(t, "uri = {}", string(&http.uri));
                    if http.https {
                        t.push_str("https = true\n");
                    }
                    if !http.headers.is_empty() {
                        let _ = writeln!(t, "headers = {}", inline_table(&http.headers));
                    }
                    if let Some(body) = &http.expect_body {
                        let _ = writeln!(t, "expect_body = {}", string(body));
                    }
                }
                CheckKind::Exec { command } => {
                    let _ = writeln!(t, "type = \"exec\"\ncommand = {}", string(command));
                }
            }
            if let Some(ms) = check.timeout_ms {
                let _ = writeln!(t, "timeout = {}", string(&duration(ms)));
            }
            let _ = writeln!(t, "rise = {}\nfall = {}", check.rise, check.fall);
        }
    }
    t
}

fn valid_host(host: &str) -> bool {
    let host = host.trim();
    !host.is_empty() && !host.chars().any(|c| c.is_whitespace() || c.is_control() || c == '/')
}

/// Seconds in whole milliseconds, at least one (Axon refuses a zero timeout).
fn millis_at_least_one(seconds: f64) -> u64 {
    millis(seconds).max(1)
}

#[cfg(test)]
mod tests;
