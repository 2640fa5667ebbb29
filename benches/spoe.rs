//! The SPOE agent and the shipped frontend under load.
//!
//! 1. **Agent alone**, on one core (the generator on the other): a pipelined SPOP load
//!    generator on loopback (4 connections). Closed loop (20 NOTIFYs in flight each, HAProxy's
//!    default `max-waiting-frames`): NOTIFYs per second and per second of the agent's own CPU.
//!    Open loop at a fixed rate well below that: latency from each NOTIFY's scheduled send to
//!    its ACK, so a slow answer is not hidden by sending less (no coordinated omission).
//! 2. **End to end**: two HAProxys side by side, one of 1 thread and one of a thread per CPU,
//!    each with the shipped snippet, its own axon-spoa (at its production intervals) and two
//!    instances of `web` (labelled `zone=a` and `az=a`, slots). Per HAProxy, in rounds of 5 s of
//!    wrk (2 threads, 50 keep-alive connections) whose order rotates and, every other round, runs
//!    backwards:
//!    - **baseline**: the shipped frontend without the SPOE filter (and the rule sending its
//!      group), `Host: web.example`: HAProxy routes by the host map;
//!    - **map**: the shipped frontend, same requests: the filter is attached but no message is
//!      sent;
//!    - **label**: the shipped frontend, `X-Axon-Label: zone=a` from a trusted source: every
//!      request asks the agent;
//!    - **mix**: 90 % as map, 10 % as label;
//!    - **mix, declared**: 90 % as map, 10 % with `X-Axon-Label: az=a`, a selector the service
//!      `web-az` declares (`selector_of = "web"`): HAProxy routes those through the host map to
//!      `web-az`'s slots, and no request asks the agent;
//!    - **baseline, declared mix**: the same requests as mix, declared, through the baseline's
//!      frontend: what the filter costs that mix is its share of this one (the plain baseline
//!      sends every request to one backend, this one to two);
//!    - with `AXON_PEER_SPOA` naming a build of HAProxy's C example agent
//!      (github.com/haproxy/spoa-example; HAProxy 2.6 and 3.0 only), **label (C agent)**: a
//!      copy of the shipped frontend whose engine uses it. It answers `route` with an empty ACK,
//!      so that frontend then sends every request that got an answer to `web` itself: less
//!      work for HAProxy than Axon's answers.
//!
//!    Each run is checked: at most one request in 10,000 without a 2xx answer or with a
//!    socket error (a late agent's 503 on this saturated VM; the counts are printed), and
//!    axon-spoa must have answered as many NOTIFYs as the run had requests asking it (a late
//!    or absent agent would make HAProxy answer 503 at once, flattering the ratio), and none
//!    in a run whose requests should not ask; the C agent's frontend answers 503 too when its
//!    agent is late or fails. CPU per request comes from the kernel's exact per-thread run time
//!    (`/proc/<pid>/task/*/schedstat`) of HAProxy's processes and of the agent during each run;
//!    the whole machine's busy time per request and its idle share from `/proc/stat` (an idle
//!    machine would mean the run did not saturate it).
//!
//! Run with `make bench-spoe-agent` (or `cargo build --release --workspace --bins && cargo
//! bench --bench spoe`); `AXON_HAPROXY` for another HAProxy. Needs wrk and taskset.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use axon_harness::haproxy::{self, Backend, Haproxy, HaproxyDir};
use axon_harness::kazoo::Kazoo;
use axon_harness::process::{self, Proc};
use axon_harness::sample::Sample;
use axon_harness::spoa::{Spoa, SpoaDir};
use axon_harness::zk::Ensemble;
use axon_harness::{bins, ports, wait};
use axon_spoa::spoe::codec::{self, FLAG_FIN, FrameType, Typed};
use bytes::BytesMut;

const CONNECTIONS: usize = 4;
const IN_FLIGHT: usize = 20;
const AGENT_SECONDS: u64 = 10;
/// The open-loop rate: well below what the agent sustains, as HAProxy's traffic would be.
const OPEN_LOOP_RATE: u64 = 20_000;
const WRK_SECONDS: u64 = 5;
/// Rounds of one run of each workload: the machine's speed drifts by tens of per cent over a
/// minute, so short runs side by side, many times, compare like with like. (`AXON_BENCH_ROUNDS`
/// sets another number, for a quick look; an even one keeps the order balanced.)
const ROUNDS: usize = 8;

fn rounds() -> usize {
    let rounds = std::env::var("AXON_BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(ROUNDS);
    assert!(rounds > 0, "AXON_BENCH_ROUNDS must be at least 1");
    rounds
}
/// The label selector of agent-routed requests (both instances match it).
const LABEL: &str = "zone=a";
/// A label selector declared by a service (`web-az`, `selector_of = "web"`): routed by HAProxy
/// through the host map to that service's slots (both instances match it too).
const DECLARED: &str = "az=a";

fn main() {
    let wrk = bins::system("wrk", "install it with `apt-get install -y wrk`");
    bins::system("taskset", "install util-linux");
    let zk = Ensemble::standalone();
    let samples: Vec<Sample> = (1..=2).map(|i| Sample::start("web", &format!("w{i}"))).collect();
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let threads = if cpus > 1 { vec![1, cpus] } else { vec![1] };
    let scripts = tempfile::tempdir().expect("a directory for wrk's scripts");
    let stacks: Vec<Stack> = threads.into_iter().map(|threads| Stack::start(&zk, threads)).collect();
    let mut kazoo = Kazoo::connect(&zk.connect_string());
    for s in &samples {
        kazoo.create(
            "/services/web/bench_",
            &format!(
                r#"{{"host":"127.0.0.1","port":{},"name":"{}","labels":{{"zone":"a","az":"a"}}}}"#,
                s.port(),
                s.instance
            ),
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
    let cpu_before = cpu_seconds_tree(spoa.proc.pid());
    let (closed_rate, closed_count) = agent_closed_loop(stacks[0].agent);
    let closed_cpu = cpu_seconds_tree(spoa.proc.pid()) - cpu_before;
    let cpu_before = cpu_seconds_tree(spoa.proc.pid());
    let (open_p50, open_p99, open_max) = agent_open_loop(stacks[0].agent);
    // At this rate NOTIFYs mostly come one at a time: each pays a wake-up.
    let open_cpu_us = (cpu_seconds_tree(spoa.proc.pid()) - cpu_before) * 1e6 / (AGENT_SECONDS * OPEN_LOOP_RATE) as f64;
    println!(
        "agent: closed loop {closed_rate:.0} NOTIFY/s, {:.0} per CPU-second; open loop at {OPEN_LOOP_RATE}/s: \
         p50 {open_p50:.0} µs, p99 {open_p99:.0} µs, max {open_max:.0} µs, {open_cpu_us:.1} µs of CPU per NOTIFY",
        closed_count as f64 / closed_cpu
    );
    pin(spoa.proc.pid(), "0,1");
    pin(i32::try_from(std::process::id()).expect("pid"), "0,1");

    // 2. Each HAProxy through each workload, with the CPU its processes used meanwhile.
    let mut runs: Vec<Workload> = stacks.iter().enumerate().flat_map(|(i, s)| s.workloads(i, scripts.path())).collect();
    for round in 0..rounds() {
        for w in round_order(round, runs.len()) {
            runs[w].run(&wrk, &stacks);
        }
    }

    println!("\nSPOE agent and HAProxy {}", haproxy_version());
    println!("| measurement | value |");
    println!("|---|---|");
    println!(
        "| agent alone, closed loop ({CONNECTIONS} connections × {IN_FLIGHT} in flight): NOTIFY/s; per second of its CPU | {closed_rate:.0}; {:.0} |",
        closed_count as f64 / closed_cpu
    );
    println!(
        "| agent alone, open loop at {OPEN_LOOP_RATE} NOTIFY/s: latency p50 / p99 / max; its CPU per NOTIFY | {open_p50:.0} / {open_p99:.0} / {open_max:.0} µs; {open_cpu_us:.1} µs |"
    );
    println!();
    println!(
        "| HAProxy threads, workload | requests/s (mean of {} runs) | of the baseline: means; per round median (low–high) | p50 / p99 | HAProxy CPU / request | agent CPU / request | machine CPU / request; idle | NOTIFYs / requests asking | failed (non-2xx) / socket errors |",
        rounds()
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for workload in &runs {
        let share = Share::of(workload, find(&runs, workload.stack, Kind::Baseline));
        let requests: u64 = workload.runs.iter().map(|r| r.requests).sum();
        let asking = requests as f64 * workload.kind.asking_share();
        println!(
            "| {}, {} | {:.0} | {share} | {} | {:.1} µs | {} | {:.1} µs; {:.1} % | {} | {} / {} |",
            stacks[workload.stack].threads,
            workload.kind.label(),
            workload.mean_rps(),
            workload.latency(),
            workload.haproxy_cpu / requests as f64 * 1e6,
            if asking > 0.0 { format!("{:.1} µs", workload.agent_cpu / asking * 1e6) } else { "—".into() },
            workload.machine.busy / requests as f64 * 1e6,
            workload.machine.idle / (workload.machine.busy + workload.machine.idle) * 100.0,
            if workload.kind.axon_agent() && asking > 0.0 {
                format!("{:.3}", workload.notifies / asking)
            } else {
                "—".into()
            },
            workload.runs.iter().map(|r| r.failed).sum::<u64>(),
            workload.runs.iter().map(|r| r.socket_errors).sum::<u64>(),
        );
    }
    // What the filter costs the declared mix: the same requests, to the same backends, through
    // the frontend without it (the baseline above sends every request to one backend).
    println!();
    for (i, stack) in stacks.iter().enumerate() {
        println!(
            "{} thread(s): {}, against the same requests without the SPOE filter: {}",
            stack.threads,
            Kind::MixDeclared.label(),
            Share::of(find(&runs, i, Kind::MixDeclared), find(&runs, i, Kind::BaselineDeclared))
        );
    }
}

/// One workload's requests/s as a share of another's in the same rounds: the mean's, and the
/// median and range of the rounds'.
struct Share {
    mean: f64,
    rounds: Vec<f64>,
}

impl Share {
    fn of(workload: &Workload, base: &Workload) -> Share {
        let mut rounds: Vec<f64> = workload.runs.iter().zip(&base.runs).map(|(w, b)| w.rps / b.rps * 100.0).collect();
        rounds.sort_by(f64::total_cmp);
        Share { mean: workload.mean_rps() / base.mean_rps() * 100.0, rounds }
    }
}

impl std::fmt::Display for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rounds = &self.rounds;
        write!(
            f,
            "{:.1} %; {:.1} % ({:.1}–{:.1} %)",
            self.mean,
            median(rounds.clone()),
            rounds[0],
            rounds[rounds.len() - 1]
        )
    }
}

fn find(runs: &[Workload], stack: usize, kind: Kind) -> &Workload {
    runs.iter().find(|w| w.stack == stack && w.kind == kind).expect("every stack runs every workload")
}

/// What a wrk run sends, and through which frontend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Baseline,
    BaselineDeclared,
    Map,
    Label,
    Mix,
    MixDeclared,
    PeerLabel,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Baseline => "baseline: shipped frontend without the SPOE filter, slot host",
            Kind::BaselineDeclared => {
                "baseline, declared mix: without the SPOE filter, 90 % slot host, 10 % declared label"
            }
            Kind::Map => "slot host, no label (host map, no SPOE message)",
            Kind::Label => "label selector (every request asks axon-spoa)",
            Kind::Mix => "90 % slot host, 10 % label",
            Kind::MixDeclared => "90 % slot host, 10 % declared label (host map, no SPOE message)",
            Kind::PeerLabel => "label selector, asking spoa-example (C)",
        }
    }

    /// The share of its requests that ask an agent.
    fn asking_share(self) -> f64 {
        match self {
            Kind::Baseline | Kind::BaselineDeclared | Kind::Map | Kind::MixDeclared => 0.0,
            Kind::Label | Kind::PeerLabel => 1.0,
            Kind::Mix => 0.1,
        }
    }

    fn axon_agent(self) -> bool {
        matches!(self, Kind::Label | Kind::Mix)
    }

    /// Every how many requests one carries the label (0: none).
    fn label_every(self) -> u32 {
        match self {
            Kind::Baseline | Kind::Map => 0,
            Kind::Label | Kind::PeerLabel => 1,
            Kind::Mix | Kind::MixDeclared | Kind::BaselineDeclared => 10,
        }
    }

    /// The label its labelled requests carry.
    fn selector(self) -> &'static str {
        if matches!(self, Kind::MixDeclared | Kind::BaselineDeclared) { DECLARED } else { LABEL }
    }
}

/// wrk's script for a workload: every `every`th request carries the label (none for 0). Every
/// workload runs through a script of this shape, with the requests built once, so wrk's own
/// cost per request is the same in all of them.
fn wrk_script(every: u32, label: &str) -> String {
    format!(
        "local plain = wrk.format(\"GET\", \"/\", {{[\"Host\"] = \"web.example\"}})\n\
         local labelled = wrk.format(\"GET\", \"/\", {{[\"Host\"] = \"web.example\", [\"X-Axon-Label\"] = \"{label}\"}})\n\
         local every = {every}\n\
         local n = 0\n\
         request = function()\n  \
           n = n + 1\n  \
           if every > 0 and n % every == 0 then return labelled end\n  \
           return plain\n\
         end\n"
    )
}

/// An HAProxy of `threads` threads with the shipped snippet, a baseline frontend beside it, and
/// its axon-spoa (plus, when asked for, the reference agent).
struct Stack {
    threads: usize,
    haproxy: Haproxy,
    spoa: Spoa,
    agent: SocketAddr,
    port: u16,
    baseline_port: u16,
    peer: Option<Peer>,
}

impl Stack {
    fn start(zk: &Ensemble, threads: usize) -> Stack {
        let (port, baseline_port, agent_port) = (ports::free_port(), ports::free_port(), ports::free_port());
        let dir = HaproxyDir::new();
        std::fs::write(dir.trusted_sources(), "127.0.0.1\n").expect("writing the trusted sources");
        // (HAProxy 3.4 takes nbthread only in the first global section.)
        let backends =
            [Backend { name: "web", prefix: "web", slots: 4 }, Backend { name: "web-az", prefix: "az", slots: 4 }];
        let shipped = haproxy::axon_config(&dir, port, &backends, Some(agent_port));
        let frontend = shipped_frontend(&shipped);
        let baseline = replace_bind(
            &haproxy::without_spoe(&frontend).replace("frontend axon ", "frontend baseline "),
            baseline_port,
        );
        let mut config = format!("global\n    nbthread {threads}\n\n") + &shipped + "\n" + &baseline + "\n";
        let peer = Peer::from_env(&dir, &frontend, &mut config);
        let haproxy = dir.start(&config);
        let spoa_dir = SpoaDir::new();
        // Production intervals: the harness's short test ones removed.
        let header = spoa_dir
            .header(&zk.connect_string(), &haproxy, None)
            .replace("resync_interval = \"1s\"\n", "")
            .replace("reload_check_interval = \"100ms\"\n", "");
        let spoa_config = header
            + "[routing]\nhost_suffixes = [\".example\"]\n\n"
            + &format!("[spoe]\nlisten = \"127.0.0.1:{agent_port}\"\n\n")
            + "[[service]]\nname = \"web\"\nzk_path = \"/services/web\"\nbackend = \"web\"\nslot_prefix = \"web\"\n\n"
            + "[[service]]\nname = \"web-az\"\nzk_path = \"/services/web\"\nbackend = \"web-az\"\nslot_prefix = \"az\"\n\
               label_filters = [{ label = \"az\", value = \"a\" }]\nselector_of = \"web\"\n";
        let spoa = spoa_dir.start(&spoa_config);
        let agent = SocketAddr::from(([127, 0, 0, 1], agent_port));
        Stack { threads, haproxy, spoa, agent, port, baseline_port, peer }
    }

    fn wait_ready(&self) {
        let haproxy = &self.haproxy;
        wait::for_true("both servers ready", Duration::from_secs(10), || {
            haproxy.ready_servers("web").len() == 2 && haproxy.ready_servers("web-az").len() == 2
        });
        wait::for_true("web.example mapped, with its declared selector", Duration::from_secs(10), || {
            let entries = haproxy.host_map_entries();
            entries.contains_key("web.example") && entries.contains_key(&format!("web.example:{DECLARED}"))
        });
        let agents: &[&str] = if self.peer.is_some() { &["axon-agents", "peer-agents"] } else { &["axon-agents"] };
        wait::for_true("HAProxy to see its agents", Duration::from_secs(10), || {
            agents.iter().all(|backend| haproxy.servers(backend).iter().all(|s| s.up))
        });
    }

    /// The workloads of this HAProxy, the `index`th stack, with their wrk scripts in `scripts`.
    fn workloads(&self, index: usize, scripts: &Path) -> Vec<Workload> {
        let mut kinds =
            vec![Kind::Baseline, Kind::Map, Kind::Label, Kind::Mix, Kind::MixDeclared, Kind::BaselineDeclared];
        if self.peer.is_some() {
            kinds.push(Kind::PeerLabel);
        }
        kinds
            .into_iter()
            .map(|kind| Workload {
                stack: index,
                kind,
                port: match kind {
                    Kind::Baseline | Kind::BaselineDeclared => self.baseline_port,
                    Kind::PeerLabel => self.peer.as_ref().map_or(0, |p| p.port),
                    _ => self.port,
                },
                script: {
                    let script = scripts.join(format!("every-{}-{}.lua", kind.label_every(), kind.selector()));
                    std::fs::write(&script, wrk_script(kind.label_every(), kind.selector()))
                        .expect("writing wrk's script");
                    script
                },
                runs: Vec::new(),
                haproxy_cpu: 0.0,
                agent_cpu: 0.0,
                notifies: 0.0,
                machine: MachineCpu::default(),
            })
            .collect()
    }

    /// The agent a workload asks, if any.
    fn agent_pid(&self, kind: Kind) -> Option<i32> {
        match kind {
            Kind::PeerLabel => self.peer.as_ref().map(|p| p.proc.pid()),
            _ => Some(self.spoa.proc.pid()),
        }
    }
}

/// The shipped frontend's section (`frontend axon` up to the next comment block).
fn shipped_frontend(config: &str) -> String {
    let start = config.find("frontend axon from axon-http").expect("the shipped frontend");
    let end = config[start..].find("\n# ").map_or(config.len(), |e| start + e);
    config[start..end].to_owned()
}

/// One workload under load, its runs, and the CPU HAProxy and the agent used meanwhile.
struct Workload {
    /// Index into the stacks.
    stack: usize,
    kind: Kind,
    port: u16,
    script: std::path::PathBuf,
    runs: Vec<Run>,
    haproxy_cpu: f64,
    agent_cpu: f64,
    /// NOTIFYs axon-spoa answered during the runs.
    notifies: f64,
    /// The whole machine's CPU during the runs: busy and idle seconds.
    machine: MachineCpu,
}

impl Workload {
    fn run(&mut self, wrk: &Path, stacks: &[Stack]) {
        let stack = &stacks[self.stack];
        let agent = stack.agent_pid(self.kind);
        let (haproxy_before, agent_before) =
            (cpu_seconds_tree(stack.haproxy.master_pid()), agent.map_or(0.0, cpu_seconds_tree));
        let notifies_before = stack.spoa.metric("axon_spoa_spoe_notifies_total");
        let machine_before = MachineCpu::now();
        let run = wrk_run(wrk, self.port, &self.script);
        self.machine.add(MachineCpu::now().since(machine_before));
        self.haproxy_cpu += cpu_seconds_tree(stack.haproxy.master_pid()) - haproxy_before;
        self.agent_cpu += agent.map_or(0.0, cpu_seconds_tree) - agent_before;
        // wrk leaves with requests in flight: the NOTIFYs they still send are this run's.
        let notifies = settled(|| stack.spoa.metric("axon_spoa_spoe_notifies_total")) - notifies_before;
        self.notifies += notifies;
        // Every request that asks the agent is answered by it: nothing falls back unnoticed.
        let asking = run.requests as f64 * self.kind.asking_share();
        if self.kind.axon_agent() {
            assert!(
                notifies >= asking * 0.98 && notifies <= asking * 1.02 + 100.0,
                "{}: {notifies} NOTIFYs answered for {asking:.0} requests asking",
                self.kind.label()
            );
        } else if self.kind != Kind::PeerLabel {
            assert!(notifies == 0.0, "{}: {notifies} NOTIFYs for requests that should not ask", self.kind.label());
        }
        // Every request answered by an instance: a 503 (a late agent's, or a refusal) or a
        // socket error is a request the ratio would count without its work. This saturated
        // VM sometimes delays the agent past `timeout processing` for a request or two in a
        // million; more than one in 10,000 fails the run.
        let lost = run.failed + run.socket_errors;
        assert!(
            lost as f64 <= run.requests as f64 * 1e-4,
            "{}: {} non-2xx answers and {} socket errors in {} requests",
            self.kind.label(),
            run.failed,
            run.socket_errors,
            run.requests
        );
        self.runs.push(run);
    }

    fn mean_rps(&self) -> f64 {
        self.runs.iter().map(|r| r.rps).sum::<f64>() / self.runs.len() as f64
    }

    fn latency(&self) -> String {
        let p50 = median(self.runs.iter().map(|r| r.p50_ms).collect());
        let p99 = median(self.runs.iter().map(|r| r.p99_ms).collect());
        format!("{p50:.2} / {p99:.2} ms")
    }
}

/// `read()` once it gives the same value twice, 100 ms apart (at most 2 s).
fn settled(read: impl Fn() -> f64) -> f64 {
    let mut last = read();
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(100));
        let now = read();
        if now == last {
            break;
        }
        last = now;
    }
    last
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) { (values[mid - 1] + values[mid]) / 2.0 } else { values[mid] }
}

/// The order of the workloads in a round: which goes first rotates, so the machine's drift
/// within a round favours none, and every other round runs them backwards, so of two workloads
/// compared side by side (`baseline` and `map`, `mix, declared` and `baseline, declared mix`)
/// each runs right after the other as often as the other does after it (over an even number of
/// rounds).
fn round_order(round: usize, workloads: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..workloads).map(|k| (round / 2 + k) % workloads).collect();
    if !round.is_multiple_of(2) {
        order.reverse();
    }
    order
}

/// HAProxy's C example agent (github.com/haproxy/spoa-example), the usual reference, when
/// `AXON_PEER_SPOA` names its binary: started with pipelining and asked through a copy of the
/// shipped frontend whose SPOE engine uses it. It knows only its own message, so it answers
/// `route` with an empty ACK; that frontend then routes to `web` itself instead of answering
/// `agent_unavailable`. HAProxy 3.1 and later wait out the processing timeout on an empty ACK,
/// so it is for 2.6 and 3.0.
struct Peer {
    proc: Proc,
    port: u16,
}

impl Peer {
    /// Starts the peer if asked for, adding its frontend and backend to `config`.
    fn from_env(dir: &HaproxyDir, frontend: &str, config: &mut String) -> Option<Peer> {
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
        let frontend: String = frontend
            .replace("frontend axon ", "frontend peer ")
            .replace(
                &format!("config {}", bins::workspace_root().join("haproxy/spoe-axon.conf").display()),
                &format!("config {}", engine_path.display()),
            )
            .lines()
            .map(|l| {
                if l.contains("agent_unavailable") {
                    // Its empty ACK sets no route, so the frontend routes to `web` itself; a
                    // late or failed answer still gets the 503, counted as a failed request.
                    PEER_UNAVAILABLE.to_owned()
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        let frontend = replace_bind(&frontend, port) + "    default_backend web\n";
        config.push_str(&format!(
            "\n{frontend}\nbackend peer-agents from axon-spop\n    option spop-check\n    server spoa-example 127.0.0.1:{agent_port} check inter 500ms rise 1 fall 2\n"
        ));
        let mut command = Command::new(&binary);
        command.args(["-p", &agent_port.to_string(), "-c", "pipelining"]);
        let proc = Proc::spawn("spoa-example", &mut command, &dir.path().join("spoa-example.log"));
        Some(Peer { proc, port })
    }
}

/// The peer's frontend answers 503 when its agent did not answer in time (`set-on-error`).
const PEER_UNAVAILABLE: &str = "    http-request return status 503 content-type text/plain hdr X-Axon-Reason agent_unavailable string \"routing unavailable\" if { var(txn.axon.error) -m found }\n";

/// `frontend`'s bind line, bound to 127.0.0.1:`port` instead.
fn replace_bind(frontend: &str, port: u16) -> String {
    frontend
        .lines()
        .map(|line| {
            if line.trim_start().starts_with("bind ") {
                format!("    bind 127.0.0.1:{port}\n")
            } else {
                format!("{line}\n")
            }
        })
        .collect()
}

/// The machine's CPU time, all CPUs, from `/proc/stat`: busy (everything but idle and iowait)
/// and idle, in seconds.
#[derive(Debug, Clone, Copy, Default)]
struct MachineCpu {
    busy: f64,
    idle: f64,
}

impl MachineCpu {
    fn now() -> MachineCpu {
        let stat = std::fs::read_to_string("/proc/stat").expect("reading /proc/stat");
        let ticks: Vec<f64> = stat
            .lines()
            .next()
            .expect("the cpu line")
            .split_whitespace()
            .skip(1)
            .map(|t| t.parse().expect("ticks"))
            .collect();
        // USER_HZ is 100 on every Linux architecture's /proc/stat.
        let idle = ticks[3] + ticks[4];
        let busy = ticks.iter().take(8).sum::<f64>() - idle;
        MachineCpu { busy: busy / 100.0, idle: idle / 100.0 }
    }

    fn since(self, before: MachineCpu) -> MachineCpu {
        MachineCpu { busy: self.busy - before.busy, idle: self.idle - before.idle }
    }

    fn add(&mut self, other: MachineCpu) {
        self.busy += other.busy;
        self.idle += other.idle;
    }
}

/// The CPU seconds of `pid` and its children so far (exact: see `process::cpu_time`).
fn cpu_seconds_tree(pid: i32) -> f64 {
    process::cpu_time(pid).as_secs_f64()
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
            &[
                ("host", Typed::Str(b"web.example")),
                ("path", Typed::Str(b"/items/42")),
                ("label", Typed::Str(LABEL.as_bytes())),
            ],
        );
    });
}

/// Drives the agent over `CONNECTIONS` connections, `IN_FLIGHT` NOTIFYs in flight on each,
/// from one thread, for `AGENT_SECONDS`; returns (NOTIFY/s, NOTIFYs answered).
fn agent_closed_loop(agent: SocketAddr) -> (f64, u64) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    runtime.block_on(async move {
        let start = Instant::now();
        let tasks: Vec<_> = (0..CONNECTIONS).map(|c| tokio::spawn(closed_connection(agent, c as u64))).collect();
        let mut answered = 0;
        for task in tasks {
            answered += task.await.expect("a load connection");
        }
        (answered as f64 / start.elapsed().as_secs_f64(), answered)
    })
}

/// Reads frames from `input`, calling `on_ack` with each ACK's frame id.
fn read_acks(input: &mut BytesMut, hello_seen: &mut bool, mut on_ack: impl FnMut(u64)) {
    while let Some((frame, used)) = codec::decode_frame(input, u32::MAX).expect("a frame") {
        if frame.kind == FrameType::AgentHello {
            *hello_seen = true;
        } else {
            assert_eq!(frame.kind, FrameType::Ack);
            on_ack(frame.frame_id);
        }
        bytes::Buf::advance(input, used);
    }
}

async fn closed_connection(agent: SocketAddr, stream_id: u64) -> u64 {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(agent).await.expect("connecting to the agent");
    stream.set_nodelay(true).ok();
    stream.write_all(&hello()).await.expect("HELLO");
    let mut input = BytesMut::with_capacity(64 * 1024);
    let mut out = BytesMut::new();
    let (mut next_id, mut in_flight, mut answered, mut hello_seen) = (1u64, 0usize, 0u64, false);
    for _ in 0..IN_FLIGHT {
        notify(&mut out, stream_id, next_id);
        next_id += 1;
        in_flight += 1;
    }
    stream.write_all(&out).await.expect("NOTIFY");
    let deadline = Instant::now() + Duration::from_secs(AGENT_SECONDS);
    while in_flight > 0 {
        if stream.read_buf(&mut input).await.expect("reading ACKs") == 0 {
            panic!("the agent closed the connection");
        }
        out.clear();
        let mut acks = 0;
        read_acks(&mut input, &mut hello_seen, |_| acks += 1);
        in_flight -= acks;
        answered += acks as u64;
        if Instant::now() < deadline {
            for _ in 0..acks {
                notify(&mut out, stream_id, next_id);
                next_id += 1;
                in_flight += 1;
            }
            stream.write_all(&out).await.expect("NOTIFY");
        }
    }
    assert!(hello_seen);
    answered
}

/// Sends NOTIFYs at `OPEN_LOOP_RATE` in all over `CONNECTIONS` connections, on schedule
/// whatever the answers, for `AGENT_SECONDS`; returns latency p50, p99 and max in µs, each
/// from the NOTIFY's scheduled time to its ACK. One thread does it all, spinning on its own
/// core over non-blocking sockets, so its own wake-ups add nothing to what is measured.
fn agent_open_loop(agent: SocketAddr) -> (f64, f64, f64) {
    use std::io::{ErrorKind, Read as _, Write as _};
    let mut streams: Vec<std::net::TcpStream> = (0..CONNECTIONS)
        .map(|_| {
            let mut stream = std::net::TcpStream::connect(agent).expect("connecting to the agent");
            stream.set_nodelay(true).ok();
            stream.write_all(&hello()).expect("HELLO");
            stream.set_nonblocking(true).expect("non-blocking");
            stream
        })
        .collect();
    let interval = Duration::from_nanos(1_000_000_000 / OPEN_LOOP_RATE);
    let total = usize::try_from(AGENT_SECONDS * OPEN_LOOP_RATE).expect("a count");
    let start = Instant::now() + Duration::from_millis(10);
    let scheduled = |i: usize| start + interval * u32::try_from(i).expect("an index");
    let mut inputs: Vec<BytesMut> = (0..CONNECTIONS).map(|_| BytesMut::with_capacity(64 * 1024)).collect();
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = BytesMut::new();
    let mut latencies = Vec::with_capacity(total);
    let mut acked = vec![false; total];
    let (mut next, mut hello_seen) = (0usize, false);
    while latencies.len() < total {
        let now = Instant::now();
        while next < total && scheduled(next) <= now {
            // NOTIFY n goes on connection n % CONNECTIONS, with frame id n + 1.
            out.clear();
            notify(&mut out, (next % CONNECTIONS) as u64, next as u64 + 1);
            let stream = &mut streams[next % CONNECTIONS];
            stream.set_nonblocking(false).expect("blocking");
            stream.write_all(&out).expect("NOTIFY");
            stream.set_nonblocking(true).expect("non-blocking");
            next += 1;
        }
        for (stream, input) in streams.iter_mut().zip(&mut inputs) {
            match stream.read(&mut buf) {
                Ok(0) => panic!("the agent closed the connection"),
                Ok(n) => {
                    let now = Instant::now();
                    input.extend_from_slice(&buf[..n]);
                    read_acks(input, &mut hello_seen, |id| {
                        let index = usize::try_from(id - 1).expect("an id");
                        assert!(!std::mem::replace(&mut acked[index], true), "ACK {id} twice");
                        latencies.push(now.duration_since(scheduled(index)));
                    });
                }
                Err(err) if err.kind() == ErrorKind::WouldBlock => {}
                Err(err) => panic!("reading ACKs: {err}"),
            }
        }
    }
    assert!(hello_seen);
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)].as_secs_f64() * 1e6;
    (at(0.50), at(0.99), at(1.0))
}

/// One wrk run.
struct Run {
    rps: f64,
    requests: u64,
    /// Answers other than 2xx (a 503 when the agent answered later than its timeout).
    failed: u64,
    socket_errors: u64,
    p50_ms: f64,
    p99_ms: f64,
}

/// wrk against 127.0.0.1:`port` for `WRK_SECONDS`, the requests `script` makes.
fn wrk_run(wrk: &Path, port: u16, script: &Path) -> Run {
    let mut command = Command::new(wrk);
    command.args(["-t2", "-c50", &format!("-d{WRK_SECONDS}s"), "--latency", "-s"]).arg(script);
    let output = command.arg(format!("http://127.0.0.1:{port}/")).output().expect("running wrk");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let mut run = Run { rps: 0.0, requests: 0, failed: 0, socket_errors: 0, p50_ms: 0.0, p99_ms: 0.0 };
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", n] => run.rps = n.parse().unwrap_or(0.0),
            [n, "requests", "in", ..] => run.requests = n.parse().unwrap_or(0),
            ["Socket", "errors:", rest @ ..] => {
                run.socket_errors = rest.iter().filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok()).sum();
            }
            ["50%", v] => run.p50_ms = wrk_milliseconds(v),
            ["99%", v] => run.p99_ms = wrk_milliseconds(v),
            ["Non-2xx", "or", "3xx", "responses:", n] => run.failed = n.parse().unwrap_or(0),
            _ => {}
        }
    }
    assert!(run.rps > 0.0 && run.requests > 0, "wrk printed no rate:\n{text}");
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
