//! Discovery at fleet scale: many axon-spoa sessions following one ZooKeeper ensemble.
//!
//! A three-node ensemble (on this machine, each node a JVM with `AXON_ZK_HEAP`, 1g unless set)
//! holds 100 services × 50 instances twice: as data-carrying znodes (the record in the data, as
//! Nerve writes by default) and with Nerve's path encoding (the record in the child's name). N
//! discovery sessions follow one of the trees: N instances of axon-spoa's own discovery
//! (`axon_spoa::discovery::Discovery`, the code the daemon runs, with its own configuration,
//! ZooKeeper session and snapshot each), in this one process — the same requests and watches
//! on the ensemble as N axon-spoa processes, without N HAProxys this machine could not hold.
//! Side by side, same N: one-shot watches (the design before persistent watches) and one
//! persistent recursive watch per service path.
//!
//! Measured, per run: watches on the ensemble (`wchs`, all nodes); ZooKeeper requests per
//! instance change (`mntr`'s `zk_packets_received`, all nodes, over 100 changes); the time
//! until the last of the N sessions has each change (p50/p99 over 100 changes); the sessions'
//! CPU per change (the run time of the runtime's threads and of the client's reactor thread
//! during the changes, less their idle rate); the ensemble's
//! memory (its JVMs' resident size); and the recovery after the whole ensemble is down 30 s
//! (every session expires): the time until all N are current again, the peak of outstanding
//! requests (`mntr`, every 100 ms), and the reads that failed once the ensemble was restarting.
//!
//! `AXON_FLEET` chooses the runs, as `tree:watches:N` separated by commas (default
//! `encoded:persistent:100,encoded:oneshot:100,data:persistent:100,data:oneshot:100,encoded:persistent:1000`),
//! each optionally followed by `:reads=R` and `:jitter=D` for the sessions' `[discovery]`
//! `max_reads_in_flight` and `reread_jitter` (their defaults otherwise), as in
//! `data:persistent:100:reads=8,data:persistent:100:reads=512`: how their defaults are chosen.
//! Run with `cargo bench --bench fleet` (about 13 minutes for the default runs).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axon_harness::kazoo::Kazoo;
use axon_harness::process;
use axon_harness::wait;
use axon_harness::zk::{self, Ensemble};
use axon_spoa::Config;
use axon_spoa::discovery::{Discovery, DiscoveryState, DiscoveryStatus};
use axon_spoa::metrics::Metrics;
use axon_spoa::model::Snapshot;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const SERVICES: usize = 100;
const INSTANCES: usize = 50;
const CHANGES: usize = 100;
const OUTAGE: Duration = Duration::from_secs(30);
const SESSION_TIMEOUT: &str = "10s";

fn main() {
    if std::env::var_os("AXON_ZK_HEAP").is_none() {
        // SAFETY: set before any thread that reads the environment is started.
        unsafe { std::env::set_var("AXON_ZK_HEAP", "1g") };
    }
    let runs: Vec<Run> = std::env::var("AXON_FLEET")
        .unwrap_or_else(|_| {
            "encoded:persistent:100,encoded:oneshot:100,data:persistent:100,data:oneshot:100,encoded:persistent:1000"
                .into()
        })
        .split(',')
        .map(|spec| Run::parse(spec.trim()))
        .collect();
    let mut ensemble = Ensemble::three();
    populate(&ensemble);
    let mut results = Vec::new();
    for run in &runs {
        println!("\n== {}", run.name());
        let measured = measure(&mut ensemble, run);
        // Each run's row at once, so a long run's predecessors are not lost with it.
        println!("{}", row(run, &measured));
        results.push((run.clone(), measured));
    }
    println!("\nDiscovery at fleet scale: {SERVICES} services × {INSTANCES} instances, three-node ensemble");
    println!(
        "| znodes, watches, N | watches on the ensemble (per session) | requests per change (per session) | last of N has a change: p50 / p99 | sessions' CPU per change (per session) | ensemble memory | after 30 s down: all current after | peak outstanding | failed reads |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (run, measured) in &results {
        println!("{}", row(run, measured));
    }
}

fn row(run: &Run, r: &Measured) -> String {
    format!(
        "| {} | {} ({:.1}) | {:.0} ({:.2}) | {:.1} / {:.1} ms | {:.0} µs | {} MiB | {} | {} | {} |",
        run.name(),
        r.watches,
        r.watches as f64 / run.sessions as f64,
        r.requests_per_change,
        r.requests_per_change / run.sessions as f64,
        r.last_p50.as_secs_f64() * 1000.0,
        r.last_p99.as_secs_f64() * 1000.0,
        r.cpu_per_change_us,
        r.memory_mib,
        r.recovery.map_or("not within 5 min".into(), |d| format!("{:.1} s", d.as_secs_f64())),
        r.peak_outstanding,
        r.failed_reads,
    )
}

#[derive(Debug, Clone)]
struct Run {
    tree: String,
    watches: String,
    sessions: usize,
    /// `max_reads_in_flight`, unless the default.
    reads: Option<u32>,
    /// `reread_jitter`, unless the default.
    jitter: Option<String>,
}

impl Run {
    fn parse(spec: &str) -> Run {
        let usage = || panic!("AXON_FLEET: {spec:?} is not tree:watches:N[:reads=R][:jitter=D]");
        let mut parts = spec.split(':');
        let (Some(tree), Some(watches), Some(n)) = (parts.next(), parts.next(), parts.next()) else { usage() };
        assert!(matches!(tree, "data" | "encoded") && matches!(watches, "persistent" | "oneshot"), "{spec}");
        let mut run = Run {
            tree: tree.into(),
            watches: watches.into(),
            sessions: n.parse().unwrap_or_else(|_| usage()),
            reads: None,
            jitter: None,
        };
        for part in parts {
            match part.split_once('=') {
                Some(("reads", r)) => run.reads = Some(r.parse().unwrap_or_else(|_| usage())),
                Some(("jitter", d)) => run.jitter = Some(d.into()),
                _ => usage(),
            }
        }
        run
    }

    /// How the run is named in its row: tree, watches, N, and any setting not the default.
    fn name(&self) -> String {
        let mut name = format!("{}, {}, {}", self.tree, self.watches, self.sessions);
        if let Some(reads) = self.reads {
            name += &format!(", max_reads_in_flight {reads}");
        }
        if let Some(jitter) = &self.jitter {
            name += &format!(", reread_jitter {jitter}");
        }
        name
    }
}

struct Measured {
    watches: u64,
    requests_per_change: f64,
    last_p50: Duration,
    last_p99: Duration,
    /// The sessions' CPU per change, per session, in µs.
    cpu_per_change_us: f64,
    memory_mib: u64,
    recovery: Option<Duration>,
    peak_outstanding: u64,
    failed_reads: f64,
}

/// The runtime's threads.
const SESSION_THREADS: usize = 2;
/// The name of the runtime's threads, which run the sessions.
const SESSION_THREAD: &str = "fleet-session";
/// The thread of zookeeper-client's reactor (async-io's), which waits on the sessions' sockets
/// and timers and wakes their tasks: the sessions' too (nothing else in this process uses it).
const CLIENT_THREAD: &str = "async-io";

/// The CPU seconds the sessions' threads have used so far (the kernel's exact run time).
fn sessions_cpu() -> f64 {
    let (threads, run_time) = process::threads_cpu_time(std::process::id(), &[SESSION_THREAD, CLIENT_THREAD]);
    assert!(
        threads > SESSION_THREADS,
        "the sessions' threads and the client's are not where expected ({threads} found)"
    );
    run_time.as_secs_f64()
}

fn record(service: usize, instance: usize, port: u16) -> String {
    format!(
        r#"{{"host":"10.{}.{}.{}","port":{port},"name":"i{instance}"}}"#,
        service / 250,
        service % 250,
        instance + 1
    )
}

fn encoded_name(json: &str, sequence: usize) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::URL_SAFE.encode(json);
    format!("base64_{}_{encoded}_{sequence:010}", encoded.len())
}

/// Both trees, 5,000 znodes each.
fn populate(ensemble: &Ensemble) {
    let mut kazoo = Kazoo::connect(&ensemble.connect_string());
    for s in 0..SERVICES {
        let mut nodes = Vec::new();
        for i in 0..INSTANCES {
            let json = record(s, i, 8080);
            nodes.push((format!("/fleet/data/s{s}/i{i}_{i:010}"), json.clone()));
            nodes.push((format!("/fleet/encoded/s{s}/{}", encoded_name(&json, i)), String::new()));
        }
        kazoo.create_many(&nodes);
    }
    println!("populated {} znodes", SERVICES * INSTANCES * 2);
}

/// One session of the discovery library.
struct Follower {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    status: watch::Receiver<DiscoveryStatus>,
    metrics: Metrics,
}

fn config(run: &Run, connect: &str) -> Config {
    let services: String = (0..SERVICES)
        .map(|s| format!("[[service]]\nname = \"s{s}\"\nzk_path = \"/fleet/{}/s{s}\"\n\n", run.tree))
        .collect();
    let mut discovery = format!("watches = {:?}\n", run.watches);
    if let Some(reads) = run.reads {
        discovery += &format!("max_reads_in_flight = {reads}\n");
    }
    if let Some(jitter) = &run.jitter {
        discovery += &format!("reread_jitter = {jitter:?}\n");
    }
    let text = format!(
        "[zookeeper]\nconnect = {connect:?}\nsession_timeout = {SESSION_TIMEOUT:?}\nreconnect_backoff_max = \"1s\"\n\n\
         [haproxy]\nsocket = \"/nonexistent\"\n\n[discovery]\n{discovery}\n{services}"
    );
    Config::parse(Path::new("fleet.toml"), &text).expect("the fleet configuration")
}

fn measure(ensemble: &mut Ensemble, run: &Run) -> Measured {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(SESSION_THREADS)
        .thread_name(SESSION_THREAD)
        .enable_all()
        .build()
        .expect("runtime");
    let shutdown = CancellationToken::new();
    let config = Arc::new(config(run, &ensemble.connect_string()));
    let started = Instant::now();
    let followers: Vec<Follower> = (0..run.sessions)
        .map(|_| {
            let (snapshot_tx, snapshots) = watch::channel(Arc::new(Snapshot::default()));
            let (status_tx, status) = watch::channel(DiscoveryStatus::default());
            let (metrics, _) = Metrics::new();
            let discovery = Discovery::new(config.clone(), snapshot_tx, status_tx, metrics.clone(), shutdown.clone());
            runtime.spawn(discovery.run());
            Follower { snapshots, status, metrics }
        })
        .collect();
    let everything = |f: &Follower| {
        let snapshot = f.snapshots.borrow();
        snapshot.services.len() == SERVICES && snapshot.services.values().all(|v| v.instances.len() == INSTANCES)
    };
    // Every instance read, and every watch there (a session whose connection dropped meanwhile
    // is adding its watches again).
    let watching = |f: &Follower| everything(f) && f.status.borrow().state == DiscoveryState::Watching;
    wait::for_true("every session reads everything", Duration::from_secs(600), || followers.iter().all(watching));
    println!(
        "all {} sessions read everything {:.1} s after they started",
        run.sessions,
        started.elapsed().as_secs_f64()
    );
    let watches: u64 = (0..ensemble.len()).map(|i| four_letter_number(ensemble, i, "wchs", "Total watches:")).sum();
    let memory_mib = ensemble.pids().iter().map(|&p| rss_mib(p)).sum();

    // The requests the sessions make while nothing changes (pings): subtracted below.
    let idle = Duration::from_secs(5);
    let (idle_before, idle_cpu_before) = (packets(ensemble), sessions_cpu());
    std::thread::sleep(idle);
    let idle_rate = (packets(ensemble) - idle_before) as f64 / idle.as_secs_f64();
    let idle_cpu_rate = (sessions_cpu() - idle_cpu_before) / idle.as_secs_f64();
    // Changes, one at a time: a new instance appears in service s7 (then goes again).
    let mut kazoo = Kazoo::connect(&ensemble.connect_string());
    let reads_before: f64 = followers.iter().map(|f| f.metrics.zk_reads.get() as f64).sum();
    let packets_before = packets(ensemble);
    let cpu_before = sessions_cpu();
    let changes_started = Instant::now();
    let (mut lasts, mut writes) = (Vec::new(), Vec::new());
    for n in 0..CHANGES {
        let port = 9000 + u16::try_from(n).expect("a port");
        let json = record(7, INSTANCES, port);
        let path = match run.tree.as_str() {
            "data" => format!("/fleet/data/s7/new{n}_"),
            _ => format!("/fleet/encoded/s7/{}", encoded_name(&json, 0).trim_end_matches("0000000000")),
        };
        let start = Instant::now();
        let created = kazoo.create(&path, &json, false, true);
        // The ensemble's own part of the change: the write, until kazoo has its answer.
        writes.push(start.elapsed());
        let seen = |f: &Follower| {
            f.snapshots.borrow().services.get("s7").is_some_and(|v| v.instances.iter().any(|i| i.endpoint.port == port))
        };
        wait::for_true("every session sees the change", Duration::from_secs(60), || followers.iter().all(seen));
        lasts.push(start.elapsed());
        kazoo.delete(&created, false);
        wait::for_true("every session sees it go", Duration::from_secs(60), || !followers.iter().any(seen));
    }
    // Two changes each (create and delete), less the pings of the time they took and the
    // writer's own two requests.
    let packets_during =
        (packets(ensemble) - packets_before) as f64 - idle_rate * changes_started.elapsed().as_secs_f64();
    let requests_per_change = packets_during / (2 * CHANGES) as f64 - 1.0;
    // The sessions' own CPU for the changes, less what they use while nothing changes.
    let cpu_during = sessions_cpu() - cpu_before - idle_cpu_rate * changes_started.elapsed().as_secs_f64();
    assert!(cpu_during > 0.0, "the sessions used no CPU for the changes: the measure is broken");
    let cpu_per_change_us = cpu_during * 1e6 / (2 * CHANGES * run.sessions) as f64;
    println!(
        "the sessions' CPU per change: {cpu_per_change_us:.1} µs per session (idle: {idle_cpu_rate:.3} of a core)"
    );
    let reads: f64 = followers.iter().map(|f| f.metrics.zk_reads.get() as f64).sum::<f64>() - reads_before;
    println!(
        "{:.2} reads per change per session (the sessions' own count); {:.2} requests (mntr, less pings)",
        reads / (2 * CHANGES * run.sessions) as f64,
        requests_per_change / run.sessions as f64
    );
    lasts.sort();
    // A slow change is the ensemble's when its write was slow too.
    writes.sort();
    let ms = |sorted: &[Duration], q: f64| quantile(sorted, q).as_secs_f64() * 1000.0;
    println!(
        "the ensemble's part (kazoo's create, answered): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(&writes, 0.50),
        ms(&writes, 0.99),
        ms(&writes, 1.0)
    );

    // The whole ensemble down past the session timeout: every session expires.
    drop(kazoo);
    let sessions_before: Vec<Option<String>> = followers.iter().map(|f| f.status.borrow().session_id.clone()).collect();
    for i in 0..ensemble.len() {
        ensemble.kill(i);
    }
    // When each session gave its session up, during the outage.
    let down = Instant::now();
    let mut ended = vec![None; followers.len()];
    while down.elapsed() < OUTAGE {
        for (f, at) in followers.iter().zip(&mut ended) {
            let state = f.status.borrow().state;
            if at.is_none() && matches!(state, DiscoveryState::Expired | DiscoveryState::Connecting) {
                *at = Some(down.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let restarted = Instant::now();
    // Reads that fail from now on fail in the recovery (those in flight when the ensemble went
    // failed during the outage, and are not counted).
    let failures_before: f64 = followers.iter().map(|f| f.metrics.zk_read_failures.get() as f64).sum();
    for i in 0..ensemble.len() {
        ensemble.restart(i);
    }
    ensemble.wait_serving();
    let back = Instant::now();
    println!(
        "outage: sessions given up {} after the ensemble went; it served again {:.1} s after its restart began",
        spread(&ended),
        (back - restarted).as_secs_f64()
    );
    let mut peak_outstanding = 0;
    // A new session, and then every path read in it.
    let renewed = |f: &Follower, before: &Option<String>| {
        let status = f.status.borrow();
        status.session_id.is_some() && status.session_id != *before
    };
    let current = |f: &Follower, before: &Option<String>| {
        renewed(f, before) && f.status.borrow().state == DiscoveryState::Watching
    };
    let (mut opened, mut current_at) = (vec![None; followers.len()], vec![None; followers.len()]);
    let recovery = loop {
        for (i, (f, before)) in followers.iter().zip(&sessions_before).enumerate() {
            if opened[i].is_none() && renewed(f, before) {
                opened[i] = Some(back.elapsed());
            }
            // Current since when; a session that falls back (its connection dropped, say) is
            // current again only from its next time.
            if !current(f, before) {
                current_at[i] = None;
            } else if current_at[i].is_none() {
                current_at[i] = Some(back.elapsed());
            }
        }
        peak_outstanding = peak_outstanding.max(
            (0..ensemble.len())
                .map(|i| four_letter_number(ensemble, i, "mntr", "zk_outstanding_requests"))
                .max()
                .unwrap_or(0),
        );
        // Every session current in this one pass: recovered when the last of them became so.
        if let Some(last) =
            current_at.iter().copied().collect::<Option<Vec<Duration>>>().and_then(|t| t.into_iter().max())
        {
            break Some(last);
        }
        if back.elapsed() > Duration::from_secs(300) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    println!(
        "after the ensemble served again (0.0: already before): new sessions open {}, current {}",
        spread(&opened),
        spread(&current_at)
    );
    let failed_reads = followers.iter().map(|f| f.metrics.zk_read_failures.get() as f64).sum::<f64>() - failures_before;
    if failed_reads > 0.0 {
        // Why reads failed: each session's last error, counted (a session whose reads all
        // succeeded shows why it could not open its session during the outage).
        let mut errors = std::collections::BTreeMap::<String, usize>::new();
        for f in &followers {
            if let Some(err) = f.status.borrow().last_error.clone() {
                *errors.entry(err).or_default() += 1;
            }
        }
        println!("sessions' last errors: {errors:?}");
    }
    assert!(followers.iter().all(everything), "a session lost instances across the outage");
    shutdown.cancel();
    runtime.shutdown_timeout(Duration::from_secs(10));
    Measured {
        watches,
        requests_per_change,
        last_p50: quantile(&lasts, 0.50),
        last_p99: quantile(&lasts, 0.99),
        cpu_per_change_us,
        memory_mib,
        recovery,
        peak_outstanding,
        failed_reads,
    }
}

/// The `q` quantile of `sorted` (1.0: the largest).
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

/// The first, median and last of times (seconds), and how many never came.
fn spread(times: &[Option<Duration>]) -> String {
    let mut seen: Vec<f64> = times.iter().flatten().map(Duration::as_secs_f64).collect();
    seen.sort_by(f64::total_cmp);
    let missing = times.len() - seen.len();
    let Some((first, last)) = seen.first().zip(seen.last()) else { return format!("never ({missing})") };
    let never = if missing > 0 { format!(", {missing} never") } else { String::new() };
    format!("{first:.1} / {:.1} / {last:.1} s (first / median / last{never})", seen[seen.len() / 2])
}

/// A number from a four-letter command's reply (`wchs`: "Total watches:N"; `mntr`: tab
/// separated).
fn four_letter_number(ensemble: &Ensemble, node: usize, command: &str, key: &str) -> u64 {
    let reply = zk::four_letter(ensemble.node(node).client_port, command).unwrap_or_default();
    reply.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

/// Packets received by every node so far.
fn packets(ensemble: &Ensemble) -> u64 {
    (0..ensemble.len()).map(|i| four_letter_number(ensemble, i, "mntr", "zk_packets_received")).sum()
}

fn rss_mib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    kib / 1024
}
