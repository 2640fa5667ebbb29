//! The SPOE half of axon-spoa: HAProxy asks, per request, where the request should go.
//!
//! [`codec`] is the wire format (pure); [`agent`] the per-connection protocol state machine
//! (pure: frames in, frames out); [`route`] the routing decision (pure: a request's service and
//! labels, the discovered instances, the operator's rules → a backend or a refusal); [`handler`]
//! applies it to each NOTIFY; [`connection`] is where bytes meet the socket; [`server`] the
//! listener with its connection limit.

pub mod agent;
pub mod codec;
pub mod connection;
pub mod handler;
pub mod route;
pub mod server;
