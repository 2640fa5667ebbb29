//! Waiting on readiness and conditions, never on fixed sleeps.

use std::time::{Duration, Instant};

/// How often conditions are polled.
pub const POLL: Duration = Duration::from_millis(20);
/// One second, for readable timeouts (`wait::SECOND * 10`).
pub const SECOND: Duration = Duration::from_secs(1);

/// Polls `condition` until it returns `Some`, or panics after `timeout` naming `what`.
pub fn until<T>(what: &str, timeout: Duration, mut condition: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = condition() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(POLL);
    }
}

/// Polls a boolean condition until it holds, or panics after `timeout`.
pub fn for_true(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    until(what, timeout, || condition().then_some(()))
}

/// Polls `condition` until it holds and returns how long that took, or `None` after `timeout`.
pub fn timed(timeout: Duration, mut condition: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if condition() {
            return Some(start.elapsed());
        }
        if start.elapsed() >= timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Checks that `invariant` holds at every poll for `duration`; panics naming `what` otherwise.
pub fn holds_for(what: &str, duration: Duration, mut invariant: impl FnMut() -> bool) {
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline {
        assert!(invariant(), "{what} stopped holding");
        std::thread::sleep(POLL);
    }
}
