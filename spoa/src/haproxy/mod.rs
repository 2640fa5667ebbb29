//! HAProxy's runtime API: the commands Axon sends, the replies it reads, and the one place
//! where bytes meet the stats socket.

pub mod command;
pub mod runtime;
pub mod state;
