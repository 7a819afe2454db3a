//! Fuzzes stored responses as they come back from Redis or from disk: `corral_http::fuzzing::stored_response`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| corral_http::fuzzing::stored_response(data));
