//! Reading SmartStack's configurations (Nerve's and Synapse's JSON) faithfully, and writing
//! TOML values: what `axon-registrar import-nerve` and `axon-spoa import-synapse` share.
//! No I/O but [`read_conf_dir`], which both command lines use to read a conf dir.
//!
//! 1. Objects keep the file's order ([`Json`]; serde_json's own map sorts them), so services
//!    come out in the order they were written, and a key given twice is reported.
//! 2. Every field is accounted for: an [`Obj`] hands each field to the conversion as it is
//!    taken, and what is left at the end was not converted, unknown fields included; the
//!    converter reports it. A [`Warning`] names the file, the field and why.
//! 3. The services of a `service_conf_dir` follow those of the main file, by file name; a file
//!    replaces a service of the same name in its place, as Nerve and Synapse do.
//! 4. Axon keeps one ZooKeeper session: the first converted service's hosts give `[zookeeper]
//!    connect` ([`one_ensemble`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::config::ConfigError;

/// What a ZooKeeper host without a port connects to.
const ZK_DEFAULT_PORT: u16 = 2181;

/// The SmartStack daemon whose configuration is read, as messages name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    Nerve,
    Synapse,
}

impl fmt::Display for Tool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Tool::Nerve => "Nerve",
            Tool::Synapse => "Synapse",
        })
    }
}

impl Tool {
    /// Said of text that is not JSON and does not start as a JSON object does.
    fn not_json_hint(self) -> &'static str {
        match self {
            Tool::Nerve => " (Nerve also reads YAML: convert it to JSON first)",
            Tool::Synapse => " (Synapse also reads YAML and ERB: render it to JSON first)",
        }
    }

    /// What the main file holds.
    fn document(self) -> &'static str {
        match self {
            Tool::Nerve => "an object with `instance_id` and `services`",
            Tool::Synapse => "an object with `services` and `haproxy`",
        }
    }
}

/// Something in the input that did not carry over as it was, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The file it is in.
    pub file: String,
    /// The field, as a dotted path (`services.web.checks[0].type`).
    pub field: String,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.file, self.field, self.message)
    }
}

/// An input that cannot be converted at all.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{file}: not JSON: {detail}{hint}")]
    Syntax { file: String, detail: String, hint: &'static str },
    #[error("{file}: `{field}`: {problem}")]
    Unusable { file: String, field: String, problem: String },
    #[error("{file}: the converted configuration does not validate (a bug in the conversion): {source}")]
    Invalid {
        file: String,
        #[source]
        source: ConfigError,
    },
}

/// What the command line found in the directory a `service_conf_dir` names.
#[derive(Debug, Clone, Default)]
pub enum ServiceDir {
    /// Not looked at.
    #[default]
    NotRead,
    /// It could not be read.
    Unreadable { reason: String },
    /// Its `*.json` files, sorted by name, and the files Nerve or Synapse would read that were
    /// not (YAML).
    Read { files: Vec<ServiceFile>, skipped: Vec<String> },
}

/// One service's file in a `service_conf_dir`.
#[derive(Debug, Clone)]
pub struct ServiceFile {
    /// The service's name: the file's name without `.json`.
    pub name: String,
    /// The file, as messages name it.
    pub file: String,
    pub text: String,
}

/// The `service_conf_dir` a configuration names, if any, so that the command line can read it
/// before converting. `None` too for text that is not JSON (the conversion says why).
pub fn service_conf_dir(text: &str) -> Option<String> {
    match serde_json::from_str::<Json>(text).ok()? {
        Json::Object(entries) => entries.into_iter().rev().find_map(|(key, value)| match value {
            Json::String(dir) if key == "service_conf_dir" => Some(dir),
            _ => None,
        }),
        _ => None,
    }
}

/// The main file's object, its fields to be taken. An error if `text` is not JSON or not an
/// object.
pub fn open(tool: Tool, file: &str, text: &str, out: &mut Report) -> Result<Obj, ImportError> {
    let root = parse(tool, file, text)?;
    let Json::Object(entries) = root else {
        return Err(ImportError::Unusable {
            file: file.to_owned(),
            field: "(document)".to_owned(),
            problem: format!("expected {}, found {}", tool.document(), root.kind()),
        });
    };
    Ok(Obj::new(file, "", entries, out))
}

fn parse(tool: Tool, file: &str, text: &str) -> Result<Json, ImportError> {
    serde_json::from_str(text).map_err(|err| ImportError::Syntax {
        file: file.to_owned(),
        detail: err.to_string(),
        hint: if text.trim_start().starts_with('{') { "" } else { tool.not_json_hint() },
    })
}

/// A service as the input gives it: where, under which name, and its JSON.
#[derive(Debug)]
pub struct Source {
    pub file: String,
    /// The field path of its object (empty for a file of its own).
    pub at: String,
    pub name: String,
    pub value: Json,
}

/// Takes the main file's `services` and `service_conf_dir`: the services to convert, in order.
/// An error if a file of the directory is not JSON.
pub fn services(tool: Tool, top: &mut Obj, dir: &ServiceDir, out: &mut Report) -> Result<Vec<Source>, ImportError> {
    let file = top.file.clone();
    let mut sources: Vec<Source> = Vec::new();
    match top.take("services") {
        Some(Json::Object(services)) => {
            let mut services = Obj::new(&file, "services", services, out);
            for (name, value) in services.rest() {
                let at = services.field(&name);
                sources.push(Source { file: file.clone(), at, name, value });
            }
        }
        Some(other) => out.warn(
            &file,
            "services",
            format!("expected an object of services by name, found {}: nothing converted from it", other.kind()),
        ),
        None => {}
    }
    if let Some(conf_dir) = top.take("service_conf_dir") {
        read_service_dir(tool, &file, conf_dir, dir, &mut sources, out)?;
    }
    Ok(sources)
}

fn read_service_dir(
    tool: Tool,
    file: &str,
    conf_dir: Json,
    dir: &ServiceDir,
    sources: &mut Vec<Source>,
    out: &mut Report,
) -> Result<(), ImportError> {
    let Json::String(name) = conf_dir else {
        out.warn(file, "service_conf_dir", format!("expected a directory, found {}: not read", conf_dir.kind()));
        return Ok(());
    };
    match dir {
        ServiceDir::NotRead => {
            out.warn(file, "service_conf_dir", format!("{name:?} was not read: its services are not converted"))
        }
        ServiceDir::Unreadable { reason } => out.warn(
            file,
            "service_conf_dir",
            format!(
                "{name:?} cannot be read ({reason}; a relative path is taken from the current directory, as {tool} \
                 does): its services are not converted"
            ),
        ),
        ServiceDir::Read { files, skipped } => {
            for skipped in skipped {
                out.warn(
                    skipped,
                    "(document)",
                    format!("YAML, which {tool} reads and this conversion does not: convert it to JSON and run again"),
                );
            }
            for service in files {
                let value = parse(tool, &service.file, &service.text)?;
                // A file replaces a service of the same name, in its place (a Ruby hash).
                let source =
                    Source { file: service.file.clone(), at: String::new(), name: service.name.clone(), value };
                match sources.iter_mut().find(|s| s.name == service.name) {
                    Some(entry) => {
                        out.warn(&entry.file, &entry.at, format!("replaced by {}, as {tool} does", service.file));
                        *entry = source;
                    }
                    None => sources.push(source),
                }
            }
        }
    }
    Ok(())
}

/// Axon keeps one ZooKeeper session, with the ensemble of the first converted service: that
/// service, and the others whose `hosts` are another ensemble (the caller names each in a
/// warning). An error when no service was converted.
pub fn one_ensemble<'s, S>(
    file: &str,
    services: &'s [S],
    hosts: impl Fn(&S) -> &ZkHosts,
) -> Result<(&'s S, Vec<&'s S>), ImportError> {
    let Some(first) = services.first() else {
        return Err(ImportError::Unusable {
            file: file.to_owned(),
            field: "services".to_owned(),
            problem: "no service could be converted (see the warnings above): nothing to write".to_owned(),
        });
    };
    let others = services.iter().skip(1).filter(|s| !hosts(s).same_ensemble(hosts(first))).collect();
    Ok((first, others))
}

/// The warnings of one conversion, in the order they arose.
#[derive(Debug, Default)]
pub struct Report {
    warnings: Vec<Warning>,
}

impl Report {
    pub fn warn(&mut self, file: &str, field: &str, message: impl Into<String>) {
        self.warnings.push(Warning { file: file.to_owned(), field: field.to_owned(), message: message.into() });
    }

    pub fn into_warnings(self) -> Vec<Warning> {
        self.warnings
    }
}

// ---- JSON as written ------------------------------------------------------------------------

/// JSON with objects in the file's order, a key given twice kept twice (an [`Obj`] reports it).
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    /// What it is, for a message: "a string", "an object"…
    pub fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Number(_) => "a number",
            Json::String(_) => "a string",
            Json::Array(_) => "a list",
            Json::Object(_) => "an object",
        }
    }

    /// The value as JSON, shortened for a message.
    pub fn shown(&self) -> String {
        let mut text = String::new();
        self.write(&mut text);
        if text.chars().count() > 60 {
            let cut: String = text.chars().take(57).collect();
            format!("{cut}…")
        } else {
            text
        }
    }

    fn write(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Number(n) => out.push_str(&n.to_string()),
            Json::String(s) => out.push_str(&serde_json::Value::String(s.clone()).to_string()),
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Json::Object(entries) => {
                out.push('{');
                for (i, (key, value)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::Value::String(key.clone()).to_string());
                    out.push(':');
                    value.write(out);
                }
                out.push('}');
            }
        }
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Json, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_none<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Json, E> {
        Ok(Json::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Json, E> {
        Ok(Json::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Json, E> {
        Ok(Json::Number(n.into()))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Json, E> {
        Ok(serde_json::Number::from_f64(n).map_or(Json::Null, Json::Number))
    }

    fn visit_str<E>(self, s: &str) -> Result<Json, E> {
        Ok(Json::String(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Json, E> {
        Ok(Json::String(s))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry::<String, Json>()? {
            entries.push(entry);
        }
        Ok(Json::Object(entries))
    }
}

/// One JSON object being converted: each field is taken as it is converted, and what is left
/// at the end was not (the caller reports it).
#[derive(Debug)]
pub struct Obj {
    file: String,
    at: String,
    entries: Vec<(String, Json)>,
}

impl Obj {
    /// The object of `entries`, found in `file` at field path `at`. A key given twice keeps its
    /// first place and its last value, as a Ruby hash does, and is reported.
    pub fn new(file: &str, at: &str, entries: Vec<(String, Json)>, out: &mut Report) -> Obj {
        let mut index: BTreeMap<String, usize> = BTreeMap::new();
        let mut merged: Vec<(String, Json)> = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            match index.get(&key) {
                Some(&i) => {
                    out.warn(file, &field(at, &key), "given twice: the last value is used, as Ruby does");
                    if let Some(slot) = merged.get_mut(i) {
                        slot.1 = value;
                    }
                }
                None => {
                    index.insert(key.clone(), merged.len());
                    merged.push((key, value));
                }
            }
        }
        Obj { file: file.to_owned(), at: at.to_owned(), entries: merged }
    }

    /// The file it is in.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// Its field path (empty for a whole document).
    pub fn at(&self) -> &str {
        &self.at
    }

    pub fn take(&mut self, key: &str) -> Option<Json> {
        let i = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.remove(i).1)
    }

    /// A field's value, left in place.
    pub fn peek(&self, key: &str) -> Option<&Json> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The fields not taken (taking them).
    pub fn rest(&mut self) -> Vec<(String, Json)> {
        std::mem::take(&mut self.entries)
    }

    /// The path of its field `key`.
    pub fn field(&self, key: &str) -> String {
        field(&self.at, key)
    }
}

/// `at.key`, the key quoted when it is not a plain word.
pub fn field(at: &str, key: &str) -> String {
    let plain = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
    let key = if plain { key.to_owned() } else { format!("{key:?}") };
    if at.is_empty() { key } else { format!("{at}.{key}") }
}

/// A field's value for a message: as [`Json::shown`], or "nothing" when it is missing.
pub fn shown_or_nothing(value: Option<&Json>) -> String {
    value.map_or("nothing".to_owned(), Json::shown)
}

/// A field path, or "(document)" for a whole file's.
pub fn at_or_document(at: &str) -> &str {
    if at.is_empty() { "(document)" } else { at }
}

/// Seconds, as Nerve reads them (`to_f`): a number, or a string holding one.
pub fn seconds(value: &Json) -> Option<f64> {
    let s = match value {
        Json::Number(n) => n.as_f64()?,
        Json::String(text) => text.trim().parse().ok()?,
        _ => return None,
    };
    (s.is_finite() && s >= 0.0).then_some(s)
}

/// Seconds in whole milliseconds, rounded.
pub fn millis(seconds: f64) -> u64 {
    // `as` saturates: a huge number of seconds becomes u64::MAX, clamped by the callers.
    (seconds * 1000.0).round() as u64
}

/// A whole number: a number without a fraction, or a string holding one.
pub fn integer(value: &Json) -> Option<i64> {
    match value {
        Json::Number(n) => {
            n.as_i64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 1e15).map(|f| f as i64))
        }
        Json::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

/// A port from 1 to 65535, as a number or a string.
pub fn port_of(value: &Json) -> Option<u16> {
    integer(value).and_then(|n| u16::try_from(n).ok()).filter(|p| *p != 0)
}

/// Takes the ZooKeeper path a service requires at `key`, without its trailing '/'; `None`, with
/// a warning saying that `expected` was, if it is missing or not a path below the root.
pub fn take_zk_path(obj: &mut Obj, key: &str, expected: &str, out: &mut Report) -> Option<String> {
    match obj.take(key) {
        Some(Json::String(path)) if valid_zk_path(&path) => Some(trim_path(&path)),
        other => {
            let found = shown_or_nothing(other.as_ref());
            out.warn(&obj.file, &obj.field(key), format!("expected {expected}, found {found}: service left out"));
            None
        }
    }
}

/// An absolute ZooKeeper path below the root, without empty, `.` or `..` parts (a trailing
/// '/' allowed).
fn valid_zk_path(path: &str) -> bool {
    let trimmed = trim_path(path);
    trimmed.starts_with('/')
        && trimmed != "/"
        && trimmed[1..].split('/').all(|part| !part.is_empty() && part != "." && part != "..")
        && !trimmed.chars().any(|c| c.is_control())
}

/// The path without trailing '/' (the root stays "/").
fn trim_path(path: &str) -> String {
    if path.len() > 1 { path.trim_end_matches('/').to_owned() } else { path.to_owned() }
}

// ---- Names ----------------------------------------------------------------------------------

/// A name Axon's configurations accept: letters, digits, '_', '-' and '.' (any other character
/// becomes '_'), at most `limit` characters, "service" rather than nothing.
pub fn clean_name(name: &str, limit: usize) -> String {
    let clean: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') { c } else { '_' })
        .take(limit)
        .collect();
    if clean.is_empty() { "service".to_owned() } else { clean }
}

/// `name`, or if it is taken the first of `name_2`, `name_3`… that is not (within `limit`
/// characters).
pub fn unique(name: &str, taken: &BTreeSet<String>, limit: usize) -> String {
    unique_where(name, limit, |n| taken.contains(n))
}

/// As [`unique`], with `taken` telling which names are (for names compared other than
/// exactly).
pub fn unique_where(name: &str, limit: usize, taken: impl Fn(&str) -> bool) -> String {
    if !taken(name) {
        return name.to_owned();
    }
    (2..).map(|n| suffixed(name, &format!("_{n}"), limit)).find(|n| !taken(n)).unwrap_or_else(|| name.to_owned())
}

/// `name` then `suffix`, within `limit` characters: `name` is cut to make room.
pub fn suffixed(name: &str, suffix: &str, limit: usize) -> String {
    let room = limit.saturating_sub(suffix.len());
    format!("{}{suffix}", name.chars().take(room).collect::<String>())
}

// ---- ZooKeeper hosts ------------------------------------------------------------------------

/// A service's ZooKeeper hosts (Nerve's `zk_hosts`, Synapse's `hosts`): what `[zookeeper]
/// connect` is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkHosts {
    /// `host:port`, in the file's order.
    hosts: Vec<String>,
    chroot: Option<String>,
}

impl ZkHosts {
    /// Takes the hosts a service requires (as `tool` does) at `key`; `None`, with a warning,
    /// when they are missing or none is usable.
    pub fn take(tool: Tool, obj: &mut Obj, key: &str, out: &mut Report) -> Option<ZkHosts> {
        match obj.take(key) {
            Some(value) => ZkHosts::parse(value, &obj.file, &obj.field(key), out),
            None => {
                out.warn(&obj.file, &obj.field(key), format!("missing ({tool} requires it): service left out"));
                None
            }
        }
    }

    /// The hosts of `value`, a list of `host[:port][/chroot]` (or one string of them separated
    /// by commas), found in `file` at `at`. `None` (with a warning) when no host is usable.
    fn parse(value: Json, file: &str, at: &str, out: &mut Report) -> Option<ZkHosts> {
        let entries: Vec<Json> = match value {
            Json::Array(items) => items,
            // What a connection string says; Synapse's README writes one host as a string.
            Json::String(text) => text.split(',').map(|part| Json::String(part.to_owned())).collect(),
            other => {
                out.warn(file, at, format!("expected a list of host:port, found {}: service left out", other.kind()));
                return None;
            }
        };
        let mut hosts = Vec::new();
        let mut chroots = BTreeSet::new();
        for (i, entry) in entries.into_iter().enumerate() {
            let here = format!("{at}[{i}]");
            let Json::String(text) = entry else {
                out.warn(file, &here, format!("expected host:port, found {}: left out", entry.shown()));
                continue;
            };
            let text = text.trim();
            let (address, chroot) = match text.split_once('/') {
                Some((address, chroot)) => (address, Some(format!("/{chroot}"))),
                None => (text, None),
            };
            let address = if address.rsplit_once(':').is_some_and(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
            {
                address.to_owned()
            } else {
                let with_port = format!("{address}:{ZK_DEFAULT_PORT}");
                if !address.is_empty() {
                    out.warn(file, &here, format!("{text:?} has no port: {with_port:?} written (ZooKeeper's default)"));
                }
                with_port
            };
            let valid = address.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty()
                    && !host.chars().any(|c| c.is_whitespace() || c.is_control() || c == ',')
                    && port.parse::<u16>().is_ok_and(|p| p != 0)
            });
            if !valid {
                out.warn(file, &here, format!("{text:?} is not host:port: left out"));
                continue;
            }
            if let Some(chroot) = chroot {
                chroots.insert(chroot);
            }
            hosts.push(address);
        }
        if hosts.is_empty() {
            out.warn(file, at, "no usable ZooKeeper host: service left out");
            return None;
        }
        let mut chroots = chroots.into_iter();
        let chroot = chroots.next().filter(|c| valid_zk_path(c)).map(|c| trim_path(&c)).filter(|c| c != "/");
        if chroots.next().is_some() {
            out.warn(file, at, format!("several chroots: {} used", chroot.as_deref().unwrap_or("none")));
        }
        Some(ZkHosts { hosts, chroot })
    }

    /// The same hosts, in any order, and the same chroot.
    fn same_ensemble(&self, other: &ZkHosts) -> bool {
        let sorted = |hosts: &[String]| hosts.iter().cloned().collect::<BTreeSet<_>>();
        sorted(&self.hosts) == sorted(&other.hosts) && self.chroot == other.chroot
    }

    /// The connection string: `host:port,host:port[/chroot]`.
    pub fn connect(&self) -> String {
        format!("{}{}", self.hosts.join(","), self.chroot.as_deref().unwrap_or(""))
    }
}

// ---- TOML values ----------------------------------------------------------------------------

/// A TOML basic string.
pub fn string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A TOML key: bare when it can be.
fn key(text: &str) -> String {
    if !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-')) {
        text.to_owned()
    } else {
        string(text)
    }
}

/// A TOML inline table of strings: `{ a = "x", b = "y" }`.
pub fn inline_table(map: &BTreeMap<String, String>) -> String {
    if map.is_empty() {
        return "{}".to_owned();
    }
    let pairs: Vec<String> = map.iter().map(|(k, v)| format!("{} = {}", key(k), string(v))).collect();
    format!("{{ {} }}", pairs.join(", "))
}

/// A duration as Axon's configurations write it (a TOML string's text): "2s", "500ms".
pub fn duration(ms: u64) -> String {
    if ms.is_multiple_of(1000) { format!("{}s", ms / 1000) } else { format!("{ms}ms") }
}

/// The `*.json` files of a `service_conf_dir` (relative to the current directory, as Nerve
/// and Synapse take it), and the YAML ones, which are not read.
pub fn read_conf_dir(dir: &std::path::Path) -> ServiceDir {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) => return ServiceDir::Unreadable { reason: err.to_string() },
    };
    // As Ruby's glob: names starting with a dot are not matched.
    let mut paths: Vec<std::path::PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().is_some_and(|n| !n.to_string_lossy().starts_with('.')))
        .collect();
    paths.sort();
    let (mut files, mut skipped) = (Vec::new(), Vec::new());
    for path in paths {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or_default();
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        match ext {
            "json" => match std::fs::read_to_string(&path) {
                Ok(text) => files.push(ServiceFile { name, file: path.display().to_string(), text }),
                Err(err) => return ServiceDir::Unreadable { reason: format!("{}: {err}", path.display()) },
            },
            "yaml" => skipped.push(path.display().to_string()),
            _ => {}
        }
    }
    ServiceDir::Read { files, skipped }
}

#[cfg(test)]
mod tests;
