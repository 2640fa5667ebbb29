//! The registrar's configuration: TOML → raw serde structs → [`Config`], validated.
//!
//! Every default lives in this file. Every error names the file, the field, the value and what
//! would be accepted (see [`axon_core::config`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axon_core::config::{Checker, ConfigError, load_toml, parse_toml, quoted};
use axon_core::status::RawStatus;
use axon_core::zk::{RawZookeeper, ZkSettings};
use axon_record::ENCODED_PREFIX;

use axon_core::config::Secret;

use crate::service::{CheckConfig, CheckKind, HttpCheck, PathEncoding, ServiceConfig};
use serde::Deserialize;

pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(1);
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(1);
/// The check types, as `type` names them.
const CHECK_TYPES: [&str; 4] = ["tcp", "http", "exec", "redis"];

/// `["tcp", "http", "redis"]` as "tcp, http or redis".
fn one_of(types: &[&str]) -> String {
    match types {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

pub const DEFAULT_RISE: u32 = 2;
pub const DEFAULT_FALL: u32 = 2;
pub const DEFAULT_HTTP_STATUS: RangeInclusive<u16> = 200..=399;
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// HAProxy's own weight range; anything above would be refused by the proxies reading it.
pub const MAX_WEIGHT: u32 = 256;

/// A validated registrar configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it was read from (for messages and SIGHUP).
    pub file: PathBuf,
    /// Names this host's znodes (`<instance_id>_<sequence>`) and fills the record's `name`.
    pub instance_id: String,
    pub zookeeper: ZkSettings,
    /// Where the JSON status and Prometheus metrics are served, if anywhere.
    pub status_listen: Option<SocketAddr>,
    /// A file named after a service in this directory takes that service out of rotation.
    pub maintenance_dir: Option<PathBuf>,
    /// How long a stop may spend deleting znodes before it gives up and exits.
    pub shutdown_grace: Duration,
    pub services: Vec<ServiceConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    instance_id: Option<String>,
    zookeeper: RawZookeeper,
    status: Option<RawStatus>,
    maintenance_dir: Option<PathBuf>,
    shutdown_grace: Option<String>,
    #[serde(default)]
    service: Vec<RawService>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    name: String,
    host: String,
    port: u16,
    zk_path: String,
    weight: Option<u32>,
    labels: Option<BTreeMap<String, String>>,
    haproxy_server_options: Option<String>,
    check_interval: Option<String>,
    maintenance_file: Option<PathBuf>,
    path_encoding: Option<String>,
    #[serde(default)]
    checks: Vec<RawCheck>,
}

/// One flat table for every check type, so that a field given to the wrong type gets an error
/// that says which types take it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheck {
    #[serde(rename = "type")]
    kind: String,
    timeout: Option<String>,
    rise: Option<u32>,
    fall: Option<u32>,
    host: Option<String>,
    port: Option<u16>,
    uri: Option<String>,
    https: Option<bool>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    expect_status: Option<String>,
    expect_body: Option<String>,
    keepalive: Option<bool>,
    command: Option<String>,
    username: Option<String>,
    password: Option<Secret>,
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(file: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = load_toml(file)?;
        raw.validate(file)
    }

    /// Validates configuration text; `file` names it in errors.
    pub fn parse(file: &Path, text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = parse_toml(file, text)?;
        raw.validate(file)
    }

    pub fn service(&self, name: &str) -> Option<&ServiceConfig> {
        self.services.iter().find(|s| s.name == name)
    }

    /// The file whose existence puts `service` in maintenance, if one is configured.
    pub fn maintenance_file(&self, service: &ServiceConfig) -> Option<PathBuf> {
        service.maintenance_file.clone().or_else(|| self.maintenance_dir.as_ref().map(|dir| dir.join(&service.name)))
    }
}

/// The local host name, the default instance id.
pub fn hostname() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

impl RawConfig {
    fn validate(self, file: &Path) -> Result<Config, ConfigError> {
        let check = Checker::new(file);
        let instance_id = match &self.instance_id {
            Some(id) => id.clone(),
            None => hostname(),
        };
        if !valid_instance_id(&instance_id) {
            return Err(check.invalid(
                "instance_id",
                quoted(&instance_id),
                "a non-empty name without '/', spaces or control characters, not starting with \"base64_\"",
            ));
        }
        let zookeeper = self.zookeeper.validate(&check, "zookeeper")?;
        let status_listen = self.status.as_ref().map(|s| s.validate(&check)).transpose()?;
        let shutdown_grace = check.duration_or(
            "shutdown_grace",
            self.shutdown_grace.as_deref(),
            Duration::from_millis(100)..=Duration::from_secs(60),
            DEFAULT_SHUTDOWN_GRACE,
        )?;
        let mut services = Vec::with_capacity(self.service.len());
        let mut names = BTreeSet::new();
        let mut endpoints = BTreeSet::new();
        for (i, raw) in self.service.into_iter().enumerate() {
            let service = raw.validate(&check, &format!("service[{i}]"))?;
            if !names.insert(service.name.clone()) {
                return Err(check.invalid(
                    format!("service[{i}].name"),
                    quoted(&service.name),
                    "a name no other service has",
                ));
            }
            if !endpoints.insert((service.zk_path.clone(), service.host.clone(), service.port)) {
                return Err(check.invalid(
                    format!("service[{i}].port"),
                    service.port,
                    "a host and port that no other service registers under the same zk_path",
                ));
            }
            services.push(service);
        }
        Ok(Config {
            file: file.to_owned(),
            instance_id,
            zookeeper,
            status_listen,
            maintenance_dir: self.maintenance_dir,
            shutdown_grace,
            services,
        })
    }
}

/// An instance id Axon accepts (also what `import-nerve` checks before writing one).
pub(crate) fn valid_instance_id(id: &str) -> bool {
    !id.is_empty()
        && id != "."
        && id != ".."
        && !id.starts_with(ENCODED_PREFIX)
        && !id.chars().any(|c| c == '/' || c.is_whitespace() || c.is_control())
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

pub(crate) fn valid_label_key(key: &str) -> bool {
    !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
}

impl RawService {
    fn validate(self, check: &Checker<'_>, at: &str) -> Result<ServiceConfig, ConfigError> {
        if !valid_name(&self.name) {
            return Err(check.invalid(format!("{at}.name"), quoted(&self.name), "letters, digits, '_', '-' or '.'"));
        }
        let host = self.host.trim().to_owned();
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control() || c == '/') {
            return Err(check.invalid(format!("{at}.host"), quoted(&self.host), "an IP address or host name"));
        }
        if self.port == 0 {
            return Err(check.invalid(format!("{at}.port"), self.port, "a port from 1 to 65535"));
        }
        let zk_path = check.zk_path(&format!("{at}.zk_path"), &self.zk_path)?;
        if zk_path == "/" {
            return Err(check.invalid(format!("{at}.zk_path"), quoted(&self.zk_path), "a path below the root"));
        }
        let weight = match self.weight {
            Some(w) => Some(check.range(&format!("{at}.weight"), w, 0, MAX_WEIGHT)?),
            None => None,
        };
        if let Some(labels) = &self.labels {
            for (key, value) in labels {
                if !valid_label_key(key) {
                    return Err(check.invalid(
                        format!("{at}.labels"),
                        quoted(key),
                        "label names of letters, digits, '_', '-', '.' or '/'",
                    ));
                }
                if value.chars().any(|c| c.is_control() || c == ',') {
                    return Err(check.invalid(
                        format!("{at}.labels.{key}"),
                        quoted(value),
                        "a value without ',' or control characters",
                    ));
                }
            }
        }
        let path_encoding = match self.path_encoding.as_deref() {
            None | Some("none") => PathEncoding::None,
            Some("base64") => PathEncoding::Base64,
            Some(other) => {
                return Err(check.invalid(format!("{at}.path_encoding"), quoted(other), "\"none\" or \"base64\""));
            }
        };
        let check_interval = check.duration_or(
            &format!("{at}.check_interval"),
            self.check_interval.as_deref(),
            Duration::from_millis(100)..=Duration::from_secs(3600),
            DEFAULT_CHECK_INTERVAL,
        )?;
        if self.checks.is_empty() {
            return Err(check.invalid(format!("{at}.checks"), "[]", "at least one [[service.checks]] table"));
        }
        let checks = self
            .checks
            .into_iter()
            .enumerate()
            .map(|(j, raw)| raw.validate(check, &format!("{at}.checks[{j}]"), &host, self.port, check_interval))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ServiceConfig {
            name: self.name,
            host,
            port: self.port,
            zk_path,
            weight,
            labels: self.labels,
            haproxy_server_options: self.haproxy_server_options,
            check_interval,
            checks,
            maintenance_file: self.maintenance_file,
            path_encoding,
        })
    }
}

impl RawCheck {
    fn validate(
        self,
        check: &Checker<'_>,
        at: &str,
        service_host: &str,
        service_port: u16,
        interval: Duration,
    ) -> Result<CheckConfig, ConfigError> {
        let timeout = check.duration_or(
            &format!("{at}.timeout"),
            self.timeout.as_deref(),
            Duration::from_millis(1)..=interval,
            DEFAULT_CHECK_TIMEOUT.min(interval),
        )?;
        let count = |field: &str, value: Option<u32>, default: u32| -> Result<NonZeroU32, ConfigError> {
            let value = value.unwrap_or(default);
            let value = check.range(&format!("{at}.{field}"), value, 1, 1000)?;
            NonZeroU32::new(value)
                .ok_or_else(|| check.invalid(format!("{at}.{field}"), value, "a number from 1 to 1000"))
        };
        let rise = count("rise", self.rise, DEFAULT_RISE)?;
        let fall = count("fall", self.fall, DEFAULT_FALL)?;
        let host = self.host.clone().unwrap_or_else(|| service_host.to_owned());
        let port = match self.port {
            Some(0) => return Err(check.invalid(format!("{at}.port"), 0, "a port from 1 to 65535")),
            Some(p) => p,
            None => service_port,
        };
        // The fields that belong to some check types only, each with those types.
        let specific: [(&str, bool, &[&str]); 11] = [
            ("host", self.host.is_some(), &["tcp", "http", "redis"]),
            ("port", self.port.is_some(), &["tcp", "http", "redis"]),
            ("uri", self.uri.is_some(), &["http"]),
            ("https", self.https.is_some(), &["http"]),
            ("headers", !self.headers.is_empty(), &["http"]),
            ("expect_status", self.expect_status.is_some(), &["http"]),
            ("expect_body", self.expect_body.is_some(), &["http"]),
            ("keepalive", self.keepalive.is_some(), &["http"]),
            ("command", self.command.is_some(), &["exec"]),
            ("username", self.username.is_some(), &["redis"]),
            ("password", self.password.is_some(), &["redis"]),
        ];
        if CHECK_TYPES.contains(&self.kind.as_str()) {
            for (field, present, types) in specific {
                if present && !types.contains(&self.kind.as_str()) {
                    return Err(check.invalid(
                        format!("{at}.{field}"),
                        "(set)",
                        format!("no `{field}` on a {} check: only {} checks take it", self.kind, one_of(types)),
                    ));
                }
            }
        }
        let kind = match self.kind.as_str() {
            "tcp" => CheckKind::Tcp { host, port },
            "http" => {
                let uri = self.uri.clone().unwrap_or_else(|| "/".to_owned());
                if !uri.starts_with('/') || uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(check.invalid(
                        format!("{at}.uri"),
                        quoted(&uri),
                        "a path starting with '/', such as \"/health\"",
                    ));
                }
                for (name, value) in &self.headers {
                    let bad_name = name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
                    if bad_name || value.chars().any(|c| c.is_control()) {
                        return Err(check.invalid(
                            format!("{at}.headers.{name}"),
                            quoted(value),
                            "an HTTP header name and a value without control characters",
                        ));
                    }
                }
                let status = match &self.expect_status {
                    Some(text) => parse_status_range(text).ok_or_else(|| {
                        check.invalid(
                            format!("{at}.expect_status"),
                            quoted(text),
                            "a status or range such as \"200\" or \"200-299\"",
                        )
                    })?,
                    None => DEFAULT_HTTP_STATUS,
                };
                CheckKind::Http(HttpCheck {
                    host,
                    port,
                    uri,
                    https: self.https.unwrap_or(false),
                    headers: self.headers.into_iter().collect(),
                    status,
                    body_contains: self.expect_body,
                    keepalive: self.keepalive.unwrap_or(true),
                })
            }
            "exec" => match self.command {
                Some(command) if !command.trim().is_empty() => CheckKind::Exec { command },
                other => {
                    return Err(check.invalid(
                        format!("{at}.command"),
                        quoted(other.as_deref().unwrap_or("")),
                        "a shell command whose exit status 0 means healthy",
                    ));
                }
            },
            "redis" => {
                // A password is never echoed, not even in an error.
                if self.password.as_ref().is_some_and(|p| p.expose().is_empty()) {
                    return Err(check.invalid(format!("{at}.password"), "\"\"", "a non-empty password"));
                }
                if let Some(username) = &self.username {
                    if username.is_empty() || username.chars().any(char::is_control) {
                        return Err(check.invalid(
                            format!("{at}.username"),
                            quoted(username),
                            "a non-empty user name without control characters",
                        ));
                    }
                    if self.password.is_none() {
                        return Err(check.invalid(
                            format!("{at}.username"),
                            quoted(username),
                            "a `password` with it: Redis's AUTH takes a user name and a password",
                        ));
                    }
                }
                CheckKind::Redis { host, port, username: self.username, password: self.password }
            }
            other => {
                return Err(check.invalid(
                    format!("{at}.type"),
                    quoted(other),
                    "one of \"tcp\", \"http\", \"exec\", \"redis\"",
                ));
            }
        };
        Ok(CheckConfig { kind, timeout, rise, fall })
    }
}

fn parse_status_range(text: &str) -> Option<RangeInclusive<u16>> {
    let valid = |code: u16| (100..=599).contains(&code);
    let (low, high) = match text.split_once('-') {
        Some((low, high)) => (low.trim().parse().ok()?, high.trim().parse().ok()?),
        None => {
            let code = text.trim().parse().ok()?;
            (code, code)
        }
    };
    (valid(low) && valid(high) && low <= high).then_some(low..=high)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::Change;

    const MINIMAL: &str = r#"
instance_id = "host1"
[zookeeper]
connect = "127.0.0.1:2181"
[[service]]
name = "web"
host = "127.0.0.1"
port = 8080
zk_path = "/nerve/services/web/services"
[[service.checks]]
type = "tcp"
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("registrar.toml"), text)
    }

    #[test]
    fn minimal_config_gets_the_defaults() {
        let config = parse(MINIMAL).unwrap();
        let web = &config.services[0];
        assert_eq!(config.instance_id, "host1");
        assert_eq!(web.check_interval, DEFAULT_CHECK_INTERVAL);
        assert_eq!(web.checks[0].rise.get(), DEFAULT_RISE);
        assert_eq!(web.checks[0].kind, CheckKind::Tcp { host: "127.0.0.1".into(), port: 8080 });
        assert_eq!(web.record("host1").to_json(), br#"{"host":"127.0.0.1","port":8080,"name":"host1"}"#);
        assert_eq!(config.maintenance_file(web), None);
    }

    #[test]
    fn full_http_check() {
        let text = MINIMAL.replace(
            "type = \"tcp\"",
            r#"type = "http"
uri = "/health"
https = true
headers = { Host = "web.internal" }
expect_status = "200-299"
expect_body = "OK"
timeout = "250ms"
rise = 3
fall = 1"#,
        );
        let config = parse(&text).unwrap();
        let check = &config.services[0].checks[0];
        let CheckKind::Http(http) = &check.kind else { panic!("{check:?}") };
        assert_eq!(http.url(), "https://127.0.0.1:8080/health");
        assert_eq!(http.status, 200..=299);
        assert_eq!(check.timeout, Duration::from_millis(250));
        assert_eq!((check.rise.get(), check.fall.get()), (3, 1));
    }

    #[test]
    fn redis_check_keeps_its_password_out_of_sight() {
        let text = MINIMAL
            .replace("type = \"tcp\"", "type = \"redis\"\nport = 6379\nusername = \"probe\"\npassword = \"hunter2\"");
        let config = parse(&text).unwrap();
        let kind = &config.services[0].checks[0].kind;
        assert_eq!(
            *kind,
            CheckKind::Redis {
                host: "127.0.0.1".into(),
                port: 6379,
                username: Some("probe".into()),
                password: Some(Secret::new("hunter2".into())),
            }
        );
        assert_eq!((kind.name(), kind.target()), ("redis", "127.0.0.1:6379".to_owned()));
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2") && shown.contains("Secret(redacted)"), "{shown}");

        let plain = parse(&MINIMAL.replace("type = \"tcp\"", "type = \"redis\"")).unwrap();
        let expected = CheckKind::Redis { host: "127.0.0.1".into(), port: 8080, username: None, password: None };
        assert_eq!(plain.services[0].checks[0].kind, expected);
    }

    /// `password` and `username` belong to redis checks only, and say so; nothing echoes a
    /// password.
    #[test]
    fn redis_fields_on_other_checks_and_bad_credentials() {
        let cases: &[(&str, &str)] = &[
            (
                "type = \"tcp\"\npassword = \"hunter2\"",
                "`service[0].checks[0].password` = (set): expected no `password` on a tcp check: only redis checks take it",
            ),
            (
                "type = \"http\"\nusername = \"probe\"",
                "`service[0].checks[0].username` = (set): expected no `username` on a http check: only redis checks take it",
            ),
            (
                "type = \"exec\"\ncommand = \"true\"\npassword = \"hunter2\"",
                "`service[0].checks[0].password` = (set): expected no `password` on a exec check: only redis checks take it",
            ),
            (
                "type = \"exec\"\ncommand = \"true\"\nport = 1",
                "`service[0].checks[0].port` = (set): expected no `port` on a exec check: only tcp, http or redis checks take it",
            ),
            (
                "type = \"exec\"\ncommand = \"true\"\nuri = \"/\"",
                "`service[0].checks[0].uri` = (set): expected no `uri` on a exec check: only http checks take it",
            ),
            (
                "type = \"redis\"\nuri = \"/\"",
                "`service[0].checks[0].uri` = (set): expected no `uri` on a redis check: only http checks take it",
            ),
            (
                "type = \"redis\"\ncommand = \"true\"",
                "`service[0].checks[0].command` = (set): expected no `command` on a redis check: only exec checks take it",
            ),
            (
                "type = \"redis\"\nusername = \"probe\"",
                "`service[0].checks[0].username` = \"probe\": expected a `password` with it",
            ),
            (
                "type = \"redis\"\npassword = \"\"",
                "`service[0].checks[0].password` = \"\": expected a non-empty password",
            ),
            (
                "type = \"redis\"\nusername = \"\"\npassword = \"hunter2\"",
                "`service[0].checks[0].username` = \"\": expected a non-empty user name",
            ),
            (
                "type = \"redis\"\npassword = 271828",
                "`service[0].checks[0].password`: invalid type: integer, expected a string",
            ),
        ];
        for (to, expected) in cases {
            let err = parse(&MINIMAL.replacen("type = \"tcp\"", to, 1)).unwrap_err().to_string();
            assert!(err.contains(expected), "expected {expected:?} in:\n{err}");
            assert!(!err.contains("hunter2") && !err.contains("271828"), "{err}");
        }
    }

    #[test]
    fn health_is_relearnt_only_for_another_endpoint() {
        let a = parse(MINIMAL).unwrap().services[0].clone();
        let weight = ServiceConfig { weight: Some(5), ..a.clone() };
        let port = ServiceConfig { port: 9090, ..a.clone() };
        let mut timing = a.clone();
        timing.checks[0].timeout = Duration::from_millis(250);
        timing.checks[0].rise = NonZeroU32::new(5).unwrap();
        timing.check_interval = Duration::from_secs(3);
        let mut checks = a.clone();
        checks.checks.push(a.checks[0].clone());
        assert_eq!(a.change_to(&a.clone()), Change::None);
        assert_eq!(a.change_to(&weight), Change::Settings);
        assert_eq!(a.change_to(&timing), Change::Settings);
        assert_eq!(a.change_to(&checks), Change::Checks);
        assert_eq!(a.change_to(&port), Change::Endpoint);
    }

    /// Each bad configuration names the field and the bad value; these are the messages
    /// docs/configuration.md shows.
    #[test]
    fn bad_configurations_name_field_and_value() {
        let cases: &[(&str, &str, &str)] = &[
            ("port = 8080", "port = 0", "`service[0].port` = 0"),
            ("port = 8080", "port = 80800", "`service[0].port`: invalid value: integer `80800`, expected u16"),
            ("name = \"web\"", "name = \"web site\"", "`service[0].name` = \"web site\""),
            ("zk_path = \"/nerve/services/web/services\"", "zk_path = \"nerve\"", "`service[0].zk_path` = \"nerve\""),
            (
                "type = \"tcp\"",
                "type = \"udp\"",
                "`service[0].checks[0].type` = \"udp\": expected one of \"tcp\", \"http\", \"exec\", \"redis\"",
            ),
            (
                "type = \"tcp\"",
                "type = \"tcp\"\nrise = 0",
                "`service[0].checks[0].rise` = 0: expected a number from 1 to 1000",
            ),
            ("type = \"tcp\"", "type = \"tcp\"\ntimeout = \"soon\"", "`service[0].checks[0].timeout` = \"soon\""),
            (
                "type = \"tcp\"",
                "type = \"tcp\"\ntimeout = \"5s\"",
                "`service[0].checks[0].timeout` = \"5s\": expected a duration from 1ms to 1s",
            ),
            (
                "type = \"tcp\"",
                "type = \"tcp\"\nuri = \"/\"",
                "`service[0].checks[0].uri` = (set): expected no `uri` on a tcp check",
            ),
            ("type = \"tcp\"", "type = \"exec\"", "`service[0].checks[0].command` = \"\""),
            (
                "type = \"tcp\"",
                "type = \"http\"\nexpect_status = \"2xx\"",
                "`service[0].checks[0].expect_status` = \"2xx\"",
            ),
            ("type = \"tcp\"", "type = \"http\"\nuri = \"health\"", "`service[0].checks[0].uri` = \"health\""),
            ("port = 8080", "port = 8080\nweight = 300", "`service[0].weight` = 300: expected a number from 0 to 256"),
            ("port = 8080", "port = 8080\nlabels = { \"a b\" = \"x\" }", "`service[0].labels` = \"a b\""),
            ("port = 8080", "port = 8080\ncheck_interval = \"0s\"", "`service[0].check_interval` = \"0s\""),
            (
                "port = 8080",
                "port = 8080\nchecks_interval = \"1s\"",
                "`service[0].checks_interval`: unknown field `checks_interval`",
            ),
            ("connect = \"127.0.0.1:2181\"", "connect = \"127.0.0.1\"", "`zookeeper.connect` = \"127.0.0.1\""),
            (
                "connect = \"127.0.0.1:2181\"",
                "connect = \"127.0.0.1:2181\"\nsession_timeout = \"1h\"",
                "`zookeeper.session_timeout` = \"1h\"",
            ),
            ("instance_id = \"host1\"", "instance_id = \"a/b\"", "`instance_id` = \"a/b\""),
            (
                "instance_id = \"host1\"",
                "instance_id = \"host1\"\n[status]\nlisten = \"localhost\"",
                "`status.listen` = \"localhost\"",
            ),
        ];
        for (from, to, expected) in cases {
            let text = MINIMAL.replacen(from, to, 1);
            assert_ne!(text, MINIMAL, "{from}");
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.starts_with("registrar.toml: "), "{err}");
            assert!(err.contains(expected), "expected {expected:?} in:\n{err}");
        }
    }

    #[test]
    fn duplicate_services_are_refused() {
        let twice = format!("{MINIMAL}{}", &MINIMAL[MINIMAL.find("[[service]]").unwrap()..]);
        let err = parse(&twice).unwrap_err().to_string();
        assert!(err.contains("`service[1].name` = \"web\": expected a name no other service has"), "{err}");
        let same_endpoint = twice.replacen("name = \"web\"", "name = \"web2\"", 1);
        let err = parse(&same_endpoint).unwrap_err().to_string();
        assert!(err.contains("`service[1].port` = 8080"), "{err}");
    }

    #[test]
    fn status_ranges() {
        assert_eq!(parse_status_range("204"), Some(204..=204));
        assert_eq!(parse_status_range(" 200 - 399 "), Some(200..=399));
        for bad in ["", "99", "600", "300-200", "a-b", "200-"] {
            assert_eq!(parse_status_range(bad), None, "{bad}");
        }
    }
}
