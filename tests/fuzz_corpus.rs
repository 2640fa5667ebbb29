//! Replays the fuzz targets' corpus (fuzz/corpus/<target>/), so that every input the fuzzers
//! found interesting stays a regression test without a fuzzer installed. `make fuzz` grows it
//! (and minimises it: the floors below are a little under what is committed, so a corpus lost
//! or emptied fails here). Each replay also counts how far the inputs got, so a decoder that
//! rejected everything early would fail too.

use axon_harness::bins;

fn replay<T>(target: &str, run: impl Fn(&[u8]) -> T) -> Vec<T> {
    let dir = bins::workspace_root().join("fuzz/corpus").join(target);
    let mut results = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        results.push(run(&data));
    }
    results
}

#[test]
fn spop_agent_corpus() {
    let reached = replay("spop_agent", axon_spoa::fuzzing::agent_stream);
    assert!(reached.len() >= 350, "{} inputs", reached.len());
    // Inputs that get past HELLO and have NOTIFYs answered: the handler's paths are replayed.
    let answered = reached.iter().filter(|r| r.acks > 0).count();
    let decoded = reached.iter().filter(|r| r.frames > 0).count();
    assert!(answered >= 100 && decoded >= 330, "{answered} inputs answered, {decoded} decoded, of {}", reached.len());
}

#[test]
fn znode_record_corpus() {
    let parsed = replay("znode_record", axon_record::fuzz);
    assert!(parsed.len() >= 1200, "{} inputs", parsed.len());
    let records = parsed.iter().filter(|p| **p).count();
    // Most of the corpus is the fuzzer's malformed input, kept for the error paths it reaches.
    assert!(records >= 10, "{records} of {} inputs parse as records", parsed.len());
}
