//! Hostile input to the doctor's parsers of what a server sends it (a manifest's bytes) and of
//! what a person pastes (a link), found by reviewing the fuzz targets in `fuzz/` or by fuzzing
//! them: each must be answered with a finding or an error, quickly and within bounded memory.
#![expect(clippy::expect_used, reason = "test helpers cannot go on without their input")]

use otaship_doctor::Severity;
use otaship_doctor::link::{check, html_unescape, links_in_html, manifest_url_of};
use otaship_doctor::manifest::check_bytes;

/// A binary plist whose `assets` array is `levels` arrays deep, each array holding the one
/// below it twice, over one 64-byte string: a few hundred bytes that a reader expanding every
/// reference turns into 2^levels strings. Written byte by byte, since plist writers never share
/// objects.
fn shared_reference_manifest(levels: u8) -> Vec<u8> {
    let mut objects: Vec<Vec<u8>> = Vec::new();
    let string = |text: &str| {
        let mut object = if text.len() < 15 {
            vec![0x50 | u8::try_from(text.len()).expect("short")]
        } else {
            vec![0x5f, 0x10, u8::try_from(text.len()).expect("under 256")]
        };
        object.extend_from_slice(text.as_bytes());
        object
    };
    let leaf = string(&"x".repeat(64));
    let keys = [string("items"), string("assets"), string("metadata"), string("kind"), string("software")];
    let (items, assets, metadata, kind, software) = (0u8, 1, 2, 3, 4);
    objects.extend(keys);
    objects.push(leaf);
    let mut below = u8::try_from(objects.len() - 1).expect("few objects");
    for _ in 0..levels {
        objects.push(vec![0xa2, below, below]);
        below += 1;
    }
    let metadata_dict = below + 1;
    objects.push(vec![0xd1, kind, software]);
    let item = metadata_dict + 1;
    objects.push(vec![0xd2, assets, metadata, below, metadata_dict]);
    let item_list = item + 1;
    objects.push(vec![0xa1, item]);
    let root = item_list + 1;
    objects.push(vec![0xd1, items, item_list]);

    let mut bytes = b"bplist00".to_vec();
    let mut offsets = Vec::new();
    for object in &objects {
        offsets.push(u16::try_from(bytes.len()).expect("small file"));
        bytes.extend_from_slice(object);
    }
    let table = u64::try_from(bytes.len()).expect("small file");
    for offset in offsets {
        bytes.extend_from_slice(&offset.to_be_bytes());
    }
    bytes.extend_from_slice(&[0; 6]);
    bytes.extend_from_slice(&[2, 1]); // 2-byte offsets, 1-byte object references
    bytes.extend_from_slice(&u64::try_from(objects.len()).expect("few objects").to_be_bytes());
    bytes.extend_from_slice(&u64::from(root).to_be_bytes());
    bytes.extend_from_slice(&table.to_be_bytes());
    bytes
}

fn codes(bytes: &[u8]) -> Vec<&'static str> {
    check_bytes(bytes).0.into_iter().map(|finding| finding.code).collect()
}

#[test]
fn a_manifest_of_shared_references_is_refused_before_it_expands() {
    // 2^22 strings of 64 bytes: hundreds of megabytes once expanded (found by review: the
    // fuzzer's mutations do not build such object graphs).
    let bytes = shared_reference_manifest(22);
    assert!(bytes.len() < 400, "{} bytes", bytes.len());
    let (findings, seen) = check_bytes(&bytes);
    assert_eq!(findings.iter().map(|finding| finding.code).collect::<Vec<_>>(), ["manifest-too-complex"]);
    assert_eq!(findings[0].severity, Severity::Error);
    assert!(!findings[0].fix.is_empty());
    assert_eq!(seen.package_url, None);
}

#[test]
fn the_same_graph_a_few_levels_deep_is_read_as_a_manifest() {
    // The writer above makes a plist the reader understands: at 3 levels (8 strings) the
    // manifest is read, and judged for what it lacks, not refused.
    let found = codes(&shared_reference_manifest(3));
    assert!(!found.contains(&"manifest-too-complex"), "{found:?}");
    assert!(!found.contains(&"manifest-not-plist"), "{found:?}");
    assert!(found.contains(&"manifest-no-package"), "{found:?}");
    assert!(found.contains(&"manifest-no-title"), "{found:?}");
}

#[test]
fn a_url_read_from_a_link_and_encoded_again_reads_back_the_same() {
    for link in [
        "itms-services://?action=download-manifest&url=https%3A%2F%2Fota.example.com%2Fm.plist%3Ft%3Da%26b",
        "itms-services://?url=https://ota.example.com/m.plist?t=a%26b&x=1&action=download-manifest",
        "ITMS-SERVICES://?action=download-manifest&url=https%3a%2f%2f%5B%3A%3A1%5D%2Fm%20x.plist%23f",
    ] {
        let url = manifest_url_of(link).expect("a link with a URL");
        let encoded: String = url
            .as_str()
            .bytes()
            .map(|byte| match byte {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(byte).to_string(),
                other => format!("%{other:02X}"),
            })
            .collect();
        let again = format!("itms-services://?action=download-manifest&url={encoded}");
        assert_eq!(manifest_url_of(&again).ok(), Some(url.clone()), "{link}");
        assert_eq!(check(&again).1.manifest_url.as_deref(), Some(url.as_str()), "{link}");
    }
}

#[test]
fn a_long_run_of_ampersands_is_unescaped_in_one_pass() {
    // Each `&` used to search the rest of the text for its `;`: a 2 MB link of them took
    // minutes (found by review of the `itms_link` target, whose inputs stay a few KB).
    let run = "&".repeat(2 << 20);
    assert_eq!(html_unescape(&format!("{run}amp;")), run);
    let page = format!("<a href=\"itms-services://?{run}&amp;url=https%3A%2F%2Fa.example%2Fm\">");
    let links = links_in_html(&page);
    assert_eq!(links.len(), 1);
    assert!(links[0].ends_with(&format!("{}url=https%3A%2F%2Fa.example%2Fm", &run[..8])));
    assert_eq!(check(&links[0]).1.manifest_url.as_deref(), Some("https://a.example/m"));
}
