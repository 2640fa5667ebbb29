//! The axon-spoa daemon: discovery, the cache keeper, the HAProxy sync and the status
//! endpoint, each a task, wired by channels: discovery publishes snapshots, the others read
//! the latest one.

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::discovery::{Discovery, DiscoveryStatus, cache};
use crate::metrics::Metrics;
use crate::model::Snapshot;
use crate::sync::{SyncStatus, Syncer};

/// Why axon-spoa could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Status(#[from] axon_core::status::BindError),
    #[error(transparent)]
    Spoe(#[from] crate::spoe::server::BindError),
    #[error("another axon-spoa drives this HAProxy (it holds {path}{holder}): one HAProxy, one axon-spoa")]
    Locked { path: String, holder: String },
    #[error("cannot lock {path}: {source}")]
    Lock {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// One HAProxy, one axon-spoa: an exclusive lock on a file beside the files it keeps for that
/// HAProxy (`<state_file>.lock`, else `<host_map>.lock`), held as long as the process runs. A
/// second axon-spoa for the same HAProxy refuses to start, saying which process holds it.
fn lock(config: &Config) -> Result<Option<std::fs::File>, StartError> {
    use std::io::{Read as _, Seek as _, Write as _};
    let Some(target) = config.haproxy.state_file.as_ref().or(config.haproxy.host_map.as_ref()) else {
        warn!(
            "neither haproxy.state_file nor haproxy.host_map is set: nothing stops a second axon-spoa driving this HAProxy"
        );
        return Ok(None);
    };
    let mut path = target.as_os_str().to_owned();
    path.push(".lock");
    let path = std::path::PathBuf::from(path);
    let shown = path.display().to_string();
    let failed = |source| StartError::Lock { path: shown.clone(), source };
    let mut file =
        std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(failed)?;
    match file.try_lock() {
        Ok(()) => {
            file.set_len(0).map_err(failed)?;
            file.rewind().map_err(failed)?;
            writeln!(file, "{}", std::process::id()).map_err(failed)?;
            Ok(Some(file))
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            Err(StartError::Locked {
                path: shown,
                holder: if holder.is_empty() { String::new() } else { format!(", pid {holder}") },
            })
        }
        Err(std::fs::TryLockError::Error(source)) => Err(failed(source)),
    }
}

/// Runs axon-spoa until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), StartError> {
    let _lock = lock(&config)?;
    for warning in config.warnings() {
        warn!("{warning}");
    }
    let config = Arc::new(config);
    let (metrics, registry) = Metrics::new();
    let (snapshot_tx, snapshot_rx) = watch::channel(Arc::new(Snapshot::default()));
    let (discovery_tx, discovery_rx) = watch::channel(DiscoveryStatus::default());
    let (sync_tx, sync_rx) = watch::channel(SyncStatus::default());

    if let Some(addr) = config.status_listen {
        let sync_rx_for_wanted = sync_rx.clone();
        let (config, snapshots, discovery, sync) = (config.clone(), snapshot_rx.clone(), discovery_rx, sync_rx);
        let status = move || {
            let document = status(&config, &snapshots.borrow(), &discovery.borrow(), &sync.borrow());
            std::future::ready(document)
        };
        let wanted_sync = sync_rx_for_wanted;
        let router = axon_core::status::router(status, Arc::new(registry))
            .route("/wanted", axum::routing::get(move || std::future::ready(wanted(&wanted_sync.borrow()))));
        axon_core::status::start(addr, router, shutdown.clone()).await?;
    }

    let mut tasks = tokio::task::JoinSet::new();
    if let Some(spoe) = config.spoe.clone() {
        let listener = crate::spoe::server::bind(&spoe)?;
        let routes = crate::spoe::route::Routes::new(&config);
        let handler = Arc::new(crate::spoe::handler::RouteHandler::new(routes, snapshot_rx.clone(), metrics.clone()));
        let (metrics, shutdown) = (metrics.clone(), shutdown.clone());
        tasks.spawn_blocking(move || {
            if let Err(err) =
                crate::spoe::server::run_on_this_thread(listener, spoe, handler, metrics, shutdown.clone())
            {
                // Not half a daemon: without its agent, axon-spoa stops.
                error!(%err, "the SPOE agent could not run; stopping");
                shutdown.cancel();
            }
        });
    }
    if let Some(path) = config.cache_file.clone() {
        let (snapshots, stop) = (snapshot_rx.clone(), shutdown.clone());
        tasks.spawn(async move { cache::keep(&path, snapshots, stop).await });
    }
    let discovery = Discovery::new(config.clone(), snapshot_tx, discovery_tx, metrics.clone(), shutdown.clone());
    tasks.spawn(discovery.run());
    let syncer = Syncer::new(config.clone(), snapshot_rx, sync_tx, metrics, shutdown.clone());
    tasks.spawn(syncer.run());
    for line in crate::hostmap::describe(&config).lines() {
        info!("{line}");
    }
    info!(
        services = config.services.len(),
        zookeeper = %config.zookeeper.hosts,
        haproxy = %config.haproxy.socket,
        "axon-spoa started"
    );
    while let Some(result) = tasks.join_next().await {
        if let Err(err) = result {
            warn!(%err, "a task failed");
        }
    }
    info!("axon-spoa stopped");
    Ok(())
}

/// What axon-spoa wants in HAProxy, one slot a line (`<backend> <server> <ip:port> ready|drain`),
/// for HAProxy's Lua view (lua/axon.lua), which has no JSON parser.
fn wanted(sync: &SyncStatus) -> String {
    let mut out = String::new();
    for service in sync.services.values() {
        for (slot, endpoint) in &service.slots {
            out.push_str(&format!("{} {slot} {endpoint} ready\n", service.backend));
        }
        for slot in &service.draining {
            out.push_str(&format!("{} {slot} - drain\n", service.backend));
        }
    }
    out
}

/// The status document: ZooKeeper, HAProxy, and per service what was discovered and where it
/// sits in HAProxy.
fn status(config: &Config, snapshot: &Snapshot, discovery: &DiscoveryStatus, sync: &SyncStatus) -> Value {
    let services: Vec<Value> = config
        .services
        .iter()
        .map(|service| {
            let view = snapshot.service(&service.name);
            let slots = sync.services.get(&service.name);
            json!({
                "name": service.name,
                "zk_path": service.zk_path,
                "backend": service.backend,
                "source": view.map(|v| v.source),
                "instances": view.map(|v| &v.instances),
                "problems": view.map(|v| &v.problems),
                "slots": slots.map(|s| &s.slots),
                "draining": slots.map(|s| &s.draining),
                "last_change_unix_ms": slots.and_then(|s| s.last_change_unix_ms),
                "refused": slots.map(|s| &s.refused),
                "sync_problem": slots.and_then(|s| s.problem.as_ref()),
            })
        })
        .collect();
    json!({
        "zookeeper": discovery,
        "haproxy": {
            "socket": config.haproxy.socket.to_string(),
            "state": sync.haproxy,
            "pid": sync.pid,
            "applied_version": sync.applied_version,
            "last_pass_unix_ms": sync.last_pass_unix_ms,
            "last_error": sync.last_error,
            "host_map": sync.host_map,
        },
        "snapshot_version": snapshot.version,
        "services": services,
    })
}
