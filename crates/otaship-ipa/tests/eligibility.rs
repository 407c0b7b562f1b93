//! Whether a device can install a build, judged with the real provisioning profiles of the
//! fixtures: every device a development or ad-hoc profile lists is eligible (in any spelling of
//! its UDID), any other is not; enterprise profiles need no device; App Store ones never
//! install; extensions' profiles count as much as the app's.
#![expect(clippy::expect_used, reason = "tests cannot go on without their fixtures")]

use otaship_ipa::device::{BundleProfile, Device, Listing, OsCheck, eligibility, normalize_udid};
use otaship_ipa::{Limits, ProfileKind, read_profile};
use time::OffsetDateTime;
use time::macros::datetime;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures/third-party/mobileprovision/");
const NOW: OffsetDateTime = datetime!(2026-11-21 0:00 UTC);

fn profile(name: &str) -> otaship_ipa::Profile {
    let bytes = std::fs::read(format!("{FIXTURES}{name}"))
        .expect("fixture: run the tests with ../shared beside the repository");
    read_profile(&bytes, &Limits::default(), NOW, name).expect("a readable profile")
}

fn device(udid: &str) -> Device<'_> {
    Device { udid, os_version: Some("17.4"), os_version_exact: true, family: Some("iphone") }
}

#[test]
fn every_listed_device_of_every_real_profile_is_eligible_and_no_other() {
    let mut checked = 0;
    for entry in std::fs::read_dir(FIXTURES).expect("fixtures") {
        let path = entry.expect("entry").path();
        let name = path.file_name().and_then(|name| name.to_str()).expect("name").to_owned();
        let Ok(profile) = read_profile(&std::fs::read(&path).expect("read"), &Limits::default(), NOW, &name) else {
            continue;
        };
        let bundles = [BundleProfile { bundle: "the app", profile: Some(&profile) }];
        let stranger = eligibility(&bundles, None, &[], &device("00008030-0000000000000BAD"));
        match profile.kind {
            ProfileKind::Development | ProfileKind::AdHoc if !profile.provisions_all_devices => {
                assert!(!profile.devices.is_empty(), "{name}");
                for udid in &profile.devices {
                    for spelling in [udid.clone(), udid.to_ascii_uppercase(), udid.to_ascii_lowercase()] {
                        let verdict = eligibility(&bundles, None, &[], &device(&spelling));
                        assert_eq!(verdict.listing, Listing::Listed, "{name}: {spelling}");
                        assert!(verdict.can_install() && verdict.needs_developer_mode, "{name}");
                    }
                }
                assert_eq!(stranger.listing, Listing::NotListed { missing_from: vec!["the app".to_owned()] }, "{name}");
                assert!(!stranger.can_install());
                checked += 1;
            }
            ProfileKind::Enterprise => {
                assert_eq!(stranger.listing, Listing::AnyDevice, "{name}");
                assert!(!stranger.needs_developer_mode);
            }
            ProfileKind::AppStore | ProfileKind::DeveloperId => {
                assert_eq!(stranger.listing, Listing::NotDistributable, "{name}")
            }
            _ => {}
        }
    }
    assert!(checked >= 5, "only {checked} device-listing profiles among the fixtures");
}

#[test]
fn an_extension_whose_profile_lacks_the_device_blocks_the_install() {
    let app = profile("app-info-ios_development.mobileprovision");
    // The real profile of another app, standing for an extension signed with an older profile.
    let extension = profile("fastlane-jigx_test_development.mobileprovision");
    let udid = app.devices.iter().find(|udid| !extension.includes_device(udid)).expect("a device only the app lists");
    let shared = app.devices.iter().find(|udid| extension.includes_device(udid));
    let bundles = [
        BundleProfile { bundle: "the app", profile: Some(&app) },
        BundleProfile { bundle: "com.example.notifications", profile: Some(&extension) },
    ];
    let verdict = eligibility(&bundles, None, &[], &device(udid));
    assert_eq!(verdict.listing, Listing::NotListed { missing_from: vec!["com.example.notifications".to_owned()] });
    if let Some(shared) = shared {
        assert_eq!(eligibility(&bundles, None, &[], &device(shared)).listing, Listing::Listed);
    }
}

#[test]
fn the_os_version_and_device_family_are_checked() {
    let app = profile("app-info-ios_adhoc.mobileprovision");
    let udid = app.devices.first().expect("a device").clone();
    let bundles = [BundleProfile { bundle: "the app", profile: Some(&app) }];
    let judge = |version: Option<&str>, exact: bool, min: Option<&str>, families: &[String], family: &str| {
        eligibility(
            &bundles,
            min,
            families,
            &Device { udid: &udid, os_version: version, os_version_exact: exact, family: Some(family) },
        )
    };
    let too_old = judge(Some("16.7"), true, Some("17.0"), &[], "iphone");
    assert_eq!(too_old.os, OsCheck::TooOld { required: "17.0".into(), running: "16.7".into() });
    assert!(!too_old.can_install());
    assert_eq!(judge(Some("17.0.1"), true, Some("17.0"), &[], "iphone").os, OsCheck::Supported);
    // An estimated minor version (from a build number) is not held against the minimum.
    assert_eq!(judge(Some("17.0"), false, Some("17.2"), &[], "iphone").os, OsCheck::Supported);
    assert!(matches!(judge(Some("16.0"), false, Some("17.2"), &[], "iphone").os, OsCheck::TooOld { .. }));
    assert_eq!(judge(None, false, Some("17.2"), &[], "iphone").os, OsCheck::Unknown);
    let ipad_only = vec!["ipad".to_owned()];
    assert!(judge(Some("18.0"), true, None, &ipad_only, "iphone").ipad_only_on_phone);
    assert!(!judge(Some("18.0"), true, None, &ipad_only, "ipad").ipad_only_on_phone);
    // Developer Mode exists from iOS 16.
    assert!(!judge(Some("15.7"), true, None, &[], "iphone").needs_developer_mode);
    assert!(judge(Some("16.0"), true, None, &[], "iphone").needs_developer_mode);
    assert_eq!(normalize_udid(&udid.to_ascii_uppercase()), normalize_udid(&udid));
}
