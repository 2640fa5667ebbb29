//! Axon's test harness: real ZooKeeper nodes, real HAProxy processes, sample HTTP services,
//! Axon's own daemons and an independent ZooKeeper client (kazoo), each started on free
//! loopback ports and cleaned up when dropped, also when a test fails or panics.
//!
//! Shared by `tests/`, `benches/` and the sandbox. Blocking code throughout: it drives
//! processes, it is not one.

pub mod bins;
pub mod haproxy;
pub mod hosts;
pub mod http;
pub mod kazoo;
pub mod load;
pub mod ports;
pub mod process;
pub mod proxy;
pub mod redis;
pub mod registrar;
pub mod sample;
pub mod spoa;
pub mod wait;
pub mod zk;

pub mod sandbox;
pub mod scenario;

/// A directory for one harness object's files, removed on drop unless `AXON_KEEP_DIRS` is set.
pub fn workdir(prefix: &str) -> tempfile::TempDir {
    let mut dir =
        tempfile::Builder::new().prefix(&format!("axon-{prefix}-")).tempdir().expect("creating a temporary directory");
    if std::env::var_os("AXON_KEEP_DIRS").is_some() {
        dir.disable_cleanup(true);
        eprintln!("keeping {}", dir.path().display());
    }
    dir
}
