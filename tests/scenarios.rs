//! The crash experiment (src/scenario.rs) as a test: the sandbox under continuous load through
//! HAProxy, every scenario injected and restored in turn, and what must hold checked for each
//! (see `Outcome::violations`): zero failed requests through ZooKeeper failures, axon-spoa's
//! crash, graceful drain and maintenance; only connection-level failures when HAProxy itself
//! goes away; dead or hung instances costing nothing once detected; the full state back within
//! the session timeout plus two seconds (one second for HAProxy); nothing lost for good; and no
//! process left running afterwards.

use std::time::Duration;

use axon::harness::wait;
use axon::sandbox::Sandbox;
use axon::scenario::{self, Scenario};

/// Processes whose parent is this test process.
fn children() -> Vec<String> {
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) else { continue };
        if after.split_whitespace().nth(1) == Some(me.as_str()) {
            found.push(stat[..stat.rfind(')').unwrap_or(0) + 1].to_owned());
        }
    }
    found
}

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
    if wait::timed(Duration::from_secs(10), || children().is_empty()).is_none() {
        violations.push(format!("processes left running: {:?}", children()));
    }
    assert!(violations.is_empty(), "what must hold did not:\n{}\n\n{table}", violations.join("\n"));
    // The load really ran throughout: every scenario saw requests for both services.
    for outcome in &outcomes {
        for (service, (sent, _, _)) in &outcome.requests {
            assert!(*sent > 100, "{}: only {sent} requests for {service}", outcome.scenario.title());
        }
    }
}
