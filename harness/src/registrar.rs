//! axon-registrar processes, each with its own directory (configuration, maintenance files,
//! log) and status endpoint.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::process::Proc;
use super::{bins, http, ports, wait, workdir};

pub struct Registrar {
    pub proc: Proc,
    pub status_port: u16,
    dir: tempfile::TempDir,
}

/// Where a registrar will live, before it starts: tests write its configuration with
/// [`RegistrarDir::header`] and then [`RegistrarDir::start`] it.
pub struct RegistrarDir {
    pub status_port: u16,
    dir: tempfile::TempDir,
}

impl RegistrarDir {
    pub fn new() -> RegistrarDir {
        RegistrarDir { status_port: ports::free_port(), dir: workdir("registrar") }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn maintenance_dir(&self) -> PathBuf {
        self.dir.path().join("maintenance")
    }

    /// The top of a configuration: instance id, maintenance directory, status endpoint and
    /// ZooKeeper; services follow.
    pub fn header(&self, zk: &str, instance_id: &str, session_timeout: &str) -> String {
        format!(
            "instance_id = {instance_id:?}\nmaintenance_dir = {:?}\n\n[status]\nlisten = \"127.0.0.1:{}\"\n\n\
             [zookeeper]\nconnect = {zk:?}\nsession_timeout = {session_timeout:?}\nreconnect_backoff_max = \"500ms\"\n\n",
            self.maintenance_dir(),
            self.status_port
        )
    }

    /// Writes `config` and starts the registrar; returns once its status endpoint answers.
    pub fn start(self, config: &str) -> Registrar {
        let file = self.dir.path().join("registrar.toml");
        std::fs::write(&file, config).expect("writing the registrar's configuration");
        let mut command = Command::new(bins::axon("axon-registrar"));
        command.arg(&file).env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()));
        let proc = Proc::spawn("axon-registrar", &mut command, &self.dir.path().join("registrar.log"))
            .with_stop_signal(libc::SIGTERM);
        let mut registrar = Registrar { proc, status_port: self.status_port, dir: self.dir };
        wait::for_true("axon-registrar's status endpoint", wait::SECOND * 10, || {
            assert!(registrar.proc.is_running(), "axon-registrar exited:\n{}", registrar.proc.log_tail(20));
            registrar.try_status().is_some()
        });
        registrar
    }
}

impl Default for RegistrarDir {
    fn default() -> Self {
        RegistrarDir::new()
    }
}

impl Registrar {
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("registrar.toml")
    }

    pub fn status_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.status_port))
    }

    pub fn try_status(&self) -> Option<Value> {
        http::get_json(self.status_addr(), "/status").ok()
    }

    /// The JSON status document.
    pub fn status(&self) -> Value {
        http::get_json(self.status_addr(), "/status").unwrap_or_else(|e| panic!("registrar status: {e}"))
    }

    /// The Prometheus metrics text.
    pub fn metrics(&self) -> String {
        http::get(self.status_addr(), "/metrics").unwrap_or_else(|e| panic!("registrar metrics: {e}")).body
    }

    /// One metric's value (the sum over its label sets), 0 when absent.
    pub fn metric(&self, name: &str) -> f64 {
        http::metric(&self.metrics(), name)
    }

    /// The state (`up`, `down`, `maintenance`) of one service, from the status document.
    pub fn service_state(&self, service: &str) -> Option<String> {
        let status = self.try_status()?;
        status["services"].as_array()?.iter().find(|s| s["name"] == service)?["state"].as_str().map(str::to_owned)
    }

    /// Replaces the configuration file and sends SIGHUP.
    pub fn reload(&self, config: &str) {
        std::fs::write(self.config_path(), config).expect("rewriting the configuration");
        self.proc.signal(libc::SIGHUP);
    }

    /// Runs `axon-registrar maintenance <on|off> <service>` against this registrar's config.
    pub fn maintenance(&self, on: bool, service: &str) {
        let output = Command::new(bins::axon("axon-registrar"))
            .args(["maintenance", if on { "on" } else { "off" }, service, "--config"])
            .arg(self.config_path())
            .output()
            .expect("running axon-registrar maintenance");
        assert!(output.status.success(), "maintenance failed: {}", String::from_utf8_lossy(&output.stderr));
    }

    /// SIGTERM, and wait for the exit (at most `timeout`).
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        self.proc.signal(libc::SIGTERM);
        self.proc.wait_exit(timeout)
    }

    /// Starts it again, with the same configuration, after it exited or was killed.
    pub fn start_again(&mut self) {
        self.proc.kill();
        let mut command = Command::new(bins::axon("axon-registrar"));
        command.arg(self.config_path()).env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()));
        self.proc = Proc::spawn("axon-registrar", &mut command, &self.dir.path().join("registrar.log"))
            .with_stop_signal(libc::SIGTERM);
        wait::for_true("axon-registrar's status endpoint", wait::SECOND * 10, || {
            assert!(self.proc.is_running(), "axon-registrar exited:\n{}", self.proc.log_tail(20));
            self.try_status().is_some()
        });
    }
}

/// Runs `axon-registrar --check <file>` and returns (success, stdout + stderr).
pub fn check_config(file: &Path) -> (bool, String) {
    let output = Command::new(bins::axon("axon-registrar")).arg("--check").arg(file).output().expect("running --check");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}
