//! Reading configuration files, and errors that name the file, the field, the value and what
//! would be accepted.
//!
//! Each daemon deserialises TOML into raw serde structs (`deny_unknown_fields`), then validates
//! them into typed configuration with a [`Checker`], which knows the file's name.

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: line {line}: `{field}`: {message}")]
    Syntax { file: PathBuf, line: usize, field: String, message: String },
    #[error("{file}: `{field}` = {value}: expected {expected}")]
    Invalid { file: PathBuf, field: String, value: String, expected: String },
}

impl ConfigError {
    /// The field the error is about, as a dotted path (`service[2].checks[0].rise`).
    pub fn field(&self) -> Option<&str> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Syntax { field, .. } | ConfigError::Invalid { field, .. } => Some(field),
        }
    }
}

/// Reads and deserialises a TOML file.
pub fn load_toml<T: DeserializeOwned>(file: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read { file: file.to_owned(), source })?;
    parse_toml(file, &text)
}

/// Deserialises TOML text; `file` is only used in errors.
pub fn parse_toml<T: DeserializeOwned>(file: &Path, text: &str) -> Result<T, ConfigError> {
    let deserializer = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let field = err.path().to_string();
        let inner = err.into_inner();
        let line = inner.span().map_or(0, |span| text[..span.start.min(text.len())].matches('\n').count() + 1);
        ConfigError::Syntax {
            file: file.to_owned(),
            line,
            field: if field == "." { "(document)".to_owned() } else { field },
            message: inner.message().trim().to_owned(),
        }
    })
}

/// Builds validation errors for one file.
#[derive(Debug, Clone, Copy)]
pub struct Checker<'a> {
    file: &'a Path,
}

impl<'a> Checker<'a> {
    pub fn new(file: &'a Path) -> Checker<'a> {
        Checker { file }
    }

    pub fn file(&self) -> &'a Path {
        self.file
    }

    /// An error for `field` holding `value`, which is not `expected`.
    pub fn invalid(&self, field: impl Into<String>, value: impl Display, expected: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_owned(),
            field: field.into(),
            value: value.to_string(),
            expected: expected.into(),
        }
    }

    /// Parses a duration such as `500ms`, `2s` or `1m 30s`, within `[min, max]`.
    pub fn duration(&self, field: &str, text: &str, min: Duration, max: Duration) -> Result<Duration, ConfigError> {
        let expected = || {
            format!(
                "a duration from {} to {}, such as \"500ms\" or \"2s\"",
                humantime::format_duration(min),
                humantime::format_duration(max)
            )
        };
        let value =
            humantime::parse_duration(text.trim()).map_err(|_| self.invalid(field, quoted(text), expected()))?;
        if value < min || value > max {
            return Err(self.invalid(field, quoted(text), expected()));
        }
        Ok(value)
    }

    /// [`Checker::duration`] of an optional field: `default` when it is absent.
    pub fn duration_or(
        &self,
        field: &str,
        text: Option<&str>,
        range: std::ops::RangeInclusive<Duration>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        match text {
            Some(text) => self.duration(field, text, *range.start(), *range.end()),
            None => Ok(default),
        }
    }

    /// Checks that a number lies in `[min, max]`.
    pub fn range<T: PartialOrd + Display + Copy>(
        &self,
        field: &str,
        value: T,
        min: T,
        max: T,
    ) -> Result<T, ConfigError> {
        if value < min || value > max {
            return Err(self.invalid(field, value, format!("a number from {min} to {max}")));
        }
        Ok(value)
    }

    /// Checks that a ZooKeeper path is absolute and well formed, and returns it without a
    /// trailing slash.
    pub fn zk_path(&self, field: &str, path: &str) -> Result<String, ConfigError> {
        let expected = "an absolute ZooKeeper path such as \"/nerve/services/web/services\"";
        let trimmed = if path.len() > 1 { path.trim_end_matches('/') } else { path };
        let well_formed = trimmed.starts_with('/')
            && (trimmed == "/" || trimmed[1..].split('/').all(|part| !part.is_empty() && part != "." && part != ".."))
            && !trimmed.chars().any(|c| c.is_control());
        if !well_formed {
            return Err(self.invalid(field, quoted(path), expected));
        }
        Ok(trimmed.to_owned())
    }
}

/// A value shown in an error, quoted as TOML would write it.
pub fn quoted(text: &str) -> String {
    format!("{text:?}")
}

/// A password: cloned and compared like a string, never shown: not by `Debug` (from the raw
/// configuration on), not in the error for a value of the wrong type.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: String) -> Secret {
        Secret(text)
    }

    /// The password itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Secret, D::Error> {
        deserializer.deserialize_str(SecretVisitor)
    }
}

/// Takes a string; names the type of anything else without repeating its value (serde's own
/// errors would: "invalid type: integer `123456`").
struct SecretVisitor;

impl serde::de::Visitor<'_> for SecretVisitor {
    type Value = Secret;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Secret, E> {
        Ok(Secret(text.to_owned()))
    }

    fn visit_string<E: serde::de::Error>(self, text: String) -> Result<Secret, E> {
        Ok(Secret(text))
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Secret, E> {
        Err(E::invalid_type(serde::de::Unexpected::Other("boolean"), &self))
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Secret, E> {
        Err(E::invalid_type(serde::de::Unexpected::Other("integer"), &self))
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Secret, E> {
        Err(E::invalid_type(serde::de::Unexpected::Other("integer"), &self))
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Secret, E> {
        Err(E::invalid_type(serde::de::Unexpected::Other("float"), &self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Raw {
        port: u16,
        #[serde(default)]
        service: Vec<Inner>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        name: String,
    }

    fn syntax(text: &str) -> String {
        parse_toml::<Raw>(Path::new("a.toml"), text).unwrap_err().to_string()
    }

    #[test]
    fn syntax_errors_name_file_line_and_field() {
        assert_eq!(syntax("port = 70000"), "a.toml: line 1: `port`: invalid value: integer `70000`, expected u16");
        let unknown = syntax("port = 1\n[[service]]\nname = \"a\"\nnmae = \"b\"\n");
        assert_eq!(unknown, "a.toml: line 4: `service[0].nmae`: unknown field `nmae`, expected `name`");
        assert!(syntax("port = ").contains("a.toml: line 1"));
    }

    #[test]
    fn durations_name_the_accepted_form() {
        let c = Checker::new(Path::new("a.toml"));
        let (min, max) = (Duration::from_millis(10), Duration::from_secs(60));
        assert_eq!(c.duration("t", "1500ms", min, max).unwrap(), Duration::from_millis(1500));
        let err = c.duration("checks.timeout", "fast", min, max).unwrap_err().to_string();
        assert_eq!(
            err,
            "a.toml: `checks.timeout` = \"fast\": expected a duration from 10ms to 1m, such as \"500ms\" or \"2s\""
        );
        assert!(c.duration("t", "2h", min, max).is_err());
    }

    #[test]
    fn zk_paths_must_be_absolute_and_clean() {
        let c = Checker::new(Path::new("a.toml"));
        assert_eq!(c.zk_path("p", "/a/b/").unwrap(), "/a/b");
        assert_eq!(c.zk_path("p", "/").unwrap(), "/");
        for bad in ["", "a/b", "/a//b", "/a/../b", "/a/./b"] {
            assert!(c.zk_path("p", bad).is_err(), "{bad}");
        }
    }
}
