//! axon-spoa processes, each with its own directory (configuration, cache, log) and status
//! endpoint.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::haproxy::Haproxy;
use super::process::Proc;
use super::{bins, http, ports, wait, workdir};

pub struct Spoa {
    pub proc: Proc,
    pub status_port: u16,
    dir: tempfile::TempDir,
}

/// Where an axon-spoa will live, before it starts.
pub struct SpoaDir {
    pub status_port: u16,
    dir: tempfile::TempDir,
}

impl SpoaDir {
    pub fn new() -> SpoaDir {
        SpoaDir { status_port: ports::free_port(), dir: workdir("spoa") }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn cache_file(&self) -> PathBuf {
        self.dir.path().join("cache.json")
    }

    /// The top of a configuration: cache, status endpoint, ZooKeeper and `haproxy`'s runtime
    /// socket and host map (and state file, if given); services follow. Resyncs every second
    /// and polls HAProxy's pid every 100 ms to keep tests short.
    pub fn header(&self, zk: &str, haproxy: &Haproxy, state_file: Option<&Path>) -> String {
        let state_file =
            state_file.map(|p| format!("state_file = {:?}\n", p.display().to_string())).unwrap_or_default();
        format!(
            "cache_file = {:?}\n\n[status]\nlisten = \"127.0.0.1:{}\"\n\n[zookeeper]\nconnect = {zk:?}\nsession_timeout = \"4s\"\n\
             reconnect_backoff_max = \"500ms\"\n\n[haproxy]\nsocket = {:?}\nhost_map = {:?}\nslots_file = {:?}\n{state_file}resync_interval = \"1s\"\n\
             reload_check_interval = \"100ms\"\n\n",
            self.cache_file().display().to_string(),
            self.status_port,
            haproxy.socket().display().to_string(),
            haproxy.host_map().display().to_string(),
            haproxy.slots_file().display().to_string(),
        )
    }

    /// Writes `config` and starts axon-spoa; returns once its status endpoint answers.
    pub fn start(self, config: &str) -> Spoa {
        let file = self.dir.path().join("spoa.toml");
        std::fs::write(&file, config).expect("writing axon-spoa's configuration");
        let mut spoa = Spoa { proc: spawn(&file, self.dir.path()), status_port: self.status_port, dir: self.dir };
        spoa.wait_ready();
        spoa
    }
}

impl Default for SpoaDir {
    fn default() -> Self {
        SpoaDir::new()
    }
}

fn spawn(file: &Path, dir: &Path) -> Proc {
    let mut command = Command::new(bins::axon("axon-spoa"));
    command.arg(file).env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()));
    Proc::spawn("axon-spoa", &mut command, &dir.join("spoa.log")).with_stop_signal(libc::SIGTERM)
}

impl Spoa {
    fn wait_ready(&mut self) {
        wait::for_true("axon-spoa's status endpoint", wait::SECOND * 10, || {
            assert!(self.proc.is_running(), "axon-spoa exited:\n{}", self.proc.log_tail(20));
            self.try_status().is_some()
        });
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn status_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.status_port))
    }

    pub fn try_status(&self) -> Option<Value> {
        http::get_json(self.status_addr(), "/status").ok()
    }

    pub fn status(&self) -> Value {
        http::get_json(self.status_addr(), "/status").unwrap_or_else(|e| panic!("axon-spoa status: {e}"))
    }

    /// One metric's value (the sum over its label sets), 0 when absent.
    pub fn metric(&self, name: &str) -> f64 {
        http::metric(&self.metrics(), name)
    }

    /// The Prometheus metrics text.
    pub fn metrics(&self) -> String {
        http::get(self.status_addr(), "/metrics").unwrap_or_else(|e| panic!("axon-spoa metrics: {e}")).body
    }

    /// SIGKILL, then the same configuration started again.
    pub fn kill_and_restart(&mut self) {
        self.proc.kill();
        self.proc = spawn(&self.dir.path().join("spoa.toml"), self.dir.path());
        self.wait_ready();
    }

    /// Stops it (SIGTERM) and waits for the exit.
    pub fn stop(&mut self) {
        self.proc.stop(libc::SIGTERM, wait::SECOND * 5);
    }

    /// Starts it again after [`Spoa::stop`].
    pub fn start_again(&mut self) {
        self.proc = spawn(&self.dir.path().join("spoa.toml"), self.dir.path());
        self.wait_ready();
    }
}
