//! Any bytes as the body a device POSTs to the Profile Service (a CMS SignedData around a
//! plist): the reader must return, never panic; what it accepts must be well formed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otaship_ipa::Limits;
use otaship_ipa::cms::DigestCheck;
use otaship_ipa::device::{MAX_REPLY_BYTES, normalize_udid, read_device_reply};

fuzz_target!(|data: &[u8]| {
    let Ok(reply) = read_device_reply(data, &Limits::default()) else { return };
    assert!(data.len() <= MAX_REPLY_BYTES);
    assert_ne!(reply.signed.digest, DigestCheck::Invalid, "an altered reply is refused");
    assert!(!reply.signed.signers.is_empty(), "an unsigned reply is refused");
    let attributes = &reply.attributes;
    assert_eq!(normalize_udid(&attributes.udid).as_ref(), Some(&attributes.udid), "the UDID is canonical");
    for value in
        [&attributes.product, &attributes.os_build, &attributes.serial, &attributes.device_name, &attributes.challenge]
            .into_iter()
            .flatten()
    {
        assert!(!value.is_empty() && value.chars().count() <= 256, "{value:?}");
        assert!(!value.chars().any(char::is_control), "{value:?}");
    }
});
