//! What one run covers, read from the environment: `FRAMING_SEED` (decimal or `0x…`
//! hex; a fixed default, so CI is deterministic), `FRAMING_CASES` (how many cases),
//! `FRAMING_CASE` (just that case), `FRAMING_MAX_FAILURES` (stop once that many cases
//! failed).

use std::ops::Range;

/// The seed when `FRAMING_SEED` is unset.
pub(crate) const DEFAULT_SEED: u64 = 0xF4A3_1A6C_5EED_2024;

/// The cases run when `FRAMING_CASES` is unset: about five seconds in a debug build
/// on two cores.
pub(crate) const DEFAULT_CASES: u64 = 1500;

/// How many failing cases end a run early when `FRAMING_MAX_FAILURES` is unset.
pub(crate) const DEFAULT_MAX_FAILURES: usize = 3;

/// One run's seed and cases.
pub(crate) struct Settings {
    pub seed: u64,
    pub cases: Range<u64>,
    pub max_failures: usize,
}

fn number(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    let text = text.trim();
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(&hex.replace('_', ""), 16),
        None => text.replace('_', "").parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={text} is not a number")))
}

impl Settings {
    pub(crate) fn from_env() -> Settings {
        let cases = match number("FRAMING_CASE") {
            Some(case) => case..case + 1,
            None => 0..number("FRAMING_CASES").unwrap_or(DEFAULT_CASES),
        };
        Settings {
            seed: number("FRAMING_SEED").unwrap_or(DEFAULT_SEED),
            cases,
            max_failures: number("FRAMING_MAX_FAILURES")
                .map_or(DEFAULT_MAX_FAILURES, |n| n as usize),
        }
    }
}
