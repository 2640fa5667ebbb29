//! Maintenance: taking one service out of rotation without stopping it or the registrar.
//!
//! A service is in maintenance while its maintenance file exists (`<maintenance_dir>/<name>`,
//! or the service's own `maintenance_file`). The file survives registrar restarts, so a service
//! stays out until an operator puts it back. The daemon looks for the file at every check
//! run; `axon-registrar maintenance on|off <service>` creates or removes it.

use std::path::PathBuf;

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    #[error("{file}: no service named {service:?} (services: {known})")]
    UnknownService { file: PathBuf, service: String, known: String },
    #[error(
        "{file}: service {service:?} has no maintenance file: set `maintenance_dir` or the service's `maintenance_file`"
    )]
    NotConfigured { file: PathBuf, service: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Puts `service` in maintenance (`on`) or back in rotation; returns the file used.
pub fn set(config: &Config, service: &str, on: bool) -> Result<PathBuf, MaintenanceError> {
    let path = file_for(config, service)?;
    let io = |source| MaintenanceError::Io { path: path.clone(), source };
    if on {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        std::fs::write(&path, b"").map_err(io)?;
    } else {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(io(err)),
        }
    }
    Ok(path)
}

/// Whether `service` is in maintenance now.
pub fn is_on(config: &Config, service: &str) -> Result<bool, MaintenanceError> {
    Ok(file_for(config, service)?.exists())
}

fn file_for(config: &Config, service: &str) -> Result<PathBuf, MaintenanceError> {
    let Some(found) = config.service(service) else {
        let known = config.services.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ");
        return Err(MaintenanceError::UnknownService { file: config.file.clone(), service: service.to_owned(), known });
    };
    config
        .maintenance_file(found)
        .ok_or_else(|| MaintenanceError::NotConfigured { file: config.file.clone(), service: service.to_owned() })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn creates_and_removes_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "maintenance_dir = {:?}\n[zookeeper]\nconnect = \"127.0.0.1:2181\"\n[[service]]\nname = \"web\"\nhost = \"127.0.0.1\"\nport = 80\nzk_path = \"/w\"\n[[service.checks]]\ntype = \"tcp\"\n",
            dir.path().join("maint")
        );
        let config = Config::parse(Path::new("r.toml"), &text).unwrap();
        assert!(!is_on(&config, "web").unwrap());
        let path = set(&config, "web", true).unwrap();
        assert_eq!(path, dir.path().join("maint/web"));
        assert!(is_on(&config, "web").unwrap());
        set(&config, "web", false).unwrap();
        set(&config, "web", false).unwrap();
        assert!(!is_on(&config, "web").unwrap());
        let err = set(&config, "db", true).unwrap_err().to_string();
        assert_eq!(err, "r.toml: no service named \"db\" (services: web)");
    }
}
