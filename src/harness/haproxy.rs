//! Real HAProxy processes (master-worker, foreground) with a given configuration, and their
//! runtime API (stats socket).

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::process::Proc;
use super::{bins, wait, workdir};

const INSTALL: &str = "install it with `apt-get install -y haproxy` (or run `make deps`)";

/// The HAProxy binary: `AXON_HAPROXY` if set (for a second version), else `haproxy` on PATH.
pub fn binary() -> PathBuf {
    match std::env::var_os("AXON_HAPROXY") {
        Some(path) => PathBuf::from(path),
        None => bins::system("haproxy", INSTALL),
    }
}

/// Validates a configuration file with `haproxy -c`; `Err` carries HAProxy's output.
pub fn check_config(file: &Path) -> Result<(), String> {
    let output = Command::new(binary()).arg("-c").arg("-f").arg(file).output().expect("running haproxy -c");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    if output.status.success() { Ok(()) } else { Err(text) }
}

/// A directory for an HAProxy, before it starts: configurations refer to its socket path.
pub struct HaproxyDir {
    dir: tempfile::TempDir,
}

impl HaproxyDir {
    pub fn new() -> HaproxyDir {
        HaproxyDir { dir: workdir("haproxy") }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The admin-level stats socket path configurations should declare.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("admin.sock")
    }

    /// Writes the configuration and starts HAProxy; returns once the runtime API answers.
    pub fn start(self, config: &str) -> Haproxy {
        let cfg = self.dir.path().join("haproxy.cfg");
        std::fs::write(&cfg, config).expect("writing haproxy.cfg");
        if let Err(err) = check_config(&cfg) {
            panic!("haproxy -c refused the configuration:\n{err}\n{config}");
        }
        let mut haproxy = Haproxy { proc: None, dir: self.dir, cfg };
        haproxy.spawn();
        haproxy
    }
}

impl Default for HaproxyDir {
    fn default() -> Self {
        HaproxyDir::new()
    }
}

pub struct Haproxy {
    proc: Option<Proc>,
    dir: tempfile::TempDir,
    cfg: PathBuf,
}

impl Haproxy {
    fn spawn(&mut self) {
        let mut command = Command::new(binary());
        command.arg("-W").arg("-db").arg("-f").arg(&self.cfg).arg("-p").arg(self.dir.path().join("haproxy.pid"));
        let proc =
            Proc::spawn("haproxy", &mut command, &self.dir.path().join("haproxy.log")).with_stop_signal(libc::SIGTERM);
        self.proc = Some(proc);
        wait::for_true("HAProxy's runtime API", wait::SECOND * 10, || {
            assert!(self.proc.as_mut().is_some_and(Proc::is_running), "haproxy exited:\n{}", self.log_tail());
            self.try_runtime("show info").is_ok_and(|info| info.contains("Pid:"))
        });
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("admin.sock")
    }

    pub fn config_path(&self) -> &Path {
        &self.cfg
    }

    /// Sends one runtime API command line and returns the reply.
    pub fn try_runtime(&self, command: &str) -> std::io::Result<String> {
        let mut stream = UnixStream::connect(self.socket())?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(format!("{command}\n").as_bytes())?;
        let mut reply = String::new();
        stream.read_to_string(&mut reply)?;
        Ok(reply)
    }

    pub fn runtime(&self, command: &str) -> String {
        self.try_runtime(command).unwrap_or_else(|e| panic!("runtime API `{command}`: {e}"))
    }

    /// A field of `show info` (`Pid`, `Uptime_sec`, …).
    pub fn info(&self, field: &str) -> Option<String> {
        let info = self.try_runtime("show info").ok()?;
        info.lines().find_map(|l| l.strip_prefix(&format!("{field}: ")).map(str::to_owned))
    }

    /// The master process id.
    pub fn master_pid(&self) -> i32 {
        self.proc.as_ref().map_or(0, Proc::pid)
    }

    /// Reloads (SIGUSR2 to the master), as an operator's `systemctl reload` would.
    pub fn reload(&self) {
        if let Some(proc) = &self.proc {
            proc.signal(libc::SIGUSR2);
        }
    }

    /// Stops HAProxy and starts it again with the same configuration.
    pub fn restart(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            proc.stop(libc::SIGTERM, Duration::from_secs(5));
        }
        let _ = std::fs::remove_file(self.socket());
        self.spawn();
    }

    pub fn log_tail(&self) -> String {
        self.proc.as_ref().map(|p| p.log_tail(30)).unwrap_or_default()
    }
}
