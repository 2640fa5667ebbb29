//! The runtime API client: where bytes meet HAProxy's stats socket.
//!
//! A batch of commands goes over one connection in interactive mode: `prompt`, one command per
//! line, `quit`. HAProxy prints the prompt `> ` after every reply, which delimits replies
//! reliably — unlike the blank line that ends most replies, which some error replies of 2.6
//! omit (`add server` in a static-rr backend, for one). The connection is new for each batch,
//! so nothing can go to a worker that a reload replaced. Writing and reading run together, so
//! a batch of any size cannot fill both directions' buffers and stall.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpStream, UnixStream};

use crate::haproxy::RuntimeAddress;
use crate::haproxy::command::Command;
use crate::haproxy::state::{StateError, parse_pid};

/// The most read back for one batch.
const MAX_REPLY: usize = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot connect to HAProxy's runtime API at {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("runtime API I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("runtime API did not answer within {0:?}")]
    Timeout(Duration),
    #[error("runtime API answered {got} replies to {expected} commands")]
    Truncated { expected: usize, got: usize },
    #[error("runtime API reply larger than {MAX_REPLY} bytes")]
    TooLarge,
    #[error(transparent)]
    State(#[from] StateError),
    #[error("`show info` has no Pid")]
    NoPid,
}

impl RuntimeError {
    /// HAProxy is not there (stopped, restarting): retry later rather than resync now.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, RuntimeError::Connect { .. })
    }
}

/// What `show info` says of the worker answering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub pid: u32,
    /// As HAProxy prints it: `2.6.12-1+deb12u4`, `3.2.26-1`.
    pub version: String,
}

impl Info {
    /// Whether this HAProxy applies `set server … addr` asynchronously: 2.9 and later
    /// (`server_atomic_sync`), while `state ready` takes effect at once.
    pub fn applies_addresses_late(&self) -> bool {
        let mut numbers = self.version.split(['.', '-']).map(|n| n.parse::<u32>().unwrap_or(0));
        (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0)) >= (2, 9)
    }
}

/// HAProxy's runtime API at one address.
#[derive(Debug, Clone)]
pub struct Runtime {
    addr: RuntimeAddress,
    timeout: Duration,
}

impl Runtime {
    pub fn new(addr: RuntimeAddress, timeout: Duration) -> Runtime {
        Runtime { addr, timeout }
    }

    /// Sends `commands` over one connection and returns one reply per command, in order.
    pub async fn execute(&self, commands: &[Command]) -> Result<Vec<String>, RuntimeError> {
        let mut input = String::with_capacity(commands.len() * 48 + 16);
        input.push_str("prompt\n");
        for command in commands {
            input.push_str(&command.to_string());
            input.push('\n');
        }
        input.push_str("quit\n");
        let text = self.exchange(&input).await?;
        let mut replies = split_prompted(&text);
        // The first reply answers `prompt` itself.
        if replies.len() != commands.len() + 1 {
            return Err(RuntimeError::Truncated { expected: commands.len(), got: replies.len().saturating_sub(1) });
        }
        replies.remove(0);
        Ok(replies)
    }

    /// `show servers state` for every backend, as text (the `server-state-file` format).
    pub async fn servers_state_text(&self) -> Result<String, RuntimeError> {
        self.exchange("show servers state\n").await
    }

    /// The worker answering: its process id (which changes on every reload and restart) and
    /// HAProxy's version.
    pub async fn info(&self) -> Result<Info, RuntimeError> {
        let info = self.exchange("show info\n").await?;
        let pid = parse_pid(&info).ok_or(RuntimeError::NoPid)?;
        let version = info.lines().find_map(|l| l.strip_prefix("Version:")).unwrap_or_default().trim().to_owned();
        Ok(Info { pid, version })
    }

    /// Writes `input` and reads until HAProxy closes the connection.
    async fn exchange(&self, input: &str) -> Result<String, RuntimeError> {
        let work = async {
            match &self.addr {
                RuntimeAddress::Unix(path) => {
                    let stream = UnixStream::connect(path)
                        .await
                        .map_err(|source| RuntimeError::Connect { addr: self.addr.to_string(), source })?;
                    talk(stream, input).await
                }
                RuntimeAddress::Tcp(addr) => {
                    let stream = TcpStream::connect(addr)
                        .await
                        .map_err(|source| RuntimeError::Connect { addr: self.addr.to_string(), source })?;
                    talk(stream, input).await
                }
            }
        };
        tokio::time::timeout(self.timeout, work).await.map_err(|_| RuntimeError::Timeout(self.timeout))?
    }
}

async fn talk<S: AsyncRead + AsyncWrite + Unpin>(stream: S, input: &str) -> Result<String, RuntimeError> {
    let (reader, mut writer) = tokio::io::split(stream);
    let write = async {
        writer.write_all(input.as_bytes()).await?;
        writer.flush().await
    };
    let read = async {
        let mut reply = Vec::new();
        reader.take(MAX_REPLY as u64 + 1).read_to_end(&mut reply).await.map(|_| reply)
    };
    let (written, reply) = tokio::join!(write, read);
    let reply = reply?;
    // HAProxy may close before reading everything when a reply is refused: what came back
    // decides, and a short batch is reported as truncated by the caller.
    if let Err(err) = written
        && reply.is_empty()
    {
        return Err(err.into());
    }
    if reply.len() > MAX_REPLY {
        return Err(RuntimeError::TooLarge);
    }
    Ok(String::from_utf8_lossy(&reply).into_owned())
}

/// Splits interactive-mode output into replies: each reply is followed by the prompt `> ` at
/// the start of a line. Trailing line breaks of a reply are dropped; the text after the last
/// prompt (normally nothing) is not a reply.
pub fn split_prompted(text: &str) -> Vec<String> {
    let mut replies = Vec::new();
    let mut current = String::new();
    for line in text.split_inclusive('\n') {
        match line.strip_prefix("> ") {
            Some(rest) => {
                replies.push(current.trim_end_matches('\n').to_owned());
                current = rest.to_owned();
            }
            None => current.push_str(line),
        }
    }
    replies
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_from_29_on_apply_addresses_late() {
        let info = |version: &str| Info { pid: 1, version: version.into() };
        assert!(!info("2.6.12-1+deb12u4").applies_addresses_late());
        assert!(!info("2.8.5").applies_addresses_late());
        assert!(info("2.9.0").applies_addresses_late());
        assert!(info("3.0.11").applies_addresses_late());
        assert!(info("3.4.7-1").applies_addresses_late());
    }

    #[test]
    fn splits_replies_at_the_prompts() {
        // Captured from HAProxy 2.6.12 for: prompt; add server (refused, no blank line after
        // it); enable health (refused); set weight (refused); set addr; show servers state;
        // quit.
        let text = "\n> Backend must use a dynamic load balancing to support dynamic servers.\n> No such server.\n\n> Backend is using a static LB algorithm and only accepts weights '0%' and '100%'.\n\n> IP changed from '127.0.0.1' to '127.0.0.2', port changed from '1' to '81' by 'stats socket command'\n\n> 1\n# be_id be_name srv_id\n2 fixed 1\n\n> ";
        let replies = split_prompted(text);
        assert_eq!(
            replies,
            [
                "",
                "Backend must use a dynamic load balancing to support dynamic servers.",
                "No such server.",
                "Backend is using a static LB algorithm and only accepts weights '0%' and '100%'.",
                "IP changed from '127.0.0.1' to '127.0.0.2', port changed from '1' to '81' by 'stats socket command'",
                "1\n# be_id be_name srv_id\n2 fixed 1",
            ]
        );
        // Empty replies: the prompt follows the empty line alone.
        assert_eq!(split_prompted("\n> \n> \n> "), ["", "", ""]);
        // Cut short: fewer replies than commands.
        assert_eq!(split_prompted("\n> No such server.\n").len(), 1);
        assert!(split_prompted("").is_empty());
    }

    proptest::proptest! {
        #[test]
        fn splitting_never_panics(text in "\\PC{0,300}") {
            let _ = split_prompted(&text);
        }
    }
}
