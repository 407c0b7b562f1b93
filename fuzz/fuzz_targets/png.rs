//! Any bytes as an icon: crushed CgBI or plain PNG.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = otaship_ipa::png::normalize(data, 1024);
});
