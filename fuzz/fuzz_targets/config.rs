//! Fuzzes the proxy's configuration and sizes: `corral_proxy::fuzzing::config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| corral_proxy::fuzzing::config(data));
