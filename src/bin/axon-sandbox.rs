//! `axon-sandbox`: starts the sandbox (see `axon::sandbox`), shows a live view until Ctrl-C,
//! then stops and removes everything it started — even when its output has gone (`make sandbox
//! | tee log`, whose reader dies with the same Ctrl-C): nothing it prints can stop the cleanup.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axon::sandbox::Sandbox;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn request_stop(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn main() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, request_stop as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, request_stop as *const () as libc::sighandler_t);
    }
    say("starting: ZooKeeper ×3, service A ×2, service B ×1, one axon-registrar per instance…\n");
    let mut sandbox = Sandbox::start();
    let guide = sandbox.guide();
    while !STOP.load(Ordering::SeqCst) {
        let view = sandbox.view();
        // Clear the screen and redraw.
        say(&format!("\x1b[2J\x1b[H{guide}\n{view}\nCtrl-C stops the sandbox and removes everything it started.\n"));
        for _ in 0..10 {
            if STOP.load(Ordering::SeqCst) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    say("\nstopping…\n");
    drop(sandbox);
    say("stopped; nothing left running.\n");
}

/// Writes to standard output; a closed output is not an error here.
fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}
