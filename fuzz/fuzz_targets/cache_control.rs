//! Fuzzes `Cache-Control` directives and their normal form: `corral_http::fuzzing::cache_control`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| corral_http::fuzzing::cache_control(data));
