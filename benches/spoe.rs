//! The SPOE agent under load:
//!
//! 1. agent alone: a pipelined SPOP load generator on loopback (4 connections, 20 NOTIFYs in
//!    flight on each, HAProxy's default `max-waiting-frames`), axon-spoa pinned to one core and
//!    the generator to the other: NOTIFYs answered per second, and latency from a NOTIFY's
//!    send to its ACK;
//! 2. end to end: HAProxy's requests/s and latency through the shipped frontend with the SPOE
//!    `route` message, against the same HAProxy's frontend without SPOE, same load (wrk, 2
//!    threads, 50 keep-alive connections), for two HAProxys side by side, one of 1 thread and
//!    one of a thread per CPU, each with its own axon-spoa: eight rounds of a 5-second run of
//!    each frontend, which goes first rotating, in one run; the ratio of the means and of each
//!    round's pair. With `AXON_PEER_SPOA` naming a build of HAProxy's C example agent
//!    (github.com/haproxy/spoa-example; HAProxy 2.6 and 3.0 only), each HAProxy also has a
//!    frontend whose SPOE engine uses it, measured in the same rounds.
//!
//! Run with `make bench-spoe-agent` (or `cargo build --release --workspace --bins && cargo
//! bench --bench spoe`). Needs wrk and taskset.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use axon::harness::haproxy::{self, Backend, Haproxy, HaproxyDir};
use axon::harness::kazoo::Kazoo;
use axon::harness::process::Proc;
use axon::harness::sample::Sample;
use axon::harness::spoa::{Spoa, SpoaDir};
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
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let threads = if cpus > 1 { vec![1, cpus] } else { vec![1] };
    let stacks: Vec<Stack> = threads.into_iter().map(|threads| Stack::start(&zk, threads)).collect();
    let mut kazoo = Kazoo::connect(&zk.connect_string());
    for s in &samples {
        kazoo.create(
            "/services/web/bench_",
            &format!(r#"{{"host":"127.0.0.1","port":{},"name":"{}"}}"#, s.port(), s.instance),
            true,
            true,
        );
    }
    for stack in &stacks {
        stack.wait_ready();
    }

    // 1. The agent alone, on one core.
    let spoa = &stacks[0].spoa;
    pin(spoa.proc.pid(), "1");
    pin(i32::try_from(std::process::id()).expect("pid"), "0");
    let (rate, p50, p99) = agent_load(stacks[0].agent);
    println!("agent: {rate:.0} NOTIFY/s on one core, latency p50 {p50:.0} µs p99 {p99:.0} µs");
    pin(spoa.proc.pid(), "0,1");
    pin(i32::try_from(std::process::id()).expect("pid"), "0,1");

    // 2. Each HAProxy through each of its frontends, with the CPU its processes used meanwhile.
    let mut frontends: Vec<Frontend> = stacks.iter().flat_map(Stack::frontends).collect();
    for round in 0..ROUNDS {
        // Which frontend goes first rotates, so the machine's drift within a round favours none.
        for k in 0..frontends.len() {
            let f = (round + k) % frontends.len();
            frontends[f].run(&wrk);
        }
    }
    println!("\nSPOE agent and HAProxy {}", haproxy_version());
    println!("| measurement | value |");
    println!("|---|---|");
    println!("| agent: NOTIFY/s on one core ({CONNECTIONS} connections × {IN_FLIGHT} in flight) | {rate:.0} |");
    println!("| agent: NOTIFY → ACK latency p50 / p99 | {p50:.0} µs / {p99:.0} µs |");
    for frontend in &frontends {
        println!(
            "| {}: requests/s (mean of {ROUNDS} runs); p50 / p99 (median of runs); CPU | {:.0}; {}; {} |",
            frontend.label,
            frontend.mean_rps(),
            frontend.latency(),
            frontend.cpu()
        );
    }
    for frontend in &frontends {
        let Some(base) = frontends.iter().find(|b| b.threads == frontend.threads && b.baseline) else { continue };
        if frontend.baseline {
            continue;
        }
        let mut ratios: Vec<f64> = frontend.runs.iter().zip(&base.runs).map(|(w, wo)| w.rps / wo.rps * 100.0).collect();
        ratios.sort_by(f64::total_cmp);
        println!(
            "| {} / without SPOE: of the means; of each round, median (lowest–highest) | {:.1} %; {:.1} % ({:.1}–{:.1} %) |",
            frontend.label,
            frontend.mean_rps() / base.mean_rps() * 100.0,
            median(ratios.clone()),
            ratios[0],
            ratios[ratios.len() - 1]
        );
    }
}

/// An HAProxy of `threads` threads with the shipped snippet, a frontend without SPOE beside
/// it, and its axon-spoa (plus, when asked for, the reference agent).
struct Stack {
    threads: usize,
    haproxy: Haproxy,
    spoa: Spoa,
    agent: SocketAddr,
    port: u16,
    plain_port: u16,
    peer: Option<Peer>,
}

impl Stack {
    fn start(zk: &Ensemble, threads: usize) -> Stack {
        let (port, plain_port, agent_port) = (ports::free_port(), ports::free_port(), ports::free_port());
        let dir = HaproxyDir::new();
        // (HAProxy 3.4 takes nbthread only in the first global section.)
        let mut config = format!("global\n    nbthread {threads}\n\n")
            + &haproxy::axon_config(&dir, port, &[Backend { name: "web", prefix: "web", slots: 4 }], Some(agent_port))
            + &format!(
                "\nfrontend plain from axon-http\n    bind 127.0.0.1:{plain_port}\n    \
                 use_backend %[req.hdr(host),lower,field(1,:),field(1,.)]\n"
            );
        let peer = Peer::from_env(&dir, &mut config);
        let haproxy = dir.start(&config);
        let spoa_dir = SpoaDir::new();
        let spoa_config = spoa_dir.header(&zk.connect_string(), &haproxy.socket(), None)
            + &format!("[spoe]\nlisten = \"127.0.0.1:{agent_port}\"\nhost_suffixes = [\".example\"]\n\n")
            + "[[service]]\nname = \"web\"\nzk_path = \"/services/web\"\nbackend = \"web\"\nslot_prefix = \"web\"\n\n"
            + "[[service]]\nname = \"api\"\nzk_path = \"/services/web\"\n";
        let spoa = spoa_dir.start(&spoa_config);
        let agent = SocketAddr::from(([127, 0, 0, 1], agent_port));
        Stack { threads, haproxy, spoa, agent, port, plain_port, peer }
    }

    fn wait_ready(&self) {
        let haproxy = &self.haproxy;
        wait::for_true("both servers ready", Duration::from_secs(10), || haproxy.ready_servers("web").len() == 2);
        let agents: &[&str] = if self.peer.is_some() { &["axon-agents", "peer-agents"] } else { &["axon-agents"] };
        wait::for_true("HAProxy to see its agents", Duration::from_secs(10), || {
            agents.iter().all(|backend| haproxy.servers(backend).iter().all(|s| s.up))
        });
    }

    fn frontends(&self) -> Vec<Frontend> {
        let threads = format!("HAProxy, {} thread{}", self.threads, if self.threads == 1 { "" } else { "s" });
        let mut processes = vec![("HAProxy", self.haproxy.master_pid()), ("axon-spoa", self.spoa.proc.pid())];
        let mut frontends = vec![
            Frontend::new(format!("{threads}, without SPOE"), self.threads, true, self.plain_port, &processes),
            Frontend::new(format!("{threads}, SPOE `route` to axon-spoa"), self.threads, false, self.port, &processes),
        ];
        if let Some(peer) = &self.peer {
            processes[1] = ("spoa-example", peer.proc.pid());
            frontends.push(Frontend::new(
                format!("{threads}, SPOE `route` to spoa-example (C)"),
                self.threads,
                false,
                peer.port,
                &processes,
            ));
        }
        frontends
    }
}

/// One frontend under load, its runs, and the CPU its processes used meanwhile.
struct Frontend {
    label: String,
    threads: usize,
    /// The frontend without SPOE the others of its HAProxy are compared with.
    baseline: bool,
    port: u16,
    runs: Vec<Run>,
    /// The processes serving it, and their CPU seconds during its runs.
    processes: Vec<(&'static str, i32, f64)>,
}

impl Frontend {
    fn new(label: String, threads: usize, baseline: bool, port: u16, processes: &[(&'static str, i32)]) -> Frontend {
        let processes = processes.iter().map(|&(name, pid)| (name, pid, 0.0)).collect();
        Frontend { label, threads, baseline, port, runs: Vec::new(), processes }
    }

    fn run(&mut self, wrk: &std::path::Path) {
        let before: Vec<f64> = self.processes.iter().map(|&(_, pid, _)| cpu_seconds_tree(pid)).collect();
        self.runs.push(wrk_run(wrk, self.port));
        for ((_, pid, seconds), before) in self.processes.iter_mut().zip(before) {
            *seconds += cpu_seconds_tree(*pid) - before;
        }
    }

    fn mean_rps(&self) -> f64 {
        self.runs.iter().map(|r| r.rps).sum::<f64>() / self.runs.len() as f64
    }

    fn latency(&self) -> String {
        let p50 = median(self.runs.iter().map(|r| r.p50_ms).collect());
        let p99 = median(self.runs.iter().map(|r| r.p99_ms).collect());
        format!("{p50:.2} ms / {p99:.2} ms")
    }

    /// Each process's CPU while this frontend was under load, in per cent of a core.
    fn cpu(&self) -> String {
        let seconds = (self.runs.len() as u64 * WRK_SECONDS) as f64;
        let shares: Vec<String> =
            self.processes.iter().map(|(name, _, cpu)| format!("{name} {:.0} %", cpu / seconds * 100.0)).collect();
        shares.join(", ")
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// HAProxy's C example agent (github.com/haproxy/spoa-example), the usual reference, when
/// `AXON_PEER_SPOA` names its binary: started with pipelining and measured through a frontend
/// of its own, a copy of the shipped one whose SPOE engine uses it. It knows only its own
/// message, so it answers `route` with an empty ACK and HAProxy sets no variable for it (less
/// work for HAProxy than Axon's answers); HAProxy 3.1 and later wait out the processing timeout
/// on an empty ACK, so it is for 2.6 and 3.0.
struct Peer {
    proc: Proc,
    port: u16,
}

impl Peer {
    /// Starts the peer if asked for, adding its frontend and backend to `config`, which holds
    /// the shipped frontend.
    fn from_env(dir: &HaproxyDir, config: &mut String) -> Option<Peer> {
        let binary = std::env::var_os("AXON_PEER_SPOA")?;
        let version = haproxy_version();
        let mut numbers = version.split(['.', '-']).map(|n| n.parse::<u32>().unwrap_or(0));
        if (numbers.next(), numbers.next()) >= (Some(3), Some(1)) {
            println!("AXON_PEER_SPOA ignored: spoa-example's empty ACKs stall HAProxy {version}");
            return None;
        }
        let (port, agent_port) = (ports::free_port(), ports::free_port());
        let engine = std::fs::read_to_string(bins::workspace_root().join("haproxy/spoe-axon.conf"))
            .expect("reading haproxy/spoe-axon.conf")
            .replace("use-backend axon-agents", "use-backend peer-agents");
        let engine_path = dir.path().join("spoe-peer.conf");
        std::fs::write(&engine_path, engine).expect("writing the peer's SPOE file");
        let start = config.find("frontend axon from axon-http").expect("the shipped frontend");
        let end = config[start..].find("\n# ").map_or(config.len(), |e| start + e);
        let frontend = config[start..end].replace("frontend axon ", "frontend peer ").replace(
            &format!("config {}", bins::workspace_root().join("haproxy/spoe-axon.conf").display()),
            &format!("config {}", engine_path.display()),
        );
        let frontend = replace_bind(&frontend, port);
        config.push_str(&format!(
            "\n{frontend}\nbackend peer-agents from axon-spop\n    option spop-check\n    server spoa-example 127.0.0.1:{agent_port} check inter 500ms rise 1 fall 2\n"
        ));
        let mut command = Command::new(&binary);
        command.args(["-p", &agent_port.to_string(), "-c", "pipelining"]);
        let proc = Proc::spawn("spoa-example", &mut command, &dir.path().join("spoa-example.log"));
        Some(Peer { proc, port })
    }
}

/// `frontend`'s bind line, bound to 127.0.0.1:`port` instead.
fn replace_bind(frontend: &str, port: u16) -> String {
    frontend
        .lines()
        .map(|line| {
            if line.trim_start().starts_with("bind ") { format!("    bind 127.0.0.1:{port}") } else { line.to_owned() }
        })
        .collect::<Vec<_>>()
        .join("\n")
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
