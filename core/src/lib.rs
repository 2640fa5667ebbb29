//! What both Axon daemons share: the znode record (their contract), ZooKeeper settings and
//! sessions, backoff, configuration errors, and the status endpoint.

pub mod backoff;
pub mod config;
pub mod record;
pub mod runtime;
pub mod status;
pub mod zk;
