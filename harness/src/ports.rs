//! Free loopback ports picked at run time, never handed out twice by one process.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::Mutex;

static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A port that was free on 127.0.0.1 a moment ago and that this process has not handed out.
pub fn free_port() -> u16 {
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    for _ in 0..1000 {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("binding 127.0.0.1:0").port();
        if given.insert(port) {
            return port;
        }
    }
    panic!("no free port found")
}

/// `port` when it is free on 127.0.0.1 and not handed out yet, else any free port: for the
/// sandbox's documented defaults, which must not keep it from starting when one is taken.
pub fn prefer(port: u16) -> u16 {
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let set = given.get_or_insert_with(HashSet::new);
    if !set.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
        set.insert(port);
        return port;
    }
    drop(given);
    free_port()
}
