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
/// unreadable cache is `None` (and the reason logged).
pub fn load(path: &Path) -> Option<Snapshot> {
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
            for view in snapshot.services.values_mut() {
                view.source = Source::Cache;
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
            if let Err(err) = store(path, &snapshot) {
                warn!(path = %path.display(), %err, "cannot write the cache");
            }
            written = snapshot.version;
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
        assert!(load(&path).is_none());
        let instance = Instance {
            endpoint: Endpoint::new([10, 0, 0, 1].into(), 80),
            weight: 3,
            labels: BTreeMap::from([("az".into(), "a".into())]),
            name: "h1".into(),
            znode: "h1_0000000001".into(),
        };
        let view = ServiceView { instances: vec![instance.clone()], source: Source::Discovered, problems: vec![] };
        let snapshot = Snapshot { services: BTreeMap::from([("web".into(), view)]), version: 7, taken: None };
        store(&path, &snapshot).unwrap();
        let loaded = load(&path).unwrap();
        assert_eq!(loaded.version, 7);
        assert_eq!(loaded.services["web"].instances, vec![instance]);
        assert_eq!(loaded.services["web"].source, Source::Cache);
        std::fs::write(&path, "{ broken").unwrap();
        assert!(load(&path).is_none());
    }
}
