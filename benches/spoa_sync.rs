//! axon-spoa's sync against real ZooKeeper and real HAProxy 2.6 (the shipped snippet):
//!
//! 1. propagation: a znode created or deleted by an independent client (kazoo) until the change
//!    is visible in `show servers state`, over 200 changes, one at a time;
//! 2. cold sync: 100 services × 50 instances (5,000 servers) from axon-spoa's start until
//!    every server is ready in HAProxy;
//! 3. churn: 500 changes a second for 10 s over 500 instances, lag of each change.
//!
//! "From the client's request" starts when the bench sends the request to kazoo, so it includes
//! the client's own write and ZooKeeper's commit. "From ZooKeeper's acknowledgment" starts when
//! ZooKeeper's answer reached the writer, as the writer itself reads the monotonic clock (the
//! same clock the bench reads). HAProxy's state is polled; each poll's start and end are
//! recorded, so each change gets bounds: visible after the start of the last poll that did not
//! see it (lower) and before the end of the first that did (upper). axon-spoa's own
//! `axon_spoa_propagation_seconds` (from the snapshot's read to HAProxy's acceptance) is read
//! beside them. Run with `make bench-spoa` (or `cargo build --release --workspace --bins &&
//! cargo bench --bench spoa_sync`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axon_harness::haproxy::{self, Backend, Haproxy, HaproxyDir};
use axon_harness::kazoo::{Kazoo, monotonic_ns};
use axon_harness::sample::Sample;
use axon_harness::spoa::{Spoa, SpoaDir};
use axon_harness::zk::Ensemble;
use axon_harness::{ports, wait};

fn main() {
    let zk = Ensemble::standalone();
    let one = propagation(&zk);
    let cold = cold_sync(&zk);
    let churn = churn(&zk);
    println!("\naxon-spoa sync (HAProxy {}, ZooKeeper standalone)", haproxy_version());
    println!("| measurement | p50 | p99 | max | count |");
    println!("|---|---|---|---|---|");
    for (name, stats) in [
        ("one change at a time, from the client's request (upper bound)", &one.from_request),
        ("one change at a time, from ZooKeeper's acknowledgment: lower bound", &one.lower),
        ("one change at a time, from ZooKeeper's acknowledgment: upper bound", &one.upper),
        ("500 changes/s, from ZooKeeper's acknowledgment: lower bound", &churn.lower),
        ("500 changes/s, from ZooKeeper's acknowledgment: upper bound", &churn.upper),
    ] {
        println!("| {name} | {} | {} | {} | {} |", ms(stats.p50), ms(stats.p99), ms(stats.max), stats.count);
    }
    println!("| cold sync, 100 services × 50 instances | {} | | | 5000 servers |", ms(cold));
    for (name, bounds) in [("one change at a time", &one), ("500 changes/s", &churn)] {
        println!(
            "{name}: axon-spoa's own propagation histogram: mean {} over {} observations; the bounds' means {} – {}",
            ms(bounds.histogram_mean),
            bounds.histogram_count,
            ms(mean(&bounds.lower_samples)),
            ms(mean(&bounds.upper_samples)),
        );
    }
}

/// What a propagation run measured.
struct Bounds {
    from_request: Stats,
    lower: Stats,
    upper: Stats,
    lower_samples: Vec<Duration>,
    upper_samples: Vec<Duration>,
    /// axon-spoa's `axon_spoa_propagation_seconds` over the run.
    histogram_mean: Duration,
    histogram_count: f64,
}

fn mean(samples: &[Duration]) -> Duration {
    samples.iter().sum::<Duration>() / u32::try_from(samples.len().max(1)).unwrap_or(u32::MAX)
}

/// axon-spoa's propagation histogram: (sum in seconds, count).
fn histogram(spoa: &Spoa) -> (f64, f64) {
    (spoa.metric("axon_spoa_propagation_seconds_sum"), spoa.metric("axon_spoa_propagation_seconds_count"))
}

/// The time from `acked` (monotonic ns) to `at`, zero if `at` came first.
fn since(acked: u64, at: u64) -> Duration {
    Duration::from_nanos(at.saturating_sub(acked))
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

/// As shipped: `<service>.example` routed through the host map.
const ROUTING: &str = "[routing]\nhost_suffixes = [\".example\"]\n\n";

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
    let config = spoa_dir.header(&zk.connect_string(), &haproxy, None) + ROUTING + services;
    (haproxy, spoa_dir.start(&config))
}

fn record(port: u16) -> String {
    format!(r#"{{"host":"127.0.0.1","port":{port},"name":"bench"}}"#)
}

/// Whether `addr` is a ready server of `backend` now.
fn is_ready(haproxy: &Haproxy, backend: &str, addr: &str) -> bool {
    haproxy.ready_servers(backend).iter().any(|(_, a, _)| a == addr)
}

/// One change at a time, 200 of them.
fn propagation(zk: &Ensemble) -> Bounds {
    let sample = Sample::start_many("web", "p", 6);
    let (haproxy, spoa) =
        start(zk, &[Backend { name: "web", prefix: "web", slots: 10 }], &service("web", "/bench/propagation"));
    let mut kazoo = Kazoo::connect(&zk.connect_string());
    // One instance stays registered throughout, so the service never empties (an empty
    // service keeps its last instances by default).
    let base = sample.ports[5];
    kazoo.create("/bench/propagation/base_", &record(base), true, true);
    wait::for_true("the base instance", Duration::from_secs(10), || {
        is_ready(&haproxy, "web", &format!("127.0.0.1:{base}"))
    });
    let histogram_before = histogram(&spoa);
    let mut znodes: BTreeMap<u16, String> = BTreeMap::new();
    let (mut from_request, mut lower, mut upper) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..200 {
        let port = sample.ports[i % 5];
        let addr = format!("127.0.0.1:{port}");
        let requested = monotonic_ns();
        let (created, acked) = match znodes.remove(&port) {
            Some(znode) => (false, kazoo.delete_timed(&znode)),
            None => {
                let (znode, acked) = kazoo.create_timed("/bench/propagation/bench_", &record(port), true, true);
                znodes.insert(port, znode);
                (true, acked)
            }
        };
        // The last poll that did not see the change started at `not_seen` (or, for the first
        // poll, the acknowledgment is the lower bound).
        let mut not_seen = acked;
        loop {
            let poll_start = monotonic_ns();
            let visible = is_ready(&haproxy, "web", &addr) == created;
            let poll_end = monotonic_ns();
            if visible {
                from_request.push(since(requested, poll_end));
                lower.push(since(acked, not_seen));
                upper.push(since(acked, poll_end));
                break;
            }
            not_seen = poll_start.max(acked);
            assert!(since(requested, poll_end) < Duration::from_secs(5), "change {i} not visible after 5 s");
            std::thread::sleep(Duration::from_micros(200));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let histogram_after = histogram(&spoa);
    let count = histogram_after.1 - histogram_before.1;
    let bounds = Bounds {
        from_request: stats(from_request),
        lower: stats(lower.clone()),
        upper: stats(upper.clone()),
        lower_samples: lower,
        upper_samples: upper,
        histogram_mean: Duration::from_secs_f64((histogram_after.0 - histogram_before.0) / count.max(1.0)),
        histogram_count: count,
    };
    println!(
        "propagation from ZooKeeper's acknowledgment: between p50 {} and {}, p99 {} and {}",
        ms(bounds.lower.p50),
        ms(bounds.upper.p50),
        ms(bounds.lower.p99),
        ms(bounds.upper.p99)
    );
    bounds
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
    let config = spoa_dir.header(&zk.connect_string(), &haproxy, None) + ROUTING + &services;
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

/// One change acknowledged and not yet seen.
struct Pending {
    backend: String,
    addr: String,
    created: bool,
    acked: u64,
    /// The start of the last poll that did not see it.
    not_seen: u64,
}

fn churn(zk: &Ensemble) -> Bounds {
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
    let (haproxy, spoa) = start(zk, &backends, &services);
    let pending: Arc<Mutex<Vec<Pending>>> = Arc::default();
    let seen: Arc<Mutex<Vec<(Duration, Duration)>>> = Arc::default();
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
    let histogram_before = histogram(&spoa);
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
                    let (created, acked) = match znodes.remove(&key) {
                        Some(znode) => (false, kazoo.delete_timed(&znode)),
                        None => {
                            let (znode, acked) = kazoo.create_timed(
                                &format!("/bench/churn/{service}/bench_"),
                                &record(*port),
                                true,
                                true,
                            );
                            znodes.insert(key, znode);
                            (true, acked)
                        }
                    };
                    pending.lock().unwrap().push(Pending {
                        backend: service.clone(),
                        addr: format!("127.0.0.1:{port}"),
                        created,
                        acked,
                        not_seen: acked,
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
        let (pending, seen, done) = (pending.clone(), seen.clone(), done.clone());
        let socket = haproxy.socket();
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) || !pending.lock().unwrap().is_empty() {
                // Every backend in one reply: one poll, one start and one end.
                let poll_start = monotonic_ns();
                let text = haproxy::try_runtime_at(&socket, "show servers state").unwrap_or_default();
                let poll_end = monotonic_ns();
                let mut ready: BTreeMap<String, Vec<String>> = BTreeMap::new();
                for server in haproxy::servers_state(&text).into_iter().filter(|s| s.ready) {
                    ready.entry(server.backend).or_default().push(server.addr);
                }
                pending.lock().unwrap().retain_mut(|p| {
                    let visible = ready.get(&p.backend).is_some_and(|s| s.contains(&p.addr)) == p.created;
                    if visible {
                        seen.lock().unwrap().push((since(p.acked, p.not_seen), since(p.acked, poll_end)));
                    } else {
                        p.not_seen = poll_start.max(p.acked);
                        assert!(
                            since(p.acked, poll_end) < Duration::from_secs(5),
                            "a change to {} {} not visible after 5 s",
                            p.backend,
                            p.addr
                        );
                    }
                    !visible
                });
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let sent: u32 = workers.into_iter().map(|w| w.join().expect("churn worker")).sum();
    done.store(true, Ordering::Relaxed);
    observer.join().expect("observer");
    let histogram_after = histogram(&spoa);
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let (lower, upper): (Vec<Duration>, Vec<Duration>) = seen.into_iter().unzip();
    let count = histogram_after.1 - histogram_before.1;
    let bounds = Bounds {
        from_request: stats(upper.clone()),
        lower: stats(lower.clone()),
        upper: stats(upper.clone()),
        lower_samples: lower,
        upper_samples: upper,
        histogram_mean: Duration::from_secs_f64((histogram_after.0 - histogram_before.0) / count.max(1.0)),
        histogram_count: count,
    };
    println!(
        "churn: {sent} changes in {SECONDS} s ({:.0}/s): lag between p50 {} and {}, p99 {} and {}",
        f64::from(sent) / SECONDS as f64,
        ms(bounds.lower.p50),
        ms(bounds.upper.p50),
        ms(bounds.lower.p99),
        ms(bounds.upper.p99)
    );
    bounds
}
