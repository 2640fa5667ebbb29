//! Axon's test harness: real ZooKeeper nodes, real HAProxy processes, sample HTTP services,
//! Axon's own daemons and an independent ZooKeeper client (kazoo), each started on free
//! loopback ports and cleaned up when dropped, also when a test fails or panics.
//!
//! Shared by `tests/`, `benches/` and the sandbox. Blocking code throughout: it drives
//! processes, it is not one.

pub mod harness;
pub mod sandbox;
pub mod scenario;
