//! The crash experiment (harness/src/scenario.rs) as a test: the sandbox under continuous load through
//! HAProxy, every scenario injected and restored in turn, and what must hold checked for each
//! (see `Outcome::violations`): zero failed requests through ZooKeeper failures, axon-spoa's
//! crash, graceful drain and maintenance; only connection-level failures when HAProxy itself
//! goes away; dead or hung instances costing nothing once detected; every fault seen to take
//! effect within its bound (an instance out of rotation, the leader gone, a session expired);
//! the full state back within the session timeout plus two seconds (one second for HAProxy);
//! a probe change followed after ZooKeeper and axon-spoa faults; nothing lost for good; and no
//! process left running afterwards, however deep (every process the harness starts is marked).

use std::time::Duration;

use axon_harness::sandbox::Sandbox;
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
    drop(sandbox);
    let table = scenario::table(&outcomes);
    eprintln!("{table}");
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
