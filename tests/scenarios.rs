//! The crash experiment (harness/src/scenario.rs) as a test: the sandbox under continuous load through
//! HAProxy, every scenario injected and restored in turn, and what must hold checked for each
//! (see `Outcome::violations`): zero failed requests through ZooKeeper failures, axon-spoa's
//! crash, graceful drain and maintenance; only connection-level failures when HAProxy itself
//! goes away; dead or hung instances costing nothing once detected; every fault seen to take
//! effect within its bound (an instance out of rotation, the leader gone, a session expired);
//! the full state back within the session timeout plus two seconds (one second for HAProxy);
//! a probe change followed after ZooKeeper and axon-spoa faults; nothing lost for good; and no
//! process left running afterwards, however deep (every process the harness starts is marked).
//! Then, on the same sandbox, every key of its live view: each fault injected, seen, undone.

use std::time::Duration;

use axon_harness::sandbox::{KEYS, Sandbox};
use axon_harness::scenario::{self, Scenario};
use axon_harness::{process, wait};

#[test]
fn crash_scenarios_under_load() {
    let mut sandbox = Sandbox::start();
    let mut outcomes = Vec::new();
    for scenario in Scenario::ALL {
        eprintln!("{}", scenario.title());
        outcomes.push(scenario::run(&mut sandbox, scenario));
    }
    let table = scenario::table(&outcomes);
    eprintln!("{table}");
    live_view_keys(&mut sandbox);
    drop(sandbox);
    let mut violations: Vec<String> = outcomes
        .iter()
        .flat_map(|o| o.violations().into_iter().map(move |v| format!("{}: {v}", o.scenario.title())))
        .collect();
    if wait::timed(Duration::from_secs(10), || process::leftovers().is_empty()).is_none() {
        violations.push(format!("processes left running: {:?}", process::leftovers()));
    }
    assert!(violations.is_empty(), "what must hold did not:\n{}\n\n{table}", violations.join("\n"));
    // The load really ran throughout: every scenario saw requests for both services.
    for outcome in &outcomes {
        for (service, counts) in &outcome.requests {
            assert!(counts.sent > 100, "{}: only {} requests for {service}", outcome.scenario.title(), counts.sent);
        }
    }
}

/// The sandbox's live-view keys, on the same sandbox: each injects its fault, whose effect is
/// seen, and pressed again (or, for the leader, the quorum key) undoes it, after which the full
/// state comes back.
fn live_view_keys(sandbox: &mut Sandbox) {
    let mut tried = Vec::new();
    for key in ['1', '2', '3'] {
        press(sandbox, key);
        seen("a ZooKeeper node down", 5, || zk_down(sandbox) == 1);
        press(sandbox, key);
        // Serving again before the next node goes: one fault at a time.
        seen("every ZooKeeper node serving", 30, || zk_down(sandbox) == 0);
        full(sandbox, key);
        tried.push(key);
    }
    press(sandbox, 'l');
    seen("the leader killed", 5, || zk_down(sandbox) == 1);
    press(sandbox, 'q');
    seen("every node down", 5, || zk_down(sandbox) == 3);
    press(sandbox, 'q');
    seen("every ZooKeeper node serving", 30, || zk_down(sandbox) == 0);
    full(sandbox, 'q');
    tried.extend(['l', 'q']);
    for (key, id) in [('k', "a2"), ('h', "a2"), ('b', "b1"), ('m', "a1")] {
        press(sandbox, key);
        seen(&format!("{id} out of rotation"), 5, || !sandbox.haproxy_state(sandbox.instance(id)).starts_with("ready"));
        press(sandbox, key);
        full(sandbox, key);
        tried.push(key);
    }
    for key in ['t', 'x'] {
        press(sandbox, key);
        seen("a1 without a znode", 10, || sandbox.registrations().ok().and_then(|r| r.get("a1").copied()) == Some(0));
        press(sandbox, key);
        full(sandbox, key);
        tried.push(key);
    }
    for key in ['r', 'R'] {
        let before = haproxy_pid(sandbox);
        press(sandbox, key);
        seen("a new HAProxy worker", 5, || haproxy_pid(sandbox).is_some_and(|pid| Some(&pid) != before.as_ref()));
        full(sandbox, key);
        tried.push(key);
    }
    press(sandbox, 's');
    full(sandbox, 's');
    tried.push('s');
    let untried: Vec<char> = KEYS.iter().map(|(k, _)| *k).filter(|k| !tried.contains(k)).collect();
    assert!(untried.is_empty(), "keys not tried: {untried:?}");
}

fn press(sandbox: &mut Sandbox, key: char) {
    let done = sandbox.press(key).unwrap_or_else(|| panic!("key {key:?} did nothing"));
    eprintln!("key {key:?}: {done}");
}

fn seen(what: &str, within_secs: u64, condition: impl FnMut() -> bool) {
    assert!(
        wait::timed(Duration::from_secs(within_secs), condition).is_some(),
        "{what}: not seen within {within_secs} s"
    );
}

/// The full state back (the same bound as the scenarios' slowest recovery, with margin).
fn full(sandbox: &mut Sandbox, key: char) {
    if wait::timed(Duration::from_secs(20), || sandbox.full_state().is_ok()).is_none() {
        panic!("no full state after key {key:?}: {:?}", sandbox.full_state());
    }
}

/// ZooKeeper nodes down, as the live view shows them.
fn zk_down(sandbox: &Sandbox) -> usize {
    sandbox.zookeeper_modes().iter().filter(|m| *m == "down").count()
}

/// HAProxy's worker pid, as the live view shows it (none while it is down).
fn haproxy_pid(sandbox: &mut Sandbox) -> Option<String> {
    let view = sandbox.view();
    let pid = view.lines().find_map(|l| l.strip_prefix("HAProxy pid "))?.split_whitespace().next()?;
    pid.parse::<u32>().is_ok().then(|| pid.to_owned())
}
