//! A continuous HTTP load through HAProxy: per service, clients each on its own keep-alive
//! connection sending one request after another, to a path of the caller's choosing (a slow
//! one keeps requests in flight on every instance, so a fault catches some mid-flight). Every
//! request is recorded — which client sent it, when it started, how long it took, who answered
//! or how it failed — so scenarios can count failures per service, find when they happened,
//! and check who served.

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
    /// Which client sent it (clients send one request at a time).
    pub client: usize,
    pub started: Instant,
    pub took: Duration,
    pub outcome: Outcome,
    /// Sent again on a new connection because the kept-alive one had been closed before any
    /// answer (as HTTP clients do for idempotent requests); `outcome` is the second try's.
    pub retried: bool,
}

impl Request {
    pub fn finished(&self) -> Instant {
        self.started + self.took
    }

    /// Whether it failed, or would have without the client's re-send.
    pub fn failed_without_resend(&self) -> bool {
        !self.outcome.ok() || self.retried
    }
}

/// The load, running until dropped or [`Load::stop`]ped.
pub struct Load {
    log: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    clients: Vec<JoinHandle<()>>,
}

impl Load {
    /// Starts, per service and per `(path, count)` of `clients`, `count` clients against
    /// HAProxy at `addr`, each sending `GET <path>` with `Host: <service>.example`.
    pub fn start(addr: SocketAddr, services: &[&str], clients: &[(&str, usize)]) -> Load {
        let log: Arc<Mutex<Vec<Request>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::new();
        for service in services {
            for (path, count) in clients {
                for _ in 0..*count {
                    let (log, stop, service, path) =
                        (log.clone(), stop.clone(), (*service).to_owned(), (*path).to_owned());
                    let id = handles.len();
                    handles.push(std::thread::spawn(move || client(addr, id, &service, &path, &log, &stop)));
                }
            }
        }
        Load { log, stop, clients: handles }
    }

    /// Every request finished so far, in finishing order.
    pub fn requests(&self) -> Vec<Request> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The requests in flight at some moment of `[from, to]` or started within it: finished at
    /// or after `from`, started at or before `to`. Waits first (up to the request timeout) for
    /// the stragglers: until every client has finished what it had started by `to`.
    pub fn window(&self, from: Instant, to: Instant) -> Vec<Request> {
        let deadline = Instant::now().max(to) + REQUEST_TIMEOUT + Duration::from_secs(1);
        loop {
            self.check_clients();
            let log = self.log.lock().unwrap_or_else(|e| e.into_inner()).clone();
            // A client is done with the window once one of its requests started after `to`.
            let done = (0..self.clients.len()).all(|c| log.iter().any(|r| r.client == c && r.started > to));
            if done || Instant::now() >= deadline {
                return log.into_iter().filter(|r| r.finished() >= from && r.started <= to).collect();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// How many requests finished so far.
    pub fn len(&self) -> usize {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Panics if a client thread died: a load that silently stopped would make every verdict
    /// about it vacuous.
    pub fn check_clients(&self) {
        let dead = self.clients.iter().filter(|c| c.is_finished()).count();
        assert!(
            dead == 0 || self.stop.load(Ordering::Relaxed),
            "{dead} load client(s) stopped on their own (panicked)"
        );
    }

    /// Stops every client (after its request in flight); panics if one had panicked.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let panicked = self.clients.drain(..).map(JoinHandle::join).filter(Result::is_err).count();
        assert!(panicked == 0 || std::thread::panicking(), "{panicked} load client(s) panicked");
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        if !self.clients.is_empty() {
            self.stop();
        }
    }
}

fn client(addr: SocketAddr, id: usize, service: &str, path: &str, log: &Mutex<Vec<Request>>, stop: &AtomicBool) {
    let host = format!("{service}.example");
    let mut connection: Option<BufReader<TcpStream>> = None;
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let reused = connection.is_some();
        let (mut outcome, mut kept) = match connection.take() {
            Some(reader) => exchange(reader, &host, path),
            None => fresh(addr, &host, path),
        };
        let retried = reused && outcome == Outcome::Closed;
        if retried {
            // The kept-alive connection was closed before any answer: once more, afresh.
            (outcome, kept) = fresh(addr, &host, path);
        }
        connection = kept;
        let request =
            Request { service: service.to_owned(), client: id, started, took: started.elapsed(), outcome, retried };
        log.lock().unwrap_or_else(|e| e.into_inner()).push(request);
        std::thread::sleep(PAUSE);
    }
}

/// One request on a new connection.
fn fresh(addr: SocketAddr, host: &str, path: &str) -> (Outcome, Option<BufReader<TcpStream>>) {
    match TcpStream::connect_timeout(&addr, REQUEST_TIMEOUT) {
        Ok(stream) => {
            let _ = stream.set_read_timeout(Some(REQUEST_TIMEOUT));
            let _ = stream.set_nodelay(true);
            exchange(BufReader::new(stream), host, path)
        }
        // Refused, or reset by a listener closing as HAProxy stops: the connection-level
        // failures of a proxy that is down.
        Err(err) => match classify(&err) {
            Outcome::Error(text) => (Outcome::Error(format!("connect: {text}")), None),
            other => (other, None),
        },
    }
}

/// One request on a connection; returns its outcome and the connection if it can be reused.
fn exchange(mut reader: BufReader<TcpStream>, host: &str, path: &str) -> (Outcome, Option<BufReader<TcpStream>>) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: axon-load\r\n\r\n");
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
