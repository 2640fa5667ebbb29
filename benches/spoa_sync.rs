//! axon-spoa's sync against real ZooKeeper and real HAProxy 2.6 (the shipped snippet):
//!
//! 1. propagation: a znode created or deleted by an independent client (kazoo) until the change
//!    is visible in `show servers state`, over 200 changes, one at a time;
//! 2. cold sync: 100 services × 50 instances (5,000 servers) from axon-spoa's start until
//!    every server is ready in HAProxy;
//! 3. churn: 500 changes a second for 10 s over 500 instances, lag of each change.
//!
//! Times start when the bench sends the request to kazoo, so they include the client's own
//! write and ZooKeeper's commit. Run with `make bench-spoa` (or `cargo build --release
//! --workspace --bins && cargo bench --bench spoa_sync`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axon::harness::haproxy::{self, Backend, Haproxy, HaproxyDir};
use axon::harness::kazoo::Kazoo;
use axon::harness::sample::Sample;
use axon::harness::spoa::{Spoa, SpoaDir};
use axon::harness::zk::Ensemble;
use axon::harness::{ports, wait};

fn main() {
    let zk = Ensemble::standalone();
    let (propagation, from_ack) = propagation(&zk);
    let cold = cold_sync(&zk);
    let churn = churn(&zk);
    println!("\naxon-spoa sync (HAProxy {}, ZooKeeper standalone)", haproxy_version());
    println!("| measurement | p50 | p99 | max | count |");
    println!("|---|---|---|---|---|");
    for (name, stats) in [
        ("propagation of one change, from the client's request", &propagation),
        ("propagation of one change, from ZooKeeper's acknowledgment", &from_ack),
        ("lag under 500 changes/s, from the client's request", &churn),
    ] {
        println!("| {name} | {} | {} | {} | {} |", ms(stats.p50), ms(stats.p99), ms(stats.max), stats.count);
    }
    println!("| cold sync, 100 services × 50 instances | {} | | | 5000 servers |", ms(cold));
}

fn haproxy_version() -> String {
    let output = std::process::Command::new(haproxy::binary()).arg("-v").output().expect("haproxy -v");
    String::from_utf8_lossy(&output.stdout).split_whitespace().nth(2).unwrap_or("?").to_owned()
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

struct Stats {
    p50: Duration,
    p99: Duration,
    max: Duration,
    count: usize,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1];
    Stats { p50: at(0.50), p99: at(0.99), max: *samples.last().unwrap(), count: samples.len() }
}

fn service(name: &str, path: &str) -> String {
    format!(
        "[[service]]\nname = {name:?}\nzk_path = {path:?}\nbackend = {name:?}\nslot_prefix = {name:?}\ndrain = \"0s\"\n\n"
    )
}

fn start(zk: &Ensemble, backends: &[Backend<'_>], services: &str) -> (Haproxy, Spoa) {
    let dir = HaproxyDir::new();
    let config = haproxy::axon_config(&dir, ports::free_port(), backends, None);
    let haproxy = dir.start(&config);
    let spoa_dir = SpoaDir::new();
    let config = spoa_dir.header(&zk.connect_string(), &haproxy.socket(), None) + services;
    (haproxy, spoa_dir.start(&config))
}

fn record(port: u16) -> String {
    format!(r#"{{"host":"127.0.0.1","port":{port},"name":"bench"}}"#)
}

/// Whether `addr` is a ready server of `backend` now.
fn is_ready(haproxy: &Haproxy, backend: &str, addr: &str) -> bool {
    haproxy.ready_servers(backend).iter().any(|(_, a, _)| a == addr)
}

/// Returns (from the client's request, from ZooKeeper's acknowledgment).
fn propagation(zk: &Ensemble) -> (Stats, Stats) {
    let sample = Sample::start_many("web", "p", 6);
    let (haproxy, _spoa) =
        start(zk, &[Backend { name: "web", prefix: "web", slots: 10 }], &service("web", "/bench/propagation"));
    let mut kazoo = Kazoo::connect(&zk.connect_string());
    // One instance stays registered throughout, so the service never empties (an empty
    // service keeps its last instances by default).
    let base = sample.ports[5];
    kazoo.create("/bench/propagation/base_", &record(base), true, true);
    wait::for_true("the base instance", Duration::from_secs(10), || {
        is_ready(&haproxy, "web", &format!("127.0.0.1:{base}"))
    });
    let mut znodes: BTreeMap<u16, String> = BTreeMap::new();
    let mut samples = Vec::new();
    let mut client = Vec::new();
    let mut after_ack = Vec::new();
    for i in 0..200 {
        let port = sample.ports[i % 5];
        let addr = format!("127.0.0.1:{port}");
        let start = Instant::now();
        let created = match znodes.remove(&port) {
            Some(znode) => {
                kazoo.delete(&znode, false);
                false
            }
            None => {
                znodes.insert(port, kazoo.create("/bench/propagation/bench_", &record(port), true, true));
                true
            }
        };
        client.push(start.elapsed());
        loop {
            if is_ready(&haproxy, "web", &addr) == created {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(5), "change {i} not visible after 5 s");
            std::thread::sleep(Duration::from_micros(200));
        }
        samples.push(start.elapsed());
        after_ack.push(start.elapsed() - client[i]);
        std::thread::sleep(Duration::from_millis(10));
    }
    let (s, c, a) = (stats(samples), stats(client), stats(after_ack));
    println!(
        "propagation from the client's request: p50 {} p99 {} max {} over {} changes",
        ms(s.p50),
        ms(s.p99),
        ms(s.max),
        s.count
    );
    println!("  the request until ZooKeeper acknowledged it to the client: p50 {} p99 {}", ms(c.p50), ms(c.p99));
    println!("  from the acknowledgment to visible in HAProxy: p50 {} p99 {} max {}", ms(a.p50), ms(a.p99), ms(a.max));
    (s, a)
}

fn cold_sync(zk: &Ensemble) -> Duration {
    const SERVICES: usize = 100;
    const INSTANCES: usize = 50;
    let sample = Sample::start_many("cold", "c", INSTANCES);
    let names: Vec<String> = (0..SERVICES).map(|i| format!("s{i}")).collect();
    let mut kazoo = Kazoo::connect(&zk.connect_string());
    for name in &names {
        for &port in &sample.ports {
            kazoo.create(&format!("/bench/cold/{name}/bench_"), &record(port), true, true);
        }
    }
    let backends: Vec<Backend<'_>> =
        names.iter().map(|n| Backend { name: n, prefix: n, slots: INSTANCES as u32 }).collect();
    let dir = HaproxyDir::new();
    let config = haproxy::axon_config(&dir, ports::free_port(), &backends, None);
    let haproxy = dir.start(&config);
    let services: String = names.iter().map(|n| service(n, &format!("/bench/cold/{n}"))).collect();
    let spoa_dir = SpoaDir::new();
    let config = spoa_dir.header(&zk.connect_string(), &haproxy.socket(), None) + &services;
    let start = Instant::now();
    let _spoa = spoa_dir.start(&config);
    let ready = |haproxy: &Haproxy| {
        let state = haproxy::servers_state(&haproxy.runtime("show servers state"));
        state.iter().filter(|s| s.ready && names.contains(&s.backend)).count()
    };
    wait::for_true("5,000 servers ready", Duration::from_secs(60), || ready(&haproxy) == SERVICES * INSTANCES);
    let took = start.elapsed();
    println!("cold sync: {} servers ready {} after axon-spoa started", SERVICES * INSTANCES, ms(took));
    took
}

/// One change requested and not yet seen.
struct Pending {
    backend: String,
    addr: String,
    created: bool,
    at: Instant,
}

fn churn(zk: &Ensemble) -> Stats {
    const SERVICES: usize = 10;
    const PER_SERVICE: usize = 50;
    const RATE: usize = 500;
    const SECONDS: u64 = 10;
    const WORKERS: usize = 3;
    let sample = Sample::start_many("churn", "c", PER_SERVICE + 1);
    let names: Vec<String> = (0..SERVICES).map(|i| format!("c{i}")).collect();
    let backends: Vec<Backend<'_>> =
        names.iter().map(|n| Backend { name: n, prefix: n, slots: PER_SERVICE as u32 + 1 }).collect();
    let services: String = names.iter().map(|n| service(n, &format!("/bench/churn/{n}"))).collect();
    let (haproxy, _spoa) = start(zk, &backends, &services);
    let pending: Arc<Mutex<Vec<Pending>>> = Arc::default();
    let lags: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    // Every endpoint of every service, dealt to the workers; each worker toggles its endpoints
    // in turn, so an endpoint changes once a second at 500 changes a second.
    let endpoints: Vec<(String, u16)> =
        names.iter().flat_map(|n| sample.ports[..PER_SERVICE].iter().map(move |&p| (n.clone(), p))).collect();
    let hosts = zk.connect_string();
    // One instance per service stays registered throughout, so no service ever empties.
    let mut base = Kazoo::connect(&hosts);
    for name in &names {
        base.create(&format!("/bench/churn/{name}/base_"), &record(sample.ports[PER_SERVICE]), true, true);
    }
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let mine: Vec<(String, u16)> = endpoints.iter().skip(w).step_by(WORKERS).cloned().collect();
            let (pending, hosts) = (pending.clone(), hosts.clone());
            std::thread::spawn(move || {
                let mut kazoo = Kazoo::connect(&hosts);
                let mut znodes: BTreeMap<(String, u16), String> = BTreeMap::new();
                let interval = Duration::from_secs_f64(WORKERS as f64 / RATE as f64);
                let start = Instant::now();
                let mut n = 0u32;
                while start.elapsed() < Duration::from_secs(SECONDS) {
                    let (service, port) = &mine[n as usize % mine.len()];
                    let key = (service.clone(), *port);
                    let at = Instant::now();
                    let created = match znodes.remove(&key) {
                        Some(znode) => {
                            kazoo.delete(&znode, false);
                            false
                        }
                        None => {
                            let znode =
                                kazoo.create(&format!("/bench/churn/{service}/bench_"), &record(*port), true, true);
                            znodes.insert(key, znode);
                            true
                        }
                    };
                    pending.lock().unwrap().push(Pending {
                        backend: service.clone(),
                        addr: format!("127.0.0.1:{port}"),
                        created,
                        at,
                    });
                    n += 1;
                    if let Some(wait) = (start + interval * n).checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                }
                n
            })
        })
        .collect();
    let observer = {
        let (pending, lags, done) = (pending.clone(), lags.clone(), done.clone());
        let names = names.clone();
        let socket = haproxy.socket();
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) || !pending.lock().unwrap().is_empty() {
                let mut ready: BTreeMap<String, Vec<String>> = BTreeMap::new();
                for name in &names {
                    let text =
                        haproxy::try_runtime_at(&socket, &format!("show servers state {name}")).unwrap_or_default();
                    let servers =
                        haproxy::servers_state(&text).into_iter().filter(|s| s.ready).map(|s| s.addr).collect();
                    ready.insert(name.clone(), servers);
                }
                let now = Instant::now();
                pending.lock().unwrap().retain(|p| {
                    let visible = ready.get(&p.backend).is_some_and(|s| s.contains(&p.addr)) == p.created;
                    if visible {
                        lags.lock().unwrap().push(now - p.at);
                    } else if now - p.at > Duration::from_secs(5) {
                        panic!("a change to {} {} not visible after 5 s", p.backend, p.addr);
                    }
                    !visible
                });
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let sent: u32 = workers.into_iter().map(|w| w.join().expect("churn worker")).sum();
    done.store(true, Ordering::Relaxed);
    observer.join().expect("observer");
    let lags = std::mem::take(&mut *lags.lock().unwrap());
    let s = stats(lags);
    println!(
        "churn: {sent} changes in {SECONDS} s ({:.0}/s): lag p50 {} p99 {} max {}",
        f64::from(sent) / SECONDS as f64,
        ms(s.p50),
        ms(s.p99),
        ms(s.max)
    );
    s
}
