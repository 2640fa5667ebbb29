//! Sample HTTP services: `axon-sample` processes answering with their service and instance
//! names, whose health can be failed and restored, and which can be killed or frozen for real.

use std::net::SocketAddr;
use std::process::Command;

use super::process::Proc;
use super::{bins, http, ports, wait, workdir};

pub struct Sample {
    pub service: String,
    pub instance: String,
    pub ports: Vec<u16>,
    pub proc: Proc,
    _dir: tempfile::TempDir,
}

impl Sample {
    /// One instance listening on one free port.
    pub fn start(service: &str, instance: &str) -> Sample {
        Sample::start_many(service, instance, 1)
    }

    /// One process listening on `count` free ports (for benchmarks with many services).
    pub fn start_many(service: &str, instance: &str, count: usize) -> Sample {
        let ports: Vec<u16> = (0..count).map(|_| ports::free_port()).collect();
        Sample::start_on(service, instance, &ports)
    }

    /// One instance on the given ports (for a restart on the same port).
    pub fn start_on(service: &str, instance: &str, ports: &[u16]) -> Sample {
        let dir = workdir("sample");
        let mut command = Command::new(bins::axon("axon-sample"));
        command.args(["--service", service, "--instance", instance]);
        for port in ports {
            command.arg("--listen").arg(format!("127.0.0.1:{port}"));
        }
        let proc = Proc::spawn(&format!("sample {service}/{instance}"), &mut command, &dir.path().join("sample.log"));
        let sample =
            Sample { service: service.into(), instance: instance.into(), ports: ports.to_vec(), proc, _dir: dir };
        for port in ports {
            let addr = SocketAddr::from(([127, 0, 0, 1], *port));
            wait::for_true(&format!("{service}/{instance} to listen on {port}"), wait::SECOND * 10, || {
                http::get(addr, "/health").is_ok()
            });
        }
        sample
    }

    pub fn port(&self) -> u16 {
        self.ports[0]
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port()))
    }

    /// How many connections the first port accepted so far (this query's own included).
    pub fn connections(&self) -> u64 {
        let response =
            http::get(self.addr(), "/admin/connections").unwrap_or_else(|e| panic!("/admin/connections: {e}"));
        response.body.trim().parse().unwrap_or_else(|e| panic!("/admin/connections: {e}: {}", response.body))
    }

    /// Makes `/health` answer 503 (`false`) or 200 (`true`).
    pub fn set_healthy(&self, healthy: bool) {
        let path = if healthy { "/admin/recover" } else { "/admin/fail" };
        for port in &self.ports {
            let response = http::request(SocketAddr::from(([127, 0, 0, 1], *port)), "POST", path, &[])
                .unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_eq!(response.status, 200, "{path}");
        }
    }
}
