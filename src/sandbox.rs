//! The sandbox: Axon's main job on one machine, built from the harness.
//!
//! A three-node ZooKeeper ensemble on 127.0.0.1; service A with two instances and service B
//! with one (sample HTTP services answering with their names); one axon-registrar per
//! instance, as on three separate hosts; HAProxy configured from the shipped snippet (backends
//! `A` and `B`, a frontend choosing by Host header, a stats page); axon-spoa keeping HAProxy's
//! slots in sync. Everything lives as long as the [`Sandbox`] value.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::harness::haproxy::{self, Backend, Haproxy, HaproxyDir};
use crate::harness::kazoo::Kazoo;
use crate::harness::ports;
use crate::harness::registrar::{Registrar, RegistrarDir};
use crate::harness::sample::Sample;
use crate::harness::spoa::{Spoa, SpoaDir};
use crate::harness::zk::Ensemble;

/// Where each service registers, Nerve-style.
pub fn zk_path(service: &str) -> String {
    format!("/nerve/services/{service}/services")
}

/// One instance of a service, with its own registrar.
pub struct Instance {
    pub service: String,
    pub id: String,
    pub sample: Sample,
    pub registrar: Registrar,
}

pub struct Sandbox {
    pub zookeeper: Ensemble,
    pub instances: Vec<Instance>,
    pub haproxy: Haproxy,
    pub spoa: Spoa,
    /// HAProxy's frontend: `Host: a.example` goes to service A, `b.example` to B.
    pub frontend_port: u16,
    pub stats_port: u16,
    observer: Kazoo,
}

/// The services and their instances: service A ×2, service B ×1. Names are lowercase, as host
/// names are (`a.example` routes to `a`).
pub const LAYOUT: &[(&str, &[&str])] = &[("a", &["a1", "a2"]), ("b", &["b1"])];

impl Sandbox {
    /// Starts everything and returns once every instance is registered.
    pub fn start() -> Sandbox {
        let zookeeper = Ensemble::three();
        let hosts = zookeeper.connect_string();
        let mut instances = Vec::new();
        for (service, ids) in LAYOUT {
            for id in *ids {
                let sample = Sample::start(service, id);
                let registrar = start_registrar(&hosts, service, id, sample.port());
                instances.push(Instance { service: (*service).to_owned(), id: (*id).to_owned(), sample, registrar });
            }
        }
        let (frontend_port, stats_port, agent_port) = (ports::free_port(), ports::free_port(), ports::free_port());
        let dir = HaproxyDir::new();
        let backends: Vec<Backend<'_>> = LAYOUT.iter().map(|(s, _)| Backend { name: s, prefix: s, slots: 4 }).collect();
        let config = haproxy::axon_config(&dir, frontend_port, &backends, Some(agent_port))
            + &format!(
                "\nlisten stats from axon\n    bind 127.0.0.1:{stats_port}\n    stats enable\n    stats uri /\n    stats refresh 2s\n"
            );
        let state_file = dir.state_file();
        let haproxy = dir.start(&config);
        let spoa_dir = SpoaDir::new();
        let services: String = LAYOUT
            .iter()
            .map(|(s, _)| {
                format!(
                    "[[service]]\nname = {s:?}\nzk_path = {:?}\nbackend = {s:?}\nslot_prefix = {s:?}\n\n",
                    zk_path(s)
                )
            })
            .collect();
        let spoa_config = spoa_dir.header(&hosts, &haproxy.socket(), Some(&state_file))
            + &format!("[spoe]\nlisten = \"127.0.0.1:{agent_port}\"\nhost_suffixes = [\".example\"]\n\n")
            + &services;
        let spoa = spoa_dir.start(&spoa_config);
        let observer = Kazoo::connect(&hosts);
        let mut sandbox = Sandbox { zookeeper, instances, haproxy, spoa, frontend_port, stats_port, observer };
        crate::harness::wait::for_true(
            "every instance registered and ready in HAProxy",
            crate::harness::wait::SECOND * 30,
            || {
                let registered = sandbox.registered();
                sandbox.instances.iter().all(|i| {
                    registered.contains_key(&(i.service.clone(), i.id.clone()))
                        && sandbox.haproxy_state(i).starts_with("ready")
                })
            },
        );
        sandbox
    }

    /// An instance's server in HAProxy: `ready web1`, `drain web1`, `maint web1`, or `-`.
    pub fn haproxy_state(&self, instance: &Instance) -> String {
        let addr = instance.sample.addr().to_string();
        let Ok(text) = self.haproxy.try_runtime(&format!("show servers state {}", instance.service)) else {
            return "unreachable".into();
        };
        haproxy::servers_state(&text)
            .into_iter()
            .find(|s| s.addr == addr && (s.ready || s.draining))
            .map(|s| format!("{} {}", if s.ready { "ready" } else { "drain" }, s.name))
            .unwrap_or_else(|| "-".into())
    }

    /// (service, instance id) → znode name, as ZooKeeper has them now.
    pub fn registered(&mut self) -> BTreeMap<(String, String), String> {
        let mut out = BTreeMap::new();
        for (service, _) in LAYOUT {
            for (child, data) in self.observer.records(&zk_path(service)) {
                let id = serde_json::from_str::<serde_json::Value>(&data)
                    .ok()
                    .and_then(|v| v["name"].as_str().map(str::to_owned))
                    .unwrap_or_default();
                out.insert(((*service).to_owned(), id), child);
            }
        }
        out
    }

    /// A text view: ZooKeeper's nodes, then each instance's state in its registrar and in
    /// ZooKeeper.
    pub fn view(&mut self) -> String {
        let registered = self.registered();
        let mut out = String::new();
        let modes: Vec<String> =
            (0..self.zookeeper.len()).map(|i| self.zookeeper.mode(i).unwrap_or_else(|| "down".into())).collect();
        let _ = writeln!(out, "ZooKeeper {}  [{}]", self.zookeeper.connect_string(), modes.join(", "));
        let _ = writeln!(
            out,
            "\n{:<8} {:<9} {:<22} {:<12} {:<14} znode",
            "service", "instance", "address", "registrar", "HAProxy"
        );
        for instance in &self.instances {
            let state = instance.registrar.service_state(&instance.service).unwrap_or_else(|| "unreachable".into());
            let znode = registered
                .get(&(instance.service.clone(), instance.id.clone()))
                .map(|child| format!("{}/{child}", zk_path(&instance.service)))
                .unwrap_or_else(|| "-".into());
            let _ = writeln!(
                out,
                "{:<8} {:<9} {:<22} {:<12} {:<14} {}",
                instance.service,
                instance.id,
                instance.sample.addr(),
                state,
                self.haproxy_state(instance),
                znode
            );
        }
        out
    }

    /// Where to look, printed once at start.
    pub fn guide(&self) -> String {
        let mut out = String::from("Axon sandbox is up.\n\n");
        let _ = writeln!(out, "ZooKeeper ensemble: {}", self.zookeeper.connect_string());
        let _ = writeln!(
            out,
            "HAProxy: curl -H 'Host: a.example' http://127.0.0.1:{}/   stats page http://127.0.0.1:{}/",
            self.frontend_port, self.stats_port
        );
        let _ = writeln!(out, "HAProxy runtime API: socat stdio {}", self.haproxy.socket().display());
        let _ =
            writeln!(out, "axon-spoa: status http://{0}/status  metrics http://{0}/metrics", self.spoa.status_addr());
        for instance in &self.instances {
            let _ = writeln!(
                out,
                "{}/{}: service http://{}/  registrar status http://{}/status  metrics http://{}/metrics",
                instance.service,
                instance.id,
                instance.sample.addr(),
                instance.registrar.status_addr(),
                instance.registrar.status_addr()
            );
        }
        out
    }
}

fn start_registrar(hosts: &str, service: &str, id: &str, port: u16) -> Registrar {
    let dir = RegistrarDir::new();
    let config = dir.header(hosts, id, "4s")
        + &format!(
            "[[service]]\nname = {service:?}\nhost = \"127.0.0.1\"\nport = {port}\nzk_path = {:?}\ncheck_interval = \"500ms\"\n\
             [[service.checks]]\ntype = \"http\"\nuri = \"/health\"\ntimeout = \"300ms\"\nrise = 2\nfall = 2\n",
            zk_path(service)
        );
    dir.start(&config)
}
