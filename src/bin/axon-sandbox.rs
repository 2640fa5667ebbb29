//! `axon-sandbox`: starts the sandbox (see `axon::sandbox`), shows a live view until Ctrl-C,
//! then stops and removes everything it started.

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
    eprintln!("starting: ZooKeeper ×3, service A ×2, service B ×1, one axon-registrar per instance…");
    let mut sandbox = Sandbox::start();
    let guide = sandbox.guide();
    while !STOP.load(Ordering::SeqCst) {
        let view = sandbox.view();
        // Clear the screen and redraw.
        print!("\x1b[2J\x1b[H{guide}\n{view}\nCtrl-C stops the sandbox and removes everything it started.\n");
        for _ in 0..10 {
            if STOP.load(Ordering::SeqCst) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    println!("\nstopping…");
    drop(sandbox);
    println!("stopped; nothing left running.");
}
