//! Entries in the machine's /etc/hosts, for tests of name resolution with the real resolver
//! (nsswitch reads the file at every lookup). Each entry is removed when its guard goes.

use std::io::Write as _;
use std::sync::Mutex;

const HOSTS: &str = "/etc/hosts";
/// Tests of one process edit the file one at a time.
static EDIT: Mutex<()> = Mutex::new(());

/// One line of /etc/hosts, there until dropped.
pub struct HostsEntry {
    line: String,
}

impl HostsEntry {
    /// Adds `<ip> <name>`; needs root (the tests run as root, as the sandbox does).
    pub fn add(name: &str, ip: &str) -> HostsEntry {
        let line = format!("{ip} {name} # axon test {}", std::process::id());
        let _edit = EDIT.lock().unwrap_or_else(|e| e.into_inner());
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(HOSTS)
            .unwrap_or_else(|e| panic!("editing {HOSTS} (tests of name resolution need root): {e}"));
        writeln!(file, "{line}").expect("writing /etc/hosts");
        HostsEntry { line }
    }
}

impl Drop for HostsEntry {
    fn drop(&mut self) {
        let _edit = EDIT.lock().unwrap_or_else(|e| e.into_inner());
        if let Ok(text) = std::fs::read_to_string(HOSTS) {
            let kept: String = text.lines().filter(|l| *l != self.line).map(|l| format!("{l}\n")).collect();
            // In place (not renamed over): /etc/hosts may be a mount of its own.
            let _ = std::fs::write(HOSTS, kept);
        }
    }
}
