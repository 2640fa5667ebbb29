//! The sandbox: Axon's main job on one machine, built from the harness, and the handles the
//! crash scenarios pull.
//!
//! On 127.0.0.1: a three-node ZooKeeper ensemble; service A with two instances and service B
//! with one (sample HTTP services answering with their names); one axon-registrar per
//! instance, as on three hosts, each reaching ZooKeeper through proxies of its own that can cut
//! it off; HAProxy configured from the shipped files (axon.cfg with backends `a` and `b`,
//! spoe-axon.conf, axon-lua.cfg) plus a stats page; axon-spoa syncing slots and answering SPOE;
//! and a light background load through HAProxy. Everything lives as long as the [`Sandbox`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use crate::haproxy::{self, Backend, Haproxy, HaproxyDir};
use crate::kazoo::Kazoo;
use crate::load::Load;
use crate::ports;
use crate::proxy::Proxy;
use crate::registrar::{Registrar, RegistrarDir};
use crate::sample::Sample;
use crate::spoa::{Spoa, SpoaDir};
use crate::wait;
use crate::zk::Ensemble;

/// The services and their instances: service A ×2, service B ×1. Names are lowercase, as host
/// names are (`a.example` routes to `a`).
pub const LAYOUT: &[(&str, &[&str])] = &[("a", &["a1", "a2"]), ("b", &["b1"])];
/// The registrars' ZooKeeper session timeout.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(4);
/// How often registrars check their instance, and how many failures take it out.
pub const CHECK_INTERVAL: Duration = Duration::from_millis(500);
pub const CHECK_FALL: u32 = 2;

/// The background load, per service: clients of fast requests, and clients of requests that
/// take 100 ms, so that several are in flight on every instance at any moment and a fault
/// catches some mid-flight.
pub const LOAD: [(&str, usize); 2] = [("/", 3), ("/slow/100", 6)];

/// The sandbox's default ports, so that a second terminal can use them without reading them
/// first (any that is taken falls back to a free one, and the guide prints what is in use).
pub mod default_ports {
    /// ZooKeeper nodes 1–3 (client ports).
    pub const ZOOKEEPER: [u16; 3] = [2181, 2182, 2183];
    /// The services' instances: a1, a2, b1.
    pub const INSTANCES: [(&str, u16); 3] = [("a1", 8001), ("a2", 8002), ("b1", 8011)];
    /// Each instance's registrar's status endpoint.
    pub const REGISTRARS: [(&str, u16); 3] = [("a1", 9111), ("a2", 9112), ("b1", 9121)];
    /// HAProxy's frontend (`Host: a.example`), stats page and Lua status view.
    pub const FRONTEND: u16 = 8080;
    pub const STATS: u16 = 8404;
    pub const LUA_VIEW: u16 = 8405;
    /// axon-spoa's status endpoint and its SPOE agent.
    pub const SPOA_STATUS: u16 = 9102;
    pub const SPOE_AGENT: u16 = 9103;

    /// The default of an instance's (or its registrar's) port.
    pub fn of(table: &[(&str, u16)], id: &str) -> Option<u16> {
        table.iter().find(|(i, _)| *i == id).map(|(_, port)| *port)
    }
}

/// Where each service registers, Nerve-style.
pub fn zk_path(service: &str) -> String {
    format!("/nerve/services/{service}/services")
}

/// One instance of a service, with its own registrar and its own way to ZooKeeper.
pub struct Instance {
    pub service: String,
    pub id: String,
    pub port: u16,
    pub sample: Sample,
    pub registrar: Registrar,
    /// One proxy per ZooKeeper node, between this instance's registrar and the ensemble.
    pub proxies: Vec<Proxy>,
}

/// What [`Sandbox::state`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Full,
    /// What is missing.
    Lacking(String),
    /// HAProxy's part is full, but ZooKeeper cannot be read.
    Unknown(String),
}

pub struct Sandbox {
    pub zookeeper: Ensemble,
    pub instances: Vec<Instance>,
    pub haproxy: Haproxy,
    pub spoa: Spoa,
    pub load: Option<Load>,
    /// HAProxy's frontend: `Host: a.example` goes to service A, `b.example` to B.
    pub frontend_port: u16,
    pub stats_port: u16,
    pub admin_port: u16,
    observer: Kazoo,
    /// Faults injected from the keyboard and not yet undone, and what was done, last first.
    hung: bool,
    cut_off: bool,
    in_maintenance: bool,
    pub journal: Vec<String>,
}

impl Sandbox {
    /// Starts everything, waits for the full state, then starts the background load.
    pub fn start() -> Sandbox {
        let zookeeper = Ensemble::start_on(&default_ports::ZOOKEEPER.map(ports::prefer));
        let hosts = zookeeper.connect_string();
        let mut instances = Vec::new();
        for (service, ids) in LAYOUT {
            for id in *ids {
                let port =
                    default_ports::of(&default_ports::INSTANCES, id).map_or_else(ports::free_port, ports::prefer);
                let sample = Sample::start_on(service, id, &[port]);
                let proxies: Vec<Proxy> = (0..zookeeper.len())
                    .map(|i| Proxy::start(SocketAddr::from(([127, 0, 0, 1], zookeeper.node(i).client_port))))
                    .collect();
                let through = proxies.iter().map(|p| p.addr.to_string()).collect::<Vec<_>>().join(",");
                let status = default_ports::of(&default_ports::REGISTRARS, id).map(ports::prefer);
                let registrar = start_registrar(&through, service, id, sample.port(), status);
                let port = sample.port();
                instances.push(Instance {
                    service: (*service).to_owned(),
                    id: (*id).to_owned(),
                    port,
                    sample,
                    registrar,
                    proxies,
                });
            }
        }
        let (frontend_port, stats_port, admin_port, agent_port) = (
            ports::prefer(default_ports::FRONTEND),
            ports::prefer(default_ports::STATS),
            ports::prefer(default_ports::LUA_VIEW),
            ports::prefer(default_ports::SPOE_AGENT),
        );
        let dir = HaproxyDir::new();
        let mut spoa_dir = SpoaDir::new();
        spoa_dir.status_port = ports::prefer(default_ports::SPOA_STATUS);
        let backends: Vec<Backend<'_>> = LAYOUT.iter().map(|(s, _)| Backend { name: s, prefix: s, slots: 4 }).collect();
        let lua = haproxy::lua_config(&dir, spoa_dir.status_port, admin_port);
        let config = haproxy::axon_config(&dir, frontend_port, &backends, Some(agent_port))
            + "\n"
            + &lua
            + &format!(
                "\nlisten stats from axon-http\n    bind 127.0.0.1:{stats_port}\n    stats enable\n    stats uri /\n    stats refresh 2s\n"
            );
        let state_file = dir.state_file();
        let haproxy = dir.start(&config);
        let services: String = LAYOUT
            .iter()
            .map(|(s, _)| {
                format!(
                    "[[service]]\nname = {s:?}\nzk_path = {:?}\nbackend = {s:?}\nslot_prefix = {s:?}\n\n",
                    zk_path(s)
                )
            })
            .collect();
        let spoa_config = spoa_dir.header(&hosts, &haproxy, Some(&state_file))
            + &format!("[routing]\nhost_suffixes = [\".example\"]\n\n[spoe]\nlisten = \"127.0.0.1:{agent_port}\"\n\n")
            + &services;
        let spoa = spoa_dir.start(&spoa_config);
        let observer = Kazoo::connect(&hosts);
        let mut sandbox = Sandbox {
            zookeeper,
            instances,
            haproxy,
            spoa,
            load: None,
            frontend_port,
            stats_port,
            admin_port,
            observer,
            hung: false,
            cut_off: false,
            in_maintenance: false,
            journal: Vec::new(),
        };
        wait::until("the full state", wait::SECOND * 30, || sandbox.full_state().ok());
        wait::for_true("HAProxy to see the SPOE agent", wait::SECOND * 10, || {
            sandbox.haproxy.servers("axon-agents").iter().all(|s| s.up)
        });
        let services: Vec<&str> = LAYOUT.iter().map(|(s, _)| *s).collect();
        sandbox.load = Some(Load::start(sandbox.frontend(), &services, &LOAD));
        sandbox
    }

    pub fn frontend(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.frontend_port))
    }

    pub fn instance(&self, id: &str) -> &Instance {
        self.instances.iter().find(|i| i.id == id).unwrap_or_else(|| panic!("no instance {id}"))
    }

    pub fn instance_mut(&mut self, id: &str) -> &mut Instance {
        self.instances.iter_mut().find(|i| i.id == id).unwrap_or_else(|| panic!("no instance {id}"))
    }

    /// Every znode of `service`: child name → the record's `name` (the instance id).
    pub fn znodes(&mut self, service: &str) -> BTreeMap<String, String> {
        self.try_znodes(service, Duration::from_secs(30)).unwrap_or_default()
    }

    /// The same, each read giving up after `within`: `Err` while ZooKeeper cannot answer.
    pub fn try_znodes(&mut self, service: &str, within: Duration) -> Result<BTreeMap<String, String>, String> {
        Ok(self
            .observer
            .try_records(&zk_path(service), within)?
            .into_iter()
            .map(|(child, data)| {
                let id = serde_json::from_str::<serde_json::Value>(&data)
                    .ok()
                    .and_then(|v| v["name"].as_str().map(str::to_owned))
                    .unwrap_or_default();
                (child, id)
            })
            .collect())
    }

    /// How many znodes each instance has now; `Err` while ZooKeeper cannot answer (within a
    /// second).
    pub fn registrations(&mut self) -> Result<BTreeMap<String, usize>, String> {
        let mut counts: BTreeMap<String, usize> = self.instances.iter().map(|i| (i.id.clone(), 0)).collect();
        for (service, _) in LAYOUT {
            for id in self.try_znodes(service, Duration::from_secs(1))?.into_values() {
                *counts.entry(id).or_default() += 1;
            }
        }
        Ok(counts)
    }

    /// An instance's server in HAProxy: `ready web1`, `drain web1`, `down web1`, or `-`.
    pub fn haproxy_state(&self, instance: &Instance) -> String {
        let addr = format!("127.0.0.1:{}", instance.port);
        let Ok(text) = self.haproxy.try_runtime(&format!("show servers state {}", instance.service)) else {
            return "unreachable".into();
        };
        haproxy::servers_state(&text)
            .into_iter()
            .find(|s| s.addr == addr && (s.ready || s.draining))
            .map(|s| {
                let state = match (s.ready, s.up) {
                    (true, true) => "ready",
                    (true, false) => "down",
                    _ => "drain",
                };
                format!("{state} {}", s.name)
            })
            .unwrap_or_else(|| "-".into())
    }

    /// The full state: every instance registered in ZooKeeper exactly once, and ready and up in
    /// HAProxy, and no other server ready. `Err` says what is missing (or that ZooKeeper could
    /// not be read: see [`Sandbox::state`]).
    pub fn full_state(&mut self) -> Result<(), String> {
        match self.state() {
            State::Full => Ok(()),
            State::Lacking(missing) | State::Unknown(missing) => Err(missing),
        }
    }

    /// The full state, lacking, or unknown (ZooKeeper cannot be read, so registrations are not
    /// known; HAProxy's part is checked all the same).
    pub fn state(&mut self) -> State {
        let registrations = self.registrations();
        let mut missing: Vec<String> = Vec::new();
        let mut unknown = None;
        match &registrations {
            Ok(registrations) => {
                for (id, count) in registrations {
                    if *count != 1 {
                        missing.push(format!("{id} has {count} znodes"));
                    }
                }
            }
            Err(err) => unknown = Some(format!("ZooKeeper unreadable ({err})")),
        }
        for instance in &self.instances {
            let state = self.haproxy_state(instance);
            if !state.starts_with("ready") {
                missing.push(format!("{} is `{state}` in HAProxy", instance.id));
            }
        }
        for (service, ids) in LAYOUT {
            let Ok(text) = self.haproxy.try_runtime(&format!("show servers state {service}")) else {
                missing.push("HAProxy does not answer".into());
                continue;
            };
            let ready = haproxy::servers_state(&text).into_iter().filter(|s| s.ready).count();
            if ready != ids.len() {
                missing.push(format!("{ready} servers ready in backend {service}"));
            }
        }
        match (missing.is_empty(), unknown) {
            (true, None) => State::Full,
            (false, _) => State::Lacking(missing.join("; ")),
            (true, Some(unknown)) => State::Unknown(unknown),
        }
    }

    /// Each ZooKeeper node's mode (`leader`, `follower`), or `down` when it does not serve.
    pub fn zookeeper_modes(&self) -> Vec<String> {
        (0..self.zookeeper.len()).map(|i| self.zookeeper.mode(i).unwrap_or_else(|| "down".into())).collect()
    }

    /// A text view: ZooKeeper's nodes, each instance's state in its registrar, in ZooKeeper
    /// and in HAProxy, and the background load over the last second.
    pub fn view(&mut self) -> String {
        let mut out = String::new();
        let modes = self.zookeeper_modes();
        let _ = writeln!(out, "ZooKeeper {}  [{}]", self.zookeeper.connect_string(), modes.join(", "));
        let _ = writeln!(
            out,
            "HAProxy pid {}   axon-spoa {}",
            self.haproxy.worker_pid().unwrap_or_else(|| "down".into()),
            if self.spoa.try_status().is_some() { "up" } else { "down" }
        );
        let _ = writeln!(
            out,
            "\n{:<8} {:<9} {:<22} {:<12} {:<14} znode",
            "service", "instance", "address", "registrar", "HAProxy"
        );
        let znodes: BTreeMap<String, Vec<String>> = LAYOUT
            .iter()
            .flat_map(|(s, _)| {
                self.znodes(s).into_iter().map(move |(child, id)| (id, format!("{}/{child}", zk_path(s))))
            })
            .fold(BTreeMap::new(), |mut map, (id, path)| {
                map.entry(id).or_default().push(path);
                map
            });
        for instance in &self.instances {
            let state = instance.registrar.service_state(&instance.service).unwrap_or_else(|| "unreachable".into());
            let znode = znodes.get(&instance.id).map(|z| z.join(" ")).unwrap_or_else(|| "-".into());
            let _ = writeln!(
                out,
                "{:<8} {:<9} {:<22} {:<12} {:<14} {}",
                instance.service,
                instance.id,
                format!("127.0.0.1:{}", instance.port),
                state,
                self.haproxy_state(instance),
                znode
            );
        }
        if let Some(load) = &self.load {
            let recent: Vec<_> =
                load.requests().into_iter().filter(|r| r.started.elapsed() < wait::SECOND * 2).collect();
            let _ = writeln!(out, "\nload through HAProxy, last second:");
            for (service, _) in LAYOUT {
                let mine: Vec<_> =
                    recent.iter().filter(|r| r.service == *service && r.started.elapsed() >= wait::SECOND).collect();
                let failed = mine.iter().filter(|r| !r.outcome.ok()).count();
                let _ = writeln!(out, "  {service}.example: {} requests/s, {failed} failed", mine.len());
            }
        }
        if !self.journal.is_empty() {
            let _ = writeln!(out, "\ninjected, last first:");
            for done in &self.journal {
                let _ = writeln!(out, "  {done}");
            }
        }
        out
    }

    /// The keys, for the live view's footer.
    pub fn keys_help() -> String {
        let mut out = String::from("keys:");
        for (i, (key, what)) in KEYS.iter().enumerate() {
            let _ = write!(out, "{}{key} {what}", if i % 2 == 0 { "\n  " } else { "   " });
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
        let _ =
            writeln!(out, "Axon's view inside HAProxy (Lua): http://127.0.0.1:{0}/  (JSON: /json)", self.admin_port);
        let _ = writeln!(out, "HAProxy runtime API: socat stdio {}", self.haproxy.socket().display());
        let _ =
            writeln!(out, "axon-spoa: status http://{0}/status  metrics http://{0}/metrics", self.spoa.status_addr());
        for instance in &self.instances {
            let _ = writeln!(
                out,
                "{}/{}: service http://127.0.0.1:{}/  registrar http://{}/status",
                instance.service,
                instance.id,
                instance.port,
                instance.registrar.status_addr(),
            );
        }
        out
    }
}

/// The keys of the live view, each a crash scenario's fault (pressed again, undone), and
/// what they do.
pub const KEYS: &[(char, &str)] = &[
    ('1', "ZooKeeper node 1: kill / start"),
    ('2', "ZooKeeper node 2: kill / start"),
    ('3', "ZooKeeper node 3: kill / start"),
    ('l', "kill ZooKeeper's leader"),
    ('q', "quorum: kill two ZooKeeper nodes / start every node"),
    ('k', "instance a2: kill / start"),
    ('h', "instance a2: hang (SIGSTOP) / resume"),
    ('b', "instance b1, B's only one: kill / start"),
    ('t', "registrar of a1: stop (SIGTERM) / start"),
    ('x', "registrar of a1: cut off from ZooKeeper / reconnect"),
    ('m', "a1: maintenance on / off"),
    ('s', "axon-spoa: kill and restart"),
    ('r', "HAProxy: reload"),
    ('R', "HAProxy: restart"),
];

impl Sandbox {
    /// Injects (or undoes) the fault of `key` (see [`KEYS`]); returns what was done, also
    /// kept in [`Sandbox::journal`]. `None` for a key that means nothing.
    pub fn press(&mut self, key: char) -> Option<String> {
        let done = match key {
            '1'..='3' => {
                let node = key as usize - '1' as usize;
                if self.zookeeper.is_running(node) {
                    self.zookeeper.kill(node);
                    format!("ZooKeeper node {} killed", node + 1)
                } else {
                    self.zookeeper.restart(node);
                    format!("ZooKeeper node {} started", node + 1)
                }
            }
            'l' => match (0..self.zookeeper.len()).find(|&i| self.zookeeper.mode(i).as_deref() == Some("leader")) {
                Some(node) => {
                    self.zookeeper.kill(node);
                    format!("ZooKeeper's leader, node {}, killed (start it with {})", node + 1, node + 1)
                }
                None => "no ZooKeeper node is the leader now: nothing killed".into(),
            },
            'q' => {
                let running: Vec<usize> = (0..self.zookeeper.len()).filter(|&i| self.zookeeper.is_running(i)).collect();
                if running.len() >= 2 {
                    for &node in &running[..2] {
                        self.zookeeper.kill(node);
                    }
                    format!("ZooKeeper nodes {} and {} killed: quorum lost", running[0] + 1, running[1] + 1)
                } else {
                    for node in 0..self.zookeeper.len() {
                        if !self.zookeeper.is_running(node) {
                            self.zookeeper.restart(node);
                        }
                    }
                    "every ZooKeeper node started".into()
                }
            }
            'k' | 'b' => {
                let id = if key == 'k' { "a2" } else { "b1" };
                let instance = self.instance_mut(id);
                if instance.sample.proc.is_running() {
                    instance.sample.proc.kill();
                    format!("instance {id} killed")
                } else {
                    instance.sample = Sample::start_on(&instance.service, id, &[instance.port]);
                    self.hung &= id != "a2";
                    format!("instance {id} started")
                }
            }
            'h' => {
                let sample = &self.instance("a2").sample;
                if self.hung {
                    sample.proc.resume();
                } else {
                    sample.proc.pause();
                }
                self.hung = !self.hung;
                format!("instance a2 {}", if self.hung { "hung (SIGSTOP)" } else { "resumed" })
            }
            't' => {
                let registrar = &mut self.instance_mut("a1").registrar;
                if registrar.proc.is_running() {
                    registrar.terminate(wait::SECOND * 5);
                    "registrar of a1 stopped (SIGTERM): it deregisters a1 first".into()
                } else {
                    registrar.start_again();
                    "registrar of a1 started".into()
                }
            }
            'x' => {
                self.cut_off = !self.cut_off;
                for proxy in &self.instance("a1").proxies {
                    if self.cut_off {
                        proxy.cut();
                    } else {
                        proxy.restore();
                    }
                }
                if self.cut_off {
                    "registrar of a1 cut off from ZooKeeper: its session expires, a1 leaves".into()
                } else {
                    "registrar of a1 reconnected".into()
                }
            }
            'm' => {
                self.in_maintenance = !self.in_maintenance;
                self.instance("a1").registrar.maintenance(self.in_maintenance, "a");
                format!("a1 maintenance {}", if self.in_maintenance { "on" } else { "off" })
            }
            's' => {
                self.spoa.kill_and_restart();
                "axon-spoa killed and restarted: it adopts HAProxy's slots".into()
            }
            'r' => {
                self.haproxy.reload();
                "HAProxy reloaded".into()
            }
            'R' => {
                self.haproxy.restart();
                "HAProxy restarted".into()
            }
            _ => return None,
        };
        self.journal.insert(0, done.clone());
        self.journal.truncate(6);
        Some(done)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // The load first, so nothing counts the shutdown as failures.
        if let Some(mut load) = self.load.take() {
            load.stop();
        }
    }
}

fn start_registrar(hosts: &str, service: &str, id: &str, port: u16, status_port: Option<u16>) -> Registrar {
    let mut dir = RegistrarDir::new();
    if let Some(status_port) = status_port {
        dir.status_port = status_port;
    }
    let config = dir.header(hosts, id, &format!("{}s", SESSION_TIMEOUT.as_secs()))
        + &format!(
            "[[service]]\nname = {service:?}\nhost = \"127.0.0.1\"\nport = {port}\nzk_path = {:?}\ncheck_interval = \"{}ms\"\n\
             [[service.checks]]\ntype = \"http\"\nuri = \"/health\"\ntimeout = \"300ms\"\nrise = 2\nfall = {CHECK_FALL}\n",
            zk_path(service),
            CHECK_INTERVAL.as_millis()
        );
    dir.start(&config)
}
