//! The SPOE agent under load:
//!
//! 1. agent alone: a pipelined SPOP load generator on loopback (4 connections, 20 NOTIFYs in
//!    flight on each, HAProxy's default `max-waiting-frames`), axon-spoa pinned to one core and
//!    the generator to the other: NOTIFYs answered per second, and latency from a NOTIFY's
//!    send to its ACK;
//! 2. end to end: HAProxy's requests/s and latency through the shipped frontend with the SPOE
//!    `route` message, against the same HAProxy's frontend without SPOE, same load (wrk, 2
//!    threads, 50 keep-alive connections): eight rounds of a 5-second run of each, which goes
//!    first alternating, in one run; the ratio of the means and of each round's pair.
//!
//! Run with `make bench-spoe-agent` (or `cargo build --release --workspace --bins && cargo
//! bench --bench spoe`). Needs wrk and taskset.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use axon::harness::haproxy::{self, Backend, HaproxyDir};
use axon::harness::kazoo::Kazoo;
use axon::harness::sample::Sample;
use axon::harness::spoa::SpoaDir;
use axon::harness::zk::Ensemble;
use axon::harness::{bins, ports, wait};
use axon_spoa::spop::codec::{self, FLAG_FIN, FrameType, Typed};
use bytes::BytesMut;

const CONNECTIONS: usize = 4;
const IN_FLIGHT: usize = 20;
const AGENT_SECONDS: u64 = 10;
const WRK_SECONDS: u64 = 5;
/// Rounds of one run of each frontend: the machine's speed drifts by tens of per cent over a
/// minute, so short runs side by side, many times, compare like with like.
const ROUNDS: usize = 8;

fn main() {
    let wrk = bins::system("wrk", "install it with `apt-get install -y wrk`");
    bins::system("taskset", "install util-linux");
    let zk = Ensemble::standalone();
    let samples: Vec<Sample> = (1..=2).map(|i| Sample::start("web", &format!("w{i}"))).collect();
    let (port, plain_port, agent_port) = (ports::free_port(), ports::free_port(), ports::free_port());
    let dir = HaproxyDir::new();
    let config = haproxy::axon_config(
        &dir,
        port,
        &[Backend { name: "web", prefix: "web", slots: 4 }],
        Some(agent_port),
    ) + &format!(
        "\nfrontend plain from axon-http\n    bind 127.0.0.1:{plain_port}\n    use_backend %[req.hdr(host),lower,field(1,:),field(1,.)]\n"
    );
    let haproxy = dir.start(&config);
    let spoa_dir = SpoaDir::new();
    let spoa_config = spoa_dir.header(&zk.connect_string(), &haproxy.socket(), None)
        + &format!("[spoe]\nlisten = \"127.0.0.1:{agent_port}\"\nhost_suffixes = [\".example\"]\n\n")
        + "[[service]]\nname = \"web\"\nzk_path = \"/services/web\"\nbackend = \"web\"\nslot_prefix = \"web\"\n\n"
        + "[[service]]\nname = \"api\"\nzk_path = \"/services/web\"\n";
    let spoa = spoa_dir.start(&spoa_config);
    let mut kazoo = Kazoo::connect(&zk.connect_string());
    for s in &samples {
        kazoo.create(
            "/services/web/bench_",
            &format!(r#"{{"host":"127.0.0.1","port":{},"name":"{}"}}"#, s.port(), s.instance),
            true,
            true,
        );
    }
    wait::for_true("both servers ready", Duration::from_secs(10), || haproxy.ready_servers("web").len() == 2);
    wait::for_true("HAProxy to see the agent", Duration::from_secs(10), || {
        haproxy.servers("axon-agents").iter().all(|s| s.up)
    });

    // 1. The agent alone, on one core.
    pin(spoa.proc.pid(), "1");
    pin(i32::try_from(std::process::id()).expect("pid"), "0");
    let agent = SocketAddr::from(([127, 0, 0, 1], agent_port));
    let (rate, p50, p99) = agent_load(agent);
    println!("agent: {rate:.0} NOTIFY/s on one core, latency p50 {p50:.0} µs p99 {p99:.0} µs");
    pin(spoa.proc.pid(), "0,1");
    pin(i32::try_from(std::process::id()).expect("pid"), "0,1");

    // 2. HAProxy with and without SPOE, with the CPU each process used meanwhile.
    let processes = [("HAProxy", haproxy.master_pid()), ("axon-spoa", spoa.proc.pid())];
    // [without, with] runs, and CPU seconds per process.
    let mut runs: [Vec<Run>; 2] = [Vec::new(), Vec::new()];
    let mut cpu = [[0.0; 2]; 2];
    for round in 0..ROUNDS {
        // Which half goes first alternates, so the machine's drift within a round favours neither.
        let order = if round % 2 == 0 { [1, 0] } else { [0, 1] };
        for spoe in order {
            let before = processes.map(|(_, pid)| cpu_seconds_tree(pid));
            runs[spoe].push(wrk_run(&wrk, if spoe == 1 { port } else { plain_port }));
            let after = processes.map(|(_, pid)| cpu_seconds_tree(pid));
            for i in 0..2 {
                cpu[spoe][i] += after[i] - before[i];
            }
        }
    }
    let seconds = (ROUNDS as u64 * WRK_SECONDS) as f64;
    let percent = |spoe: usize, process: usize| cpu[spoe][process] / seconds * 100.0;
    let [without, with] = &runs;
    let mean_rps = |runs: &[Run]| runs.iter().map(|r| r.rps).sum::<f64>() / runs.len() as f64;
    let median = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let latency = |runs: &[Run]| {
        let p50 = median(runs.iter().map(|r| r.p50_ms).collect());
        let p99 = median(runs.iter().map(|r| r.p99_ms).collect());
        format!("{p50:.2} ms / {p99:.2} ms")
    };
    let mut ratios: Vec<f64> = with.iter().zip(without).map(|(w, wo)| w.rps / wo.rps * 100.0).collect();
    ratios.sort_by(f64::total_cmp);
    let (with_rps, without_rps) = (mean_rps(with), mean_rps(without));
    println!("\nSPOE agent and HAProxy {}", haproxy_version());
    println!("| measurement | value |");
    println!("|---|---|");
    println!("| agent: NOTIFY/s on one core ({CONNECTIONS} connections × {IN_FLIGHT} in flight) | {rate:.0} |");
    println!("| agent: NOTIFY → ACK latency p50 / p99 | {p50:.0} µs / {p99:.0} µs |");
    println!(
        "| HAProxy with SPOE `route`: requests/s (mean of {ROUNDS} runs); p50 / p99 (median of runs) | {with_rps:.0}; {} |",
        latency(with)
    );
    println!(
        "| HAProxy without SPOE: requests/s (mean of {ROUNDS} runs); p50 / p99 (median of runs) | {without_rps:.0}; {} |",
        latency(without)
    );
    println!(
        "| with SPOE / without: of the means; of each round, median (lowest–highest) | {:.1} %; {:.1} % ({:.1}–{:.1} %) |",
        with_rps / without_rps * 100.0,
        median(ratios.clone()),
        ratios[0],
        ratios[ratios.len() - 1]
    );
    println!(
        "| CPU with SPOE / without: HAProxy, axon-spoa | {:.0} % / {:.0} %, {:.0} % / {:.0} % of a core |",
        percent(1, 0),
        percent(0, 0),
        percent(1, 1),
        percent(0, 1)
    );
}

/// User + system CPU seconds of `pid` and its children's threads (HAProxy's worker is the
/// master's child), from /proc.
fn cpu_seconds_tree(pid: i32) -> f64 {
    let mut pids = vec![pid];
    if let Ok(children) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
        pids.extend(children.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
    }
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
        .map(|stat| {
            let after = &stat[stat.rfind(')').unwrap_or(0) + 2..];
            let f: Vec<&str> = after.split_whitespace().collect();
            (f[11].parse::<f64>().unwrap_or(0.0) + f[12].parse::<f64>().unwrap_or(0.0)) / 100.0
        })
        .sum()
}

fn haproxy_version() -> String {
    let output = Command::new(haproxy::binary()).arg("-v").output().expect("haproxy -v");
    String::from_utf8_lossy(&output.stdout).split_whitespace().nth(2).unwrap_or("?").to_owned()
}

/// Pins every thread of `pid` to `cpus`.
fn pin(pid: i32, cpus: &str) {
    let status = Command::new("taskset").args(["-a", "-cp", cpus, &pid.to_string()]).output().expect("taskset");
    assert!(status.status.success(), "taskset: {}", String::from_utf8_lossy(&status.stderr));
}

fn hello() -> BytesMut {
    let mut out = BytesMut::new();
    codec::put_haproxy_hello(&mut out, 16380, b"pipelining");
    out
}

fn notify(out: &mut BytesMut, stream_id: u64, frame_id: u64) {
    codec::put_frame(out, FrameType::Notify, FLAG_FIN, stream_id, frame_id, |out| {
        codec::put_message(
            out,
            "route",
            &[("host", Typed::Str(b"api.example")), ("path", Typed::Str(b"/items/42")), ("label", Typed::Null)],
        );
    });
}

/// Drives the agent over `CONNECTIONS` connections from one thread (an event loop, so the
/// generator's own scheduling does not count as the agent's latency) for `AGENT_SECONDS`;
/// returns (NOTIFY/s, p50 µs, p99 µs).
fn agent_load(agent: SocketAddr) -> (f64, f64, f64) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    runtime.block_on(async move {
        let start = Instant::now();
        let tasks: Vec<_> = (0..CONNECTIONS).map(|c| tokio::spawn(connection_load(agent, c as u64))).collect();
        let mut latencies = Vec::new();
        for task in tasks {
            latencies.extend(task.await.expect("a load connection"));
        }
        let elapsed = start.elapsed().as_secs_f64();
        latencies.sort();
        let at =
            |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)].as_secs_f64() * 1e6;
        (latencies.len() as f64 / elapsed, at(0.50), at(0.99))
    })
}

/// One connection: HELLO, then `IN_FLIGHT` NOTIFYs kept in flight until the time is up.
async fn connection_load(agent: SocketAddr, stream_id: u64) -> Vec<Duration> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(agent).await.expect("connecting to the agent");
    stream.set_nodelay(true).ok();
    stream.write_all(&hello()).await.expect("HELLO");
    let mut input = BytesMut::with_capacity(64 * 1024);
    let mut sent: HashMap<u64, Instant> = HashMap::new();
    let mut latencies = Vec::with_capacity(1 << 20);
    let mut out = BytesMut::new();
    let mut next_id = 1u64;
    let mut hello_seen = false;
    for _ in 0..IN_FLIGHT {
        notify(&mut out, stream_id, next_id);
        sent.insert(next_id, Instant::now());
        next_id += 1;
    }
    stream.write_all(&out).await.expect("NOTIFY");
    let deadline = Instant::now() + Duration::from_secs(AGENT_SECONDS);
    while !sent.is_empty() {
        if stream.read_buf(&mut input).await.expect("reading ACKs") == 0 {
            panic!("the agent closed the connection");
        }
        out.clear();
        while let Some((frame, used)) = codec::decode_frame(&input, u32::MAX).expect("a frame") {
            if frame.kind == FrameType::AgentHello {
                hello_seen = true;
            } else {
                assert_eq!(frame.kind, FrameType::Ack);
                let at = sent.remove(&frame.frame_id).expect("an ACK for a NOTIFY in flight");
                latencies.push(at.elapsed());
                if Instant::now() < deadline {
                    notify(&mut out, stream_id, next_id);
                    sent.insert(next_id, Instant::now());
                    next_id += 1;
                }
            }
            bytes::Buf::advance(&mut input, used);
        }
        if !out.is_empty() {
            stream.write_all(&out).await.expect("NOTIFY");
        }
    }
    assert!(hello_seen);
    latencies
}

/// One wrk run: requests/s and latency percentiles.
struct Run {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// wrk against 127.0.0.1:`port` for `WRK_SECONDS`.
fn wrk_run(wrk: &std::path::Path, port: u16) -> Run {
    let output = Command::new(wrk)
        .args(["-t2", "-c50", &format!("-d{WRK_SECONDS}s"), "--latency", "-H", "Host: web.example"])
        .arg(format!("http://127.0.0.1:{port}/"))
        .output()
        .expect("running wrk");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    println!("{text}");
    let mut run = Run { rps: 0.0, p50_ms: 0.0, p99_ms: 0.0 };
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", n] => run.rps = n.parse().unwrap_or(0.0),
            ["50%", v] => run.p50_ms = wrk_milliseconds(v),
            ["99%", v] => run.p99_ms = wrk_milliseconds(v),
            ["Non-2xx", "or", "3xx", "responses:", n] => panic!("{n} failed requests on port {port}"),
            _ => {}
        }
    }
    assert!(run.rps > 0.0, "wrk printed no rate:\n{text}");
    run
}

/// A wrk latency (`850.00us`, `2.03ms`, `1.20s`) in milliseconds.
fn wrk_milliseconds(text: &str) -> f64 {
    let split = text.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(text.len());
    let value: f64 = text[..split].parse().unwrap_or_else(|_| panic!("a wrk latency: {text}"));
    match &text[split..] {
        "us" => value / 1000.0,
        "ms" => value,
        "s" => value * 1000.0,
        unit => panic!("a wrk latency unit: {unit}"),
    }
}
