//! The parsers of what hosts answer never panic, whatever a host (or a broken one) prints, and
//! neither does what shipit makes of a host's state: the live colour, a rollback target, the
//! merged history as `shipit releases` prints it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shipit::ui::Render;

fuzz_target!(|data: &[u8]| {
    let _ = shipit::provision::plan::parse_observed(data, 4, 3);
    let text = String::from_utf8_lossy(data);
    let _ = shipit::state::PortOwner::parse(&text);
    let (history, _) = shipit::state::parse_history(&text, 1);
    let state = shipit::state::HostState {
        history,
        ..shipit::state::HostState::default()
    };
    let hosts = vec![("h".to_owned(), state)];
    for (line, _) in shipit::deploy::history::merge_history(&hosts) {
        let _ = line.text();
    }
    if let Ok(state) = shipit::state::parse_state(&text) {
        let _ = state.live();
        let _ = state.live_release();
        let hosts = vec![("h".to_owned(), state)];
        for (line, _) in shipit::deploy::history::merge_history(&hosts) {
            let _ = line.text();
        }
    }
});
