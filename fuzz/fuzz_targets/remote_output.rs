//! The parsers of what hosts answer never panic, whatever a host (or a broken one) prints.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = shipit::provision::plan::parse_observed(data, 4, 3);
    let _ = shipit::state::parse_state(&String::from_utf8_lossy(data));
});
