//! One SPOP connection: where bytes meet the socket.
//!
//! The read buffer holds at most one frame of the agreed size plus one read (the length prefix
//! is checked before a frame's bytes are awaited). Every complete frame in the buffer is
//! answered, and the answers to a batch of pipelined frames leave in one write. A connection
//! ends on EOF, on a frame the [`Agent`] refuses, after the idle timeout, or at shutdown (with
//! AGENT-DISCONNECT status 0); the others are untouched.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::agent::{Agent, Handler, Next};
use super::codec::{Status, decode_frame};

/// How much is read at once.
const READ_CHUNK: usize = 8 * 1024;

/// Limits of one connection.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_frame_size: u32,
    pub idle_timeout: Duration,
}

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// HAProxy closed it, said goodbye, or it was a health check.
    Closed,
    /// The agent ended it with an AGENT-DISCONNECT of this status.
    Disconnected(Status),
    /// Reading or writing failed.
    Io(String),
}

/// Serves one connection until it ends.
pub async fn serve(mut stream: TcpStream, handler: &impl Handler, limits: Limits, shutdown: &CancellationToken) -> End {
    let _ = stream.set_nodelay(true);
    let mut agent = Agent::new(limits.max_frame_size);
    let mut input = BytesMut::with_capacity(READ_CHUNK);
    let mut output = BytesMut::with_capacity(READ_CHUNK);
    loop {
        let mut next = Next::Continue;
        while next == Next::Continue {
            match decode_frame(&input, agent.read_limit()) {
                Ok(Some((frame, used))) => {
                    next = agent.on_frame(&frame, handler, &mut output);
                    input.advance(used);
                }
                Ok(None) => break,
                Err(err) => {
                    debug!(%err, "SPOE frame refused");
                    next = agent.on_decode_error(&err, &mut output);
                }
            }
        }
        if !output.is_empty() {
            if let Err(err) = stream.write_all(&output).await {
                return End::Io(err.to_string());
            }
            output.clear();
        }
        if next == Next::Close {
            let _ = stream.shutdown().await;
            return ended(&agent);
        }
        if input.capacity() - input.len() < READ_CHUNK {
            input.reserve(READ_CHUNK);
        }
        tokio::select! {
            read = tokio::time::timeout(limits.idle_timeout, stream.read_buf(&mut input)) => match read {
                Ok(Ok(0)) => return End::Closed,
                Ok(Ok(_)) => {}
                Ok(Err(err)) => return End::Io(err.to_string()),
                Err(_) => {
                    debug!("SPOE connection idle: closing it");
                    agent.on_idle(&mut output);
                    let _ = stream.write_all(&output).await;
                    let _ = stream.shutdown().await;
                    return ended(&agent);
                }
            },
            _ = shutdown.cancelled() => {
                agent.on_shutdown(&mut output);
                let _ = stream.write_all(&output).await;
                let _ = stream.shutdown().await;
                return End::Closed;
            }
        }
    }
}

/// Refuses a connection the agent has no room for (status 13).
pub async fn refuse(mut stream: TcpStream, max_frame_size: u32) {
    let mut output = BytesMut::new();
    Agent::new(max_frame_size).on_overload(&mut output);
    let _ = stream.write_all(&output).await;
    let _ = stream.shutdown().await;
}

fn ended(agent: &Agent) -> End {
    match agent.disconnected() {
        Some(Status::Normal) | None => End::Closed,
        Some(status) => End::Disconnected(status),
    }
}
