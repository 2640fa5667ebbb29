//! `axon-sandbox`: starts the sandbox (see `axon_harness::sandbox`), shows a live view until Ctrl-C,
//! then stops and removes everything it started — even when its output has gone (`make sandbox
//! | tee log`, whose reader dies with the same Ctrl-C): nothing it prints can stop the cleanup.
//!
//! On a terminal, single keys inject the crash scenarios' faults (`axon_harness::sandbox::KEYS`)
//! and the view shows their effect and the recovery as they happen.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axon_harness::sandbox::Sandbox;

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
    let keys = Keys::open();
    let help = if keys.is_some() { Sandbox::keys_help() } else { "(no terminal: no keys)".to_owned() };
    while !STOP.load(Ordering::SeqCst) {
        let view = sandbox.view();
        // Clear the screen and redraw.
        say(&format!(
            "\x1b[2J\x1b[H{guide}\n{view}\n{help}\nCtrl-C stops the sandbox and removes everything it started.\n"
        ));
        for _ in 0..10 {
            if STOP.load(Ordering::SeqCst) {
                break;
            }
            match keys.as_ref().and_then(|k| k.next(Duration::from_millis(100))) {
                Some(key) => {
                    if let Some(done) = sandbox.press(key) {
                        say(&format!("\n{done}…\n"));
                    }
                    break;
                }
                None if keys.is_none() => std::thread::sleep(Duration::from_millis(100)),
                None => {}
            }
        }
    }
    drop(keys);
    say("\nstopping…\n");
    drop(sandbox);
    say("stopped; nothing left running.\n");
}

/// Standard input as single keys: a terminal without line editing or echo, restored on drop.
struct Keys {
    saved: libc::termios,
}

impl Keys {
    /// `None` when standard input is not a terminal.
    fn open() -> Option<Keys> {
        // SAFETY: isatty, tcgetattr and tcsetattr only read and write the termios given.
        unsafe {
            if libc::isatty(0) != 1 {
                return None;
            }
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut saved) != 0 {
                return None;
            }
            let mut raw = saved;
            raw.c_lflag &= !(libc::ICANON | libc::ECHO);
            raw.c_cc[libc::VMIN] = 0;
            raw.c_cc[libc::VTIME] = 0;
            (libc::tcsetattr(0, libc::TCSANOW, &raw) == 0).then_some(Keys { saved })
        }
    }

    /// The next key pressed within `wait`, if any.
    fn next(&self, wait: Duration) -> Option<char> {
        let mut fd = libc::pollfd { fd: 0, events: libc::POLLIN, revents: 0 };
        let millis = libc::c_int::try_from(wait.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd; a one-byte read into a local buffer.
        unsafe {
            if libc::poll(&mut fd, 1, millis) != 1 {
                return None;
            }
            let mut byte = 0u8;
            (libc::read(0, (&mut byte as *mut u8).cast(), 1) == 1).then_some(char::from(byte))
        }
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        // SAFETY: restores the attributes read in `open`.
        unsafe {
            libc::tcsetattr(0, libc::TCSANOW, &self.saved);
        }
    }
}

/// Writes to standard output; a closed output is not an error here.
fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}
