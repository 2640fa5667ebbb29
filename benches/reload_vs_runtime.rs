//! The same instance changes under the same HTTP load, applied two ways, side by side:
//!
//! - **Axon**: znodes change in ZooKeeper, axon-spoa applies them through the runtime API;
//! - **reload**: as Synapse does, the configuration is regenerated with the current servers and
//!   HAProxy reloaded (SIGUSR2 to the master), at most once a second (Synapse's
//!   `restart_interval`, here 1 s), each reload applying every change since the last. Each
//!   reload is verified: it counts once a new worker answers.
//!
//! Load: wrk, 2 threads, 50 keep-alive connections, through HAProxy configured from the shipped
//! snippet. Changes: 10 a second over 3 instances that come and go, while 3 others stay; every
//! instance keeps running. In both halves the changes are written to the same ZooKeeper by
//! kazoo, so both pay for ZooKeeper and the client on the same two cores; only axon-spoa's work
//! (or the reloads) differ. The halves alternate over several rounds (which goes first
//! alternating), since this machine's speed drifts. Failed requests are wrk's non-2xx responses
//! plus socket errors (connect, read, write, timeout).
//!
//! Both use the shipped configuration, without its SPOE filter (routing per request is not what
//! is compared here, and no agent runs): the host map sends `web.example` to the backend.
//!
//! Run with `make bench-reload` (or `cargo build --release --workspace --bins && cargo bench
//! --bench reload_vs_runtime`). Needs wrk (`apt-get install wrk`).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use axon_harness::haproxy::{self, Backend, Haproxy, HaproxyDir};
use axon_harness::kazoo::Kazoo;
use axon_harness::sample::Sample;
use axon_harness::spoa::{Spoa, SpoaDir};
use axon_harness::zk::Ensemble;
use axon_harness::{bins, ports, wait};

const SECONDS: u64 = 10;
const ROUNDS: usize = 4;
const CHANGES_PER_SECOND: u64 = 10;

fn main() {
    let wrk = bins::system("wrk", "install it with `apt-get install -y wrk`");
    let steady: Vec<Sample> = (1..=3).map(|i| Sample::start("web", &format!("s{i}"))).collect();
    let moving: Vec<Sample> = (1..=3).map(|i| Sample::start("web", &format!("m{i}"))).collect();
    let zk = Ensemble::standalone();
    let mut axon = AxonHalf::start(&zk, &steady, &moving);
    let mut reload = ReloadHalf::start(&zk, &steady, &moving);
    let (mut axon_runs, mut reload_runs) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        for half in if round % 2 == 0 { [0, 1] } else { [1, 0] } {
            if half == 0 {
                axon_runs.push(axon.run(&wrk, &moving));
            } else {
                reload_runs.push(reload.run(&wrk, &moving));
            }
        }
    }
    assert_eq!(axon.haproxy.worker_pid(), axon.worker, "HAProxy was reloaded in the Axon half");
    println!(
        "\n{} changes per run of {SECONDS} s under wrk -t2 -c50 (keep-alive), {ROUNDS} runs of each, alternated; HAProxy {}",
        SECONDS * CHANGES_PER_SECOND,
        version()
    );
    println!(
        "| applied by | requests | failed | requests/s (mean) | p50 / p99 (median of runs) | reloads signalled / completed |"
    );
    println!("|---|---|---|---|---|---|");
    for (name, runs) in [("axon-spoa (runtime API)", &axon_runs), ("config rewrite + reload", &reload_runs)] {
        let requests: u64 = runs.iter().map(|r| r.requests).sum();
        let failed: u64 = runs.iter().map(|r| r.failed).sum();
        let rps = runs.iter().map(|r| r.rps).sum::<f64>() / runs.len() as f64;
        let (signalled, completed): (u32, u32) =
            runs.iter().fold((0, 0), |(s, c), r| (s + r.signalled, c + r.completed));
        println!(
            "| {name} | {requests} | {failed} (per run: {}) | {rps:.0} | {} / {} | {signalled} / {completed} |",
            runs.iter().map(|r| r.failed.to_string()).collect::<Vec<_>>().join(", "),
            median(runs.iter().map(|r| r.p50_ms).collect()),
            median(runs.iter().map(|r| r.p99_ms).collect()),
        );
    }
    println!(
        "axon-spoa sent {} commands, {} refused",
        axon.spoa.metric("axon_spoa_commands_total"),
        axon.spoa.metric("axon_spoa_refused_commands_total")
    );
}

fn version() -> String {
    let output = Command::new(haproxy::binary()).arg("-v").output().expect("haproxy -v");
    String::from_utf8_lossy(&output.stdout).split_whitespace().nth(2).unwrap_or("?").to_owned()
}

fn median(mut values: Vec<f64>) -> String {
    values.sort_by(f64::total_cmp);
    format!("{:.2} ms", values[values.len() / 2])
}

/// What one run measured.
#[derive(Debug, Default)]
struct Run {
    requests: u64,
    failed: u64,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    signalled: u32,
    completed: u32,
}

fn start_wrk(wrk: &Path, port: u16) -> std::process::Child {
    Command::new(wrk)
        .args(["-t2", "-c50", &format!("-d{SECONDS}s"), "--latency", "-H", "Host: web.example"])
        .arg(format!("http://127.0.0.1:{port}/"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("starting wrk")
}

fn finish_wrk(child: std::process::Child) -> Run {
    let output = child.wait_with_output().expect("waiting for wrk");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let mut run = Run::default();
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", value] => run.p50_ms = wrk_milliseconds(value),
            ["99%", value] => run.p99_ms = wrk_milliseconds(value),
            [n, "requests", "in", ..] => run.requests = n.parse().unwrap_or(0),
            ["Requests/sec:", n] => run.rps = n.parse().unwrap_or(0.0),
            ["Non-2xx", "or", "3xx", "responses:", n] => run.failed += n.parse::<u64>().unwrap_or(0),
            ["Socket", "errors:", rest @ ..] => {
                run.failed += rest.iter().filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok()).sum::<u64>();
            }
            _ => {}
        }
    }
    assert!(run.requests > 0, "wrk printed no count:\n{text}");
    run
}

/// A wrk latency (`850.00us`, `2.03ms`, `1.20s`) in milliseconds.
fn wrk_milliseconds(text: &str) -> f64 {
    let split = text.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(text.len());
    let value: f64 = text[..split].parse().unwrap_or(0.0);
    match &text[split..] {
        "us" => value / 1000.0,
        "s" => value * 1000.0,
        _ => value,
    }
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

    fn registered(&self, i: usize) -> bool {
        self.moving[i].is_some()
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

    /// Flips one moving instance ten times a second for a run's length: writes the change to
    /// ZooKeeper, then calls `then(i, registered)`.
    fn drive(&mut self, moving: &[Sample], mut then: impl FnMut(usize, bool)) {
        let start = Instant::now();
        for n in 0..SECONDS * CHANGES_PER_SECOND {
            let i = usize::try_from(n).unwrap_or(0) % moving.len();
            let register = !self.registered(i);
            self.set(i, &moving[i], register);
            then(i, register);
            let next = start + Duration::from_millis((n + 1) * 1000 / CHANGES_PER_SECOND);
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    }
}

fn record(sample: &Sample, id: &str) -> String {
    format!(r#"{{"host":"127.0.0.1","port":{},"name":"{id}"}}"#, sample.port())
}

/// HAProxy with axon-spoa applying the changes.
struct AxonHalf {
    haproxy: Haproxy,
    spoa: Spoa,
    registry: Registry,
    port: u16,
    worker: Option<String>,
}

impl AxonHalf {
    fn start(zk: &Ensemble, steady: &[Sample], moving: &[Sample]) -> AxonHalf {
        let dir = HaproxyDir::new();
        let port = ports::free_port();
        let backends = [Backend { name: "web", prefix: "web", slots: 10 }];
        let config = haproxy::without_spoe(&haproxy::axon_config(&dir, port, &backends, None));
        let haproxy = dir.start(&config);
        let spoa_dir = SpoaDir::new();
        let path = "/axon/web";
        let config = spoa_dir.header(&zk.connect_string(), &haproxy, None)
            + "[routing]\nhost_suffixes = [\".example\"]\n\n"
            + &format!("[[service]]\nname = \"web\"\nzk_path = {path:?}\nbackend = \"web\"\nslot_prefix = \"web\"\n");
        let spoa = spoa_dir.start(&config);
        let registry = Registry::new(zk, path, steady, moving);
        wait::for_true("six servers ready", Duration::from_secs(10), || haproxy.ready_servers("web").len() == 6);
        let worker = haproxy.worker_pid();
        AxonHalf { haproxy, spoa, registry, port, worker }
    }

    fn run(&mut self, wrk: &Path, moving: &[Sample]) -> Run {
        let load = start_wrk(wrk, self.port);
        self.registry.drive(moving, |_, _| {});
        finish_wrk(load)
    }
}

/// HAProxy reloaded with a regenerated configuration, as Synapse does.
struct ReloadHalf {
    /// The configuration up to the `web` backend, which [`generated`] completes.
    head: String,
    haproxy: Haproxy,
    registry: Registry,
    port: u16,
    servers: BTreeSet<u16>,
}

impl ReloadHalf {
    fn start(zk: &Ensemble, steady: &[Sample], moving: &[Sample]) -> ReloadHalf {
        let dir = HaproxyDir::new();
        // No axon-spoa here: the host map is written once, as it would hold.
        std::fs::write(dir.host_map(), "web.example web/web\n").expect("writing the host map");
        let port = ports::free_port();
        // The whole configuration, generated: the shipped snippet with the `web` backend's
        // section replaced by one `server` line per instance.
        let shipped = haproxy::without_spoe(&haproxy::axon_config(
            &dir,
            port,
            &[Backend { name: "web", prefix: "web", slots: 1 }],
            None,
        ));
        let start = shipped.find("backend web from axon-http").expect("the web backend");
        let head = shipped[..start].to_owned();
        let servers: BTreeSet<u16> = steady.iter().chain(moving).map(Sample::port).collect();
        let haproxy = dir.start(&generated(&head, &servers));
        let registry = Registry::new(zk, "/reload/web", steady, moving);
        ReloadHalf { head, haproxy, registry, port, servers }
    }

    fn run(&mut self, wrk: &Path, moving: &[Sample]) -> Run {
        let load = start_wrk(wrk, self.port);
        let ReloadHalf { head, haproxy, registry, servers, .. } = self;
        let mut last_reload = Instant::now();
        let (mut pending, mut signalled, mut completed) = (false, 0, 0);
        registry.drive(moving, |i, register| {
            if register {
                servers.insert(moving[i].port());
            } else {
                servers.remove(&moving[i].port());
            }
            pending = true;
            if last_reload.elapsed() >= Duration::from_secs(1) {
                signalled += 1;
                completed += u32::from(reload(haproxy, &generated(head, servers)));
                last_reload = Instant::now();
                pending = false;
            }
        });
        if pending {
            signalled += 1;
            completed += u32::from(reload(haproxy, &generated(head, servers)));
        }
        let mut run = finish_wrk(load);
        run.signalled = signalled;
        run.completed = completed;
        run
    }
}

/// The whole configuration: `head` and a `web` backend with one `server` line per instance.
fn generated(head: &str, servers: &BTreeSet<u16>) -> String {
    let lines: String = servers.iter().map(|p| format!("    server web{p} 127.0.0.1:{p}\n")).collect();
    format!("{head}backend web from axon-http\n    http-request disable-l7-retry if !METH_GET\n{lines}")
}

/// Replaces HAProxy's configuration file with `config` and reloads; true once a new worker
/// answers (within 3 s).
fn reload(haproxy: &Haproxy, config: &str) -> bool {
    let path = haproxy.config_path();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, config).expect("writing haproxy.cfg");
    std::fs::rename(&tmp, path).expect("replacing haproxy.cfg");
    let old = haproxy.worker_pid();
    haproxy.reload();
    wait::timed(Duration::from_secs(3), || haproxy.worker_pid().is_some_and(|p| Some(p) != old)).is_some()
}
