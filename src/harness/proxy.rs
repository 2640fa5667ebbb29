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
//!   restored, which resets the connections (the client then reconnects).

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
                if to.write_all(&buf[..n]).is_err() {
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
