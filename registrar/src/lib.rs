//! axon-registrar: health-checks the services on this host and publishes the healthy ones to
//! ZooKeeper as ephemeral znodes in Nerve's format.
//!
//! Data flows one way: [`schedule`] says when to run [`check`]s; [`health`] turns results
//! into up/down with rise and fall; [`state`] turns health, maintenance and configuration into
//! wanted registrations; [`publish`] makes ZooKeeper agree. [`daemon`] is the task that wires
//! them together.

pub mod check;
pub mod config;
pub mod daemon;
pub mod health;
pub mod import;
pub mod maintenance;
pub mod metrics;
pub mod publish;
pub mod schedule;
pub mod service;
pub mod state;

pub use config::Config;
pub use daemon::run;
