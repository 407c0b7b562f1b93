//! Any text as an `itms-services` link, read the two ways otaship reads one from outside: as
//! `otaship doctor` checks a link found in a page (HTML-unescaped, then read as iOS reads it),
//! and as `otaship link` takes a link a person pasted. A manifest URL read from a link, encoded
//! again, must read back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otaship_doctor::link::{check, html_unescape, links_in_html, manifest_url_of};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// RFC 3986's unreserved characters stay; everything else is escaped, as a query component.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

fn link_for(manifest_url: &str) -> String {
    format!("itms-services://?action=download-manifest&url={}", utf8_percent_encode(manifest_url, COMPONENT))
}

fn html_attribute(text: &str) -> String {
    text.replace('&', "&amp;").replace('"', "&quot;").replace('\'', "&#39;").replace('<', "&lt;").replace('>', "&gt;")
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };

    // The doctor's reading, as iOS reads it.
    let (findings, seen) = check(text);
    assert_eq!(seen.link, text);
    if let Some(url) = &seen.manifest_url {
        assert!(!url.is_empty());
        let (again_findings, again) = check(&link_for(url));
        assert_eq!(again.manifest_url.as_ref(), Some(url), "an encoded link reads back its URL");
        assert!(
            again_findings.iter().all(|finding| !finding.code.starts_with("link-")),
            "a correctly encoded link has no link fault: {again_findings:?}"
        );
    } else {
        assert!(!findings.is_empty(), "a link without a manifest URL says why");
    }

    // Escaping once for an attribute and unescaping gives the text back.
    assert_eq!(html_unescape(&html_attribute(text)), text);
    for link in links_in_html(text) {
        assert!(link.to_ascii_lowercase().starts_with("itms-services:"), "{link:?}");
        assert!(link.len() <= text.len(), "unescaping never makes text longer");
    }

    // `otaship link`'s reading of what a person pasted; the link it prints reads back the same.
    if let Ok(url) = manifest_url_of(text) {
        assert!(matches!(url.scheme(), "https" | "http"));
        let again = manifest_url_of(&link_for(url.as_str())).expect("an encoded link of a parsed URL reads back");
        assert_eq!(again, url, "an encoded link reads back its URL");
    }
});
