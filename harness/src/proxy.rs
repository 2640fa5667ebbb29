//! A fault-injecting TCP proxy of the project's own, between one client and its server
//! (ZooKeeper, an SPOE agent), for faults the server itself cannot show:
//!
//! - **cut** (a partition): the existing connections go silent (nothing relayed either way,
//!   nothing closed) and new ones are accepted and left silent; once **restored**, new
//!   connections are relayed again (the silenced ones stay dead, as after a real partition);
//! - **delay**: everything relayed waits that long first (a slow peer);
//! - **cut after the next request**: the next bytes the client sends are forwarded, then the
//!   connection is reset before any answer comes back (the request may have been carried out;
//!   the client cannot know);
//! - **black hole**: the client's requests pass, the server's replies are dropped, until
//!   restored, which resets the connections (the client then reconnects);
//! - **on a ZooKeeper request** ([`Proxy::on_request`]): the proxy reads ZooKeeper's framing
//!   (length-prefixed frames; after the connect request, each starts with its xid and
//!   opcode) and, at the next request of a given kind, forwards it and then black-holes,
//!   closes or resets — so a test can lose exactly the reply of a create, or fail exactly the
//!   watch set after it — or holds it, and what follows on its connection, until released, so
//!   a test can change ZooKeeper between two requests of a client.

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A proxy from a local port to `target`.
pub struct Proxy {
    pub addr: SocketAddr,
    state: Arc<State>,
}

struct State {
    target: SocketAddr,
    /// Bumped by every cut: connections of an older generation relay nothing.
    generation: AtomicU64,
    cut: AtomicBool,
    /// Milliseconds each relayed chunk waits.
    delay_ms: AtomicU64,
    /// Reset the connection once the client's next bytes are forwarded.
    cut_after_request: AtomicBool,
    /// Forward requests, drop replies.
    black_hole: AtomicBool,
    /// How many connections were reset by `cut_after_request`.
    resets: AtomicU64,
    /// A fault armed for the next request with one of these opcodes.
    on_request: Mutex<Option<(Vec<i32>, Fault)>>,
    /// How many armed request faults fired.
    fired: AtomicU64,
    /// A request held by [`Fault::Hold`] waits while this is set.
    holding: AtomicBool,
    stop: AtomicBool,
    /// Streams to close when the proxy goes away.
    streams: Mutex<Vec<TcpStream>>,
}

impl Proxy {
    /// Listens on a free loopback port and relays to `target`.
    pub fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding a proxy port");
        let addr = listener.local_addr().expect("the proxy's address");
        let state = Arc::new(State {
            target,
            generation: AtomicU64::new(0),
            cut: AtomicBool::new(false),
            delay_ms: AtomicU64::new(0),
            cut_after_request: AtomicBool::new(false),
            black_hole: AtomicBool::new(false),
            resets: AtomicU64::new(0),
            on_request: Mutex::new(None),
            fired: AtomicU64::new(0),
            holding: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            streams: Mutex::new(Vec::new()),
        });
        let accepting = state.clone();
        std::thread::spawn(move || accept(listener, &accepting));
        Proxy { addr, state }
    }

    /// Partitions: everything goes silent.
    pub fn cut(&self) {
        self.state.cut.store(true, Ordering::SeqCst);
        self.state.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Heals the partition for new connections; ends a black hole by resetting its
    /// connections.
    pub fn restore(&self) {
        if self.state.black_hole.swap(false, Ordering::SeqCst) {
            self.reset_all();
        }
        self.state.cut.store(false, Ordering::SeqCst);
    }

    /// Makes everything relayed from now on wait `delay` (zero: relay at once again).
    pub fn delay(&self, delay: Duration) {
        self.state.delay_ms.store(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX), Ordering::SeqCst);
    }

    /// The next bytes the client sends are forwarded, then that connection is reset before
    /// anything comes back.
    pub fn cut_after_next_request(&self) {
        self.state.cut_after_request.store(true, Ordering::SeqCst);
    }

    /// Whether the armed cut happened, and how many so far.
    pub fn resets(&self) -> u64 {
        self.state.resets.load(Ordering::SeqCst)
    }

    /// From now on, requests pass and replies are dropped (until [`Proxy::restore`]).
    pub fn black_hole(&self) {
        self.state.black_hole.store(true, Ordering::SeqCst);
    }

    /// At the next ZooKeeper request with one of `opcodes` (see [`opcode`]), forward it, then
    /// apply `fault`.
    pub fn on_request(&self, opcodes: &[i32], fault: Fault) {
        *self.state.on_request.lock().unwrap_or_else(|e| e.into_inner()) = Some((opcodes.to_vec(), fault));
    }

    /// Lets a request held by [`Fault::Hold`] go on.
    pub fn release(&self) {
        self.state.holding.store(false, Ordering::SeqCst);
    }

    /// How many faults armed by [`Proxy::on_request`] fired so far.
    pub fn request_faults(&self) -> u64 {
        self.state.fired.load(Ordering::SeqCst)
    }

    /// Resets every connection relayed so far.
    fn reset_all(&self) {
        self.state.generation.fetch_add(1, Ordering::SeqCst);
        for stream in self.state.streams.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            reset(&stream);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        for stream in self.state.streams.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

/// What happens after an armed request passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Every reply from then on is dropped, until [`Proxy::restore`].
    BlackHole,
    /// The connection is closed in order (the client reads an end of stream).
    Close,
    /// The connection is reset (the client reads an error).
    Reset,
    /// A partition from then on, as [`Proxy::cut`] (the request reached the server; nothing
    /// comes back).
    Partition,
    /// The request is not forwarded, nor anything after it on its connection, until
    /// [`Proxy::release`] (a request that reaches the server late, after a change made
    /// meanwhile).
    Hold,
}

/// ZooKeeper's opcodes, as the proxy matches them.
pub mod opcode {
    pub const CREATE: i32 = 1;
    pub const DELETE: i32 = 2;
    pub const EXISTS: i32 = 3;
    pub const GET_DATA: i32 = 4;
    pub const SET_DATA: i32 = 5;
    pub const SYNC: i32 = 9;
    pub const GET_CHILDREN2: i32 = 12;
    pub const CREATE2: i32 = 15;
}

/// Follows ZooKeeper's request framing in the client's byte stream: the first frame (the
/// connect request) has no header; every later one starts with its xid and opcode.
#[derive(Debug, Default)]
struct Framing {
    frames: u64,
    /// Bytes of the current frame's length prefix and header seen so far.
    head: Vec<u8>,
    /// Bytes of the current frame still to come after the head.
    rest: usize,
}

impl Framing {
    /// The opcodes of the requests whose header completes in `bytes`.
    fn opcodes(&mut self, bytes: &[u8]) -> Vec<i32> {
        let mut found = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if self.rest > 0 {
                let take = self.rest.min(bytes.len() - i);
                self.rest -= take;
                i += take;
                continue;
            }
            self.head.push(bytes[i]);
            i += 1;
            let wanted = if self.frames == 0 { 4 } else { 12 };
            if self.head.len() < wanted {
                continue;
            }
            let len = u32::from_be_bytes([self.head[0], self.head[1], self.head[2], self.head[3]]) as usize;
            if self.frames > 0 {
                found.push(i32::from_be_bytes([self.head[8], self.head[9], self.head[10], self.head[11]]));
            }
            self.rest = len.saturating_sub(wanted - 4);
            self.head.clear();
            self.frames += 1;
        }
        found
    }
}

/// Closes `stream` with a reset (RST), as a crashed peer or a middlebox would.
fn reset(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
    let _ = stream.shutdown(Shutdown::Both);
}

fn accept(listener: TcpListener, state: &Arc<State>) {
    for client in listener.incoming() {
        if state.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        if state.cut.load(Ordering::SeqCst) {
            // Accepted, never answered: the client sees a silent peer.
            state.streams.lock().unwrap_or_else(|e| e.into_inner()).push(client);
            continue;
        }
        let Ok(server) = TcpStream::connect_timeout(&state.target, Duration::from_secs(1)) else {
            continue;
        };
        let generation = state.generation.load(Ordering::SeqCst);
        for stream in [&client, &server] {
            if let Ok(clone) = stream.try_clone() {
                state.streams.lock().unwrap_or_else(|e| e.into_inner()).push(clone);
            }
        }
        // Set when this connection is being reset: neither direction relays any more.
        let dead = Arc::new(AtomicBool::new(false));
        for (from, to, requests) in
            [(client.try_clone(), server.try_clone(), true), (server.try_clone(), client.try_clone(), false)]
        {
            if let (Ok(from), Ok(to)) = (from, to) {
                let (state, dead) = (state.clone(), dead.clone());
                std::thread::spawn(move || relay(from, to, requests, generation, &dead, &state));
            }
        }
    }
}

/// Relays `from` to `to`; `requests` for the client-to-server direction.
fn relay(mut from: TcpStream, mut to: TcpStream, requests: bool, generation: u64, dead: &AtomicBool, state: &State) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = [0u8; 16 * 1024];
    let mut framing = Framing::default();
    loop {
        if state.stop.load(Ordering::SeqCst) {
            return;
        }
        if state.generation.load(Ordering::SeqCst) != generation {
            // Cut: stay connected, relay nothing, until the proxy goes away.
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        match from.read(&mut buf) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => {
                let delay = state.delay_ms.load(Ordering::SeqCst);
                if delay > 0 {
                    std::thread::sleep(Duration::from_millis(delay));
                }
                if state.generation.load(Ordering::SeqCst) != generation {
                    continue;
                }
                if dead.load(Ordering::SeqCst) {
                    return;
                }
                if !requests && state.black_hole.load(Ordering::SeqCst) {
                    continue;
                }
                let fault = if requests { armed_fault(state, &framing.opcodes(&buf[..n])) } else { None };
                if fault == Some(Fault::Hold) {
                    // `armed_fault` set `holding` when the fault fired.
                    while state.holding.load(Ordering::SeqCst) && !state.stop.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
                if fault == Some(Fault::BlackHole) {
                    // Before the request goes: its reply must not get through.
                    state.black_hole.store(true, Ordering::SeqCst);
                }
                if fault == Some(Fault::Partition) {
                    let _ = to.write_all(&buf[..n]);
                    state.cut.store(true, Ordering::SeqCst);
                    state.generation.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
                if let Some(fault @ (Fault::Close | Fault::Reset)) = fault {
                    dead.store(true, Ordering::SeqCst);
                    let _ = to.flush();
                    std::thread::sleep(Duration::from_millis(20));
                    if fault == Fault::Reset {
                        reset(&from);
                        reset(&to);
                    } else {
                        let _ = from.shutdown(Shutdown::Both);
                        let _ = to.shutdown(Shutdown::Both);
                    }
                    return;
                }
                if requests && state.cut_after_request.swap(false, Ordering::SeqCst) {
                    // The request is on its way; the answer never comes back.
                    dead.store(true, Ordering::SeqCst);
                    let _ = to.flush();
                    std::thread::sleep(Duration::from_millis(20));
                    reset(&from);
                    reset(&to);
                    state.resets.fetch_add(1, Ordering::SeqCst);
                    return;
                }
            }
            Err(err) if matches!(err.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => {
                let _ = to.shutdown(Shutdown::Both);
                return;
            }
        }
    }
}

/// Takes the armed request fault if one of `opcodes` matches it.
fn armed_fault(state: &State, opcodes: &[i32]) -> Option<Fault> {
    if opcodes.is_empty() {
        return None;
    }
    let mut armed = state.on_request.lock().unwrap_or_else(|e| e.into_inner());
    let matches = armed.as_ref().is_some_and(|(wanted, _)| opcodes.iter().any(|op| wanted.contains(op)));
    if !matches {
        return None;
    }
    let fault = armed.take().map(|(_, fault)| fault);
    if fault == Some(Fault::Hold) {
        state.holding.store(true, Ordering::SeqCst);
    }
    state.fired.fetch_add(1, Ordering::SeqCst);
    fault
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut out = u32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
        out.extend_from_slice(body);
        out
    }

    fn request(xid: i32, opcode: i32, payload: &[u8]) -> Vec<u8> {
        let mut body = xid.to_be_bytes().to_vec();
        body.extend_from_slice(&opcode.to_be_bytes());
        body.extend_from_slice(payload);
        frame(&body)
    }

    #[test]
    fn finds_opcodes_across_any_split() {
        let mut stream = frame(&[9; 40]); // the connect request
        stream.extend(request(1, opcode::CREATE2, b"/svc/host1_"));
        stream.extend(request(-2, 11, b"")); // a ping
        stream.extend(request(2, opcode::GET_DATA, b"/svc/x"));
        for split in 1..stream.len() {
            let mut framing = Framing::default();
            let mut found = framing.opcodes(&stream[..split]);
            found.extend(framing.opcodes(&stream[split..]));
            assert_eq!(found, [opcode::CREATE2, 11, opcode::GET_DATA], "split at {split}");
        }
    }
}
