//! Fuzzes the response fields the cache reads (`Vary`, `Content-Length`, `Age`, `Connection`, `Cache-Control` as the policy reads it): `corral_http::fuzzing::response_headers`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| corral_http::fuzzing::response_headers(data));
