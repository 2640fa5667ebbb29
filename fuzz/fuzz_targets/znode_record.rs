//! Arbitrary bytes as a znode's data and as a child's name.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    axon_record::fuzz(data);
});
