//! Fuzzes the URLs a request is keyed, invalidated and routed by: `corral_http::fuzzing::request_url`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| corral_http::fuzzing::request_url(data));
