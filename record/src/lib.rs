//! The znode record: the contract between axon-registrar (writer) and axon-spoa (reader).
//!
//! Axon writes exactly what Airbnb's Nerve writes, so Nerve, Synapse and Axon interoperate in both
//! directions:
//! - a child `<zk_path>/<instance_id>_<10-digit sequence>`, created EPHEMERAL_SEQUENTIAL;
//! - its data, JSON `{"host":…,"port":…,"name":<instance_id>}` plus `weight`,
//!   `haproxy_server_options` and `labels` only when configured.
//!
//! Readers also accept Nerve's path encoding, `base64_<len>_<urlsafe-base64(json)>_<sequence>`,
//! which carries the same JSON in the child's name. No I/O.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use serde::Serialize;
use serde_json::Value;

/// The prefix of a path-encoded child name.
pub const ENCODED_PREFIX: &str = "base64_";

/// The largest record accepted, as ZooKeeper's default `jute.maxbuffer` would not pass more
/// and Nerve caps path encoding at 64 KiB.
pub const MAX_RECORD_BYTES: usize = 64 * 1024;

/// One registered instance of a service, as stored in a znode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    pub host: String,
    pub port: u16,
    /// The instance id (Nerve puts the host's name here, not the service's).
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub haproxy_server_options: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
}

/// Why bytes are not a valid record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record is {len} bytes, more than the {MAX_RECORD_BYTES} accepted")]
    TooLarge { len: usize },
    #[error("record is not a JSON object: {reason}")]
    NotJson { reason: String },
    #[error("record has no `{field}`")]
    Missing { field: &'static str },
    #[error("record field `{field}` is {value}, expected {expected}")]
    Invalid { field: &'static str, value: String, expected: &'static str },
}

impl Record {
    /// Nerve's JSON for this record.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising a struct of strings, integers and string maps cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a record written by Axon, Nerve or any tool that follows Nerve's format.
    ///
    /// Lenient where Synapse is lenient (a numeric string for `port` or `weight`, scalar label
    /// values, unknown fields ignored) and strict about what a proxy needs: `host` and `port`.
    pub fn from_json(bytes: &[u8]) -> Result<Record, RecordError> {
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(RecordError::TooLarge { len: bytes.len() });
        }
        let value: Value = serde_json::from_slice(bytes).map_err(|e| RecordError::NotJson { reason: e.to_string() })?;
        let Value::Object(mut map) = value else {
            return Err(RecordError::NotJson { reason: format!("found {}", kind(&value)) });
        };
        let host = match map.remove("host") {
            None | Some(Value::Null) => return Err(RecordError::Missing { field: "host" }),
            Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_owned(),
            Some(other) => return Err(invalid("host", &other, "a non-empty string")),
        };
        let port = match map.remove("port") {
            None | Some(Value::Null) => return Err(RecordError::Missing { field: "port" }),
            Some(v) => integer(&v)
                .and_then(|n| u16::try_from(n).ok())
                .filter(|&p| p != 0)
                .ok_or_else(|| invalid("port", &v, "an integer from 1 to 65535"))?,
        };
        let name = match map.remove("name") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s,
            Some(other) => return Err(invalid("name", &other, "a string")),
        };
        let weight = match map.remove("weight") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                integer(&v)
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| invalid("weight", &v, "a non-negative integer"))?,
            ),
        };
        let haproxy_server_options = match map.remove("haproxy_server_options") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(other) => return Err(invalid("haproxy_server_options", &other, "a string")),
        };
        let labels = match map.remove("labels") {
            None | Some(Value::Null) => None,
            Some(Value::Object(labels)) => {
                let mut out = BTreeMap::new();
                for (key, value) in labels {
                    let text = match value {
                        Value::String(s) => s,
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        other => return Err(invalid("labels", &other, "an object of scalar values")),
                    };
                    out.insert(key, text);
                }
                Some(out)
            }
            Some(other) => return Err(invalid("labels", &other, "an object of scalar values")),
        };
        Ok(Record { host, port, name, weight, haproxy_server_options, labels })
    }
}

fn integer(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn invalid(field: &'static str, value: &Value, expected: &'static str) -> RecordError {
    let mut shown = value.to_string();
    if shown.len() > 80 {
        let cut = (0..=80).rev().find(|&i| shown.is_char_boundary(i)).unwrap_or(0);
        shown.truncate(cut);
        shown.push('…');
    }
    RecordError::Invalid { field, value: shown, expected }
}

/// The name prefix under which an instance creates its sequential child.
pub fn child_prefix(instance_id: &str) -> String {
    format!("{instance_id}_")
}

/// The longest encoded record Nerve puts into a child's name; a longer one goes into a plain
/// name (the data always carries the record).
pub const MAX_ENCODED_NAME: usize = 65536;

/// The child name prefix of Nerve's path encoding, `base64_<len>_<urlsafe-base64(json)>_`, or
/// `None` when the encoded record would be longer than [`MAX_ENCODED_NAME`].
pub fn encoded_child_prefix(json: &[u8]) -> Option<String> {
    let encoded = URL_SAFE.encode(json);
    (encoded.len() <= MAX_ENCODED_NAME).then(|| format!("{ENCODED_PREFIX}{}_{encoded}_", encoded.len()))
}

/// Whether `name` is what a sequential create of `prefix` makes: the prefix and ten digits.
pub fn is_sequential_of(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix).is_some_and(|digits| digits.len() == 10 && digits.bytes().all(|b| b.is_ascii_digit()))
}

/// A child name as ZooKeeper completes a sequential create: the prefix and ten digits.
pub fn sequential_name(prefix: &str, sequence: i64) -> String {
    format!("{prefix}{sequence:010}")
}

/// Joins a parent path and a child name.
pub fn child_path(parent: &str, child: &str) -> String {
    if parent.ends_with('/') { format!("{parent}{child}") } else { format!("{parent}/{child}") }
}

/// What a child's name says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChildName<'a> {
    /// `<instance_id>_<sequence>`: the record is in the znode's data.
    Plain { instance: &'a str, sequence: Option<u64> },
    /// `base64_<len>_<b64>_<sequence>`: the record is in the name itself.
    Encoded { json: Vec<u8>, sequence: Option<u64> },
}

/// Why a `base64_` child name could not be decoded (a reader then falls back to the data).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("child name `{name}` is not a valid path encoding: {reason}")]
pub struct ChildNameError {
    pub name: String,
    pub reason: &'static str,
}

impl<'a> ChildName<'a> {
    /// Parses a child name. Never fails for a plain name; fails for a malformed `base64_` name.
    pub fn parse(name: &'a str) -> Result<ChildName<'a>, ChildNameError> {
        let Some(rest) = name.strip_prefix(ENCODED_PREFIX) else {
            let (instance, sequence) = split_sequence(name);
            return Ok(ChildName::Plain { instance, sequence });
        };
        let error = |reason| ChildNameError { name: name.to_owned(), reason };
        let (len, rest) = rest.split_once('_').ok_or_else(|| error("no length"))?;
        let len: usize = len.parse().map_err(|_| error("length is not a number"))?;
        let encoded = rest.get(..len).ok_or_else(|| error("shorter than its length"))?;
        let tail = &rest[len..];
        let sequence = match tail {
            "" | "_" => None,
            _ => Some(
                tail.strip_prefix('_')
                    .and_then(parse_sequence)
                    .ok_or_else(|| error("no sequence after the encoded record"))?,
            ),
        };
        let json = URL_SAFE
            .decode(encoded)
            .or_else(|_| URL_SAFE_NO_PAD.decode(encoded))
            .map_err(|_| error("not url-safe base64"))?;
        Ok(ChildName::Encoded { json, sequence })
    }

    /// The sequence ZooKeeper appended, if the name has one.
    pub fn sequence(&self) -> Option<u64> {
        match self {
            ChildName::Plain { sequence, .. } | ChildName::Encoded { sequence, .. } => *sequence,
        }
    }
}

/// The fuzz target's entry (fuzz/): bytes as a znode's data and as a child's name.
pub fn fuzz(data: &[u8]) -> bool {
    let mut parsed = Record::from_json(data).is_ok();
    if let Ok(name) = std::str::from_utf8(data)
        && let Ok(ChildName::Encoded { json, .. }) = ChildName::parse(name)
    {
        parsed |= Record::from_json(&json).is_ok();
    }
    parsed
}

fn split_sequence(name: &str) -> (&str, Option<u64>) {
    match name.rsplit_once('_') {
        Some((instance, digits)) => match parse_sequence(digits) {
            Some(seq) => (instance, Some(seq)),
            None => (name, None),
        },
        None => (name, None),
    }
}

fn parse_sequence(digits: &str) -> Option<u64> {
    if digits.len() == 10 && digits.bytes().all(|b| b.is_ascii_digit()) { digits.parse().ok() } else { None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_encoded_prefix_reads_back_as_the_record() {
        let json = sample().to_json();
        let prefix = encoded_child_prefix(&json).unwrap();
        let name = sequential_name(&prefix, 7);
        assert!(is_sequential_of(&name, &prefix));
        assert!(!is_sequential_of(&name, "host1_"));
        assert!(!is_sequential_of(&format!("{prefix}12"), &prefix));
        assert_eq!(ChildName::parse(&name).unwrap(), ChildName::Encoded { json, sequence: Some(7) });
        assert!(encoded_child_prefix(&vec![b'x'; MAX_RECORD_BYTES]).is_none());
    }

    fn sample() -> Record {
        Record {
            host: "10.0.0.5".into(),
            port: 3000,
            name: "host1".into(),
            weight: None,
            haproxy_server_options: None,
            labels: None,
        }
    }

    #[test]
    fn writes_nerves_minimal_json_byte_for_byte() {
        assert_eq!(sample().to_json(), br#"{"host":"10.0.0.5","port":3000,"name":"host1"}"#);
    }

    #[test]
    fn writes_optional_fields_only_when_set() {
        let record = Record {
            weight: Some(2),
            haproxy_server_options: Some("backup".into()),
            labels: Some(BTreeMap::from([("az".into(), "us-east-1e".into())])),
            ..sample()
        };
        assert_eq!(
            String::from_utf8(record.to_json()).unwrap(),
            r#"{"host":"10.0.0.5","port":3000,"name":"host1","weight":2,"haproxy_server_options":"backup","labels":{"az":"us-east-1e"}}"#
        );
    }

    #[test]
    fn reads_what_it_writes() {
        let record =
            Record { weight: Some(7), labels: Some(BTreeMap::from([("canary".into(), "true".into())])), ..sample() };
        assert_eq!(Record::from_json(&record.to_json()), Ok(record));
    }

    #[test]
    fn reads_lenient_forms_synapse_accepts() {
        let record =
            Record::from_json(br#"{"host":" h ","port":"8080","weight":"3","labels":{"n":1,"b":true},"extra":[1]}"#)
                .unwrap();
        assert_eq!(record.host, "h");
        assert_eq!(record.port, 8080);
        assert_eq!(record.name, "");
        assert_eq!(record.weight, Some(3));
        assert_eq!(record.labels.unwrap()["b"], "true");
    }

    #[test]
    fn rejects_records_a_proxy_cannot_use() {
        let cases: &[(&[u8], &str)] = &[
            (b"not json", "not a JSON object"),
            (b"[1,2]", "found an array"),
            (br#"{"port":80}"#, "no `host`"),
            (br#"{"host":"h"}"#, "no `port`"),
            (br#"{"host":"","port":80}"#, "`host` is \"\""),
            (br#"{"host":"h","port":0}"#, "`port` is 0"),
            (br#"{"host":"h","port":70000}"#, "`port` is 70000"),
            (br#"{"host":"h","port":-1}"#, "`port` is -1"),
            (br#"{"host":"h","port":80,"weight":-2}"#, "`weight` is -2"),
            (br#"{"host":"h","port":80,"labels":[]}"#, "`labels` is []"),
            (br#"{"host":"h","port":80,"labels":{"a":{}}}"#, "`labels` is {}"),
        ];
        for (bytes, expected) in cases {
            let err = Record::from_json(bytes).unwrap_err().to_string();
            assert!(err.contains(expected), "{:?}: {err}", String::from_utf8_lossy(bytes));
        }
        let huge = vec![b' '; MAX_RECORD_BYTES + 1];
        assert!(matches!(Record::from_json(&huge), Err(RecordError::TooLarge { .. })));
    }

    #[test]
    fn parses_plain_child_names() {
        assert_eq!(ChildName::parse("host1_0000000003"), Ok(ChildName::Plain { instance: "host1", sequence: Some(3) }));
        assert_eq!(
            ChildName::parse("web_host_1_0000000042"),
            Ok(ChildName::Plain { instance: "web_host_1", sequence: Some(42) })
        );
        assert_eq!(ChildName::parse("manual"), Ok(ChildName::Plain { instance: "manual", sequence: None }));
        assert_eq!(ChildName::parse("a_12"), Ok(ChildName::Plain { instance: "a_12", sequence: None }));
        assert_eq!(sequential_name(&child_prefix("host1"), 3), "host1_0000000003");
    }

    #[test]
    fn parses_nerves_path_encoding() {
        let json = br#"{"host":"10.0.0.5","port":3000,"name":"host1"}"#;
        let encoded = URL_SAFE.encode(json);
        let name = format!("base64_{}_{}_0000000012", encoded.len(), encoded);
        let parsed = ChildName::parse(&name).unwrap();
        assert_eq!(parsed.sequence(), Some(12));
        assert_eq!(parsed, ChildName::Encoded { json: json.to_vec(), sequence: Some(12) });
    }

    #[test]
    fn rejects_malformed_path_encoding() {
        for name in ["base64_", "base64_x_abc_0000000001", "base64_99_abc_0000000001", "base64_4_!!!!_0000000001"] {
            assert!(ChildName::parse(name).is_err(), "{name}");
        }
        assert!(ChildName::parse("base64_4_YWJj_junk").is_err());
    }

    #[test]
    fn joins_paths() {
        assert_eq!(child_path("/a/b", "c"), "/a/b/c");
        assert_eq!(child_path("/", "c"), "/c");
    }

    proptest::proptest! {
        #[test]
        fn from_json_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = Record::from_json(&bytes);
        }

        #[test]
        fn child_names_never_panic(name in "\\PC{0,80}") {
            let _ = ChildName::parse(&name);
            let _ = ChildName::parse(&format!("base64_{name}"));
        }
    }
}
