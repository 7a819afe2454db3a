//! Fuzzes the forward proxy's allow-list: `corral_proxy::fuzzing::allow_list`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| corral_proxy::fuzzing::allow_list(data));
