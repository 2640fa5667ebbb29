//! axon-spoa: keeps HAProxy's backend server slots equal to the healthy instances registered
//! in ZooKeeper, through the runtime API only — HAProxy is never reloaded.
//!
//! Data flows one way: [`discovery`] watches ZooKeeper and publishes a [`model::Snapshot`];
//! [`sync`] diffs it against HAProxy's `show servers state` ([`haproxy`]) into runtime
//! commands, applies them, and repairs whatever drifts. [`spoe`] is the agent HAProxy asks per
//! request, for what HAProxy cannot decide by itself. [`daemon`] wires the tasks.

pub mod config;
pub mod daemon;
pub mod discovery;
pub mod fuzzing;
pub mod haproxy;
pub mod hostmap;
pub mod import;
pub mod metrics;
pub mod model;
pub mod spoe;
pub mod sync;

pub use config::Config;
pub use daemon::run;
