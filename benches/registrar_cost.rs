//! The registrar's cost: 200 services on one host, each checked every second, against a real
//! ZooKeeper, real HTTP listeners and one real `redis-server`. Reports, for each check type side
//! by side, the registrar process's CPU share of one core (its own user + system time over a
//! 20 s window, from /proc), the share of the children its checks start (an `exec` check's
//! `/bin/sh`: the kernel charges them to the registrar's children time once it reaps them, not
//! to the registrar), their sum, and the registrar's peak RSS; and, for scale, what the kernel
//! alone charges for the same number of bare loopback connect-and-close pairs made in the same
//! batches, which bounds what any checker opening a connection per check can reach on this
//! machine.
//!
//! Run with `make bench` (or `cargo build --release --workspace --bins && cargo bench --bench
//! registrar_cost`).

use std::time::{Duration, Instant};

use axon_harness::redis::Redis;
use axon_harness::registrar::RegistrarDir;
use axon_harness::sample::Sample;
use axon_harness::wait;
use axon_harness::zk::Ensemble;

const SERVICES: usize = 200;
const WINDOW: Duration = Duration::from_secs(20);

struct Figures {
    kind: &'static str,
    /// The registrar's own user + system time, as a percentage of one core.
    registrar_percent: f64,
    /// Its reaped children's (the check commands'), likewise.
    children_percent: f64,
    peak_rss_mb: f64,
    checks_per_sec: f64,
}

fn main() {
    let zk = Ensemble::standalone();
    let sample = Sample::start_many("bench", "b1", SERVICES);
    // One server answers every service's redis check.
    let redis = Redis::start(&[]);
    let results: Vec<Figures> = ["http", "http keepalive=false", "tcp", "exec", "redis"]
        .into_iter()
        .map(|kind| measure(&zk, &sample, redis.port, kind))
        .collect();
    let floor = bare_connects(&sample);
    println!("\nregistrar cost: {SERVICES} services, one check each, every 1 s, {}-second window", WINDOW.as_secs());
    println!(
        "| check | registrar CPU (% of one core) | its check children (% of one core) | sum | peak RSS (MB) | checks/s observed |"
    );
    println!("|---|---|---|---|---|---|");
    for f in results {
        println!(
            "| {} | {:.2} % | {:.2} % | {:.2} % | {:.1} MB | {:.0} |",
            f.kind,
            f.registrar_percent,
            f.children_percent,
            f.registrar_percent + f.children_percent,
            f.peak_rss_mb,
            f.checks_per_sec
        );
    }
    println!("| (bare connect + close, no checker) | {floor:.2} % | - | {floor:.2} % | - | 200 |");
}

/// The CPU share of 200 blocking loopback connect + reset-close pairs a second, in batches of
/// 20 every 100 ms as the registrar's 100 ms tick batches them, measured in this process.
fn bare_connects(sample: &Sample) -> f64 {
    let self_pid = i32::try_from(std::process::id()).expect("pid");
    let (start, before) = (Instant::now(), cpu_seconds(self_pid).own);
    let mut next = 0;
    while start.elapsed() < WINDOW {
        for _ in 0..SERVICES / 10 {
            let port = sample.ports[next % sample.ports.len()];
            next += 1;
            let stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connecting to the sample");
            let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let percent = (cpu_seconds(self_pid).own - before) / start.elapsed().as_secs_f64() * 100.0;
    println!("bare connect + close: {percent:.2} % of one core");
    percent
}

fn measure(zk: &Ensemble, sample: &Sample, redis_port: u16, kind: &'static str) -> Figures {
    let dir = RegistrarDir::new();
    let mut config = dir.header(&zk.connect_string(), "bench-host", "10s");
    for (i, port) in sample.ports.iter().enumerate() {
        let check = match kind {
            "http" => "type = \"http\"\nuri = \"/health\"\ntimeout = \"500ms\"".to_owned(),
            "http keepalive=false" => {
                "type = \"http\"\nuri = \"/health\"\nkeepalive = false\ntimeout = \"500ms\"".to_owned()
            }
            "tcp" => "type = \"tcp\"\ntimeout = \"500ms\"".to_owned(),
            "redis" => format!("type = \"redis\"\nport = {redis_port}\ntimeout = \"500ms\""),
            _ => "type = \"exec\"\ncommand = \"true\"\ntimeout = \"500ms\"".to_owned(),
        };
        config += &format!(
            "[[service]]\nname = \"svc{i}\"\nhost = \"127.0.0.1\"\nport = {port}\nzk_path = \"/bench/{}/svc{i}\"\n\
             check_interval = \"1s\"\n[[service.checks]]\n{check}\n\n",
            kind.replace([' ', '='], "-")
        );
    }
    let registrar = dir.start(&config);
    wait::for_true("every service registered", Duration::from_secs(60), || {
        registrar.metric("axon_registrar_registrations_total") >= SERVICES as f64
    });
    std::thread::sleep(Duration::from_secs(2));
    let pid = registrar.proc.pid();
    let (cpu_before, checks_before, start) =
        (cpu_seconds(pid), registrar.metric("axon_registrar_checks_total"), Instant::now());
    std::thread::sleep(WINDOW);
    let (cpu_after, checks_after, elapsed) =
        (cpu_seconds(pid), registrar.metric("axon_registrar_checks_total"), start.elapsed());
    let percent = |before: f64, after: f64| (after - before) / elapsed.as_secs_f64() * 100.0;
    let figures = Figures {
        kind,
        registrar_percent: percent(cpu_before.own, cpu_after.own),
        children_percent: percent(cpu_before.children, cpu_after.children),
        peak_rss_mb: status_kb(pid, "VmHWM") / 1024.0,
        checks_per_sec: (checks_after - checks_before) / elapsed.as_secs_f64(),
    };
    println!(
        "{kind}: registrar {:.2} % of one core, its check children {:.2} %, peak RSS {:.1} MB, {:.0} checks/s",
        figures.registrar_percent, figures.children_percent, figures.peak_rss_mb, figures.checks_per_sec
    );
    figures
}

/// CPU seconds (user + system) of a process and of its children that it has waited for.
struct CpuSeconds {
    own: f64,
    children: f64,
}

/// From /proc/<pid>/stat: utime + stime (fields 14 and 15) and cutime + cstime (16 and 17).
/// A child's time joins the second pair only once the registrar reaps it, so a command still
/// running at the end of a window counts in the next; over 20 s of 200 short commands a second,
/// that is noise.
fn cpu_seconds(pid: i32) -> CpuSeconds {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("reading /proc/<pid>/stat");
    // Fields after the parenthesised command name, which may itself hold spaces; field 3 first.
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |field: usize| fields[field - 3].parse::<f64>().expect("a number of clock ticks");
    // SAFETY: sysconf has no memory effects.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    CpuSeconds { own: (ticks(14) + ticks(15)) / per_second, children: (ticks(16) + ticks(17)) / per_second }
}

/// A `kB` field of /proc/<pid>/status.
fn status_kb(pid: i32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("reading /proc/<pid>/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}
