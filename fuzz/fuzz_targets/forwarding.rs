//! Fuzzes `Via` and `X-Forwarded-For` as the proxy reads and writes them: `corral_proxy::fuzzing::forwarding`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| corral_proxy::fuzzing::forwarding(data));
