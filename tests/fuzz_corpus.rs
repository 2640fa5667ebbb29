//! Replays the fuzz targets' corpus (fuzz/corpus/<target>/), so that every input the fuzzers
//! found interesting stays a regression test without a fuzzer installed. `make fuzz` grows it.

use axon::harness::bins;

fn replay(target: &str, run: impl Fn(&[u8])) -> usize {
    let dir = bins::workspace_root().join("fuzz/corpus").join(target);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        run(&data);
        count += 1;
    }
    count
}

#[test]
fn spop_agent_corpus() {
    let count = replay("spop_agent", axon_spoa::fuzzing::agent_stream);
    assert!(count >= 7, "{count} inputs");
}

#[test]
fn znode_record_corpus() {
    let count = replay("znode_record", axon_core::record::fuzz);
    assert!(count >= 4, "{count} inputs");
}
