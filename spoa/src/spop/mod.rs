//! The SPOE agent: HAProxy asks, per request, where the request should go.
//!
//! [`codec`] is the wire format (pure); [`agent`] the per-connection protocol state machine
//! (pure: frames in, frames out); [`connection`] where bytes meet the socket; [`server`] the
//! listener with its connection limit.

pub mod agent;
pub mod codec;
pub mod connection;
pub mod handler;
pub mod server;
