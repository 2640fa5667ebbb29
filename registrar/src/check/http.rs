//! `http`: a GET answered with an accepted status and, optionally, a body containing a string.
//!
//! By default (`keepalive`) one connection is reused across runs and renewed every
//! [`KEEPALIVE_MAX_USES`] runs, so that a listener that stopped accepting is still noticed, and
//! a kept connection the server closed meanwhile is replaced by a fresh one within the same
//! run; `keepalive = false` opens a fresh connection per check with `Connection: close`. Redirects are not followed (3xx
//! is an answer). The response head is parsed with httparse; the body is read when a string is
//! expected in it or the connection is to be reused, at most 64 KiB of it, following its
//! framing (Content-Length, chunked, or until close).

use std::borrow::Cow;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::service::{HttpCheck, KEEPALIVE_MAX_USES};

const MAX_HEAD: usize = 16 * 1024;
const MAX_BODY: usize = 64 * 1024;
const MAX_HEADERS: usize = 64;

/// A connection kept between runs of one check.
pub(super) struct Idle {
    conn: Conn,
    uses: u32,
}

pub(super) async fn check(
    tls: &Arc<rustls::ClientConfig>,
    http: &HttpCheck,
    idle: &Mutex<Option<Idle>>,
) -> super::CheckResult {
    let kept = if http.keepalive { idle.lock().ok().and_then(|mut idle| idle.take()) } else { None };
    // No answer on a kept connection means the server closed it while idle: open a new one.
    if let Some(Idle { conn, uses }) = kept
        && let Exchange::Answered(result, conn) = exchange(conn, http).await
    {
        keep(idle, conn, uses + 1);
        return result;
    }
    let conn = open(tls, http).await?;
    match exchange(conn, http).await {
        Exchange::Answered(result, conn) => {
            keep(idle, conn, 1);
            result
        }
        Exchange::NoAnswer(err) => Err(err),
    }
}

fn keep(idle: &Mutex<Option<Idle>>, conn: Option<Conn>, uses: u32) {
    if let (Some(conn), Ok(mut idle)) = (conn, idle.lock()) {
        *idle = (uses < KEEPALIVE_MAX_USES).then_some(Idle { conn, uses });
    }
}

async fn open(tls: &Arc<rustls::ClientConfig>, http: &HttpCheck) -> Result<Conn, String> {
    let stream = super::tcp::connect(&http.host, http.port).await?;
    if !http.https {
        return Ok(Conn::Plain(stream));
    }
    let name =
        ServerName::try_from(http.host.clone()).map_err(|err| format!("TLS server name {}: {err}", http.host))?;
    let stream = TlsConnector::from(tls.clone())
        .connect(name, stream)
        .await
        .map_err(|err| format!("TLS handshake with {}:{}: {err}", http.host, http.port))?;
    Ok(Conn::Tls(Box::new(stream)))
}

fn request(http: &HttpCheck) -> Vec<u8> {
    let mut head = format!("GET {} HTTP/1.1\r\n", http.uri);
    if !http.headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("host")) {
        // An IPv6 literal in brackets, as in a URL.
        let host = if http.host.contains(':') { format!("[{}]", http.host) } else { http.host.clone() };
        head.push_str(&format!("Host: {host}:{}\r\n", http.port));
    }
    head.push_str(concat!("User-Agent: axon-registrar/", env!("CARGO_PKG_VERSION"), "\r\n"));
    head.push_str(if http.keepalive {
        "Accept: */*\r\nConnection: keep-alive\r\n"
    } else {
        "Accept: */*\r\nConnection: close\r\n"
    });
    for (name, value) in &http.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

enum Exchange {
    /// The server answered; the connection comes back if it can serve another run.
    Answered(super::CheckResult, Option<Conn>),
    /// Nothing came back at all.
    NoAnswer(String),
}

async fn exchange(mut conn: Conn, http: &HttpCheck) -> Exchange {
    if let Err(err) = conn.write_all(&request(http)).await {
        return Exchange::NoAnswer(format!("sending the request: {err}"));
    }
    let mut buf = Vec::with_capacity(1024);
    let head = loop {
        let eof = match read_more(&mut conn, &mut buf).await {
            Ok(eof) => eof,
            Err(err) if buf.is_empty() => return Exchange::NoAnswer(err),
            Err(err) => return Exchange::Answered(Err(err), None),
        };
        match parse_head(&buf) {
            Ok(Some(head)) => break head,
            Ok(None) if eof && buf.is_empty() => {
                return Exchange::NoAnswer("connection closed before a response".to_owned());
            }
            Ok(None) if eof => {
                return Exchange::Answered(Err("connection closed before a complete response".to_owned()), None);
            }
            Ok(None) if buf.len() > MAX_HEAD => {
                return Exchange::Answered(Err(format!("response head larger than {} KiB", MAX_HEAD / 1024)), None);
            }
            Ok(None) => {}
            Err(err) => return Exchange::Answered(Err(err), None),
        }
    };
    let reusable = http.keepalive && head.keep_alive && head.framing != Framing::UntilClose;
    let mut raw = buf.split_off(head.len);
    let mut eof = false;
    if http.body_contains.is_some() || reusable {
        while !head.framing.is_complete(&raw) && raw.len() < MAX_BODY * 2 {
            match read_more(&mut conn, &mut raw).await {
                Ok(true) => {
                    eof = true;
                    break;
                }
                Ok(false) => {}
                Err(err) => return Exchange::Answered(Err(err), None),
            }
        }
    }
    let back = (reusable && !eof && head.framing.is_complete(&raw) && raw.len() == head.framing.encoded_len(&raw))
        .then_some(conn);
    Exchange::Answered(judge(http, &head, &raw), back)
}

/// Whether a response passes the check.
fn judge(http: &HttpCheck, head: &Head, raw_body: &[u8]) -> super::CheckResult {
    if !http.status.contains(&head.status) {
        return Err(format!("HTTP {}, expected {}-{}", head.status, http.status.start(), http.status.end()));
    }
    let Some(wanted) = &http.body_contains else { return Ok(Cow::Owned(format!("HTTP {}", head.status))) };
    let body = head.framing.decode(raw_body);
    let body = &body[..body.len().min(MAX_BODY)];
    if contains(body, wanted.as_bytes()) {
        Ok(Cow::Owned(format!("HTTP {}, body contains {wanted:?}", head.status)))
    } else {
        Err(format!("HTTP {}, body lacks {wanted:?}", head.status))
    }
}

/// A check's connection: plain or TLS.
enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Conn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Reads what is available into `buf`; returns whether the peer closed.
async fn read_more<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> Result<bool, String> {
    buf.reserve(4096);
    match stream.read_buf(buf).await {
        Ok(0) => Ok(true),
        Ok(_) => Ok(false),
        // A TLS peer that closes without close_notify has still sent its whole answer.
        Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => Ok(true),
        Err(err) => Err(format!("reading the response: {err}")),
    }
}

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Head {
    status: u16,
    /// Bytes taken by the head, including the blank line.
    len: usize,
    framing: Framing,
    /// Whether the server keeps the connection open after this response.
    keep_alive: bool,
}

/// How the body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

/// Parses a response head; `Ok(None)` until it is complete.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(err) => return Err(format!("invalid HTTP response: {err}")),
    };
    let status = response.code.unwrap_or_default();
    let http10 = response.version == Some(0);
    let value = |name: &str| {
        response.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| String::from_utf8_lossy(h.value))
    };
    let framing = if value("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        Framing::Chunked
    } else if let Some(length) = value("content-length").and_then(|v| v.trim().parse().ok()) {
        Framing::Length(length)
    } else {
        Framing::UntilClose
    };
    let connection = value("connection").map(|v| v.to_ascii_lowercase());
    let keep_alive = match connection.as_deref() {
        Some(v) if v.contains("close") => false,
        Some(v) if v.contains("keep-alive") => true,
        _ => !http10,
    };
    Ok(Some(Head { status, len, framing, keep_alive }))
}

impl Framing {
    fn is_complete(self, raw: &[u8]) -> bool {
        match self {
            Framing::Length(n) => raw.len() >= n,
            Framing::Chunked => dechunk(raw).1,
            Framing::UntilClose => false,
        }
    }

    /// How many of `raw`'s bytes belong to this body; more means the server sent extra bytes
    /// and the connection cannot be reused.
    fn encoded_len(self, raw: &[u8]) -> usize {
        match self {
            Framing::Length(n) => n,
            Framing::Chunked => dechunk(raw).2,
            Framing::UntilClose => raw.len(),
        }
    }

    /// The body's bytes (as many as arrived).
    fn decode(self, raw: &[u8]) -> Cow<'_, [u8]> {
        match self {
            Framing::Length(n) => Cow::Borrowed(&raw[..raw.len().min(n)]),
            Framing::Chunked => Cow::Owned(dechunk(raw).0),
            Framing::UntilClose => Cow::Borrowed(raw),
        }
    }
}

/// Decodes a chunked body as far as it goes; returns the data, whether the last chunk (and
/// the blank line after it) was seen, and how many bytes that took. Malformed input ends the
/// decoding where it becomes malformed.
fn dechunk(raw: &[u8]) -> (Vec<u8>, bool, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let rest = &raw[at..];
        let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") else { return (out, false, at) };
        let size_text = std::str::from_utf8(&rest[..line_end]).unwrap_or("");
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else { return (out, false, at) };
        let data_start = line_end + 2;
        if size == 0 {
            // No trailers expected from a health endpoint: the body ends with one more CRLF.
            let complete = rest.get(data_start..data_start + 2) == Some(b"\r\n".as_slice());
            return (out, complete, if complete { at + data_start + 2 } else { at });
        }
        let available = rest.len().saturating_sub(data_start).min(size);
        out.extend_from_slice(&rest[data_start..data_start + available]);
        if available < size || rest.len() < data_start + size + 2 {
            return (out, false, at);
        }
        at += data_start + size + 2;
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_heads_and_their_framing() {
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Len"), Ok(None));
        let head = parse_head(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\nrest").unwrap().unwrap();
        assert_eq!(head, Head { status: 204, len: 46, framing: Framing::Length(0), keep_alive: true });
        let head = parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap().unwrap();
        assert_eq!(head.framing, Framing::Chunked);
        let head = parse_head(b"HTTP/1.0 503 Busy\r\n\r\n").unwrap().unwrap();
        assert_eq!((head.status, head.framing, head.keep_alive), (503, Framing::UntilClose, false));
        let head = parse_head(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n").unwrap().unwrap();
        assert!(!head.keep_alive);
        assert!(parse_head(b"SSH-2.0-OpenSSH\r\n\r\n").unwrap_err().starts_with("invalid HTTP response"));
    }

    #[test]
    fn dechunks_complete_partial_and_malformed_bodies() {
        let body = b"2\r\nOK\r\n3;ext=1\r\n!!!\r\n0\r\n\r\n";
        assert_eq!(dechunk(body), (b"OK!!!".to_vec(), true, body.len()));
        assert_eq!(dechunk(b"2\r\nOK\r\n0\r\n"), (b"OK".to_vec(), false, 7));
        assert_eq!(dechunk(b"5\r\nOK"), (b"OK".to_vec(), false, 0));
        assert_eq!(dechunk(b"zz\r\nOK\r\n"), (Vec::new(), false, 0));
        assert_eq!(dechunk(b""), (Vec::new(), false, 0));
    }

    #[test]
    fn builds_the_request_with_a_host_unless_given() {
        let mut http = HttpCheck {
            host: "127.0.0.1".into(),
            port: 8080,
            uri: "/health".into(),
            https: false,
            headers: vec![],
            status: 200..=399,
            body_contains: None,
            keepalive: false,
        };
        let text = String::from_utf8(request(&http)).unwrap();
        assert!(text.starts_with("GET /health HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"), "{text}");
        assert!(text.ends_with("Connection: close\r\n\r\n"), "{text}");
        http.headers = vec![("Host".into(), "web.internal".into())];
        let text = String::from_utf8(request(&http)).unwrap();
        assert!(!text.contains("127.0.0.1:8080") && text.contains("Host: web.internal\r\n"), "{text}");
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = parse_head(&bytes);
            let _ = dechunk(&bytes);
        }
    }
}
