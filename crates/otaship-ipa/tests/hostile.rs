//! Hostile and malformed archives: each is refused with its stable code, quickly, without
//! panicking; and the awkward-but-valid layouts of real apps are read correctly.

use otaship_ipa::builder::{IpaBuilder, Method, PlistFormat, ZipBuilder, ZipEntry, plist_bytes, profile_plist};
use otaship_ipa::{InspectOptions, Inspection, IpaError, Limits, Platform, inspect_ipa};
use plist::Value;
use time::macros::datetime;

fn options() -> InspectOptions {
    InspectOptions { limits: Limits::default(), now: datetime!(2026-11-21 0:00 UTC) }
}

fn inspect(bytes: &[u8]) -> Result<Inspection, IpaError> {
    inspect_ipa(bytes, &options())
}

fn code_of(bytes: &[u8]) -> &'static str {
    match inspect(bytes) {
        Ok(inspection) => panic!("expected a refusal, got {:?}", inspection.report.bundle_id),
        Err(error) => error.code(),
    }
}

fn future() -> std::time::SystemTime {
    std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(4_102_444_800) // 2100
}

const APP: &str = "Payload/Example.app";

#[test]
fn a_minimal_builder_app_is_read() {
    let inspection = inspect(&IpaBuilder::new("com.example.app").to_bytes()).expect("valid");
    assert_eq!(inspection.report.bundle_id, "com.example.app");
    assert_eq!(inspection.report.app_path, APP);
    assert_eq!(inspection.report.platform, Platform::Ios);
    let codes: Vec<_> = inspection.report.installable.problems.iter().map(|p| p.code).collect();
    assert_eq!(codes, ["unsigned"]);
}

#[test]
fn not_a_zip_is_refused() {
    assert_eq!(code_of(b""), "not-a-zip");
    assert_eq!(code_of(b"this is a text file, not an archive"), "not-a-zip");
    assert_eq!(code_of(&[0u8; 4096]), "not-a-zip");
}

#[test]
fn truncated_zips_are_refused() {
    let whole = IpaBuilder::new("com.example.app").to_bytes();
    for cut in [whole.len() - 1, whole.len() - 30, whole.len() / 2, 40] {
        assert_eq!(code_of(&whole[..cut]), "zip-truncated", "cut at {cut}");
    }
}

#[test]
fn archives_without_an_app_are_refused() {
    let no_payload = ZipBuilder::new().entry(ZipEntry::new("readme.txt", "hello")).to_bytes();
    assert_eq!(code_of(&no_payload), "ipa-no-payload");
    let flat = ZipBuilder::new()
        .entry(ZipEntry::new(
            "Flat.app/Info.plist",
            plist_bytes(&Value::Dictionary(Default::default()), PlistFormat::Xml),
        ))
        .to_bytes();
    assert_eq!(code_of(&flat), "ipa-no-payload");
    let empty_payload = ZipBuilder::new().entry(ZipEntry::dir("Payload/")).to_bytes();
    assert_eq!(code_of(&empty_payload), "ipa-no-app-bundle");
    let nested_one_level_down = IpaBuilder::new("com.example.app").zip();
    let mut moved = ZipBuilder::new();
    for mut entry in nested_one_level_down.entries {
        let mut name = b"Wrapper/".to_vec();
        name.extend_from_slice(&entry.name);
        entry.name = name;
        moved.entries.push(entry);
    }
    assert_eq!(code_of(&moved.to_bytes()), "ipa-no-payload");
    let app_without_plist = ZipBuilder::new().entry(ZipEntry::new("Payload/A.app/A", "binary")).to_bytes();
    assert_eq!(code_of(&app_without_plist), "ipa-no-app-bundle");
}

#[test]
fn two_main_apps_are_refused() {
    let info = plist_bytes(&Value::Dictionary(IpaBuilder::new("com.example.b").info), PlistFormat::Binary);
    let bytes = IpaBuilder::new("com.example.a").entry(ZipEntry::new("Payload/Second.app/Info.plist", info)).to_bytes();
    assert_eq!(code_of(&bytes), "ipa-multiple-apps");
}

#[test]
fn nested_bundles_never_pass_for_the_main_app_whatever_their_order() {
    let nested_info = |id: &str| plist_bytes(&Value::Dictionary(IpaBuilder::new(id).info), PlistFormat::Binary);
    // Put every nested Info.plist before the main one in the archive.
    let builder = IpaBuilder::new("com.example.app");
    let mut zip = ZipBuilder::new();
    for (path, id) in [
        ("PlugIns/Widget.appex", "com.example.app.widget"),
        ("Watch/Watch.app", "com.example.app.watchkitapp"),
        ("Watch/Watch.app/PlugIns/Complication.appex", "com.example.app.watchkitapp.complication"),
        ("Frameworks/Kit.framework", "com.example.kit"),
        ("Bundles/Nested.bundle", "com.example.nested"),
    ] {
        zip = zip.entry(ZipEntry::new(format!("{APP}/{path}/Info.plist"), nested_info(id)));
    }
    // AppleDouble files from macOS zips are not apps either.
    zip = zip.entry(ZipEntry::new("__MACOSX/Payload/Example.app/._Info.plist", "junk"));
    zip.entries.extend(builder.zip().entries);
    let report = inspect(&zip.to_bytes()).expect("valid").report;
    assert_eq!(report.bundle_id, "com.example.app");
    let nested: Vec<_> = report.extensions.iter().map(|e| (e.bundle_id.as_str(), e.kind)).collect();
    assert_eq!(
        nested,
        [
            ("com.example.app.widget", "app-extension"),
            ("com.example.app.watchkitapp", "watch-app"),
            ("com.example.app.watchkitapp.complication", "app-extension"),
        ]
    );
}

#[test]
fn xml_and_binary_info_plists_read_the_same() {
    for format in [PlistFormat::Xml, PlistFormat::Binary] {
        let mut builder =
            IpaBuilder::new("com.example.app").info("CFBundleDisplayName", "Tom & Jerry <beta> \"quoted\"");
        builder.info_format = format;
        let report = inspect(&builder.to_bytes()).expect("valid").report;
        assert_eq!(report.name.as_deref(), Some("Tom & Jerry <beta> \"quoted\""));
        assert_eq!(report.version.as_deref(), Some("1.0"));
        assert_eq!(report.build.as_deref(), Some("1"));
        assert_eq!(report.device_families, ["iphone", "ipad"]);
    }
}

#[test]
fn oversized_info_plists_are_refused_by_declared_and_by_real_size() {
    // Honest but huge: refused from the declared size, before inflating anything.
    let huge = vec![b' '; 2 << 20];
    let bytes = IpaBuilder::new("x")
        .zip()
        .entries
        .into_iter()
        .map(|mut entry| {
            if entry.name.ends_with(b"Info.plist") {
                entry.data = otaship_ipa::builder::Data::Bytes(huge.clone());
            }
            entry
        })
        .fold(ZipBuilder::new(), ZipBuilder::entry)
        .to_bytes();
    assert_eq!(code_of(&bytes), "entry-too-large");

    // A bomb: declares 300,000 bytes (plausible for its ~100 KB of compressed data), inflates
    // to 100 MiB. Reading stops one byte past the declared size.
    let bomb_with = |declared: u64| {
        let mut zip = IpaBuilder::new("x").zip();
        for entry in &mut zip.entries {
            if entry.name.ends_with(b"Info.plist") {
                entry.data = otaship_ipa::builder::Data::Bytes(vec![0; 100 << 20]);
                entry.declared_size = Some(declared);
            }
        }
        zip.to_bytes()
    };
    let bomb = bomb_with(300_000);
    assert!(bomb.len() < 200_000, "the bomb is small on disk");
    assert_eq!(code_of(&bomb), "entry-too-large");
    // Declaring less than the compressed data could ever hold is refused before inflating.
    assert_eq!(code_of(&bomb_with(100)), "entry-corrupt");
}

#[test]
fn oversized_profiles_and_icons_are_bounded() {
    let bytes = IpaBuilder::new("com.example.app").profile(vec![b'A'; 3 << 20]).to_bytes();
    assert_eq!(code_of(&bytes), "entry-too-large");
    // An icon bomb is skipped (an icon is never worth refusing a build for).
    let mut builder = IpaBuilder::new("com.example.app").info("CFBundleIconFiles", Value::Array(vec!["Icon".into()]));
    builder = builder.app_file("Icon@2x.png", vec![0u8; 8 << 20]);
    let report = inspect(&builder.to_bytes()).expect("valid").report;
    assert!(report.icon.is_none());
}

#[test]
fn too_many_entries_are_refused_before_the_directory_is_read() {
    let mut zip = IpaBuilder::new("com.example.app").zip();
    zip.declared_entries = Some(50_000_000);
    assert_eq!(code_of(&zip.to_bytes()), "zip-too-many-entries");

    let mut many = IpaBuilder::new("com.example.app");
    for index in 0..200 {
        many = many.app_file(&format!("file{index}"), "x");
    }
    let limits = Limits { max_entries: 100, ..Limits::default() };
    let options = InspectOptions { limits, ..options() };
    let Err(error) = inspect_ipa(many.to_bytes().as_slice(), &options) else { panic!("refused") };
    assert_eq!(error.code(), "zip-too-many-entries");
    let limits = Limits { max_central_directory_bytes: 1024, ..Limits::default() };
    let options = InspectOptions { limits, ..options };
    let Err(error) = inspect_ipa(many.to_bytes().as_slice(), &options) else { panic!("refused") };
    assert_eq!(error.code(), "zip-directory-too-large");
}

#[test]
fn a_wrong_entry_count_is_refused() {
    let mut zip = IpaBuilder::new("com.example.app").zip();
    zip.declared_entries = Some(zip.entries.len() as u64 - 1);
    assert_eq!(code_of(&zip.to_bytes()), "zip-malformed");
}

#[test]
fn duplicate_entries_are_refused() {
    let second_plist = plist_bytes(&Value::Dictionary(IpaBuilder::new("com.evil").info), PlistFormat::Binary);
    let bytes =
        IpaBuilder::new("com.example.app").entry(ZipEntry::new(format!("{APP}/Info.plist"), second_plist)).to_bytes();
    assert_eq!(code_of(&bytes), "zip-duplicate-entry");
    // A file and a folder of the same name are the same path on disk.
    let bytes = IpaBuilder::new("com.example.app")
        .app_file("Thing", "file")
        .entry(ZipEntry::dir(format!("{APP}/Thing/")))
        .to_bytes();
    assert_eq!(code_of(&bytes), "zip-duplicate-entry");
}

#[test]
fn overlapping_entries_are_refused() {
    // The central directory points a second name at the Info.plist's local header.
    let mut zip = IpaBuilder::new("com.example.app").zip();
    let plain = zip.to_bytes();
    let info_offset = find(&plain, b"PK\x03\x04", 2);
    zip.entries.push(ZipEntry {
        offset_override: Some(info_offset as u64),
        ..ZipEntry::new(format!("{APP}/Other.plist"), "x")
    });
    assert_eq!(code_of(&zip.to_bytes()), "zip-overlapping-entries");
}

#[test]
fn a_local_header_that_disagrees_with_the_directory_is_refused() {
    let mut zip = IpaBuilder::new("com.example.app").app_file("Readme", "hello").zip();
    if let Some(entry) = zip.entries.last_mut() {
        entry.local_name = Some(format!("{APP}/Info.plisx").into_bytes());
    }
    assert_eq!(code_of(&zip.to_bytes()), "zip-header-mismatch");
}

#[test]
fn unsafe_names_are_refused() {
    for name in
        ["../evil", "Payload/../../etc/passwd", "/etc/passwd", "Payload\\..\\x", "C:\\windows\\x", "Payload/a\0b"]
    {
        let bytes = IpaBuilder::new("com.example.app").entry(ZipEntry::new(name, "x")).to_bytes();
        assert_eq!(code_of(&bytes), "zip-unsafe-path", "{name:?}");
    }
}

#[test]
fn encrypted_and_exotic_entries_are_refused() {
    let encrypted = IpaBuilder::new("com.example.app")
        .entry(ZipEntry { extra_flags: 1, ..ZipEntry::new("Payload/Example.app/Secret", "x") })
        .to_bytes();
    assert_eq!(code_of(&encrypted), "zip-unsupported");
    let mut zip = IpaBuilder::new("com.example.app").zip();
    for entry in &mut zip.entries {
        if entry.name.ends_with(b"Info.plist") {
            entry.method = Method::Raw(12); // bzip2
        }
    }
    assert_eq!(code_of(&zip.to_bytes()), "zip-unsupported");
}

#[test]
fn corrupt_entries_are_refused() {
    let mut zip = IpaBuilder::new("com.example.app").zip();
    for entry in &mut zip.entries {
        if entry.name.ends_with(b"Info.plist") {
            entry.crc_override = Some(0xdead_beef);
        }
    }
    assert_eq!(code_of(&zip.to_bytes()), "entry-corrupt");
    let mut zip = IpaBuilder::new("com.example.app").zip();
    for entry in &mut zip.entries {
        if entry.name.ends_with(b"Info.plist") {
            entry.method = Method::Raw(8);
            entry.data = otaship_ipa::builder::Data::Bytes(vec![0xff; 64]);
        }
    }
    assert_eq!(code_of(&zip.to_bytes()), "entry-corrupt");
}

#[test]
fn malformed_plists_and_wrong_types_are_refused() {
    let with_plist = |bytes: Vec<u8>| {
        let mut zip = IpaBuilder::new("x").zip();
        for entry in &mut zip.entries {
            if entry.name.ends_with(b"Info.plist") {
                entry.data = otaship_ipa::builder::Data::Bytes(bytes.clone());
            }
        }
        zip.to_bytes()
    };
    assert_eq!(code_of(&with_plist(b"bplist00garbage".to_vec())), "plist-malformed");
    assert_eq!(code_of(&with_plist(b"<?xml version=\"1.0\"?><plist><dict><key>a</key>".to_vec())), "plist-malformed");
    assert_eq!(code_of(&with_plist(b"<plist><array/></plist>".to_vec())), "plist-malformed");
    assert_eq!(code_of(&with_plist(Vec::new())), "plist-malformed");

    let wrong = IpaBuilder::new("x").info("CFBundleIdentifier", 42).to_bytes();
    assert_eq!(code_of(&wrong), "plist-wrong-type");
    let wrong = IpaBuilder::new("x").info("CFBundleIcons", "not a dictionary").to_bytes();
    assert_eq!(code_of(&wrong), "plist-wrong-type");
    let mut missing = IpaBuilder::new("x");
    missing.info.remove("CFBundleIdentifier");
    assert_eq!(code_of(&missing.to_bytes()), "plist-missing-key");
}

#[test]
fn binary_plists_that_expand_exponentially_are_refused() {
    // 24 arrays, each holding 14 references to the next: 14^24 values once expanded.
    let levels = 24u8;
    let mut objects: Vec<Vec<u8>> = (0..levels)
        .map(|level| {
            let mut object = vec![0xae];
            object.extend(std::iter::repeat_n(level + 1, 14));
            object
        })
        .collect();
    objects.push(vec![0x51, b'a']);
    let mut bytes = b"bplist00".to_vec();
    let mut offsets = Vec::new();
    for object in &objects {
        offsets.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        bytes.extend_from_slice(object);
    }
    let table = bytes.len() as u64;
    bytes.extend_from_slice(&offsets);
    bytes.extend_from_slice(&[0; 6]);
    bytes.extend_from_slice(&[2, 1]); // 2-byte offsets, 1-byte object references
    bytes.extend_from_slice(&(objects.len() as u64).to_be_bytes());
    bytes.extend_from_slice(&0u64.to_be_bytes());
    bytes.extend_from_slice(&table.to_be_bytes());
    let mut zip = IpaBuilder::new("x").zip();
    for entry in &mut zip.entries {
        if entry.name.ends_with(b"Info.plist") {
            entry.data = otaship_ipa::builder::Data::Bytes(bytes.clone());
        }
    }
    assert_eq!(code_of(&zip.to_bytes()), "plist-too-complex");
}

#[test]
fn deeply_nested_plists_are_refused() {
    let xml = format!(
        "<plist><dict><key>CFBundleIdentifier</key><string>x</string><key>deep</key>{}{}</dict></plist>",
        "<array>".repeat(500),
        "</array>".repeat(500)
    );
    let mut zip = IpaBuilder::new("x").zip();
    for entry in &mut zip.entries {
        if entry.name.ends_with(b"Info.plist") {
            entry.data = otaship_ipa::builder::Data::Bytes(xml.clone().into_bytes());
        }
    }
    assert_eq!(code_of(&zip.to_bytes()), "plist-too-complex");
}

#[test]
fn zip64_archives_are_read() {
    let mut zip = IpaBuilder::new("com.example.app").zip();
    zip.force_zip64 = true;
    let report = inspect(&zip.to_bytes()).expect("valid").report;
    assert_eq!(report.bundle_id, "com.example.app");
}

#[test]
fn installability_problems_come_from_the_archive() {
    let profile = |app_id: &str, devices: Option<&[&str]>, all: bool, debug: bool| {
        profile_plist(app_id, devices, all, debug, future())
    };
    let codes = |builder: IpaBuilder| -> Vec<&'static str> {
        inspect(&builder.to_bytes()).expect("valid").report.installable.problems.iter().map(|p| p.code).collect()
    };
    let adhoc = profile("TEAM.com.example.app", Some(&["00008030-001544522E60802E"]), false, false);
    assert!(codes(IpaBuilder::new("com.example.app").profile(adhoc.clone())).is_empty());
    let wildcard = profile("TEAM.com.example.*", Some(&["a"]), false, true);
    assert!(codes(IpaBuilder::new("com.example.app").profile(wildcard)).is_empty());
    assert_eq!(codes(IpaBuilder::new("com.other.app").profile(adhoc.clone())), ["bundle-id-not-in-profile"]);
    assert_eq!(
        codes(IpaBuilder::new("com.example.app").profile(profile("TEAM.*", None, false, false))),
        ["app-store-profile"]
    );
    assert_eq!(
        codes(IpaBuilder::new("com.example.app").profile(profile("TEAM.*", Some(&[]), false, false))),
        ["profile-has-no-devices"]
    );
    let expired = profile_plist("TEAM.*", None, true, false, std::time::UNIX_EPOCH);
    assert_eq!(codes(IpaBuilder::new("com.example.app").profile(expired)), ["profile-expired"]);
    let simulator = IpaBuilder::new("com.example.app").profile(adhoc.clone()).info("DTPlatformName", "iphonesimulator");
    assert_eq!(codes(simulator), ["simulator-build"]);
    let tv = IpaBuilder::new("com.example.app").profile(adhoc.clone()).info("DTPlatformName", "appletvos");
    assert_eq!(codes(tv), ["platform-not-installable", "profile-wrong-platform"]);
    let mut unsigned_code = IpaBuilder::new("com.example.app").profile(adhoc.clone());
    unsigned_code.code_signature = false;
    assert_eq!(codes(unsigned_code), ["missing-code-signature"]);
    let store_download = IpaBuilder::new("com.example.app")
        .profile(adhoc.clone())
        .entry(ZipEntry::new("iTunesMetadata.plist", "<plist/>"));
    assert_eq!(codes(store_download), ["app-store-download"]);

    // Extensions: unsigned, foreign bundle id, other team.
    let extension_info = |id: &str| plist_bytes(&Value::Dictionary(IpaBuilder::new(id).info), PlistFormat::Binary);
    let with_extension = IpaBuilder::new("com.example.app")
        .profile(adhoc.clone())
        .app_file("PlugIns/W.appex/Info.plist", extension_info("com.elsewhere.widget"))
        .app_file("PlugIns/V.appex/Info.plist", extension_info("com.example.app.v"))
        .app_file(
            "PlugIns/V.appex/embedded.mobileprovision",
            profile("OTHER.com.example.app.v", Some(&["00008030-001544522E60802E"]), false, false),
        );
    assert_eq!(codes(with_extension), ["extension-bundle-id-mismatch", "unsigned", "extension-team-mismatch"]);
}

fn find(haystack: &[u8], needle: &[u8], occurrence: usize) -> usize {
    haystack
        .windows(needle.len())
        .enumerate()
        .filter(|(_, window)| *window == needle)
        .nth(occurrence)
        .map(|(at, _)| at)
        .unwrap_or_else(|| panic!("the needle is not present {occurrence} times"))
}

// Regression tests from the review of the reader (each was a confirmed way in).

fn with_info_bytes(bytes: Vec<u8>) -> Vec<u8> {
    let mut zip = IpaBuilder::new("x").zip();
    for entry in &mut zip.entries {
        if entry.name.ends_with(b"Info.plist") {
            entry.data = otaship_ipa::builder::Data::Bytes(bytes.clone());
        }
    }
    zip.to_bytes()
}

#[test]
fn a_non_ascii_icon_name_does_not_panic() {
    let bytes = IpaBuilder::new("com.example.app")
        .info("CFBundleIconFiles", Value::Array(vec!["AppIconé60x60".into()]))
        .app_file("AppIconé60x60.png", "not a png")
        .to_bytes();
    let report = inspect(&bytes).expect("valid").report;
    assert!(report.icon.is_none());
    assert!(report.installable.warnings.iter().any(|warning| warning.code == "icon-unreadable"));
}

#[test]
fn a_binary_plist_repeating_one_large_string_is_refused() {
    // One 300 KB string referenced 1000 times: 302 KB on disk, 300 MB if expanded.
    let big = vec![b'a'; 300_000];
    let mut bytes = b"bplist00".to_vec();
    let array_offset = bytes.len();
    bytes.push(0xaf);
    bytes.push(0x11); // two-byte count follows
    bytes.extend_from_slice(&1000u16.to_be_bytes());
    for _ in 0..1000 {
        bytes.extend_from_slice(&1u16.to_be_bytes());
    }
    let string_offset = bytes.len();
    bytes.push(0x5f);
    bytes.push(0x12); // four-byte length follows
    bytes.extend_from_slice(&(big.len() as u32).to_be_bytes());
    bytes.extend_from_slice(&big);
    let table = bytes.len() as u64;
    bytes.extend_from_slice(&(array_offset as u32).to_be_bytes());
    bytes.extend_from_slice(&(string_offset as u32).to_be_bytes());
    bytes.extend_from_slice(&[0, 0, 0, 0, 0, 0, 4, 2]);
    bytes.extend_from_slice(&2u64.to_be_bytes());
    bytes.extend_from_slice(&0u64.to_be_bytes());
    bytes.extend_from_slice(&table.to_be_bytes());
    assert_eq!(code_of(&with_info_bytes(bytes)), "metadata-too-large");
}

#[test]
fn many_apps_or_extensions_are_refused_in_linear_time() {
    let mut many_apps = ZipBuilder::new();
    many_apps.entries.extend(IpaBuilder::new("a.b").zip().entries);
    for index in 0..40_000 {
        many_apps.entries.push(ZipEntry::dir(format!("Payload/App{index}.app/")));
    }
    assert_eq!(code_of(&many_apps.to_bytes()), "ipa-multiple-apps");
    let info = plist_bytes(&Value::Dictionary(IpaBuilder::new("a.b.x").info), PlistFormat::Binary);
    let mut many_extensions = IpaBuilder::new("a.b");
    for index in 0..70 {
        many_extensions = many_extensions.app_file(&format!("PlugIns/E{index}.appex/Info.plist"), info.clone());
    }
    assert_eq!(code_of(&many_extensions.to_bytes()), "ipa-too-many-extensions");
}

#[test]
fn hidden_bytes_between_or_before_entries_are_refused() {
    let hidden_plist = plist_bytes(&Value::Dictionary(IpaBuilder::new("com.evil.app").info), PlistFormat::Binary);
    let hidden = ZipBuilder::new().entry(ZipEntry::new(format!("{APP}/Info.plist"), hidden_plist)).to_bytes();
    // A whole local entry (and no central record) in a gap between two entries.
    let mut zip = IpaBuilder::new("com.good.app").zip();
    zip.entries[1].gap_after = hidden.clone();
    assert_eq!(code_of(&zip.to_bytes()), "zip-malformed");
    // ...before the first entry.
    let mut zip = IpaBuilder::new("com.good.app").zip();
    zip.prefix = hidden.clone();
    assert_eq!(code_of(&zip.to_bytes()), "zip-malformed");
    // ...inside an entry's compressed size, after its deflate stream ends.
    let mut zip = IpaBuilder::new("com.good.app").zip();
    for entry in &mut zip.entries {
        if entry.name.ends_with(b"Info.plist") {
            entry.data_suffix = hidden.clone();
        }
    }
    assert_eq!(code_of(&zip.to_bytes()), "entry-corrupt");
}

#[test]
fn names_that_alias_another_path_are_refused() {
    for name in
        ["Payload/Example.app/./Info.plist", "Payload/Example.app//Info.plist", "./Payload/Example.app/Info.plist"]
    {
        let bytes = IpaBuilder::new("com.example.app").entry(ZipEntry::new(name, "x")).to_bytes();
        assert_eq!(code_of(&bytes), "zip-unsafe-path", "{name}");
    }
    // An Info-ZIP Unicode Path field renaming an innocent entry.
    let mut field = vec![0x75, 0x70];
    let target = format!("{APP}/Info.plist");
    field.extend_from_slice(&((5 + target.len()) as u16).to_le_bytes());
    field.push(1);
    field.extend_from_slice(&crc32fast::hash(b"zzz").to_le_bytes());
    field.extend_from_slice(target.as_bytes());
    let bytes = IpaBuilder::new("com.example.app")
        .entry(ZipEntry { extra_fields: field, ..ZipEntry::new("zzz", "evil") })
        .to_bytes();
    assert_eq!(code_of(&bytes), "zip-header-mismatch");
    // A symbolic link that other entries are stored beneath.
    let bytes = IpaBuilder::new("com.example.app")
        .entry(ZipEntry { unix_mode: Some(0o120777), ..ZipEntry::stored("Payload/Link", "Example.app") })
        .entry(ZipEntry::new("Payload/Link/Info.plist", "evil"))
        .to_bytes();
    assert_eq!(code_of(&bytes), "zip-unsafe-path");
    // A symbolic link on its own is harmless.
    let bytes = IpaBuilder::new("com.example.app")
        .entry(ZipEntry { unix_mode: Some(0o120777), ..ZipEntry::stored("Payload/Example.app/Current", "Versions/A") })
        .to_bytes();
    assert!(inspect(&bytes).is_ok());
}

#[test]
fn a_profile_with_thousands_of_signers_is_refused_quickly() {
    // ContentInfo { signedData, [0] SignedData { 1, {}, { data, [0] OCTET STRING }, SET OF 50,000 signers } }
    fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = body.len();
        if len < 128 {
            out.push(len as u8);
        } else {
            let bytes = (len as u32).to_be_bytes();
            let skip = bytes.iter().take_while(|byte| **byte == 0).count();
            out.push(0x80 | (4 - skip) as u8);
            out.extend_from_slice(&bytes[skip..]);
        }
        out.extend_from_slice(body);
        out
    }
    let content = profile_plist("T.a", Some(&["x"]), false, false, future());
    let signer =
        tlv(0x30, &[tlv(0x02, &[1]), tlv(0x30, &[]), tlv(0x30, &tlv(0x06, &[0x2b, 0x0e, 0x03, 0x02, 0x1a]))].concat());
    let signers = tlv(0x31, &signer.repeat(50_000));
    let encapsulated = tlv(
        0x30,
        &[tlv(0x06, &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01]), tlv(0xa0, &tlv(0x04, &content))].concat(),
    );
    let signed_data = tlv(0x30, &[tlv(0x02, &[1]), tlv(0x31, &[]), encapsulated, signers].concat());
    let message = tlv(
        0x30,
        &[tlv(0x06, &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02]), tlv(0xa0, &signed_data)].concat(),
    );
    let Err(error) = otaship_ipa::read_profile(&message, &Limits::default(), datetime!(2026-11-21 0:00 UTC), "p")
    else {
        panic!("refused")
    };
    assert_eq!(error.code(), "profile-malformed");
}

#[test]
fn a_zip64_record_that_disagrees_with_the_classic_one_is_refused() {
    let mut zip = IpaBuilder::new("com.example.app").zip();
    zip.force_zip64 = true;
    let mut bytes = zip.to_bytes();
    // The classic end record's entry counts say 0xffff ("see ZIP64"); make them claim 3.
    let end = bytes.len() - 22;
    bytes[end + 8..end + 12].copy_from_slice(&[3, 0, 3, 0]);
    assert_eq!(code_of(&bytes), "zip-malformed");
}
