//! What instance churn costs HAProxy's traffic: the same ZooKeeper writes, once under the
//! path axon-spoa watches (so each change reaches HAProxy as runtime API commands, on the
//! thread that serves traffic) and once under a path nobody watches, in alternating rounds.
//!
//! HAProxy (`nbthread 1`) from the shipped snippet, through its frontend without the SPOE
//! filter (routing per request is not what is measured), `web` with two steady instances;
//! axon-spoa at its production intervals; kazoo adds and removes a third instance about ten
//! times a second. wrk -t1 -c50 for 8 s per round, 8 rounds of each, alternating which goes
//! first; the ratio of the p99 latencies (median of the rounds) is the cost. Target: at most
//! 1.10.
//!
//! Run with `cargo bench --bench haproxy_churn` (after `cargo build --release --workspace
//! --bins`); `AXON_HAPROXY` for another HAProxy.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axon_harness::haproxy::{self, Backend, HaproxyDir};
use axon_harness::kazoo::Kazoo;
use axon_harness::process;
use axon_harness::sample::Sample;
use axon_harness::spoa::SpoaDir;
use axon_harness::zk::Ensemble;
use axon_harness::{bins, ports, wait};

const ROUNDS: usize = 8;
const SECONDS: u64 = 8;
const CHANGES_PER_SECOND: u64 = 10;

fn main() {
    let wrk = bins::system("wrk", "install it with `apt-get install -y wrk`");
    let zk = Ensemble::standalone();
    let steady: Vec<Sample> = (1..=2).map(|i| Sample::start("web", &format!("s{i}"))).collect();
    let moving = Sample::start("web", "m");
    let dir = HaproxyDir::new();
    let port = ports::free_port();
    let config = "global\n    nbthread 1\n\n".to_owned()
        + &haproxy::without_spoe(&haproxy::axon_config(
            &dir,
            port,
            &[Backend { name: "web", prefix: "web", slots: 4 }],
            None,
        ));
    let haproxy = dir.start(&config);
    let spoa_dir = SpoaDir::new();
    let spoa_config = spoa_dir
        .header(&zk.connect_string(), &haproxy, None)
        .replace("resync_interval = \"1s\"\n", "")
        .replace("reload_check_interval = \"100ms\"\n", "")
        + "[routing]\nhost_suffixes = [\".example\"]\n\n"
        + "[[service]]\nname = \"web\"\nzk_path = \"/churn/watched\"\nbackend = \"web\"\nslot_prefix = \"web\"\ndrain = \"0s\"\n";
    let spoa = spoa_dir.start(&spoa_config);
    let mut kazoo = Kazoo::connect(&zk.connect_string());
    let record = |s: &Sample| format!(r#"{{"host":"127.0.0.1","port":{},"name":"{}"}}"#, s.port(), s.instance);
    for s in &steady {
        kazoo.create("/churn/watched/steady_", &record(s), true, true);
    }
    kazoo.create("/churn/unwatched/placeholder", "", false, false);
    wait::for_true("two servers ready", Duration::from_secs(10), || haproxy.ready_servers("web").len() == 2);
    let (mut watched, mut unwatched) = (Vec::new(), Vec::new());
    let (mut commands_watched, mut cpu_watched, mut cpu_unwatched) = (0.0, Duration::ZERO, Duration::ZERO);
    for round in 0..ROUNDS {
        let order = if round % 2 == 0 { [true, false] } else { [false, true] };
        for under_watch in order {
            let path = if under_watch { "/churn/watched" } else { "/churn/unwatched" };
            let commands_before = spoa.metric("axon_spoa_commands_total");
            let cpu_before = process::cpu_time(haproxy.master_pid());
            let stop = Arc::new(AtomicBool::new(false));
            let writer = {
                let (stop, hosts, data, path) = (stop.clone(), zk.connect_string(), record(&moving), path.to_owned());
                std::thread::spawn(move || churn(&hosts, &path, &data, &stop))
            };
            let p99 = wrk_p99(&wrk, port);
            stop.store(true, Ordering::Relaxed);
            let changes = writer.join().expect("the writer");
            let cpu = process::cpu_time(haproxy.master_pid()) - cpu_before;
            if under_watch {
                watched.push(p99);
                commands_watched += spoa.metric("axon_spoa_commands_total") - commands_before;
                cpu_watched += cpu;
            } else {
                unwatched.push(p99);
                cpu_unwatched += cpu;
            }
            println!("round {round}, changes under {path}: {changes} changes, p99 {p99:.2} ms");
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (w, u) = (median(watched.clone()), median(unwatched.clone()));
    println!("\nHAProxy {} (nbthread 1), wrk -t1 -c50, {ROUNDS} rounds of {SECONDS} s each way", haproxy_version());
    println!("| changes ~{CHANGES_PER_SECOND}/s under | p99 (median of rounds) | HAProxy CPU | axon-spoa commands |");
    println!("|---|---|---|---|");
    println!(
        "| the watched path | {w:.2} ms | {:.1} % of a core | {commands_watched:.0} |",
        cpu_watched.as_secs_f64() / (ROUNDS as f64 * SECONDS as f64) * 100.0
    );
    println!(
        "| an unwatched path | {u:.2} ms | {:.1} % of a core | 0 |",
        cpu_unwatched.as_secs_f64() / (ROUNDS as f64 * SECONDS as f64) * 100.0
    );
    println!("| ratio | {:.3} | | |", w / u);
}

/// Adds and removes an instance under `path` about ten times a second until `stop`; returns
/// how many changes it made.
fn churn(hosts: &str, path: &str, data: &str, stop: &AtomicBool) -> u64 {
    let mut kazoo = Kazoo::connect(hosts);
    let start = Instant::now();
    let mut n = 0;
    let mut node: Option<String> = None;
    while !stop.load(Ordering::Relaxed) {
        match node.take() {
            Some(created) => kazoo.delete(&created, false),
            None => node = Some(kazoo.create(&format!("{path}/moving_"), data, true, true)),
        }
        n += 1;
        let next = start + Duration::from_millis(n * 1000 / CHANGES_PER_SECOND);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    if let Some(created) = node {
        kazoo.delete(&created, false);
    }
    n
}

/// wrk's p99 latency, in ms, for `SECONDS`.
fn wrk_p99(wrk: &std::path::Path, port: u16) -> f64 {
    let output = Command::new(wrk)
        .args(["-t1", "-c50", &format!("-d{SECONDS}s"), "--latency", "-H", "Host: web.example"])
        .arg(format!("http://127.0.0.1:{port}/"))
        .output()
        .expect("running wrk");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(!text.contains("Non-2xx"), "failed requests:\n{text}");
    text.lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("99%"))
        .map(|v| {
            let v = v.trim();
            let split = v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len());
            let value: f64 = v[..split].parse().unwrap_or(0.0);
            match &v[split..] {
                "us" => value / 1000.0,
                "s" => value * 1000.0,
                _ => value,
            }
        })
        .unwrap_or_else(|| panic!("no p99 in:\n{text}"))
}

fn haproxy_version() -> String {
    let output = Command::new(haproxy::binary()).arg("-v").output().expect("haproxy -v");
    String::from_utf8_lossy(&output.stdout).split_whitespace().nth(2).unwrap_or("?").to_owned()
}
