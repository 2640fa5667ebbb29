//! What both Axon daemons share besides the znode record (`axon-record`): ZooKeeper settings
//! and sessions, backoff, configuration errors, the status endpoint, and reading SmartStack's
//! configurations for their import commands.

pub mod backoff;
pub mod config;
pub mod import;
pub mod runtime;
pub mod status;
pub mod zk;
