//! The pieces of the harness; see each module.

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
