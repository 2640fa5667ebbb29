//! Arbitrary bytes as an SPOP connection's input, through the codec, the agent's state machine
//! and the route handler.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    axon_spoa::fuzzing::agent_stream(data);
});
