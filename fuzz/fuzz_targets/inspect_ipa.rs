//! Any bytes as an .ipa: the reader must return, never panic, within its limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otaship_ipa::{InspectOptions, Limits, inspect_ipa};

fuzz_target!(|data: &[u8]| {
    let options = InspectOptions { limits: Limits::default(), now: time::OffsetDateTime::UNIX_EPOCH };
    let _ = inspect_ipa(data, &options);
});
