//! Fuzzes the disk tier's files, purge list and index: `corral::fuzzing::disk_tier`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| corral::fuzzing::disk_tier(data));
