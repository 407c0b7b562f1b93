//! Any bytes as a provisioning profile (CMS in BER or DER, XML or binary plist).
#![no_main]

use libfuzzer_sys::fuzz_target;
use otaship_ipa::{Limits, read_profile};

fuzz_target!(|data: &[u8]| {
    let _ = read_profile(data, &Limits::default(), time::OffsetDateTime::UNIX_EPOCH, "fuzz");
});
