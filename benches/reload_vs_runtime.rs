//! The same instance changes under the same HTTP load, applied two ways, side by side:
//!
//! - **Axon**: znodes change in ZooKeeper, axon-spoa applies them through the runtime API;
//! - **reload**: as Synapse does, the configuration is rewritten with the current servers and
//!   HAProxy reloaded (SIGUSR2 to the master), at most once a second (Synapse's
//!   `restart_interval`, here 1 s), each reload applying every change since the last.
//!
//! Load: wrk, 2 threads, 50 keep-alive connections, 20 s, through HAProxy 2.6 configured from
//! the shipped snippet. Changes: 10 a second (200 in all) over 3 instances that come and go,
//! while 3 others stay; every instance keeps running. In both runs the changes are written to
//! the same ZooKeeper by kazoo, so both pay for ZooKeeper and the client on the same two
//! cores; only axon-spoa's work (or the reloads) differ. Failed requests are wrk's non-2xx
//! responses plus socket errors (connect, read, write, timeout).
//!
//! Both use the shipped configuration, without its SPOE filter (routing per request is not what
//! is compared here, and no agent runs): the Host header picks the backend.
//!
//! Run with `make bench-reload` (or `cargo build --release --workspace --bins && cargo bench
//! --bench reload_vs_runtime`). Needs wrk (`apt-get install wrk`).

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use axon::harness::haproxy::{self, Backend, Haproxy, HaproxyDir};
use axon::harness::kazoo::Kazoo;
use axon::harness::sample::Sample;
use axon::harness::spoa::SpoaDir;
use axon::harness::zk::Ensemble;
use axon::harness::{bins, ports, wait};

const SECONDS: u64 = 20;
const CHANGES_PER_SECOND: u64 = 10;

fn main() {
    let wrk = bins::system("wrk", "install it with `apt-get install -y wrk`");
    let steady: Vec<Sample> = (1..=3).map(|i| Sample::start("web", &format!("s{i}"))).collect();
    let moving: Vec<Sample> = (1..=3).map(|i| Sample::start("web", &format!("m{i}"))).collect();
    let zk = Ensemble::standalone();
    let axon = run_axon(&wrk, &zk, "/axon/web", &steady, &moving);
    let reload = run_reload(&wrk, &zk, "/reload/web", &steady, &moving);
    println!(
        "\n{} changes over {SECONDS} s under wrk -t2 -c50 (keep-alive), HAProxy {}",
        SECONDS * CHANGES_PER_SECOND,
        version()
    );
    println!("| applied by | requests | failed | requests/s | p50 | p99 | HAProxy reloads |");
    println!("|---|---|---|---|---|---|---|");
    for (name, r, reloads) in [("axon-spoa (runtime API)", &axon, 0), ("config rewrite + reload", &reload.0, reload.1)]
    {
        println!("| {name} | {} | {} | {:.0} | {} | {} | {reloads} |", r.requests, r.failed, r.rps, r.p50, r.p99);
    }
}

fn version() -> String {
    let output = Command::new(haproxy::binary()).arg("-v").output().expect("haproxy -v");
    String::from_utf8_lossy(&output.stdout).split_whitespace().nth(2).unwrap_or("?").to_owned()
}

/// What wrk reported.
#[derive(Debug, Default)]
struct Load {
    requests: u64,
    failed: u64,
    rps: f64,
    p50: String,
    p99: String,
}

fn start_wrk(wrk: &std::path::Path, port: u16) -> std::process::Child {
    Command::new(wrk)
        .args(["-t2", "-c50", &format!("-d{SECONDS}s"), "--latency", "-H", "Host: web.example"])
        .arg(format!("http://127.0.0.1:{port}/"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("starting wrk")
}

fn finish_wrk(child: std::process::Child) -> Load {
    let output = child.wait_with_output().expect("waiting for wrk");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let mut load = Load::default();
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", value] => load.p50 = (*value).to_owned(),
            ["99%", value] => load.p99 = (*value).to_owned(),
            [n, "requests", "in", ..] => load.requests = n.parse().unwrap_or(0),
            ["Requests/sec:", n] => load.rps = n.parse().unwrap_or(0.0),
            ["Non-2xx", "or", "3xx", "responses:", n] => load.failed += n.parse::<u64>().unwrap_or(0),
            ["Socket", "errors:", rest @ ..] => {
                load.failed += rest.iter().filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok()).sum::<u64>();
            }
            _ => {}
        }
    }
    println!("{text}");
    load
}

/// The instances in ZooKeeper, written by kazoo.
struct Registry {
    kazoo: Kazoo,
    path: String,
    moving: Vec<Option<String>>,
}

impl Registry {
    fn new(zk: &Ensemble, path: &str, steady: &[Sample], moving: &[Sample]) -> Registry {
        let mut kazoo = Kazoo::connect(&zk.connect_string());
        for (i, s) in steady.iter().enumerate() {
            kazoo.create(&format!("{path}/steady_"), &record(s, &format!("s{i}")), true, true);
        }
        let moving = moving
            .iter()
            .enumerate()
            .map(|(i, s)| Some(kazoo.create(&format!("{path}/moving_"), &record(s, &format!("m{i}")), true, true)))
            .collect();
        Registry { kazoo, path: path.to_owned(), moving }
    }

    fn set(&mut self, i: usize, sample: &Sample, register: bool) {
        if register {
            self.moving[i] = Some(self.kazoo.create(
                &format!("{}/moving_", self.path),
                &record(sample, &format!("m{i}")),
                true,
                true,
            ));
        } else if let Some(znode) = self.moving[i].take() {
            self.kazoo.delete(&znode, false);
        }
    }
}

/// Flips one moving instance ten times a second for the run's length: writes the change to
/// ZooKeeper, then calls `then(i, registered)`.
fn drive_changes(registry: &mut Registry, moving: &[Sample], mut then: impl FnMut(usize, bool)) {
    let start = Instant::now();
    let mut registered = vec![true; moving.len()];
    for n in 0..SECONDS * CHANGES_PER_SECOND {
        let i = usize::try_from(n).unwrap_or(0) % moving.len();
        registered[i] = !registered[i];
        registry.set(i, &moving[i], registered[i]);
        then(i, registered[i]);
        let next = start + Duration::from_millis((n + 1) * 1000 / CHANGES_PER_SECOND);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
}

fn record(sample: &Sample, id: &str) -> String {
    format!(r#"{{"host":"127.0.0.1","port":{},"name":"{id}"}}"#, sample.port())
}

fn run_axon(wrk: &std::path::Path, zk: &Ensemble, path: &str, steady: &[Sample], moving: &[Sample]) -> Load {
    let dir = HaproxyDir::new();
    let port = ports::free_port();
    let config =
        without_spoe(haproxy::axon_config(&dir, port, &[Backend { name: "web", prefix: "web", slots: 10 }], None));
    let haproxy = dir.start(&config);
    let spoa_dir = SpoaDir::new();
    let config = spoa_dir.header(&zk.connect_string(), &haproxy.socket(), None)
        + &format!("[[service]]\nname = \"web\"\nzk_path = {path:?}\nbackend = \"web\"\nslot_prefix = \"web\"\n");
    let spoa = spoa_dir.start(&config);
    let mut registry = Registry::new(zk, path, steady, moving);
    wait::for_true("six servers ready", Duration::from_secs(10), || haproxy.ready_servers("web").len() == 6);
    let pid = haproxy.worker_pid();
    let load = start_wrk(wrk, port);
    drive_changes(&mut registry, moving, |_, _| {});
    let load = finish_wrk(load);
    assert_eq!(haproxy.worker_pid(), pid, "HAProxy was reloaded");
    println!(
        "axon-spoa sent {} commands, {} refused",
        spoa.metric("axon_spoa_commands_total"),
        spoa.metric("axon_spoa_refused_commands_total")
    );
    load
}

/// The shipped configuration without its SPOE filter line.
fn without_spoe(config: String) -> String {
    config.lines().filter(|l| !l.trim_start().starts_with("filter spoe")).map(|l| format!("{l}\n")).collect()
}

/// The reload way: a configuration with one `server` line per current instance.
fn reload_config(dir: &HaproxyDir, port: u16, servers: &BTreeSet<u16>) -> String {
    let lines: String = servers.iter().map(|p| format!("    server web{p} 127.0.0.1:{p}\n")).collect();
    without_spoe(haproxy::axon_config(dir, port, &[Backend { name: "web", prefix: "web", slots: 1 }], None))
        .replace("    server-template web 1-1 127.0.0.1:1 disabled\n", &lines)
}

fn run_reload(wrk: &std::path::Path, zk: &Ensemble, path: &str, steady: &[Sample], moving: &[Sample]) -> (Load, u32) {
    let mut registry = Registry::new(zk, path, steady, moving);
    let dir = HaproxyDir::new();
    let port = ports::free_port();
    let mut servers: BTreeSet<u16> = steady.iter().chain(moving).map(Sample::port).collect();
    let config = reload_config(&dir, port, &servers);
    let path = dir.path().join("haproxy.cfg");
    let haproxy: Haproxy = dir.start(&config);
    let load = start_wrk(wrk, port);
    let mut last_reload = Instant::now();
    let mut pending = false;
    let mut reloads = 0;
    let apply = |servers: &BTreeSet<u16>, reloads: &mut u32| {
        let text = std::fs::read_to_string(&path).expect("reading haproxy.cfg");
        let start = text.find("    server web").unwrap_or(text.len());
        let end = text.find("frontend fe").unwrap_or(text.len());
        let lines: String = servers.iter().map(|p| format!("    server web{p} 127.0.0.1:{p}\n")).collect();
        let updated = format!("{}{}\n{}", &text[..start], lines, &text[end..]);
        std::fs::write(&path, updated).expect("rewriting haproxy.cfg");
        haproxy.reload();
        *reloads += 1;
    };
    drive_changes(&mut registry, moving, |i, register| {
        if register {
            servers.insert(moving[i].port());
        } else {
            servers.remove(&moving[i].port());
        }
        pending = true;
        if last_reload.elapsed() >= Duration::from_secs(1) {
            apply(&servers, &mut reloads);
            last_reload = Instant::now();
            pending = false;
        }
    });
    if pending {
        apply(&servers, &mut reloads);
    }
    let load = finish_wrk(load);
    let workers = Command::new("pgrep").args(["-c", "-P", &haproxy.master_pid().to_string()]).output().expect("pgrep");
    println!(
        "reload: {reloads} reloads; HAProxy processes under the master at the end: {}",
        String::from_utf8_lossy(&workers.stdout).trim()
    );
    (load, reloads)
}
