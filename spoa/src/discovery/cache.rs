//! The on-disk cache of the discovered state: written after changes, read at a cold start
//! when ZooKeeper cannot be reached, so HAProxy gets the last known servers rather than none.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::model::{Snapshot, Source};

/// The least time between two writes.
const WRITE_INTERVAL: Duration = Duration::from_secs(1);

/// Reads a cached snapshot, its services marked as coming from the cache. A missing or
/// unreadable cache, or one taken more than `max_age` ago, is `None` (and the reason logged).
pub fn load(path: &Path, max_age: Duration) -> Option<Snapshot> {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return None,
        Err(err) => {
            warn!(path = %path.display(), %err, "cannot read the cache");
            return None;
        }
    };
    match serde_json::from_slice::<Snapshot>(&text) {
        Ok(mut snapshot) => {
            let age = snapshot.taken.and_then(|t| std::time::SystemTime::now().duration_since(t).ok());
            if age.is_none_or(|age| age > max_age) {
                warn!(path = %path.display(), ?age, ?max_age, "ignoring a cache older than cache_max_age");
                return None;
            }
            for view in snapshot.services.values_mut() {
                Arc::make_mut(view).source = Source::Cache;
            }
            Some(snapshot)
        }
        Err(err) => {
            warn!(path = %path.display(), %err, "ignoring an unreadable cache");
            None
        }
    }
}

/// Writes a snapshot atomically (a temporary file renamed over the cache).
pub fn store(path: &Path, snapshot: &Snapshot) -> std::io::Result<()> {
    let text = serde_json::to_vec_pretty(snapshot).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// Keeps the cache up to date with the snapshots read from ZooKeeper, at most once a second,
/// and once more when stopping.
pub async fn keep(path: &Path, mut snapshots: watch::Receiver<Arc<Snapshot>>, shutdown: CancellationToken) {
    let mut written = 0;
    loop {
        let stop = tokio::select! {
            _ = shutdown.cancelled() => true,
            changed = snapshots.changed() => changed.is_err(),
        };
        let snapshot = snapshots.borrow_and_update().clone();
        let from_zookeeper = snapshot.services.values().all(|v| v.source != Source::Cache);
        if snapshot.version != written && from_zookeeper && !snapshot.services.is_empty() {
            // Off the daemon's thread: a slow disk must not hold the sync or discovery.
            let (file, version) = (path.to_owned(), snapshot.version);
            let stored = tokio::task::spawn_blocking(move || store(&file, &snapshot)).await;
            if let Err(err) = stored.unwrap_or_else(|e| Err(std::io::Error::other(e))) {
                warn!(path = %path.display(), %err, "cannot write the cache");
            }
            written = version;
        }
        if stop {
            return;
        }
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(WRITE_INTERVAL) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::{Endpoint, Instance, ServiceView};

    #[test]
    fn round_trips_and_marks_the_source() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.json");
        let hour = Duration::from_secs(3600);
        assert!(load(&path, hour).is_none());
        let instance = Instance {
            endpoint: Endpoint::new([10, 0, 0, 1].into(), 80),
            weight: 3,
            labels: Arc::new(BTreeMap::from([("az".into(), "a".into())])),
            name: "h1".into(),
            znode: "h1_0000000001".into(),
        };
        let view = ServiceView { instances: vec![instance.clone()], source: Source::Discovered, problems: vec![] };
        let taken = std::time::SystemTime::now() - Duration::from_secs(60);
        let snapshot =
            Snapshot { services: BTreeMap::from([("web".into(), Arc::new(view))]), version: 7, taken: Some(taken) };
        store(&path, &snapshot).unwrap();
        // Older than the age allowed: not trusted.
        assert!(load(&path, Duration::from_secs(30)).is_none());
        let loaded = load(&path, hour).unwrap();
        assert_eq!(loaded.version, 7);
        assert_eq!(loaded.services["web"].instances, vec![instance]);
        assert_eq!(loaded.services["web"].source, Source::Cache);
        std::fs::write(&path, "{ broken").unwrap();
        assert!(load(&path, hour).is_none());
    }
}
