//! The crash experiment: faults injected into a running [`Sandbox`] under continuous load,
//! restored, and measured. `axon-scenarios` prints the results; tests/scenarios.rs runs the same
//! code and asserts what must hold ([`Outcome::violations`]).
//!
//! Each scenario starts from the full state (every instance registered once and ready in
//! HAProxy), injects its fault, waits for the fault to take effect (or a fixed time), restores,
//! and waits for the full state again. It records, per service, the requests sent and failed
//! between the fault and one second after recovery; how long the fault took to take an
//! instance out of rotation where it should ("detection"); how long the system took to be back
//! to its full state after the restore; and whether anything was lost for good (the full state
//! must then hold for a second, one znode per instance).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::harness::load::{Outcome as RequestOutcome, Request};
use crate::harness::sample::Sample;
use crate::harness::wait;
use crate::sandbox::{CHECK_FALL, CHECK_INTERVAL, LAYOUT, SESSION_TIMEOUT, Sandbox};

/// The faults, in the experiment's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// 1. An instance of A killed (SIGKILL), then restarted.
    KillInstance,
    /// 2. B's only instance killed, then restarted.
    KillOnlyInstance,
    /// 3. One ZooKeeper node (the leader) killed, then restarted.
    KillZkNode,
    /// 4. Two ZooKeeper nodes killed (quorum lost) longer than the session timeout, then restarted.
    KillZkQuorum,
    /// 5. Every ZooKeeper node killed, then restarted.
    KillZkAll,
    /// 6. axon-spoa killed, then restarted.
    KillSpoa,
    /// 7a. HAProxy reloaded (SIGUSR2).
    ReloadHaproxy,
    /// 7b. HAProxy stopped and started again.
    RestartHaproxy,
    /// 8a. A registrar killed (SIGKILL): its znode goes with its session; then restarted.
    KillRegistrar,
    /// 8b. A registrar stopped (SIGTERM): it deregisters first; then restarted.
    StopRegistrar,
    /// 9. An instance of A put in maintenance, then back.
    Maintenance,
    /// 10. A registrar cut off from ZooKeeper (its proxies partitioned) longer than its session
    ///     timeout, then reconnected.
    PartitionRegistrar,
    /// 11. An instance of A frozen (SIGSTOP) instead of dying, then resumed.
    HangInstance,
}

impl Scenario {
    pub const ALL: [Scenario; 13] = [
        Scenario::KillInstance,
        Scenario::KillOnlyInstance,
        Scenario::KillZkNode,
        Scenario::KillZkQuorum,
        Scenario::KillZkAll,
        Scenario::KillSpoa,
        Scenario::ReloadHaproxy,
        Scenario::RestartHaproxy,
        Scenario::KillRegistrar,
        Scenario::StopRegistrar,
        Scenario::Maintenance,
        Scenario::PartitionRegistrar,
        Scenario::HangInstance,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Scenario::KillInstance => "1. instance a2 killed, restarted",
            Scenario::KillOnlyInstance => "2. B's only instance b1 killed, restarted",
            Scenario::KillZkNode => "3. ZooKeeper leader killed, restarted",
            Scenario::KillZkQuorum => "4. two ZooKeeper nodes killed (quorum lost 5 s), restarted",
            Scenario::KillZkAll => "5. all ZooKeeper nodes killed 5 s, restarted",
            Scenario::KillSpoa => "6. axon-spoa killed, restarted",
            Scenario::ReloadHaproxy => "7a. HAProxy reloaded",
            Scenario::RestartHaproxy => "7b. HAProxy restarted",
            Scenario::KillRegistrar => "8a. registrar of a1 killed (SIGKILL), restarted",
            Scenario::StopRegistrar => "8b. registrar of a1 stopped (SIGTERM), restarted",
            Scenario::Maintenance => "9. a1 in maintenance, then back",
            Scenario::PartitionRegistrar => "10. registrar of a1 cut off from ZooKeeper 6 s, reconnected",
            Scenario::HangInstance => "11. instance a2 hung (SIGSTOP), resumed",
        }
    }

    /// A short name, for the command line.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::KillInstance => "kill-instance",
            Scenario::KillOnlyInstance => "kill-only-instance",
            Scenario::KillZkNode => "kill-zk-node",
            Scenario::KillZkQuorum => "kill-zk-quorum",
            Scenario::KillZkAll => "kill-zk-all",
            Scenario::KillSpoa => "kill-spoa",
            Scenario::ReloadHaproxy => "reload-haproxy",
            Scenario::RestartHaproxy => "restart-haproxy",
            Scenario::KillRegistrar => "kill-registrar",
            Scenario::StopRegistrar => "stop-registrar",
            Scenario::Maintenance => "maintenance",
            Scenario::PartitionRegistrar => "partition-registrar",
            Scenario::HangInstance => "hang-instance",
        }
    }

    pub fn from_name(name: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// What a scenario did to the load and to the system.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub scenario: Scenario,
    /// Per service: (requests, failed, retried on a connection HAProxy had closed).
    pub requests: BTreeMap<String, (usize, usize, usize)>,
    /// Per service: the slowest request.
    pub slowest: BTreeMap<String, Duration>,
    /// The failed requests.
    pub failures: Vec<Request>,
    /// The requests served by an instance while it was out of rotation (must be none once it
    /// has drained).
    pub served_while_out: usize,
    /// From the fault to the instance out of rotation in HAProxy, where the fault takes one out.
    pub detection: Option<Duration>,
    /// From the restore (for HAProxy: from it answering again) to the full state.
    pub recovery: Option<Duration>,
    /// What was lost for good, if anything.
    pub lost: Option<String>,
    /// What the full state still lacked when the recovery bound passed, if it did.
    pub waiting_on: Option<String>,
    /// When the fault was injected.
    pub fault_at: Instant,
}

/// What "failing fast" allows: HAProxy's retries (3) each after its turn-around of
/// min(timeout connect, 1 s) = 500 ms, then its queue timeout (200 ms) — never a read timeout.
pub const FAST: Duration = Duration::from_secs(2);

/// How long after a restore the full state may take: the session timeout plus two seconds.
pub fn recovery_bound(scenario: Scenario) -> Duration {
    match scenario {
        Scenario::ReloadHaproxy | Scenario::RestartHaproxy => Duration::from_secs(1),
        _ => SESSION_TIMEOUT + Duration::from_secs(2),
    }
}

/// The bound on a dead or hung instance's time in rotation: its registrar's checks (interval ×
/// fall, each check up to its 300 ms timeout) or HAProxy's own (1 s × 2), whichever is first,
/// plus the propagation.
pub fn detection_bound() -> Duration {
    CHECK_INTERVAL * CHECK_FALL + Duration::from_millis(300 * u64::from(CHECK_FALL)) + Duration::from_millis(500)
}

impl Outcome {
    pub fn failed(&self, service: &str) -> usize {
        self.requests.get(service).map_or(0, |r| r.1)
    }

    pub fn retried(&self) -> usize {
        self.requests.values().map(|r| r.2).sum()
    }

    /// What must hold for this scenario and does not, one line each.
    pub fn violations(&self) -> Vec<String> {
        let mut out = Vec::new();
        let bound = recovery_bound(self.scenario);
        match self.recovery {
            None => out.push(format!("never back to the full state (bound {bound:?})")),
            Some(took) if took > bound => out.push(format!(
                "back to the full state after {took:?}, over {bound:?} (then lacking: {})",
                self.waiting_on.as_deref().unwrap_or("?")
            )),
            Some(_) => {}
        }
        if let Some(lost) = &self.lost {
            out.push(format!("lost for good: {lost}"));
        }
        if self.served_while_out > 0 {
            out.push(format!("{} requests served by an instance out of rotation", self.served_while_out));
        }
        let failures = |service: &'static str| self.failures.iter().filter(move |r| r.service == service);
        match self.scenario {
            // Dead or hung instances: failures only for requests sent before detection, none
            // where retries absorb a dead one.
            Scenario::KillInstance => {
                if self.failed("a") + self.failed("b") > 0 {
                    out.push(format!(
                        "{} failed requests; retries and redispatch should absorb a dead instance",
                        self.failed("a") + self.failed("b")
                    ));
                }
            }
            Scenario::KillOnlyInstance => {
                if self.failed("a") > 0 {
                    out.push(format!("{} failed requests for A", self.failed("a")));
                }
                // Fast: at most the retries' turn-around (one second) for a request caught as
                // the instance died, then at once; and a 503 saying why.
                for request in failures("b") {
                    let clear = matches!(request.outcome, RequestOutcome::Status(503, Some(_)));
                    if !clear || request.took > FAST {
                        out.push(format!(
                            "B failed otherwise than fast with a 503 and a reason: {:?} after {:?}",
                            request.outcome, request.took
                        ));
                        break;
                    }
                }
            }
            Scenario::HangInstance => {
                if self.failed("b") > 0 {
                    out.push(format!("{} failed requests for B", self.failed("b")));
                }
                let detected = self.detection.map(|d| self.fault_at + d);
                match detected {
                    None => out.push("the hung instance was never taken out".into()),
                    Some(at) => {
                        let late = failures("a").filter(|r| r.started > at + Duration::from_millis(100)).count();
                        if late > 0 {
                            out.push(format!("{late} requests failed after the hung instance was detected"));
                        }
                    }
                }
            }
            // HAProxy itself goes away: only connection-level failures, while it is down or on
            // connections the old process closes.
            Scenario::ReloadHaproxy | Scenario::RestartHaproxy => {
                for request in &self.failures {
                    if !matches!(request.outcome, RequestOutcome::Closed | RequestOutcome::Refused) {
                        out.push(format!("a failure other than a closed or refused connection: {:?}", request.outcome));
                        break;
                    }
                }
            }
            // Everything else must cost nothing.
            _ => {
                let failed: usize = self.requests.values().map(|r| r.1).sum();
                if failed > 0 {
                    let kinds: Vec<String> = self.failures.iter().take(3).map(|r| format!("{:?}", r.outcome)).collect();
                    out.push(format!("{failed} failed requests ({})", kinds.join(", ")));
                }
            }
        }
        if let Some(detection) = self.detection
            && matches!(self.scenario, Scenario::KillInstance | Scenario::KillOnlyInstance | Scenario::HangInstance)
            && detection > detection_bound()
        {
            out.push(format!("detection took {detection:?}, over {:?}", detection_bound()));
        }
        out
    }
}

/// Runs one scenario on a sandbox that is in its full state.
pub fn run(sandbox: &mut Sandbox, scenario: Scenario) -> Outcome {
    wait::until("the full state before the scenario", wait::SECOND * 30, || sandbox.full_state().ok());
    std::thread::sleep(Duration::from_millis(500));
    let mark = sandbox.load.as_ref().map_or(0, |l| l.len());
    let fault_at = Instant::now();
    let mut detection = None;
    let mut out_of_rotation: Option<(String, Instant)> = None;
    let restored_at = match scenario {
        Scenario::KillInstance | Scenario::KillOnlyInstance => {
            let id = if scenario == Scenario::KillInstance { "a2" } else { "b1" };
            sandbox.instance_mut(id).sample.proc.kill();
            detection = out_time(sandbox, id, Duration::from_secs(10));
            std::thread::sleep(Duration::from_secs(1));
            let instance = sandbox.instance_mut(id);
            instance.sample = Sample::start_on(&instance.service, id, &[instance.port]);
            Instant::now()
        }
        Scenario::HangInstance => {
            sandbox.instance("a2").sample.proc.pause();
            detection = out_time(sandbox, "a2", Duration::from_secs(10));
            std::thread::sleep(Duration::from_secs(1));
            sandbox.instance("a2").sample.proc.resume();
            Instant::now()
        }
        Scenario::KillZkNode => {
            let leader = (0..sandbox.zookeeper.len()).find(|&i| sandbox.zookeeper.mode(i).as_deref() == Some("leader"));
            let node = leader.unwrap_or(0);
            sandbox.zookeeper.kill(node);
            std::thread::sleep(Duration::from_secs(3));
            sandbox.zookeeper.restart(node);
            sandbox.zookeeper.wait_serving();
            Instant::now()
        }
        Scenario::KillZkQuorum | Scenario::KillZkAll => {
            let count = if scenario == Scenario::KillZkAll { 3 } else { 2 };
            for node in 0..count {
                sandbox.zookeeper.kill(node);
            }
            std::thread::sleep(SESSION_TIMEOUT + Duration::from_secs(1));
            for node in 0..count {
                sandbox.zookeeper.restart(node);
            }
            sandbox.zookeeper.wait_serving();
            Instant::now()
        }
        Scenario::KillSpoa => {
            sandbox.spoa.proc.kill();
            std::thread::sleep(Duration::from_secs(2));
            sandbox.spoa.start_again();
            Instant::now()
        }
        Scenario::ReloadHaproxy => {
            let old = sandbox.haproxy.worker_pid();
            sandbox.haproxy.reload();
            wait::for_true("the new HAProxy worker", wait::SECOND * 10, || {
                sandbox.haproxy.worker_pid().is_some_and(|p| Some(p) != old)
            });
            Instant::now()
        }
        Scenario::RestartHaproxy => {
            // A restart as an operator does it: the state file axon-spoa keeps is loaded.
            sandbox.haproxy.restart();
            Instant::now()
        }
        Scenario::KillRegistrar | Scenario::StopRegistrar => {
            let registrar = &mut sandbox.instance_mut("a1").registrar;
            if scenario == Scenario::KillRegistrar {
                registrar.proc.kill();
            } else {
                registrar.terminate(wait::SECOND * 5);
            }
            out_of_rotation = out_time(sandbox, "a1", SESSION_TIMEOUT * 3).map(|d| ("a1".to_owned(), fault_at + d));
            std::thread::sleep(Duration::from_secs(1));
            sandbox.instance_mut("a1").registrar.start_again();
            Instant::now()
        }
        Scenario::Maintenance => {
            sandbox.instance("a1").registrar.maintenance(true, "a");
            out_of_rotation = out_time(sandbox, "a1", Duration::from_secs(10)).map(|d| ("a1".to_owned(), fault_at + d));
            std::thread::sleep(Duration::from_secs(2));
            sandbox.instance("a1").registrar.maintenance(false, "a");
            Instant::now()
        }
        Scenario::PartitionRegistrar => {
            for proxy in &sandbox.instance("a1").proxies {
                proxy.cut();
            }
            std::thread::sleep(SESSION_TIMEOUT + Duration::from_secs(2));
            for proxy in &sandbox.instance("a1").proxies {
                proxy.restore();
            }
            Instant::now()
        }
    };
    let mut waiting_on = None;
    let recovery = wait::timed(recovery_bound(scenario) + Duration::from_secs(10), || match sandbox.full_state() {
        Ok(()) => true,
        Err(missing) => {
            if restored_at.elapsed() > recovery_bound(scenario) && waiting_on.is_none() {
                waiting_on = Some(missing);
            }
            false
        }
    });
    std::thread::sleep(Duration::from_secs(1));
    let lost = settled(sandbox);
    let requests: Vec<Request> = sandbox.load.as_ref().map(|l| l.since(mark)).unwrap_or_default();
    let mut counts: BTreeMap<String, (usize, usize, usize)> =
        LAYOUT.iter().map(|(s, _)| ((*s).to_owned(), (0, 0, 0))).collect();
    for request in &requests {
        let entry = counts.entry(request.service.clone()).or_default();
        entry.0 += 1;
        if !request.outcome.ok() {
            entry.1 += 1;
        }
        if request.retried {
            entry.2 += 1;
        }
    }
    let mut slowest: BTreeMap<String, Duration> = BTreeMap::new();
    for request in &requests {
        let entry = slowest.entry(request.service.clone()).or_default();
        *entry = (*entry).max(request.took);
    }
    // Out of rotation: from a second after it left (its drain) until the restore.
    let served_while_out = out_of_rotation.map_or(0, |(id, out_at)| {
        requests
            .iter()
            .filter(|r| r.outcome == RequestOutcome::Served(id.clone()))
            .filter(|r| r.started > out_at + Duration::from_secs(1) && r.started + r.took < restored_at)
            .count()
    });
    Outcome {
        scenario,
        requests: counts,
        slowest,
        failures: requests.into_iter().filter(|r| !r.outcome.ok()).collect(),
        served_while_out,
        detection,
        recovery,
        lost,
        waiting_on,
        fault_at,
    }
}

/// How long until `id` is out of rotation in HAProxy (not ready, or down); callers call it
/// right after the fault.
fn out_time(sandbox: &mut Sandbox, id: &str, within: Duration) -> Option<Duration> {
    wait::timed(within, || !sandbox.haproxy_state(sandbox.instance(id)).starts_with("ready"))
}

/// After recovery: the full state must hold for a second, with one znode per instance.
fn settled(sandbox: &mut Sandbox) -> Option<String> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(1) {
        if let Err(missing) = sandbox.full_state() {
            return Some(missing);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// The results as a markdown table.
pub fn table(outcomes: &[Outcome]) -> String {
    let mut out = String::from(
        "| scenario | A: requests (failed) | B: requests (failed) | retried on a closed connection | slowest A / B | out of rotation after | back to full state after | lost |\n|---|---|---|---|---|---|---|---|\n",
    );
    for o in outcomes {
        let cell = |service: &str| {
            let (sent, failed, _) = o.requests.get(service).copied().unwrap_or_default();
            format!("{sent} ({failed})")
        };
        let ms = |d: Option<Duration>| d.map_or("-".to_owned(), |d| format!("{} ms", d.as_millis()));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} / {} | {} | {} | {} |",
            o.scenario.title(),
            cell("a"),
            cell("b"),
            o.retried(),
            ms(o.slowest.get("a").copied()),
            ms(o.slowest.get("b").copied()),
            ms(o.detection),
            ms(o.recovery),
            o.lost.as_deref().unwrap_or("nothing")
        );
    }
    out
}
