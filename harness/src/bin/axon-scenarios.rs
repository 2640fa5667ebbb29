//! `axon-scenarios [name…]`: starts the sandbox, runs the crash scenarios (all, or those
//! named) under load, and prints a markdown table of the results.

use axon_harness::sandbox::Sandbox;
use axon_harness::scenario::{self, Scenario};

fn main() {
    let names: Vec<String> = std::env::args().skip(1).collect();
    let scenarios: Vec<Scenario> = if names.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        names
            .iter()
            .map(|n| {
                Scenario::from_name(n).unwrap_or_else(|| {
                    let known: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
                    eprintln!("axon-scenarios: no scenario {n:?} (scenarios: {})", known.join(", "));
                    std::process::exit(2)
                })
            })
            .collect()
    };
    eprintln!("starting the sandbox…");
    let mut sandbox = Sandbox::start();
    let mut outcomes = Vec::new();
    for scenario in scenarios {
        eprintln!("{}…", scenario.title());
        let outcome = scenario::run(&mut sandbox, scenario);
        for violation in outcome.violations() {
            eprintln!("  ! {violation}");
        }
        outcomes.push(outcome);
    }
    drop(sandbox);
    println!("{}", scenario::table(&outcomes));
    let broken = outcomes.iter().filter(|o| !o.violations().is_empty()).count();
    if broken > 0 {
        eprintln!("{broken} scenario(s) broke what must hold");
        std::process::exit(1);
    }
}
