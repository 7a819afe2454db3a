//! Fuzzes the Redis tier's value records and pub/sub events: `corral::fuzzing::redis_tier`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| corral::fuzzing::redis_tier(data));
