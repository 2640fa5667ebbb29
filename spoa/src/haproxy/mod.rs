//! HAProxy's runtime API: the commands Axon sends, the replies it reads, and the one place
//! where bytes meet the stats socket.

pub mod command;
pub mod runtime;
pub mod state;

/// Where HAProxy's runtime API listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeAddress {
    Unix(std::path::PathBuf),
    Tcp(std::net::SocketAddr),
}

impl std::fmt::Display for RuntimeAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RuntimeAddress::Unix(path) => write!(f, "unix:{}", path.display()),
            RuntimeAddress::Tcp(addr) => write!(f, "tcp:{addr}"),
        }
    }
}
