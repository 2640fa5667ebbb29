//! `tcp`: the service accepts a connection.

use std::borrow::Cow;
use std::time::Duration;

use tokio::net::TcpStream;

/// Connects for a check: no Nagle delay, and a close that resets the connection instead of
/// leaving a TIME_WAIT socket behind for every check.
pub(super) async fn connect(host: &str, port: u16) -> Result<TcpStream, String> {
    let stream = TcpStream::connect((host, port)).await.map_err(|err| format!("connect to {host}:{port}: {err}"))?;
    let socket = socket2::SockRef::from(&stream);
    let _ = socket.set_linger(Some(Duration::ZERO));
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

pub(super) async fn check(host: &str, port: u16) -> super::CheckResult {
    connect(host, port).await?;
    Ok(Cow::Borrowed("connected"))
}
