//! The crash experiment: faults injected into a running [`Sandbox`] under continuous load,
//! restored, and measured. `axon-scenarios` prints the results; tests/scenarios.rs runs the same
//! code and asserts what must hold ([`Outcome::violations`]).
//!
//! Each scenario starts from the full state (every instance registered once and ready in
//! HAProxy), injects its fault, checks that the fault took effect (an instance out of rotation,
//! a session expired, the leader gone…) and bounds how long that took, holds it, restores, and
//! waits for the full state again. Meanwhile the state is polled, so a scenario that never
//! lost the full state says so rather than timing one poll. After each ZooKeeper or axon-spoa
//! fault a probe change (a1 into maintenance and back) is timed into HAProxy, to show that
//! axon-spoa follows ZooKeeper again. The requests counted are those in flight at the fault or
//! started before one second after the recovery, each waited for up to the request timeout.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::load::{Outcome as RequestOutcome, Request};
use crate::sample::Sample;
use crate::sandbox::{CHECK_FALL, CHECK_INTERVAL, LAYOUT, SESSION_TIMEOUT, Sandbox, State};
use crate::wait;

/// The faults, in the experiment's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// 1. An instance of A killed (SIGKILL), then restarted.
    KillInstance,
    /// 2. B's only instance killed, then restarted.
    KillOnlyInstance,
    /// 3. The ZooKeeper leader killed, then restarted.
    KillZkNode,
    /// 4. Two ZooKeeper nodes killed (quorum lost) longer than the session timeout, then restarted.
    KillZkQuorum,
    /// 5. Every ZooKeeper node killed, then restarted.
    KillZkAll,
    /// 6. axon-spoa killed, then restarted.
    KillSpoa,
    /// 7a. HAProxy reloaded (SIGUSR2).
    ReloadHaproxy,
    /// 7b. HAProxy stopped and started again without its state file: axon-spoa refills it.
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
            Scenario::RestartHaproxy => "7b. HAProxy restarted without its state file",
            Scenario::KillRegistrar => "8a. registrar of a1 killed (SIGKILL), restarted",
            Scenario::StopRegistrar => "8b. registrar of a1 stopped (SIGTERM), restarted",
            Scenario::Maintenance => "9. a1 in maintenance, then back",
            Scenario::PartitionRegistrar => "10. registrar of a1 cut off from ZooKeeper, reconnected",
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

    /// The instance the fault takes out of rotation, if it takes one out.
    fn victim(self) -> Option<&'static str> {
        match self {
            Scenario::KillInstance | Scenario::HangInstance => Some("a2"),
            Scenario::KillOnlyInstance => Some("b1"),
            Scenario::KillRegistrar
            | Scenario::StopRegistrar
            | Scenario::Maintenance
            | Scenario::PartitionRegistrar => Some("a1"),
            _ => None,
        }
    }

    /// How soon the victim must be out of rotation.
    pub fn detection_bound(self) -> Option<Duration> {
        match self {
            Scenario::KillInstance | Scenario::KillOnlyInstance | Scenario::HangInstance => {
                Some(instance_detection_bound())
            }
            // Deregistered at once (SIGTERM) or within one check interval (maintenance), then
            // read and applied.
            Scenario::StopRegistrar | Scenario::Maintenance => Some(Duration::from_secs(1)),
            // The session must expire first: its timeout, ZooKeeper's expiry tick, propagation.
            Scenario::KillRegistrar => Some(SESSION_TIMEOUT + Duration::from_millis(1500)),
            // The same, counted from the cut: the registrar's last heartbeat came just before.
            Scenario::PartitionRegistrar => Some(SESSION_TIMEOUT + Duration::from_secs(2)),
            _ => None,
        }
    }

    /// Whether the probe change is timed afterwards: after ZooKeeper and axon-spoa faults.
    fn probes(self) -> bool {
        matches!(self, Scenario::KillZkNode | Scenario::KillZkQuorum | Scenario::KillZkAll | Scenario::KillSpoa)
    }
}

/// Requests per service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub sent: usize,
    pub failed: usize,
    /// Failed, or would have without the client's re-send on a fresh connection.
    pub failed_without_resend: usize,
}

/// A probe change's times into HAProxy.
#[derive(Debug, Clone, Copy, Default)]
pub struct Probe {
    /// From a1's maintenance on to a1 out of rotation.
    pub out: Option<Duration>,
    /// From maintenance off to a1 ready again.
    pub back: Option<Duration>,
}

/// What a scenario did to the load and to the system.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub scenario: Scenario,
    pub requests: BTreeMap<String, Counts>,
    /// Per service: the slowest request.
    pub slowest: BTreeMap<String, Duration>,
    /// The failed requests.
    pub failures: Vec<Request>,
    /// Requests HAProxy had in flight on the victim just before the fault (`scur`).
    pub in_flight_at_fault: Option<u64>,
    /// Requests served by the victim once it was out of rotation (must be none), and how long
    /// that window was.
    pub served_while_out: usize,
    pub out_window: Option<Duration>,
    /// From the fault to the victim out of rotation in HAProxy.
    pub detection: Option<Duration>,
    /// What the fault was seen to do.
    pub effects: Vec<String>,
    /// What the fault should have done and was not seen to do.
    pub missing_effects: Vec<String>,
    /// Whether the full state was lost at any poll from the fault to the recovery.
    pub state_lost: bool,
    /// From the restore (for HAProxy: from it answering again) to the full state.
    pub recovery: Option<Duration>,
    pub probe: Option<Probe>,
    /// What was lost for good, if anything.
    pub lost: Option<String>,
    /// What the full state still lacked when the recovery bound passed, if it did.
    pub waiting_on: Option<String>,
    /// When the fault was injected, and when the full state was back.
    pub fault_at: Instant,
    pub recovered_at: Instant,
}

/// What "failing fast" allows: HAProxy's retries (3) each after its turn-around of
/// min(timeout connect, 1 s) = 500 ms, then its queue timeout (200 ms) — never a read timeout.
pub const FAST: Duration = Duration::from_secs(2);
/// How long a fault that takes an instance out is held once it is out: the window in which
/// the instance must serve nothing.
const HOLD_OUT: Duration = Duration::from_secs(3);
/// Requests picked before the instance left may still be served by it, this long after.
const OUT_GRACE: Duration = Duration::from_millis(200);
/// The probe change must reach HAProxy within this.
const PROBE_BOUND: Duration = Duration::from_secs(2);
/// At least this many requests must be in flight on an instance killed or hung, or the
/// scenario tests nothing about requests caught mid-flight.
pub const MIN_IN_FLIGHT: u64 = 2;

/// How long after a restore the full state may take: the session timeout plus two seconds.
pub fn recovery_bound(scenario: Scenario) -> Duration {
    match scenario {
        Scenario::ReloadHaproxy | Scenario::RestartHaproxy => Duration::from_secs(1),
        _ => SESSION_TIMEOUT + Duration::from_secs(2),
    }
}

/// The bound on a dead or hung instance's time in rotation: its registrar's checks (interval ×
/// fall, each check up to its 300 ms timeout) or HAProxy's own (1 s × 2), whichever is first,
/// plus the propagation (500 ms).
pub fn instance_detection_bound() -> Duration {
    CHECK_INTERVAL * CHECK_FALL + Duration::from_millis(300 * u64::from(CHECK_FALL)) + Duration::from_millis(500)
}

impl Outcome {
    pub fn failed(&self, service: &str) -> usize {
        self.requests.get(service).map_or(0, |r| r.failed)
    }

    /// What must hold for this scenario and does not, one line each.
    pub fn violations(&self) -> Vec<String> {
        let mut out = self.missing_effects.clone();
        let bound = recovery_bound(self.scenario);
        match self.recovery {
            None if self.state_lost => out.push(format!("never back to the full state (bound {bound:?})")),
            Some(took) if took > bound => out.push(format!(
                "back to the full state after {took:?}, over {bound:?} (then lacking: {})",
                self.waiting_on.as_deref().unwrap_or("?")
            )),
            _ => {}
        }
        if let Some(lost) = &self.lost {
            out.push(format!("lost for good: {lost}"));
        }
        if self.served_while_out > 0 {
            out.push(format!("{} requests served by an instance out of rotation", self.served_while_out));
        }
        if let (Some(bound), Some(_)) = (self.scenario.detection_bound(), self.scenario.victim()) {
            match self.detection {
                None => out.push(format!("the victim never left rotation (bound {bound:?})")),
                Some(took) if took > bound => out.push(format!("out of rotation after {took:?}, over {bound:?}")),
                Some(_) => {}
            }
        }
        if matches!(self.scenario, Scenario::KillInstance | Scenario::KillOnlyInstance | Scenario::HangInstance)
            && self.in_flight_at_fault.is_none_or(|n| n < MIN_IN_FLIGHT)
        {
            out.push(format!(
                "{:?} requests in flight on the victim at the fault, fewer than {MIN_IN_FLIGHT}: nothing caught mid-flight",
                self.in_flight_at_fault
            ));
        }
        if let Some(probe) = self.probe {
            match (probe.out, probe.back) {
                (Some(o), Some(b)) if o <= PROBE_BOUND && b <= PROBE_BOUND => {}
                _ => out.push(format!("the probe change was not followed within {PROBE_BOUND:?}: {probe:?}")),
            }
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
                // Fast: at most the retries' turn-around for a request caught as the instance
                // died, then at once; and a 503 saying why.
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
                if let Some(detected) = self.detection.map(|d| self.fault_at + d) {
                    let late = failures("a").filter(|r| r.started > detected + Duration::from_millis(100)).count();
                    if late > 0 {
                        out.push(format!("{late} requests failed after the hung instance was detected"));
                    }
                }
            }
            // HAProxy itself goes away: only connection-level failures, while it is down or on
            // connections the old process closes; after a restart without its state file,
            // also "no server available" until axon-spoa has refilled the slots.
            Scenario::ReloadHaproxy | Scenario::RestartHaproxy => {
                for request in &self.failures {
                    let refilling = self.scenario == Scenario::RestartHaproxy
                        && request.started <= self.recovered_at
                        && matches!(&request.outcome, RequestOutcome::Status(503, Some(r)) if r == "no_server_available");
                    if !refilling && !matches!(request.outcome, RequestOutcome::Closed | RequestOutcome::Refused) {
                        out.push(format!("a failure other than a closed or refused connection: {:?}", request.outcome));
                        break;
                    }
                }
            }
            // Everything else must cost nothing.
            _ => {
                let failed: usize = self.requests.values().map(|r| r.failed).sum();
                if failed > 0 {
                    let kinds: Vec<String> = self.failures.iter().take(3).map(|r| format!("{:?}", r.outcome)).collect();
                    out.push(format!("{failed} failed requests ({})", kinds.join(", ")));
                }
            }
        }
        out
    }
}

/// Polls the state while a fault is held, remembering whether the full state was ever lost.
struct Watch {
    lost: bool,
}

impl Watch {
    /// Holds for `duration`, polling the state every 100 ms.
    fn hold(&mut self, sandbox: &mut Sandbox, duration: Duration) {
        let until = Instant::now() + duration;
        while Instant::now() < until {
            self.poll(sandbox);
            std::thread::sleep(Duration::from_millis(100).min(until.saturating_duration_since(Instant::now())));
        }
    }

    fn poll(&mut self, sandbox: &mut Sandbox) -> State {
        let state = sandbox.state();
        if matches!(state, State::Lacking(_)) {
            self.lost = true;
        }
        state
    }

    /// Polls until `done` (checked each 50 ms) or `within`; how long it took.
    fn until(
        &mut self,
        sandbox: &mut Sandbox,
        within: Duration,
        mut done: impl FnMut(&mut Sandbox) -> bool,
    ) -> Option<Duration> {
        let start = Instant::now();
        let mut last_poll = start;
        loop {
            if done(sandbox) {
                return Some(start.elapsed());
            }
            if start.elapsed() > within {
                return None;
            }
            if last_poll.elapsed() >= Duration::from_millis(200) {
                self.poll(sandbox);
                last_poll = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Whether `id` is out of rotation in HAProxy (not ready, or down).
fn is_out(sandbox: &Sandbox, id: &str) -> bool {
    !sandbox.haproxy_state(sandbox.instance(id)).starts_with("ready")
}

/// The registrar of `id`: its expiry count and session id.
fn registrar_session(sandbox: &Sandbox, id: &str) -> (f64, String) {
    let registrar = &sandbox.instance(id).registrar;
    let expiries = registrar.metric("axon_registrar_zk_expiries_total");
    let session = registrar.try_status().and_then(|s| s["zookeeper"]["session_id"].as_str().map(str::to_owned));
    (expiries, session.unwrap_or_default())
}

/// Runs one scenario on a sandbox that is in its full state.
pub fn run(sandbox: &mut Sandbox, scenario: Scenario) -> Outcome {
    wait::until("the full state before the scenario", wait::SECOND * 30, || sandbox.full_state().ok());
    std::thread::sleep(Duration::from_millis(500));
    let mut watch = Watch { lost: false };
    let (mut effects, mut missing_effects) = (Vec::new(), Vec::new());
    let mut detection = None;
    let victim = scenario.victim();
    let in_flight_at_fault = match scenario {
        Scenario::KillInstance | Scenario::KillOnlyInstance | Scenario::HangInstance => victim.and_then(|id| {
            let instance = sandbox.instance(id);
            let (service, addr) = (instance.service.clone(), format!("127.0.0.1:{}", instance.port));
            // The fault strikes at a moment requests are in flight on the victim (the slow
            // clients' make that most moments); the verdict checks how many there were.
            let mut seen = None;
            wait::timed(Duration::from_secs(3), || {
                seen = sandbox.haproxy.sessions_on(&service, &addr);
                seen.is_some_and(|n| n >= MIN_IN_FLIGHT)
            });
            seen
        }),
        _ => None,
    };
    let fault_at = Instant::now();
    // Waits for the victim to leave rotation, within its bound and a margin (the verdict
    // compares with the bound).
    let mut leave = |sandbox: &mut Sandbox, watch: &mut Watch, id: &str| {
        let within = scenario.detection_bound().unwrap_or(Duration::from_secs(10)) + Duration::from_secs(5);
        let took = watch.until(sandbox, within, |s| is_out(s, id)).map(|_| fault_at.elapsed());
        detection = took;
        took
    };
    let mut out_at = None;
    let restored_at = match scenario {
        Scenario::KillInstance | Scenario::KillOnlyInstance => {
            let id = victim.unwrap_or_default();
            sandbox.instance_mut(id).sample.proc.kill();
            leave(sandbox, &mut watch, id);
            watch.hold(sandbox, Duration::from_secs(1));
            let instance = sandbox.instance_mut(id);
            instance.sample = Sample::start_on(&instance.service, id, &[instance.port]);
            Instant::now()
        }
        Scenario::HangInstance => {
            sandbox.instance("a2").sample.proc.pause();
            leave(sandbox, &mut watch, "a2");
            watch.hold(sandbox, Duration::from_secs(1));
            sandbox.instance("a2").sample.proc.resume();
            Instant::now()
        }
        Scenario::KillZkNode => {
            let leader = (0..sandbox.zookeeper.len()).find(|&i| sandbox.zookeeper.mode(i).as_deref() == Some("leader"));
            match leader {
                Some(node) => {
                    effects.push(format!("leader node {} killed", node + 1));
                    sandbox.zookeeper.kill(node);
                    watch.hold(sandbox, Duration::from_secs(3));
                    let new_leader =
                        (0..sandbox.zookeeper.len()).find(|&i| sandbox.zookeeper.mode(i).as_deref() == Some("leader"));
                    effects.push(format!(
                        "new leader: {}",
                        new_leader.map_or("none".into(), |n| format!("node {}", n + 1))
                    ));
                    sandbox.zookeeper.restart(node);
                    sandbox.zookeeper.wait_serving();
                }
                None => missing_effects.push("no ZooKeeper node said it was the leader: nothing killed".into()),
            }
            Instant::now()
        }
        Scenario::KillZkQuorum | Scenario::KillZkAll => {
            let count = if scenario == Scenario::KillZkAll { 3 } else { 2 };
            for node in 0..count {
                sandbox.zookeeper.kill(node);
            }
            watch.hold(sandbox, Duration::from_secs(1));
            let serving = (0..sandbox.zookeeper.len()).filter(|&i| sandbox.zookeeper.mode(i).is_some()).count();
            if serving == 0 {
                effects.push("no node serving".into());
            } else {
                missing_effects.push(format!("{serving} ZooKeeper node(s) still serving after the kill"));
            }
            watch.hold(sandbox, SESSION_TIMEOUT);
            for node in 0..count {
                sandbox.zookeeper.restart(node);
            }
            sandbox.zookeeper.wait_serving();
            Instant::now()
        }
        Scenario::KillSpoa => {
            sandbox.spoa.proc.kill();
            watch.hold(sandbox, Duration::from_secs(2));
            sandbox.spoa.start_again();
            Instant::now()
        }
        Scenario::ReloadHaproxy => {
            let old = sandbox.haproxy.worker_pid();
            sandbox.haproxy.reload();
            wait::for_true("the new HAProxy worker", wait::SECOND * 10, || {
                sandbox.haproxy.worker_pid().is_some_and(|p| Some(p) != old)
            });
            effects.push("new worker".into());
            Instant::now()
        }
        Scenario::RestartHaproxy => {
            // Without the state file, HAProxy comes back with every slot empty: only
            // axon-spoa's resync can refill them.
            let _ = std::fs::remove_file(sandbox.haproxy.state_file());
            sandbox.haproxy.restart();
            let ready: usize = LAYOUT.iter().map(|(s, _)| sandbox.haproxy.ready_servers(s).len()).sum();
            effects.push(format!("{ready} servers ready as HAProxy answered"));
            Instant::now()
        }
        Scenario::KillRegistrar | Scenario::StopRegistrar | Scenario::Maintenance => {
            match scenario {
                Scenario::KillRegistrar => sandbox.instance_mut("a1").registrar.proc.kill(),
                Scenario::StopRegistrar => {
                    sandbox.instance_mut("a1").registrar.terminate(wait::SECOND * 5);
                }
                _ => sandbox.instance("a1").registrar.maintenance(true, "a"),
            }
            if leave(sandbox, &mut watch, "a1").is_some() {
                out_at = Some(Instant::now());
                watch.hold(sandbox, HOLD_OUT);
            }
            match scenario {
                Scenario::Maintenance => sandbox.instance("a1").registrar.maintenance(false, "a"),
                _ => sandbox.instance_mut("a1").registrar.start_again(),
            }
            Instant::now()
        }
        Scenario::PartitionRegistrar => {
            let (expiries, session) = registrar_session(sandbox, "a1");
            for proxy in &sandbox.instance("a1").proxies {
                proxy.cut();
            }
            if leave(sandbox, &mut watch, "a1").is_some() {
                out_at = Some(Instant::now());
                effects.push("a1 out of rotation during the cut".into());
                watch.hold(sandbox, HOLD_OUT);
            }
            for proxy in &sandbox.instance("a1").proxies {
                proxy.restore();
            }
            let restored = Instant::now();
            // Once reconnected, the registrar must have noticed its expiry and opened a new
            // session (checked within the recovery bound).
            let renewed = wait::timed(recovery_bound(scenario), || {
                let (now_expiries, now_session) = registrar_session(sandbox, "a1");
                now_expiries > expiries && !now_session.is_empty() && now_session != session
            });
            let (now_expiries, now_session) = registrar_session(sandbox, "a1");
            match renewed {
                Some(_) => effects.push(format!("session {session} expired ({expiries} → {now_expiries}), new {now_session}")),
                None => missing_effects.push(format!(
                    "the registrar's session did not expire and renew: expiries {expiries} → {now_expiries}, session {session} → {now_session}"
                )),
            }
            restored
        }
    };
    let mut waiting_on = None;
    let recovery = watch.until(sandbox, recovery_bound(scenario) + Duration::from_secs(10), |s| match s.state() {
        State::Full => true,
        State::Lacking(missing) | State::Unknown(missing) => {
            if restored_at.elapsed() > recovery_bound(scenario) && waiting_on.is_none() {
                waiting_on = Some(missing);
            }
            false
        }
    });
    let recovered_at = Instant::now();
    // The restore time is the baseline: a recovery after an unlost state is reported as such.
    let recovery = recovery.map(|_| recovered_at.duration_since(restored_at));
    let state_lost = watch.lost || scenario == Scenario::RestartHaproxy;
    let probe = scenario.probes().then(|| probe(sandbox));
    let lost = settled(sandbox);
    let window_end = recovered_at + Duration::from_secs(1);
    let requests: Vec<Request> = sandbox.load.as_ref().map(|l| l.window(fault_at, window_end)).unwrap_or_default();
    let mut counts: BTreeMap<String, Counts> =
        LAYOUT.iter().map(|(s, _)| ((*s).to_owned(), Counts::default())).collect();
    for request in &requests {
        let entry = counts.entry(request.service.clone()).or_default();
        entry.sent += 1;
        entry.failed += usize::from(!request.outcome.ok());
        entry.failed_without_resend += usize::from(request.failed_without_resend());
    }
    let mut slowest: BTreeMap<String, Duration> = BTreeMap::new();
    for request in &requests {
        let entry = slowest.entry(request.service.clone()).or_default();
        *entry = (*entry).max(request.took);
    }
    // Out of rotation: from shortly after it left until the restore.
    let (served_while_out, out_window) = match (out_at, victim) {
        (Some(out_at), Some(id)) => {
            let from = out_at + OUT_GRACE;
            let served = requests
                .iter()
                .filter(|r| r.outcome == RequestOutcome::Served(id.to_owned()))
                .filter(|r| r.started > from && r.finished() < restored_at)
                .count();
            (served, Some(restored_at.saturating_duration_since(from)))
        }
        _ => (0, None),
    };
    Outcome {
        scenario,
        requests: counts,
        slowest,
        failures: requests.into_iter().filter(|r| !r.outcome.ok()).collect(),
        in_flight_at_fault,
        served_while_out,
        out_window,
        detection,
        effects,
        missing_effects,
        state_lost,
        recovery: if state_lost { recovery } else { None },
        probe,
        lost,
        waiting_on,
        fault_at,
        recovered_at,
    }
}

/// The probe change: a1 into maintenance (out of rotation in HAProxy), then back.
fn probe(sandbox: &mut Sandbox) -> Probe {
    let registrar = &sandbox.instance("a1").registrar;
    registrar.maintenance(true, "a");
    let out = wait::timed(PROBE_BOUND + Duration::from_secs(5), || is_out(sandbox, "a1"));
    sandbox.instance("a1").registrar.maintenance(false, "a");
    let back = wait::timed(PROBE_BOUND + Duration::from_secs(5), || !is_out(sandbox, "a1"));
    Probe { out, back }
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
        "| scenario | A: requests (failed; without re-send) | B: requests (failed; without re-send) | in flight on the victim | slowest A / B | out of rotation after | served while out | full state | probe out / back | what the fault did | lost |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for o in outcomes {
        let cell = |service: &str| {
            let c = o.requests.get(service).copied().unwrap_or_default();
            format!("{} ({}; {})", c.sent, c.failed, c.failed_without_resend)
        };
        let ms = |d: Option<Duration>| d.map_or("-".to_owned(), |d| format!("{} ms", d.as_millis()));
        let full = match (o.state_lost, o.recovery) {
            (false, _) => "never lost".to_owned(),
            (true, Some(d)) => format!("back after {} ms", d.as_millis()),
            (true, None) => "not back".to_owned(),
        };
        let served =
            o.out_window.map_or("-".to_owned(), |w| format!("{} in {:.1} s", o.served_while_out, w.as_secs_f64()));
        let probe = o.probe.map_or("-".to_owned(), |p| format!("{} / {}", ms(p.out), ms(p.back)));
        let did: Vec<&str> = o.effects.iter().chain(&o.missing_effects).map(String::as_str).collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} / {} | {} | {} | {} | {} | {} | {} |",
            o.scenario.title(),
            cell("a"),
            cell("b"),
            o.in_flight_at_fault.map_or("-".to_owned(), |n| n.to_string()),
            ms(o.slowest.get("a").copied()),
            ms(o.slowest.get("b").copied()),
            ms(o.detection),
            served,
            full,
            probe,
            if did.is_empty() { "-".to_owned() } else { did.join("; ") },
            o.lost.as_deref().unwrap_or("nothing")
        );
    }
    out
}
