//! Any bytes as an OTA manifest, as `otaship doctor` reads one fetched from a server (XML or
//! binary plist): the checks must return, never panic, and what they report must agree with
//! what they saw.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otaship_doctor::Severity;
use otaship_doctor::manifest::check_bytes;

fuzz_target!(|data: &[u8]| {
    let (findings, seen) = check_bytes(data);
    assert!(!findings.is_empty(), "a manifest always yields a verdict");
    for finding in &findings {
        assert!(
            !finding.code.is_empty() && finding.code.bytes().all(|byte| byte.is_ascii_lowercase() || byte == b'-'),
            "finding codes are kebab-case: {:?}",
            finding.code
        );
        assert!(finding.severity == Severity::Info || !finding.fix.is_empty(), "{} says what to do", finding.code);
    }
    // "manifest-ok" is said only of a manifest naming an app and one HTTPS package.
    if findings.iter().any(|finding| finding.code == "manifest-ok") {
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert!(seen.bundle_id.as_deref().is_some_and(|id| !id.is_empty()), "{seen:?}");
        assert!(seen.package_url.as_deref().is_some_and(|url| url.starts_with("https://")), "{seen:?}");
    }
    if seen.hashes.any() {
        assert!(seen.package_url.is_some() || findings.iter().any(|finding| finding.code == "manifest-asset-no-url"));
    }
});
