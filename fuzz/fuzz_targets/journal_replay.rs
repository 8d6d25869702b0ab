//! Bytes → a delivery journal's replay (both formats, torn and damaged
//! entries, entries found again after garbage). Any input must end in a
//! set of files and high-water marks, or nothing: no panic, no allocation
//! beyond what the bytes can hold, no time beyond one pass over them.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = b"LFJRNL02".to_vec();
    // Half the inputs start with the current magic and a header naming the
    // replay's target, so that entries are reached.
    if data.first().is_some_and(|b| b & 1 == 0) {
        let named = b"/fuzz/out.log";
        input.extend_from_slice(&(named.len() as u32).to_le_bytes());
        input.extend_from_slice(named);
        input.extend_from_slice(&data[1..]);
    } else {
        input = data.to_vec();
    }
    let _ = logfunnel_hub::fuzz_journal_replay(&input);
});
