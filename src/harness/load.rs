//! A light, continuous HTTP load through HAProxy: per service, a few clients each on its own
//! keep-alive connection sending one request after another (about 100 a second each). Every
//! request is recorded — when it started, how long it took, who answered or how it failed — so
//! scenarios can count failures per service, find when they happened, and check who served.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a client waits for an answer before counting the request failed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The pause between two requests of one client.
const PAUSE: Duration = Duration::from_millis(10);

/// How one request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx from this instance.
    Served(String),
    /// Any other status, with the `X-Axon-Reason` header if there was one.
    Status(u16, Option<String>),
    /// HAProxy refused the connection (it was down).
    Refused,
    /// The connection closed before an answer (a reloading HAProxy closes idle keep-alive
    /// connections).
    Closed,
    /// No answer within [`REQUEST_TIMEOUT`].
    TimedOut,
    /// Anything else, described.
    Error(String),
}

impl Outcome {
    pub fn ok(&self) -> bool {
        matches!(self, Outcome::Served(_))
    }
}

/// One request.
#[derive(Debug, Clone)]
pub struct Request {
    pub service: String,
    pub started: Instant,
    pub took: Duration,
    pub outcome: Outcome,
    /// Sent again on a new connection because the kept-alive one had been closed before any
    /// answer (as HTTP clients do for idempotent requests).
    pub retried: bool,
}

/// The load, running until dropped or [`Load::stop`]ped.
pub struct Load {
    log: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    clients: Vec<JoinHandle<()>>,
}

impl Load {
    /// Starts `clients` clients per service against HAProxy at `addr`, each sending
    /// `Host: <service>.example`.
    pub fn start(addr: SocketAddr, services: &[&str], clients: usize) -> Load {
        let log: Arc<Mutex<Vec<Request>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::new();
        for service in services {
            for _ in 0..clients {
                let (log, stop, service) = (log.clone(), stop.clone(), (*service).to_owned());
                handles.push(std::thread::spawn(move || client(addr, &service, &log, &stop)));
            }
        }
        Load { log, stop, clients: handles }
    }

    /// Every request finished so far, in finishing order.
    pub fn requests(&self) -> Vec<Request> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// How many requests finished so far.
    pub fn len(&self) -> usize {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The requests that finished after the first `from`.
    pub fn since(&self, from: usize) -> Vec<Request> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).get(from..).map(<[Request]>::to_vec).unwrap_or_default()
    }

    /// Stops every client (after its request in flight).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for client in self.clients.drain(..) {
            let _ = client.join();
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop();
    }
}

fn client(addr: SocketAddr, service: &str, log: &Mutex<Vec<Request>>, stop: &AtomicBool) {
    let host = format!("{service}.example");
    let mut connection: Option<BufReader<TcpStream>> = None;
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let reused = connection.is_some();
        let (mut outcome, mut kept) = match connection.take() {
            Some(reader) => exchange(reader, &host),
            None => fresh(addr, &host),
        };
        let retried = reused && outcome == Outcome::Closed;
        if retried {
            // The kept-alive connection was closed before any answer: once more, afresh.
            (outcome, kept) = fresh(addr, &host);
        }
        connection = kept;
        let request = Request { service: service.to_owned(), started, took: started.elapsed(), outcome, retried };
        log.lock().unwrap_or_else(|e| e.into_inner()).push(request);
        std::thread::sleep(PAUSE);
    }
}

/// One request on a new connection.
fn fresh(addr: SocketAddr, host: &str) -> (Outcome, Option<BufReader<TcpStream>>) {
    match TcpStream::connect_timeout(&addr, REQUEST_TIMEOUT) {
        Ok(stream) => {
            let _ = stream.set_read_timeout(Some(REQUEST_TIMEOUT));
            let _ = stream.set_nodelay(true);
            exchange(BufReader::new(stream), host)
        }
        Err(err) if err.kind() == std::io::ErrorKind::ConnectionRefused => (Outcome::Refused, None),
        Err(err) => (Outcome::Error(format!("connect: {err}")), None),
    }
}

/// One request on a connection; returns its outcome and the connection if it can be reused.
fn exchange(mut reader: BufReader<TcpStream>, host: &str) -> (Outcome, Option<BufReader<TcpStream>>) {
    let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: axon-load\r\n\r\n");
    if let Err(err) = reader.get_mut().write_all(request.as_bytes()) {
        return (classify(&err), None);
    }
    let mut status_line = String::new();
    match reader.read_line(&mut status_line) {
        Ok(0) => return (Outcome::Closed, None),
        Ok(_) => {}
        Err(err) => return (classify(&err), None),
    }
    let status: u16 = status_line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let (mut length, mut close, mut instance, mut reason) = (0usize, false, None, None);
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) => return (Outcome::Closed, None),
            Ok(_) => {}
            Err(err) => return (classify(&err), None),
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = value.parse().unwrap_or(0),
                "connection" => close = value.eq_ignore_ascii_case("close"),
                "x-instance" => instance = Some(value.to_owned()),
                "x-axon-reason" => reason = Some(value.to_owned()),
                _ => {}
            }
        }
    }
    let mut body = vec![0u8; length];
    if let Err(err) = reader.read_exact(&mut body) {
        return (classify(&err), None);
    }
    let outcome = match (status, instance) {
        (200..=299, Some(instance)) => Outcome::Served(instance),
        (status, _) => Outcome::Status(status, reason),
    };
    (outcome, (!close).then_some(reader))
}

fn classify(err: &std::io::Error) -> Outcome {
    use std::io::ErrorKind::*;
    match err.kind() {
        WouldBlock | TimedOut => Outcome::TimedOut,
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => Outcome::Closed,
        ConnectionRefused => Outcome::Refused,
        _ => Outcome::Error(err.to_string()),
    }
}
