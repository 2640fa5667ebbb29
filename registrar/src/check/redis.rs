//! `redis`: the server answers `PING` with `+PONG` and `EXISTS nerve-redis-service-check` with
//! an integer, as Nerve's redis check asks; the `EXISTS` makes a proxy in front of Redis (twemproxy,
//! Envoy) reach its upstream, which a `PING` it may answer itself would not. With a password,
//! `AUTH` goes first and must answer `+OK`.
//!
//! The commands go out as RESP arrays in one write; the replies are read by [`Connection`] with a
//! bounded buffer and parsed by [`parse_reply`], which reads only the first line of each reply
//! (every reply the check accepts is one line). The parser and [`judge`] do no I/O.

use std::borrow::Cow;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use axon_core::config::Secret;

/// The longest reply line accepted, CRLF excluded. Real answers to these commands are short;
/// anything longer is another protocol talking.
const MAX_LINE: usize = 512;
/// How much one read takes in.
const READ: usize = 512;
/// How much of an unexpected reply a failure's detail shows.
const SHOWN: usize = 100;
/// `PING` and `EXISTS nerve-redis-service-check`, pipelined: what a check without `AUTH` sends.
/// The key is Nerve's; whether it exists does not matter, only that an answer comes back.
const PING_EXISTS: &[u8] = b"*1\r\n$4\r\nPING\r\n*2\r\n$6\r\nEXISTS\r\n$25\r\nnerve-redis-service-check\r\n";

pub(super) async fn check(
    host: &str,
    port: u16,
    username: Option<&str>,
    password: Option<&Secret>,
) -> super::CheckResult {
    let stream = super::tcp::connect(host, port).await?;
    let mut conn = Connection::new(stream);
    let auth = password.map(|password| auth_command(username, password.expose()));
    let request = match &auth {
        Some(auth) => Cow::Owned([auth.as_slice(), PING_EXISTS].concat()),
        None => Cow::Borrowed(PING_EXISTS),
    };
    conn.stream.write_all(&request).await.map_err(|err| format!("sending to {host}:{port}: {err}"))?;
    if auth.is_some() {
        conn.expect("AUTH", Expect::Ok).await?;
    }
    conn.expect("PING", Expect::Pong).await?;
    conn.expect("EXISTS", Expect::Integer).await?;
    Ok(Cow::Borrowed("PONG"))
}

/// `AUTH [username] password` as a RESP array.
fn auth_command(username: Option<&str>, password: &str) -> Vec<u8> {
    let args: Vec<&[u8]> = match username {
        Some(user) => vec![b"AUTH", user.as_bytes(), password.as_bytes()],
        None => vec![b"AUTH", password.as_bytes()],
    };
    encode(&args)
}

/// A command as a RESP array of bulk strings.
fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Where the check's bytes meet the socket: the stream and the replies read so far but not
/// yet consumed, never more than [`MAX_LINE`] plus one read.
struct Connection {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Connection {
    fn new(stream: TcpStream) -> Connection {
        Connection { stream, buf: Vec::with_capacity(MAX_LINE + READ) }
    }

    /// Reads the reply to `command` and judges it.
    async fn expect(&mut self, command: &str, expect: Expect) -> Result<(), String> {
        loop {
            match parse_reply(&self.buf) {
                Ok(Some((reply, used))) => {
                    let judged = judge(command, expect, reply);
                    self.buf.drain(..used);
                    return judged;
                }
                Ok(None) => {}
                Err(LineTooLong) => return Err(format!("reply to {command} longer than {MAX_LINE} bytes")),
            }
            let mut chunk = [0; READ];
            let read =
                self.stream.read(&mut chunk).await.map_err(|err| format!("reading the reply to {command}: {err}"))?;
            if read == 0 {
                return Err(if self.buf.is_empty() {
                    format!("connection closed before the reply to {command}")
                } else {
                    format!("connection closed in the middle of the reply to {command}")
                });
            }
            self.buf.extend_from_slice(&chunk[..read]);
        }
    }
}

/// The first line of one reply, its type byte included and its line end excluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reply<'a> {
    kind: Kind,
    line: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `+OK`, `+PONG`.
    Simple,
    /// `-ERR …`, `-NOAUTH …`, `-WRONGPASS …`.
    Error,
    /// `:0`.
    Integer,
    /// Anything else: a bulk string or an array header, a RESP3 type, another protocol.
    Other,
}

/// No line end within [`MAX_LINE`] bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LineTooLong;

/// Parses the first reply line in `buf`: `Ok(None)` until a whole line is there, else the reply
/// and how many bytes it took. Lines end in CRLF; a bare LF is accepted too, so that a server
/// speaking something else still gets its line shown. No I/O.
fn parse_reply(buf: &[u8]) -> Result<Option<(Reply<'_>, usize)>, LineTooLong> {
    let window = &buf[..buf.len().min(MAX_LINE + 2)];
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        return if buf.len() >= MAX_LINE + 2 { Err(LineTooLong) } else { Ok(None) };
    };
    let line = window[..lf].strip_suffix(b"\r").unwrap_or(&window[..lf]);
    if line.len() > MAX_LINE {
        return Err(LineTooLong);
    }
    let kind = match line.split_first() {
        Some((b'+', _)) => Kind::Simple,
        Some((b'-', _)) => Kind::Error,
        Some((b':', digits)) if is_integer(digits) => Kind::Integer,
        _ => Kind::Other,
    };
    Ok(Some((Reply { kind, line }, lf + 1)))
}

fn is_integer(text: &[u8]) -> bool {
    let digits = text.strip_prefix(b"-").unwrap_or(text);
    !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
}

/// What a command must answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// `+OK` (AUTH).
    Ok,
    /// `+PONG` (PING).
    Pong,
    /// Any integer (EXISTS).
    Integer,
}

/// Whether `reply` is what `command` must answer; if not, a detail a person can act on. No I/O.
fn judge(command: &str, expect: Expect, reply: Reply<'_>) -> Result<(), String> {
    let wanted = match (expect, reply.kind) {
        (_, Kind::Error) => return Err(format!("redis answered {} to {command}", shown(reply.line))),
        (Expect::Ok, Kind::Simple) if reply.line == b"+OK" => return Ok(()),
        (Expect::Pong, Kind::Simple) if reply.line == b"+PONG" => return Ok(()),
        (Expect::Integer, Kind::Integer) => return Ok(()),
        (Expect::Ok, _) => "+OK",
        (Expect::Pong, _) => "+PONG",
        (Expect::Integer, _) => "an integer",
    };
    Err(format!("expected {wanted} to {command}, got {}", shown(reply.line)))
}

/// A reply line for a person: quoted, escaped, cut to [`SHOWN`] bytes.
fn shown(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(&line[..line.len().min(SHOWN)]);
    if line.len() > SHOWN { format!("{text:?}…") } else { format!("{text:?}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(buf: &[u8]) -> (Kind, &[u8], usize) {
        let (reply, used) = parse_reply(buf).unwrap().unwrap();
        (reply.kind, reply.line, used)
    }

    #[test]
    fn requests_are_resp_arrays() {
        let ping_exists: &[&[u8]] = &[
            b"*1\r\n",                               // an array of one bulk string:
            b"$4\r\nPING\r\n",                       // PING
            b"*2\r\n",                               // an array of two:
            b"$6\r\nEXISTS\r\n",                     // EXISTS
            b"$25\r\nnerve-redis-service-check\r\n", // Nerve's key
        ];
        assert_eq!(PING_EXISTS, ping_exists.concat());
        assert_eq!(encode(&[b"PING"]), ping_exists[..2].concat());
        let auth: &[&[u8]] = &[
            b"*2\r\n",           // an array of two:
            b"$4\r\nAUTH\r\n",   // AUTH
            b"$6\r\ns3cret\r\n", // the password
        ];
        assert_eq!(auth_command(None, "s3cret"), auth.concat());
        let acl: &[&[u8]] = &[
            b"*3\r\n",            // an array of three:
            b"$4\r\nAUTH\r\n",    // AUTH
            b"$5\r\nprobe\r\n",   // the user name
            b"$5\r\np w\r\n\r\n", // the password, bytes as they are: bulk strings are length-prefixed
        ];
        assert_eq!(auth_command(Some("probe"), "p w\r\n"), acl.concat());
    }

    #[test]
    fn parses_one_line_per_reply() {
        assert_eq!(parsed(b"+PONG\r\n"), (Kind::Simple, &b"+PONG"[..], 7));
        // Two pipelined replies: only the first is taken.
        assert_eq!(parsed(b"+OK\r\n:0\r\n"), (Kind::Simple, &b"+OK"[..], 5));
        assert_eq!(parsed(b":0\r\n"), (Kind::Integer, &b":0"[..], 4));
        assert_eq!(parsed(b":-12\r\n"), (Kind::Integer, &b":-12"[..], 6));
        assert_eq!(parsed(b"-NOAUTH Authentication required.\r\n").0, Kind::Error);
        // Not integers: no digits, a sign alone, other characters.
        for line in [&b":\r\n"[..], b":-\r\n", b":1x\r\n", b": 1\r\n"] {
            assert_eq!(parsed(line).0, Kind::Other, "{line:?}");
        }
        // A bulk string's header, an array's, RESP3's null, HTTP, an empty line.
        for line in [&b"$4\r\nPONG\r\n"[..], b"*1\r\n", b"_\r\n", b"HTTP/1.1 400 Bad Request\r\n", b"\r\n"] {
            assert_eq!(parsed(line).0, Kind::Other, "{line:?}");
        }
        // A bare LF ends a line too.
        assert_eq!(parsed(b"hello\nrest"), (Kind::Other, &b"hello"[..], 6));
    }

    #[test]
    fn every_truncated_reply_is_incomplete() {
        let replies: &[&[u8]] = &[b"+OK\r\n", b"+PONG\r\n", b":1\r\n", b"-ERR unknown command 'EXISTS'\r\n"];
        for reply in replies {
            for end in 0..reply.len() {
                assert_eq!(parse_reply(&reply[..end]), Ok(None), "{:?}", &reply[..end]);
            }
            assert!(parse_reply(reply).unwrap().is_some());
        }
    }

    #[test]
    fn lines_longer_than_the_limit_are_refused() {
        let mut longest = vec![b'+'; MAX_LINE];
        longest.extend_from_slice(b"\r\n");
        assert_eq!(parsed(&longest).2, MAX_LINE + 2);
        // One byte more, with its CRLF, or with a bare LF, or with no line end yet.
        let mut over = vec![b'+'; MAX_LINE + 1];
        over.extend_from_slice(b"\r\n");
        assert_eq!(parse_reply(&over), Err(LineTooLong));
        assert_eq!(parse_reply(&over[..MAX_LINE + 2]), Err(LineTooLong));
        let mut bare = vec![b'+'; MAX_LINE + 1];
        bare.push(b'\n');
        assert_eq!(parse_reply(&bare), Err(LineTooLong));
        // The longest line and its CR, without the LF yet: still waiting.
        assert_eq!(parse_reply(&longest[..MAX_LINE + 1]), Ok(None));
        // However much arrives, only the first MAX_LINE + 2 bytes are looked at.
        assert_eq!(parse_reply(&vec![b'x'; 1 << 20]), Err(LineTooLong));
    }

    #[test]
    fn judges_what_each_command_must_answer() {
        let judged = |command, expect, buf: &[u8]| judge(command, expect, parse_reply(buf).unwrap().unwrap().0);
        assert_eq!(judged("AUTH", Expect::Ok, b"+OK\r\n"), Ok(()));
        assert_eq!(judged("PING", Expect::Pong, b"+PONG\r\n"), Ok(()));
        assert_eq!(judged("EXISTS", Expect::Integer, b":0\r\n"), Ok(()));
        assert_eq!(judged("EXISTS", Expect::Integer, b":1\r\n"), Ok(()));
        assert_eq!(
            judged("PING", Expect::Pong, b"-NOAUTH Authentication required.\r\n").unwrap_err(),
            r#"redis answered "-NOAUTH Authentication required." to PING"#
        );
        assert_eq!(
            judged("AUTH", Expect::Ok, b"-WRONGPASS invalid username-password pair or user is disabled.\r\n")
                .unwrap_err(),
            r#"redis answered "-WRONGPASS invalid username-password pair or user is disabled." to AUTH"#
        );
        assert_eq!(judged("PING", Expect::Pong, b"+OK\r\n").unwrap_err(), r#"expected +PONG to PING, got "+OK""#);
        assert_eq!(judged("PING", Expect::Pong, b"+PONGS\r\n").unwrap_err(), r#"expected +PONG to PING, got "+PONGS""#);
        assert_eq!(judged("AUTH", Expect::Ok, b"+PONG\r\n").unwrap_err(), r#"expected +OK to AUTH, got "+PONG""#);
        assert_eq!(
            judged("EXISTS", Expect::Integer, b"$-1\r\n").unwrap_err(),
            r#"expected an integer to EXISTS, got "$-1""#
        );
        assert_eq!(
            judged("PING", Expect::Pong, b"HTTP/1.1 400 Bad Request\r\n").unwrap_err(),
            r#"expected +PONG to PING, got "HTTP/1.1 400 Bad Request""#
        );
        // Control characters are escaped; long lines are cut.
        assert_eq!(
            judged("PING", Expect::Pong, b"\x16\x03\x01\n").unwrap_err(),
            r#"expected +PONG to PING, got "\u{16}\u{3}\u{1}""#
        );
        let long = [vec![b'a'; 300], b"\r\n".to_vec()].concat();
        let detail = judged("PING", Expect::Pong, &long).unwrap_err();
        assert!(detail.ends_with(&format!("\"{}\"…", "a".repeat(SHOWN))), "{detail}");
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..1100)) {
            if let Ok(Some((reply, used))) = parse_reply(&bytes) {
                proptest::prop_assert!(used <= bytes.len() && reply.line.len() <= MAX_LINE);
                let _ = judge("PING", Expect::Pong, reply);
            }
        }
    }
}
